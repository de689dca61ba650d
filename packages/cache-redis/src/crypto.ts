import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { isSecretValue, type SecretValue } from '@dso/provider-sdk';

/** Bytes of the cache's encryption key: AES-256. */
export const CACHE_KEY_BYTES = 32;

/** The first byte of every sealed blob: lets a later format be told apart. */
const SEAL_FORMAT = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 1 + IV_BYTES + TAG_BYTES;
/** HKDF salt: fixed, so every agent sharing a key derives the same subkeys. */
const HKDF_SALT = Buffer.from('dso-cache-redis/v1', 'utf8');

/**
 * The two subkeys derived from the cache's encryption key with HKDF-SHA256: one encrypts values
 * and key names (AES-256-GCM), the other names Redis keys (HMAC-SHA256). Deriving them keeps
 * one key from serving two algorithms, and the master key need not be kept.
 */
export interface CacheKeys {
  readonly valueKey: Buffer;
  readonly nameKey: Buffer;
}

/** Thrown by {@link openSealed} when a blob fails authentication or is malformed. */
export class SealError extends Error {
  constructor(reason: string) {
    super(`sealed cache data is unreadable: ${reason}`);
    this.name = 'SealError';
  }
}

/**
 * Derives {@link CacheKeys} from a 32-byte key. The caller keeps (and may zero) its own key.
 * @throws TypeError when the key is not 32 bytes (or a SecretValue of 32 bytes)
 */
export function deriveCacheKeys(key: Uint8Array | SecretValue): CacheKeys {
  const bytes = isSecretValue(key) ? key.reveal() : key;
  if (!(bytes instanceof Uint8Array) || bytes.byteLength !== CACHE_KEY_BYTES) {
    throw new TypeError(
      `the cache encryption key must be ${CACHE_KEY_BYTES} bytes (a Buffer, Uint8Array or SecretValue); load it with loadCacheEncryptionKey()`,
    );
  }
  const derive = (info: string) =>
    Buffer.from(hkdfSync('sha256', bytes, HKDF_SALT, Buffer.from(info, 'utf8'), CACHE_KEY_BYTES));
  return { valueKey: derive('dso cache value key'), nameKey: derive('dso cache name key') };
}

/**
 * Encrypts `plaintext` with AES-256-GCM under a fresh random IV, binding `aad` (additional
 * authenticated data: not stored, but needed again to open). Returns
 * `format(1) ‖ iv(12) ‖ tag(16) ‖ ciphertext`.
 */
export function seal(keys: CacheKeys, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', keys.valueKey, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.of(SEAL_FORMAT), iv, cipher.getAuthTag(), body]);
}

/**
 * Decrypts a blob made by {@link seal} with the same `aad`. The returned buffer is the caller's
 * to zero.
 * @throws SealError when the blob is malformed, was made with another key, was altered, or was
 *   sealed with other additional data (moved to another key name)
 */
export function openSealed(keys: CacheKeys, sealed: Uint8Array, aad: Uint8Array): Buffer {
  if (sealed.byteLength < HEADER_BYTES) throw new SealError('too short');
  if (sealed[0] !== SEAL_FORMAT) throw new SealError(`unknown format ${sealed[0]}`);
  const view = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  const iv = view.subarray(1, 1 + IV_BYTES);
  const tag = view.subarray(1 + IV_BYTES, HEADER_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', keys.valueKey, iv, {
    authTagLength: TAG_BYTES,
  });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  const head = decipher.update(view.subarray(HEADER_BYTES));
  try {
    const tail = decipher.final();
    if (tail.byteLength === 0) return head;
    const whole = Buffer.concat([head, tail]);
    tail.fill(0);
    head.fill(0);
    return whole;
  } catch {
    // The tag did not verify: whatever update() produced is unauthenticated, so drop it.
    head.fill(0);
    throw new SealError('authentication failed (wrong key, altered, or moved to another key)');
  }
}

/**
 * A non-revealing name for `text`: HMAC-SHA256 under the name subkey, base64url (43 chars).
 * `domain` separates the uses (entry names, prefix index names) so one cannot stand for another.
 */
export function hashName(keys: CacheKeys, domain: string, text: string): string {
  return createHmac('sha256', keys.nameKey)
    .update(`${domain}\0${text}`, 'utf8')
    .digest('base64url');
}
