import {
  API_MAX_BODY_BYTES,
  type AgentApiStatus as ApiStatus,
  createRedactor,
  DsoError,
} from '@dso/core';
import { describe, expect, it } from 'vitest';
import type { AgentStatus } from '../agent.js';
import { AGENT_VERSION } from '../version.js';
import {
  type ApiAgent,
  CANARY,
  eventually,
  fakeAgent,
  json,
  STATUS,
  useApiTestServer,
} from './test-support/api-fixture.js';

let lines: string[];
const { start, call } = useApiTestServer((context) => {
  ({ lines } = context);
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
      // The agent's own version, for dso doctor.
      version: AGENT_VERSION,
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
