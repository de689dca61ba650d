import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createFakeClock, createLogger, createRedactor, type FakeClock } from '@dso/core';
import filePackage from '@dso/provider-file';
import {
  createProvider,
  defineProvider,
  ProviderError,
  type SecretChange,
  type SecretProvider,
  SecretValue,
} from '@dso/provider-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  type ChangeDetector,
  type ChangeDetectorOptions,
  createChangeDetector,
  type DetectedChange,
} from './change-detector.js';

const CANARY = 'canary-change-detector-4e8a1c';
const INTERVAL = 1_000;
const CAPABILITIES = { list: false, watch: false, probe: false, health: false };

/** Lets promise callbacks (and the provider calls they start) run. */
async function flush(rounds = 5): Promise<void> {
  for (let round = 0; round < rounds; round += 1) {
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** Moves the fake clock in small steps, letting async work run between them. */
async function tick(clock: FakeClock, ms: number, stepMs = 25): Promise<void> {
  for (let passed = 0; passed < ms; passed += stepMs) {
    clock.advance(Math.min(stepMs, ms - passed));
    await flush(2);
  }
  await flush();
}

interface Probed {
  provider: SecretProvider;
  versions: Map<string, string>;
  calls: string[];
  signals: AbortSignal[];
  inFlight: () => number;
  maxInFlight: () => number;
  /** When set, probes wait until released. */
  gate: { held: boolean; release: () => void };
  failWith: Map<string, unknown>;
}

/** A provider with `probe` (and `watch` when asked), its versions set by the test. */
function probeProvider(name = 'store', withWatch = false): Probed & { watch: WatchControl } {
  const versions = new Map<string, string>();
  const calls: string[] = [];
  const signals: AbortSignal[] = [];
  const failWith = new Map<string, unknown>();
  let active = 0;
  let peak = 0;
  let waiters: Array<() => void> = [];
  const gate = {
    held: false,
    release() {
      gate.held = false;
      const ready = waiters;
      waiters = [];
      for (const resume of ready) resume();
    },
  };
  const watch = watchControl();
  const provider: SecretProvider = {
    name,
    capabilities: { ...CAPABILITIES, probe: true, watch: withWatch },
    async resolve() {
      throw new Error('resolve is not expected here');
    },
    async probe({ path }, options) {
      calls.push(path);
      if (options?.signal) signals.push(options.signal);
      active += 1;
      peak = Math.max(peak, active);
      try {
        if (gate.held) await new Promise<void>((resolve) => waiters.push(resolve));
        const failure = failWith.get(path);
        if (failure !== undefined) throw failure;
        const version = versions.get(path);
        if (version === undefined) {
          throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, {
            provider: name,
            path,
          });
        }
        return { version };
      } finally {
        active -= 1;
      }
    },
    async close() {},
  };
  if (withWatch) provider.watch = watch.watch;
  return {
    provider,
    versions,
    calls,
    signals,
    inFlight: () => active,
    maxInFlight: () => peak,
    gate,
    failWith,
    watch,
  };
}

interface WatchSession {
  paths: readonly string[];
  signal: AbortSignal;
  push(change: SecretChange): void;
  fail(error: unknown): void;
  end(): void;
  closed: boolean;
}

interface WatchControl {
  watch: NonNullable<SecretProvider['watch']>;
  sessions: WatchSession[];
  open(): WatchSession[];
}

/** A watch that yields what the test pushes, ends or fails when told, and stops at abort. */
function watchControl(): WatchControl {
  const sessions: WatchSession[] = [];
  return {
    sessions,
    open: () => sessions.filter((session) => !session.closed),
    watch(paths, { signal }) {
      type Item = { change: SecretChange } | { error: unknown } | { end: true };
      const items: Item[] = [];
      let wake: (() => void) | undefined;
      const add = (item: Item) => {
        items.push(item);
        wake?.();
      };
      const session: WatchSession = {
        paths: [...paths],
        signal,
        push: (change) => add({ change }),
        fail: (error) => add({ error }),
        end: () => add({ end: true }),
        closed: false,
      };
      sessions.push(session);
      return (async function* () {
        try {
          while (!signal.aborted) {
            const item = items.shift();
            if (item === undefined) {
              await new Promise<void>((resolve) => {
                wake = resolve;
                signal.addEventListener('abort', () => resolve(), { once: true });
              });
              continue;
            }
            if ('error' in item) throw item.error;
            if ('end' in item) return;
            yield item.change;
          }
        } finally {
          session.closed = true;
        }
      })();
    },
  };
}

let detectors: ChangeDetector[] = [];
afterEach(async () => {
  await Promise.all(detectors.map((detector) => detector.close()));
  detectors = [];
});

function setup(
  providers: SecretProvider[],
  overrides: Partial<ChangeDetectorOptions> = {},
): {
  detector: ChangeDetector;
  clock: FakeClock;
  changes: DetectedChange[];
  output: () => string;
  lines: () => Array<Record<string, unknown>>;
} {
  let output = '';
  const destination = new Writable({
    write(chunk, _encoding, callback) {
      output += String(chunk);
      callback();
    },
  });
  const clock = (overrides.clock as FakeClock | undefined) ?? createFakeClock();
  const changes: DetectedChange[] = [];
  const detector = createChangeDetector({
    providers: new Map(providers.map((provider) => [provider.name, provider])),
    // The logger's own redactor knows no value: whatever the detector logged would show.
    logger: createLogger({ level: 'trace', destination, redactor: createRedactor() }),
    pollIntervalMs: INTERVAL,
    onChange: (change) => changes.push(change),
    clock,
    random: () => 0.5,
    watchSettleMs: 100,
    watchRebuildDelayMs: 200,
    watchRetryBaseDelayMs: 500,
    watchRetryMaxDelayMs: 2_000,
    ...overrides,
  });
  detectors.push(detector);
  return {
    detector,
    clock,
    changes,
    output: () => output,
    lines: () =>
      output
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
  };
}

describe('createChangeDetector', () => {
  describe('with a provider that watches', () => {
    it('reports a change through the watch once, and probes only to catch up when it opens', async () => {
      const store = probeProvider('store', true);
      store.versions.set('app/db', '1');
      const { detector, clock, changes } = setup([store.provider]);
      detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
      await tick(clock, 150);
      expect(store.watch.open()).toHaveLength(1);
      expect(store.watch.sessions[0]!.paths).toEqual(['app/db']);
      // One probe once the watch is trusted: a change made before it took effect is not missed.
      expect(store.calls).toEqual(['app/db']);
      expect(detector.stats()).toMatchObject({ tracked: 1, watched: 1, probed: 0, polled: 0 });

      store.watch.sessions[0]!.push({ path: 'app/db', version: '2' });
      store.watch.sessions[0]!.push({ path: 'app/db', version: '2' }); // reported twice
      store.watch.sessions[0]!.push({ path: 'other/path', version: '9' }); // not tracked
      await tick(clock, 5 * INTERVAL);
      expect(changes).toEqual([
        { provider: 'store', path: 'app/db', version: '2', source: 'watch' },
      ]);
      expect(store.calls).toHaveLength(1);
      expect(detector.stats().changes).toBe(1);
    });

    it('catches a change made before the watch took effect with one probe', async () => {
      const store = probeProvider('store', true);
      store.versions.set('app/db', '2');
      const { detector, clock, changes } = setup([store.provider]);
      detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
      await tick(clock, 150);
      expect(changes).toEqual([
        { provider: 'store', path: 'app/db', version: '2', source: 'probe' },
      ]);
    });

    it('reopens a watch that failed, probing every interval meanwhile and catching up after', async () => {
      const store = probeProvider('store', true);
      store.versions.set('app/db', '1');
      const { detector, clock, changes, lines } = setup([store.provider], {
        watchRetryBaseDelayMs: 2_500,
        watchRetryMaxDelayMs: 2_500,
      });
      detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
      await tick(clock, 150);
      expect(store.calls).toHaveLength(1);

      store.watch.sessions[0]!.fail(
        new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'store restarted: watch again', {
          provider: 'store',
        }),
      );
      await tick(clock, 50);
      expect(store.watch.open()).toHaveLength(0);
      expect(detector.stats()).toMatchObject({ watched: 0, probed: 1, errors: 1 });
      expect(lines().find((line) => String(line.msg).startsWith('watch failed'))).toMatchObject({
        level: 40,
        provider: 'store',
        code: 'DSO_PROVIDER_UNAVAILABLE',
        attempt: 1,
      });

      // Down for 2.5 s (backoff 2,500 × 0.75): probed at its interval meanwhile.
      store.versions.set('app/db', '2');
      await tick(clock, INTERVAL);
      expect(changes).toEqual([
        { provider: 'store', path: 'app/db', version: '2', source: 'probe' },
      ]);
      const probesWhileDown = store.calls.length;
      expect(probesWhileDown).toBeGreaterThanOrEqual(2);

      await tick(clock, 2_000);
      expect(store.watch.sessions).toHaveLength(2);
      expect(store.watch.open()).toHaveLength(1);
      await tick(clock, 150);
      // Settled: one catch-up probe, then the watch alone.
      const afterCatchUp = store.calls.length;
      await tick(clock, 3 * INTERVAL);
      expect(store.calls).toHaveLength(afterCatchUp);
      expect(detector.stats()).toMatchObject({ watched: 1, probed: 0 });
      expect(changes).toHaveLength(1);
    });

    it('reopens a watch that ended normally', async () => {
      const store = probeProvider('store', true);
      store.versions.set('app/db', '1');
      const { detector, clock, changes } = setup([store.provider]);
      detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
      await tick(clock, 150);
      store.watch.sessions[0]!.end();
      await tick(clock, 1_000);
      expect(store.watch.sessions).toHaveLength(2);
      store.watch.sessions[1]!.push({ path: 'app/db', version: '7' });
      await tick(clock, 50);
      expect(changes).toEqual([
        { provider: 'store', path: 'app/db', version: '7', source: 'watch' },
      ]);
      expect(detector.stats().errors).toBe(0);
    });

    it('backs off further while the watch keeps failing, capped', async () => {
      const store = probeProvider('store', true);
      store.versions.set('app/db', '1');
      const { detector, clock } = setup([store.provider], { random: () => 0.999_999 });
      detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
      await tick(clock, 10);
      const failAt: number[] = [];
      for (let round = 0; round < 5; round += 1) {
        const session = store.watch.sessions.at(-1)!;
        session.fail(new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'down', { provider: 'store' }));
        await tick(clock, 10, 5);
        failAt.push(clock.now());
        const before = store.watch.sessions.length;
        let waited = 0;
        while (store.watch.sessions.length === before && waited < 10_000) {
          await tick(clock, 50, 50);
          waited += 50;
        }
        failAt.push(waited);
      }
      const waits = failAt.filter((_, index) => index % 2 === 1);
      // 500, 1000, 2000, then the 2000 cap (random ≈ 1: the whole delay).
      expect(waits).toEqual([500, 1_000, 2_000, 2_000, 2_000]);
    });

    it('keeps the watch when track() only moves a baseline, and rebuilds it when the set changes', async () => {
      const store = probeProvider('store', true);
      store.versions.set('app/db', '2');
      store.versions.set('app/web', '1');
      const { detector, clock, changes } = setup([store.provider]);
      detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
      await tick(clock, 150);
      expect(changes).toHaveLength(1); // 1 → 2, caught up
      // The agent delivered version 2 and says so: no new watch, nothing reported.
      detector.track([{ provider: 'store', path: 'app/db', version: '2' }]);
      await tick(clock, 500);
      expect(store.watch.sessions).toHaveLength(1);
      expect(changes).toHaveLength(1);

      detector.track([
        { provider: 'store', path: 'app/db', version: '2' },
        { provider: 'store', path: 'app/web', version: '1' },
      ]);
      await tick(clock, 200 + 100 + 50);
      expect(store.watch.open()).toHaveLength(1);
      expect(store.watch.sessions).toHaveLength(2);
      expect(store.watch.sessions[1]!.paths).toEqual(['app/db', 'app/web']);
      expect(detector.stats()).toMatchObject({ tracked: 2, watched: 2 });

      detector.track([{ provider: 'store', path: 'app/web', version: '1' }]);
      await tick(clock, 350);
      expect(store.watch.open().map((session) => session.paths)).toEqual([['app/web']]);
      detector.track([]);
      await tick(clock, 10);
      expect(store.watch.open()).toHaveLength(0);
      expect(detector.stats()).toMatchObject({ tracked: 0, watched: 0 });
    });

    it('checks a watched secret at once when track() gives it a baseline other than its own', async () => {
      const store = probeProvider('store', true);
      store.versions.set('app/db', '2');
      const { detector, clock, changes } = setup([store.provider]);
      detector.track([{ provider: 'store', path: 'app/db', version: '2' }]);
      await tick(clock, 150);
      const probes = store.calls.length;
      // A consumer still has version 1 (its delivery failed): the change is reported again.
      detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
      await tick(clock, 10);
      expect(store.calls).toHaveLength(probes + 1);
      expect(changes).toEqual([
        { provider: 'store', path: 'app/db', version: '2', source: 'probe' },
      ]);
    });

    it('works with the file provider: a file rewritten is reported by its watch', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'dso-change-detector-'));
      try {
        await writeFile(join(dir, 'token'), `${CANARY}-1`);
        const files = await createProvider(
          filePackage,
          { roots: { app: dir }, watchPollIntervalMs: 100 },
          { name: 'files' },
        );
        const first = await files.resolve({ path: 'app/token' });
        first.value.dispose();
        const changes: DetectedChange[] = [];
        const detector = createChangeDetector({
          providers: new Map([['files', files]]),
          logger: createLogger({ level: 'silent' }),
          pollIntervalMs: 3_600_000,
          onChange: (change) => changes.push(change),
          watchSettleMs: 20,
        });
        detectors.push(detector);
        detector.track([{ provider: 'files', path: 'app/token', version: first.version }]);
        await expect.poll(() => detector.stats().watched, { timeout: 2_000 }).toBe(1);
        await writeFile(join(dir, 'token'), `${CANARY}-2`);
        await expect.poll(() => changes, { timeout: 3_000 }).toHaveLength(1);
        expect(changes[0]).toMatchObject({ provider: 'files', path: 'app/token', source: 'watch' });
        expect(changes[0]!.version).not.toBe(first.version);
        await detector.close();
        await files.close();
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('with a provider that probes', () => {
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
      expect(changes).toEqual([
        { provider: 'store', path: 'app/db', version: '2', source: 'probe' },
      ]);
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
      expect(
        lines().filter((line) => line.code === 'DSO_AGENT_CHANGE_HANDLER_FAILED'),
      ).toHaveLength(2);
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

  describe('with a provider that can only resolve', () => {
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

    it('polls with resolve, registers and disposes each value, and never logs it', async () => {
      const plain = resolveOnly();
      const redactor = createRedactor();
      const { detector, clock, changes, output } = setup([plain.provider], { redactor });
      detector.track([{ provider: 'plain', path: 'app/db', version: '1' }]);
      await tick(clock, INTERVAL);
      plain.setVersion('2');
      await tick(clock, INTERVAL + 50);
      expect(changes).toEqual([
        { provider: 'plain', path: 'app/db', version: '2', source: 'poll' },
      ]);
      expect(plain.values.length).toBeGreaterThanOrEqual(2);
      for (const value of plain.values) expect(() => value.reveal()).toThrow(TypeError);
      expect(redactor.redact(`${CANARY}-1 ${CANARY}-2`)).toBe('[REDACTED] [REDACTED]');
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

  describe('the set of secrets', () => {
    it('stops checking secrets that leave the set', async () => {
      const store = probeProvider();
      store.versions.set('a', '1');
      store.versions.set('b', '1');
      const { detector, clock } = setup([store.provider]);
      detector.track([
        { provider: 'store', path: 'a', version: '1' },
        { provider: 'store', path: 'b', version: '1' },
      ]);
      await tick(clock, 2 * INTERVAL);
      expect(store.calls.filter((path) => path === 'b').length).toBeGreaterThanOrEqual(1);
      detector.track([{ provider: 'store', path: 'a', version: '1' }]);
      expect(clock.pendingTimers).toBe(1); // a's: b's timer is gone, not left to fire idle
      const before = store.calls.length;
      await tick(clock, 3 * INTERVAL);
      const after = store.calls.slice(before);
      expect(after.length).toBeGreaterThanOrEqual(2);
      expect(after).not.toContain('b');
      expect(detector.stats().tracked).toBe(1);
    });

    it('aborts the check in flight of a secret that leaves the set', async () => {
      const store = probeProvider();
      store.versions.set('a', '2');
      store.gate.held = true;
      const { detector, clock, changes } = setup([store.provider]);
      detector.track([{ provider: 'store', path: 'a', version: '1' }]);
      await tick(clock, 600);
      expect(store.signals).toHaveLength(1);
      detector.track([]);
      expect(store.signals[0]!.aborted).toBe(true);
      store.gate.release();
      await flush();
      expect(changes).toEqual([]);
    });

    it('logs a secret of an unconfigured provider once, and tracks the rest', async () => {
      const store = probeProvider();
      store.versions.set('a', '1');
      const { detector, clock, lines } = setup([store.provider]);
      const secrets = [
        { provider: 'nope', path: 'x', version: '1' },
        { provider: 'store', path: 'a', version: '1' },
      ];
      detector.track(secrets);
      detector.track(secrets);
      await tick(clock, 10);
      const unknown = lines().filter((line) => line.code === 'DSO_AGENT_PROVIDER_UNKNOWN');
      expect(unknown).toHaveLength(1);
      expect(String((unknown[0]!.err as { message: string }).message)).toContain('configure it');
      expect(detector.stats().tracked).toBe(1);
    });

    it('refuses an entry without a version', () => {
      const { detector } = setup([probeProvider().provider]);
      expect(() =>
        detector.track([{ provider: 'store', path: 'a', version: '' }] as never),
      ).toThrow(TypeError);
    });
  });

  describe('close()', () => {
    it('stops every timer, watch and call, and checks nothing afterwards', async () => {
      const watched = probeProvider('watched', true);
      const probed = probeProvider('probed');
      const hanging: SecretProvider = {
        name: 'hanging',
        capabilities: { ...CAPABILITIES, probe: true },
        resolve: () => new Promise(() => {}),
        // Never answers and ignores its signal.
        probe: () => new Promise(() => {}),
        async close() {},
      };
      watched.versions.set('a', '1');
      probed.versions.set('a', '1');
      const { detector, clock, changes } = setup([watched.provider, probed.provider, hanging], {
        random: () => 0,
      });
      detector.track([
        { provider: 'watched', path: 'a', version: '1' },
        { provider: 'probed', path: 'a', version: '1' },
        { provider: 'hanging', path: 'a', version: '1' },
      ]);
      await tick(clock, 150);
      probed.gate.held = true;
      await tick(clock, INTERVAL);
      expect(probed.inFlight()).toBe(1);
      expect(watched.watch.open()).toHaveLength(1);

      await detector.close();
      expect(clock.pendingTimers).toBe(0);
      expect(watched.watch.open()).toHaveLength(0);
      expect(probed.signals.at(-1)!.aborted).toBe(true);
      probed.gate.release();

      const calls = watched.calls.length + probed.calls.length;
      watched.versions.set('a', '2');
      probed.versions.set('a', '2');
      await tick(clock, 5 * INTERVAL);
      expect(watched.calls.length + probed.calls.length).toBe(calls);
      expect(changes).toEqual([]);
      detector.track([{ provider: 'probed', path: 'a', version: '1' }]);
      expect(clock.pendingTimers).toBe(0);
      expect(detector.stats().tracked).toBe(0);
      await detector.close(); // idempotent
    });
  });

  it('refuses bad options', () => {
    const providers = new Map<string, SecretProvider>();
    const base = {
      providers,
      logger: createLogger({ level: 'silent' }),
      onChange: () => {},
      pollIntervalMs: 1_000,
    };
    expect(() => createChangeDetector({ ...base, pollIntervalMs: 0 })).toThrow(RangeError);
    expect(() => createChangeDetector({ ...base, jitter: 1 })).toThrow(RangeError);
    expect(() => createChangeDetector({ ...base, maxChecksInFlight: 0 })).toThrow(RangeError);
    expect(() =>
      createChangeDetector({ ...base, pollIntervalByProvider: new Map([['x', Number.NaN]]) }),
    ).toThrow(RangeError);
  });
});
