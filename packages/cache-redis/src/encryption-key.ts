import { randomBytes } from 'node:crypto';
import {
  createPrivateFile,
  isPrivateFileError,
  type PrivateFileError,
  readPrivateFile,
  SecretValue,
} from '@dso/provider-sdk';
import { CACHE_KEY_BYTES } from './crypto.js';
import { RedisCacheError } from './errors.js';

/** The environment variable holding the cache key itself: 64 hex digits or base64 of 32 bytes. */
export const CACHE_KEY_ENV = 'DSO_CACHE_KEY';
/** The environment variable holding the path of a cache key file. */
export const CACHE_KEY_FILE_ENV = 'DSO_CACHE_KEY_FILE';
/** The longest cache key file accepted, in bytes. */
export const MAX_CACHE_KEY_FILE_BYTES = 4096;

const HOW_TO_MAKE = 'make one with: (umask 077; openssl rand -hex 32 > cache.key)';

/** The cache's encryption key, and where it came from. */
export interface CacheEncryptionKey {
  /** Where the key came from, safe to log: `env DSO_CACHE_KEY` or `key file <path>`. */
  readonly source: string;
  /** The 32 key bytes. Pass to `createRedisCache({ encryptionKey })`, then dispose. */
  readonly key: SecretValue;
}

/** Options of {@link loadCacheEncryptionKey}. */
export interface LoadCacheEncryptionKeyOptions {
  /**
   * Where to read {@link CACHE_KEY_ENV} and {@link CACHE_KEY_FILE_ENV} from.
   * @default process.env
   */
  env?: Readonly<Record<string, string | undefined>>;
  /** A key file to read when neither variable is set: the configured or default path. */
  keyFile?: string;
  signal?: AbortSignal;
}

/**
 * Finds the Redis cache's encryption key: the key in `DSO_CACHE_KEY`, else the key file named by
 * `DSO_CACHE_KEY_FILE`, else `keyFile`. Every agent sharing one Redis needs the same key. Key
 * material is never taken from the command line, where every process on the host can read it.
 *
 * @example
 * const { key, source } = await loadCacheEncryptionKey({ keyFile: '/var/lib/dso/cache.key' });
 * const cache = createRedisCache({ url, encryptionKey: key });
 * key.dispose();
 * logger.info({ source }, 'cache key loaded');
 * @throws RedisCacheError DSO_CACHE_KEY_MISSING when no source is set or the key file does not
 *   exist; DSO_CACHE_KEY_CONFLICT when both variables are set; DSO_CACHE_KEY_INVALID when the key
 *   is not 32 bytes in hex or base64; DSO_CACHE_KEY_PERMISSIONS or DSO_CACHE_KEY_IO from the file
 */
export async function loadCacheEncryptionKey(
  options: LoadCacheEncryptionKeyOptions = {},
): Promise<CacheEncryptionKey> {
  const { env = process.env, keyFile, signal } = options;
  signal?.throwIfAborted();
  const inline = env[CACHE_KEY_ENV];
  const fileFromEnv = env[CACHE_KEY_FILE_ENV];
  const hasInline = inline !== undefined && inline !== '';
  const hasFileFromEnv = fileFromEnv !== undefined && fileFromEnv !== '';
  if (hasInline && hasFileFromEnv) {
    throw new RedisCacheError(
      'DSO_CACHE_KEY_CONFLICT',
      `both ${CACHE_KEY_ENV} and ${CACHE_KEY_FILE_ENV} are set; unset one so the cache key is unambiguous`,
      { keyFile: fileFromEnv },
    );
  }
  if (hasInline) {
    const source = `env ${CACHE_KEY_ENV}`;
    return { source, key: parseCacheKey(inline, source) };
  }
  const path = hasFileFromEnv ? fileFromEnv : keyFile;
  if (path !== undefined && path !== '') return readCacheKeyFile(path, { signal });
  throw new RedisCacheError(
    'DSO_CACHE_KEY_MISSING',
    `no cache encryption key: set ${CACHE_KEY_ENV} to 64 hex digits, or ${CACHE_KEY_FILE_ENV} to a key file with mode 0600 (${HOW_TO_MAKE}); every agent sharing the Redis needs the same key`,
  );
}

/**
 * Decodes a cache key written as 64 hex digits or as base64 (standard or url-safe) of 32 bytes,
 * surrounding whitespace ignored. `source` names where it came from in the error.
 *
 * @example
 * parseCacheKey(process.env.DSO_CACHE_KEY ?? '', 'env DSO_CACHE_KEY');
 * @throws RedisCacheError DSO_CACHE_KEY_INVALID when it is neither (the text is never quoted)
 */
export function parseCacheKey(text: string, source = 'the cache key'): SecretValue {
  const trimmed = text.trim();
  let bytes: Buffer | undefined;
  if (/^[0-9a-fA-F]{64}$/.test(trimmed)) {
    bytes = Buffer.from(trimmed, 'hex');
  } else if (/^[A-Za-z0-9+/_-]{43}=?$/.test(trimmed)) {
    bytes = Buffer.from(trimmed, 'base64');
  }
  if (bytes === undefined || bytes.byteLength !== CACHE_KEY_BYTES) {
    bytes?.fill(0);
    throw new RedisCacheError(
      'DSO_CACHE_KEY_INVALID',
      `${source} is not a cache key: expected 64 hex digits or the base64 of 32 bytes (${HOW_TO_MAKE})`,
      { source },
    );
  }
  try {
    return SecretValue.fromBytes(bytes);
  } finally {
    bytes.fill(0);
  }
}

/**
 * Reads a cache key file: a regular file (symlinks are followed) readable by its owner only,
 * at most {@link MAX_CACHE_KEY_FILE_BYTES}, holding the key as {@link parseCacheKey} reads it.
 * The same checks as the local vault's key file.
 *
 * @throws RedisCacheError DSO_CACHE_KEY_MISSING when it does not exist; DSO_CACHE_KEY_PERMISSIONS
 *   when group or others may read or write it; DSO_CACHE_KEY_INVALID when it is not a regular
 *   file, is too long, or holds no key; DSO_CACHE_KEY_IO when it cannot be read
 */
export async function readCacheKeyFile(
  path: string,
  options: { signal?: AbortSignal } = {},
): Promise<CacheEncryptionKey> {
  let raw: Buffer;
  try {
    raw = await readPrivateFile(path, {
      maxBytes: MAX_CACHE_KEY_FILE_BYTES,
      signal: options.signal,
    });
  } catch (error) {
    throw isPrivateFileError(error) ? keyFileRefused(error, 'read') : error;
  }
  try {
    const source = `key file ${path}`;
    return { source, key: parseCacheKey(raw.toString('utf8'), `cache key file ${path}`) };
  } finally {
    raw.fill(0);
  }
}

/**
 * Creates a cache key file holding 32 random bytes as 64 hex digits, mode 0600. Written to a
 * temporary file first and linked into place, so the file is whole or absent and an existing
 * one is never overwritten (entries sealed under it would become unreadable, and the agents
 * sharing it would disagree).
 *
 * @example
 * const { key } = await generateCacheKeyFile('/var/lib/dso/cache.key');
 * @returns the new key, as {@link readCacheKeyFile} would read it
 * @throws RedisCacheError DSO_CACHE_KEY_EXISTS when the file exists; DSO_CACHE_KEY_IO when it
 *   cannot be written
 */
export async function generateCacheKeyFile(
  path: string,
  options: { signal?: AbortSignal } = {},
): Promise<CacheEncryptionKey> {
  const random = randomBytes(CACHE_KEY_BYTES);
  const text = Buffer.from(`${random.toString('hex')}\n`, 'utf8');
  try {
    await createPrivateFile(path, text, { signal: options.signal });
    return { source: `key file ${path}`, key: SecretValue.fromBytes(random) };
  } catch (error) {
    throw isPrivateFileError(error) ? keyFileRefused(error, 'write') : error;
  } finally {
    random.fill(0);
    text.fill(0);
  }
}

/** A key file refused, or that could not be read (`read`) or made (`write`), in the cache's words. */
function keyFileRefused(error: PrivateFileError, operation: 'read' | 'write'): RedisCacheError {
  const { path } = error;
  const facts = { keyFile: path };
  switch (error.problem) {
    case 'missing':
      return new RedisCacheError(
        'DSO_CACHE_KEY_MISSING',
        `cache key file ${path} does not exist; create it (${HOW_TO_MAKE}) or point ${CACHE_KEY_FILE_ENV} at the right file`,
        { ...facts, cause: error.cause },
      );
    case 'not-file':
      return new RedisCacheError(
        'DSO_CACHE_KEY_INVALID',
        `cache key file ${path} is not a regular file`,
        facts,
      );
    case 'permissions': {
      const mode = (error.mode ?? 0).toString(8).padStart(4, '0');
      return new RedisCacheError(
        'DSO_CACHE_KEY_PERMISSIONS',
        `cache key file ${path} has mode ${mode}, so other users may read it; run: chmod 600 ${path}`,
        facts,
      );
    }
    case 'too-large':
      return new RedisCacheError(
        'DSO_CACHE_KEY_INVALID',
        `cache key file ${path} is ${error.size} bytes; the limit is ${MAX_CACHE_KEY_FILE_BYTES}`,
        facts,
      );
    case 'exists':
      return new RedisCacheError(
        'DSO_CACHE_KEY_EXISTS',
        `cache key file ${path} already exists; it was not overwritten (entries sealed with it would become unreadable)`,
        facts,
      );
    case 'io':
      return new RedisCacheError(
        'DSO_CACHE_KEY_IO',
        operation === 'read'
          ? `cannot open cache key file ${path} (${error.errno ?? 'error'}); check its owner and mode`
          : `cannot write cache key file ${path} (${error.errno}); check that its directory exists and is writable`,
        { ...facts, cause: error.cause },
      );
  }
}
