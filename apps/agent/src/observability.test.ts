import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { networkInterfaces } from 'node:os';
import { Writable } from 'node:stream';
import {
  createFakeClock,
  createLogger,
  createMetricsRegistry,
  createRedactor,
  METRIC_NAME_PATTERN,
  type MetricsRegistry,
  REDACTED,
} from '@dso/core';
import { ProviderError } from '@dso/provider-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import {
  AGENT_EVENT_TYPES,
  AGENT_METRIC_NAMES,
  type AgentMetrics,
  createAgentHealth,
  createAgentMetrics,
  type HealthReport,
  MAX_PROVIDER_LABELS,
  type ObservabilityServer,
  startObservabilityServer,
} from './observability.js';

const CANARY = 'canary-obs-5f31d8';
const PROMETHEUS_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** A metric's exposition lines (samples only), for exact comparisons. */
async function samples(registry: MetricsRegistry, name: string): Promise<string[]> {
  const text = await registry.getSingleMetricAsString(name);
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

const okReport = (): HealthReport => ({ ok: true, checks: { events: { ok: true } } });

describe('createAgentMetrics', () => {
  it('defines every listed metric, and only those, each with a name core accepts', async () => {
    const registry = createMetricsRegistry();
    createAgentMetrics(registry);
    const defined = registry.getMetricsAsArray().map((metric) => metric.name);
    expect(defined.sort()).toEqual([...AGENT_METRIC_NAMES].sort());
    const text = await registry.metrics();
    for (const name of AGENT_METRIC_NAMES) {
      expect(name).toMatch(METRIC_NAME_PATTERN);
      expect(text).toContain(`# TYPE ${name} `);
      const type = /# TYPE (\S+) (\S+)/.exec(
        text.split('\n').find((line) => line.startsWith(`# TYPE ${name} `))!,
      )![2];
      if (type === 'counter') expect(name).toMatch(/_total$/);
      else expect(name).toMatch(/_(ms|seconds|bytes|ratio|items)$/);
    }
  });

  it('can be created twice on one registry and records into the same series', async () => {
    const registry = createMetricsRegistry();
    createAgentMetrics(registry).eventsReconnecting();
    createAgentMetrics(registry).eventsReconnecting();
    expect(await samples(registry, 'dso_events_reconnects_total')).toEqual([
      'dso_events_reconnects_total 2',
    ]);
  });

  it('counts events by type, with every type present from the start', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.eventReceived('container.started');
    metrics.eventReceived('container.started');
    metrics.eventReceived('resync');
    const lines = await samples(registry, 'dso_events_received_total');
    expect(lines).toContain('dso_events_received_total{type="container.started"} 2');
    expect(lines).toContain('dso_events_received_total{type="resync"} 1');
    expect(lines).toContain('dso_events_received_total{type="container.died"} 0');
    expect(lines).toHaveLength(AGENT_EVENT_TYPES.length);
  });

  it('records injections, rotations and reconciliations with their durations', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.injection('exec', 'ok', 80);
    metrics.injection('host', 'error', 3);
    metrics.rotation('restart', 'rolled_back', 4_000);
    metrics.reconciliation('startup', 'ok', 1_200);
    metrics.managedContainers(7);

    const injections = await samples(registry, 'dso_injection_writes_total');
    expect(injections).toContain('dso_injection_writes_total{method="exec",outcome="ok"} 1');
    expect(injections).toContain('dso_injection_writes_total{method="host",outcome="error"} 1');
    expect(injections).toContain('dso_injection_writes_total{method="host",outcome="ok"} 0');
    expect(await samples(registry, 'dso_injection_duration_ms')).toContain(
      'dso_injection_duration_ms_bucket{le="100",method="exec",outcome="ok"} 1',
    );
    expect(await samples(registry, 'dso_rotation_runs_total')).toContain(
      'dso_rotation_runs_total{policy="restart",outcome="rolled_back"} 1',
    );
    expect(await samples(registry, 'dso_rotation_duration_ms')).toContain(
      'dso_rotation_duration_ms_sum{policy="restart"} 4000',
    );
    expect(await samples(registry, 'dso_reconcile_runs_total')).toContain(
      'dso_reconcile_runs_total{trigger="startup",outcome="ok"} 1',
    );
    expect(await samples(registry, 'dso_reconcile_duration_ms')).toContain(
      'dso_reconcile_duration_ms_count{trigger="startup"} 1',
    );
    expect(await samples(registry, 'dso_containers_managed_items')).toEqual([
      'dso_containers_managed_items 7',
    ]);
  });

  it('records provider calls by outcome, errors by provider code, and breaker states', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry, { providers: ['vault', 'local'] });
    metrics.providerCall('vault', 'resolve', 12);
    metrics.providerCall(
      'vault',
      'resolve',
      30_001,
      new ProviderError('DSO_PROVIDER_TIMEOUT', 'deadline passed', { provider: 'vault' }),
    );
    metrics.providerCall('vault', 'probe', 2, new Error('no code at all'));
    metrics.breakerState('vault', 'open');

    const calls = await samples(registry, 'dso_provider_calls_total');
    expect(calls).toContain(
      'dso_provider_calls_total{provider="vault",operation="resolve",outcome="ok"} 1',
    );
    expect(calls).toContain(
      'dso_provider_calls_total{provider="vault",operation="resolve",outcome="error"} 1',
    );
    expect(calls).toContain(
      'dso_provider_calls_total{provider="vault",operation="probe",outcome="error"} 1',
    );
    const errors = await samples(registry, 'dso_provider_errors_total');
    expect(errors).toEqual([
      'dso_provider_errors_total{provider="vault",code="DSO_PROVIDER_TIMEOUT"} 1',
      'dso_provider_errors_total{provider="vault",code="other"} 1',
    ]);
    expect(await samples(registry, 'dso_provider_call_duration_ms')).toContain(
      'dso_provider_call_duration_ms_count{provider="vault",operation="resolve"} 2',
    );
    const breakers = await samples(registry, 'dso_provider_breakers_items');
    expect(breakers).toContain('dso_provider_breakers_items{provider="vault",state="open"} 1');
    expect(breakers).toContain('dso_provider_breakers_items{provider="vault",state="closed"} 0');
    // Configured providers start out closed.
    expect(breakers).toContain('dso_provider_breakers_items{provider="local",state="closed"} 1');
  });

  it('counts a provider name outside the configured list as other', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry, { providers: ['vault'] });
    metrics.providerCall('my-app-container', 'resolve', 1);
    metrics.providerCall('/run/secrets/db', 'resolve', 1);
    const calls = await samples(registry, 'dso_provider_calls_total');
    expect(calls).toEqual([
      'dso_provider_calls_total{provider="other",operation="resolve",outcome="ok"} 2',
    ]);
  });

  it('without a list, takes names that follow the config rule, up to a bound', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.providerCall('app/db/password', 'resolve', 1);
    metrics.providerCall('dso://vault:app/db#password', 'resolve', 1);
    for (let i = 0; i < MAX_PROVIDER_LABELS + 10; i += 1) {
      metrics.providerCall(`p${i}`, 'resolve', 1);
    }
    const providers = new Set(
      (await samples(registry, 'dso_provider_calls_total')).map(
        (line) => /provider="([^"]*)"/.exec(line)![1],
      ),
    );
    expect(providers.size).toBe(MAX_PROVIDER_LABELS + 1);
    expect(providers).toContain('other');
    expect(providers).toContain('p0');
    expect(providers).not.toContain(`p${MAX_PROVIDER_LABELS}`);
  });

  it('takes only fixed label values: a path or a container name does not type-check, and is counted as other at run time', async () => {
    const registry = createMetricsRegistry();
    const metrics: AgentMetrics = createAgentMetrics(registry);
    // @ts-expect-error an event type is one of AGENT_EVENT_TYPES
    metrics.eventReceived('/var/run/secrets/db');
    // @ts-expect-error an outcome is ok or error
    metrics.injection('exec', 'my-app-container', 1);
    // @ts-expect-error a method is exec or host
    metrics.injection('/run/secrets', 'ok', 1);
    // @ts-expect-error an operation is one of PROVIDER_OPERATIONS
    metrics.providerCall('vault', 'app/db/password', 1);
    // @ts-expect-error a rotation policy is one of ROTATION_POLICIES
    metrics.rotation('web-1', 'ok', 1);
    // @ts-expect-error a trigger is one of RECONCILE_TRIGGERS
    metrics.reconciliation('4f1c2a9e0b7d', 'ok', 1);
    // @ts-expect-error a breaker state is closed, half_open or open
    metrics.breakerState('vault', 'dso://vault:app/db');

    const text = await registry.metrics();
    for (const foreign of ['/var/run', 'my-app-container', '/run/secrets', 'app/db', 'web-1']) {
      expect(text).not.toContain(foreign);
    }
    expect(text).not.toContain('4f1c2a9e0b7d');
    expect(text).toContain('dso_events_received_total{type="other"} 1');
  });

  it('samples the queue and the cache when scraped, turning their running counts into counters', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    const queue = { depth: 3, inFlight: 2, shed: 5, retried: 1, failed: 0 };
    const cache = {
      hits: 10,
      misses: 4,
      evictions: 2,
      expirations: 1,
      staleServed: 3,
      entries: 6,
      bytes: 4_096,
    };
    metrics.trackQueue(() => queue);
    metrics.trackCache(() => cache);
    const text = await registry.metrics();
    expect(text).toContain('dso_queue_depth_items 3');
    expect(text).toContain('dso_queue_inflight_items 2');
    expect(text).toContain('dso_queue_shed_total 5');
    expect(text).toContain('dso_queue_retries_total 1');
    expect(text).toContain('dso_cache_hits_total 10');
    expect(text).toContain('dso_cache_misses_total 4');
    expect(text).toContain('dso_cache_evictions_total{reason="capacity"} 2');
    expect(text).toContain('dso_cache_evictions_total{reason="expired"} 1');
    expect(text).toContain('dso_cache_stale_served_total 3');
    expect(text).toContain('dso_cache_entries_items 6');
    expect(text).toContain('dso_cache_size_bytes 4096');

    queue.depth = 0;
    queue.shed = 8;
    cache.hits = 15;
    const again = await registry.metrics();
    expect(again).toContain('dso_queue_depth_items 0');
    expect(again).toContain('dso_queue_shed_total 8');
    expect(again).toContain('dso_cache_hits_total 15');

    // A new source starts from its own zero: its counts add to the counters.
    metrics.trackQueue(() => ({ depth: 1, inFlight: 0, shed: 2, retried: 0, failed: 0 }));
    expect(await registry.metrics()).toContain('dso_queue_shed_total 10');
  });

  it('keeps the last values when a tracked source throws', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    let broken = false;
    metrics.trackQueue(() => {
      if (broken) throw new Error('queue closed');
      return { depth: 4, inFlight: 1, shed: 0, retried: 0, failed: 0 };
    });
    expect(await registry.metrics()).toContain('dso_queue_depth_items 4');
    broken = true;
    expect(await registry.metrics()).toContain('dso_queue_depth_items 4');
  });

  it('ignores durations that are not finite non-negative numbers', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.injection('exec', 'ok', Number.NaN);
    metrics.injection('exec', 'ok', -1);
    metrics.managedContainers(Number.POSITIVE_INFINITY);
    expect(await samples(registry, 'dso_injection_writes_total')).toContain(
      'dso_injection_writes_total{method="exec",outcome="ok"} 2',
    );
    expect(await registry.getSingleMetricAsString('dso_injection_duration_ms')).not.toContain(
      '_count{method="exec"',
    );
    expect(await samples(registry, 'dso_containers_managed_items')).toEqual([
      'dso_containers_managed_items 0',
    ]);
  });
});

describe('createAgentHealth', () => {
  it('is live until the events stream has been down longer than the limit', () => {
    const clock = createFakeClock();
    const health = createAgentHealth({ clock, eventsDownLimitMs: 60_000 });
    expect(health.health()).toEqual({ ok: true, checks: { events: { ok: true } } });
    health.eventsConnected();
    health.eventsLost();
    clock.advance(30_000);
    health.eventsLost(); // a second attempt does not restart the count
    clock.advance(30_000);
    expect(health.health().ok).toBe(true);
    clock.advance(1);
    const report = health.health();
    expect(report.ok).toBe(false);
    expect(report.checks.events).toEqual({
      ok: false,
      detail: 'events stream down for 60 s (limit 60 s)',
    });
    health.eventsConnected();
    expect(health.health().ok).toBe(true);
  });

  it('is ready once watching and reconciled, and not while stopping', () => {
    const health = createAgentHealth({ clock: createFakeClock() });
    const unmet = () =>
      Object.entries(health.ready().checks)
        .filter(([, check]) => !check.ok)
        .map(([name]) => name);
    expect(health.ready().ok).toBe(false);
    expect(unmet()).toEqual(['watching', 'reconciled']);
    health.eventsConnected();
    expect(unmet()).toEqual(['reconciled']);
    health.reconciled();
    expect(health.ready().ok).toBe(true);
    expect(unmet()).toEqual([]);
    health.stopping();
    expect(health.ready().ok).toBe(false);
    expect(unmet()).toEqual(['running']);
  });

  it('refuses a negative limit', () => {
    expect(() => createAgentHealth({ eventsDownLimitMs: -1 })).toThrow(RangeError);
  });
});

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
