import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDsoError } from '@dso/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  CACHE_KEY_ENV,
  CACHE_KEY_FILE_ENV,
  generateCacheKeyFile,
  loadCacheEncryptionKey,
  parseCacheKey,
  readCacheKeyFile,
} from './encryption-key.js';

const RAW = randomBytes(32);
const HEX = RAW.toString('hex');
/** Key-shaped, but one hex digit short: what a typo'd key looks like. Must never be echoed. */
const CANARY_KEY = `${'c0ffee'.repeat(10)}abc`;

async function codeOf(promise: Promise<unknown> | (() => unknown)): Promise<string | undefined> {
  try {
    await (typeof promise === 'function' ? promise() : promise);
  } catch (error) {
    expect(isDsoError(error)).toBe(true);
    const surface = `${(error as Error).message} ${(error as Error).stack} ${JSON.stringify(
      isDsoError(error) ? error.details : {},
    )}`;
    expect(surface).not.toContain(CANARY_KEY);
    expect(surface).not.toContain(HEX);
    return (error as { code?: string }).code;
  }
  throw new Error('expected a rejection');
}

describe('parseCacheKey', () => {
  it('reads 64 hex digits, upper or lower case, ignoring surrounding whitespace', () => {
    expect(parseCacheKey(HEX).reveal().equals(RAW)).toBe(true);
    expect(parseCacheKey(` ${HEX.toUpperCase()}\n`).reveal().equals(RAW)).toBe(true);
  });

  it('reads base64 and base64url of 32 bytes, with or without padding', () => {
    for (const text of [
      RAW.toString('base64'),
      RAW.toString('base64url'),
      RAW.toString('base64').replace(/=$/, ''),
    ]) {
      expect(parseCacheKey(text).reveal().equals(RAW)).toBe(true);
    }
  });

  it('rejects anything else with DSO_CACHE_KEY_INVALID, never quoting it', async () => {
    for (const bad of [
      CANARY_KEY,
      '',
      'short',
      randomBytes(16).toString('base64'),
      randomBytes(33).toString('base64'),
      `${HEX}00`,
    ]) {
      expect(await codeOf(() => parseCacheKey(bad, 'env DSO_CACHE_KEY'))).toBe(
        'DSO_CACHE_KEY_INVALID',
      );
    }
  });
});

describe('loadCacheEncryptionKey and key files', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'dso-cache-key-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  async function keyFile(content: string, mode = 0o600, name = 'cache.key') {
    const path = join(dir, name);
    await writeFile(path, content, { mode });
    await chmod(path, mode);
    return path;
  }

  it('takes the key from DSO_CACHE_KEY first', async () => {
    const path = await keyFile(randomBytes(32).toString('hex'));
    const loaded = await loadCacheEncryptionKey({ env: { [CACHE_KEY_ENV]: HEX }, keyFile: path });
    expect(loaded.source).toBe('env DSO_CACHE_KEY');
    expect(loaded.key.reveal().equals(RAW)).toBe(true);
    expect(`${loaded.key}`).toBe('[REDACTED]');
  });

  it('reads the file named by DSO_CACHE_KEY_FILE before the keyFile option', async () => {
    const named = await keyFile(`${HEX}\n`, 0o600, 'named.key');
    const fallback = await keyFile(randomBytes(32).toString('hex'), 0o600, 'fallback.key');
    const loaded = await loadCacheEncryptionKey({
      env: { [CACHE_KEY_FILE_ENV]: named },
      keyFile: fallback,
    });
    expect(loaded.source).toBe(`key file ${named}`);
    expect(loaded.key.reveal().equals(RAW)).toBe(true);
  });

  it('reads the keyFile option when no variable is set', async () => {
    const path = await keyFile(RAW.toString('base64'));
    const loaded = await loadCacheEncryptionKey({ env: {}, keyFile: path });
    expect(loaded.key.reveal().equals(RAW)).toBe(true);
  });

  it('says how to make a key when there is none', async () => {
    const error = loadCacheEncryptionKey({ env: {} });
    await expect(error).rejects.toThrow(/DSO_CACHE_KEY.*openssl rand -hex 32/);
    expect(await codeOf(loadCacheEncryptionKey({ env: {} }))).toBe('DSO_CACHE_KEY_MISSING');
  });

  it('refuses both variables at once with DSO_CACHE_KEY_CONFLICT', async () => {
    const env = { [CACHE_KEY_ENV]: HEX, [CACHE_KEY_FILE_ENV]: join(dir, 'x.key') };
    expect(await codeOf(loadCacheEncryptionKey({ env }))).toBe('DSO_CACHE_KEY_CONFLICT');
  });

  it('rejects an invalid DSO_CACHE_KEY without quoting it', async () => {
    const env = { [CACHE_KEY_ENV]: CANARY_KEY };
    expect(await codeOf(loadCacheEncryptionKey({ env }))).toBe('DSO_CACHE_KEY_INVALID');
  });

  it('rejects a key file others may read with DSO_CACHE_KEY_PERMISSIONS and the fix', async () => {
    const path = await keyFile(HEX, 0o644);
    expect(await codeOf(readCacheKeyFile(path))).toBe('DSO_CACHE_KEY_PERMISSIONS');
    await expect(readCacheKeyFile(path)).rejects.toThrow(`chmod 600 ${path}`);
    await chmod(path, 0o640);
    expect(await codeOf(readCacheKeyFile(path))).toBe('DSO_CACHE_KEY_PERMISSIONS');
  });

  it('rejects a missing file, a directory, a huge file and a file holding no key', async () => {
    expect(await codeOf(readCacheKeyFile(join(dir, 'absent.key')))).toBe('DSO_CACHE_KEY_MISSING');
    const sub = join(dir, 'sub');
    await mkdir(sub, { mode: 0o700 });
    expect(await codeOf(readCacheKeyFile(sub))).toBe('DSO_CACHE_KEY_INVALID');
    const huge = await keyFile('a'.repeat(5_000), 0o600, 'huge.key');
    expect(await codeOf(readCacheKeyFile(huge))).toBe('DSO_CACHE_KEY_INVALID');
    const wrong = await keyFile(CANARY_KEY, 0o600, 'wrong.key');
    expect(await codeOf(readCacheKeyFile(wrong))).toBe('DSO_CACHE_KEY_INVALID');
  });

  it('generates a 0600 key file that reads back as the key it returned', async () => {
    const path = join(dir, 'new.key');
    const generated = await generateCacheKeyFile(path);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect((await readFile(path, 'utf8')).trim()).toMatch(/^[0-9a-f]{64}$/);
    const read = await readCacheKeyFile(path);
    expect(read.key.reveal().equals(generated.key.reveal())).toBe(true);
    expect(await readdir(dir)).toEqual(['new.key']);
  });

  it('never overwrites a key file, and reports a directory it cannot write to', async () => {
    const path = await keyFile(HEX);
    expect(await codeOf(generateCacheKeyFile(path))).toBe('DSO_CACHE_KEY_EXISTS');
    expect((await readFile(path, 'utf8')).trim()).toBe(HEX);
    expect(await readdir(dir)).toEqual(['cache.key']);
    expect(await codeOf(generateCacheKeyFile(join(dir, 'no', 'such.key')))).toBe(
      'DSO_CACHE_KEY_IO',
    );
  });
});
