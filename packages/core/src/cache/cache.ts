import type { SecretValue } from '@dso/provider-sdk';
import { DsoError, type DsoErrorOptions } from '../errors.js';

/**
 * A secret as a cache hands it out. `value` is a fresh copy of the cached bytes, owned by the
 * caller: it cannot reach the cache's own buffer, and disposing it (`value.dispose()`, which
 * zeroes it) is the caller's job once the bytes are delivered. Times are ms since the epoch, on
 * the cache's clock.
 */
export interface CacheEntry {
  /** A copy of the secret's bytes; the caller's to dispose. Prints as `[REDACTED]`. */
  value: SecretValue;
  /** The provider's version identifier for this value. */
  version: string;
  /** The configured name of the provider the value came from. */
  provider: string;
  /** When the value was fetched from the provider. */
  fetchedAt: number;
  /** The first instant at which the entry is no longer fresh: fresh while `now < expiresAt`. */
  expiresAt: number;
}

/**
 * What {@link Cache.getOrLoad} answers: an entry, and whether it is a stale one served because
 * the load failed with a retryable error (`stale: true`, `expiresAt <= now`). A value this very
 * call loaded with a ttl of 0 is not stale: it has `expiresAt === now` and `stale: false`.
 */
export interface CacheResult extends CacheEntry {
  /** True when the entry had expired and was served only because the provider failed. */
  stale: boolean;
}

/**
 * A secret given to a cache, by {@link Cache.set} or returned by a {@link CacheLoader}.
 * The same shape as a provider's `ResolvedSecret`, plus the provider's name.
 */
export interface LoadedSecret {
  value: SecretValue;
  version: string;
  provider: string;
  /** When it was fetched; defaults to the cache's clock at the time it is stored. */
  fetchedAt?: number;
}

/**
 * Fetches one secret for {@link Cache.getOrLoad}. `signal` aborts when every caller waiting on
 * the load has given up, or the cache closes. The returned value is handed over: the cache
 * copies its bytes and disposes it, so the loader must not keep using it.
 *
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND is remembered for the cache's negative TTL;
 *   a retryable ProviderError lets a stale entry be served; anything else passes through
 */
export type CacheLoader = (signal: AbortSignal) => Promise<LoadedSecret>;

/** Options of calls that only take a signal. */
export interface CacheCallOptions {
  signal?: AbortSignal;
}

/** Options of {@link Cache.set}. */
export interface CacheSetOptions extends CacheCallOptions {
  /**
   * How long the entry stays fresh, in ms; defaults to the cache's `ttlMs`. 0 stores it already
   * expired: never served fresh, kept only for stale-if-error.
   */
  ttlMs?: number;
}

/** Options of {@link Cache.getOrLoad}. */
export interface GetOrLoadOptions extends CacheCallOptions {
  /**
   * How long a freshly loaded entry stays fresh, in ms; defaults to the cache's `ttlMs`. A call
   * that joins a load already in flight gets the ttl of the call that started it.
   */
  ttlMs?: number;
}

/**
 * Counters and gauges for metrics. Counters only grow over the cache's life; `entries` and
 * `bytes` are what the cache holds now, as far as the implementation can know it.
 */
export interface CacheStats {
  /** Lookups (`get`, `getOrLoad`) answered by a fresh entry. */
  hits: number;
  /** Lookups that found no fresh entry (a remembered not-found counts as `negativeHits`). */
  misses: number;
  /** Loader calls started by `getOrLoad`. */
  loads: number;
  /** `getOrLoad` calls that joined a load already in flight instead of starting one. */
  coalesced: number;
  /** Loads that failed, whatever the callers were then given. */
  loadErrors: number;
  /** `getOrLoad` calls answered by a stale entry because the load failed retryably. */
  staleServed: number;
  /** `getOrLoad` calls answered by a remembered not-found, without calling the loader. */
  negativeHits: number;
  /** Entries removed to respect the cache's bounds. */
  evictions: number;
  /** Entries removed because they expired (past the stale window, if any). */
  expirations: number;
  /** Values not cached because they alone exceed the cache's byte bound. */
  oversized: number;
  /** Entries held now, remembered not-founds and stale entries included. */
  entries: number;
  /** Bytes held now, as the implementation accounts them. */
  bytes: number;
}

/**
 * One contract for caches of secret entries, so the in-memory cache and the Redis adapter are
 * interchangeable. Asynchronous throughout (a shared store answers over the network), except
 * {@link Cache.stats}. Every implementation runs `runCacheConformance` from `@dso/core/testing`
 * unchanged.
 *
 * - Values go in as copies and come out as copies: nothing a caller does to a buffer it gave or
 *   got changes what is cached, and the caller disposes what it got.
 * - `get` never returns an entry whose `expiresAt <= now`; `getOrLoad` does so only from its
 *   stale-if-error path, marked `stale: true` (or for a value it just loaded with a ttl of 0).
 * - Keys are opaque strings; {@link cacheKey} builds the conventional
 *   `<provider>:<path>@<version>` so prefixes select a provider or a path.
 * - After {@link Cache.close} every call but `stats` and `close` rejects with
 *   `DSO_CACHE_CLOSED`.
 * - Errors the cache itself throws never contain a secret value.
 *
 * @example
 * await using cache = createMemoryCache();
 * const entry = await cache.getOrLoad(cacheKey('vault', 'app/db'), async (signal) => {
 *   const { value, version } = await provider.resolve({ path: 'app/db' }, { signal });
 *   return { value, version, provider: 'vault' };
 * });
 * try { deliver(entry.value.reveal()); } finally { entry.value.dispose(); }
 */
export interface Cache extends AsyncDisposable {
  /**
   * The fresh entry under `key`, as a copy; undefined when there is none, it expired, or only a
   * not-found is remembered.
   * @throws CacheError DSO_CACHE_CLOSED after close
   */
  get(key: string, options?: CacheCallOptions): Promise<CacheEntry | undefined>;

  /**
   * Stores a copy of `secret` under `key`, fresh for `ttlMs`, replacing (and zeroing) whatever
   * the key held. The caller keeps its own value. A value too large for the cache's bounds is
   * not stored.
   * @throws RangeError when `ttlMs` is negative or not finite
   * @throws CacheError DSO_CACHE_CLOSED after close
   */
  set(key: string, secret: LoadedSecret, options?: CacheSetOptions): Promise<void>;

  /**
   * Removes `key`'s entry (and any remembered not-found) and detaches a load in flight for it,
   * so its result is not stored. True when something was removed.
   * @throws CacheError DSO_CACHE_CLOSED after close
   */
  delete(key: string): Promise<boolean>;

  /**
   * Removes every entry whose key starts with `prefix`, a plain string prefix (build one with
   * {@link cacheKeyPrefix}: `vault:` is one provider, `vault:app/db@` every version of one
   * path), and detaches loads in flight for those keys. Resolves to the number removed.
   * @throws CacheError DSO_CACHE_CLOSED after close
   */
  invalidatePrefix(prefix: string): Promise<number>;

  /**
   * Removes every entry and detaches every load in flight.
   * @throws CacheError DSO_CACHE_CLOSED after close
   */
  clear(): Promise<void>;

  /**
   * The fresh entry under `key`, else the result of one call to `loader`, stored and shared by
   * every caller waiting on the key meanwhile (single-flight: one load however many wait).
   *
   * - A caller's `signal` aborting rejects that caller only, with the signal's reason; the
   *   load's own signal aborts when no caller is left waiting, or on close.
   * - A retryable ProviderError from the loader is answered with the expired entry, copied and
   *   marked `stale: true`, while it is inside the cache's stale window; else it is rethrown.
   * - A ProviderError DSO_PROVIDER_NOT_FOUND is remembered for the cache's negative TTL and
   *   rethrown to later callers without calling the loader.
   *
   * @throws ProviderError whatever the loader threw, when no stale entry may answer
   * @throws CacheError DSO_CACHE_CLOSED after close, or when the cache closes while waiting
   */
  getOrLoad(key: string, loader: CacheLoader, options?: GetOrLoadOptions): Promise<CacheResult>;

  /** Counters and gauges for metrics; works after close. */
  stats(): CacheStats;

  /**
   * Zeroes and drops every entry, aborts loads in flight (their waiters reject with
   * `DSO_CACHE_CLOSED`) and releases what the cache holds. Idempotent.
   */
  close(): Promise<void>;
}

/** Stable codes of the errors a cache throws. */
export const CACHE_ERROR_CODES = ['DSO_CACHE_CLOSED'] as const;

/** One of {@link CACHE_ERROR_CODES}. */
export type CacheErrorCode = (typeof CACHE_ERROR_CODES)[number];

/**
 * A failure of the cache itself (not of a loader, whose errors pass through unchanged).
 * Recognise it with `isDsoError(error) && error.code === 'DSO_CACHE_CLOSED'`.
 */
export class CacheError extends DsoError {
  declare readonly code: CacheErrorCode;

  constructor(code: CacheErrorCode, message: string, options: DsoErrorOptions = {}) {
    super(code, message, options);
    this.name = 'CacheError';
  }
}

/** How long an entry stays fresh unless told otherwise: 10 minutes, the seed's default. */
export const DEFAULT_CACHE_TTL_MS = 600_000;

/**
 * The conventional cache key of a secret: `<provider>:<path>@<version>`, with an empty version
 * for "the current one" (`vault:app/db@`). Provider names hold no `:` and paths no `@` (the
 * reference grammar allows neither), so the parts cannot run into each other.
 *
 * @example
 * cacheKey('vault', 'app/db', '3'); // 'vault:app/db@3'
 * cacheKey('vault', 'app/db');      // 'vault:app/db@'
 * @throws TypeError when `provider` is empty or holds ':' or `path` is empty or holds '@'
 */
export function cacheKey(provider: string, path: string, version?: string): string {
  return `${cacheKeyPrefix(provider, path)}${version ?? ''}`;
}

/**
 * The prefix that {@link Cache.invalidatePrefix} needs to drop every version of one path
 * (`vault:app/db@`, which does not also match `vault:app/db2`), or everything of one provider
 * when `path` is absent (`vault:`).
 *
 * @example
 * await cache.invalidatePrefix(cacheKeyPrefix('vault', 'app/db')); // every version of app/db
 * @throws TypeError when `provider` is empty or holds ':' or `path` is empty or holds '@'
 */
export function cacheKeyPrefix(provider: string, path?: string): string {
  if (provider === '' || provider.includes(':')) {
    throw new TypeError('cache key provider must be non-empty and hold no ":"');
  }
  if (path === undefined) return `${provider}:`;
  if (path === '' || path.includes('@')) {
    throw new TypeError('cache key path must be non-empty and hold no "@"');
  }
  return `${provider}:${path}@`;
}
