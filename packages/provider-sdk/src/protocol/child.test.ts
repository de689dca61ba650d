import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineProvider } from '../define-provider.js';
import { ProviderError } from '../provider-error.js';
import { SecretValue } from '../secret-value.js';
import { serveProvider, serveProviderFrom } from './child.js';
import { DEFAULT_MAX_SECRET_BYTES, messageBytesFor, RPC_ERROR } from './messages.js';
import full from './test-fixtures/full-provider.js';
import { provider as minimal } from './test-fixtures/minimal-provider.js';

const CANARY = `canary-${Math.random().toString(36).slice(2)}`;
// biome-ignore lint/suspicious/noExplicitAny: decoded JSON lines, read loosely; the assertions check their shape
type Message = Record<string, any>;

function serve(
  start: (io: { input: PassThrough; output: PassThrough; error: PassThrough }) => Promise<unknown>,
) {
  const input = new PassThrough();
  const output = new PassThrough();
  const error = new PassThrough();
  const messages: Message[] = [];
  const waiters: Array<() => void> = [];
  let rest = '';
  output.on('data', (chunk: Buffer) => {
    const text = rest + chunk.toString('utf8');
    const lines = text.split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines) messages.push(JSON.parse(line));
    for (const wake of waiters.splice(0)) wake();
  });
  const done = start({ input, output, error });
  let nextId = 1;
  const next = async (predicate: (message: Message) => boolean): Promise<Message> => {
    for (;;) {
      const found = messages.find(predicate);
      if (found) return found;
      await new Promise<void>((resolve) => waiters.push(resolve));
    }
  };
  const send = (message: unknown) => input.write(`${JSON.stringify(message)}\n`);
  const request = (method: string, params?: unknown) => {
    const id = nextId++;
    send({ jsonrpc: '2.0', id, method, ...(params === undefined ? {} : { params }) });
    return next((message) => message.id === id && !('method' in message));
  };
  const initialize = (overrides: Record<string, unknown> = {}) =>
    request('initialize', {
      protocolVersion: 1,
      sdkApiVersions: [1],
      name: 'child-test',
      config: { canary: CANARY, bigBytes: 2 * 1024 * 1024 },
      ...overrides,
    });
  return { input, error, messages, done, send, request, next, initialize };
}

const serveDefinition = (definition = full) =>
  serve((io) => serveProvider(definition, { ...io, env: {} }));

describe('serveProvider', () => {
  it('answers initialize with the protocol version, SDK API version and capabilities', async () => {
    const child = serveDefinition();
    const answer = await child.initialize();
    expect(answer.result).toEqual({
      protocolVersion: 1,
      sdkApiVersion: 1,
      type: 'fixture',
      capabilities: { list: true, watch: true, probe: true, health: true },
      maxMessageBytes: 1_572_864,
    });
    await child.request('shutdown');
    expect(await child.done).toEqual({ exitCode: 0, reason: 'shutdown' });
  });

  it('refuses another protocol version with a clear error and exits 1', async () => {
    const child = serveDefinition();
    const answer = await child.initialize({ protocolVersion: 2 });
    expect(answer.error.data).toEqual({ code: 'DSO_PROVIDER_INVALID_CONFIG', retryable: false });
    expect(answer.error.message).toContain('protocol version 2 is not supported');
    expect(await child.done).toEqual({ exitCode: 1, reason: 'initialize-failed' });
  });

  it('refuses a host that cannot host its SDK API version', async () => {
    const child = serveDefinition();
    const answer = await child.initialize({ sdkApiVersions: [2, 3] });
    expect(answer.error.message).toMatch(/SDK API version 1; the host supports 2, 3/);
    expect(await child.done).toMatchObject({ exitCode: 1 });
  });

  it('answers a configuration the schema refuses with INVALID_CONFIG, naming fields not values', async () => {
    const child = serveDefinition();
    const answer = await child.initialize({ config: { canary: 42, bigBytes: CANARY } });
    expect(answer.error.data.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(answer.error.message).toContain('canary');
    expect(answer.error.message).toContain('bigBytes');
    expect(answer.error.message).not.toContain(CANARY);
  });

  it('answers a module that failed to load through initialize', async () => {
    const child = serve((io) =>
      serveProviderFrom(async () => {
        throw new ProviderError(
          'DSO_PROVIDER_INVALID_CONFIG',
          'module x exports no provider definition',
        );
      }, io),
    );
    const answer = await child.initialize();
    expect(answer.error.message).toBe('module x exports no provider definition');
    expect(await child.done).toMatchObject({ exitCode: 1 });
  });

  it('holds requests sent before initialize was answered and answers them after it', async () => {
    const child = serveDefinition();
    const init = child.initialize();
    const early = child.request('resolve', { path: 'x' });
    expect((await init).result.type).toBe('fixture');
    expect((await early).result.version).toBe('1');
    child.input.end();
    await child.done;
  });

  it('refuses calls before initialize', async () => {
    const child = serveDefinition();
    const answer = await child.request('resolve', { path: 'canary' });
    expect(answer.error.code).toBe(RPC_ERROR.NOT_INITIALIZED);
    child.input.end();
    expect(await child.done).toEqual({ exitCode: 0, reason: 'end-of-input' });
  });

  it('answers resolve with the value as base64 and its version', async () => {
    const child = serveDefinition();
    await child.initialize();
    const answer = await child.request('resolve', { path: 'binary' });
    expect(answer.result.version).toBe('1');
    const versioned = await child.request('resolve', { path: 'x', version: '7' });
    expect(versioned.result.version).toBe('7');
    expect([...Buffer.from(answer.result.value.base64, 'base64')]).toEqual(
      Array.from({ length: 256 }, (_, index) => index),
    );
    child.input.end();
    await child.done;
  });

  it('answers list, probe, health, and errors with their stable codes', async () => {
    const child = serveDefinition();
    await child.initialize();
    expect((await child.request('list', { prefix: 'a/' })).result).toEqual({
      paths: ['a/1', 'a/2'],
    });
    expect((await child.request('probe', { path: 'x' })).result).toEqual({ version: '1' });
    expect((await child.request('health')).result).toEqual({ ok: true, detail: 'fixture is fine' });
    const missing = await child.request('resolve', { path: 'missing' });
    expect(missing.error).toEqual({
      code: RPC_ERROR.PROVIDER_ERROR,
      message: 'no secret at missing',
      data: { code: 'DSO_PROVIDER_NOT_FOUND', retryable: false },
    });
    const leaky = await child.request('resolve', { path: 'throw-canary' });
    expect(leaky.error.data.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(JSON.stringify(leaky)).not.toContain(CANARY);
    child.input.end();
    await child.done;
  });

  it('answers methods it does not implement with method not found', async () => {
    const child = serveDefinition(minimal);
    await child.initialize();
    for (const method of ['list', 'watch', 'probe', 'health', 'frobnicate']) {
      expect((await child.request(method, { paths: [] })).error.code).toBe(
        RPC_ERROR.METHOD_NOT_FOUND,
      );
    }
    child.input.end();
    await child.done;
  });

  it('answers a line that is not JSON with a parse error and keeps serving', async () => {
    const child = serveDefinition();
    await child.initialize();
    child.input.write('this is not json\n');
    const parseError = await child.next((message) => message.id === null);
    expect(parseError.error.code).toBe(RPC_ERROR.PARSE_ERROR);
    expect((await child.request('resolve', { path: 'x' })).result.value.base64).toBe(
      Buffer.from('value-of-x').toString('base64'),
    );
    child.input.end();
    await child.done;
  });

  it('aborts the call named by $/cancelRequest', async () => {
    const child = serveDefinition();
    await child.initialize();
    const answer = child.request('resolve', { path: 'wait-for-abort' });
    await child.next(
      (message) => message.method === 'log' && message.params.message === 'call started',
    );
    // Request 1 was initialize: the resolve is 2.
    child.send({ jsonrpc: '2.0', method: '$/cancelRequest', params: { id: 2 } });
    await child.next(
      (message) => message.method === 'log' && message.params.message === 'call aborted',
    );
    expect((await answer).error.data.code).toBe('DSO_PROVIDER_TIMEOUT');
    child.input.end();
    await child.done;
  });

  it('refuses a value whose line would pass the host limit, and keeps serving', async () => {
    const child = serveDefinition();
    await child.initialize();
    const answer = await child.request('resolve', { path: 'big' });
    expect(answer.error.data).toEqual({ code: 'DSO_PROVIDER_TOO_LARGE', retryable: false });
    expect(answer.error.message).toContain('1572864 bytes');
    // The setting to raise, and by how much for this value.
    expect(answer.error.message).toContain(
      `raise providers.child-test.maxMessageBytes in dso.yaml to at least ${messageBytesFor(2 * 1024 * 1024)}`,
    );
    expect((await child.request('resolve', { path: 'x' })).result).toBeDefined();
    child.input.end();
    await child.done;
  });

  it('carries a 1 MiB value within the default limit', async () => {
    const child = serveDefinition();
    await child.initialize({
      config: { canary: CANARY, bigBytes: DEFAULT_MAX_SECRET_BYTES },
      maxMessageBytes: undefined,
    });
    const answer = await child.request('resolve', { path: 'big' });
    expect(Buffer.from(answer.result.value.base64, 'base64').length).toBe(DEFAULT_MAX_SECRET_BYTES);
    child.input.end();
    await child.done;
  });

  it('serves a large value when the host raised maxMessageBytes', async () => {
    const child = serveDefinition();
    const init = await child.initialize({ maxMessageBytes: 4 * 1024 * 1024 });
    expect(init.result.maxMessageBytes).toBe(4 * 1024 * 1024);
    const answer = await child.request('resolve', { path: 'big' });
    expect(Buffer.from(answer.result.value.base64, 'base64').length).toBe(2 * 1024 * 1024);
    child.input.end();
    await child.done;
  });

  it('streams watch changes on a subscription until unwatch', async () => {
    const child = serveDefinition();
    await child.initialize();
    const answer = await child.request('watch', { paths: ['a/1', 'a/2'] });
    const { subscription } = answer.result;
    expect(typeof subscription).toBe('string');
    const change = await child.next(
      (message) => message.method === 'watch/change' && message.params.path === 'a/2',
    );
    expect(change.params).toEqual({ subscription, path: 'a/2', version: 'v1' });
    expect((await child.request('unwatch', { subscription })).result).toBeNull();
    await child.next(
      (message) => message.method === 'log' && message.params.message === 'watch ended',
    );
    const failing = await child.request('watch', { paths: ['watch-fail'] });
    const end = await child.next(
      (message) =>
        message.method === 'watch/end' &&
        message.params.subscription === failing.result.subscription,
    );
    expect(end.params.error.data.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    child.input.end();
    await child.done;
  });

  it('sends log lines as notifications with their fields, values redacted', async () => {
    const definition = defineProvider({
      type: 'logger',
      configSchema: z.object({}),
      create: (_config, { name, log }) => ({
        name,
        capabilities: { list: false, watch: false, probe: false, health: false },
        async resolve({ path }) {
          log.warn('resolving', { path, value: SecretValue.fromText(CANARY) });
          return { value: SecretValue.fromText('v'), version: '1' };
        },
        async close() {},
      }),
    });
    const child = serveDefinition(definition as never);
    await child.initialize({ config: {} });
    await child.request('resolve', { path: 'app/db' });
    const line = await child.next((message) => message.method === 'log');
    expect(line.params).toEqual({
      level: 'warn',
      message: 'resolving',
      fields: { path: 'app/db', value: '[REDACTED]' },
    });
    expect(JSON.stringify(child.messages)).not.toContain(CANARY);
    child.input.end();
    await child.done;
  });

  it('closes the provider and answers shutdown before it ends', async () => {
    const child = serveDefinition();
    await child.initialize();
    const pending = child.request('resolve', { path: 'wait-for-abort' });
    await child.next(
      (message) => message.method === 'log' && message.params.message === 'call started',
    );
    const answer = await child.request('shutdown');
    expect(answer.result).toBeNull();
    expect(child.messages.some((message) => message.params?.message === 'closed')).toBe(true);
    expect((await pending).error.data.code).toBe('DSO_PROVIDER_TIMEOUT');
    expect(await child.done).toEqual({ exitCode: 0, reason: 'shutdown' });
  });
});
