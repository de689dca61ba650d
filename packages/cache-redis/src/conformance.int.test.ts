import { runCacheConformance } from '@dso/core/testing';
import { afterAll } from 'vitest';
import { createRedisCache } from './redis-cache.js';
import { createTestNamespace, TEST_REDIS_URL, testKey } from './test-support/redis.js';

const namespace = createTestNamespace();
afterAll(() => namespace.dispose());

runCacheConformance('redis', ({ clock, ttlMs, staleIfErrorMs, negativeTtlMs }) =>
  createRedisCache({
    url: TEST_REDIS_URL,
    keyPrefix: namespace.prefix(),
    encryptionKey: testKey(),
    clock,
    ttlMs,
    staleIfErrorMs,
    negativeTtlMs,
  }),
);
