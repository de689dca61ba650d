import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger, createRedactor } from '@dso/core';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createHttpServer,
  DEFAULT_HTTP_LIMITS,
  type HttpServer,
  type HttpServerOptions,
  pathnameOf,
  readBody,
  sendBody,
} from './serve.js';

const CANARY = 'canary-serve-61c0';
const servers: HttpServer[] = [];
const sockets: Socket[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

/** A raw connection that sends nothing (or what the test writes): an idle or slow client. */
async function idleConnection(port: number): Promise<Socket> {
  const socket = connect({ host: '127.0.0.1', port });
  // The server may cut it: its reset is the expected end, not a test failure.
  socket.on('error', () => undefined);
  sockets.push(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve).once('error', reject);
  });
  return socket;
}

async function serve(options: Partial<HttpServerOptions> = {}) {
  const http = createHttpServer({
    name: 'test',
    handle: async (_request, response) => sendBody(response, 200, 'text/plain', 'ok'),
    internalError: '{"error":"internal"}',
    ...options,
  });
  servers.push(http);
  await http.listen({ host: '127.0.0.1', port: 0 });
  return { http, port: (http.server.address() as AddressInfo).port };
}

function get(
  port: number,
  path: string,
  body?: string,
): Promise<{ status: number; headers: Record<string, unknown>; text: string }> {
  return new Promise((resolve, reject) => {
    httpRequest(
      { host: '127.0.0.1', port, path, method: body === undefined ? 'GET' : 'POST', agent: false },
      (response) => {
        let text = '';
        response.setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk;
        });
        response.on('end', () =>
          resolve({ status: response.statusCode ?? 0, headers: response.headers, text }),
        );
      },
    )
      .on('error', reject)
      .end(body);
  });
}

describe('createHttpServer', () => {
  it('applies the limits to the node server', async () => {
    const { http } = await serve({ limits: { maxConnections: 3 } });
    // Node's own cap drops new connections: it only bounds those being closed or answered 503.
    expect(http.server.maxConnections).toBe((3 + DEFAULT_HTTP_LIMITS.connectionBurst) * 2);
    expect(http.server.headersTimeout).toBe(DEFAULT_HTTP_LIMITS.headersTimeoutMs);
    expect(http.server.requestTimeout).toBe(DEFAULT_HTTP_LIMITS.requestTimeoutMs);
    expect(http.server.keepAliveTimeout).toBe(DEFAULT_HTTP_LIMITS.keepAliveTimeoutMs);
    expect(http.server.maxHeadersCount).toBe(DEFAULT_HTTP_LIMITS.maxHeadersCount);
    expect(http.server.maxRequestsPerSocket).toBe(DEFAULT_HTTP_LIMITS.maxRequestsPerSocket);
  });

  it('answers a throwing handler 500 with the fixed body, and logs the failure under its name', async () => {
    const lines: string[] = [];
    const redactor = createRedactor();
    const logger = createLogger({
      redactor,
      destination: new Writable({
        write(chunk, _encoding, done) {
          lines.push(String(chunk));
          done();
        },
      }),
    });
    const { port } = await serve({
      logger,
      handle: async () => {
        throw new Error(`handler broke on ${CANARY}`);
      },
    });
    const answer = await get(port, '/');
    expect(answer).toMatchObject({ status: 500, text: '{"error":"internal"}' });
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(answer.headers['x-content-type-options']).toBe('nosniff');
    expect(lines.some((line) => line.includes('"msg":"test request failed"'))).toBe(true);
  });

  it('ends the onClose streams, then closes; close() returns one promise and works unstarted', async () => {
    let ended = 0;
    const { http } = await serve({ onClose: () => ended++ });
    const first = http.close();
    expect(http.close()).toBe(first);
    await first;
    expect(ended).toBe(1);
    expect(http.server.listening).toBe(false);
    const unstarted = createHttpServer({
      name: 'idle',
      handle: async () => undefined,
      internalError: '{}',
    });
    await expect(unstarted.close()).resolves.toBeUndefined();
  });
});

describe('createHttpServer: connections', () => {
  it('answers a new request while maxConnections idle connections are open, closing the one idle the longest', async () => {
    const { http, port } = await serve({ limits: { maxConnections: 4, evictAfterMs: 0 } });
    const idle: Socket[] = [];
    for (let index = 0; index < 12; index++) idle.push(await idleConnection(port));
    expect(await get(port, '/')).toMatchObject({ status: 200, text: 'ok' });
    // The oldest went first: the last ones opened are still there.
    await vi.waitFor(() => expect(idle.slice(0, 9).every((socket) => socket.closed)).toBe(true));
    expect(idle.slice(-2).some((socket) => socket.closed)).toBe(false);
    expect(http.connectionStats().evicted).toBeGreaterThanOrEqual(9);
  });

  it('closes connections that never sent a request before a kept-alive one, which a client reuses', async () => {
    const { http, port } = await serve({ limits: { maxConnections: 4, evictAfterMs: 0 } });
    const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
    const viaAgent = () =>
      new Promise<{ status: number; reused: boolean }>((resolve, reject) => {
        const request = httpRequest({ host: '127.0.0.1', port, path: '/', agent }, (response) => {
          response.resume();
          response.on('end', () =>
            resolve({ status: response.statusCode ?? 0, reused: request.reusedSocket }),
          );
        });
        request.on('error', reject).end();
      });
    try {
      expect(await viaAgent()).toEqual({ status: 200, reused: false });
      // Idle connections past the cap: each new one closes an older unused one, never the
      // kept-alive connection, although it is the oldest.
      for (let index = 0; index < 8; index++) await idleConnection(port);
      await vi.waitFor(() => expect(http.connectionStats().evicted).toBe(5));
      expect(await viaAgent()).toEqual({ status: 200, reused: true });
    } finally {
      agent.destroy();
    }
  });

  it('never closes a connection idle for less than evictAfterMs: lets the new one in past the cap, up to the burst, then answers 503', async () => {
    const { http, port } = await serve({
      limits: { maxConnections: 2, connectionBurst: 2, evictAfterMs: 60_000 },
    });
    const young: Socket[] = [];
    for (let index = 0; index < 3; index++) young.push(await idleConnection(port));
    // Past the cap, none old enough to close: the caller is let in and answered.
    expect(await get(port, '/')).toMatchObject({ status: 200 });
    young.push(await idleConnection(port));
    await vi.waitFor(() => expect(http.connectionStats().open).toBe(4));
    // The burst is used up too: busy.
    expect(await get(port, '/')).toMatchObject({ status: 503 });
    expect(young.some((socket) => socket.closed)).toBe(false);
    expect(http.connectionStats()).toMatchObject({ evicted: 0, busy: 1 });
  });

  it('never closes a connection with a request in progress; answers 503 with the busy body when all have one', async () => {
    let release: () => void = () => undefined;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { http, port } = await serve({
      limits: { maxConnections: 2, evictAfterMs: 0 },
      busyBody: '{"error":"busy: try again","code":"DSO_TEST_BUSY"}',
      handle: async (request, response) => {
        if (request.url === '/hold') await held;
        sendBody(response, 200, 'text/plain', 'ok');
      },
    });
    const first = get(port, '/hold');
    const idle = await idleConnection(port);
    await vi.waitFor(() => expect(http.connectionStats().open).toBe(2));
    // The idle one makes room; the request in progress keeps its connection.
    const second = get(port, '/hold');
    await vi.waitFor(() => expect(idle.closed).toBe(true));
    await vi.waitFor(() => expect(http.connectionStats()).toMatchObject({ open: 2, evicted: 1 }));
    const busy = await get(port, '/');
    expect(busy).toMatchObject({
      status: 503,
      text: '{"error":"busy: try again","code":"DSO_TEST_BUSY"}',
    });
    expect(busy.headers.connection).toBe('close');
    release();
    expect(await first).toMatchObject({ status: 200 });
    expect(await second).toMatchObject({ status: 200 });
    expect(await get(port, '/')).toMatchObject({ status: 200 });
  });

  it('closes a connection that sends nothing headersTimeoutMs after it opened', async () => {
    const { http, port } = await serve({
      limits: { headersTimeoutMs: 200, requestTimeoutMs: 60_000 },
    });
    const silent = await idleConnection(port);
    await vi.waitFor(() => expect(silent.closed).toBe(true), { timeout: 5_000 });
    expect(http.connectionStats().headersTimedOut).toBe(1);
  });

  it('cuts off slow-loris clients: at the cap for a new caller, and all headersTimeoutMs after they opened', async () => {
    const { http, port } = await serve({
      limits: {
        maxConnections: 4,
        evictAfterMs: 0,
        headersTimeoutMs: 1_000,
        requestTimeoutMs: 60_000,
      },
    });
    const slow: Socket[] = [];
    for (let index = 0; index < 8; index++) {
      const socket = await idleConnection(port);
      socket.write('GET / HTTP/1.1\r\n');
      slow.push(socket);
    }
    const trickle = setInterval(() => {
      for (const socket of slow) if (!socket.closed) socket.write('X-A: b\r\n');
    }, 50);
    try {
      // Their headers never end, yet a normal caller gets its answer at once.
      expect(await get(port, '/')).toMatchObject({ status: 200 });
      await vi.waitFor(() => expect(slow.every((socket) => socket.closed)).toBe(true), {
        timeout: 5_000,
      });
    } finally {
      clearInterval(trickle);
    }
    const stats = http.connectionStats();
    expect(stats.evicted + stats.headersTimedOut).toBe(8);
    expect(stats.headersTimedOut).toBeGreaterThanOrEqual(1);
  });
});

describe('readBody and pathnameOf', () => {
  it('reads a body up to its limit, drops it when not kept, and refuses a larger one', async () => {
    const seen: Array<string | undefined> = [];
    const { port } = await serve({
      handle: async (request, response) => {
        const keep = request.url === '/keep';
        const body = await readBody(request, 8, keep);
        seen.push(body?.toString('utf8'));
        if (body === undefined) response.shouldKeepAlive = false;
        sendBody(response, body === undefined ? 413 : 200, 'text/plain', '');
      },
    });
    expect((await get(port, '/keep', '12345678')).status).toBe(200);
    expect((await get(port, '/drop', '12345678')).status).toBe(200);
    expect((await get(port, '/keep', '123456789')).status).toBe(413);
    expect(seen).toEqual(['12345678', '', undefined]);
  });

  it('routes on the path alone', () => {
    expect(pathnameOf('/v1/status?x=1')).toBe('/v1/status');
    expect(pathnameOf('/metrics')).toBe('/metrics');
    expect(pathnameOf(undefined)).toBe('/');
  });
});
