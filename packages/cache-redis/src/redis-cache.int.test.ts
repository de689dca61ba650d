import { connect, createServer, type Server, type Socket } from 'node:net';
import { type CacheLoader, cacheKey, isDsoError, type LoadedSecret } from '@dso/core';
import { ProviderError, SecretValue } from '@dso/provider-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { deriveCacheKeys } from './crypto.js';
import { createKeyNamer } from './key-names.js';
import { createRedisCache, type RedisCache, type RedisCacheOptions } from './redis-cache.js';
import {
  createCapturingLogger,
  createTestNamespace,
  TEST_REDIS_URL,
  testKey,
} from './test-support/redis.js';

const namespace = createTestNamespace();
const { admin } = namespace;
afterAll(() => namespace.dispose());

const CANARY = 'canary-5b1e0c7d-never-in-redis';
const CANARY_PATH = 'team-canary/db-password-path';

const open: RedisCache[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((cache) => cache.close()));
});

function cacheWith(options: Partial<RedisCacheOptions> = {}): RedisCache {
  const cache = createRedisCache({
    url: TEST_REDIS_URL,
    keyPrefix: namespace.prefix(),
    encryptionKey: testKey(),
    ...options,
  });
  open.push(cache);
  return cache;
}

const secret = (value: string, version = '1', provider = 'vault'): LoadedSecret => ({
  value: SecretValue.fromText(value),
  version,
  provider,
});

/** A promise and the functions that settle it. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((yes, no) => {
    resolve = yes;
    reject = no;
  });
  return { promise, resolve, reject };
}

async function rejectionOf(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

/** Everything an error exposes that could carry a value by accident. */
function surfaceOf(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const details = isDsoError(error) ? JSON.stringify(error.details) : '';
  const cause = error.cause instanceof Error ? `${error.cause.message}\n${error.cause.stack}` : '';
  return [error.message, String(error), error.stack ?? '', details, cause].join('\n');
}

/** Every byte Redis holds under `prefix`: key names, and each key's fields, members and values. */
async function dumpRedis(prefix: string): Promise<{ names: string[]; bytes: Buffer }> {
  const names = await namespace.keys(prefix);
  const parts: Buffer[] = [];
  for (const name of names) {
    parts.push(Buffer.from(name));
    const type = await admin.type(name);
    if (type === 'hash') parts.push(...Object.values(await admin.hgetallBuffer(name)));
    else if (type === 'zset') parts.push(...(await admin.zrangeBuffer(name, 0, -1)));
    else if (type === 'string') parts.push((await admin.getBuffer(name)) ?? Buffer.alloc(0));
    else throw new Error(`unexpected ${type} key in the cache's namespace`);
  }
  return { names, bytes: Buffer.concat(parts) };
}

/** The forms a text could take in stored bytes: itself, base64, base64url, hex. */
function encodingsOf(text: string): string[] {
  const bytes = Buffer.from(text, 'utf8');
  return [
    text,
    bytes.toString('base64'),
    bytes.toString('base64url'),
    bytes.toString('hex'),
    bytes.toString('hex').toUpperCase(),
  ];
}

describe('redis cache across agents', () => {
  it('makes 50 concurrent getOrLoad calls on two agents cost exactly one loader call', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const agents = [
      cacheWith({ keyPrefix, encryptionKey }),
      cacheWith({ keyPrefix, encryptionKey }),
    ];
    let calls = 0;
    const loader: CacheLoader = async () => {
      calls++;
      // The lease is held until the other agent has found it taken (not the value stored).
      await expect
        .poll(() => agents[0]!.stats().leaseWaits + agents[1]!.stats().leaseWaits, {
          timeout: 5_000,
          message: 'the other agent to wait on the lease',
        })
        .toBe(1);
      return secret('shared', '7');
    };
    const key = cacheKey('vault', 'app/db');
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, index) => agents[index % 2]!.getOrLoad(key, loader)),
    );
    expect(calls).toBe(1);
    expect(results.every((result) => result.value.revealText() === 'shared')).toBe(true);
    expect(results.every((result) => result.version === '7' && !result.stale)).toBe(true);
    const [a, b] = agents.map((agent) => agent.stats());
    expect(a!.loads + b!.loads).toBe(1);
    expect(a!.leaseWaits + b!.leaseWaits).toBe(1);
    expect(a!.fallbackLoads + b!.fallbackLoads).toBe(0);
  });

  it('loads once the lease of a holder that vanished has expired', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const cache = cacheWith({ keyPrefix, encryptionKey });
    const key = cacheKey('vault', 'app/db');
    // A holder that took the lease and died: nobody releases it, Redis expires it.
    const { lease } = createKeyNamer(keyPrefix, deriveCacheKeys(encryptionKey)).names(key);
    await admin.set(lease, 'dead-holder', 'PX', 300);
    const started = performance.now();
    const result = await cache.getOrLoad(key, async () => secret('after the lease'));
    expect(result.value.revealText()).toBe('after the lease');
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    expect(cache.stats()).toMatchObject({ loads: 1, leaseWaits: 1, fallbackLoads: 0 });
    // It loaded with the lease, so it stored: the next call is a hit.
    expect((await cache.get(key))?.value.revealText()).toBe('after the lease');
  });

  it('loads itself, without storing, when a live holder keeps the lease past leaseMs', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const cache = cacheWith({ keyPrefix, encryptionKey, leaseMs: 300 });
    const key = cacheKey('vault', 'app/db');
    const { lease } = createKeyNamer(keyPrefix, deriveCacheKeys(encryptionKey)).names(key);
    await admin.set(lease, 'slow-holder', 'PX', 60_000);
    const result = await cache.getOrLoad(key, async () => secret('mine'));
    expect(result.value.revealText()).toBe('mine');
    expect(cache.stats()).toMatchObject({ loads: 1, leaseWaits: 1, fallbackLoads: 1 });
    expect(await cache.get(key)).toBeUndefined();
    expect(await admin.get(lease)).toBe('slow-holder');
  });

  it('rejects a caller waiting on another agent whose signal aborts, with its reason', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const [holder, waiter] = [
      cacheWith({ keyPrefix, encryptionKey }),
      cacheWith({ keyPrefix, encryptionKey }),
    ];
    const gate = deferred<LoadedSecret>();
    let calls = 0;
    const loader: CacheLoader = () => {
      calls++;
      return gate.promise;
    };
    const held = holder.getOrLoad('k', loader);
    await expect.poll(() => calls, { timeout: 5_000, message: 'the holder to load' }).toBe(1);
    const controller = new AbortController();
    const waiting = waiter.getOrLoad('k', loader, { signal: controller.signal });
    await expect
      .poll(() => waiter.stats().leaseWaits, { timeout: 5_000, message: 'the waiter to wait' })
      .toBe(1);
    const reason = new Error('caller gave up');
    controller.abort(reason);
    await expect(waiting).rejects.toBe(reason);
    gate.resolve(secret('v'));
    expect((await held).value.revealText()).toBe('v');
    expect(calls).toBe(1);
  });

  it('does not store a load in flight on one agent across a delete on another', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const [loading, deleting] = [
      cacheWith({ keyPrefix, encryptionKey }),
      cacheWith({ keyPrefix, encryptionKey }),
    ];
    const gate = deferred<LoadedSecret>();
    let calls = 0;
    const pending = loading.getOrLoad('k', () => {
      calls++;
      return gate.promise;
    });
    await expect.poll(() => calls, { timeout: 5_000, message: 'the load to start' }).toBe(1);
    await deleting.delete('k');
    gate.resolve(secret('from before the delete'));
    expect((await pending).value.revealText()).toBe('from before the delete');
    expect(await loading.get('k')).toBeUndefined();
    expect(await deleting.get('k')).toBeUndefined();
  });

  it('shares a remembered not-found between agents', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const [first, second] = [
      cacheWith({ keyPrefix, encryptionKey }),
      cacheWith({ keyPrefix, encryptionKey }),
    ];
    const missing = () =>
      Promise.reject(
        new ProviderError('DSO_PROVIDER_NOT_FOUND', 'no secret at app/gone', {
          provider: 'vault',
          path: 'app/gone',
        }),
      );
    await rejectionOf(first.getOrLoad(cacheKey('vault', 'app/gone'), missing));
    let calls = 0;
    const error = await rejectionOf(
      second.getOrLoad(cacheKey('vault', 'app/gone'), () => {
        calls++;
        return missing();
      }),
    );
    expect(calls).toBe(0);
    expect(error).toMatchObject({
      code: 'DSO_PROVIDER_NOT_FOUND',
      provider: 'vault',
      path: 'app/gone',
      message: 'no secret at app/gone',
    });
    expect(second.stats().negativeHits).toBe(1);
  });

  it('invalidates by provider and path prefix, and by any other prefix, across agents', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const [writer, invalidator] = [
      cacheWith({ keyPrefix, encryptionKey }),
      cacheWith({ keyPrefix, encryptionKey }),
    ];
    await writer.set(cacheKey('vault', 'app/db', '1'), secret('1'));
    await writer.set(cacheKey('vault', 'app/db'), secret('2'));
    await writer.set(cacheKey('vault', 'app/dbx'), secret('3'));
    await writer.set(cacheKey('aws', 'app/db'), secret('4'));
    expect(await invalidator.invalidatePrefix('vault:app/db@')).toBe(2);
    expect(await invalidator.invalidatePrefix('vault:app/d')).toBe(1);
    expect(await writer.get(cacheKey('aws', 'app/db'))).toBeDefined();
    expect(await invalidator.invalidatePrefix('')).toBe(1);
    expect(await writer.get(cacheKey('aws', 'app/db'))).toBeUndefined();
  });

  it('clears only its own names, leaving a longer prefix that shares its start alone', async () => {
    const encryptionKey = testKey();
    const outer = namespace.prefix();
    const cache = cacheWith({ keyPrefix: outer, encryptionKey });
    const nested = cacheWith({ keyPrefix: `${outer}nested:`, encryptionKey });
    await cache.set('k', secret('outer'));
    await nested.set('k', secret('nested'));
    await cache.clear();
    expect(await cache.get('k')).toBeUndefined();
    expect((await nested.get('k'))?.value.revealText()).toBe('nested');
  });
});

describe('bounds', () => {
  it('hands out but never stores a value larger than maxBytes, and drops the old one', async () => {
    const cache = cacheWith({ maxBytes: 8 });
    await cache.set('k', secret('small'));
    await cache.set('k', secret('sixteen bytes!!!'));
    expect(await cache.get('k')).toBeUndefined();
    let calls = 0;
    const loader: CacheLoader = async () => {
      calls++;
      return secret('sixteen bytes!!!');
    };
    expect((await cache.getOrLoad('big', loader)).value.revealText()).toBe('sixteen bytes!!!');
    await cache.getOrLoad('big', loader);
    expect(calls).toBe(2);
    expect(cache.stats().oversized).toBe(3);
  });
});

describe('what Redis sees', () => {
  it('holds no value and no secret path, in any encoding, under any key it wrote', async () => {
    const { logger, lines } = createCapturingLogger();
    const keyPrefix = namespace.prefix();
    const cache = cacheWith({ keyPrefix, logger });
    const key = cacheKey('vault', CANARY_PATH, '3');
    await cache.set(key, secret(CANARY, '3'));
    await cache.getOrLoad(cacheKey('vault', CANARY_PATH), async () => secret(CANARY, '4'));
    await rejectionOf(
      cache.getOrLoad(cacheKey('vault', `${CANARY_PATH}-gone`), () =>
        Promise.reject(
          new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${CANARY_PATH}-gone`, {
            provider: 'vault',
            path: `${CANARY_PATH}-gone`,
          }),
        ),
      ),
    );
    expect((await cache.get(key))?.value.revealText()).toBe(CANARY);

    const { names, bytes } = await dumpRedis(keyPrefix);
    // 3 entries, `all`, 1 provider index, 2 path indexes (two versions share one path).
    expect(names.length).toBe(7);
    const stored = bytes.toString('latin1');
    for (const form of [...encodingsOf(CANARY), ...encodingsOf(CANARY_PATH)]) {
      expect(stored).not.toContain(form);
    }
    for (const name of names) {
      expect(name).toMatch(/^[^ ]+:(?:e|i):[A-Za-z0-9_-]{43}$|^[^ ]+:all$/);
      expect(name).not.toContain('vault');
      expect(name).not.toContain('team-canary');
    }
    expect(lines.join('')).not.toContain(CANARY);
  });

  it('lets Redis drop an entry itself once its stale window has passed', async () => {
    const keyPrefix = namespace.prefix();
    const cache = cacheWith({ keyPrefix, ttlMs: 1_000, staleIfErrorMs: 2_000 });
    await cache.set('k', secret('v'));
    const [entry] = (await namespace.keys(keyPrefix)).filter((name) => name.includes(':e:'));
    const pttl = await admin.pttl(entry!);
    expect(pttl).toBeGreaterThan(2_500);
    expect(pttl).toBeLessThanOrEqual(3_000);
  });
});

describe('an entry that fails authentication', () => {
  async function entryName(keyPrefix: string, encryptionKey: Buffer, key: string) {
    return createKeyNamer(keyPrefix, deriveCacheKeys(encryptionKey)).names(key).entry;
  }

  it('is a miss when its ciphertext was altered: dropped, counted and logged with a code', async () => {
    const { logger, lines } = createCapturingLogger();
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const cache = cacheWith({ keyPrefix, encryptionKey, logger });
    await cache.set('k', secret(CANARY));
    const entry = await entryName(keyPrefix, encryptionKey, 'k');
    const sealed = (await admin.hgetBuffer(entry, 'c'))!;
    sealed[sealed.length - 1]! ^= 0x01;
    await admin.hset(entry, 'c', sealed);

    expect(await cache.get('k')).toBeUndefined();
    expect(cache.stats().decryptFailures).toBe(1);
    await expect
      .poll(() => admin.exists(entry), { timeout: 5_000, message: 'the entry to be dropped' })
      .toBe(0);
    const logged = lines.map((line) => JSON.parse(line));
    expect(logged).toContainEqual(
      expect.objectContaining({ code: 'DSO_CACHE_ENTRY_UNREADABLE', key: 'k' }),
    );
    expect(lines.join('')).not.toContain(CANARY);

    let calls = 0;
    const reloaded = await cache.getOrLoad('k', async () => {
      calls++;
      return secret('reloaded');
    });
    expect(reloaded.value.revealText()).toBe('reloaded');
    expect(calls).toBe(1);
  });

  it('is a miss when a whole entry was copied to another key (the key is authenticated)', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const cache = cacheWith({ keyPrefix, encryptionKey });
    await cache.set('a', secret('for a', '1', 'p'));
    await cache.set('b', secret('for b', '1', 'p'));
    const [a, b] = await Promise.all([
      entryName(keyPrefix, encryptionKey, 'a'),
      entryName(keyPrefix, encryptionKey, 'b'),
    ]);
    await admin.hset(b, await admin.hgetallBuffer(a));
    expect(await cache.get('b')).toBeUndefined();
    expect(cache.stats().decryptFailures).toBe(1);
    expect((await cache.get('a'))?.value.revealText()).toBe('for a');
  });

  it('is a miss when its clear fields were altered (a later expiry, another version)', async () => {
    const keyPrefix = namespace.prefix();
    const encryptionKey = testKey();
    const cache = cacheWith({ keyPrefix, encryptionKey });
    await cache.set('k', secret('v', '1'));
    const entry = await entryName(keyPrefix, encryptionKey, 'k');
    await admin.hset(entry, 'ver', '2');
    expect(await cache.get('k')).toBeUndefined();
    await cache.set('k', secret('v', '1'));
    const expiresAt = Number(await admin.hget(entry, 'ea'));
    await admin.hset(entry, 'ea', String(expiresAt + 3_600_000));
    expect(await cache.get('k')).toBeUndefined();
    expect(cache.stats().decryptFailures).toBe(2);
  });

  it('is simply absent for an agent with another key: its names differ', async () => {
    const keyPrefix = namespace.prefix();
    const writer = cacheWith({ keyPrefix });
    const other = cacheWith({ keyPrefix });
    await writer.set('k', secret('v'));
    expect(await other.get('k')).toBeUndefined();
    expect(other.stats().decryptFailures).toBe(0);
  });
});

describe('when Redis fails', () => {
  let hangingServer: Server | undefined;
  const sockets = new Set<Socket>();
  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) =>
      hangingServer ? hangingServer.close(() => resolve()) : resolve(),
    );
  });

  it('still loads, once per call, when nothing listens (logged once, counted, no value in errors)', async () => {
    const { logger, lines } = createCapturingLogger();
    const cache = cacheWith({
      url: 'redis://:a-password@127.0.0.1:1',
      connectTimeoutMs: 500,
      commandTimeoutMs: 500,
      logger,
    });
    let calls = 0;
    const loader: CacheLoader = async () => {
      calls++;
      return secret(CANARY);
    };
    for (let round = 0; round < 3; round++) {
      const started = performance.now();
      const result = await cache.getOrLoad('k', loader);
      expect(result.value.revealText()).toBe(CANARY);
      expect(performance.now() - started).toBeLessThan(900);
    }
    expect(calls).toBe(3);
    // Concurrent callers still share one load within the process.
    const together = await Promise.all(
      Array.from({ length: 20 }, () => cache.getOrLoad('k', loader)),
    );
    expect(together.every((result) => result.value.revealText() === CANARY)).toBe(true);
    expect(calls).toBe(4);
    expect(await cache.get('k')).toBeUndefined();

    const errors = [
      await rejectionOf(cache.set('k', secret(CANARY))),
      await rejectionOf(cache.delete('k')),
      await rejectionOf(cache.invalidatePrefix('k')),
      await rejectionOf(cache.clear()),
    ];
    for (const error of errors) {
      expect(isDsoError(error) && error.code).toBe('DSO_CACHE_REDIS_UNAVAILABLE');
      expect(surfaceOf(error)).not.toContain(CANARY);
      expect(surfaceOf(error)).not.toContain('a-password');
    }
    const stats = cache.stats();
    expect(stats.fallbackLoads).toBe(4);
    expect(stats.redisErrors).toBeGreaterThanOrEqual(1);
    const warnings = lines.filter((line) => line.includes('redis cache unavailable'));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('DSO_CACHE_REDIS_UNAVAILABLE');
    expect(lines.join('')).not.toContain(CANARY);
    expect(lines.join('')).not.toContain('a-password');
  });

  it('never waits past commandTimeoutMs on a server that accepts and never answers', async () => {
    hangingServer = createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => {});
    });
    await new Promise<void>((resolve) => hangingServer!.listen(0, '127.0.0.1', resolve));
    const address = hangingServer.address();
    if (address === null || typeof address === 'string') throw new Error('no port');
    const cache = cacheWith({
      url: `redis://127.0.0.1:${address.port}`,
      connectTimeoutMs: 300,
      commandTimeoutMs: 300,
    });
    for (let round = 0; round < 2; round++) {
      const started = performance.now();
      const result = await cache.getOrLoad('k', async () => secret('loaded'));
      expect(result.value.revealText()).toBe('loaded');
      expect(performance.now() - started).toBeLessThan(700);
    }
    const started = performance.now();
    expect(await cache.get('k')).toBeUndefined();
    expect(performance.now() - started).toBeLessThan(700);
  });

  it('goes back to sharing once Redis answers again, and says so', async () => {
    const proxy = await createProxy();
    const { logger, lines } = createCapturingLogger();
    const cache = cacheWith({ url: `redis://127.0.0.1:${proxy.port}`, logger });
    try {
      await cache.set('k', secret('before'));
      expect((await cache.get('k'))?.value.revealText()).toBe('before');
      await proxy.cut();
      const during = await cache.getOrLoad('other', async () => secret('direct'));
      expect(during.value.revealText()).toBe('direct');
      expect(lines.filter((line) => line.includes('redis cache unavailable'))).toHaveLength(1);
      await proxy.resume();
      await expect
        .poll(async () => (await cache.get('k'))?.value.revealText(), {
          timeout: 5_000,
          message: 'the cache to answer from Redis again',
        })
        .toBe('before');
      expect(lines.filter((line) => line.includes('redis cache available again'))).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });
});

/** A TCP relay on loopback to the test Redis that a test can cut and restore, as an outage. */
async function createProxy() {
  const upstreamPort = Number(new URL(TEST_REDIS_URL).port);
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(upstreamPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('error', () => socket.destroy());
      socket.on('close', () => sockets.delete(socket));
    }
    client.pipe(upstream).pipe(client);
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const stop = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      if (server.listening) server.close(() => resolve());
      else resolve();
    });
  return {
    port: address.port,
    cut: stop,
    resume: () => new Promise<void>((resolve) => server.listen(address.port, '127.0.0.1', resolve)),
    close: stop,
  };
}
