import { createLogger } from '@dso/core';
import type { SecretProvider } from '@dso/provider-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import {
  CAPABILITIES,
  closeDetectors,
  flush,
  INTERVAL,
  probeProvider,
  setup,
  tick,
} from './change-detection/test-support/detector-fixture.js';
import { createChangeDetector } from './change-detector.js';

afterEach(closeDetectors);

describe('createChangeDetector', () => {
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
