import { mkdtemp, rm } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  createLogger,
  createRedactor,
  formatReference,
  type Logger,
  type SecretReference,
} from '@dso/core';
import { SecretValue } from '@dso/provider-sdk';
import { afterEach, beforeEach, vi } from 'vitest';
import type { AgentEvent, AgentStatus, ResolvedEnvironmentValue } from '../../agent.js';
import { type ApiServer, type ApiServerOptions, startApiServer } from '../server.js';

// What the API's tests share: a fake agent, a server on a socket in a private directory, a
// caller, and a wait with a deadline.

export const CANARY = 'canary-api-server-7d2e91';

/** A private directory (mkdtemp: 0700), the socket path in it, and a logger whose lines are kept. */
export async function createApiTestContext(): Promise<{
  dir: string;
  socketPath: string;
  lines: string[];
  logger: Logger;
}> {
  // mkdtemp makes it 0700: whatever a test does to a socket's mode, nobody else reaches it.
  const dir = await mkdtemp(join(tmpdir(), 'dso-api-'));
  const socketPath = join(dir, 'run', 'agent.sock');
  const lines: string[] = [];
  const redactor = createRedactor();
  redactor.register(CANARY);
  const logger = createLogger({
    level: 'debug',
    redactor,
    destination: new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  });
  return { dir, socketPath, lines, logger };
}

export const STATUS: AgentStatus = {
  startedAt: 1_700_000_000_000,
  containers: [
    {
      id: 'a'.repeat(64),
      files: [{ name: 'db', reference: 'dsofile://app/db', provider: 'local', version: '3' }],
      deliveredAt: 1_700_000_001_000,
      lastAction: { trigger: 'started', at: 1_700_000_001_000, outcome: 'delivered' },
    },
    {
      id: 'b'.repeat(64),
      lastAction: {
        trigger: 'periodic',
        at: 1_700_000_002_000,
        outcome: 'failed',
        code: 'DSO_PROVIDER_NOT_FOUND',
        reference: 'dsofile://app/missing',
      },
    },
  ],
  queue: { depth: 1, inFlight: 2, shed: 0 },
  cache: { entries: 4, hits: 10, misses: 3, staleServed: 1 },
};

export type ApiAgent = ApiServerOptions['agent'];

/** What the fake agent resolves each path to, as text. */
export const VALUES: Record<string, string> = {};
export const CANARY_EVENTS = 'canary-events-4b1d';

export function fakeAgent(overrides: Partial<ApiAgent> = {}) {
  const calls = {
    status: 0,
    reconcile: 0,
    rotate: [] as Array<{ containerId?: string } | undefined>,
    resolve: [] as string[][],
    signals: [] as AbortSignal[],
    resolved: [] as SecretValue[],
  };
  const listeners = new Set<(event: AgentEvent) => void>();
  const agent: ApiAgent = {
    status: () => {
      calls.status += 1;
      return structuredClone(STATUS);
    },
    reconcile: async () => {
      calls.reconcile += 1;
      return { containers: 2 };
    },
    rotate: async (selector) => {
      calls.rotate.push(selector);
      return { containers: selector?.containerId === undefined ? 4 : 1, secrets: 3 };
    },
    resolveEnvironment: async (references: readonly SecretReference[], options = {}) => {
      calls.resolve.push(references.map(formatReference));
      if (options.signal) calls.signals.push(options.signal);
      return references.map((reference): ResolvedEnvironmentValue => {
        const value = SecretValue.fromText(VALUES[reference.path] ?? `value-of-${reference.path}`);
        calls.resolved.push(value);
        return {
          reference: formatReference(reference),
          provider: reference.provider ?? 'local',
          version: '7',
          value,
        };
      });
    },
    // A path under `missing/` is not in its store.
    checkReferences: async (references: readonly SecretReference[]) =>
      references.map((reference) => ({
        reference: formatReference(reference),
        provider: reference.provider ?? 'local',
        ...(reference.path.startsWith('missing/')
          ? { code: 'DSO_PROVIDER_NOT_FOUND', error: `no secret at ${reference.path}` }
          : { version: '7' }),
      })),
    subscribe: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    ...overrides,
  };
  return { agent, calls, listeners };
}

/** Starts a server with a fake agent and mode 0660, remembered in `servers` to close. */
/** What {@link createApiTestContext} gives each test. */
export type ApiTestContext = Awaited<ReturnType<typeof createApiTestContext>>;

/**
 * The hooks every API test file needs: a fresh context (folder, socket path, logger and its
 * lines) before each test, handed to `onContext`; the servers started by `start` closed and the
 * folder removed after it. `call` talks to the current socket.
 */
export function useApiTestServer(onContext: (context: ApiTestContext) => void) {
  let current: ApiTestContext | undefined;
  const servers: ApiServer[] = [];
  beforeEach(async () => {
    current = await createApiTestContext();
    onContext(current);
  });
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((server) => server.close()));
    if (current !== undefined) await rm(current.dir, { recursive: true, force: true });
  });
  const context = () => {
    if (current === undefined) throw new Error('no API test context: call start/call in a test');
    return current;
  };
  return {
    start: (options: Partial<ApiServerOptions> = {}) =>
      startTestServer(servers, {
        socketPath: context().socketPath,
        logger: context().logger,
        ...options,
      }),
    call: (method: string, path: string, options?: Parameters<typeof callApi>[3]) =>
      callApi(context().socketPath, method, path, options),
  };
}

export async function startTestServer(
  servers: ApiServer[],
  options: Partial<ApiServerOptions> & Pick<ApiServerOptions, 'socketPath' | 'logger'>,
): Promise<ApiServer> {
  const server = await startApiServer({
    socketMode: 0o660,
    agent: fakeAgent().agent,
    ...options,
  });
  servers.push(server);
  return server;
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

export function callApi(
  socketPath: string,
  method: string,
  path: string,
  options: { body?: string | Buffer; headers?: Record<string, string>; chunked?: boolean } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { socketPath, method, path, headers: options.headers, agent: false },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined; // the assertion on `text` or `json` then says what came back
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json });
        });
      },
    );
    req.on('error', reject);
    if (options.chunked && options.body !== undefined) {
      // Two writes without a Content-Length: node sends them chunked.
      const body = Buffer.from(options.body);
      req.write(body.subarray(0, body.length / 2));
      req.end(body.subarray(body.length / 2));
    } else {
      req.end(options.body);
    }
  });
}

/** Waits for a condition with a deadline: the request log is written when a response closes. */
export async function eventually(check: () => boolean, deadlineMs = 2_000): Promise<void> {
  await vi.waitFor(
    () => {
      if (!check()) throw new Error('condition not met in time');
    },
    { timeout: deadlineMs, interval: 10 },
  );
}

export const json = (value: unknown) => ({
  body: JSON.stringify(value),
  headers: { 'Content-Type': 'application/json' },
});

export function isDisposed(value: SecretValue): boolean {
  try {
    value.reveal();
    return false;
  } catch {
    return true; // reveal() throws once disposed
  }
}
