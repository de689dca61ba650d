import { randomBytes } from 'node:crypto';
import { abortable, backoffDelay, sleep } from '@dso/async';
import {
  type Cache,
  type CacheCallOptions,
  type CacheEntry,
  CacheError,
  type CacheLoader,
  type CacheResult,
  type CacheSetOptions,
  type CacheStats,
  type Clock,
  DEFAULT_CACHE_TTL_MS,
  DEFAULT_NEGATIVE_TTL_MS,
  DEFAULT_STALE_IF_ERROR_MS,
  Flight,
  type GetOrLoadOptions,
  type LoadedSecret,
  type Logger,
  SingleFlight,
  systemClock,
} from '@dso/core';
import { isProviderError, isSecretValue, ProviderError, SecretValue } from '@dso/provider-sdk';
import { Redis } from 'ioredis';
import { type CacheKeys, deriveCacheKeys, openSealed, SealError, seal } from './crypto.js';
import { RedisCacheError } from './errors.js';
import {
  createKeyNamer,
  type EntryNames,
  escapeGlob,
  isIndexedPrefix,
  type KeyNamer,
} from './key-names.js';
import { ACQUIRE, DISCARD, INVALIDATE, RELEASE, REMOVE, RENEW, STORE } from './scripts.js';

/** Where the cache connects when no `url` is given, as in `dso.yaml`. */
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** Prefix of every Redis key the cache writes unless told otherwise, as in `dso.yaml`. */
export const DEFAULT_REDIS_KEY_PREFIX = 'dso:';

/** Bound on connecting to Redis: 5 seconds, as in `dso.yaml`. */
export const DEFAULT_REDIS_CONNECT_TIMEOUT_MS = 5_000;

/** Bound on each Redis command: 5 seconds, as in `dso.yaml`. */
export const DEFAULT_REDIS_COMMAND_TIMEOUT_MS = 5_000;

/** Largest value stored in Redis unless told otherwise: 1 MiB. Larger ones are not cached. */
export const DEFAULT_REDIS_CACHE_MAX_VALUE_BYTES = 1024 * 1024;

/**
 * How long a lease lets one agent load a key while the others wait: 30 seconds, the provider
 * call deadline's default. The holder renews it while its load runs, so this is how long a
 * crashed holder keeps the others waiting, and how long a waiter waits before loading itself.
 */
export const DEFAULT_REDIS_LEASE_MS = 30_000;

/** Shortest lease accepted: renewals run every third of it. */
const MIN_LEASE_MS = 300;
/**
 * Waiting for another agent's load: first poll after 10 ms, doubling up to 100 ms (each wait
 * jittered between half that and that). A value stored by the holder reaches the waiters within
 * about 100 ms.
 */
const LEASE_POLL = { baseMs: 10, maxMs: 100 } as const;
/** During an outage, one command per this interval tries Redis; the rest fail at once. */
const OUTAGE_PROBE_INTERVAL_MS = 1_000;
/** Entries deleted per INVALIDATE script run, so one run never blocks Redis for long. */
const INVALIDATE_BATCH = 256;
/** Keys read per pipeline when matching a prefix against the encrypted key names. */
const SCAN_BATCH = 512;
/** Format of the entries this version writes (field `f`); others are misses, left alone. */
const ENTRY_FORMAT = '1';
/** Bound on the text of a Redis error kept in logs and causes. */
const MAX_REASON_LENGTH = 200;

/** Options of {@link createRedisCache}. The names match `cache` and `cache.redis` in `dso.yaml`. */
export interface RedisCacheOptions {
  /**
   * `redis://` or `rediss://` (TLS) URL. A password in it is a credential: it never reaches a
   * log line or an error.
   * @default 'redis://127.0.0.1:6379'
   */
  url?: string;
  /**
   * Prefix of every key the cache writes, so several caches (or other users) share one Redis.
   * @default 'dso:'
   */
  keyPrefix?: string;
  /** @default 5_000 */
  connectTimeoutMs?: number;
  /**
   * Bound on each Redis command. No call waits on Redis longer than this: reads then count as
   * misses and `getOrLoad` calls the loader itself.
   * @default 5_000
   */
  commandTimeoutMs?: number;
  /** How long an entry stays fresh. @default 600_000 */
  ttlMs?: number;
  /**
   * Window past an entry's expiry in which `getOrLoad` serves it (`stale: true`) when the load
   * fails retryably. Redis keeps an entry until its expiry plus this window.
   * @default 3_600_000
   */
  staleIfErrorMs?: number;
  /** How long a not-found is remembered (shared with every agent). 0 remembers nothing. @default 10_000 */
  negativeTtlMs?: number;
  /**
   * Largest value stored, in bytes; a larger one is handed to its callers but not cached
   * (counted as `oversized`). Redis bounds the total with its own `maxmemory`.
   * @default 1_048_576
   */
  maxBytes?: number;
  /** See {@link DEFAULT_REDIS_LEASE_MS}. @default 30_000 */
  leaseMs?: number;
  /**
   * The 32-byte key values are encrypted with (and key names derived from): from
   * {@link loadCacheEncryptionKey}. Every agent sharing the Redis needs the same key. The cache
   * derives its subkeys at once and keeps no reference to this one.
   */
  encryptionKey: Uint8Array | SecretValue;
  /** Where outages, recoveries and unreadable entries are reported (never values or paths in Redis). */
  logger?: Logger;
  /**
   * Where time comes from for freshness. Polling and lease renewal run on real timers: they
   * pace network traffic, not freshness.
   * @default systemClock
   */
  clock?: Clock;
}

/** {@link CacheStats} plus what only a shared, networked cache has. */
export interface RedisCacheStats extends CacheStats {
  /** Redis commands that failed or timed out. */
  redisErrors: number;
  /** Loads run without the shared cache (Redis failing, or a lease wait timed out): not stored. */
  fallbackLoads: number;
  /** Loads that waited for another agent's lease instead of calling the provider at once. */
  leaseWaits: number;
  /** Entries that failed authentication (altered, or written under another key): dropped. */
  decryptFailures: number;
}

/**
 * A {@link Cache} on Redis. `entries` in its stats is the number of entries under the key prefix
 * at the last write this process saw (every agent's); `bytes` is 0, since this process holds
 * no values (Redis's `INFO memory` tells what Redis holds). `evictions` and `expirations` stay 0:
 * Redis does both, unseen.
 */
export interface RedisCache extends Cache {
  stats(): RedisCacheStats;
}

/** `fa`, `ea`, `ra` as stored: fetched, expires and removal time, in ms since the epoch. */
type Times = [fetchedAt: string, expiresAt: string, removeAt: string];

/** What {@link RedisBackedCache} writes with one STORE. */
interface Write {
  names: EntryNames;
  key: string;
  /** The lease token the write depends on; '' writes unconditionally (and drops any lease). */
  token: string;
  /** The entry's lifetime in Redis; 0 or less only removes it. */
  pxMs: number;
  removeAt: number;
  now: number;
  facts: Facts;
}

/** What an entry in Redis holds, with the texts its additional authenticated data is built from. */
interface StoredEntry {
  kind: 'value' | 'negative';
  version: string;
  provider: string;
  fetchedAt: number;
  expiresAt: number;
  removeAt: number;
  sealed: Buffer;
  /** Exactly as stored: the AAD binds these texts. */
  times: Times;
}

/** One load of a key: its Redis names, the TTL its result is stored with, and its lease. */
class LoadFlight extends Flight<CacheResult> {
  readonly names: EntryNames;
  readonly ttlMs: number;
  /** The lease token while this flight holds the key's lease in Redis. */
  token: string | undefined;
  renewTimer: NodeJS.Timeout | undefined;

  constructor(key: string, names: EntryNames, ttlMs: number) {
    super(key);
    this.names = names;
    this.ttlMs = ttlMs;
  }
}

/** How a flight ends for its waiters. */
type Outcome =
  | { kind: 'value'; bytes: Uint8Array; facts: Facts; stale: boolean }
  | { kind: 'error'; error: unknown };

interface Facts {
  version: string;
  provider: string;
  fetchedAt: number;
  expiresAt: number;
}

/** The ioredis client with the scripts defined on it. Its type never leaves this module. */
type ScriptedRedis = Redis & {
  dsoAcquireBuffer(...args: (string | number)[]): Promise<Buffer[]>;
  dsoStore(...args: (string | number | Buffer)[]): Promise<number>;
  dsoRemove(...args: (string | number)[]): Promise<number>;
  dsoInvalidate(...args: (string | number)[]): Promise<number>;
  dsoDiscard(...args: (string | number | Buffer)[]): Promise<number>;
  dsoRelease(...args: string[]): Promise<number>;
  dsoRenew(...args: (string | number)[]): Promise<number>;
};

type Counters = Omit<RedisCacheStats, 'bytes'>;

class RedisBackedCache implements RedisCache {
  readonly #client: ScriptedRedis;
  readonly #keys: CacheKeys;
  readonly #namer: KeyNamer;
  readonly #keyPrefix: string;
  readonly #clock: Clock;
  readonly #logger: Logger | undefined;
  readonly #ttlMs: number;
  readonly #staleIfErrorMs: number;
  readonly #negativeTtlMs: number;
  readonly #maxBytes: number;
  readonly #leaseMs: number;
  readonly #commandTimeoutMs: number;
  // Every caller gave up: the load is aborted; free its lease so the next one need not wait.
  readonly #flights = new SingleFlight<CacheResult, LoadFlight>({
    onAbandon: (flight) => this.#releaseLease(flight),
  });
  #closed = false;
  #outage = false;
  #probeAfter = 0;
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
    entries: 0,
    redisErrors: 0,
    fallbackLoads: 0,
    leaseWaits: 0,
    decryptFailures: 0,
  };

  constructor(options: RedisCacheOptions) {
    if (typeof options !== 'object' || options === null) {
      throw new TypeError('createRedisCache needs options with at least an encryptionKey');
    }
    const url = options.url ?? DEFAULT_REDIS_URL;
    // Checked without echoing the URL: it may hold a password.
    if (typeof url !== 'string' || !/^rediss?:\/\/\S+$/.test(url)) {
      throw new TypeError('url must be a redis:// or rediss:// URL');
    }
    const keyPrefix = options.keyPrefix ?? DEFAULT_REDIS_KEY_PREFIX;
    if (typeof keyPrefix !== 'string' || keyPrefix === '' || keyPrefix.length > 128) {
      throw new TypeError('keyPrefix must be a string of 1 to 128 characters');
    }
    this.#ttlMs = nonNegative('ttlMs', options.ttlMs ?? DEFAULT_CACHE_TTL_MS);
    this.#staleIfErrorMs = nonNegative(
      'staleIfErrorMs',
      options.staleIfErrorMs ?? DEFAULT_STALE_IF_ERROR_MS,
    );
    this.#negativeTtlMs = nonNegative(
      'negativeTtlMs',
      options.negativeTtlMs ?? DEFAULT_NEGATIVE_TTL_MS,
    );
    this.#maxBytes = positiveInteger(
      'maxBytes',
      options.maxBytes ?? DEFAULT_REDIS_CACHE_MAX_VALUE_BYTES,
    );
    this.#leaseMs = atLeast('leaseMs', options.leaseMs ?? DEFAULT_REDIS_LEASE_MS, MIN_LEASE_MS);
    this.#commandTimeoutMs = atLeast(
      'commandTimeoutMs',
      options.commandTimeoutMs ?? DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
      1,
    );
    const connectTimeoutMs = atLeast(
      'connectTimeoutMs',
      options.connectTimeoutMs ?? DEFAULT_REDIS_CONNECT_TIMEOUT_MS,
      1,
    );
    this.#keys = deriveCacheKeys(options.encryptionKey);
    this.#keyPrefix = keyPrefix;
    this.#namer = createKeyNamer(keyPrefix, this.#keys);
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger;

    this.#client = new Redis(url, {
      connectTimeout: connectTimeoutMs,
      commandTimeout: this.#commandTimeoutMs,
      // Commands issued while connecting wait for the connection; every failed connection
      // attempt then rejects what waits (0 retries per request), so an outage answers in
      // milliseconds instead of piling commands up until Redis returns.
      maxRetriesPerRequest: 0,
      enableOfflineQueue: true,
      // Reconnect for ever (the agent outlives outages), capped and jittered.
      retryStrategy: (attempt) => Math.round(backoffDelay(attempt, { baseMs: 100, maxMs: 2_000 })),
      connectionName: 'dso-cache',
    }) as ScriptedRedis;
    this.#client.defineCommand('dsoAcquire', { lua: ACQUIRE, numberOfKeys: 2 });
    this.#client.defineCommand('dsoStore', { lua: STORE });
    this.#client.defineCommand('dsoRemove', { lua: REMOVE });
    this.#client.defineCommand('dsoInvalidate', { lua: INVALIDATE });
    this.#client.defineCommand('dsoDiscard', { lua: DISCARD, numberOfKeys: 2 });
    this.#client.defineCommand('dsoRelease', { lua: RELEASE, numberOfKeys: 1 });
    this.#client.defineCommand('dsoRenew', { lua: RENEW, numberOfKeys: 1 });
    // ioredis reports connection failures as 'error' events; without a listener it prints them.
    this.#client.on('error', (error: unknown) => {
      if (!this.#closed) this.#markOutage('connect', error);
    });
    this.#client.on('ready', () => this.#markRecovered());
  }

  async get(key: string, options: CacheCallOptions = {}): Promise<CacheEntry | undefined> {
    this.#assertOpen();
    const { signal } = options;
    signal?.throwIfAborted();
    const names = this.#namer.names(key);
    let stored: StoredEntry | undefined;
    try {
      stored = await abortable(this.#read(names), signal);
    } catch {
      if (signal?.aborted) throw signal.reason;
      this.#assertOpen();
      // Redis failed (logged and counted by #command): a cache that cannot answer has missed.
      this.#counters.misses++;
      return undefined;
    }
    this.#assertOpen();
    const now = this.#clock.now();
    if (stored?.kind === 'value' && now < stored.expiresAt) {
      const bytes = this.#openValue(key, names, stored);
      if (bytes !== undefined) {
        this.#counters.hits++;
        return entryOf(bytes, stored);
      }
    }
    this.#counters.misses++;
    return undefined;
  }

  async set(key: string, secret: LoadedSecret, options: CacheSetOptions = {}): Promise<void> {
    this.#assertOpen();
    options.signal?.throwIfAborted();
    const ttlMs = nonNegative('ttlMs', options.ttlMs ?? this.#ttlMs);
    checkSecret(secret);
    // A load started before this write carries older news: let it answer its callers only.
    // STORE without a token also deletes the key's lease, which does the same to other agents.
    this.#detach(key);
    const bytes = new Uint8Array(secret.value.reveal());
    try {
      const now = this.#clock.now();
      const facts: Facts = {
        version: secret.version,
        provider: secret.provider,
        fetchedAt: secret.fetchedAt ?? now,
        expiresAt: now + ttlMs,
      };
      await abortable(this.#store(this.#namer.names(key), key, '', bytes, facts), options.signal);
    } finally {
      bytes.fill(0);
    }
  }

  async delete(key: string): Promise<boolean> {
    this.#assertOpen();
    this.#detach(key);
    const names = this.#namer.names(key);
    const now = String(this.#clock.now());
    const removed = await this.#command('delete', (client) =>
      client.dsoRemove(2 + names.indexes.length, names.entry, names.lease, ...names.indexes, now),
    );
    return removed === 1;
  }

  async invalidatePrefix(prefix: string): Promise<number> {
    this.#assertOpen();
    if (typeof prefix !== 'string') throw new TypeError('prefix must be a string');
    // Loads in flight here: detached now, and their leases deleted below (no entry may exist yet
    // to find them by), so none of them stores what it loaded.
    const leases: string[] = [];
    for (const flight of this.#flights.values()) {
      const { key } = flight;
      if (!key.startsWith(prefix)) continue;
      leases.push(flight.names.lease);
      this.#detach(key);
    }
    if (leases.length > 0) await this.#command('invalidate', (client) => client.del(...leases));
    const members = isIndexedPrefix(prefix)
      ? await this.#command('invalidate', (client) =>
          client.zrange(this.#namer.index(prefix), 0, -1),
        )
      : await this.#entriesMatching(prefix);
    let removed = 0;
    const now = String(this.#clock.now());
    for (let start = 0; start < members.length; start += INVALIDATE_BATCH) {
      const batch = members.slice(start, start + INVALIDATE_BATCH);
      const keys = [this.#namer.all];
      for (const entry of batch) keys.push(entry, this.#namer.leaseOfEntry(entry));
      removed += await this.#command('invalidate', (client) =>
        client.dsoInvalidate(keys.length, ...keys, now),
      );
    }
    return removed;
  }

  async clear(): Promise<void> {
    this.#assertOpen();
    for (const { key } of [...this.#flights.values()]) this.#detach(key);
    // Every name this cache writes under its prefix: entries, indexes, `all`, and the leases of
    // every agent, so no load in flight anywhere stores its result.
    const match = `${escapeGlob(this.#keyPrefix)}*`;
    let cursor = '0';
    do {
      const [next, found] = await this.#command('clear', (client) =>
        client.scan(cursor, 'MATCH', match, 'COUNT', 1_000),
      );
      cursor = next;
      const owned = found.filter((name) => this.#namer.owns(name));
      if (owned.length > 0) await this.#command('clear', (client) => client.unlink(...owned));
    } while (cursor !== '0');
    this.#counters.entries = 0;
  }

  async getOrLoad(
    key: string,
    loader: CacheLoader,
    options: GetOrLoadOptions = {},
  ): Promise<CacheResult> {
    this.#assertOpen();
    const { signal } = options;
    signal?.throwIfAborted();
    const ttlMs = nonNegative('ttlMs', options.ttlMs ?? this.#ttlMs);
    let flight = this.#flights.get(key);
    if (flight !== undefined) {
      // A load of this key is under way here: its result is what a read would wait for.
      this.#counters.misses++;
      this.#counters.coalesced++;
      return this.#flights.wait(flight, signal);
    }
    const names = this.#namer.names(key);
    let stored: StoredEntry | undefined;
    try {
      stored = await abortable(this.#read(names), signal);
    } catch {
      if (signal?.aborted) throw signal.reason;
      // Redis failed (logged and counted): the flight below loads without it.
    }
    this.#assertOpen();
    const now = this.#clock.now();
    if (stored !== undefined && now < stored.expiresAt) {
      const found = this.#openStored(key, names, stored);
      if (found?.kind === 'error') {
        this.#counters.negativeHits++;
        throw found.error;
      }
      if (found?.kind === 'value') {
        this.#counters.hits++;
        return resultOf(found.bytes, found.facts, false, true);
      }
    }
    this.#counters.misses++;
    flight = this.#flights.get(key);
    if (flight === undefined) flight = this.#startFlight(key, names, loader, ttlMs);
    else this.#counters.coalesced++;
    return this.#flights.wait(flight, signal);
  }

  stats(): RedisCacheStats {
    return { ...this.#counters, bytes: 0 };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closed = closedError();
    const leases: Promise<unknown>[] = [];
    // Waiters are taken off their flights now (so no late result reaches them) but rejected
    // only once close() is done with Redis: a caller that awaits close() and then its call
    // must not see its rejection reported as unhandled meanwhile.
    const rejects: Array<(error: unknown) => void> = [];
    for (const flight of this.#flights.closeAll(closed)) {
      rejects.push(flight.takeWaiters());
      const token = this.#dropLease(flight);
      if (token !== undefined) {
        leases.push(this.#client.dsoRelease(flight.names.lease, token));
      }
    }
    // Let other agents take over our leases at once rather than when they expire. Best effort.
    await withTimeout(Promise.allSettled(leases), this.#commandTimeoutMs, 'close').catch(() => {
      // Unreleased leases expire on their own within leaseMs: nothing is lost.
    });
    try {
      await withTimeout(this.#client.quit(), this.#commandTimeoutMs, 'quit');
    } catch {
      // Redis did not answer QUIT (down, or gone): drop the connection without it.
      this.#client.disconnect();
    }
    for (const reject of rejects) reject(closed);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #assertOpen() {
    if (this.#closed) throw closedError();
  }

  /**
   * Runs one Redis operation, bounded by `commandTimeoutMs`. While Redis is known to be down,
   * fails at once except for one probe per second, so no caller waits on a dead server.
   * @throws RedisCacheError DSO_CACHE_REDIS_UNAVAILABLE when Redis fails or does not answer
   * @throws CacheError DSO_CACHE_CLOSED when the cache closed
   */
  async #command<T>(operation: string, run: (client: ScriptedRedis) => Promise<T>): Promise<T> {
    this.#assertOpen();
    if (this.#outage) {
      const now = performance.now();
      if (this.#client.status !== 'ready' || now < this.#probeAfter) {
        throw unavailableError(operation);
      }
      this.#probeAfter = now + OUTAGE_PROBE_INTERVAL_MS;
    }
    try {
      const result = await withTimeout(run(this.#client), this.#commandTimeoutMs, operation);
      this.#markRecovered();
      return result;
    } catch (error) {
      this.#assertOpen();
      this.#counters.redisErrors++;
      this.#markOutage(operation, error);
      throw unavailableError(operation, error);
    }
  }

  #markOutage(operation: string, error: unknown) {
    this.#probeAfter = performance.now() + OUTAGE_PROBE_INTERVAL_MS;
    if (this.#outage) return;
    this.#outage = true;
    this.#logger?.warn(
      { code: 'DSO_CACHE_REDIS_UNAVAILABLE', operation, reason: reasonOf(error) },
      'redis cache unavailable; loading from providers until it answers',
    );
  }

  #markRecovered() {
    if (!this.#outage || this.#closed) return;
    this.#outage = false;
    this.#logger?.info({ redisErrors: this.#counters.redisErrors }, 'redis cache available again');
  }

  async #read(names: EntryNames): Promise<StoredEntry | undefined> {
    const fields = await this.#command('read', (client) => client.hgetallBuffer(names.entry));
    return parseStored(fields);
  }

  /**
   * Writes an entry (or, when it would hold nothing servable or is too large, removes the old
   * one: outdated either way). With a token, only while that token still holds the lease.
   * @returns false when the lease was lost, so nothing was written
   */
  async #store(
    names: EntryNames,
    key: string,
    token: string,
    bytes: Uint8Array,
    facts: Facts,
  ): Promise<boolean> {
    const now = this.#clock.now();
    const removeAt = facts.expiresAt + this.#staleIfErrorMs;
    let pxMs = Math.ceil(removeAt - now);
    if (bytes.byteLength > this.#maxBytes) {
      this.#counters.oversized++;
      pxMs = 0;
    }
    return this.#write({ names, key, token, pxMs, removeAt, now, facts }, (times) => ({
      fields: { t: 'v', ver: facts.version, prov: facts.provider },
      sealed: seal(this.#keys, bytes, aadOf(key, ['v', facts.version, facts.provider, ...times])),
    }));
  }

  /** Remembers a not-found for `negativeTtlMs` (0: only drops the last value). */
  async #storeNotFound(names: EntryNames, key: string, token: string, error: unknown) {
    const now = this.#clock.now();
    const expiresAt = now + this.#negativeTtlMs;
    const pxMs = this.#negativeTtlMs === 0 ? 0 : Math.ceil(expiresAt - now);
    const facts: Facts = { version: '', provider: '', fetchedAt: now, expiresAt };
    const removeAt = expiresAt;
    return this.#write({ names, key, token, pxMs, removeAt, now, facts }, (times) => {
      // The error's message and path are references, not values, but the path is exactly
      // what Redis must not see: sealed like a value.
      const payload = Buffer.from(JSON.stringify(notFoundFacts(error)), 'utf8');
      return {
        fields: { t: 'n', ver: '', prov: '' },
        sealed: seal(this.#keys, payload, aadOf(key, ['n', '', '', ...times])),
      };
    });
  }

  /**
   * Runs STORE: the entry's clear fields and sealed parts (made by `body` from the times as
   * they are stored, which the seal authenticates), or only the removal when `pxMs` is 0.
   */
  async #write(
    write: Write,
    body: (times: Times) => { fields: Record<string, string>; sealed: Buffer },
  ): Promise<boolean> {
    const { names, key, token, pxMs, removeAt, now, facts } = write;
    const args: (string | number | Buffer)[] = [
      names.entry,
      names.lease,
      ...names.indexes,
      token,
      Math.max(0, pxMs),
      String(removeAt),
      String(now),
    ];
    if (pxMs > 0) {
      const times: Times = [String(facts.fetchedAt), String(facts.expiresAt), String(removeAt)];
      const { fields, sealed } = body(times);
      const sealedName = seal(this.#keys, Buffer.from(key, 'utf8'), nameAadOf(names.id));
      args.push(
        ...Object.entries({
          f: ENTRY_FORMAT,
          ...fields,
          fa: times[0],
          ea: times[1],
          ra: times[2],
          ip: names.indexes[1] ?? '',
          ia: names.indexes[2] ?? '',
        }).flat(),
        'c',
        sealed,
        'n',
        sealedName,
      );
    }
    const result = await this.#command('write', (client) =>
      client.dsoStore(2 + names.indexes.length, ...args),
    );
    if (result < 0) return false;
    this.#counters.entries = result;
    return true;
  }

  /**
   * The entry's value or remembered not-found, opened; undefined (and the entry discarded) when
   * it fails authentication.
   */
  #openStored(key: string, names: EntryNames, stored: StoredEntry): Outcome | undefined {
    if (stored.kind === 'value') {
      const bytes = this.#openValue(key, names, stored);
      if (bytes === undefined) return undefined;
      return { kind: 'value', bytes, facts: stored, stale: false };
    }
    let plain: Buffer;
    try {
      plain = openSealed(this.#keys, stored.sealed, aadOf(key, ['n', '', '', ...stored.times]));
    } catch (error) {
      this.#discard(key, names, stored, error);
      return undefined;
    }
    return { kind: 'error', error: notFoundError(plain.toString('utf8'), key) };
  }

  /** The entry's value bytes (the caller's to zero), or undefined when they fail to open. */
  #openValue(key: string, names: EntryNames, stored: StoredEntry): Buffer | undefined {
    try {
      return openSealed(
        this.#keys,
        stored.sealed,
        aadOf(key, ['v', stored.version, stored.provider, ...stored.times]),
      );
    } catch (error) {
      this.#discard(key, names, stored, error);
      return undefined;
    }
  }

  /** Drops an entry that failed authentication, unless someone replaced it meanwhile. */
  #discard(key: string, names: EntryNames, stored: StoredEntry, error: unknown) {
    if (!(error instanceof SealError)) throw error;
    this.#counters.decryptFailures++;
    this.#logger?.warn(
      { code: 'DSO_CACHE_ENTRY_UNREADABLE', key, reason: error.message },
      'cache entry failed authentication (altered, or written under another key); dropped',
    );
    // Sent now, so it reaches Redis before any later command of this process on the key.
    this.#command('discard', (client) =>
      client.dsoDiscard(names.entry, this.#namer.all, stored.sealed),
    ).catch(() => {
      // Redis failed (logged by #command): the entry stays a miss and expires on its own.
    });
  }

  /** Cache keys (decrypted from the entries' sealed names) that start with `prefix`. */
  async #entriesMatching(prefix: string): Promise<string[]> {
    const members = await this.#command('invalidate', (client) =>
      client.zrange(this.#namer.all, 0, -1),
    );
    if (prefix === '') return members;
    const matching: string[] = [];
    for (let start = 0; start < members.length; start += SCAN_BATCH) {
      const batch = members.slice(start, start + SCAN_BATCH);
      const replies = await this.#command('invalidate', (client) => {
        const pipeline = client.pipeline();
        for (const entry of batch) pipeline.hgetBuffer(entry, 'n');
        return pipeline.exec();
      });
      batch.forEach((entry, index) => {
        const [error, sealedName] = replies?.[index] ?? [];
        if (error || !Buffer.isBuffer(sealedName)) return;
        const id = entry.slice(this.#keyPrefix.length + 2);
        try {
          if (openSealed(this.#keys, sealedName, nameAadOf(id)).toString('utf8').startsWith(prefix))
            matching.push(entry);
        } catch {
          // An altered name: its entry fails authentication too, and is dropped when read.
          this.#counters.decryptFailures++;
        }
      });
    }
    return matching;
  }

  /** Stops a load in flight for `key` from being joined or stored; its waiters still get it. */
  #detach(key: string) {
    const flight = this.#flights.detach(key);
    if (flight !== undefined) this.#releaseLease(flight);
  }

  #startFlight(key: string, names: EntryNames, loader: CacheLoader, ttlMs: number): LoadFlight {
    const flight = this.#flights.start(new LoadFlight(key, names, ttlMs));
    this.#fly(flight, loader).catch((error: unknown) => {
      // #fly settles its waiters itself; this is only reached through a bug in it.
      this.#releaseLease(flight);
      this.#settle(flight, { kind: 'error', error });
    });
    return flight;
  }

  /**
   * One load of a key, shared by every waiter in this process and, through the lease, by every
   * agent on the Redis: take the lease or find the value another agent stored meanwhile; wait
   * while another agent holds the lease; load (without Redis when it fails); store; answer.
   */
  async #fly(flight: LoadFlight, loader: CacheLoader) {
    const { signal } = flight.controller;
    const { key, names } = flight;
    const waitUntil = performance.now() + this.#leaseMs;
    let polls = 0;
    let shared = true;
    let waited = false;
    let unreadable = 0;
    for (;;) {
      if (signal.aborted) return;
      const token = randomBytes(16).toString('base64url');
      let reply: Buffer[];
      try {
        reply = await this.#command('lease', (client) =>
          client.dsoAcquireBuffer(
            names.entry,
            names.lease,
            String(this.#clock.now()),
            token,
            this.#leaseMs,
          ),
        );
      } catch {
        if (signal.aborted) return;
        shared = false; // Redis failed: load without it, and store nothing
        break;
      }
      const answer = reply[0]?.toString('latin1');
      if (answer === 'lease') {
        flight.token = token;
        if (signal.aborted || flight.detached) {
          this.#releaseLease(flight);
          if (signal.aborted) return;
        } else {
          this.#renewWhileLoading(flight);
        }
        break;
      }
      if (answer === 'fresh') {
        const stored = parseStored(pairsOf(reply.slice(1)));
        const found = stored && this.#openStored(key, names, stored);
        if (found !== undefined) {
          this.#settle(flight, found);
          return;
        }
        // An entry that failed authentication was discarded (DISCARD went out before the next
        // ACQUIRE): try again at once. One of a format this version cannot read (a newer
        // agent's) is left alone, so load without the lease rather than spin on it.
        if (stored === undefined || ++unreadable > 2) {
          shared = false;
          break;
        }
        continue;
      }
      // Another agent holds the lease: wait for its value, or for the lease to go.
      if (!waited) {
        waited = true;
        this.#counters.leaseWaits++;
      }
      polls += 1;
      if (performance.now() + backoffDelay(polls, { ...LEASE_POLL, jitter: 'none' }) > waitUntil) {
        shared = false; // its holder is slow or stuck: load ourselves, store nothing
        break;
      }
      try {
        await sleep(backoffDelay(polls, LEASE_POLL), { signal });
      } catch {
        return; // every waiter left, or the cache closed: they were answered already
      }
    }

    if (!shared) this.#counters.fallbackLoads++;
    this.#counters.loads++;
    let loaded: LoadedSecret;
    let bytes: Uint8Array;
    try {
      loaded = await loader(signal);
      checkSecret(loaded);
      // Take the loader's bytes over: copy them, then zero the loader's copy.
      bytes = new Uint8Array(loaded.value.reveal());
      loaded.value.dispose();
    } catch (error) {
      await this.#loadFailed(flight, error);
      return;
    }
    const now = this.#clock.now();
    const facts: Facts = {
      version: loaded.version,
      provider: loaded.provider,
      fetchedAt: loaded.fetchedAt ?? now,
      expiresAt: now + flight.ttlMs,
    };
    const token = this.#dropLease(flight);
    if (token !== undefined) {
      if (!flight.detached && !this.#closed) {
        // STORE drops the lease too; if Redis fails the lease expires on its own.
        await this.#store(names, key, token, bytes, facts).catch(() => false);
      } else {
        this.#releaseToken(names.lease, token);
      }
    }
    this.#settle(flight, { kind: 'value', bytes, facts, stale: false });
  }

  async #loadFailed(flight: LoadFlight, error: unknown) {
    this.#counters.loadErrors++;
    const { key, names } = flight;
    const notFound = isProviderError(error) && error.code === 'DSO_PROVIDER_NOT_FOUND';
    const token = this.#dropLease(flight);
    if (token !== undefined) {
      if (notFound && !flight.detached && !this.#closed) {
        // Remembered for every agent; the last value goes, stale or not: the secret is gone.
        await this.#storeNotFound(names, key, token, error).catch(() => false);
      } else {
        this.#releaseToken(names.lease, token);
      }
    }
    if (flight.waiting === 0) {
      this.#settle(flight, { kind: 'error', error });
      return;
    }
    if (!notFound && isProviderError(error) && error.retryable && !this.#closed) {
      const stale = await this.#staleFallback(key, names);
      if (stale !== undefined) {
        this.#settle(flight, stale);
        return;
      }
    }
    this.#settle(flight, { kind: 'error', error });
  }

  /** The entry under `key` if it is a value still inside its stale window, opened. */
  async #staleFallback(key: string, names: EntryNames): Promise<Outcome | undefined> {
    let stored: StoredEntry | undefined;
    try {
      stored = await this.#read(names);
    } catch {
      return undefined; // Redis failed: nothing to fall back on
    }
    const now = this.#clock.now();
    if (stored?.kind !== 'value' || now >= stored.removeAt) return undefined;
    const found = this.#openStored(key, names, stored);
    if (found?.kind !== 'value') return undefined;
    return { ...found, stale: now >= stored.expiresAt };
  }

  /** Answers every waiter of `flight` (each its own copy) and retires the flight. */
  #settle(flight: LoadFlight, outcome: Outcome) {
    this.#flights.retire(flight);
    this.#stopRenewing(flight);
    if (outcome.kind === 'error') {
      flight.rejectEach(outcome.error);
      return;
    }
    flight.resolveEach(() => {
      if (outcome.stale) this.#counters.staleServed++;
      return resultOf(outcome.bytes, outcome.facts, outcome.stale, false);
    });
    outcome.bytes.fill(0);
  }

  #renewWhileLoading(flight: LoadFlight) {
    const timer = setInterval(() => {
      const token = flight.token;
      if (token === undefined || this.#closed) return;
      this.#command('renew', (client) =>
        client.dsoRenew(flight.names.lease, token, this.#leaseMs),
      ).catch(() => {
        // Redis failed (logged): the lease may lapse and another agent load too; no harm.
      });
    }, this.#leaseMs / 3);
    timer.unref();
    flight.renewTimer = timer;
  }

  #stopRenewing(flight: LoadFlight) {
    if (flight.renewTimer !== undefined) clearInterval(flight.renewTimer);
    flight.renewTimer = undefined;
  }

  /** Takes the flight's lease token away from it (stopping renewal) and returns it. */
  #dropLease(flight: LoadFlight): string | undefined {
    this.#stopRenewing(flight);
    const token = flight.token;
    flight.token = undefined;
    return token;
  }

  /** Gives the flight's lease back now, so the next load (here or elsewhere) need not wait. */
  #releaseLease(flight: LoadFlight) {
    const token = this.#dropLease(flight);
    if (token !== undefined) this.#releaseToken(flight.names.lease, token);
  }

  #releaseToken(lease: string, token: string) {
    if (this.#closed) return;
    this.#command('release', (client) => client.dsoRelease(lease, token)).catch(() => {
      // Redis failed (logged): the lease expires on its own within leaseMs.
    });
  }
}

/**
 * A {@link Cache} on Redis, shared by every agent that uses the same Redis, key prefix and
 * encryption key. Values (and the cache keys, which name secret paths) are encrypted with
 * AES-256-GCM before they leave the process; Redis key names are HMACs. `getOrLoad` is
 * single-flight within the process and, through a lease in Redis, across agents: one provider
 * call however many agents ask at once. When Redis fails, reads miss and `getOrLoad` calls the
 * loader itself, within `commandTimeoutMs`; writes and invalidations reject with
 * `DSO_CACHE_REDIS_UNAVAILABLE`, so an invalidation is never lost silently.
 *
 * Connects at once (in the background) and reconnects for ever; `close()` disconnects.
 *
 * @example
 * const { key } = await loadCacheEncryptionKey({ env: process.env });
 * await using cache = createRedisCache({ url: 'redis://127.0.0.1:6379', encryptionKey: key });
 * key.dispose();
 * const entry = await cache.getOrLoad(cacheKey('vault', 'app/db'), loadFromVault);
 * @throws TypeError when `url`, `keyPrefix` or `encryptionKey` is unusable
 * @throws RangeError when a duration or `maxBytes` is out of range
 */
export function createRedisCache(options: RedisCacheOptions): RedisCache {
  return new RedisBackedCache(options);
}

function withTimeout<T>(promise: Promise<T>, timeoutMs: number, operation: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`redis ${operation} timed out after ${timeoutMs} ms`)),
      timeoutMs,
    );
    timer.unref();
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error: unknown) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}

/**
 * What a Redis error says, bounded. Never the error itself: ioredis attaches the command and its
 * arguments to reply errors, and those hold sealed blobs and lease tokens.
 */
function reasonOf(error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : 'unknown error';
  return text.slice(0, MAX_REASON_LENGTH);
}

function unavailableError(operation: string, error?: unknown) {
  const reason = error === undefined ? 'it was failing moments ago' : reasonOf(error);
  return new RedisCacheError(
    'DSO_CACHE_REDIS_UNAVAILABLE',
    `the Redis cache did not complete ${operation} (${reason}); check that Redis at cache.redis.url is up and reachable, then retry`,
    { operation, ...(error === undefined ? {} : { cause: new Error(reason) }) },
  );
}

function closedError() {
  return new CacheError('DSO_CACHE_CLOSED', 'the cache is closed; create a new one');
}

/** The additional authenticated data of an entry's sealed blob: its key and clear fields. */
function aadOf(key: string, fields: readonly string[]): Buffer {
  return Buffer.from(JSON.stringify(['dso-cache/1', key, ...fields]), 'utf8');
}

/** The additional authenticated data of an entry's sealed key name: the entry's id. */
function nameAadOf(id: string): Buffer {
  return Buffer.from(JSON.stringify(['dso-cache/1', 'name', id]), 'utf8');
}

function pairsOf(flat: Buffer[]): Record<string, Buffer> {
  const fields: Record<string, Buffer> = {};
  for (let index = 0; index + 1 < flat.length; index += 2) {
    fields[flat[index]!.toString('latin1')] = flat[index + 1]!;
  }
  return fields;
}

/** An entry read back from Redis, or undefined when there is none or it is not ours to read. */
function parseStored(fields: Record<string, Buffer>): StoredEntry | undefined {
  const text = (name: string) => fields[name]?.toString('utf8');
  if (text('f') !== ENTRY_FORMAT) return undefined;
  const kind = text('t') === 'v' ? 'value' : text('t') === 'n' ? 'negative' : undefined;
  const times = [text('fa'), text('ea'), text('ra')];
  const sealed = fields.c;
  if (kind === undefined || sealed === undefined || times.some((time) => time === undefined)) {
    return undefined;
  }
  const [fa, ea, ra] = times as Times;
  const numbers = [Number(fa), Number(ea), Number(ra)];
  if (!numbers.every(Number.isFinite)) return undefined;
  return {
    kind,
    version: text('ver') ?? '',
    provider: text('prov') ?? '',
    fetchedAt: numbers[0]!,
    expiresAt: numbers[1]!,
    removeAt: numbers[2]!,
    sealed,
    times: [fa, ea, ra],
  };
}

/** A caller's copy of `bytes` as an entry; zeroes `bytes`, which were only a decryption's. */
function entryOf(bytes: Buffer, facts: Facts): CacheEntry {
  const value = SecretValue.fromBytes(bytes);
  bytes.fill(0);
  return {
    value,
    version: facts.version,
    provider: facts.provider,
    fetchedAt: facts.fetchedAt,
    expiresAt: facts.expiresAt,
  };
}

/** A caller's copy of `bytes` as a result; zeroes `bytes` when `zero` (the last copy made). */
function resultOf(bytes: Uint8Array, facts: Facts, stale: boolean, zero: boolean): CacheResult {
  const value = SecretValue.fromBytes(bytes);
  if (zero) bytes.fill(0);
  return {
    value,
    version: facts.version,
    provider: facts.provider,
    fetchedAt: facts.fetchedAt,
    expiresAt: facts.expiresAt,
    stale,
  };
}

/** What of a not-found is kept (sealed) so other agents can rethrow it. */
function notFoundFacts(error: unknown) {
  const provider = isProviderError(error) ? error.provider : undefined;
  const path = isProviderError(error) ? error.path : undefined;
  const message = error instanceof Error ? error.message : 'secret not found';
  return { message, provider, path };
}

function notFoundError(json: string, key: string): ProviderError {
  let facts: { message?: unknown; provider?: unknown; path?: unknown } = {};
  try {
    facts = JSON.parse(json);
  } catch {
    // Authenticated but not JSON: only a writer bug could do that; a generic message will do.
  }
  const text = (value: unknown) => (typeof value === 'string' ? value : undefined);
  return new ProviderError(
    'DSO_PROVIDER_NOT_FOUND',
    text(facts.message) ?? `no secret for cache key ${key}`,
    { provider: text(facts.provider), path: text(facts.path) },
  );
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

function nonNegative(name: string, value: number) {
  if (!(Number.isFinite(value) && value >= 0)) {
    throw new RangeError(`${name} must be a finite number of ms, 0 or more, got ${value}`);
  }
  return value;
}

function atLeast(name: string, value: number, min: number) {
  if (!(Number.isFinite(value) && value >= min)) {
    throw new RangeError(`${name} must be a finite number of ms, ${min} or more, got ${value}`);
  }
  return value;
}

function positiveInteger(name: string, value: number) {
  if (!(Number.isSafeInteger(value) && value >= 1)) {
    throw new RangeError(`${name} must be a whole number, 1 or more, got ${value}`);
  }
  return value;
}
