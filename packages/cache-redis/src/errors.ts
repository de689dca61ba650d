import { DsoError, type DsoErrorOptions } from '@dso/core';

/**
 * Stable codes of the errors this package throws besides core's `DSO_CACHE_CLOSED`. The README's
 * error table gives each one's fix.
 */
export const REDIS_CACHE_ERROR_CODES = [
  'DSO_CACHE_REDIS_UNAVAILABLE',
  'DSO_CACHE_KEY_MISSING',
  'DSO_CACHE_KEY_CONFLICT',
  'DSO_CACHE_KEY_INVALID',
  'DSO_CACHE_KEY_PERMISSIONS',
  'DSO_CACHE_KEY_EXISTS',
  'DSO_CACHE_KEY_IO',
] as const;

/** One of {@link REDIS_CACHE_ERROR_CODES}. */
export type RedisCacheErrorCode = (typeof REDIS_CACHE_ERROR_CODES)[number];

/**
 * A failure of the Redis cache or of its key handling. Messages name files, variables and
 * settings, never key material, cache values or Redis URLs (which may hold a password).
 * Recognise it with `isDsoError(error) && error.code === 'DSO_CACHE_KEY_MISSING'`.
 *
 * @example
 * throw new RedisCacheError('DSO_CACHE_KEY_PERMISSIONS', 'key file /x has mode 0644; run: chmod 600 /x', {
 *   keyFile: '/x',
 * });
 */
export class RedisCacheError extends DsoError {
  declare readonly code: RedisCacheErrorCode;

  /**
   * @param code one of {@link REDIS_CACHE_ERROR_CODES}
   * @param message what went wrong and what to do
   * @param options `cause`, plus facts kept on `details`
   */
  constructor(code: RedisCacheErrorCode, message: string, options: DsoErrorOptions = {}) {
    super(code, message, options);
    this.name = 'RedisCacheError';
  }
}
