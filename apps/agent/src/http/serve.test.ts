import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { createLogger, createRedactor } from '@dso/core';
import { afterEach, describe, expect, it } from 'vitest';
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
afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
});

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
    expect(http.server.maxConnections).toBe(3);
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
