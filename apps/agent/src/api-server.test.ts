import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import {
  createLogger,
  createRedactor,
  DsoError,
  formatReference,
  type Logger,
  type SecretReference,
} from '@dso/core';
import { SecretValue } from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AgentEvent, AgentStatus, ResolvedEnvironmentValue } from './agent.js';
import {
  API_MAX_BODY_BYTES,
  API_MAX_RESOLVE_BODY_BYTES,
  API_MAX_RESOLVE_REFERENCES,
  type ApiResolveResult,
  type ApiServer,
  type ApiServerOptions,
  type ApiStatus,
  startApiServer,
} from './api-server.js';

const CANARY = 'canary-api-server-7d2e91';

let dir: string;
let socketPath: string;
let lines: string[];
let logger: Logger;
const servers: ApiServer[] = [];

beforeEach(async () => {
  // mkdtemp makes it 0700: whatever a test does to a socket's mode, nobody else reaches it.
  dir = await mkdtemp(join(tmpdir(), 'dso-api-'));
  socketPath = join(dir, 'run', 'agent.sock');
  lines = [];
  const redactor = createRedactor();
  redactor.register(CANARY);
  logger = createLogger({
    level: 'debug',
    redactor,
    destination: new Writable({
      write(chunk, _encoding, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  });
});

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()));
  await rm(dir, { recursive: true, force: true });
});

const STATUS: AgentStatus = {
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

type ApiAgent = ApiServerOptions['agent'];

/** What the fake agent resolves each path to, as text. */
const VALUES: Record<string, string> = {};
const CANARY_EVENTS = 'canary-events-4b1d';

function fakeAgent(overrides: Partial<ApiAgent> = {}) {
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
    subscribe: (listener) => {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    ...overrides,
  };
  return { agent, calls, listeners };
}

async function start(options: Partial<ApiServerOptions> = {}): Promise<ApiServer> {
  const server = await startApiServer({
    socketPath,
    socketMode: 0o660,
    agent: fakeAgent().agent,
    logger,
    ...options,
  });
  servers.push(server);
  return server;
}

interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
  json: unknown;
}

function call(
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
async function eventually(check: () => boolean, deadlineMs = 2_000): Promise<void> {
  const until = Date.now() + deadlineMs;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('startApiServer: the socket', () => {
  it('creates a missing directory 0755 and a socket whose mode is exactly socketMode', async () => {
    await start({ socketMode: 0o660 });
    const socket = await lstat(socketPath);
    expect(socket.isSocket()).toBe(true);
    expect(socket.mode & 0o7777).toBe(0o660);
    expect((await stat(join(dir, 'run'))).mode & 0o777).toBe(0o755);
    // Nothing left of the staging directory.
    expect(await readdir(join(dir, 'run'))).toEqual(['agent.sock']);
  });

  it('applies another mode exactly, and leaves an existing directory mode alone', async () => {
    const existing = join(dir, 'private');
    await mkdir(existing);
    await chmod(existing, 0o700);
    socketPath = join(existing, 'agent.sock');
    await start({ socketMode: 0o600 });
    expect((await lstat(socketPath)).mode & 0o7777).toBe(0o600);
    expect((await stat(existing)).mode & 0o777).toBe(0o700);
  });

  it('gives the socket to a numeric group', async () => {
    const gid = process.getgid!();
    await start({ socketGroup: gid });
    expect((await lstat(socketPath)).gid).toBe(gid);
  });

  it.runIf(process.getuid?.() === 0)(
    'gives the socket to a group named in the group file (as root: any gid)',
    async () => {
      const groupFile = join(dir, 'group');
      await writeFile(groupFile, 'root:x:0:\ndso-test:x:4242:alice,bob\n');
      await start({ socketGroup: 'dso-test', groupFile });
      expect((await lstat(socketPath)).gid).toBe(4242);
    },
  );

  it('rejects an unknown group with DSO_AGENT_API_GROUP and leaves no socket', async () => {
    const groupFile = join(dir, 'group');
    await writeFile(groupFile, 'root:x:0:\n');
    await expect(start({ socketGroup: 'no-such-group', groupFile })).rejects.toMatchObject({
      code: 'DSO_AGENT_API_GROUP',
      message: expect.stringContaining('no-such-group'),
    });
    await expect(lstat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.skipIf(process.getuid?.() === 0)(
    'rejects a group the agent is not in with DSO_AGENT_API_GROUP (not as root)',
    async () => {
      await expect(start({ socketGroup: 0 })).rejects.toMatchObject({
        code: 'DSO_AGENT_API_GROUP',
      });
      expect(await readdir(join(dir, 'run'))).toEqual([]);
    },
  );

  it('refuses a second server on the same path with DSO_AGENT_API_IN_USE; the first keeps serving', async () => {
    await start();
    const before = await lstat(socketPath);
    await expect(start()).rejects.toMatchObject({ code: 'DSO_AGENT_API_IN_USE' });
    const after = await lstat(socketPath);
    expect(after.ino).toBe(before.ino);
    expect((await call('GET', '/v1/health')).status).toBe(200);
    expect(await readdir(join(dir, 'run'))).toEqual(['agent.sock']);
  });

  it('replaces a stale socket file nothing listens on', async () => {
    // A socket file with no listener: bound elsewhere, renamed into place, then closed (node
    // unlinks only the name it bound).
    await mkdir(join(dir, 'run'));
    const bound = join(dir, 'old.sock');
    const old = createNetServer();
    await new Promise<void>((resolve) => old.listen(bound, resolve));
    await rename(bound, socketPath);
    await new Promise<void>((resolve) => old.close(() => resolve()));
    const stale = await lstat(socketPath);
    expect(stale.isSocket()).toBe(true);

    await start();
    expect((await lstat(socketPath)).ino).not.toBe(stale.ino);
    expect((await call('GET', '/v1/health')).json).toEqual({ ok: true });
    expect(lines.some((line) => line.includes('stale api socket removed'))).toBe(true);
  });

  it('refuses a path that is a regular file, and leaves it alone', async () => {
    await mkdir(join(dir, 'run'));
    await writeFile(socketPath, 'not a socket');
    await expect(start()).rejects.toMatchObject({ code: 'DSO_AGENT_API_PATH_TAKEN' });
    expect((await lstat(socketPath)).isFile()).toBe(true);
    expect(await readdir(join(dir, 'run'))).toEqual(['agent.sock']);
  });

  it('refuses a relative or overlong path with DSO_AGENT_API_SOCKET_PATH', async () => {
    await expect(start({ socketPath: 'run/agent.sock' })).rejects.toMatchObject({
      code: 'DSO_AGENT_API_SOCKET_PATH',
    });
    await expect(start({ socketPath: `/${'d'.repeat(100)}/a.sock` })).rejects.toMatchObject({
      code: 'DSO_AGENT_API_SOCKET_PATH',
    });
    // Short enough itself, but its staging path (`<dir>/.api-XXXXXX/s`) would not be.
    await expect(start({ socketPath: `/${'d'.repeat(94)}/a` })).rejects.toMatchObject({
      code: 'DSO_AGENT_API_SOCKET_PATH',
      message: expect.stringContaining('too deep'),
    });
  });

  it('close() removes the socket file, stops answering, and is idempotent', async () => {
    const server = await start();
    expect(server.path).toBe(socketPath);
    await Promise.all([server.close(), server.close()]);
    await server.close();
    await expect(lstat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(call('GET', '/v1/health')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('close() leaves a file that is no longer its own', async () => {
    const server = await start();
    await rm(socketPath);
    await writeFile(socketPath, 'someone else');
    await server.close();
    expect((await lstat(socketPath)).isFile()).toBe(true);
  });
});

describe('startApiServer: routes', () => {
  it('GET /v1/status answers the status and the providers, field by field', async () => {
    await start({
      providers: () => [
        {
          name: 'local',
          type: 'local',
          state: { status: 'ready', breaker: 'closed', pid: 1234, restarts: 0, inFlight: 0 },
        },
        { name: 'env', type: 'env' },
      ],
    });
    const answer = await call('GET', '/v1/status');
    expect(answer.status).toBe(200);
    expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(answer.headers['cache-control']).toBe('no-store');
    const expected: ApiStatus = {
      ...STATUS,
      startedAt: STATUS.startedAt ?? null,
      providers: [
        {
          name: 'local',
          type: 'local',
          state: { status: 'ready', breaker: 'closed', pid: 1234, restarts: 0, inFlight: 0 },
        },
        { name: 'env', type: 'env' },
      ],
    };
    expect(answer.json).toEqual(expected);
  });

  it('GET /v1/status says startedAt null before the agent started, and providers [] without a source', async () => {
    const { agent } = fakeAgent({
      status: () => ({ ...structuredClone(STATUS), startedAt: undefined, containers: [] }),
    });
    await start({ agent });
    expect((await call('GET', '/v1/status')).json).toMatchObject({
      startedAt: null,
      containers: [],
      providers: [],
    });
  });

  it('POST /v1/reconcile queues through the agent and answers 202 with the count', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent });
    const answer = await call('POST', '/v1/reconcile');
    expect(answer).toMatchObject({ status: 202, json: { containers: 2 } });
    expect(calls.reconcile).toBe(1);
  });

  it('runs one reconciliation for callers that ask at the same time', async () => {
    let release: (value: { containers: number }) => void = () => {};
    const { agent, calls } = fakeAgent({
      reconcile: () => {
        calls.reconcile += 1;
        return new Promise((resolve) => {
          release = resolve;
        });
      },
    });
    await start({ agent });
    const answers = Promise.all([call('POST', '/v1/reconcile'), call('POST', '/v1/reconcile')]);
    await eventually(() => lines.some((line) => line.includes('reconcile already running')));
    release({ containers: 5 });
    for (const answer of await answers)
      expect(answer).toMatchObject({ status: 202, json: { containers: 5 } });
    expect(calls.reconcile).toBe(1);
    // Once it settled, the next caller starts a new one.
    const next = call('POST', '/v1/reconcile');
    await eventually(() => calls.reconcile === 2);
    release({ containers: 1 });
    expect(await next).toMatchObject({ status: 202, json: { containers: 1 } });
  });

  it('answers 503 with the code when the agent is not running', async () => {
    const { agent } = fakeAgent({
      reconcile: async () => {
        throw new DsoError(
          'DSO_AGENT_NOT_RUNNING',
          'the agent is not running: nothing to reconcile',
        );
      },
    });
    await start({ agent });
    expect(await call('POST', '/v1/reconcile')).toMatchObject({
      status: 503,
      json: {
        code: 'DSO_AGENT_NOT_RUNNING',
        error: 'the agent is not running: nothing to reconcile',
      },
    });
  });

  it('GET /v1/health answers { ok: true }', async () => {
    await start();
    expect(await call('GET', '/v1/health')).toMatchObject({ status: 200, json: { ok: true } });
  });

  it('answers 404 for an unknown path and 405 with Allow for a wrong method', async () => {
    await start();
    expect(await call('GET', '/v1/secrets')).toMatchObject({
      status: 404,
      json: { code: 'DSO_AGENT_API_NOT_FOUND' },
    });
    expect((await call('GET', '/')).status).toBe(404);
    expect((await call('GET', '/v1/status/')).status).toBe(404);
    const post = await call('POST', '/v1/status');
    expect(post).toMatchObject({ status: 405, json: { code: 'DSO_AGENT_API_METHOD' } });
    expect(post.headers.allow).toBe('GET');
    const get = await call('GET', '/v1/reconcile');
    expect(get.status).toBe(405);
    expect(get.headers.allow).toBe('POST');
    expect((await call('DELETE', '/v1/health')).status).toBe(405);
  });

  it('ignores a query string when routing', async () => {
    await start();
    expect((await call('GET', '/v1/health?verbose=1')).status).toBe(200);
  });

  it('answers 413 for a body over 1 KiB, announced or chunked, and does not act on it', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent });
    const big = 'x'.repeat(API_MAX_BODY_BYTES + 1);
    const announced = await call('POST', '/v1/reconcile', {
      body: big,
      headers: { 'Content-Type': 'application/json' },
    });
    expect(announced).toMatchObject({
      status: 413,
      json: { code: 'DSO_AGENT_API_BODY_TOO_LARGE' },
    });
    expect(announced.headers.connection).toBe('close');
    const chunked = await call('POST', '/v1/reconcile', { body: big, chunked: true });
    expect(chunked.status).toBe(413);
    // Node's client sends a GET body without a length unless told: say it.
    const get = await call('GET', '/v1/status', {
      body: big,
      headers: { 'Content-Length': String(big.length) },
    });
    expect(get.status).toBe(413);
    expect(calls.reconcile).toBe(0);
  });

  it('discards a small body unread and answers as without one', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent });
    const body = JSON.stringify({ provider: { type: 'file', config: { path: '/etc/shadow' } } });
    expect(await call('POST', '/v1/reconcile', { body })).toMatchObject({
      status: 202,
      json: { containers: 2 },
    });
    expect(calls.reconcile).toBe(1);
  });

  it('logs each request at debug with method, route, status and duration, never the URL', async () => {
    await start();
    await call('GET', '/v1/status?token=query-text-91');
    await call('GET', '/private/path-text-92');
    await eventually(() => lines.filter((line) => line.includes('"api request"')).length >= 2);
    const requests = lines
      .filter((line) => line.includes('"api request"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(requests[0]).toMatchObject({
      level: 20,
      method: 'GET',
      route: '/v1/status',
      status: 200,
    });
    expect(typeof requests[0]!.durationMs).toBe('number');
    expect(requests[1]).toMatchObject({ route: 'unknown', status: 404 });
    const all = lines.join('');
    expect(all).not.toContain('query-text-91');
    expect(all).not.toContain('path-text-92');
  });
});

const json = (value: unknown) => ({
  body: JSON.stringify(value),
  headers: { 'Content-Type': 'application/json' },
});

describe('startApiServer: POST /v1/rotate', () => {
  it('rotates every managed container without a body, and answers 200 with the counts', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent });
    expect(await call('POST', '/v1/rotate')).toMatchObject({
      status: 200,
      json: { containers: 4, secrets: 3 },
    });
    expect(await call('POST', '/v1/rotate', json({}))).toMatchObject({ status: 200 });
    expect(calls.rotate).toEqual([{}, {}]);
  });

  it('passes a container id on', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent });
    const id = 'c'.repeat(12);
    expect(await call('POST', '/v1/rotate', json({ containerId: id }))).toMatchObject({
      status: 200,
      json: { containers: 1, secrets: 3 },
    });
    expect(calls.rotate).toEqual([{ containerId: id }]);
  });

  it('answers 404 with the code and message when no managed container has the id', async () => {
    const message =
      'no running managed container has the id cccccccccccc: see `dso status` for the ids (12 characters at least)';
    const { agent } = fakeAgent({
      rotate: async () => {
        throw new DsoError('DSO_AGENT_CONTAINER_UNKNOWN', message);
      },
    });
    await start({ agent });
    expect(await call('POST', '/v1/rotate', json({ containerId: 'c'.repeat(12) }))).toMatchObject({
      status: 404,
      json: { code: 'DSO_AGENT_CONTAINER_UNKNOWN', error: message },
    });
  });

  it('answers 503 while the agent is not running', async () => {
    const { agent } = fakeAgent({
      rotate: async () => {
        throw new DsoError('DSO_AGENT_NOT_RUNNING', 'the agent is not running: nothing to rotate');
      },
    });
    await start({ agent });
    expect((await call('POST', '/v1/rotate')).status).toBe(503);
  });

  it.each([
    ['not JSON', '{"containerId":', 'the request body is not JSON'],
    ['a list', '[]', 'the body:'],
    ['a short id', JSON.stringify({ containerId: 'abc' }), 'containerId: must be a container id'],
    ['a name', JSON.stringify({ containerId: 'my-app-1' }), 'containerId: must be a container id'],
    ['a number', JSON.stringify({ containerId: 12 }), 'containerId:'],
    ['another key', JSON.stringify({ all: true }), 'all'],
  ])(
    'answers 400 DSO_AGENT_API_BAD_REQUEST for %s, and rotates nothing',
    async (_what, body, problem) => {
      const { agent, calls } = fakeAgent();
      await start({ agent });
      const answer = await call('POST', '/v1/rotate', { body });
      expect(answer).toMatchObject({
        status: 400,
        json: { code: 'DSO_AGENT_API_BAD_REQUEST', error: expect.stringContaining(problem) },
      });
      expect((answer.json as { error: string }).error).toContain('send { "containerId"?: "<id>" }');
      expect(calls.rotate).toEqual([]);
    },
  );

  it('answers 413 for a body over 1 KiB', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent });
    const answer = await call('POST', '/v1/rotate', { body: ' '.repeat(API_MAX_BODY_BYTES + 1) });
    expect(answer).toMatchObject({ status: 413, json: { code: 'DSO_AGENT_API_BODY_TOO_LARGE' } });
    expect(calls.rotate).toEqual([]);
  });

  it('answers 405 to a GET', async () => {
    await start();
    const answer = await call('GET', '/v1/rotate');
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe('POST');
  });
});

describe('startApiServer: POST /v1/resolve', () => {
  const resolve = (references: unknown) => call('POST', '/v1/resolve', json({ references }));
  const decode = (answer: Answer) =>
    (answer.json as ApiResolveResult).values.map((entry) => ({
      ...entry,
      value: Buffer.from(entry.value, 'base64').toString('utf8'),
    }));

  it('resolves allowed references in order, base64, no-store, and disposes the values once sent', async () => {
    VALUES['app/db'] = 'db-value ü\n';
    VALUES['team/token'] = 'token-value';
    const { agent, calls } = fakeAgent();
    await start({ agent, resolveAllow: ['dso://app/*', 'dso://vault:team/*'] });
    const answer = await resolve(['dso://app/db', 'dso://vault:team/token@2']);
    expect(answer.status).toBe(200);
    expect(answer.headers['cache-control']).toBe('no-store');
    expect(answer.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(decode(answer)).toEqual([
      { reference: 'dso://app/db', provider: 'local', version: '7', value: 'db-value ü\n' },
      {
        reference: 'dso://vault:team/token@2',
        provider: 'vault',
        version: '7',
        value: 'token-value',
      },
    ]);
    expect(calls.resolve).toEqual([['dso://app/db', 'dso://vault:team/token@2']]);
    await eventually(() => calls.resolved.every((value) => isDisposed(value)));
  });

  it('matches a reference without a provider as the default provider', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent, resolveAllow: ['dso://vault:app/*'], defaultProvider: 'vault' });
    expect((await resolve(['dso://app/db'])).status).toBe(200);
    expect((await resolve(['dso://local:app/db'])).status).toBe(403);
    expect(calls.resolve).toEqual([['dso://app/db']]);
  });

  it('answers 403 DSO_AGENT_RESOLVE_DISABLED while api.resolveAllow is empty, and resolves nothing', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent });
    const answer = await resolve(['dso://app/db']);
    expect(answer).toMatchObject({ status: 403, json: { code: 'DSO_AGENT_RESOLVE_DISABLED' } });
    expect((answer.json as { error: string }).error).toContain(
      'the agent resolves no dso:// reference for callers until api.resolveAllow lists what they may read: add patterns',
    );
    expect(calls.resolve).toEqual([]);
  });

  it('answers 403 DSO_AGENT_RESOLVE_DENIED naming each reference not allowed, and resolves none of them', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent, resolveAllow: ['dso://app/*'] });
    const answer = await resolve(['dso://app/db', 'dso://vault:app/db', 'dso://other/x#f']);
    expect(answer).toMatchObject({
      status: 403,
      json: {
        code: 'DSO_AGENT_RESOLVE_DENIED',
        error:
          'api.resolveAllow allows no pattern for dso://vault:app/db, dso://other/x#f: add a pattern to api.resolveAllow in dso.yaml (e.g. "dso://vault:app/db") and restart the agent',
      },
    });
    expect(calls.resolve).toEqual([]);
    expect(lines.some((line) => line.includes('resolve refused by api.resolveAllow'))).toBe(true);
  });

  it('names at most ten refused references', async () => {
    await start({ resolveAllow: ['dso://app/*'] });
    const references = Array.from({ length: 12 }, (_, i) => `dso://no/${i}`);
    const { error } = (await resolve(references)).json as { error: string };
    expect(error).toContain('dso://no/9 and 2 more:');
    expect(error).not.toContain('dso://no/10');
  });

  it('answers 400 with the parser code and the index for a malformed reference', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent, resolveAllow: ['dso://**'] });
    expect(await resolve(['dso://app/db', 'dso://app//db'])).toMatchObject({
      status: 400,
      json: {
        code: 'DSO_REFERENCE_INVALID',
        error: expect.stringMatching(
          /^references\[1\]: invalid secret reference "dso:\/\/app\/\/db"/,
        ),
      },
    });
    expect(calls.resolve).toEqual([]);
  });

  it('does not echo text that is not a reference (it may be a value)', async () => {
    await start({ resolveAllow: ['dso://**'] });
    const answer = await resolve([CANARY]);
    expect(answer).toMatchObject({ status: 400, json: { code: 'DSO_REFERENCE_INVALID' } });
    expect(answer.text).not.toContain(CANARY);
  });

  it('answers 400 for a dsofile:// reference: the agent delivers those itself', async () => {
    await start({ resolveAllow: ['dso://**'] });
    expect(await resolve(['dsofile://app/db'])).toMatchObject({
      status: 400,
      json: {
        code: 'DSO_AGENT_API_BAD_REQUEST',
        error: expect.stringContaining('references[0] dsofile://app/db is a file reference'),
      },
    });
  });

  it.each([
    ['no body', undefined, 'the request has no body'],
    ['not JSON', 'references', 'not JSON'],
    ['no references', JSON.stringify({}), 'references:'],
    ['an empty list', JSON.stringify({ references: [] }), 'must name at least one reference'],
    ['a number in the list', JSON.stringify({ references: [1] }), 'references.0:'],
    [
      'too many references',
      JSON.stringify({
        references: Array.from({ length: API_MAX_RESOLVE_REFERENCES + 1 }, () => 'dso://a'),
      }),
      'must name at most 256 references',
    ],
    [
      "a provider's configuration",
      JSON.stringify({
        references: ['dso://app/db'],
        provider: { type: 'file', config: { path: '/etc/shadow' } },
      }),
      'provider',
    ],
  ])(
    'answers 400 DSO_AGENT_API_BAD_REQUEST for %s, and resolves nothing',
    async (_what, body, problem) => {
      const { agent, calls } = fakeAgent();
      await start({ agent, resolveAllow: ['dso://**'] });
      const answer = await call('POST', '/v1/resolve', body === undefined ? {} : { body });
      expect(answer).toMatchObject({
        status: 400,
        json: { code: 'DSO_AGENT_API_BAD_REQUEST', error: expect.stringContaining(problem) },
      });
      expect(calls.resolve).toEqual([]);
    },
  );

  it('takes a body of 256 long references, and answers 413 above its limit', async () => {
    const { agent, calls } = fakeAgent();
    await start({ agent, resolveAllow: ['dso://**'] });
    const long = `dso://${'a'.repeat(2000)}`;
    const many = Array.from({ length: API_MAX_RESOLVE_REFERENCES }, () => long);
    expect((await resolve(many)).status).toBe(200);
    const over = await call('POST', '/v1/resolve', {
      body: ' '.repeat(API_MAX_RESOLVE_BODY_BYTES + 1),
    });
    expect(over).toMatchObject({ status: 413, json: { code: 'DSO_AGENT_API_BODY_TOO_LARGE' } });
    expect(calls.resolve).toHaveLength(1);
  });

  it("answers 502 with the agent's code and the provider's reason when a value cannot be resolved", async () => {
    const cause = Object.assign(new Error('secret "app/db" not found'), {
      code: 'DSO_PROVIDER_NOT_FOUND',
    });
    const { agent } = fakeAgent({
      resolveEnvironment: async () => {
        throw new DsoError('DSO_AGENT_RESOLVE_FAILED', 'could not resolve dso://app/db', { cause });
      },
    });
    await start({ agent, resolveAllow: ['dso://**'] });
    expect(await resolve(['dso://app/db'])).toMatchObject({
      status: 502,
      json: {
        code: 'DSO_AGENT_RESOLVE_FAILED',
        error: 'could not resolve dso://app/db: secret "app/db" not found (DSO_PROVIDER_NOT_FOUND)',
      },
    });
  });

  it('answers 503 while the agent is not running', async () => {
    const { agent } = fakeAgent({
      resolveEnvironment: async () => {
        throw new DsoError('DSO_AGENT_NOT_RUNNING', 'the agent is not running');
      },
    });
    await start({ agent, resolveAllow: ['dso://**'] });
    expect((await resolve(['dso://app/db'])).status).toBe(503);
  });

  it('aborts the resolution when the caller goes away', async () => {
    let signal: AbortSignal | undefined;
    const { agent } = fakeAgent({
      resolveEnvironment: (_references, options = {}) => {
        signal = options.signal;
        return new Promise((_resolve, reject) => {
          options.signal?.addEventListener('abort', () => reject(options.signal?.reason));
        });
      },
    });
    await start({ agent, resolveAllow: ['dso://**'] });
    const request = httpRequest({ socketPath, method: 'POST', path: '/v1/resolve', agent: false });
    request.on('error', () => {
      // Expected: the request is destroyed below.
    });
    request.end(JSON.stringify({ references: ['dso://app/db'] }));
    await eventually(() => signal !== undefined);
    expect(signal?.aborted).toBe(false);
    request.destroy();
    await eventually(() => signal?.aborted === true);
  });

  it('refuses to start with a malformed pattern, and leaves no socket', async () => {
    await expect(start({ resolveAllow: ['dso://app/a**'] })).rejects.toMatchObject({
      code: 'DSO_AGENT_RESOLVE_ALLOW_INVALID',
    });
    await expect(lstat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('never logs a value, even one the redactor does not know, nor its base64', async () => {
    const value = `resolve-canary-${Date.now()}`;
    VALUES['app/canary'] = value;
    await start({ resolveAllow: ['dso://**'] });
    const answer = await resolve(['dso://app/canary']);
    expect(decode(answer)[0]?.value).toBe(value);
    await eventually(() => lines.some((line) => line.includes('"api request"')));
    const all = lines.join('');
    expect(all).toContain('environment values resolved for a caller');
    expect(all).toContain('dso://app/canary');
    expect(all).not.toContain(value);
    expect(all).not.toContain(Buffer.from(value).toString('base64').slice(0, 20));
  });

  it('sends a value the redactor knows (it is the answer) but redacts it anywhere else', async () => {
    const redactor = createRedactor();
    redactor.register(CANARY);
    VALUES[`app/${'x'}`] = CANARY;
    await start({ redactor, resolveAllow: ['dso://**'] });
    const answer = await resolve(['dso://app/x']);
    expect(decode(answer)[0]).toMatchObject({ reference: 'dso://app/x', value: CANARY });
  });
});

function isDisposed(value: SecretValue): boolean {
  try {
    value.reveal();
    return false;
  } catch {
    return true; // reveal() throws once disposed
  }
}

describe('startApiServer: no secret value leaves', () => {
  it('never sends or logs the canary, whatever the agent and providers hand it', async () => {
    const redactor = createRedactor();
    redactor.register(CANARY);
    let reconcileError: Error = new Error(`engine said ${CANARY}`);
    const agent: ApiAgent = {
      ...fakeAgent().agent,
      status: () => {
        const status = structuredClone(STATUS) as AgentStatus & { secret?: string };
        // Fields outside the contract are not sent, wherever they sit.
        status.secret = CANARY;
        Object.assign(status.containers[0]!, { value: CANARY });
        Object.assign(status.containers[0]!.files![0]!, { content: CANARY });
        Object.assign(status.queue, { last: CANARY });
        // A contract field holding a registered value by mistake is redacted.
        status.containers[1]!.lastAction.reference = `dsofile://app/${CANARY}`;
        return status;
      },
      reconcile: async () => {
        throw reconcileError;
      },
    };
    await start({
      agent,
      redactor,
      providers: () => [
        {
          name: 'vault',
          type: 'vault',
          state: {
            breaker: 'open',
            config: { token: CANARY },
            token: CANARY,
            list: [CANARY],
            long: `${'y'.repeat(80)}`,
          },
        },
      ],
    });
    const answers = [
      await call('GET', '/v1/status'),
      await call('POST', '/v1/reconcile'),
      await call('GET', `/v1/${CANARY}`),
    ];
    reconcileError = new DsoError('DSO_DOCKER_UNREACHABLE', `cannot reach ${CANARY}`);
    answers.push(await call('POST', '/v1/reconcile'));

    for (const answer of answers) expect(answer.text).not.toContain(CANARY);
    const status = answers[0]!.json as ApiStatus;
    expect(status.providers[0]!.state).toEqual({ breaker: 'open', token: '[REDACTED]' });
    expect(status.containers[1]!.lastAction.reference).toBe('dsofile://app/[REDACTED]');
    expect(answers[1]).toMatchObject({ status: 500, json: { code: 'DSO_AGENT_API_INTERNAL' } });
    expect(answers[3]).toMatchObject({
      status: 500,
      json: { code: 'DSO_DOCKER_UNREACHABLE', error: 'cannot reach [REDACTED]' },
    });
    await eventually(() => lines.filter((line) => line.includes('"api request"')).length >= 4);
    expect(lines.join('')).not.toContain(CANARY);
  });
});

describe('startApiServer: GET /v1/events', () => {
  it('streams one JSON line per agent event until the server closes, never a value', async () => {
    const fake = fakeAgent();
    const redactor = createRedactor();
    redactor.register(`${CANARY_EVENTS}`);
    const server = await start({ agent: fake.agent, redactor });
    const lines: Array<Record<string, unknown>> = [];
    const ended = new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        { socketPath, method: 'GET', path: '/v1/events', agent: false },
        (res) => {
          expect(res.statusCode).toBe(200);
          expect(res.headers['content-type']).toContain('application/x-ndjson');
          let buffered = '';
          res.setEncoding('utf8').on('data', (text: string) => {
            buffered += text;
            for (let index = buffered.indexOf('\n'); index >= 0; index = buffered.indexOf('\n')) {
              lines.push(JSON.parse(buffered.slice(0, index)) as Record<string, unknown>);
              buffered = buffered.slice(index + 1);
            }
          });
          res.on('end', () => resolve());
        },
      );
      req.on('error', reject);
      req.end();
    });
    await eventually(() => lines.length === 1);
    expect(lines[0]).toMatchObject({ type: 'subscribed' });
    for (const listener of fake.listeners) {
      listener({
        type: 'delivery-failed',
        at: 1,
        containerId: 'c1',
        trigger: 'started',
        code: 'DSO_PROVIDER_NOT_FOUND',
        // A reference never holds a value; if something did, the redactor still blanks it.
        reference: `dsofile://app/${CANARY_EVENTS}`,
        retry: false,
      });
    }
    await eventually(() => lines.length === 2);
    expect(lines[1]).toMatchObject({ type: 'delivery-failed', code: 'DSO_PROVIDER_NOT_FOUND' });
    expect(JSON.stringify(lines)).not.toContain(CANARY_EVENTS);
    await server.close();
    await ended;
    expect(fake.listeners.size).toBe(0);
  });
});

describe('startApiServer: GET /v1/events limits', () => {
  it('refuses a ninth stream with 503, so followers cannot take every connection', async () => {
    const server = await start();
    const open = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          new Promise<void>((resolve, reject) => {
            const req = httpRequest(
              { socketPath, method: 'GET', path: '/v1/events', agent: false },
              (res) => {
                res.resume();
                resolve();
              },
            );
            req.on('error', reject);
            req.end();
          }),
      ),
    );
    expect(open).toHaveLength(8);
    const refused = await call('GET', '/v1/events');
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ code: 'DSO_AGENT_API_BUSY' });
    expect((await call('GET', '/v1/status')).status).toBe(200);
    await server.close();
  });
});
