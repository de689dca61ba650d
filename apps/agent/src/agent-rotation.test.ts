import { createMemoryCache, createMetricsRegistry, createRedactor } from '@dso/core';
import { ProviderError, type SecretProvider, SecretValue } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from './agent-types.js';
import { createAgentMetrics } from './observability.js';
import {
  CANARY,
  container,
  createProvider,
  MANAGED,
  setup,
  versioned,
} from './test-support/agent-fixture.js';

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

  it('takes no rotation action for a new version that carries the same value', async () => {
    const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
    const { provider, state } = versioned(values);
    const cache = createMemoryCache({ ttlMs: 0 });
    const { agent, fake, lines } = setup(
      [container('c1', { ...MANAGED, 'dso.rotate': 'restart' })],
      {
        reconcileIntervalMs: 20,
        providers: new Map([['local', provider]]),
        cache,
        rotation: { jitterMs: 0 },
      },
    );
    await agent.start();
    await agent.idle();
    state.version = 2; // a provider that versions an identical value
    await expect
      .poll(() =>
        lines().some(
          (line) => line.msg === 'new versions carry the same values: no rotation action',
        ),
      )
      .toBe(true);
    expect(fake.actions).toEqual([]);
    values['app/db'] = 'v2';
    state.version = 3;
    await expect.poll(() => fake.actions).toEqual(['restart c1']);
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
    values['app/db'] = 'v2';
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
    // Reconciliations every 20 ms here: none hurries the retry, which waits for its backoff.
    expect(await registry.metrics()).toContain(
      'dso_rotation_runs_total{policy="replace",outcome="rolled_back"} 1',
    );
    await agent.close();
    await cache.close();
  });

  it('keeps a rolled-back replacement undelivered: shown failed, and replaced again at dso reconcile, a container restart and an agent restart', async () => {
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const dir = mkdtempSync(join(tmpdir(), 'dso-agent-state-'));
    const statePath = join(dir, 'agent-state.json');
    const values: Record<string, string> = {
      'app/db': 'v1',
      'app/cfg': '{"token":"t"}',
      'app/api': `${CANARY}-1`,
    };
    const { provider, state } = versioned(values);
    const c1 = container('c1'.padEnd(64, 'c'), {
      ...MANAGED,
      'dso.env.API_KEY': 'dso://app/api',
      'dso.env-version.API_KEY': '1',
    });
    const run = (fake?: ReturnType<typeof setup>['fake']) => {
      const cache = createMemoryCache({ ttlMs: 0 });
      const context = setup(fake === undefined ? [c1] : [], {
        ...(fake === undefined ? {} : { runtime: fake.runtime }),
        providers: new Map([['local', provider]]),
        cache,
        statePath,
        reconcileIntervalMs: 3_600_000,
        rotation: { jitterMs: 0 },
      });
      return { ...context, fake: fake ?? context.fake, cache };
    };
    try {
      const first = run();
      const { fake } = first;
      await first.agent.start();
      await first.agent.idle();
      expect(fake.actions).toEqual([]);
      fake.failing.add('replace');
      values['app/api'] = `${CANARY}-2`;
      state.version = 2;
      const replaces = () => fake.actions.filter((action) => action === `replace ${c1.id}`).length;
      await first.agent.reconcile();
      await expect.poll(replaces).toBe(1);
      await expect
        .poll(() => first.agent.status().containers[0]?.lastAction)
        .toMatchObject({ outcome: 'failed', code: 'DSO_DOCKER_REPLACE_FAILED' });
      const status = first.agent.status().containers[0];
      expect(status?.env).toEqual([
        { name: 'API_KEY', reference: 'dso://app/api', provider: 'local', version: '1' },
      ]);
      expect(status?.lastAction.message).toContain('it still runs the old values');
      // dso reconcile tries again.
      await first.agent.reconcile();
      await expect.poll(replaces).toBe(2);
      // So does a restart of the container.
      await fake.runtime.restartContainer(c1.id, { stopTimeoutMs: 0 });
      await expect.poll(replaces).toBe(3);
      await expect
        .poll(() => first.agent.status().containers[0]?.lastAction.outcome)
        .toBe('failed');
      await first.agent.close();
      await first.cache.close();
      // And an agent restart, from the state file; this time it happens.
      fake.failing.delete('replace');
      const second = run(fake);
      await second.agent.start();
      await expect.poll(replaces).toBe(4);
      await expect
        .poll(() => second.agent.status().containers.map((entry) => entry.id))
        .toEqual([`${c1.id}-next`]);
      expect(fake.replacedEnv.at(-1)).toEqual({ API_KEY: `${CANARY}-2` });
      expect(second.output()).not.toContain(CANARY);
      expect(first.output()).not.toContain(CANARY);
      await second.agent.close();
      await second.cache.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
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

describe('createAgent: a secret removed from its store while in use', () => {
  it('shows its consumers missing (status, event, audit), and never up to date again from the cache', async () => {
    const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
    const notFound = (path: string) =>
      new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { path });
    const provider: SecretProvider = {
      ...createProvider(values),
      capabilities: { list: false, watch: false, probe: true, health: false },
      async resolve({ path }) {
        const value = values[path];
        if (value === undefined) throw notFound(path);
        return { value: SecretValue.fromText(value), version: '1' };
      },
      async probe({ path }) {
        if (values[path] === undefined) throw notFound(path);
        return { version: '1' };
      },
    };
    const records: Array<Record<string, unknown>> = [];
    const { agent, fake } = setup([container('c1', MANAGED)], {
      reconcileIntervalMs: 3_600_000,
      providers: new Map([['local', provider]]),
      changeDetection: { pollIntervalMs: 50 },
      audit: {
        record: (entry) => records.push(entry as Record<string, unknown>),
        close: async () => {},
        [Symbol.asyncDispose]: async () => {},
      },
    });
    const events: AgentEvent[] = [];
    agent.subscribe((event) => events.push(event));
    await agent.start();
    await agent.idle();
    expect(agent.status().containers[0]?.lastAction.outcome).toBe('delivered');
    delete values['app/db'];
    await expect
      .poll(() => agent.status().containers[0]?.lastAction)
      .toMatchObject({
        outcome: 'missing',
        code: 'DSO_PROVIDER_NOT_FOUND',
        reference: 'dsofile://app/db',
      });
    expect(agent.status().containers[0]?.lastAction.message).toContain(
      'is no longer in provider local',
    );
    expect(events).toContainEqual(
      expect.objectContaining({
        type: 'secret-missing',
        containerId: 'c1',
        reference: 'dsofile://app/db',
      }),
    );
    expect(records).toContainEqual(
      expect.objectContaining({
        action: 'inject',
        reference: 'dsofile://app/db',
        containerId: 'c1',
        outcome: 'error',
        code: 'DSO_PROVIDER_NOT_FOUND',
      }),
    );
    // dso reconcile asks the store (not the cache): still not up to date.
    await agent.reconcile();
    await agent.idle();
    expect(agent.status().containers[0]?.lastAction).toMatchObject({
      outcome: 'failed',
      code: 'DSO_PROVIDER_NOT_FOUND',
    });
    expect(fake.writes).toHaveLength(1); // its files stay as they were
    await agent.close();
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
      values['app/db'] = 'v2';
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
