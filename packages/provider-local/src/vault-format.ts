import { createCipheriv, createDecipheriv, randomBytes, scrypt } from 'node:crypto';
import { VaultError } from './vault-error.js';

// Format version 1, byte by byte (all integers big-endian). The whole header is the GCM
// additional data, so any change to it fails authentication like a change to the ciphertext.
//
//   offset  size  field
//   0       8     magic "DSOVAULT"
//   8       1     format version = 1
//   9       1     KDF id: 1 = scrypt
//   10      1     scrypt log2(N)
//   11      1     scrypt r
//   12      1     scrypt p
//   13      1     salt length S (16..64)
//   14      S     salt
//   14+S    1     cipher id: 1 = AES-256-GCM
//   15+S    1     nonce length = 12
//   16+S    12    nonce, fresh for every write
//   28+S    4     ciphertext length L
//   32+S    L     ciphertext
//   32+S+L  16    GCM tag

/** The bytes every vault file starts with. */
export const VAULT_MAGIC = Buffer.from('DSOVAULT', 'ascii');
/** The format version this package reads and writes. */
export const VAULT_FORMAT_VERSION = 1;

const KDF_SCRYPT = 1;
const CIPHER_AES_256_GCM = 1;
const KEY_BYTES = 32;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
const SALT_BYTES = 16;
const MIN_SALT_BYTES = 16;
const MAX_SALT_BYTES = 64;

/**
 * The largest vault file read or written, in bytes. Ten versions of many secrets fit with room
 * to spare; the bound keeps a stray huge file from being read into memory.
 */
export const MAX_VAULT_FILE_BYTES = 256 * 1024 * 1024;

/** scrypt's cost parameters, as stored in the vault header. */
export interface ScryptParams {
  /** log2 of the CPU/memory cost N; 15 means N = 32768. */
  log2N: number;
  /** Block size. */
  r: number;
  /** Parallelisation. */
  p: number;
}

/** The KDF part of a header: the cost parameters and the salt. */
export interface KdfParams extends ScryptParams {
  salt: Buffer;
}

/**
 * The scrypt cost a new vault gets: N = 2^15, r = 8, p = 1, which takes 32 MiB of memory per
 * derivation. Each vault derives its key once and caches it, so the cost is paid once per
 * process, not per read.
 */
export const DEFAULT_SCRYPT_PARAMS: Readonly<ScryptParams> = Object.freeze({
  log2N: 15,
  r: 8,
  p: 1,
});

const MIN_LOG2N = 10;
const MAX_LOG2N = 20;
const MAX_R = 32;
const MAX_P = 16;

/**
 * The most memory one derivation may take, in bytes. The header is only authenticated after the
 * key is derived, so its parameters are bounded first: a file edited to ask for N = 2^30 fails
 * fast instead of exhausting memory.
 */
export const MAX_SCRYPT_MEMORY_BYTES = 256 * 1024 * 1024;

/** A parsed vault header; `bytes` are the header's exact bytes, the GCM additional data. */
export interface VaultHeader {
  formatVersion: number;
  kdf: KdfParams;
  nonce: Buffer;
  ciphertextLength: number;
  bytes: Buffer;
}

/**
 * Describes why `params` are out of bounds, or returns undefined when they are fine.
 * Bounds: log2N 10..20, r 1..32, p 1..16, 128·N·r ≤ {@link MAX_SCRYPT_MEMORY_BYTES}.
 */
export function scryptParamsProblem(params: ScryptParams): string | undefined {
  const { log2N, r, p } = params;
  if (!Number.isInteger(log2N) || log2N < MIN_LOG2N || log2N > MAX_LOG2N) {
    return `scrypt log2N must be an integer from ${MIN_LOG2N} to ${MAX_LOG2N}, got ${log2N}`;
  }
  if (!Number.isInteger(r) || r < 1 || r > MAX_R) {
    return `scrypt r must be an integer from 1 to ${MAX_R}, got ${r}`;
  }
  if (!Number.isInteger(p) || p < 1 || p > MAX_P) {
    return `scrypt p must be an integer from 1 to ${MAX_P}, got ${p}`;
  }
  if (128 * 2 ** log2N * r > MAX_SCRYPT_MEMORY_BYTES) {
    return `scrypt N=2^${log2N}, r=${r} needs more than ${MAX_SCRYPT_MEMORY_BYTES} bytes`;
  }
  return undefined;
}

/** Fresh KDF parameters for a new vault: `params` and a random 16-byte salt. */
export function newKdfParams(params: ScryptParams): KdfParams {
  return { ...params, salt: randomBytes(SALT_BYTES) };
}

/** A stable identity for (params, salt): equal ids derive equal keys from equal material. */
export function kdfId(kdf: KdfParams): string {
  return `scrypt:${kdf.log2N}:${kdf.r}:${kdf.p}:${kdf.salt.toString('hex')}`;
}

/**
 * Derives the 32-byte AES key from key material with scrypt. Not abortable once started
 * (node's scrypt runs on the thread pool); the signal is checked before it starts.
 */
export function deriveScryptKey(
  material: Uint8Array,
  kdf: KdfParams,
  signal?: AbortSignal,
): Promise<Buffer> {
  signal?.throwIfAborted();
  const N = 2 ** kdf.log2N;
  // OpenSSL needs 128·r·(N + p + 2) bytes; node's default maxmem (32 MiB) is exactly too small
  // for N = 2^15, r = 8, so the limit is computed from the parameters.
  const maxmem = 128 * kdf.r * (N + kdf.p + 2);
  return new Promise((resolve, reject) => {
    scrypt(material, kdf.salt, KEY_BYTES, { N, r: kdf.r, p: kdf.p, maxmem }, (error, key) => {
      if (error) reject(error);
      else resolve(key);
    });
  });
}

/**
 * Builds a vault file: header, then `plaintext` encrypted with AES-256-GCM under `key` with a
 * fresh random nonce, the header as additional data, then the tag.
 */
export function sealVault(plaintext: Uint8Array, kdf: KdfParams, key: Uint8Array): Buffer {
  const nonce = randomBytes(NONCE_BYTES);
  const header = encodeHeader(kdf, nonce, plaintext.byteLength);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(header);
  const body = cipher.update(plaintext);
  const rest = cipher.final();
  const tag = cipher.getAuthTag();
  return Buffer.concat([header, body, rest, tag]);
}

function encodeHeader(kdf: KdfParams, nonce: Buffer, ciphertextLength: number): Buffer {
  const saltLength = kdf.salt.byteLength;
  const header = Buffer.alloc(32 + saltLength);
  VAULT_MAGIC.copy(header, 0);
  header.writeUInt8(VAULT_FORMAT_VERSION, 8);
  header.writeUInt8(KDF_SCRYPT, 9);
  header.writeUInt8(kdf.log2N, 10);
  header.writeUInt8(kdf.r, 11);
  header.writeUInt8(kdf.p, 12);
  header.writeUInt8(saltLength, 13);
  kdf.salt.copy(header, 14);
  header.writeUInt8(CIPHER_AES_256_GCM, 14 + saltLength);
  header.writeUInt8(NONCE_BYTES, 15 + saltLength);
  nonce.copy(header, 16 + saltLength);
  header.writeUInt32BE(ciphertextLength, 28 + saltLength);
  return header;
}

/**
 * Parses and bounds-checks a vault file's header without any key. Classifies damage: a file that
 * does not start with the magic is corrupt, one that ends before its header or its declared
 * ciphertext and tag is truncated.
 *
 * @param vaultPath used in messages only
 * @throws VaultError DSO_VAULT_CORRUPT, DSO_VAULT_TRUNCATED or DSO_VAULT_UNSUPPORTED_VERSION
 */
export function parseVaultHeader(file: Buffer, vaultPath: string): VaultHeader {
  const facts = { vaultPath };
  const corrupt = (what: string) =>
    new VaultError(
      'DSO_VAULT_CORRUPT',
      `vault ${vaultPath} is corrupt (${what}); restore it from a backup`,
      facts,
    );
  const truncated = (what: string) =>
    new VaultError(
      'DSO_VAULT_TRUNCATED',
      `vault ${vaultPath} is truncated: it is ${file.byteLength} bytes long, ${what}; restore it from a backup`,
      facts,
    );

  const magicLength = Math.min(file.byteLength, VAULT_MAGIC.byteLength);
  if (!file.subarray(0, magicLength).equals(VAULT_MAGIC.subarray(0, magicLength))) {
    throw corrupt('it does not start with "DSOVAULT", so it is not a DSO vault file');
  }
  if (file.byteLength < 9) throw truncated('shorter than its header');

  const formatVersion = file.readUInt8(8);
  if (formatVersion !== VAULT_FORMAT_VERSION) {
    throw new VaultError(
      'DSO_VAULT_UNSUPPORTED_VERSION',
      `vault ${vaultPath} has format version ${formatVersion}; this version of @dso/provider-local reads version ${VAULT_FORMAT_VERSION}: upgrade DSO`,
      facts,
    );
  }
  if (file.byteLength < 14) throw truncated('shorter than its header');
  const kdfId = file.readUInt8(9);
  if (kdfId !== KDF_SCRYPT) {
    throw new VaultError(
      'DSO_VAULT_UNSUPPORTED_VERSION',
      `vault ${vaultPath} uses KDF id ${kdfId}, which this version of @dso/provider-local does not know: upgrade DSO`,
      facts,
    );
  }
  const params: ScryptParams = {
    log2N: file.readUInt8(10),
    r: file.readUInt8(11),
    p: file.readUInt8(12),
  };
  const paramsProblem = scryptParamsProblem(params);
  if (paramsProblem !== undefined) throw corrupt(`header: ${paramsProblem}`);
  const saltLength = file.readUInt8(13);
  if (saltLength < MIN_SALT_BYTES || saltLength > MAX_SALT_BYTES) {
    throw corrupt(
      `header: salt length ${saltLength} is outside ${MIN_SALT_BYTES}..${MAX_SALT_BYTES}`,
    );
  }
  const headerLength = 32 + saltLength;
  if (file.byteLength < 16 + saltLength) throw truncated('shorter than its header');
  const cipherId = file.readUInt8(14 + saltLength);
  if (cipherId !== CIPHER_AES_256_GCM) {
    throw new VaultError(
      'DSO_VAULT_UNSUPPORTED_VERSION',
      `vault ${vaultPath} uses cipher id ${cipherId}, which this version of @dso/provider-local does not know: upgrade DSO`,
      facts,
    );
  }
  const nonceLength = file.readUInt8(15 + saltLength);
  if (nonceLength !== NONCE_BYTES) {
    throw corrupt(`header: nonce length ${nonceLength}, expected ${NONCE_BYTES}`);
  }
  if (file.byteLength < headerLength) {
    throw truncated(`shorter than its ${headerLength}-byte header`);
  }
  const ciphertextLength = file.readUInt32BE(28 + saltLength);
  const expected = headerLength + ciphertextLength + TAG_BYTES;
  if (file.byteLength < expected) {
    throw truncated(`but its header says ${expected}`);
  }
  if (file.byteLength > expected) {
    throw corrupt(`${file.byteLength - expected} bytes after the end its header declares`);
  }
  return {
    formatVersion,
    kdf: { ...params, salt: Buffer.from(file.subarray(14, 14 + saltLength)) },
    nonce: Buffer.from(file.subarray(16 + saltLength, 28 + saltLength)),
    ciphertextLength,
    bytes: Buffer.from(file.subarray(0, headerLength)),
  };
}

/**
 * Decrypts and authenticates a vault file whose header was parsed by {@link parseVaultHeader}.
 * The caller owns the returned plaintext and should zero it when done.
 *
 * @param keySource where the key came from, for the message (e.g. `env DSO_VAULT_PASSPHRASE`)
 * @throws VaultError DSO_VAULT_WRONG_KEY when authentication fails: a wrong key and a modified
 *   file look the same to AES-GCM
 */
export function openSealedVault(
  file: Buffer,
  header: VaultHeader,
  key: Uint8Array,
  vaultPath: string,
  keySource: string,
): Buffer {
  const start = header.bytes.byteLength;
  const ciphertext = file.subarray(start, start + header.ciphertextLength);
  const tag = file.subarray(start + header.ciphertextLength);
  const decipher = createDecipheriv('aes-256-gcm', key, header.nonce, {
    authTagLength: TAG_BYTES,
  });
  decipher.setAAD(header.bytes);
  decipher.setAuthTag(tag);
  const body = decipher.update(ciphertext);
  let rest: Buffer;
  try {
    rest = decipher.final();
  } catch (error) {
    // Unauthenticated plaintext: never let it leave this function.
    body.fill(0);
    throw new VaultError(
      'DSO_VAULT_WRONG_KEY',
      `cannot decrypt vault ${vaultPath} with the key from ${keySource}: wrong key, or the file was modified`,
      { vaultPath, cause: error },
    );
  }
  if (rest.byteLength === 0) return body;
  const plaintext = Buffer.concat([body, rest]);
  body.fill(0);
  rest.fill(0);
  return plaintext;
}
