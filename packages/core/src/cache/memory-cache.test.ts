import { createFakeClock } from '@dso/async';
import { ProviderError, SecretValue } from '@dso/provider-sdk';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRedactor, REDACTED } from '../redaction.js';
import { runCacheConformance } from '../testing/cache-conformance.js';
import {
  type Cache,
  type CacheResult,
  cacheKey,
  cacheKeyPrefix,
  DEFAULT_CACHE_TTL_MS,
  type LoadedSecret,
} from './cache.js';
import {
  CACHE_ENTRY_OVERHEAD_BYTES,
  createMemoryCache,
  DEFAULT_CACHE_MAX_BYTES,
  DEFAULT_CACHE_MAX_ENTRIES,
  DEFAULT_CACHE_SWEEP_INTERVAL_MS,
  DEFAULT_NEGATIVE_TTL_MS,
  DEFAULT_STALE_IF_ERROR_MS,
  internalBytesForTesting,
} from './memory-cache.js';

runCacheConformance('memory', (options) => createMemoryCache(options));

const secret = (value: string | Uint8Array, version = '1', provider = 'p'): LoadedSecret => ({
  value: typeof value === 'string' ? SecretValue.fromText(value) : SecretValue.fromBytes(value),
  version,
  provider,
});

/** What one entry costs against maxBytes, as the memory cache accounts it. */
const costOf = (key: string, valueBytes: number, version = '1', provider = 'p') =>
  valueBytes + 2 * (key.length + version.length + provider.length) + CACHE_ENTRY_OVERHEAD_BYTES;

const isZeroed = (bytes: Uint8Array | undefined) =>
  bytes !== undefined && bytes.byteLength > 0 && bytes.every((byte) => byte === 0);

const unavailable = () =>
  new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'provider p is unreachable');

describe('createMemoryCache', () => {
  it('defaults to a 10 minute ttl, 10,000 entries, 64 MiB, a 1 hour stale window, 10 s negative ttl', async () => {
    expect(DEFAULT_CACHE_TTL_MS).toBe(600_000);
    expect(DEFAULT_CACHE_MAX_ENTRIES).toBe(10_000);
    expect(DEFAULT_CACHE_MAX_BYTES).toBe(64 * 1024 * 1024);
    expect(DEFAULT_STALE_IF_ERROR_MS).toBe(3_600_000);
    expect(DEFAULT_NEGATIVE_TTL_MS).toBe(10_000);
    const clock = createFakeClock();
    await using cache = createMemoryCache({ clock });
    await cache.set('k', secret('v'));
    expect((await cache.get('k'))?.expiresAt).toBe(clock.now() + 600_000);
    clock.advance(600_000 + 3_600_000 - 1);
    expect((await cache.getOrLoad('k', () => Promise.reject(unavailable()))).stale).toBe(true);
  });

  it.each([
    { ttlMs: -1 },
    { ttlMs: Number.POSITIVE_INFINITY },
    { maxEntries: 0 },
    { maxEntries: 1.5 },
    { maxBytes: 0 },
    { staleIfErrorMs: -1 },
    { negativeTtlMs: Number.NaN },
    { sweepIntervalMs: 0 },
  ])('rejects the out-of-range option %o', (options) => {
    expect(() => createMemoryCache(options)).toThrow(RangeError);
  });
});

describe('memory cache with ttlMs 0', () => {
  it('keeps nothing when there is no stale window either, and still shares one load', async () => {
    await using cache = createMemoryCache({
      clock: createFakeClock(),
      ttlMs: 0,
      staleIfErrorMs: 0,
    });
    await cache.set('k', secret('v'));
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0 });
    let calls = 0;
    const loader = async () => {
      calls++;
      return secret('loaded');
    };
    await Promise.all([cache.getOrLoad('k', loader), cache.getOrLoad('k', loader)]);
    expect(calls).toBe(1);
    expect(cache.stats().entries).toBe(0);
  });
});

describe('memory cache bounds', () => {
  it('evicts the least recently used entry past maxEntries', async () => {
    await using cache = createMemoryCache({ clock: createFakeClock(), maxEntries: 2 });
    await cache.set('a', secret('A'));
    await cache.set('b', secret('B'));
    await cache.get('a'); // a is now more recent than b
    await cache.set('c', secret('C'));
    expect(await cache.get('b')).toBeUndefined();
    expect(await cache.get('a')).toBeDefined();
    expect(await cache.get('c')).toBeDefined();
    expect(cache.stats()).toMatchObject({ entries: 2, evictions: 1 });
  });

  it('counts a getOrLoad hit as a use for recency', async () => {
    await using cache = createMemoryCache({ clock: createFakeClock(), maxEntries: 2 });
    await cache.set('a', secret('A'));
    await cache.set('b', secret('B'));
    await cache.getOrLoad('a', () => Promise.reject(new Error('not called')));
    await cache.set('c', secret('C'));
    expect(await cache.get('a')).toBeDefined();
    expect(await cache.get('b')).toBeUndefined();
  });

  it('evicts least recently used entries until the bytes fit under maxBytes', async () => {
    const maxBytes = 3 * costOf('a', 100);
    await using cache = createMemoryCache({ clock: createFakeClock(), maxBytes });
    for (const key of ['a', 'b', 'c']) await cache.set(key, secret(new Uint8Array(100)));
    expect(cache.stats().bytes).toBe(maxBytes);
    await cache.set('d', secret(new Uint8Array(150)));
    // d needs 50 bytes more than one 100-byte entry frees: a and b both go.
    expect(await cache.get('a')).toBeUndefined();
    expect(await cache.get('b')).toBeUndefined();
    expect(await cache.get('c')).toBeDefined();
    expect(await cache.get('d')).toBeDefined();
    expect(cache.stats().bytes).toBe(costOf('c', 100) + costOf('d', 150));
  });

  it('does not cache a value larger than maxBytes, and counts it', async () => {
    const maxBytes = costOf('big', 100);
    await using cache = createMemoryCache({ clock: createFakeClock(), maxBytes });
    await cache.set('fits', secret(new Uint8Array(10)));
    await cache.set('big', secret(new Uint8Array(101)));
    expect(await cache.get('big')).toBeUndefined();
    expect(await cache.get('fits')).toBeDefined();
    expect(cache.stats().oversized).toBe(1);
    const loaded = await cache.getOrLoad('big', async () => secret(new Uint8Array(101).fill(7)));
    expect(loaded.value.byteLength).toBe(101);
    expect(loaded.value.reveal().every((byte) => byte === 7)).toBe(true);
    expect(await cache.get('big')).toBeUndefined();
    expect(cache.stats().oversized).toBe(2);
  });

  it('drops the old value when an oversized one replaces it', async () => {
    await using cache = createMemoryCache({ clock: createFakeClock(), maxBytes: costOf('k', 10) });
    await cache.set('k', secret(new Uint8Array(10).fill(1)));
    const held = internalBytesForTesting(cache, 'k');
    await cache.set('k', secret(new Uint8Array(11)));
    expect(await cache.get('k')).toBeUndefined();
    expect(isZeroed(held)).toBe(true);
  });

  it('bounds remembered not-founds like any other entry', async () => {
    await using cache = createMemoryCache({ clock: createFakeClock(), maxEntries: 2 });
    for (const key of ['a', 'b', 'c']) {
      await expect(
        cache.getOrLoad(key, () =>
          Promise.reject(new ProviderError('DSO_PROVIDER_NOT_FOUND', 'gone')),
        ),
      ).rejects.toBeDefined();
    }
    expect(cache.stats().entries).toBe(2);
  });
});

describe('memory cache zeroes buffers when an entry leaves', () => {
  // Each case holds the cache's own buffer (through a module-only hook) before the entry leaves.
  const cases: [
    string,
    (cache: Cache, clock: ReturnType<typeof createFakeClock>) => Promise<unknown>,
  ][] = [
    ['delete', (cache) => cache.delete('k')],
    ['invalidatePrefix', (cache) => cache.invalidatePrefix('k')],
    ['clear', (cache) => cache.clear()],
    ['overwrite', (cache) => cache.set('k', secret('next'))],
    ['close', (cache) => cache.close()],
    ['eviction', (cache) => cache.set('other', secret('x'))],
    [
      'expiry, on access',
      async (cache, clock) => {
        clock.advance(1_000);
        return cache.get('k');
      },
    ],
    ['expiry, by the background sweep', async (_, clock) => clock.advance(2_000)],
  ];

  it.each(cases)('zeroes it on %s', async (_, leave) => {
    const clock = createFakeClock();
    await using cache = createMemoryCache({
      clock,
      maxEntries: 1,
      ttlMs: 1_000,
      staleIfErrorMs: 0,
      sweepIntervalMs: 2_000,
    });
    await cache.set('k', secret('secret bytes'));
    const held = internalBytesForTesting(cache, 'k');
    expect(Buffer.from(held ?? []).toString()).toBe('secret bytes');
    await leave(cache, clock);
    expect(isZeroed(held)).toBe(true);
  });

  it.each(cases)('gives its redactor lease back on %s', async (_, leave) => {
    const clock = createFakeClock();
    const redactor = createRedactor({ patterns: false });
    await using cache = createMemoryCache({
      clock,
      maxEntries: 1,
      ttlMs: 1_000,
      staleIfErrorMs: 0,
      sweepIntervalMs: 2_000,
      redactor,
    });
    await cache.set('k', secret('secret bytes'));
    expect(redactor.redact('secret bytes')).toBe(REDACTED);
    await leave(cache, clock);
    // What replaced it (overwrite, eviction) is held instead; the old value is forgotten.
    expect(redactor.redact('secret bytes')).toBe('secret bytes');
    expect(redactor.size).toBeLessThanOrEqual(1);
  });

  it.each([0, 30_000])(
    'zeroes a stale entry when a load says its secret is gone (negativeTtlMs %i)',
    async (negativeTtlMs) => {
      const clock = createFakeClock();
      await using cache = createMemoryCache({
        clock,
        ttlMs: 1_000,
        staleIfErrorMs: 60_000,
        negativeTtlMs,
      });
      await cache.set('k', secret('secret bytes'));
      const held = internalBytesForTesting(cache, 'k');
      clock.advance(1_000);
      await expect(
        cache.getOrLoad('k', () =>
          Promise.reject(new ProviderError('DSO_PROVIDER_NOT_FOUND', 'gone')),
        ),
      ).rejects.toBeDefined();
      expect(isZeroed(held)).toBe(true);
      expect(cache.stats().bytes).toBe(
        negativeTtlMs === 0 ? 0 : 2 * 'k'.length + CACHE_ENTRY_OVERHEAD_BYTES,
      );
      await expect(cache.getOrLoad('k', () => Promise.reject(unavailable()))).rejects.toMatchObject(
        {
          code: negativeTtlMs === 0 ? 'DSO_PROVIDER_UNAVAILABLE' : 'DSO_PROVIDER_NOT_FOUND',
        },
      );
    },
  );

  it('zeroes it when the stale window ends, not before', async () => {
    const clock = createFakeClock();
    await using cache = createMemoryCache({
      clock,
      ttlMs: 1_000,
      staleIfErrorMs: 5_000,
      sweepIntervalMs: 500,
    });
    await cache.set('k', secret('secret bytes'));
    const held = internalBytesForTesting(cache, 'k');
    clock.advance(5_999);
    expect(isZeroed(held)).toBe(false);
    expect(cache.stats().entries).toBe(1);
    clock.advance(1);
    expect(isZeroed(held)).toBe(true);
    expect(cache.stats()).toMatchObject({ entries: 0, bytes: 0, expirations: 1 });
  });

  it('keeps the stored buffer apart from the one given to set and the ones handed out', async () => {
    await using cache = createMemoryCache({ clock: createFakeClock() });
    const given = secret('v');
    await cache.set('k', given);
    const held = internalBytesForTesting(cache, 'k');
    const got = await cache.get('k');
    expect(held?.buffer).not.toBe(given.value.reveal().buffer);
    expect(held?.buffer).not.toBe(got?.value.reveal().buffer);
  });

  it('arms no sweep timer while empty, and none after close', async () => {
    const clock = createFakeClock();
    const cache = createMemoryCache({ clock });
    expect(clock.pendingTimers).toBe(0);
    await cache.set('k', secret('v'));
    expect(clock.pendingTimers).toBe(1);
    await cache.close();
    expect(clock.pendingTimers).toBe(0);
    clock.advance(DEFAULT_CACHE_SWEEP_INTERVAL_MS);
    expect(clock.pendingTimers).toBe(0);
  });
});

describe('cacheKey', () => {
  it('builds <provider>:<path>@<version>, with an empty version for the current one', () => {
    expect(cacheKey('vault', 'app/db', '3')).toBe('vault:app/db@3');
    expect(cacheKey('vault', 'app/db')).toBe('vault:app/db@');
    expect(cacheKeyPrefix('vault', 'app/db')).toBe('vault:app/db@');
    expect(cacheKeyPrefix('vault')).toBe('vault:');
  });

  it.each([
    ['', 'app/db'],
    ['va:ult', 'app/db'],
    ['vault', ''],
    ['vault', 'app@db'],
  ])('rejects provider %j with path %j', (provider, path) => {
    expect(() => cacheKey(provider, path)).toThrow(TypeError);
  });
});

describe('memory cache properties', () => {
  const keys = ['a', 'b', 'c'];
  const key = fc.constantFrom(...keys);
  const config = fc.record({
    maxEntries: fc.integer({ min: 1, max: 4 }),
    maxBytes: fc.integer({ min: 1, max: 1_500 }),
    ttlMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4_000 })),
    staleIfErrorMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 4_000 })),
    negativeTtlMs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2_000 })),
    sweepIntervalMs: fc.integer({ min: 1, max: 5_000 }),
  });
  type Config = typeof config extends fc.Arbitrary<infer C> ? C : never;
  // Time moves by arbitrary steps and by the configured durations, so sequences land exactly on
  // the boundaries (expiry, end of the stale window, end of a remembered not-found).
  const operationFor = (options: Config) =>
    fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          op: fc.constant('set' as const),
          key,
          size: fc.integer({ min: 0, max: 300 }),
          ttlMs: fc.option(fc.integer({ min: 0, max: 5_000 }), { nil: undefined, freq: 2 }),
        }),
      },
      { weight: 3, arbitrary: fc.record({ op: fc.constant('get' as const), key }) },
      {
        weight: 3,
        arbitrary: fc.record({
          op: fc.constant('advance' as const),
          ms: fc.oneof(
            fc.integer({ min: 0, max: 3_000 }),
            fc.constantFrom(
              1,
              options.ttlMs,
              options.staleIfErrorMs,
              options.negativeTtlMs,
              options.ttlMs + options.staleIfErrorMs,
            ),
          ),
        }),
      },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('delete' as const), key }) },
      {
        weight: 1,
        arbitrary: fc.record({
          op: fc.constant('invalidate' as const),
          prefix: fc.constantFrom('', 'a', 'b', 'x'),
        }),
      },
      { weight: 1, arbitrary: fc.record({ op: fc.constant('clear' as const) }) },
      {
        weight: 4,
        arbitrary: fc.record({
          op: fc.constant('load' as const),
          key,
          outcome: fc.constantFrom('ok', 'unavailable', 'unauthorized', 'not-found', 'bug'),
          size: fc.integer({ min: 0, max: 300 }),
        }),
      },
    );
  const scenario = config.chain((options) =>
    fc.tuple(fc.constant(options), fc.array(operationFor(options), { maxLength: 60, size: 'max' })),
  );

  it('never exceeds its bounds, never serves an expired entry outside the stale window, and never serves a wrong value', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async ([options, operations]) => {
        const clock = createFakeClock();
        await using cache = createMemoryCache({ ...options, clock });
        // The last value written to each key (by set or a successful load) that nothing removed
        // since: the only value a lookup may return.
        const model = new Map<string, { text: string; expiresAt: number }>();
        // When each remembered not-found ends, as far as the model knows (eviction may end it
        // sooner, which only allows a load that the model would not require).
        const notFoundUntil = new Map<string, number>();
        const forget = (k: string) => {
          model.delete(k);
          notFoundUntil.delete(k);
        };
        let writes = 0;

        for (const operation of operations) {
          const now = clock.now();
          switch (operation.op) {
            case 'set': {
              const text = `${operation.key}#${++writes}`.padEnd(operation.size, '.');
              await cache.set(operation.key, secret(text), { ttlMs: operation.ttlMs });
              model.set(operation.key, {
                text,
                expiresAt: now + (operation.ttlMs ?? options.ttlMs),
              });
              notFoundUntil.delete(operation.key);
              break;
            }
            case 'get': {
              const entry = await cache.get(operation.key);
              if (entry !== undefined) {
                expect(entry.expiresAt).toBeGreaterThan(now);
                expect(entry.value.revealText()).toBe(model.get(operation.key)?.text);
                expect(entry.expiresAt).toBe(model.get(operation.key)?.expiresAt);
              }
              break;
            }
            case 'advance':
              clock.advance(operation.ms);
              break;
            case 'delete':
              await cache.delete(operation.key);
              forget(operation.key);
              break;
            case 'invalidate':
              await cache.invalidatePrefix(operation.prefix);
              for (const k of keys) if (k.startsWith(operation.prefix)) forget(k);
              break;
            case 'clear':
              await cache.clear();
              for (const k of keys) forget(k);
              break;
            case 'load': {
              const text = `${operation.key}#${++writes}`.padEnd(operation.size, '.');
              const loader = async () => {
                if (operation.outcome === 'ok') return secret(text);
                if (operation.outcome === 'unavailable') throw unavailable();
                if (operation.outcome === 'unauthorized') {
                  throw new ProviderError('DSO_PROVIDER_UNAUTHORIZED', 'refused');
                }
                if (operation.outcome === 'not-found') {
                  throw new ProviderError('DSO_PROVIDER_NOT_FOUND', 'gone');
                }
                throw new Error('loader bug');
              };
              // The call alone is in the try: an assertion below must not pass for a rejection.
              let result: CacheResult | undefined;
              try {
                result = await cache.getOrLoad(operation.key, loader);
              } catch {
                result = undefined;
              }
              const known = model.get(operation.key);
              if (result === undefined) {
                // A rejection is legal for a failing outcome, or while a not-found is remembered.
                const remembered =
                  now < (notFoundUntil.get(operation.key) ?? Number.NEGATIVE_INFINITY);
                expect(operation.outcome !== 'ok' || remembered).toBe(true);
                if (operation.outcome === 'not-found' && !remembered) {
                  forget(operation.key);
                  if (options.negativeTtlMs > 0) {
                    notFoundUntil.set(operation.key, now + options.negativeTtlMs);
                  }
                }
              } else if (result.stale) {
                expect(operation.outcome).toBe('unavailable');
                expect(result.expiresAt).toBeLessThanOrEqual(now);
                expect(now).toBeLessThan(result.expiresAt + options.staleIfErrorMs);
                expect(result.value.revealText()).toBe(known?.text);
              } else {
                // The cached value while fresh (unless evicted), else what this load returned,
                // which with ttlMs 0 is born expired (expiresAt === now) but is not stale.
                const served = result.value.revealText();
                const fresh = known !== undefined && now < known.expiresAt;
                expect(served === text || (fresh && served === known.text)).toBe(true);
                if (served !== text) expect(result.expiresAt).toBeGreaterThan(now);
                if (served === text) {
                  expect(operation.outcome).toBe('ok');
                  expect(result.expiresAt).toBe(now + options.ttlMs);
                  model.set(operation.key, { text, expiresAt: now + options.ttlMs });
                  notFoundUntil.delete(operation.key);
                }
              }
              break;
            }
          }
          const stats = cache.stats();
          expect(stats.entries).toBeLessThanOrEqual(options.maxEntries);
          expect(stats.bytes).toBeLessThanOrEqual(options.maxBytes);
          expect(stats.bytes).toBeGreaterThanOrEqual(0);
        }
      }),
      { numRuns: 1_000 },
    );
    // About 4 s here on two cores; the default 10 s would be close on a busy machine.
  }, 60_000);
});
