import { createFakeClock, createMemoryCache, createMetricsRegistry } from '@dso/core';
import { ProviderError, type SecretProvider, SecretValue } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { createAgentHealth, createAgentMetrics } from './observability.js';
import { CANARY, container, MANAGED, setup, versioned } from './test-support/agent-fixture.js';

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

  it('records one audit line per file delivered, and the reference that was refused', async () => {
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
          // Not found will not pass by itself: a refusal, with its reason.
          outcome: 'refused',
          code: 'DSO_PROVIDER_NOT_FOUND',
          reason: expect.stringContaining('dsofile://app/missing'),
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
