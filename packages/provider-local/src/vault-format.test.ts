import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { isVaultError, type VaultErrorCode } from './vault-error.js';
import {
  DEFAULT_SCRYPT_PARAMS,
  deriveScryptKey,
  type KdfParams,
  kdfId,
  newKdfParams,
  openSealedVault,
  parseVaultHeader,
  scryptParamsProblem,
  sealVault,
  VAULT_FORMAT_VERSION,
} from './vault-format.js';

const FAST = { log2N: 10, r: 8, p: 1 };
const PLAINTEXT = Buffer.from('{"secrets":{}}', 'utf8');

function sealed(): { file: Buffer; kdf: KdfParams; key: Buffer } {
  const kdf = newKdfParams(FAST);
  const key = randomBytes(32);
  return { file: sealVault(PLAINTEXT, kdf, key), kdf, key };
}

function open(file: Buffer, key: Buffer): Buffer {
  const header = parseVaultHeader(file, '/v.dso');
  return openSealedVault(file, header, key, '/v.dso', 'test key');
}

function codeOf(run: () => unknown): VaultErrorCode | undefined {
  try {
    run();
  } catch (error) {
    if (isVaultError(error)) return error.code;
    throw error;
  }
  return undefined;
}

describe('vault format', () => {
  it('round-trips a payload through seal and open', () => {
    const { file, key } = sealed();
    expect(open(file, key).toString('utf8')).toBe(PLAINTEXT.toString('utf8'));
  });

  it('writes the documented header: magic, version, scrypt parameters, salt, cipher, nonce, length', () => {
    const { file, kdf } = sealed();
    expect(file.subarray(0, 8).toString('ascii')).toBe('DSOVAULT');
    expect(file[8]).toBe(VAULT_FORMAT_VERSION);
    expect(file[9]).toBe(1); // scrypt
    expect([file[10], file[11], file[12]]).toEqual([10, 8, 1]);
    expect(file[13]).toBe(16);
    expect(file.subarray(14, 30).equals(kdf.salt)).toBe(true);
    expect(file[30]).toBe(1); // AES-256-GCM
    expect(file[31]).toBe(12);
    expect(file.readUInt32BE(44)).toBe(PLAINTEXT.byteLength);
    expect(file.byteLength).toBe(48 + PLAINTEXT.byteLength + 16);
    const header = parseVaultHeader(file, '/v.dso');
    expect(kdfId(header.kdf)).toBe(kdfId(kdf));
  });

  it('uses a fresh nonce for every seal under the same key and salt', () => {
    const { kdf, key } = sealed();
    const first = parseVaultHeader(sealVault(PLAINTEXT, kdf, key), '/v.dso');
    const second = parseVaultHeader(sealVault(PLAINTEXT, kdf, key), '/v.dso');
    expect(first.nonce.equals(second.nonce)).toBe(false);
  });

  it('rejects a wrong key with DSO_VAULT_WRONG_KEY', () => {
    const { file } = sealed();
    expect(codeOf(() => open(file, randomBytes(32)))).toBe('DSO_VAULT_WRONG_KEY');
  });

  it('rejects a flipped ciphertext byte, tag byte or header byte as DSO_VAULT_WRONG_KEY', () => {
    const { file, key } = sealed();
    // 50: ciphertext; last byte: tag; 16: salt; 35: nonce (all authenticated, none bounds-checked)
    for (const offset of [50, file.byteLength - 1, 16, 35]) {
      const damaged = Buffer.from(file);
      damaged[offset]! ^= 0x01;
      expect(
        codeOf(() => open(damaged, key)),
        `offset ${offset}`,
      ).toBe('DSO_VAULT_WRONG_KEY');
    }
  });

  it('rejects a file without the magic as DSO_VAULT_CORRUPT', () => {
    const { file, key } = sealed();
    const damaged = Buffer.from(file);
    damaged[0] = 0x58;
    expect(codeOf(() => open(damaged, key))).toBe('DSO_VAULT_CORRUPT');
    expect(codeOf(() => open(Buffer.from('not a vault at all'), key))).toBe('DSO_VAULT_CORRUPT');
  });

  it('rejects bytes after the declared end as DSO_VAULT_CORRUPT', () => {
    const { file, key } = sealed();
    expect(codeOf(() => open(Buffer.concat([file, Buffer.from([0])]), key))).toBe(
      'DSO_VAULT_CORRUPT',
    );
  });

  it('rejects every truncation, down to an empty file, as DSO_VAULT_TRUNCATED', () => {
    const { file, key } = sealed();
    for (let length = 0; length < file.byteLength; length++) {
      expect(
        codeOf(() => open(file.subarray(0, length), key)),
        `length ${length}`,
      ).toBe('DSO_VAULT_TRUNCATED');
    }
  });

  it('rejects an unknown format version, KDF or cipher as DSO_VAULT_UNSUPPORTED_VERSION', () => {
    const { file, key } = sealed();
    for (const offset of [8, 9, 30]) {
      const changed = Buffer.from(file);
      changed[offset] = 9;
      expect(
        codeOf(() => open(changed, key)),
        `offset ${offset}`,
      ).toBe('DSO_VAULT_UNSUPPORTED_VERSION');
    }
  });

  it('refuses out-of-bounds scrypt parameters from a header before deriving anything', () => {
    const { file, key } = sealed();
    const greedy = Buffer.from(file);
    greedy[10] = 30; // N = 2^30 would need 128 GiB
    expect(codeOf(() => open(greedy, key))).toBe('DSO_VAULT_CORRUPT');
    expect(scryptParamsProblem({ log2N: 9, r: 8, p: 1 })).toMatch(/log2N/);
    expect(scryptParamsProblem({ log2N: 20, r: 32, p: 1 })).toMatch(/bytes/);
    expect(scryptParamsProblem(DEFAULT_SCRYPT_PARAMS)).toBeUndefined();
  });

  it('derives the same key for the same material and parameters, another for another salt', async () => {
    const kdf = newKdfParams(FAST);
    const material = Buffer.from('passphrase');
    const one = await deriveScryptKey(material, kdf);
    const two = await deriveScryptKey(material, kdf);
    const other = await deriveScryptKey(material, newKdfParams(FAST));
    expect(one.byteLength).toBe(32);
    expect(one.equals(two)).toBe(true);
    expect(one.equals(other)).toBe(false);
  });

  it('derives with the default parameters, which exceed node’s default scrypt maxmem', async () => {
    const key = await deriveScryptKey(
      Buffer.from('passphrase'),
      newKdfParams(DEFAULT_SCRYPT_PARAMS),
    );
    expect(key.byteLength).toBe(32);
  });
});
