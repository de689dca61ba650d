/**
 * @dso/core/testing: contract suites for DSO's own tooling and for third-party adapters. Needs
 * vitest (an optional peer dependency): import it only from test files.
 *
 * @example
 * // my-cache.test.ts
 * import { runCacheConformance } from '@dso/core/testing';
 * import { createMyCache } from './my-cache.js';
 *
 * runCacheConformance('my cache', ({ clock, ttlMs, staleIfErrorMs, negativeTtlMs }) =>
 *   createMyCache({ clock, ttlMs, staleIfErrorMs, negativeTtlMs }));
 */
export {
  type CacheConformanceOptions,
  type CacheFactory,
  runCacheConformance,
} from './cache-conformance.js';
