import { createFakeClock, createRedactor } from '@dso/core';
import {
  createProvider,
  defineProvider,
  ProviderError,
  type SecretProvider,
  SecretValue,
} from '@dso/provider-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  CANARY,
  CAPABILITIES,
  closeDetectors,
  flush,
  INTERVAL,
  probeProvider,
  setup,
  tick,
} from './test-support/detector-fixture.js';

afterEach(closeDetectors);

describe('createChangeDetector with a provider that probes', () => {
  it('detects a change within one interval and reports it once', async () => {
    const store = probeProvider();
    store.versions.set('app/db', '1');
    const { detector, clock, changes } = setup([store.provider], { random: Math.random });
    detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
    await tick(clock, INTERVAL);
    expect(store.calls.length).toBeGreaterThanOrEqual(1);
    expect(changes).toEqual([]);

    store.versions.set('app/db', '2');
    await tick(clock, INTERVAL + 50);
    expect(changes).toEqual([{ provider: 'store', path: 'app/db', version: '2', source: 'probe' }]);
    await tick(clock, 5 * INTERVAL);
    expect(changes).toHaveLength(1);
    expect(detector.stats()).toMatchObject({ tracked: 1, probed: 1, changes: 1, errors: 0 });
  });

  it('spreads checks: each waits between (1 - jitter) and all of its interval', async () => {
    const clock = createFakeClock();
    const times: number[] = [];
    const provider: SecretProvider = {
      name: 'store',
      capabilities: { ...CAPABILITIES, probe: true },
      async resolve() {
        throw new Error('not expected');
      },
      async probe() {
        times.push(clock.now() - start);
        return { version: '1' };
      },
      async close() {},
    };
    let draw = 0;
    const draws = [0.5, 0, 0.999, 0.25];
    const { detector } = setup([provider], {
      clock,
      jitter: 0.2,
      random: () => draws[draw++ % draws.length]!,
    });
    const start = clock.now();
    detector.track([{ provider: 'store', path: 'a', version: '1' }]);
    await tick(clock, 3_500, 10);
    // First: 0.5 × 1000; then, from the end of each check (within one 10 ms step of the fake
    // clock here), 1000 × (1 - 0.2 × r) for r = 0, 0.999, 0.25 → 1000, 800.2, 950.
    expect(times[0]).toBe(500);
    const gaps = times.slice(1).map((time, index) => time - times[index]!);
    const expected = [1_000, 800.2, 950];
    expect(gaps).toHaveLength(3);
    for (const [index, gap] of gaps.entries()) {
      expect(gap).toBeGreaterThanOrEqual(expected[index]! - 0.01);
      expect(gap).toBeLessThanOrEqual(expected[index]! + 10);
    }
  });

  it('uses a per-provider interval where one is given', async () => {
    const fast = probeProvider('fast');
    const slow = probeProvider('slow');
    fast.versions.set('a', '1');
    slow.versions.set('a', '1');
    const { detector, clock } = setup([fast.provider, slow.provider], {
      pollIntervalByProvider: new Map([['fast', 200]]),
    });
    detector.track([
      { provider: 'fast', path: 'a', version: '1' },
      { provider: 'slow', path: 'a', version: '1' },
    ]);
    await tick(clock, 2_000);
    expect(fast.calls.length).toBeGreaterThanOrEqual(9);
    expect(slow.calls.length).toBeLessThanOrEqual(2);
  });

  it('keeps at most 8 probes of one provider in flight, and gets to every secret', async () => {
    const store = probeProvider();
    const secrets = Array.from({ length: 100 }, (_, index) => ({
      provider: 'store',
      path: `app/s${index}`,
      version: '1',
    }));
    for (const { path } of secrets) store.versions.set(path, '1');
    store.gate.held = true;
    // random 0: every first check falls due at once, the worst case.
    const { detector, clock } = setup([store.provider], { random: () => 0 });
    detector.track(secrets);
    await tick(clock, 10);
    expect(store.inFlight()).toBe(8);
    for (let round = 0; round < 20 && new Set(store.calls).size < 100; round += 1) {
      store.gate.release();
      store.gate.held = true;
      await flush();
      expect(store.inFlight()).toBeLessThanOrEqual(8);
    }
    store.gate.release();
    await flush();
    expect(store.maxInFlight()).toBe(8);
    expect(new Set(store.calls).size).toBe(100);
  });

  it('keeps checking after errors, and logs a missing secret once', async () => {
    const store = probeProvider();
    const { detector, clock, changes, lines } = setup([store.provider]);
    detector.track([{ provider: 'store', path: 'app/gone', version: '1' }]);
    await tick(clock, 5 * INTERVAL);
    expect(store.calls.length).toBeGreaterThanOrEqual(5);
    const missing = lines().filter((line) => line.code === 'DSO_PROVIDER_NOT_FOUND');
    expect(missing.filter((line) => line.level === 40)).toHaveLength(1);
    expect(missing[0]).toMatchObject({
      reference: 'store:app/gone',
      operation: 'probe',
      retryable: false,
    });
    expect(missing.slice(1).every((line) => line.level === 20)).toBe(true);
    expect(detector.stats().errors).toBe(store.calls.length);

    store.versions.set('app/gone', '2');
    await tick(clock, INTERVAL + 50);
    expect(changes).toEqual([
      { provider: 'store', path: 'app/gone', version: '2', source: 'probe' },
    ]);
    expect(lines().some((line) => line.msg === 'secret version readable again')).toBe(true);
  });

  it('reports a secret deleted while in use once through onMissing, and again after it came back', async () => {
    const store = probeProvider();
    store.versions.set('app/db', '1');
    const missing: unknown[] = [];
    const { detector, clock } = setup([store.provider], {
      onMissing: (gone) => missing.push(gone),
    });
    detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
    await tick(clock, 2 * INTERVAL);
    expect(missing).toEqual([]);
    store.versions.delete('app/db');
    await tick(clock, 5 * INTERVAL);
    expect(missing).toEqual([
      { provider: 'store', path: 'app/db', code: 'DSO_PROVIDER_NOT_FOUND' },
    ]);
    store.versions.set('app/db', '1');
    await tick(clock, 2 * INTERVAL);
    store.versions.delete('app/db');
    await tick(clock, 2 * INTERVAL);
    expect(missing).toHaveLength(2);
  });

  it('logs a provider outage once an interval, not once per secret', async () => {
    const store = probeProvider();
    const secrets = ['a', 'b', 'c', 'd'].map((path) => ({
      provider: 'store',
      path,
      version: '1',
    }));
    for (const { path } of secrets) {
      store.failWith.set(
        path,
        new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'store unavailable', { provider: 'store' }),
      );
    }
    // First checks at 100, 200, 300 and 400 ms; each next one 950 ms after its last.
    const draws = [0.1, 0.2, 0.3, 0.4];
    let draw = 0;
    const { detector, clock, lines } = setup([store.provider], {
      random: () => draws[draw++] ?? 0.5,
    });
    detector.track(secrets);
    await tick(clock, 900);
    const warnings = () => lines().filter((line) => line.level === 40);
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE', retryable: true });
    expect(detector.stats().errors).toBe(4);
    // Second round (1050 to 1350 ms): logged again once an interval has passed since the last.
    await tick(clock, 1_000);
    expect(detector.stats().errors).toBe(8);
    expect(warnings()).toHaveLength(2);
  });

  it('ignores an answer that started before the baseline moved', async () => {
    const store = probeProvider();
    store.versions.set('app/db', '1');
    store.gate.held = true;
    const { detector, clock, changes } = setup([store.provider]);
    detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
    await tick(clock, 600);
    expect(store.inFlight()).toBe(1);
    // Meanwhile the agent delivered version 3 (found on its own reconciliation).
    detector.track([{ provider: 'store', path: 'app/db', version: '3' }]);
    store.gate.release();
    await flush();
    // The old probe's '1' decides nothing; the next one does.
    expect(changes).toEqual([]);
    store.versions.set('app/db', '3');
    await tick(clock, 2 * INTERVAL);
    expect(changes).toEqual([]);
  });

  it('survives an onChange that throws, and logs it without its message', async () => {
    const store = probeProvider();
    store.versions.set('app/db', '2');
    store.versions.set('app/web', '2');
    let calls = 0;
    const { detector, clock, lines, output } = setup([store.provider], {
      onChange: () => {
        calls += 1;
        throw new Error(`handler broke on ${CANARY}`);
      },
    });
    detector.track([
      { provider: 'store', path: 'app/db', version: '1' },
      { provider: 'store', path: 'app/web', version: '1' },
    ]);
    await tick(clock, 3 * INTERVAL);
    expect(calls).toBe(2);
    expect(lines().filter((line) => line.code === 'DSO_AGENT_CHANGE_HANDLER_FAILED')).toHaveLength(
      2,
    );
    expect(output()).not.toContain(CANARY);
  });

  it('works with a provider built by the SDK (defineProvider, createProvider)', async () => {
    let version = '1';
    const definition = defineProvider({
      type: 'counter',
      configSchema: z.object({}),
      capabilities: { probe: true },
      create: (_config, { name }) => ({
        name,
        capabilities: { ...CAPABILITIES, probe: true },
        async resolve() {
          return { value: SecretValue.fromText(CANARY), version };
        },
        async probe() {
          return { version };
        },
        async close() {},
      }),
    });
    const provider = await createProvider(definition, {}, { name: 'counter' });
    const { detector, clock, changes } = setup([provider]);
    detector.track([{ provider: 'counter', path: 'app/x', version: '1' }]);
    version = '2';
    await tick(clock, INTERVAL + 50);
    expect(changes).toEqual([
      { provider: 'counter', path: 'app/x', version: '2', source: 'probe' },
    ]);
    await provider.close();
  });
});

describe('createChangeDetector with a provider that can only resolve', () => {
  function resolveOnly() {
    const values: SecretValue[] = [];
    let version = '1';
    let failure: unknown;
    const provider: SecretProvider = {
      name: 'plain',
      capabilities: CAPABILITIES,
      async resolve() {
        if (failure !== undefined) throw failure;
        const value = SecretValue.fromText(`${CANARY}-${version}`);
        values.push(value);
        return { value, version };
      },
      async close() {},
    };
    return {
      provider,
      values,
      setVersion: (next: string) => {
        version = next;
      },
      setFailure: (error: unknown) => {
        failure = error;
      },
    };
  }

  it('polls with resolve, registers each value while it lives, disposes it, and never logs it', async () => {
    const plain = resolveOnly();
    const redactor = createRedactor();
    const { detector, clock, changes, output } = setup([plain.provider], { redactor });
    detector.track([{ provider: 'plain', path: 'app/db', version: '1' }]);
    await tick(clock, INTERVAL);
    plain.setVersion('2');
    await tick(clock, INTERVAL + 50);
    expect(changes).toEqual([{ provider: 'plain', path: 'app/db', version: '2', source: 'poll' }]);
    expect(plain.values.length).toBeGreaterThanOrEqual(2);
    for (const value of plain.values) expect(() => value.reveal()).toThrow(TypeError);
    // Registered only while looked at: each version of a rotating secret would stay otherwise.
    expect(redactor.size).toBe(0);
    expect(redactor.redact(`${CANARY}-1 ${CANARY}-2`)).toBe(`${CANARY}-1 ${CANARY}-2`);
    expect(detector.stats()).toMatchObject({ polled: 1, probed: 0, watched: 0 });

    // Errors that quote the value, in their message or their cause, never reach the log.
    plain.setFailure(new Error(`backend said ${CANARY}`));
    await tick(clock, 2 * INTERVAL);
    plain.setFailure(
      new ProviderError('DSO_PROVIDER_INTERNAL', 'store failed', {
        provider: 'plain',
        cause: new Error(`decrypt ${CANARY}`),
      }),
    );
    await tick(clock, 2 * INTERVAL);
    expect(detector.stats().errors).toBeGreaterThanOrEqual(2);
    expect(output()).toContain('DSO_PROVIDER_INTERNAL');
    expect(output()).not.toContain(CANARY);
  });

  it('disposes a value that arrives after close() gave up on it', async () => {
    let release: (() => void) | undefined;
    const late = SecretValue.fromText(CANARY);
    const provider: SecretProvider = {
      name: 'slow',
      capabilities: CAPABILITIES,
      // Ignores its signal on purpose.
      resolve: () =>
        new Promise((resolve) => {
          release = () => resolve({ value: late, version: '2' });
        }),
      async close() {},
    };
    const { detector, clock, changes } = setup([provider]);
    detector.track([{ provider: 'slow', path: 'app/db', version: '1' }]);
    await tick(clock, INTERVAL);
    expect(release).toBeDefined();
    await detector.close(); // does not wait for the provider
    release!();
    await flush();
    expect(() => late.reveal()).toThrow(TypeError);
    expect(changes).toEqual([]);
  });
});
