import { randomBytes } from 'node:crypto';
import { SecretValue } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { deriveCacheKeys, hashName, openSealed, SealError, seal } from './crypto.js';

const CANARY = 'canary-0d4f2b9a-sealed';
const aad = (text: string) => Buffer.from(text, 'utf8');

describe('seal and openSealed', () => {
  const keys = deriveCacheKeys(randomBytes(32));

  it('round-trips arbitrary bytes, the empty value included', () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, index) => index);
    expect([...openSealed(keys, seal(keys, bytes, aad('k')), aad('k'))]).toEqual([...bytes]);
    expect(openSealed(keys, seal(keys, new Uint8Array(), aad('k')), aad('k')).byteLength).toBe(0);
  });

  it('holds neither the plaintext nor its hex or base64 in the sealed blob', () => {
    const sealed = seal(keys, Buffer.from(CANARY), aad('k')).toString('latin1');
    const bytes = Buffer.from(CANARY);
    for (const form of [CANARY, bytes.toString('hex'), bytes.toString('base64')]) {
      expect(sealed).not.toContain(form);
    }
  });

  it('uses a fresh IV each time, so equal values seal differently', () => {
    const value = Buffer.from(CANARY);
    expect(seal(keys, value, aad('k')).equals(seal(keys, value, aad('k')))).toBe(false);
  });

  it('fails with SealError under another key', () => {
    const sealed = seal(keys, Buffer.from(CANARY), aad('k'));
    const other = deriveCacheKeys(randomBytes(32));
    expect(() => openSealed(other, sealed, aad('k'))).toThrow(SealError);
  });

  it('fails with SealError when opened with other additional data (moved to another key)', () => {
    const sealed = seal(keys, Buffer.from(CANARY), aad('vault:app/db@'));
    expect(() => openSealed(keys, sealed, aad('vault:app/other@'))).toThrow(SealError);
  });

  it('fails with SealError when any byte was altered, and on short or unknown blobs', () => {
    const sealed = seal(keys, Buffer.from(CANARY), aad('k'));
    for (let index = 1; index < sealed.length; index += 7) {
      const altered = Buffer.from(sealed);
      altered[index]! ^= 0x80;
      expect(() => openSealed(keys, altered, aad('k'))).toThrow(SealError);
    }
    expect(() => openSealed(keys, sealed.subarray(0, 20), aad('k'))).toThrow(SealError);
    const future = Buffer.from(sealed);
    future[0] = 2;
    expect(() => openSealed(keys, future, aad('k'))).toThrow(/unknown format/);
  });

  it('never puts the plaintext in a SealError', () => {
    const sealed = seal(keys, Buffer.from(CANARY), aad('k'));
    sealed[sealed.length - 1]! ^= 1;
    try {
      openSealed(keys, sealed, aad('k'));
      expect.unreachable();
    } catch (error) {
      expect(String((error as Error).stack)).not.toContain(CANARY);
    }
  });
});

describe('deriveCacheKeys', () => {
  it('accepts 32 bytes as a Buffer, a Uint8Array or a SecretValue, alike', () => {
    const raw = randomBytes(32);
    const fromBuffer = deriveCacheKeys(raw);
    const fromArray = deriveCacheKeys(new Uint8Array(raw));
    const fromSecret = deriveCacheKeys(SecretValue.fromBytes(raw));
    expect(fromArray.valueKey.equals(fromBuffer.valueKey)).toBe(true);
    expect(fromSecret.nameKey.equals(fromBuffer.nameKey)).toBe(true);
  });

  it('derives two different subkeys, neither equal to the key', () => {
    const raw = randomBytes(32);
    const { valueKey, nameKey } = deriveCacheKeys(raw);
    expect(valueKey.equals(nameKey)).toBe(false);
    expect(valueKey.equals(raw)).toBe(false);
    expect(nameKey.equals(raw)).toBe(false);
  });

  it('rejects a key that is not 32 bytes', () => {
    for (const bad of [randomBytes(16), randomBytes(33), 'x'.repeat(32), undefined]) {
      expect(() => deriveCacheKeys(bad as unknown as Uint8Array)).toThrow(TypeError);
    }
  });
});

describe('hashName', () => {
  it('is stable for one key, and differs across keys, texts and domains', () => {
    const keys = deriveCacheKeys(randomBytes(32));
    const other = deriveCacheKeys(randomBytes(32));
    const name = hashName(keys, 'key', 'vault:app/db@');
    expect(name).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(hashName(keys, 'key', 'vault:app/db@')).toBe(name);
    expect(hashName(other, 'key', 'vault:app/db@')).not.toBe(name);
    expect(hashName(keys, 'key', 'vault:app/db2@')).not.toBe(name);
    expect(hashName(keys, 'prefix', 'vault:app/db@')).not.toBe(name);
  });
});
