/**
 * @dso/cache-redis: DSO's cache contract (`Cache` from `@dso/core`) on Redis, shared by several
 * agents. Values are sealed with AES-256-GCM before they leave the process, Redis key names are
 * HMACs (no secret path shows in `redis-cli keys`), and a lease in Redis makes many agents
 * asking for one secret at once cost one provider call. When Redis fails, loads go to the
 * providers directly.
 *
 * @example
 * import { cacheKey } from '@dso/core';
 * import { createRedisCache, loadCacheEncryptionKey } from '@dso/cache-redis';
 *
 * const { key } = await loadCacheEncryptionKey(); // DSO_CACHE_KEY or DSO_CACHE_KEY_FILE
 * const cache = createRedisCache({ url: 'redis://127.0.0.1:6379', encryptionKey: key });
 * key.dispose();
 * const entry = await cache.getOrLoad(cacheKey('vault', 'app/db'), async (signal) => {
 *   const { value, version } = await provider.resolve({ path: 'app/db' }, { signal });
 *   return { value, version, provider: 'vault' };
 * });
 * try { deliver(entry.value.reveal()); } finally { entry.value.dispose(); }
 * await cache.close();
 */

export { CACHE_KEY_BYTES } from './crypto.js';
export {
  CACHE_KEY_ENV,
  CACHE_KEY_FILE_ENV,
  type CacheEncryptionKey,
  generateCacheKeyFile,
  type LoadCacheEncryptionKeyOptions,
  loadCacheEncryptionKey,
  MAX_CACHE_KEY_FILE_BYTES,
  parseCacheKey,
  readCacheKeyFile,
} from './encryption-key.js';
export { REDIS_CACHE_ERROR_CODES, RedisCacheError, type RedisCacheErrorCode } from './errors.js';
export {
  createRedisCache,
  DEFAULT_REDIS_CACHE_MAX_VALUE_BYTES,
  DEFAULT_REDIS_COMMAND_TIMEOUT_MS,
  DEFAULT_REDIS_CONNECT_TIMEOUT_MS,
  DEFAULT_REDIS_KEY_PREFIX,
  DEFAULT_REDIS_LEASE_MS,
  DEFAULT_REDIS_URL,
  type RedisCache,
  type RedisCacheOptions,
  type RedisCacheStats,
} from './redis-cache.js';
