import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import {
  connect,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { networkInterfaces } from 'node:os';
import { Writable } from 'node:stream';
import {
  createFakeClock,
  createLogger,
  createMetricsRegistry,
  createRedactor,
  type MetricsRegistry,
  REDACTED,
} from '@dso/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createAgentHealth, type HealthReport } from './health.js';
import { AGENT_METRIC_NAMES } from './metric-names.js';
import { type AgentMetrics, createAgentMetrics } from './metrics.js';
import { type ObservabilityServer, startObservabilityServer } from './metrics-server.js';

const CANARY = 'canary-obs-5f31d8';
const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const okReport = (): HealthReport => ({ ok: true, checks: { events: { ok: true } } });

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One request on a fresh connection (no pooling), so each test controls its sockets. */
function send(
  address: string,
  path: string,
  options: { method?: string; body?: string; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const url = new URL(`http://${address}${path}`);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname.replace(/^\[|\]$/g, ''),
        port: url.port,
        path: `${url.pathname}${url.search}`,
        method: options.method ?? 'GET',
        headers: options.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString(),
          }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(options.body);
  });
}

function listenNet(server: NetServer, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => resolve());
  });
}

const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));

describe('startObservabilityServer', () => {
  const servers: ObservabilityServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
  });

  async function start(
    options: Partial<Parameters<typeof startObservabilityServer>[0]> = {},
  ): Promise<{ server: ObservabilityServer; registry: MetricsRegistry; metrics: AgentMetrics }> {
    const registry = options.registry ?? createMetricsRegistry();
    const metrics = createAgentMetrics(registry, { providers: ['vault'] });
    const server = await startObservabilityServer({
      address: '127.0.0.1:0',
      registry,
      health: okReport,
      ready: okReport,
      ...options,
    });
    servers.push(server);
    return { server, registry, metrics };
  }

  it('serves the agent metrics in the Prometheus text format', async () => {
    const { server, metrics } = await start();
    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(portOf(server.address)).toBeGreaterThan(0);
    metrics.eventReceived('container.started');

    const reply = await send(server.address, '/metrics');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe(PROMETHEUS_TYPE);
    expect(reply.headers['cache-control']).toBe('no-store');
    for (const name of AGENT_METRIC_NAMES) expect(reply.body).toContain(`# TYPE ${name} `);
    expect(reply.body).toContain('dso_events_received_total{type="container.started"} 1');
    // A query string does not change the route.
    expect((await send(server.address, '/metrics?name[]=x')).status).toBe(200);
  });

  it('answers /healthz and /readyz from the report functions, 200 then 503 and back', async () => {
    const clock = createFakeClock();
    const health = createAgentHealth({ clock, eventsDownLimitMs: 1_000 });
    const { server } = await start({ health: health.health, ready: health.ready });

    let reply = await send(server.address, '/healthz');
    expect(reply.status).toBe(200);
    expect(reply.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(JSON.parse(reply.body)).toEqual({ status: 'ok', checks: { events: { ok: true } } });

    reply = await send(server.address, '/readyz');
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body)).toMatchObject({
      status: 'fail',
      unmet: ['watching', 'reconciled'],
    });

    health.eventsConnected();
    health.reconciled();
    reply = await send(server.address, '/readyz');
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).status).toBe('ok');

    health.eventsLost();
    clock.advance(1_500);
    reply = await send(server.address, '/healthz');
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body)).toEqual({
      status: 'fail',
      unmet: ['events'],
      checks: { events: { ok: false, detail: 'events stream down for 2 s (limit 1 s)' } },
    });

    health.eventsConnected();
    expect((await send(server.address, '/healthz')).status).toBe(200);
    health.stopping();
    reply = await send(server.address, '/readyz');
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body).unmet).toEqual(['running']);
    // Liveness holds while stopping.
    expect((await send(server.address, '/healthz')).status).toBe(200);
  });

  it('answers 503 when a report says ok but a check fails, or when the report throws', async () => {
    let mode: 'inconsistent' | 'throws' = 'inconsistent';
    const { server } = await start({
      health: (): HealthReport => {
        if (mode === 'throws') throw new Error(`report broke ${CANARY}`);
        return { ok: true, checks: { engine: { ok: false, detail: 'unreachable' } } };
      },
    });
    let reply = await send(server.address, '/healthz');
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body).unmet).toEqual(['engine']);
    mode = 'throws';
    reply = await send(server.address, '/healthz');
    expect(reply.status).toBe(503);
    expect(JSON.parse(reply.body)).toEqual({ status: 'fail', unmet: ['report'], checks: {} });
    expect(reply.body).not.toContain(CANARY);
  });

  it('answers 404 for other paths without echoing them, and 405 for other methods', async () => {
    const { server } = await start();
    for (const path of ['/', '/metrics/', '/healthz/x', `/${CANARY}`, '/METRICS']) {
      const reply = await send(server.address, path);
      expect(reply.status, path).toBe(404);
      expect(reply.body).not.toContain(CANARY);
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS']) {
      const reply = await send(server.address, '/metrics', {
        method,
        ...(method === 'POST' || method === 'PUT' ? { body: `value=${CANARY}` } : {}),
      });
      expect(reply.status, method).toBe(405);
      expect(reply.headers.allow).toBe('GET');
      expect(reply.body).not.toContain(CANARY);
    }
  });

  it('refuses an address that is not loopback, with DSO_AGENT_METRICS_ADDRESS', async () => {
    const registry = createMetricsRegistry();
    for (const address of [
      '0.0.0.0:9464',
      '10.1.2.3:9464',
      '[::]:9464',
      '[fe80::1]:9464',
      'example.com:9464',
      '127.0.0.1',
      '127.0.0.1:70000',
      ':9464',
    ]) {
      await expect(
        startObservabilityServer({ address, registry, health: okReport, ready: okReport }),
        address,
      ).rejects.toMatchObject({ code: 'DSO_AGENT_METRICS_ADDRESS' });
    }
  });

  it('listens on localhost as 127.0.0.1, and on [::1] where the host has IPv6 loopback', async () => {
    const { server } = await start({ address: 'localhost:0' });
    expect(server.address).toMatch(/^127\.0\.0\.1:\d+$/);
    const hasV6 = Object.values(networkInterfaces())
      .flat()
      .some((entry) => entry?.address === '::1');
    if (!hasV6) return;
    const { server: v6 } = await start({ address: '[::1]:0' });
    expect(v6.address).toMatch(/^\[::1\]:\d+$/);
    expect((await send(v6.address, '/healthz')).status).toBe(200);
  });

  it('rejects with DSO_AGENT_METRICS_LISTEN_FAILED when the port is taken', async () => {
    const blocker = createNetServer();
    await listenNet(blocker, '127.0.0.1', 0);
    const port = (blocker.address() as { port: number }).port;
    try {
      await expect(
        startObservabilityServer({
          address: `127.0.0.1:${port}`,
          registry: createMetricsRegistry(),
          health: okReport,
          ready: okReport,
        }),
      ).rejects.toMatchObject({ code: 'DSO_AGENT_METRICS_LISTEN_FAILED' });
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('answers /healthz with 100 idle connections open on its port, each one re-opened when closed', async () => {
    const { server } = await start();
    const port = portOf(server.address);
    const held = new Set<Socket>();
    let holding = true;
    // An unprivileged local user holding connections: each one the server closes is re-opened.
    const hold = () => {
      const socket = connect({ host: '127.0.0.1', port });
      held.add(socket);
      socket.on('error', () => undefined); // a cut connection is what the server does here
      socket.on('close', () => {
        held.delete(socket);
        if (holding) hold();
      });
    };
    try {
      for (let index = 0; index < 100; index++) hold();
      const answers: number[] = [];
      for (let attempt = 0; attempt < 20; attempt++) {
        answers.push((await send(server.address, '/healthz')).status);
      }
      expect(answers).toEqual(Array(20).fill(200));
    } finally {
      holding = false;
      for (const socket of held) socket.destroy();
    }
  });

  it('close() releases the port, closes idle kept-alive connections, and is idempotent', async () => {
    const { server } = await start();
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    try {
      const reply = await new Promise<number>((resolve, reject) => {
        const [host, port] = [
          server.address.slice(0, server.address.lastIndexOf(':')),
          portOf(server.address),
        ];
        httpRequest({ host, port, path: '/healthz', agent }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        })
          .on('error', reject)
          .end();
      });
      expect(reply).toBe(200);
      const first = server.close();
      expect(server.close()).toBe(first);
      // Resolves although the client keeps its idle socket: the server closed it.
      await first;
      await server.close();
      const reuse = createNetServer();
      await listenNet(reuse, '127.0.0.1', portOf(server.address));
      await new Promise((resolve) => reuse.close(resolve));
    } finally {
      agent.destroy();
    }
  });

  it('never shows a value, path, reference, container name or log text in /metrics', async () => {
    const redactor = createRedactor();
    redactor.register(`secret-${CANARY}`);
    const lines: string[] = [];
    const logger = createLogger({
      redactor,
      level: 'trace',
      destination: new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    });
    const registry = createMetricsRegistry({ redactor });
    const { server, metrics } = await start({
      registry,
      logger,
      redactor,
      health: () => ({
        ok: false,
        checks: {
          events: { ok: false, detail: `secret-${CANARY} at /run/secrets/${CANARY}` },
          [`/run/secrets/${CANARY}`]: { ok: false },
        },
      }),
    });
    logger.info({ containerName: `web-${CANARY}` }, `log line ${CANARY}`);
    metrics.providerCall(`/run/secrets/${CANARY}`, 'resolve', 5);
    metrics.providerCall(`${CANARY}`, 'resolve', 5);
    metrics.providerCall(
      'vault',
      'resolve',
      5,
      Object.assign(new Error(`read dso://vault:app/${CANARY} failed`), {
        code: `DSO_${CANARY}`,
      }),
    );
    metrics.breakerState(`web-${CANARY}`, 'open');
    // @ts-expect-error an untyped caller passing a path as an event type
    metrics.eventReceived(`/run/secrets/${CANARY}`);
    metrics.trackQueue(() => ({ depth: 1, inFlight: 0, shed: 0, retried: 0, failed: 0 }));
    await send(server.address, `/${CANARY}`, { headers: { 'x-canary': CANARY } });
    await send(server.address, '/metrics', { method: 'POST', body: CANARY });

    const health = await send(server.address, '/healthz');
    expect(health.status).toBe(503);
    // The agent's own detail is shown, redacted and without paths; a check name that is not a
    // word is dropped.
    expect(JSON.parse(health.body).checks).toEqual({
      events: { ok: false, detail: `${REDACTED} at [path]` },
    });
    expect(health.body).not.toContain(CANARY);

    const scrape = await send(server.address, '/metrics');
    expect(scrape.status).toBe(200);
    expect(scrape.body).not.toContain(CANARY);
    expect(scrape.body).not.toContain('/run/secrets');
    expect(scrape.body).toContain(
      'dso_provider_calls_total{provider="other",operation="resolve",outcome="ok"} 2',
    );
    expect(scrape.body).toContain('dso_provider_errors_total{provider="vault",code="other"} 1');
    // The logger did write the canary (so the test could have seen it leak).
    expect(lines.join('')).toContain(CANARY);
  });
});
