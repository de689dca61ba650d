import { type CacheKeys, hashName } from './crypto.js';

/** The Redis keys that belong to one cache key. None of them reveals the cache key. */
export interface EntryNames {
  /** The HMAC of the cache key, base64url: the part every other name is built from. */
  readonly id: string;
  /** The hash holding the entry: `<prefix>e:<id>`. */
  readonly entry: string;
  /** The lease that lets one agent load the key at a time: `<prefix>lease:<id>`. */
  readonly lease: string;
  /** The sorted sets that index the entry: the set of all entries, then one per prefix. */
  readonly indexes: readonly string[];
}

/**
 * The prefixes a cache key is indexed under: up to its first `:` (`vault:`, one provider) and
 * up to the first `@` after that (`vault:app/db@`, every version of one path), as far as the key
 * has them. These are exactly the prefixes `cacheKeyPrefix()` builds.
 *
 * @example
 * indexPrefixesOf('vault:app/db@3'); // ['vault:', 'vault:app/db@']
 * indexPrefixesOf('plain');          // []
 */
export function indexPrefixesOf(key: string): string[] {
  const colon = key.indexOf(':');
  if (colon === -1) return [];
  const provider = key.slice(0, colon + 1);
  const at = key.indexOf('@', colon + 1);
  return at === -1 ? [provider] : [provider, key.slice(0, at + 1)];
}

/**
 * True when `prefix` is one of the prefixes keys are indexed under, so that the keys starting
 * with it are exactly the members of its index. A key starts with `A:` (A without `:`) exactly
 * when its first `:` ends that prefix, and with `A:B@` (B without `@`) exactly when its first
 * `@` after that ends it, so the index is exact, not an approximation.
 */
export function isIndexedPrefix(prefix: string): boolean {
  return indexPrefixesOf(prefix).at(-1) === prefix;
}

/** Builds the Redis key names of one cache, under its `keyPrefix`. */
export interface KeyNamer {
  /** The key of the sorted set of every entry: `<prefix>all`. */
  readonly all: string;
  /** The names that belong to `key`. */
  names(key: string): EntryNames;
  /** The index of `prefix` (one for which {@link isIndexedPrefix} holds): `<prefix>i:<hmac>`. */
  index(prefix: string): string;
  /** The lease that belongs with an entry's name. */
  leaseOfEntry(entry: string): string;
  /** True for a name this cache writes (entry, lease, index, all), for `clear()`. */
  owns(name: string): boolean;
}

const ID = '[A-Za-z0-9_-]{43}';

/** A {@link KeyNamer} for `keyPrefix`, hashing with the name subkey of `keys`. */
export function createKeyNamer(keyPrefix: string, keys: CacheKeys): KeyNamer {
  const all = `${keyPrefix}all`;
  const index = (prefix: string) => `${keyPrefix}i:${hashName(keys, 'prefix', prefix)}`;
  const owned = new RegExp(`^(?:(?:e|i|lease):${ID}|all)$`);
  return {
    all,
    names(key) {
      const id = hashName(keys, 'key', key);
      return {
        id,
        entry: `${keyPrefix}e:${id}`,
        lease: `${keyPrefix}lease:${id}`,
        indexes: [all, ...indexPrefixesOf(key).map(index)],
      };
    },
    index,
    leaseOfEntry: (entry) => `${keyPrefix}lease:${entry.slice(keyPrefix.length + 2)}`,
    owns: (name) => name.startsWith(keyPrefix) && owned.test(name.slice(keyPrefix.length)),
  };
}

/** `text` with Redis glob characters escaped, for `SCAN MATCH`. */
export function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, '\\$&');
}
