import { describe, expect, it } from 'vitest';
import { createKeyCache, type DeriveKey } from './key-cache.js';
import { isVaultError } from './vault-error.js';
import type { KdfParams } from './vault-format.js';

const kdf = (saltByte: number): KdfParams => ({
  log2N: 10,
  r: 8,
  p: 1,
  salt: Buffer.alloc(16, saltByte),
});

function countingDerive() {
  const derived: Buffer[] = [];
  const derive: DeriveKey = async (_material, params) => {
    const key = Buffer.alloc(32, params.salt[0]! + 1);
    derived.push(key);
    return key;
  };
  return { derive, derived };
}

describe('createKeyCache', () => {
  it('derives once for repeated requests with the same salt and parameters', async () => {
    const { derive, derived } = countingDerive();
    const cache = createKeyCache(Buffer.from('material'), derive);
    await Promise.all([cache.get(kdf(1)), cache.get(kdf(1))]);
    await cache.get(kdf(1));
    expect(derived).toHaveLength(1);
  });

  it('hands out copies, so zeroing one does not spoil the cached key', async () => {
    const { derive } = countingDerive();
    const cache = createKeyCache(Buffer.from('material'), derive);
    const first = await cache.get(kdf(1));
    first.fill(0);
    expect((await cache.get(kdf(1))).equals(Buffer.alloc(32, 2))).toBe(true);
  });

  it('derives again for a new salt and zeroes the replaced key', async () => {
    const { derive, derived } = countingDerive();
    const cache = createKeyCache(Buffer.from('material'), derive);
    await cache.get(kdf(1));
    await cache.get(kdf(2));
    await Promise.resolve();
    expect(derived).toHaveLength(2);
    expect(derived[0]!.every((byte) => byte === 0)).toBe(true);
  });

  it('zeroes the material and the key on close, then refuses with DSO_VAULT_CLOSED', async () => {
    const { derive, derived } = countingDerive();
    let seenMaterial: Uint8Array | undefined;
    const cache = createKeyCache(Buffer.from('material'), async (material, params) => {
      seenMaterial = material;
      return derive(material, params);
    });
    await cache.get(kdf(1));
    cache.close();
    await Promise.resolve();
    expect(seenMaterial!.every((byte) => byte === 0)).toBe(true);
    expect(derived[0]!.every((byte) => byte === 0)).toBe(true);
    const error = await cache.get(kdf(1)).catch((caught: unknown) => caught);
    expect(isVaultError(error) && error.code).toBe('DSO_VAULT_CLOSED');
  });

  it('does not keep a failed derivation: the next request derives again', async () => {
    let calls = 0;
    const cache = createKeyCache(Buffer.from('material'), async () => {
      calls++;
      if (calls === 1) throw new Error('out of memory');
      return Buffer.alloc(32, 7);
    });
    await expect(cache.get(kdf(1))).rejects.toThrow('out of memory');
    expect((await cache.get(kdf(1))).equals(Buffer.alloc(32, 7))).toBe(true);
    expect(calls).toBe(2);
  });

  it('copies the material, so the caller may zero its own', async () => {
    const material = Buffer.from('material');
    let seen = '';
    const cache = createKeyCache(material, async (copy) => {
      seen = Buffer.from(copy).toString();
      return Buffer.alloc(32);
    });
    material.fill(0);
    await cache.get(kdf(1));
    expect(seen).toBe('material');
  });
});
