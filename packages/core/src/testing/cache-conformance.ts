import { createFakeClock, type FakeClock } from '@dso/async';
import { isProviderError, ProviderError, SecretValue } from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { Cache, CacheLoader, LoadedSecret } from '../cache/cache.js';
import { cacheKey, cacheKeyPrefix } from '../cache/cache.js';
import { isDsoError } from '../errors.js';

/**
 * What the conformance suite asks a cache factory for. Every option is part of the {@link Cache}
 * contract; bounds (entry count, bytes) and eviction order are not, since a shared store cannot
 * honour them identically, and are tested by each implementation's own tests.
 */
export interface CacheConformanceOptions {
  /**
   * The time the cache must judge freshness by. The suite moves it with `advance`, so an adapter
   * over a store with its own expiry (Redis) compares the stored `expiresAt` with `clock.now()`
   * and uses the store's TTL only as a backstop (set it past the stale window).
   */
  clock: FakeClock;
  /** Default freshness of an entry. */
  ttlMs: number;
  /** Window past expiry in which `getOrLoad` serves a stale entry on a retryable failure. */
  staleIfErrorMs: number;
  /** How long a not-found is remembered. */
  negativeTtlMs: number;
}

/**
 * Builds a fresh, empty cache for one test. Called once per test; the suite closes what it gets.
 * An adapter over a shared store isolates tests itself (a unique key prefix or database per call).
 */
export type CacheFactory = (options: CacheConformanceOptions) => Cache | Promise<Cache>;

const TTL_MS = 10_000;
const STALE_IF_ERROR_MS = 5_000;
const NEGATIVE_TTL_MS = 2_000;
/** A value that must never appear in an error the cache throws. */
const CANARY = 'canary-7f3a9c1e-do-not-leak';

const text = (entry: { value: SecretValue } | undefined) => entry?.value.revealText();
const secret = (value: string, version = '1', provider = 'test'): LoadedSecret => ({
  value: SecretValue.fromText(value),
  version,
  provider,
});

/** A promise and the functions that settle it, for loaders the test releases. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

/** A loader that counts its calls and answers whatever `answer` says at call time. */
function countingLoader(answer: () => Promise<LoadedSecret>) {
  const signals: AbortSignal[] = [];
  const loader: CacheLoader & { calls: number; signals: AbortSignal[] } = Object.assign(
    (signal: AbortSignal) => {
      loader.calls++;
      signals.push(signal);
      return answer();
    },
    { calls: 0, signals },
  );
  return loader;
}

/** Lets every callback queued so far (promise jobs, I/O, immediates) run once. */
const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** How long {@link until} waits for a condition, in real ms, before failing the test. */
const UNTIL_DEADLINE_MS = 5_000;

/**
 * Waits, turn by turn, until `condition` holds: an adapter over a network store reaches a load
 * or joins one only after its own round trips, so no fixed number of turns would do.
 */
async function until(what: string, condition: () => boolean): Promise<void> {
  await vi.waitFor(
    async () => {
      await turn();
      if (!condition())
        throw new Error(`timed out after ${UNTIL_DEADLINE_MS} ms waiting for ${what}`);
    },
    { timeout: UNTIL_DEADLINE_MS, interval: 1 },
  );
}

/** Waits until `loader` was called once and `others` more callers joined its load. */
function untilJoined(cache: Cache, loader: { calls: number }, others: number): Promise<void> {
  return until(`one load and ${others} callers joining it`, () => {
    return loader.calls === 1 && cache.stats().coalesced === others;
  });
}

const unavailable = () =>
  new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'provider test is unreachable', {
    provider: 'test',
  });
const notFound = () =>
  new ProviderError('DSO_PROVIDER_NOT_FOUND', 'no secret at app/db', {
    provider: 'test',
    path: 'app/db',
  });

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** Everything an error exposes that could carry a value by accident. */
function surfaceOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const details = isDsoError(error) ? JSON.stringify(error.details) : '';
  return [error.message, String(error), error.stack ?? '', details].join('\n');
}

/**
 * Registers a vitest suite, `cache contract: <name>`, that checks `factory`'s caches against
 * the {@link Cache} contract: round trips, copies rather than aliases, expiry on the injected
 * clock, delete / prefix / clear invalidation, single-flight `getOrLoad` (1,000 concurrent
 * callers, one load), abort isolation, stale-if-error, negative caching, close, and that no
 * secret value reaches an error message. Every implementation runs it unchanged.
 *
 * Requires vitest (an optional peer dependency of `@dso/core`): call it at the top level of a
 * test file.
 *
 * @example
 * // redis-cache.int.test.ts
 * import { runCacheConformance } from '@dso/core/testing';
 * runCacheConformance('redis', ({ clock, ttlMs, staleIfErrorMs, negativeTtlMs }) =>
 *   createRedisCache({ url, keyPrefix: `dso-test-${randomUUID()}:`, clock, ttlMs,
 *     staleIfErrorMs, negativeTtlMs }));
 */
export function runCacheConformance(name: string, factory: CacheFactory): void {
  describe(`cache contract: ${name}`, () => {
    let clock: FakeClock;
    let cache: Cache;

    beforeEach(async () => {
      clock = createFakeClock();
      cache = await factory({
        clock,
        ttlMs: TTL_MS,
        staleIfErrorMs: STALE_IF_ERROR_MS,
        negativeTtlMs: NEGATIVE_TTL_MS,
      });
    });

    afterEach(async () => {
      await cache.close();
    });

    describe('get and set', () => {
      it('returns what was set, with its version, provider and times', async () => {
        const key = cacheKey('test', 'app/db', '3');
        await cache.set(key, { ...secret('s3cret', '3'), fetchedAt: clock.now() - 5 });
        const entry = await cache.get(key);
        expect(text(entry)).toBe('s3cret');
        expect(entry).toMatchObject({
          version: '3',
          provider: 'test',
          fetchedAt: clock.now() - 5,
          expiresAt: clock.now() + TTL_MS,
        });
      });

      it('defaults fetchedAt to the time of the write', async () => {
        await cache.set('k', secret('v'));
        expect((await cache.get('k'))?.fetchedAt).toBe(clock.now());
      });

      it('returns undefined for a key never set', async () => {
        expect(await cache.get('missing')).toBeUndefined();
      });

      it('keeps arbitrary bytes exactly, the empty value included', async () => {
        const bytes = Uint8Array.from({ length: 256 }, (_, index) => index);
        await cache.set('bytes', {
          value: SecretValue.fromBytes(bytes),
          version: '1',
          provider: 'p',
        });
        await cache.set('empty', {
          value: SecretValue.fromBytes(new Uint8Array()),
          version: '1',
          provider: 'p',
        });
        expect([...((await cache.get('bytes'))?.value.reveal() ?? [])]).toEqual([...bytes]);
        expect((await cache.get('empty'))?.value.byteLength).toBe(0);
      });

      it('replaces the entry under a key on a second set', async () => {
        await cache.set('k', secret('old', '1'));
        await cache.set('k', secret('new', '2'));
        const entry = await cache.get('k');
        expect(text(entry)).toBe('new');
        expect(entry?.version).toBe('2');
      });

      it('keeps keys apart', async () => {
        await cache.set(cacheKey('test', 'a'), secret('A'));
        await cache.set(cacheKey('test', 'b'), secret('B'));
        expect(text(await cache.get(cacheKey('test', 'a')))).toBe('A');
        expect(text(await cache.get(cacheKey('test', 'b')))).toBe('B');
      });

      it('rejects a ttlMs that is negative or not finite', async () => {
        for (const ttlMs of [-1, Number.NaN, Number.POSITIVE_INFINITY]) {
          await expect(cache.set('k', secret('v'), { ttlMs })).rejects.toThrow(RangeError);
          await expect(cache.getOrLoad('k', async () => secret('v'), { ttlMs })).rejects.toThrow(
            RangeError,
          );
        }
      });

      it('never serves an entry set with ttlMs 0 as fresh, but keeps it for stale-if-error', async () => {
        await cache.set('k', secret('v'), { ttlMs: 0 });
        expect(await cache.get('k')).toBeUndefined();
        const loader = countingLoader(async () => secret('loaded'));
        await cache.getOrLoad('other', loader, { ttlMs: 0 });
        await cache.getOrLoad('other', loader, { ttlMs: 0 });
        expect(loader.calls).toBe(2);
        const result = await cache.getOrLoad('k', () => Promise.reject(unavailable()));
        expect(result.stale).toBe(true);
        expect(text(result)).toBe('v');
      });

      it('rejects with the signal reason when the signal is already aborted', async () => {
        const reason = new Error('caller gave up');
        const signal = AbortSignal.abort(reason);
        await expect(cache.get('k', { signal })).rejects.toBe(reason);
        await expect(cache.set('k', secret('v'), { signal })).rejects.toBe(reason);
        await expect(cache.getOrLoad('k', async () => secret('v'), { signal })).rejects.toBe(
          reason,
        );
      });
    });

    describe('copies, not aliases', () => {
      it('is not changed by writes to the buffer that was set', async () => {
        const value = SecretValue.fromText('original');
        await cache.set('k', { value, version: '1', provider: 'p' });
        value.reveal().fill(0x58);
        value.dispose();
        expect(text(await cache.get('k'))).toBe('original');
      });

      it('is not changed by writes to, or disposal of, a returned value', async () => {
        await cache.set('k', secret('original'));
        const first = await cache.get('k');
        first?.value.reveal().fill(0x58);
        first?.value.dispose();
        expect(text(await cache.get('k'))).toBe('original');
      });

      it('hands every caller its own buffer', async () => {
        await cache.set('k', secret('shared'));
        const [a, b] = await Promise.all([cache.get('k'), cache.get('k')]);
        a?.value.reveal().fill(0);
        expect(text(b)).toBe('shared');
      });

      it('hands every getOrLoad waiter its own buffer', async () => {
        const gate = deferred<LoadedSecret>();
        const loader = countingLoader(() => gate.promise);
        const pending = [cache.getOrLoad('k', loader), cache.getOrLoad('k', loader)];
        await untilJoined(cache, loader, 1);
        gate.resolve(secret('loaded'));
        const [a, b] = await Promise.all(pending);
        a?.value.reveal().fill(0);
        expect(text(b)).toBe('loaded');
        expect(text(await cache.get('k'))).toBe('loaded');
      });

      it('prints a returned value as [REDACTED]', async () => {
        await cache.set('k', secret(CANARY));
        const entry = await cache.get('k');
        expect(JSON.stringify(entry)).not.toContain(CANARY);
        expect(`${entry?.value}`).toBe('[REDACTED]');
      });
    });

    describe('expiry', () => {
      it('serves an entry until its ttl passes, never at or after expiresAt', async () => {
        await cache.set('k', secret('v'));
        clock.advance(TTL_MS - 1);
        expect(text(await cache.get('k'))).toBe('v');
        clock.advance(1);
        expect(await cache.get('k')).toBeUndefined();
      });

      it('honours a ttlMs given to set', async () => {
        await cache.set('k', secret('v'), { ttlMs: 1_000 });
        expect((await cache.get('k'))?.expiresAt).toBe(clock.now() + 1_000);
        clock.advance(1_000);
        expect(await cache.get('k')).toBeUndefined();
      });

      it('does not serve an expired entry from get even inside the stale window', async () => {
        await cache.set('k', secret('v'));
        clock.advance(TTL_MS + 1);
        expect(await cache.get('k')).toBeUndefined();
      });

      it('restarts the ttl when an entry is set again', async () => {
        await cache.set('k', secret('v1'));
        clock.advance(TTL_MS - 1);
        await cache.set('k', secret('v2'));
        clock.advance(TTL_MS - 1);
        expect(text(await cache.get('k'))).toBe('v2');
      });
    });

    describe('invalidation', () => {
      it('deletes one key and says whether it held an entry', async () => {
        await cache.set('a', secret('A'));
        await cache.set('b', secret('B'));
        expect(await cache.delete('a')).toBe(true);
        expect(await cache.delete('a')).toBe(false);
        expect(await cache.get('a')).toBeUndefined();
        expect(text(await cache.get('b'))).toBe('B');
      });

      it('invalidates by prefix and counts what it removed', async () => {
        await cache.set(cacheKey('vault', 'app/db', '1'), secret('1'));
        await cache.set(cacheKey('vault', 'app/db'), secret('current'));
        await cache.set(cacheKey('vault', 'app/db2'), secret('other path'));
        await cache.set(cacheKey('aws', 'app/db'), secret('other provider'));
        expect(await cache.invalidatePrefix(cacheKeyPrefix('vault', 'app/db'))).toBe(2);
        expect(await cache.get(cacheKey('vault', 'app/db', '1'))).toBeUndefined();
        expect(await cache.get(cacheKey('vault', 'app/db'))).toBeUndefined();
        expect(text(await cache.get(cacheKey('vault', 'app/db2')))).toBe('other path');
        expect(await cache.invalidatePrefix(cacheKeyPrefix('vault'))).toBe(1);
        expect(text(await cache.get(cacheKey('aws', 'app/db')))).toBe('other provider');
        expect(await cache.invalidatePrefix('nothing-here:')).toBe(0);
      });

      it('clears everything', async () => {
        await cache.set('a', secret('A'));
        await cache.set('b', secret('B'));
        await cache.clear();
        expect(await cache.get('a')).toBeUndefined();
        expect(await cache.get('b')).toBeUndefined();
      });

      it('forgets a stale entry on delete, so a failing load cannot serve it', async () => {
        await cache.set('k', secret('v'));
        clock.advance(TTL_MS + 1);
        await cache.delete('k');
        await expect(
          cache.getOrLoad('k', () => Promise.reject(unavailable())),
        ).rejects.toMatchObject({
          code: 'DSO_PROVIDER_UNAVAILABLE',
        });
      });

      for (const [how, invalidate] of [
        ['delete', (c: Cache) => c.delete('k')],
        ['invalidatePrefix', (c: Cache) => c.invalidatePrefix('k')],
        ['clear', (c: Cache) => c.clear()],
      ] as const) {
        it(`does not store the result of a load in flight across a ${how}`, async () => {
          const gate = deferred<LoadedSecret>();
          const loader = countingLoader(() => gate.promise);
          const pending = cache.getOrLoad('k', loader);
          await untilJoined(cache, loader, 0);
          await invalidate(cache);
          gate.resolve(secret('from before'));
          expect(text(await pending)).toBe('from before');
          expect(await cache.get('k')).toBeUndefined();
        });
      }

      it('starts a new load for callers arriving after an invalidation', async () => {
        const gates = [deferred<LoadedSecret>(), deferred<LoadedSecret>()];
        const loader = countingLoader(() => gates[loader.calls - 1]!.promise);
        const before = cache.getOrLoad('k', loader);
        await untilJoined(cache, loader, 0);
        await cache.delete('k');
        const after = cache.getOrLoad('k', loader);
        await until('a second load', () => loader.calls === 2);
        gates[0]!.resolve(secret('old'));
        gates[1]!.resolve(secret('new'));
        expect(text(await before)).toBe('old');
        expect(text(await after)).toBe('new');
        expect(text(await cache.get('k'))).toBe('new');
      });
    });

    describe('getOrLoad', () => {
      it('loads on a miss, stores the result and serves it without loading again', async () => {
        const loader = countingLoader(async () => secret('loaded', '7'));
        const first = await cache.getOrLoad('k', loader);
        expect(first).toMatchObject({ version: '7', provider: 'test', stale: false });
        expect(first.expiresAt).toBe(clock.now() + TTL_MS);
        const second = await cache.getOrLoad('k', loader);
        expect(text(second)).toBe('loaded');
        expect(second.stale).toBe(false);
        expect(loader.calls).toBe(1);
        expect(text(await cache.get('k'))).toBe('loaded');
      });

      it('honours a ttlMs given to getOrLoad', async () => {
        const loader = countingLoader(async () => secret('v'));
        expect((await cache.getOrLoad('k', loader, { ttlMs: 500 })).expiresAt).toBe(
          clock.now() + 500,
        );
        clock.advance(500);
        await cache.getOrLoad('k', loader);
        expect(loader.calls).toBe(2);
      });

      it('loads again once the entry expired', async () => {
        let version = 0;
        const loader = countingLoader(async () => secret('v', String(++version)));
        await cache.getOrLoad('k', loader);
        clock.advance(TTL_MS);
        expect((await cache.getOrLoad('k', loader)).version).toBe('2');
        expect(loader.calls).toBe(2);
      });

      it('takes the loaded value over and disposes it', async () => {
        const value = SecretValue.fromText('handed over');
        await cache.getOrLoad('k', async () => ({ value, version: '1', provider: 'p' }));
        expect(() => value.reveal()).toThrow(TypeError);
        expect(text(await cache.get('k'))).toBe('handed over');
      });

      it('runs one load for 1,000 concurrent callers on one key', async () => {
        const gate = deferred<void>();
        const loader = countingLoader(async () => {
          await gate.promise;
          return secret('once');
        });
        const callers = Array.from({ length: 1_000 }, () => cache.getOrLoad('hot', loader));
        await untilJoined(cache, loader, 999);
        gate.resolve();
        const results = await Promise.all(callers);
        expect(loader.calls).toBe(1);
        expect(results.every((result) => text(result) === 'once' && !result.stale)).toBe(true);
        expect(new Set(results.map((result) => result.value.reveal())).size).toBe(1_000);
        expect(cache.stats().loads).toBe(1);
      });

      it('shares one failure among the callers waiting on a load, and caches nothing', async () => {
        const failure = new ProviderError(
          'DSO_PROVIDER_UNAUTHORIZED',
          'provider test refused the token',
        );
        const gate = deferred<LoadedSecret>();
        const loader = countingLoader(() => gate.promise);
        const callers = [cache.getOrLoad('k', loader), cache.getOrLoad('k', loader)];
        await untilJoined(cache, loader, 1);
        gate.reject(failure);
        for (const caller of callers) await expect(caller).rejects.toBe(failure);
        expect(loader.calls).toBe(1);
        await cache.getOrLoad(
          'k',
          countingLoader(async () => secret('later')),
        );
        expect(text(await cache.get('k'))).toBe('later');
      });

      it('passes through an error that is not a ProviderError, untouched', async () => {
        const failure = new TypeError('loader bug');
        await expect(cache.getOrLoad('k', () => Promise.reject(failure))).rejects.toBe(failure);
        await expect(
          cache.getOrLoad('k', () => {
            throw failure;
          }),
        ).rejects.toBe(failure);
      });

      it('rejects a loader result that is not { value: SecretValue, version, provider }', async () => {
        const bad = (async () => ({
          value: 'plain',
          version: '1',
          provider: 'p',
        })) as unknown as CacheLoader;
        await expect(cache.getOrLoad('k', bad)).rejects.toThrow(TypeError);
        expect(await cache.get('k')).toBeUndefined();
      });

      it('rejects only the caller whose signal aborts; the load goes on for the rest', async () => {
        const gate = deferred<LoadedSecret>();
        const loader = countingLoader(() => gate.promise);
        const leaving = new AbortController();
        const reason = new Error('caller gave up');
        const left = cache.getOrLoad('k', loader, { signal: leaving.signal });
        const staying = cache.getOrLoad('k', loader);
        await untilJoined(cache, loader, 1);
        leaving.abort(reason);
        await expect(left).rejects.toBe(reason);
        expect(loader.signals[0]?.aborted).toBe(false);
        gate.resolve(secret('for the rest'));
        expect(text(await staying)).toBe('for the rest');
        expect(loader.calls).toBe(1);
      });

      it('aborts the load when every caller has given up, and a later caller loads afresh', async () => {
        const gate = deferred<LoadedSecret>();
        const loader = countingLoader(() => gate.promise);
        const controllers = [new AbortController(), new AbortController()];
        const callers = controllers.map((controller) =>
          cache.getOrLoad('k', loader, { signal: controller.signal }),
        );
        await untilJoined(cache, loader, 1);
        for (const controller of controllers) controller.abort();
        for (const caller of callers) await expect(caller).rejects.toBeDefined();
        expect(loader.signals[0]?.aborted).toBe(true);
        const fresh = await cache.getOrLoad(
          'k',
          countingLoader(async () => secret('afresh')),
        );
        expect(text(fresh)).toBe('afresh');
        gate.resolve(secret('abandoned'));
        await turn();
        expect(text(await cache.get('k'))).toBe('afresh');
      });
    });

    describe('stale-if-error', () => {
      it('serves the expired entry, marked stale, when the load fails retryably in the window', async () => {
        await cache.set('k', secret('last known good', '4'));
        const expiresAt = clock.now() + TTL_MS;
        clock.advance(TTL_MS + STALE_IF_ERROR_MS - 1);
        const result = await cache.getOrLoad('k', () => Promise.reject(unavailable()));
        expect(text(result)).toBe('last known good');
        expect(result).toMatchObject({ stale: true, version: '4', expiresAt });
        expect(result.expiresAt).toBeLessThanOrEqual(clock.now());
        expect(cache.stats().staleServed).toBe(1);
      });

      it('serves every waiter of the failed load the stale entry', async () => {
        await cache.set('k', secret('v'));
        clock.advance(TTL_MS);
        const gate = deferred<LoadedSecret>();
        const loader = countingLoader(() => gate.promise);
        const callers = [cache.getOrLoad('k', loader), cache.getOrLoad('k', loader)];
        await untilJoined(cache, loader, 1);
        gate.reject(unavailable());
        for (const result of await Promise.all(callers)) {
          expect(result.stale).toBe(true);
          expect(text(result)).toBe('v');
        }
      });

      it('rethrows once the stale window has passed', async () => {
        await cache.set('k', secret('v'));
        clock.advance(TTL_MS + STALE_IF_ERROR_MS);
        await expect(
          cache.getOrLoad('k', () => Promise.reject(unavailable())),
        ).rejects.toMatchObject({
          code: 'DSO_PROVIDER_UNAVAILABLE',
        });
      });

      it('rethrows an error that is not retryable, even inside the window', async () => {
        await cache.set('k', secret('v'));
        clock.advance(TTL_MS);
        const refused = new ProviderError('DSO_PROVIDER_UNAUTHORIZED', 'provider test refused');
        await expect(cache.getOrLoad('k', () => Promise.reject(refused))).rejects.toBe(refused);
        const bug = new Error('not a provider error');
        await expect(cache.getOrLoad('k', () => Promise.reject(bug))).rejects.toBe(bug);
      });

      it('replaces the stale entry when a later load succeeds', async () => {
        await cache.set('k', secret('old', '1'));
        clock.advance(TTL_MS);
        await cache.getOrLoad('k', () => Promise.reject(unavailable()));
        const result = await cache.getOrLoad('k', async () => secret('new', '2'));
        expect(result).toMatchObject({ stale: false, version: '2' });
        expect(text(await cache.get('k'))).toBe('new');
      });
    });

    describe('negative caching', () => {
      it('remembers a not-found and rethrows it without calling the loader', async () => {
        const loader = countingLoader(() => Promise.reject(notFound()));
        const first = await rejectionOf(cache.getOrLoad('k', loader));
        const second = await rejectionOf(cache.getOrLoad('k', loader));
        expect(loader.calls).toBe(1);
        for (const error of [first, second]) {
          expect(isProviderError(error) && error.code).toBe('DSO_PROVIDER_NOT_FOUND');
        }
        expect(cache.stats().negativeHits).toBe(1);
        expect(await cache.get('k')).toBeUndefined();
      });

      it('asks the loader again once the negative ttl has passed', async () => {
        const loader = countingLoader(() => Promise.reject(notFound()));
        await rejectionOf(cache.getOrLoad('k', loader));
        clock.advance(NEGATIVE_TTL_MS - 1);
        await rejectionOf(cache.getOrLoad('k', loader));
        expect(loader.calls).toBe(1);
        clock.advance(1);
        await rejectionOf(cache.getOrLoad('k', loader));
        expect(loader.calls).toBe(2);
      });

      it('forgets a not-found when the key is set, deleted or invalidated', async () => {
        const missing = countingLoader(() => Promise.reject(notFound()));
        await rejectionOf(cache.getOrLoad('k', missing));
        await cache.set('k', secret('now there'));
        expect(text(await cache.getOrLoad('k', missing))).toBe('now there');

        for (const forget of [
          (c: Cache) => c.delete('k'),
          (c: Cache) => c.invalidatePrefix('k'),
          (c: Cache) => c.clear(),
        ]) {
          await forget(cache);
          await rejectionOf(cache.getOrLoad('k', missing));
          await forget(cache);
          const found = countingLoader(async () => secret('found'));
          expect(text(await cache.getOrLoad('k', found))).toBe('found');
          expect(found.calls).toBe(1);
          await cache.delete('k');
        }
      });

      it('drops the last value of a secret the provider no longer has', async () => {
        await cache.set('k', secret('deleted upstream'));
        clock.advance(TTL_MS);
        await rejectionOf(cache.getOrLoad('k', () => Promise.reject(notFound())));
        clock.advance(NEGATIVE_TTL_MS);
        await expect(
          cache.getOrLoad('k', () => Promise.reject(unavailable())),
        ).rejects.toMatchObject({
          code: 'DSO_PROVIDER_UNAVAILABLE',
        });
      });
    });

    describe('errors carry no secret value', () => {
      it('keeps the value out of every error the cache itself throws', async () => {
        await cache.set(cacheKey('test', 'app/db'), secret(CANARY));
        const errors: unknown[] = [];
        errors.push(await rejectionOf(cache.set('k', secret(CANARY), { ttlMs: -1 })));
        errors.push(
          await rejectionOf(
            cache.getOrLoad('k', (async () => ({
              value: CANARY,
              version: '1',
              provider: 'p',
            })) as unknown as CacheLoader),
          ),
        );
        await cache.close();
        errors.push(await rejectionOf(cache.get(cacheKey('test', 'app/db'))));
        errors.push(await rejectionOf(cache.set('k', secret(CANARY))));
        errors.push(await rejectionOf(cache.getOrLoad('k', async () => secret(CANARY))));
        expect(errors).toHaveLength(5);
        for (const error of errors) expect(surfaceOf(error)).not.toContain(CANARY);
      });
    });

    describe('close', () => {
      it('rejects every call after close with DSO_CACHE_CLOSED, and close again is a no-op', async () => {
        await cache.set('k', secret('v'));
        await cache.close();
        await cache.close();
        const calls = [
          cache.get('k'),
          cache.set('k', secret('v')),
          cache.delete('k'),
          cache.invalidatePrefix(''),
          cache.clear(),
          cache.getOrLoad('k', async () => secret('v')),
        ];
        for (const call of calls) {
          const error = await rejectionOf(call);
          expect(isDsoError(error) && error.code).toBe('DSO_CACHE_CLOSED');
        }
        expect(cache.stats()).toBeTypeOf('object');
      });

      it('rejects callers waiting on a load with DSO_CACHE_CLOSED and aborts the load', async () => {
        const gate = deferred<LoadedSecret>();
        const loader = countingLoader(() => gate.promise);
        const waiting = cache.getOrLoad('k', loader);
        await untilJoined(cache, loader, 0);
        await cache.close();
        const error = await rejectionOf(waiting);
        expect(isDsoError(error) && error.code).toBe('DSO_CACHE_CLOSED');
        expect(loader.signals[0]?.aborted).toBe(true);
        gate.resolve(secret('too late'));
        await turn();
      });

      it('closes through await using (Symbol.asyncDispose)', async () => {
        {
          await using scoped = cache;
          await scoped.set('k', secret('v'));
        }
        const error = await rejectionOf(cache.get('k'));
        expect(isDsoError(error) && error.code).toBe('DSO_CACHE_CLOSED');
      });
    });

    describe('stats', () => {
      it('counts hits, misses and loads', async () => {
        const before = cache.stats();
        await cache.get('k');
        await cache.set('k', secret('v'));
        await cache.get('k');
        await cache.getOrLoad('k', async () => secret('unused'));
        await cache.getOrLoad('other', async () => secret('loaded'));
        const after = cache.stats();
        expect(after.hits - before.hits).toBe(2);
        expect(after.misses - before.misses).toBe(2);
        expect(after.loads - before.loads).toBe(1);
        expect(after.entries).toBeGreaterThanOrEqual(0);
        expect(after.bytes).toBeGreaterThanOrEqual(0);
      });
    });
  });
}
