import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { createRedisCache, type RedisCacheOptions } from './redis-cache.js';

// Every option is checked before a connection is made: these tests open no socket.
describe('createRedisCache options', () => {
  const encryptionKey = randomBytes(32);
  const make = (options: Partial<RedisCacheOptions>) => () =>
    createRedisCache({ encryptionKey, ...options } as RedisCacheOptions);

  it('refuses a URL that is not redis:// or rediss://, without echoing it', () => {
    for (const url of ['http://user:hunter2-canary@127.0.0.1', '127.0.0.1:6379', '']) {
      expect(make({ url })).toThrow(TypeError);
      try {
        make({ url })();
      } catch (error) {
        expect((error as Error).message).not.toContain('hunter2-canary');
      }
    }
  });

  it('refuses an encryption key that is not 32 bytes, or none', () => {
    expect(make({ encryptionKey: randomBytes(16) })).toThrow(TypeError);
    expect(make({ encryptionKey: undefined })).toThrow(/loadCacheEncryptionKey/);
  });

  it('refuses an empty or overlong keyPrefix', () => {
    expect(make({ keyPrefix: '' })).toThrow(TypeError);
    expect(make({ keyPrefix: 'x'.repeat(129) })).toThrow(TypeError);
  });

  it('refuses durations and bounds out of range', () => {
    for (const options of [
      { ttlMs: -1 },
      { staleIfErrorMs: Number.NaN },
      { negativeTtlMs: Number.POSITIVE_INFINITY },
      { maxBytes: 0 },
      { maxBytes: 1.5 },
      { leaseMs: 10 },
      { commandTimeoutMs: 0 },
      { connectTimeoutMs: -5 },
    ]) {
      expect(make(options)).toThrow(RangeError);
    }
  });
});
