import { type Clock, type ClockTimer, systemClock } from '@dso/async';
import { isProviderError, isSecretValue, SecretValue } from '@dso/provider-sdk';
import type { RedactionLease, Redactor } from '../redaction.js';
import {
  type Cache,
  type CacheCallOptions,
  type CacheEntry,
  CacheError,
  type CacheLoader,
  type CacheResult,
  type CacheSetOptions,
  type CacheStats,
  DEFAULT_CACHE_TTL_MS,
  type GetOrLoadOptions,
  type LoadedSecret,
} from './cache.js';
import { Flight, SingleFlight } from './single-flight.js';

/** Default bound on the number of entries of a memory cache. */
export const DEFAULT_CACHE_MAX_ENTRIES = 10_000;

/** Default bound on the bytes a memory cache holds: 64 MiB. */
export const DEFAULT_CACHE_MAX_BYTES = 64 * 1024 * 1024;

/**
 * Default window past expiry in which a memory cache answers `getOrLoad` with the expired entry
 * when the provider fails retryably: 1 hour. DESIGN's promise is that a provider outage does not
 * take running applications down ("last-known-good values keep serving within a configured
 * staleness"); a default of 0 would break it unless every deployment opted in. The price is that
 * an expired value stays in memory for up to this long (zeroed when the window ends, on
 * invalidation, or when a not-found says the secret is gone). Set 0 to serve nothing stale.
 */
export const DEFAULT_STALE_IF_ERROR_MS = 3_600_000;

/** Default time a not-found from the provider is remembered: 10 seconds, as in `dso.yaml`. */
export const DEFAULT_NEGATIVE_TTL_MS = 10_000;

/** Default interval of the background sweep that zeroes expired entries: 1 minute. */
export const DEFAULT_CACHE_SWEEP_INTERVAL_MS = 60_000;

/**
 * Bytes a memory cache adds per entry on top of its value, to account for the entry's bookkeeping:
 * an entry costs `value.byteLength + 2 × (key + version + provider length) + 64`.
 */
export const CACHE_ENTRY_OVERHEAD_BYTES = 64;

/** Options of {@link createMemoryCache}; every one has a default. */
export interface MemoryCacheOptions {
  /**
   * How long an entry stays fresh, in ms. 0 caches nothing as fresh: every `getOrLoad` loads
   * (concurrent callers still share one load) and entries are kept only for stale-if-error.
   * @default 600_000 (DEFAULT_CACHE_TTL_MS)
   */
  ttlMs?: number;
  /**
   * Most entries held (remembered not-founds and stale entries included); the least recently
   * used goes first.
   * @default 10_000
   */
  maxEntries?: number;
  /**
   * Most bytes held, as {@link CACHE_ENTRY_OVERHEAD_BYTES} describes; the least recently used
   * entry goes first. A value that alone exceeds it is not cached (counted as `oversized`).
   * @default 67_108_864 (64 MiB)
   */
  maxBytes?: number;
  /**
   * Window past an entry's expiry in which `getOrLoad` serves it (`stale: true`) when the load
   * fails with a retryable ProviderError. 0 serves nothing stale.
   * @default 3_600_000 (1 hour, DEFAULT_STALE_IF_ERROR_MS)
   */
  staleIfErrorMs?: number;
  /**
   * How long a ProviderError DSO_PROVIDER_NOT_FOUND is remembered, in ms. 0 remembers nothing.
   * @default 10_000
   */
  negativeTtlMs?: number;
  /**
   * Interval of the background sweep that zeroes and drops entries past their expiry (and stale
   * window); expired entries are also dropped when touched. The timer does not keep Node alive.
   * @default 60_000
   */
  sweepIntervalMs?: number;
  /**
   * Where time comes from; tests inject a fake clock.
   * @default systemClock
   */
  clock?: Clock;
  /**
   * The redactor that must know every value held here: each entry holds a lease on its value
   * (see `Redactor`), released when the entry leaves, so a value the cache alone kept is
   * forgotten with it.
   */
  redactor?: Pick<Redactor, 'register'>;
}

/**
 * Recency order is a doubly linked list through the slots, oldest first: a hit moves its slot to
 * the newest end and eviction takes the oldest, both O(1). (A Map's insertion order would do the
 * same on paper, but V8 leaves a hole per deleted entry until it rehashes, and finding the first
 * live entry walks the holes: evicting at the front cost ~15 µs a write at 10,000 entries.)
 */
interface Links {
  key: string;
  older: Slot | undefined;
  newer: Slot | undefined;
}

interface ValueSlot extends Links {
  kind: 'value';
  /** The cache's own copy; zeroed when the slot leaves. Never handed out. */
  bytes: Uint8Array;
  /** The redactor's registration of the value, released when the slot leaves. */
  lease: RedactionLease | undefined;
  version: string;
  provider: string;
  fetchedAt: number;
  expiresAt: number;
  /** When the slot is dropped: `expiresAt` plus the stale window. */
  removeAt: number;
  size: number;
}

interface NegativeSlot extends Links {
  kind: 'negative';
  /** The not-found the loader threw, rethrown as it was. Carries references, never values. */
  error: unknown;
  expiresAt: number;
  removeAt: number;
  size: number;
}

type Slot = ValueSlot | NegativeSlot;

/** What is stored beside a value's bytes. */
type SecretFacts = Pick<LoadedSecret, 'version' | 'provider' | 'fetchedAt'>;

/** One load of a key, and the TTL its result is stored with. */
class LoadFlight extends Flight<CacheResult> {
  readonly ttlMs: number;

  constructor(key: string, ttlMs: number) {
    super(key);
    this.ttlMs = ttlMs;
  }
}

type Counters = Omit<CacheStats, 'entries' | 'bytes'>;

// Lets the package's own tests reach the cache's buffer to prove it is zeroed, without a
// public door: only this module can read #slots, and index.ts does not export this.
let peekBytes: (cache: MemoryCache, key: string) => Uint8Array | undefined;

class MemoryCache implements Cache {
  readonly #slots = new Map<string, Slot>();
  #oldest: Slot | undefined;
  #newest: Slot | undefined;
  readonly #flights = new SingleFlight<CacheResult, LoadFlight>();
  readonly #clock: Clock;
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #maxBytes: number;
  readonly #staleIfErrorMs: number;
  readonly #negativeTtlMs: number;
  readonly #sweepIntervalMs: number;
  #bytes = 0;
  readonly #redactor: Pick<Redactor, 'register'> | undefined;
  #closed = false;
  #sweepTimer: ClockTimer | undefined;
  readonly #counters: Counters = {
    hits: 0,
    misses: 0,
    loads: 0,
    coalesced: 0,
    loadErrors: 0,
    staleServed: 0,
    negativeHits: 0,
    evictions: 0,
    expirations: 0,
    oversized: 0,
  };

  static {
    peekBytes = (cache, key) => {
      const slot = cache.#slots.get(key);
      return slot?.kind === 'value' ? slot.bytes : undefined;
    };
  }

  constructor(options: MemoryCacheOptions) {
    this.#clock = options.clock ?? systemClock;
    this.#ttlMs = nonNegative('ttlMs', options.ttlMs ?? DEFAULT_CACHE_TTL_MS);
    this.#maxEntries = positiveInteger(
      'maxEntries',
      options.maxEntries ?? DEFAULT_CACHE_MAX_ENTRIES,
    );
    this.#maxBytes = positiveInteger('maxBytes', options.maxBytes ?? DEFAULT_CACHE_MAX_BYTES);
    this.#staleIfErrorMs = nonNegative(
      'staleIfErrorMs',
      options.staleIfErrorMs ?? DEFAULT_STALE_IF_ERROR_MS,
    );
    this.#negativeTtlMs = nonNegative(
      'negativeTtlMs',
      options.negativeTtlMs ?? DEFAULT_NEGATIVE_TTL_MS,
    );
    this.#sweepIntervalMs = positive(
      'sweepIntervalMs',
      options.sweepIntervalMs ?? DEFAULT_CACHE_SWEEP_INTERVAL_MS,
    );
    this.#redactor = options.redactor;
  }

  async get(key: string, options: CacheCallOptions = {}) {
    this.#assertOpen();
    options.signal?.throwIfAborted();
    const now = this.#clock.now();
    const slot = this.#live(key, now);
    if (slot?.kind === 'value' && now < slot.expiresAt) {
      this.#counters.hits++;
      this.#touch(slot);
      return entryOf(slot);
    }
    this.#counters.misses++;
    return undefined;
  }

  async set(key: string, secret: LoadedSecret, options: CacheSetOptions = {}) {
    this.#assertOpen();
    options.signal?.throwIfAborted();
    const ttlMs = nonNegative('ttlMs', options.ttlMs ?? this.#ttlMs);
    checkSecret(secret);
    // A load started before this write carries older news: let it answer its callers only.
    this.#flights.detach(key);
    this.#store(key, new Uint8Array(secret.value.reveal()), secret, ttlMs);
  }

  async delete(key: string) {
    this.#assertOpen();
    this.#flights.detach(key);
    const slot = this.#live(key, this.#clock.now());
    if (slot === undefined) return false;
    this.#remove(key, slot);
    return true;
  }

  async invalidatePrefix(prefix: string) {
    this.#assertOpen();
    for (const { key } of this.#flights.values()) {
      if (key.startsWith(prefix)) this.#flights.detach(key);
    }
    const now = this.#clock.now();
    let removed = 0;
    for (const [key, slot] of this.#slots) {
      if (!key.startsWith(prefix)) continue;
      this.#remove(key, slot);
      // Past its removal time it was gone already, only not yet swept: not counted as removed.
      if (now >= slot.removeAt) this.#counters.expirations++;
      else removed++;
    }
    return removed;
  }

  async clear() {
    this.#assertOpen();
    for (const { key } of [...this.#flights.values()]) this.#flights.detach(key);
    this.#removeAll();
  }

  async getOrLoad(key: string, loader: CacheLoader, options: GetOrLoadOptions = {}) {
    this.#assertOpen();
    const { signal } = options;
    signal?.throwIfAborted();
    const ttlMs = nonNegative('ttlMs', options.ttlMs ?? this.#ttlMs);
    const now = this.#clock.now();
    const slot = this.#live(key, now);
    if (slot !== undefined && now < slot.expiresAt) {
      if (slot.kind === 'negative') {
        this.#counters.negativeHits++;
        throw slot.error;
      }
      this.#counters.hits++;
      this.#touch(slot);
      return resultOf(slot, false);
    }
    this.#counters.misses++;
    let flight = this.#flights.get(key);
    if (flight === undefined) flight = this.#startLoad(key, loader, ttlMs);
    else this.#counters.coalesced++;
    return this.#flights.wait(flight, signal);
  }

  stats(): CacheStats {
    return { ...this.#counters, entries: this.#slots.size, bytes: this.#bytes };
  }

  async close() {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#sweepTimer !== undefined) this.#clock.clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    const closed = closedError();
    for (const flight of this.#flights.closeAll(closed)) flight.rejectEach(closed);
    this.#removeAll();
  }

  async [Symbol.asyncDispose]() {
    await this.close();
  }

  #assertOpen() {
    if (this.#closed) throw closedError();
  }

  /** The slot under `key` unless it is past its removal time, in which case it is dropped. */
  #live(key: string, now: number): Slot | undefined {
    const slot = this.#slots.get(key);
    if (slot !== undefined && now >= slot.removeAt) {
      this.#remove(key, slot);
      this.#counters.expirations++;
      return undefined;
    }
    return slot;
  }

  /** Makes `slot` the most recently used. */
  #touch(slot: Slot) {
    if (slot === this.#newest) return;
    this.#unlink(slot);
    this.#link(slot);
  }

  #link(slot: Slot) {
    slot.older = this.#newest;
    slot.newer = undefined;
    if (this.#newest === undefined) this.#oldest = slot;
    else this.#newest.newer = slot;
    this.#newest = slot;
  }

  #unlink(slot: Slot) {
    if (slot.older === undefined) this.#oldest = slot.newer;
    else slot.older.newer = slot.newer;
    if (slot.newer === undefined) this.#newest = slot.older;
    else slot.newer.older = slot.older;
    slot.older = undefined;
    slot.newer = undefined;
  }

  /**
   * Stores `bytes` (taking them over) under `key`, then evicts down to the bounds. Whatever the
   * key held goes first, even when the new value is too large to keep: it is outdated either way.
   */
  #store(key: string, bytes: Uint8Array, secret: SecretFacts, ttlMs: number) {
    const now = this.#clock.now();
    const previous = this.#slots.get(key);
    if (previous !== undefined) this.#remove(key, previous);
    const size =
      bytes.byteLength +
      2 * (key.length + secret.version.length + secret.provider.length) +
      CACHE_ENTRY_OVERHEAD_BYTES;
    if (size > this.#maxBytes) {
      bytes.fill(0);
      this.#counters.oversized++;
      return;
    }
    const expiresAt = now + ttlMs;
    const removeAt = expiresAt + this.#staleIfErrorMs;
    // ttlMs 0 with no stale window: nothing would ever be served from it.
    if (removeAt <= now) {
      bytes.fill(0);
      return;
    }
    this.#insert({
      key,
      older: undefined,
      newer: undefined,
      kind: 'value',
      bytes,
      lease: this.#redactor?.register(bytes),
      version: secret.version,
      provider: secret.provider,
      fetchedAt: secret.fetchedAt ?? now,
      expiresAt,
      removeAt,
      size,
    });
  }

  #storeNotFound(key: string, error: unknown) {
    const previous = this.#slots.get(key);
    // The secret is gone: its last value must not be served again, stale or not.
    if (previous !== undefined) this.#remove(key, previous);
    if (this.#negativeTtlMs === 0) return;
    const size = 2 * key.length + CACHE_ENTRY_OVERHEAD_BYTES;
    if (size > this.#maxBytes) return;
    const expiresAt = this.#clock.now() + this.#negativeTtlMs;
    this.#insert({
      key,
      older: undefined,
      newer: undefined,
      kind: 'negative',
      error,
      expiresAt,
      removeAt: expiresAt,
      size,
    });
  }

  #insert(slot: Slot) {
    const previous = this.#slots.get(slot.key);
    if (previous !== undefined) this.#remove(slot.key, previous);
    this.#slots.set(slot.key, slot);
    this.#link(slot);
    this.#bytes += slot.size;
    const now = this.#clock.now();
    // The new slot is the newest and fits on its own, so the loop stops before reaching it.
    while (this.#slots.size > this.#maxEntries || this.#bytes > this.#maxBytes) {
      const oldest = this.#oldest;
      if (oldest === undefined || oldest === slot) break;
      this.#remove(oldest.key, oldest);
      if (now >= oldest.removeAt) this.#counters.expirations++;
      else this.#counters.evictions++;
    }
    this.#armSweep();
  }

  #remove(key: string, slot: Slot) {
    this.#slots.delete(key);
    this.#unlink(slot);
    this.#bytes -= slot.size;
    if (slot.kind === 'value') drop(slot);
  }

  #removeAll() {
    for (const slot of this.#slots.values()) if (slot.kind === 'value') drop(slot);
    this.#slots.clear();
    this.#oldest = undefined;
    this.#newest = undefined;
    this.#bytes = 0;
  }

  #armSweep() {
    if (this.#sweepTimer !== undefined || this.#closed) return;
    this.#sweepTimer = this.#clock.setTimeout(() => {
      this.#sweepTimer = undefined;
      this.#sweep();
      if (this.#slots.size > 0) this.#armSweep();
    }, this.#sweepIntervalMs);
    // A cache must not keep the process alive on its own. The Clock contract has no unref;
    // systemClock's handle is a Node Timeout, which has one, and a fake clock's has none.
    (this.#sweepTimer as unknown as { unref?: () => void }).unref?.();
  }

  #sweep() {
    const now = this.#clock.now();
    for (const [key, slot] of this.#slots) {
      if (now < slot.removeAt) continue;
      this.#remove(key, slot);
      this.#counters.expirations++;
    }
  }

  #startLoad(key: string, loader: CacheLoader, ttlMs: number): LoadFlight {
    const flight = this.#flights.start(new LoadFlight(key, ttlMs));
    this.#counters.loads++;
    let loading: Promise<LoadedSecret>;
    try {
      loading = Promise.resolve(loader(flight.controller.signal));
    } catch (error) {
      loading = Promise.reject(error);
    }
    loading.then(
      (loaded) => this.#loaded(flight, loaded),
      (error: unknown) => this.#failed(flight, error),
    );
    return flight;
  }

  #loaded(flight: LoadFlight, loaded: LoadedSecret) {
    let bytes: Uint8Array;
    try {
      checkSecret(loaded);
      // Take the loader's bytes over: copy them, then zero the loader's copy.
      bytes = new Uint8Array(loaded.value.reveal());
      loaded.value.dispose();
    } catch (error) {
      this.#failed(flight, error);
      return;
    }
    this.#flights.retire(flight);
    const now = this.#clock.now();
    const { version, provider } = loaded;
    const fetchedAt = loaded.fetchedAt ?? now;
    const expiresAt = now + flight.ttlMs;
    const store = !flight.detached && !this.#closed;
    // Copies are made synchronously for every waiter before anything else can run, so an
    // eviction cannot zero the stored bytes under a waiter.
    flight.resolveEach(() => ({
      value: SecretValue.fromBytes(bytes),
      version,
      provider,
      fetchedAt,
      expiresAt,
      stale: false,
    }));
    if (store) this.#store(flight.key, bytes, { version, provider, fetchedAt }, flight.ttlMs);
    else bytes.fill(0);
  }

  #failed(flight: LoadFlight, error: unknown) {
    this.#flights.retire(flight);
    this.#counters.loadErrors++;
    if (flight.waiting === 0 && flight.detached) return;
    const store = !flight.detached && !this.#closed;
    const notFound = isProviderError(error) && error.code === 'DSO_PROVIDER_NOT_FOUND';
    if (notFound && store) this.#storeNotFound(flight.key, error);
    const now = this.#clock.now();
    const fallback =
      !notFound && isProviderError(error) && error.retryable && !this.#closed
        ? this.#live(flight.key, now)
        : undefined;
    if (fallback?.kind !== 'value') {
      flight.rejectEach(error);
      return;
    }
    // Inside the stale window (the slot is live). Fresh only if a `set` landed meanwhile.
    const stale = now >= fallback.expiresAt;
    flight.resolveEach(() => {
      if (stale) this.#counters.staleServed++;
      return resultOf(fallback, stale);
    });
  }
}

/**
 * An in-process {@link Cache}: LRU-bounded by entry count and bytes, TTL per entry, stale-if-error
 * and negative caching on `getOrLoad`, one load per key however many callers wait. Every buffer is
 * zeroed when its entry leaves (eviction, expiry, delete, invalidation, clear, overwrite, close).
 *
 * @example
 * await using cache = createMemoryCache({ ttlMs: 300_000, maxBytes: 16 * 1024 * 1024 });
 * const entry = await cache.getOrLoad(cacheKey('vault', 'app/db'), loadFromVault);
 * @throws RangeError when an option is out of range (durations finite and ≥ 0, bounds and
 *   `sweepIntervalMs` ≥ 1)
 */
export function createMemoryCache(options: MemoryCacheOptions = {}): Cache {
  return new MemoryCache(options);
}

/**
 * The memory cache's own buffer under `key`, for this package's tests to prove it is zeroed when
 * the entry leaves. Not exported by the package.
 * @internal
 */
export function internalBytesForTesting(cache: Cache, key: string): Uint8Array | undefined {
  if (!(cache instanceof MemoryCache)) throw new TypeError('not a memory cache');
  return peekBytes(cache, key);
}

/** A value slot leaving: its bytes zeroed, the redactor's registration given back. */
function drop(slot: ValueSlot): void {
  slot.bytes.fill(0);
  slot.lease?.release();
  slot.lease = undefined;
}

function entryOf(slot: ValueSlot): CacheEntry {
  return {
    value: SecretValue.fromBytes(slot.bytes),
    version: slot.version,
    provider: slot.provider,
    fetchedAt: slot.fetchedAt,
    expiresAt: slot.expiresAt,
  };
}

// Spelled out rather than `{ ...entryOf(slot), stale }`: on Node 20 object spreads like that
// made handing results to 1,000 waiters of one load about 3x slower in the benchmark.
function resultOf(slot: ValueSlot, stale: boolean): CacheResult {
  return {
    value: SecretValue.fromBytes(slot.bytes),
    version: slot.version,
    provider: slot.provider,
    fetchedAt: slot.fetchedAt,
    expiresAt: slot.expiresAt,
    stale,
  };
}

function checkSecret(secret: LoadedSecret) {
  if (
    typeof secret !== 'object' ||
    secret === null ||
    !isSecretValue(secret.value) ||
    typeof secret.version !== 'string' ||
    typeof secret.provider !== 'string'
  ) {
    throw new TypeError(
      'a cached secret is { value: SecretValue, version: string, provider: string }',
    );
  }
}

function closedError() {
  return new CacheError('DSO_CACHE_CLOSED', 'the cache is closed; create a new one');
}

function positive(name: string, value: number) {
  if (!(Number.isFinite(value) && value > 0)) {
    throw new RangeError(`${name} must be a positive finite number of ms, got ${value}`);
  }
  return value;
}

function nonNegative(name: string, value: number) {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new RangeError(`${name} must be a finite number of ms, 0 or more, got ${value}`);
  }
  return value;
}

function positiveInteger(name: string, value: number) {
  if (!(Number.isSafeInteger(value) && value >= 1)) {
    throw new RangeError(`${name} must be a whole number, 1 or more, got ${value}`);
  }
  return value;
}
