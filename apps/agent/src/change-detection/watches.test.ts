import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '@dso/core';
import filePackage from '@dso/provider-file';
import { createProvider, ProviderError } from '@dso/provider-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { createChangeDetector, type DetectedChange } from '../change-detector.js';
import {
  CANARY,
  closeDetectors,
  detectors,
  INTERVAL,
  probeProvider,
  setup,
  tick,
} from './test-support/detector-fixture.js';

afterEach(closeDetectors);

describe('createChangeDetector with a provider that watches', () => {
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
    expect(changes).toEqual([{ provider: 'store', path: 'app/db', version: '2', source: 'watch' }]);
    expect(store.calls).toHaveLength(1);
    expect(detector.stats().changes).toBe(1);
  });

  it('catches a change made before the watch took effect with one probe', async () => {
    const store = probeProvider('store', true);
    store.versions.set('app/db', '2');
    const { detector, clock, changes } = setup([store.provider]);
    detector.track([{ provider: 'store', path: 'app/db', version: '1' }]);
    await tick(clock, 150);
    expect(changes).toEqual([{ provider: 'store', path: 'app/db', version: '2', source: 'probe' }]);
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
    expect(changes).toEqual([{ provider: 'store', path: 'app/db', version: '2', source: 'probe' }]);
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
    expect(changes).toEqual([{ provider: 'store', path: 'app/db', version: '7', source: 'watch' }]);
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
    expect(changes).toEqual([{ provider: 'store', path: 'app/db', version: '2', source: 'probe' }]);
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
