import { lstat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import {
  API_MAX_RESOLVE_BODY_BYTES,
  API_MAX_RESOLVE_REFERENCES,
  type AgentApiResolveResult as ApiResolveResult,
  createRedactor,
  DsoError,
} from '@dso/core';
import { describe, expect, it } from 'vitest';
import {
  type Answer,
  CANARY,
  eventually,
  fakeAgent,
  isDisposed,
  json,
  useApiTestServer,
  VALUES,
} from './test-support/api-fixture.js';

let socketPath: string;
let lines: string[];
const { start, call } = useApiTestServer((context) => {
  ({ socketPath, lines } = context);
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

  it('audits each refused reference once as env-resolve denied, with its code, and the disabled route too', async () => {
    const records: unknown[] = [];
    const audit = { record: (entry: unknown) => records.push(entry) };
    await start({ audit, resolveAllow: ['dso://app/*'] });
    await resolve(['dso://app/db', 'dso://vault:app/db', 'dso://other/x#f', 'dso://other/x#f']);
    expect(records).toEqual([
      {
        actor: { kind: 'api' },
        action: 'env-resolve',
        reference: 'dso://vault:app/db',
        provider: 'vault',
        outcome: 'denied',
        code: 'DSO_AGENT_RESOLVE_DENIED',
      },
      {
        actor: { kind: 'api' },
        action: 'env-resolve',
        reference: 'dso://other/x#f',
        provider: 'local',
        outcome: 'denied',
        code: 'DSO_AGENT_RESOLVE_DENIED',
      },
    ]);
  });

  it('audits a resolve refused while api.resolveAllow is empty', async () => {
    const records: Array<Record<string, unknown>> = [];
    await start({ audit: { record: (entry) => records.push(entry) }, defaultProvider: 'vault' });
    await resolve(['dso://app/db']);
    expect(records).toMatchObject([
      {
        reference: 'dso://app/db',
        provider: 'vault',
        outcome: 'denied',
        code: 'DSO_AGENT_RESOLVE_DISABLED',
      },
    ]);
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
