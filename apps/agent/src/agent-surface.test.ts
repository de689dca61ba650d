import { createFakeClock, createMemoryCache } from '@dso/core';
import { ProviderError, type SecretProvider, SecretValue } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from './agent.js';
import {
  CANARY,
  container,
  createProvider,
  MANAGED,
  setup,
  versioned,
} from './test-support/agent-fixture.js';

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

  it('checks dso:// and dsofile:// references for dso up: versions, or the code and message of each missing one, never a value', async () => {
    const { agent } = setup([]);
    await agent.start();
    const checked = await agent.checkReferences([
      { scheme: 'dso', path: 'app/db' },
      { scheme: 'dsofile', path: 'app/missing' },
      { scheme: 'dsofile', path: 'app/cfg', field: 'token' },
    ]);
    expect(
      checked.map(({ reference, provider, version, code }) => [reference, provider, version, code]),
    ).toEqual([
      ['dso://app/db', 'local', '1', undefined],
      ['dsofile://app/missing', 'local', undefined, 'DSO_PROVIDER_NOT_FOUND'],
      ['dsofile://app/cfg#token', 'local', '1', undefined],
    ]);
    expect(checked[1]?.error).toContain('app/missing');
    expect(JSON.stringify(checked)).not.toContain(CANARY);
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
