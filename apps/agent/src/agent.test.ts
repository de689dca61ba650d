import { Writable } from 'node:stream';
import {
  createFakeClock,
  createLogger,
  createMemoryCache,
  createMetricsRegistry,
  createRedactor,
} from '@dso/core';
import type { ContainerDetails } from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { ProviderError, type SecretProvider, SecretValue } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { type AgentEvent, type AgentOptions, createAgent } from './agent.js';
import { createAgentHealth, createAgentMetrics } from './observability.js';

const CANARY = 'canary-agent-9b27e1';

function container(id: string, labels: Record<string, string>): ContainerDetails {
  return {
    id,
    name: id,
    labels,
    running: true,
    state: 'running',
    startedAt: '2026-11-27T10:00:00.000000000Z',
    user: '',
    tmpfs: ['/run/secrets'],
    binds: [],
    image: 'x',
  };
}

const MANAGED = {
  'dso.enable': 'true',
  'dso.file.db': 'dsofile://app/db',
  'dso.file.token': 'dsofile://app/cfg#token',
};

function createProvider(values: Record<string, string>): SecretProvider {
  return {
    name: 'local',
    capabilities: { list: false, watch: false, probe: false, health: false },
    async resolve({ path }) {
      const value = values[path];
      if (value === undefined)
        throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { path });
      return { value: SecretValue.fromText(value), version: '1' };
    },
    async close() {},
  };
}

/** A provider whose values and version the test changes (`state.version`), counting calls. */
function versioned(values: Record<string, string>) {
  const state = { version: 1, calls: 0 };
  const provider: SecretProvider = {
    ...createProvider(values),
    async resolve({ path }) {
      state.calls += 1;
      const value = values[path];
      if (value === undefined)
        throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { path });
      return { value: SecretValue.fromText(value), version: String(state.version) };
    },
  };
  return { provider, state };
}

function setup(containers: ContainerDetails[], overrides: Partial<AgentOptions> = {}) {
  let output = '';
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      output += String(chunk);
      callback();
    },
  });
  const redactor = createRedactor();
  const fake = createFakeRuntime({ containers });
  const agent = createAgent({
    runtime: fake.runtime,
    providers: new Map([
      [
        'local',
        createProvider({ 'app/db': CANARY, 'app/cfg': JSON.stringify({ token: `${CANARY}-t` }) }),
      ],
    ]),
    logger: createLogger({ level: 'trace', redactor, destination }),
    redactor,
    ...overrides,
  });
  return {
    agent,
    fake,
    redactor,
    lines: () =>
      output
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    output: () => output,
  };
}

describe('createAgent: reconciliation and the audit trail', () => {
  it('has no second effect for a reconciliation of an unchanged container, but rewrites on a start', async () => {
    const c1 = container('c1', MANAGED);
    const { agent, fake, lines } = setup([c1], { reconcileIntervalMs: 20 });
    await agent.start();
    await agent.idle();
    expect(fake.writes).toHaveLength(1);
    // Several periodic reconciliations pass: same versions, same run, nothing written.
    await expect
      .poll(() => lines().filter((line) => line.msg === 'secrets up to date').length)
      .toBeGreaterThan(2);
    expect(fake.writes).toHaveLength(1);
    expect(
      lines().find(
        (line) => line.msg === 'managed containers found' && line.trigger === 'periodic',
      ),
    ).toBeDefined();
    // A restart: the engine reports a start of a new run (its tmpfs is empty): written again.
    fake.start({ ...c1, startedAt: '2026-11-27T11:00:00.000000000Z' });
    await expect.poll(() => fake.writes.length).toBe(2);
    // Even a start event for the same run writes (an event about a start is never skipped).
    fake.start({ ...c1, startedAt: '2026-11-27T11:00:00.000000000Z' });
    await expect.poll(() => fake.writes.length).toBe(3);
    await agent.close();
  });

  it('writes again when a reconciliation finds a new version', async () => {
    const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
    const { provider, state } = versioned(values);
    const cache = createMemoryCache({ ttlMs: 0 });
    const { agent, fake } = setup([container('c1', MANAGED)], {
      reconcileIntervalMs: 20,
      providers: new Map([['local', provider]]),
      cache,
    });
    await agent.start();
    await agent.idle();
    expect(fake.writes).toHaveLength(1);
    values['app/db'] = 'v2';
    state.version = 2;
    await expect.poll(() => fake.writes.length).toBe(2);
    expect(fake.writes[1]?.contents[0]).toBe('v2');
    await agent.close();
    await cache.close();
  });

  it.each([
    ['signal', { 'dso.rotate': 'signal', 'dso.rotate.signal': 'USR1' }, 'signal c1 SIGUSR1'],
    [
      'hook',
      { 'dso.rotate': 'hook', 'dso.rotate.hook': '["/app/reload","-q"]' },
      'exec c1 /app/reload -q',
    ],
    ['restart', { 'dso.rotate': 'restart' }, 'restart c1'],
  ])(
    'applies the %s policy once when a running container gets a new version, never on a first delivery',
    async (_policy, labels, action) => {
      const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
      const { provider, state } = versioned(values);
      const cache = createMemoryCache({ ttlMs: 0 });
      const { agent, fake } = setup([container('c1', { ...MANAGED, ...labels })], {
        reconcileIntervalMs: 20,
        providers: new Map([['local', provider]]),
        cache,
        rotation: { jitterMs: 0 },
      });
      await agent.start();
      await agent.idle();
      expect(fake.writes).toHaveLength(1);
      expect(fake.actions).toEqual([]);
      values['app/db'] = 'v2';
      state.version = 2;
      await expect.poll(() => fake.actions).toEqual([action]);
      expect(fake.writes.at(-1)?.contents[0]).toBe('v2');
      await agent.close();
      await cache.close();
    },
  );

  it('records one audit line per file delivered, and the reference that failed', async () => {
    const records: unknown[] = [];
    const audit = {
      record: (entry: unknown) => records.push(entry),
      close: async () => {},
      [Symbol.asyncDispose]: async () => {},
    };
    const { agent, output } = setup(
      [
        container('c1', MANAGED),
        container('c2', { 'dso.enable': 'true', 'dso.file.gone': 'dsofile://app/missing' }),
      ],
      { audit },
    );
    await agent.start();
    await agent.idle();
    expect(records).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          action: 'inject',
          reference: 'dsofile://app/db',
          provider: 'local',
          version: '1',
          containerId: 'c1',
          outcome: 'ok',
          cacheHit: false,
        }),
        expect.objectContaining({
          action: 'inject',
          reference: 'dsofile://app/missing',
          containerId: 'c2',
          outcome: 'error',
          code: 'DSO_PROVIDER_NOT_FOUND',
        }),
      ]),
    );
    expect(JSON.stringify(records)).not.toContain(CANARY);
    expect(output()).not.toContain(CANARY);
    await agent.close();
  });

  it('counts deliveries, provider calls and reconciliations, and turns ready after the first', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry, { providers: ['local'] });
    const health = createAgentHealth();
    const { agent } = setup([container('c1', MANAGED)], { metrics, health });
    expect(health.ready().ok).toBe(false);
    await agent.start();
    await agent.idle();
    const text = await registry.metrics();
    expect(text).toMatch(/dso_injection_writes_total\{method="exec",outcome="ok"\} 1/);
    expect(text).toMatch(
      /dso_provider_calls_total\{provider="local",operation="resolve",outcome="ok"\} 2/,
    );
    expect(text).toMatch(/dso_reconcile_runs_total\{trigger="startup",outcome="ok"\} 1/);
    expect(text).toMatch(/dso_containers_managed_items 1/);
    expect(text).not.toContain(CANARY);
    await agent.close();
    expect(health.ready().ok).toBe(false);
  });

  it('reports each container with its references and versions, never values, and reconciles on request', async () => {
    const { agent, fake } = setup([
      container('c1', MANAGED),
      container('c2', { 'dso.enable': 'true', 'dso.file.gone': 'dsofile://app/missing' }),
    ]);
    await expect(agent.reconcile()).rejects.toMatchObject({ code: 'DSO_AGENT_NOT_RUNNING' });
    await agent.start();
    await agent.idle();
    const status = agent.status();
    expect(status.startedAt).toBeTypeOf('number');
    const c1 = status.containers.find((entry) => entry.id === 'c1');
    expect(c1?.files).toEqual([
      { name: 'db', reference: 'dsofile://app/db', provider: 'local', version: '1' },
      { name: 'token', reference: 'dsofile://app/cfg#token', provider: 'local', version: '1' },
    ]);
    expect(c1?.lastAction).toMatchObject({ trigger: 'startup', outcome: 'delivered' });
    expect(status.containers.find((entry) => entry.id === 'c2')?.lastAction).toMatchObject({
      outcome: 'failed',
      code: 'DSO_PROVIDER_NOT_FOUND',
      reference: 'dsofile://app/missing',
    });
    expect(JSON.stringify(status)).not.toContain(CANARY);
    expect(await agent.reconcile()).toEqual({ containers: 2 });
    await agent.idle();
    expect(agent.status().containers.find((entry) => entry.id === 'c1')?.lastAction).toMatchObject({
      trigger: 'api',
      outcome: 'up-to-date',
    });
    expect(fake.writes).toHaveLength(1);
    await agent.close();
  });

  it('forgets a destroyed container', async () => {
    const { agent, fake, lines } = setup([container('c1', MANAGED)]);
    await agent.start();
    await agent.idle();
    fake.emit('container.destroyed', 'c1');
    fake.start(container('c1', MANAGED));
    await expect.poll(() => fake.writes.length).toBe(2);
    expect(lines().some((line) => line.msg === 'secrets up to date')).toBe(false);
    await agent.close();
  });
});

describe('createAgent', () => {
  it('delivers to managed containers already running at start, with field selection', async () => {
    const { agent, fake } = setup([container('c1', MANAGED), container('c2', { other: 'x' })]);
    await agent.start();
    await agent.idle();
    expect(fake.writes).toHaveLength(1);
    expect(fake.writes[0]?.id).toBe('c1');
    expect(fake.writes[0]?.request.target).toBe('/run/secrets');
    expect(fake.writes[0]?.request.mode).toBe(0o400);
    expect(fake.writes[0]?.contents).toEqual([CANARY, `${CANARY}-t`]);
    await agent.close();
  });

  it('delivers when a managed container starts, and ignores unmanaged ones', async () => {
    const { agent, fake } = setup([]);
    await agent.start();
    fake.start(container('c3', { other: 'x' }));
    fake.start(container('c4', MANAGED));
    await expect.poll(() => fake.writes.map((write) => write.id)).toEqual(['c4']);
    await agent.close();
  });

  it('registers every value with the redactor, so no log line carries it', async () => {
    const { agent, redactor, output } = setup([container('c1', MANAGED)]);
    await agent.start();
    await agent.idle();
    expect(redactor.size).toBeGreaterThan(0);
    expect(redactor.redact(`x ${CANARY} y`)).not.toContain(CANARY);
    await agent.close();
    expect(output()).toContain('secrets delivered');
    expect(output()).not.toContain(CANARY);
  });

  it('reports a secret that cannot be resolved by reference and code, and writes nothing', async () => {
    const { agent, fake, lines } = setup([
      container('c5', { 'dso.enable': 'true', 'dso.file.x': 'dsofile://app/missing' }),
    ]);
    await agent.start();
    await agent.idle();
    expect(fake.writes).toHaveLength(0);
    const failure = lines().find((line) => line.msg === 'secrets not delivered');
    expect(failure).toMatchObject({ code: 'DSO_AGENT_RESOLVE_FAILED', containerId: 'c5' });
    expect(JSON.stringify(failure)).toContain('dsofile://app/missing');
    await agent.close();
  });

  it('reports an unknown provider with DSO_AGENT_PROVIDER_UNKNOWN', async () => {
    const { agent, lines } = setup([
      container('c6', { 'dso.enable': 'true', 'dso.file.x': 'dsofile://vault:app/db' }),
    ]);
    await agent.start();
    await agent.idle();
    expect(lines().find((line) => line.msg === 'secrets not delivered')).toMatchObject({
      code: 'DSO_AGENT_PROVIDER_UNKNOWN',
    });
    await agent.close();
  });

  it('reports invalid labels with DSO_LABEL_INVALID', async () => {
    const { agent, lines } = setup([
      container('c7', { 'dso.enable': 'true', 'dso.file.x': 'not-a-reference' }),
    ]);
    await agent.start();
    await agent.idle();
    expect(lines().find((line) => line.msg === 'secrets not delivered')).toMatchObject({
      code: 'DSO_LABEL_INVALID',
    });
    await agent.close();
  });

  it('lists every managed container again when the stream reports a resync', async () => {
    const { fake, agent, lines } = setup([container('c8', MANAGED)]);
    let stop: (() => void) | undefined;
    fake.runtime.events = async function* ({ signal }) {
      yield { type: 'resync', reason: 'gap', at: Date.now() };
      await new Promise<void>((resolve) => {
        stop = resolve;
        signal.addEventListener('abort', () => resolve(), { once: true });
      });
    };
    await agent.start();
    await expect
      .poll(() => lines().filter((line) => line.msg === 'managed containers found').length)
      .toBe(2);
    expect(
      lines().find((line) => String(line.msg).startsWith('events may have been missed')),
    ).toMatchObject({ reason: 'gap' });
    await agent.idle();
    expect(fake.writes.map((write) => write.id)).toContain('c8');
    stop?.();
    await agent.close();
  });

  it('passes its reconnect policy to the runtime and exits with DSO_AGENT_ENGINE_LOST when it is spent', async () => {
    const { fake, agent } = setup([], {
      reconnectBaseDelayMs: 1,
      reconnectMaxDelayMs: 2,
      maxReconnects: 3,
    });
    let reconnect: unknown;
    fake.runtime.events = async function* (options) {
      reconnect = options.reconnect;
      yield* [];
      throw Object.assign(new Error('gave up (scripted)'), { code: 'DSO_DOCKER_RECONNECT_FAILED' });
    };
    await agent.start();
    await expect(agent.done).rejects.toMatchObject({ code: 'DSO_AGENT_ENGINE_LOST' });
    expect(reconnect).toEqual({ maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 });
    await agent.close();
  });

  it('closes once however often it is asked', async () => {
    const { agent, lines } = setup([]);
    await agent.start();
    await Promise.all([agent.close(), agent.close(), agent.close()]);
    expect(lines().filter((line) => line.msg === 'agent stopping')).toHaveLength(1);
  });

  it('retries a delivery that failed for a reason that may pass, with backoff, then delivers', async () => {
    let calls = 0;
    const flaky: SecretProvider = {
      name: 'local',
      capabilities: { list: false, watch: false, probe: false, health: false },
      async resolve() {
        calls += 1;
        if (calls === 1) throw new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'backend down');
        return { value: SecretValue.fromText(CANARY), version: '1' };
      },
      async close() {},
    };
    const { agent, fake, lines } = setup(
      [container('c9', { 'dso.enable': 'true', 'dso.file.db': 'dsofile://app/db' })],
      {
        providers: new Map([['local', flaky]]),
        retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 },
      },
    );
    await agent.start();
    await expect.poll(() => fake.writes.length).toBe(1);
    expect(lines().find((line) => line.msg === 'secrets not delivered')).toMatchObject({
      causeCode: 'DSO_PROVIDER_UNAVAILABLE',
      retry: true,
      attempt: 1,
    });
    await agent.close();
  });

  it('does not retry a secret that does not exist', async () => {
    const { agent, lines } = setup(
      [container('c10', { 'dso.enable': 'true', 'dso.file.x': 'dsofile://app/missing' })],
      { retry: { maxAttempts: 3, baseDelayMs: 1, maxDelayMs: 2 } },
    );
    await agent.start();
    await agent.idle();
    expect(lines().filter((line) => line.msg === 'secrets not delivered')).toHaveLength(1);
    await agent.close();
  });

  it('serves the last known value while the provider is down, and says so', async () => {
    const clock = createFakeClock();
    let down = false;
    const provider: SecretProvider = {
      name: 'local',
      capabilities: { list: false, watch: false, probe: false, health: false },
      async resolve() {
        if (down) throw new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'backend down');
        return { value: SecretValue.fromText(CANARY), version: '7' };
      },
      async close() {},
    };
    const managed = container('c11', { 'dso.enable': 'true', 'dso.file.db': 'dsofile://app/db' });
    await using cache = createMemoryCache({ clock, ttlMs: 1_000 });
    const { agent, fake, lines, output } = setup([managed], {
      providers: new Map([['local', provider]]),
      cache,
    });
    await agent.start();
    await agent.idle();
    down = true;
    clock.advance(5_000); // past the TTL, within the stale window
    fake.start(managed);
    await expect.poll(() => fake.writes.length).toBe(2);
    expect(fake.writes[1]?.contents).toEqual([CANARY]);
    expect(
      lines().find((line) => line.msg === 'provider unavailable, serving the last known value'),
    ).toMatchObject({
      version: '7',
    });
    await agent.close();
    expect(output()).not.toContain(CANARY);
  });
});

describe('createAgent: rotation policies, escalation and replacement', () => {
  it('escalates to the next heavier policy when an action fails, and audits each action', async () => {
    const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
    const { provider, state } = versioned(values);
    const records: Array<Record<string, unknown>> = [];
    const cache = createMemoryCache({ ttlMs: 0 });
    const { agent, fake } = setup(
      [container('c1', { ...MANAGED, 'dso.rotate': 'signal', 'dso.rotate.escalate': 'restart' })],
      {
        reconcileIntervalMs: 20,
        providers: new Map([['local', provider]]),
        cache,
        rotation: { jitterMs: 0 },
        audit: {
          record: (entry) => records.push(entry as Record<string, unknown>),
          close: async () => {},
          [Symbol.asyncDispose]: async () => {},
        },
      },
    );
    fake.failing.add('signal');
    await agent.start();
    await agent.idle();
    values['app/db'] = 'v2';
    state.version = 2;
    // No hook label: hook is skipped on the way up.
    await expect.poll(() => fake.actions).toEqual(['signal c1 SIGHUP', 'restart c1']);
    const rotations = records.filter((record) => record.action === 'rotate');
    expect(rotations.map((record) => [record.policy, record.outcome])).toEqual([
      ['signal', 'error'],
      ['signal', 'error'],
      ['restart', 'ok'],
      ['restart', 'ok'],
    ]);
    await agent.close();
    await cache.close();
  });

  it('stops at the policy itself without an escalation limit', async () => {
    const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
    const { provider, state } = versioned(values);
    const cache = createMemoryCache({ ttlMs: 0 });
    const { agent, fake, lines } = setup(
      [container('c1', { ...MANAGED, 'dso.rotate': 'signal' })],
      {
        reconcileIntervalMs: 20,
        providers: new Map([['local', provider]]),
        cache,
        rotation: { jitterMs: 0 },
      },
    );
    fake.failing.add('signal');
    await agent.start();
    await agent.idle();
    state.version = 2;
    await expect
      .poll(() => lines().some((line) => line.msg === 'rotation action failed'))
      .toBe(true);
    expect(fake.actions).toEqual(['signal c1 SIGHUP']);
    await agent.close();
    await cache.close();
  });

  it('replaces a container whose dso:// environment value changed, with the new value only in the request', async () => {
    const values: Record<string, string> = {
      'app/db': 'v1',
      'app/cfg': '{"token":"t"}',
      'app/api': `${CANARY}-1`,
    };
    const { provider, state } = versioned(values);
    const cache = createMemoryCache({ ttlMs: 0 });
    const { agent, fake, output } = setup(
      [container('c1', { ...MANAGED, 'dso.env.API_KEY': 'dso://app/api' })],
      {
        reconcileIntervalMs: 20,
        providers: new Map([['local', provider]]),
        cache,
        rotation: { jitterMs: 0 },
      },
    );
    await agent.start();
    await agent.idle();
    expect(fake.actions).toEqual([]);
    expect(agent.status().containers[0]?.env).toEqual([
      { name: 'API_KEY', reference: 'dso://app/api', provider: 'local', version: '1' },
    ]);
    values['app/api'] = `${CANARY}-2`;
    state.version = 2;
    // Default policy is files, but a new environment value can only arrive by a replacement.
    await expect.poll(() => fake.actions).toContain('replace c1');
    expect(fake.replacedEnv[0]).toEqual({ API_KEY: `${CANARY}-2` });
    // The new container gets its files before its health wait, then is what the agent tracks.
    await expect.poll(() => fake.writes.some((write) => write.id === 'c1-next')).toBe(true);
    await expect
      .poll(() => agent.status().containers.map((status) => status.id))
      .toEqual(['c1-next']);
    expect(output()).not.toContain(CANARY);
    await agent.close();
    await cache.close();
  });

  it('replaces once, at first sight, a container created with an older version than the current one', async () => {
    const { agent, fake, lines } = setup(
      [
        container('c1', {
          'dso.enable': 'true',
          'dso.env.API_KEY': 'dso://app/db',
          'dso.env-version.API_KEY': '0',
        }),
      ],
      { reconcileIntervalMs: 20, rotation: { jitterMs: 0 } },
    );
    await agent.start();
    await expect.poll(() => fake.actions).toEqual(['replace c1']);
    // Several reconciliations later (each one checks the new container): not replaced again.
    const periodic = () =>
      lines().filter(
        (line) => line.msg === 'managed containers found' && line.trigger === 'periodic',
      ).length;
    const seen = periodic();
    await expect.poll(periodic).toBeGreaterThanOrEqual(seen + 3);
    await agent.idle();
    expect(fake.actions).toEqual(['replace c1']);
    await agent.close();
  });

  it('keeps the old container when a replacement is rolled back, and counts it', async () => {
    const values: Record<string, string> = {
      'app/db': 'v1',
      'app/cfg': '{"token":"t"}',
      'app/api': 'a1',
    };
    const { provider, state } = versioned(values);
    const registry = createMetricsRegistry({ redactor: createRedactor() });
    const metrics = createAgentMetrics(registry, { providers: ['local'] });
    const cache = createMemoryCache({ ttlMs: 0 });
    const { agent, fake, lines } = setup(
      [
        container('c1', {
          ...MANAGED,
          'dso.env.API_KEY': 'dso://app/api',
          'dso.rotate': 'replace',
        }),
      ],
      {
        reconcileIntervalMs: 20,
        providers: new Map([['local', provider]]),
        cache,
        metrics,
        rotation: { jitterMs: 0 },
      },
    );
    fake.failing.add('replace');
    await agent.start();
    await agent.idle();
    state.version = 2;
    await expect
      .poll(() =>
        lines().find(
          (line) => line.msg === 'replacement rolled back: the old container keeps serving',
        ),
      )
      .toMatchObject({ stage: 'health', reason: 'unhealthy', code: 'DSO_DOCKER_REPLACE_FAILED' });
    expect(agent.status().containers.map((status) => status.id)).toEqual(['c1']);
    expect(await registry.metrics()).toContain(
      'dso_rotation_runs_total{policy="replace",outcome="rolled_back"} 1',
    );
    await agent.close();
    await cache.close();
  });

  it('finishes or undoes interrupted replacements at start, and reports the blocked ones', async () => {
    const { agent, fake, lines } = setup([]);
    fake.recoveries.push(
      { name: 'web', oldId: 'a'.repeat(64), newId: 'b'.repeat(64), action: 'finished' },
      {
        name: 'api',
        oldId: 'c'.repeat(64),
        newId: 'd'.repeat(64),
        action: 'blocked',
        reason: 'name-taken',
      },
    );
    await agent.start();
    expect(lines().filter((line) => line.msg === 'interrupted replacement recovered')).toHaveLength(
      1,
    );
    expect(
      lines().find((line) =>
        String(line.msg).startsWith('an interrupted replacement needs a decision'),
      ),
    ).toMatchObject({ name: 'api', reason: 'name-taken' });
    await agent.close();
  });
});

describe('createAgent: host path, rotate on request, environment for dso up, staleness', () => {
  it('writes a container that bind-mounts its folder from the host root there, without exec', async () => {
    const { createHostSecretDirs } = await import('@dso/docker-runtime');
    const { mkdtempSync, readFileSync, rmSync, existsSync } = await import('node:fs');
    const root = mkdtempSync('/dev/shm/dso-agent-test-');
    try {
      const hostDirs = createHostSecretDirs({ root });
      const c1 = {
        ...container('c1', MANAGED),
        user: `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`,
        binds: [{ source: `${root}/web-1`, target: '/run/secrets', readOnly: true }],
      };
      const { agent, fake } = setup([c1], { hostDirs });
      await agent.start();
      await agent.idle();
      expect(fake.writes).toEqual([]);
      expect(readFileSync(`${root}/web-1/db`, 'utf8')).toBe(CANARY);
      expect(existsSync(`${root}/web-1/..data`)).toBe(true);
      // Stopped: its folder is emptied (no ..data: a wait holds its next start until rewritten).
      fake.emit('container.died', 'c1');
      await expect.poll(() => existsSync(`${root}/web-1/..data`)).toBe(false);
      expect(existsSync(`${root}/web-1`)).toBe(true);
      fake.emit('container.destroyed', 'c1');
      await expect.poll(() => existsSync(`${root}/web-1`)).toBe(false);
      await agent.close();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('asks the provider again past the cache on rotate(), for the selected container only', async () => {
    let calls = 0;
    const base = createProvider({ 'app/db': 'x', 'app/cfg': '{"token":"t"}', 'app/other': 'o' });
    const provider: SecretProvider = {
      ...base,
      async resolve(request, options) {
        calls += 1;
        return base.resolve(request, options);
      },
    };
    const { agent } = setup(
      [
        container('c1'.padEnd(64, '1'), MANAGED),
        container('c2'.padEnd(64, '2'), {
          'dso.enable': 'true',
          'dso.file.o': 'dsofile://app/other',
        }),
      ],
      { providers: new Map([['local', provider]]) },
    );
    await agent.start();
    await agent.idle();
    const before = calls;
    await expect(agent.rotate({ containerId: 'c1'.padEnd(12, '1') })).resolves.toEqual({
      containers: 1,
      secrets: 2,
    });
    await agent.idle();
    expect(calls - before).toBe(2);
    await expect(agent.rotate({ containerId: 'f'.repeat(12) })).rejects.toMatchObject({
      code: 'DSO_AGENT_CONTAINER_UNKNOWN',
    });
    await agent.close();
    await expect(agent.rotate()).rejects.toMatchObject({ code: 'DSO_AGENT_NOT_RUNNING' });
  });

  it('resolves dso:// references for dso up, registering each value with the redactor', async () => {
    const { agent, redactor } = setup([]);
    await agent.start();
    const values = await agent.resolveEnvironment([
      { scheme: 'dso', path: 'app/db' },
      { scheme: 'dso', path: 'app/cfg', field: 'token' },
    ]);
    expect(values.map((value) => [value.reference, value.provider, value.version])).toEqual([
      ['dso://app/db', 'local', '1'],
      ['dso://app/cfg#token', 'local', '1'],
    ]);
    expect(values[1]?.value.reveal().toString()).toBe(`${CANARY}-t`);
    expect(redactor.redact(`x ${CANARY}-t`)).not.toContain(CANARY);
    for (const value of values) value.value.dispose();
    await expect(
      agent.resolveEnvironment([{ scheme: 'dso', path: 'app/missing' }]),
    ).rejects.toMatchObject({ code: 'DSO_AGENT_RESOLVE_FAILED' });
    await agent.close();
  });

  it("refuses a stale value older than its provider's maximum staleness", async () => {
    const clock = createFakeClock();
    let down = false;
    const base = createProvider({ 'app/db': 'x', 'app/cfg': '{"token":"t"}' });
    const provider: SecretProvider = {
      ...base,
      async resolve(request, options) {
        if (down) throw new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'down', { retryable: true });
        return base.resolve(request, options);
      },
    };
    const cache = createMemoryCache({ ttlMs: 1_000, staleIfErrorMs: 3_600_000, clock });
    const { agent } = setup([], {
      providers: new Map([['local', provider]]),
      cache,
      maxStalenessMs: new Map([['local', 60_000]]),
      clock,
    });
    await agent.start();
    const fresh = await agent.resolveEnvironment([{ scheme: 'dso', path: 'app/db' }]);
    for (const value of fresh) value.value.dispose();
    down = true;
    clock.advance(30_000); // stale by 29 s: served
    const stale = await agent.resolveEnvironment([{ scheme: 'dso', path: 'app/db' }]);
    for (const value of stale) value.value.dispose();
    clock.advance(60_000); // stale by 89 s: refused
    await expect(agent.resolveEnvironment([{ scheme: 'dso', path: 'app/db' }])).rejects.toThrow(
      /maxStalenessMs/,
    );
    await agent.close();
    await cache.close();
  });
});

describe('createAgent: change detection', () => {
  it('rotates when a probe reports a new version, without waiting for a reconciliation', async () => {
    const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
    const versions: Record<string, number> = { 'app/db': 1, 'app/cfg': 1 };
    let probes = 0;
    const provider: SecretProvider = {
      ...createProvider(values),
      capabilities: { list: false, watch: false, probe: true, health: false },
      async resolve({ path }) {
        return { value: SecretValue.fromText(values[path] ?? ''), version: String(versions[path]) };
      },
      async probe({ path }) {
        probes += 1;
        return { version: String(versions[path]) };
      },
    };
    const registry = createMetricsRegistry({ redactor: createRedactor() });
    const metrics = createAgentMetrics(registry, { providers: ['local'] });
    const { agent, fake, lines } = setup(
      [container('c1', { ...MANAGED, 'dso.rotate': 'signal' })],
      {
        metrics,
        // The reconciliation alone would take an hour, the cache ten minutes.
        reconcileIntervalMs: 3_600_000,
        providers: new Map([['local', provider]]),
        changeDetection: { pollIntervalMs: 50 },
        rotation: { jitterMs: 0 },
      },
    );
    await agent.start();
    await agent.idle();
    await expect.poll(() => probes).toBeGreaterThan(0);
    values['app/db'] = 'v2';
    versions['app/db'] = 2;
    await expect.poll(() => fake.actions).toEqual(['signal c1 SIGHUP']);
    expect(fake.writes.at(-1)?.contents[0]).toBe('v2');
    expect(lines().find((line) => line.msg === 'new secret version detected')).toMatchObject({
      reference: 'local:app/db',
      version: '2',
      source: 'probe',
      containers: 1,
    });
    const exposition = await registry.metrics();
    expect(exposition).toContain('dso_rotation_changes_detected_total{source="probe"} 1');
    expect(exposition).toContain('dso_rotation_tracked_items{mode="probed"} 2');
    await agent.close();
  });
});

describe('createAgent: events for subscribers', () => {
  it('reports deliveries and failures by id, reference and code, never a value', async () => {
    const { agent, fake } = setup([container('c1', MANAGED)]);
    const events: AgentEvent[] = [];
    const unsubscribe = agent.subscribe((event) => events.push(event));
    // A listener that throws is dropped, and does not stop the others.
    agent.subscribe(() => {
      throw new Error('broken listener');
    });
    await agent.start();
    await agent.idle();
    fake.start(container('c2', { 'dso.enable': 'true', 'dso.file.x': 'dsofile://app/missing' }));
    await expect.poll(() => events.length).toBe(2);
    expect(events[0]).toMatchObject({
      type: 'delivered',
      containerId: 'c1',
      trigger: 'startup',
      files: 2,
      method: 'exec',
    });
    expect(events[1]).toMatchObject({
      type: 'delivery-failed',
      containerId: 'c2',
      trigger: 'started',
      code: 'DSO_PROVIDER_NOT_FOUND',
      reference: 'dsofile://app/missing',
      retry: false,
    });
    expect(JSON.stringify(events)).not.toContain(CANARY);
    unsubscribe();
    await agent.close();
  });
});

describe('createAgent: failures that must not spread', () => {
  it('goes on delivering and rotating when the audit trail cannot be written', async () => {
    const { agent, fake, lines } = setup([container('c1', MANAGED)], {
      audit: {
        record: () => {
          throw Object.assign(new Error('disk full'), { code: 'DSO_AUDIT_WRITE_FAILED' });
        },
        close: async () => {},
        [Symbol.asyncDispose]: async () => {},
      },
    });
    await agent.start();
    await agent.idle();
    expect(fake.writes).toHaveLength(1);
    expect(agent.status().containers[0]?.lastAction.outcome).toBe('delivered');
    expect(
      lines().filter((line) => String(line.msg).startsWith('audit trail cannot be written')),
    ).toHaveLength(1);
    await agent.close();
  });

  it('does not track a secret whose provider reports an empty version', async () => {
    const provider: SecretProvider = {
      ...createProvider({}),
      capabilities: { list: false, watch: false, probe: true, health: false },
      async resolve() {
        return { value: SecretValue.fromText('x'), version: '' };
      },
      async probe() {
        probes += 1;
        return { version: '' };
      },
    };
    let probes = 0;
    const clock = createFakeClock({ now: Date.now() });
    const { agent, fake, lines } = setup(
      [container('c1', { 'dso.enable': 'true', 'dso.file.a': 'dsofile://app/a' })],
      { providers: new Map([['local', provider]]), changeDetection: { pollIntervalMs: 50 }, clock },
    );
    await agent.start();
    await agent.idle();
    // Time moves past the hand-over to the detector and several of its intervals.
    for (let step = 0; step < 6; step += 1) {
      clock.advance(100);
      await new Promise((resolve) => setImmediate(resolve));
      await agent.idle();
    }
    expect(probes).toBe(0);
    expect(fake.writes).toHaveLength(1);
    expect(lines().some((line) => line.msg === 'change detection could not track')).toBe(false);
    await agent.close();
  });

  it('reports a field that is missing with its reference, as a resolve failure', async () => {
    const { agent, fake } = setup([
      container('c1', { 'dso.enable': 'true', 'dso.file.a': 'dsofile://app/cfg#nope' }),
    ]);
    await agent.start();
    await agent.idle();
    expect(fake.writes).toEqual([]);
    expect(agent.status().containers[0]?.lastAction).toMatchObject({
      outcome: 'failed',
      reference: 'dsofile://app/cfg#nope',
    });
    await agent.close();
  });

  it('refuses a host path folder mounted writable, with the fix', async () => {
    const { createHostSecretDirs } = await import('@dso/docker-runtime');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const root = mkdtempSync('/dev/shm/dso-agent-test-');
    try {
      const c1 = {
        ...container('c1', MANAGED),
        binds: [{ source: `${root}/web`, target: '/run/secrets', readOnly: false }],
      };
      const { agent, fake } = setup([c1], { hostDirs: createHostSecretDirs({ root }) });
      await agent.start();
      await agent.idle();
      expect(fake.writes).toEqual([]);
      expect(agent.status().containers[0]?.lastAction).toMatchObject({
        outcome: 'failed',
        code: 'DSO_AGENT_HOST_PATH_WRITABLE',
      });
      await agent.close();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it('delivers the files of a container whose dso:// version cannot be checked', async () => {
    const { agent, fake, lines } = setup([
      container('c1', { ...MANAGED, 'dso.env.API_KEY': 'dso://app/missing' }),
    ]);
    await agent.start();
    await agent.idle();
    expect(fake.writes).toHaveLength(1);
    expect(
      lines().some((line) => String(line.msg).startsWith('could not check the versions')),
    ).toBe(true);
    await agent.close();
  });

  it('aborts a rotation still running when the grace period ends, and waits for it', async () => {
    const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
    const { provider, state } = versioned(values);
    const cache = createMemoryCache({ ttlMs: 0 });
    const { agent, fake } = setup([container('c1', { ...MANAGED, 'dso.rotate': 'restart' })], {
      reconcileIntervalMs: 20,
      providers: new Map([['local', provider]]),
      cache,
      // The rotation sits in its jitter far past the grace period.
      rotation: { jitterMs: 60_000 },
      shutdownGraceMs: 50,
    });
    await agent.start();
    await agent.idle();
    state.version = 2;
    await expect.poll(() => fake.writes.length).toBe(2);
    // Without the abort, close would wait out the minute of jitter (past the test's timeout).
    await agent.close();
    expect(fake.actions).toEqual([]);
    await cache.close();
  });
});

describe('createAgent: what was delivered survives a restart', () => {
  async function withStateFile(run: (path: string) => Promise<void>) {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'dso-agent-state-'));
    try {
      await run(join(dir, 'agent-state.json'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }

  it('rotates nothing after a restart with nothing changed, and rotates what changed while it was down', async () => {
    await withStateFile(async (statePath) => {
      const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
      const { provider, state } = versioned(values);
      const c1 = container('c1'.padEnd(64, 'a'), { ...MANAGED, 'dso.rotate': 'signal' });
      const run = async () => {
        const { agent, fake } = setup([c1], {
          providers: new Map([['local', provider]]),
          statePath,
          rotation: { jitterMs: 0 },
        });
        await agent.start();
        await agent.idle();
        return { agent, fake };
      };
      const first = await run();
      expect(first.fake.writes).toHaveLength(1);
      await first.agent.close();
      const { statSync, readFileSync } = await import('node:fs');
      expect(statSync(statePath).mode & 0o777).toBe(0o600);
      expect(readFileSync(statePath, 'utf8')).not.toContain('v1');

      // Restarted, nothing changed: nothing written, nothing done.
      const second = await run();
      expect(second.fake.writes).toEqual([]);
      expect(second.fake.actions).toEqual([]);
      await second.agent.close();

      // Changed while no agent ran: written and rotated at the next start.
      values['app/db'] = 'v2';
      state.version = 2;
      const third = await run();
      await expect.poll(() => third.fake.actions).toEqual([`signal ${c1.id} SIGHUP`]);
      expect(third.fake.writes).toHaveLength(1);
      await third.agent.close();
    });
  });

  it('redoes a rotation that an agent stop interrupted', async () => {
    await withStateFile(async (statePath) => {
      const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
      const { provider, state } = versioned(values);
      const cache = createMemoryCache({ ttlMs: 0 });
      const c1 = container('c1'.padEnd(64, 'b'), { ...MANAGED, 'dso.rotate': 'restart' });
      const first = setup([c1], {
        providers: new Map([['local', provider]]),
        cache,
        statePath,
        reconcileIntervalMs: 20,
        rotation: { jitterMs: 60_000 },
        shutdownGraceMs: 10,
      });
      await first.agent.start();
      await first.agent.idle();
      state.version = 2;
      await expect.poll(() => first.fake.writes.length).toBe(2);
      await first.agent.close(); // the restart was still waiting out its jitter
      expect(first.fake.actions).toEqual([]);

      const second = setup([c1], {
        providers: new Map([['local', provider]]),
        statePath,
        rotation: { jitterMs: 0 },
      });
      await second.agent.start();
      await expect.poll(() => second.fake.actions).toEqual([`restart ${c1.id}`]);
      await second.agent.close();
      await cache.close();
    });
  });
});

describe('createAgent: rotate on request during an outage', () => {
  it('keeps the cached value when the provider cannot answer', async () => {
    let down = false;
    const base = createProvider({ 'app/db': CANARY, 'app/cfg': '{"token":"t"}' });
    const provider: SecretProvider = {
      ...base,
      async resolve(request, options) {
        if (down) throw new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'down', { retryable: true });
        return base.resolve(request, options);
      },
    };
    const { agent, lines } = setup([container('c1'.padEnd(64, 'c'), MANAGED)], {
      providers: new Map([['local', provider]]),
    });
    await agent.start();
    await agent.idle();
    down = true;
    await agent.rotate();
    await agent.idle();
    expect(
      lines().filter(
        (line) => line.msg === 'could not ask the provider again; the cached value stays',
      ),
    ).toHaveLength(2);
    // A new container still gets the last known value.
    const [value] = await agent.resolveEnvironment([{ scheme: 'dso', path: 'app/db' }]);
    expect(value?.value.reveal().toString()).toBe(CANARY);
    value?.value.dispose();
    await agent.close();
  });
});

describe('createAgent: host folders of removed containers', () => {
  it('deletes the folders no container binds any more, and keeps the others', async () => {
    const { createHostSecretDirs } = await import('@dso/docker-runtime');
    const { existsSync, mkdtempSync, rmSync } = await import('node:fs');
    const root = mkdtempSync('/dev/shm/dso-agent-test-');
    try {
      const hostDirs = createHostSecretDirs({ root });
      hostDirs.ensure('gone'); // its container was removed while no agent ran
      const c1 = {
        ...container('c1', MANAGED),
        binds: [{ source: `${root}/kept`, target: '/run/secrets', readOnly: true }],
      };
      const { agent } = setup([c1], { hostDirs, hostFolderMinAgeMs: 0 });
      await agent.start();
      await agent.idle();
      await expect.poll(() => existsSync(`${root}/gone`)).toBe(false);
      expect(existsSync(`${root}/kept/..data`)).toBe(true);
      await agent.close();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
