import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { isSecretValue, SecretValue } from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireFileLock } from './file-lock.js';
import { type InitVaultOptions, initVault, openVault, type Vault } from './vault.js';
import { isVaultError, type VaultError } from './vault-error.js';
import { vaultKeyFromPassphrase } from './vault-key.js';

// A low scrypt cost keeps these tests fast; one test below uses the default parameters.
const FAST = { log2N: 10 };
const key = vaultKeyFromPassphrase('correct horse battery staple', 'test passphrase');
const otherKey = vaultKeyFromPassphrase('Tr0ub4dor&3', 'other passphrase');

let dir: string;
let vaultPath: string;
const opened: Vault[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-vault-'));
  vaultPath = join(dir, 'vault.dso');
});

afterEach(async () => {
  for (const vault of opened.splice(0)) await vault.close();
  await rm(dir, { recursive: true, force: true });
});

async function init(options: Partial<InitVaultOptions> = {}): Promise<Vault> {
  const vault = await initVault({ path: vaultPath, key, kdf: FAST, ...options });
  opened.push(vault);
  return vault;
}

async function reopen(options: { key?: typeof key; maxVersions?: number } = {}): Promise<Vault> {
  const vault = await openVault({ path: vaultPath, key, ...options });
  opened.push(vault);
  return vault;
}

async function sha256(path: string): Promise<string> {
  return createHash('sha256')
    .update(await readFile(path))
    .digest('hex');
}

async function vaultError(promise: Promise<unknown>): Promise<VaultError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isVaultError(error)) throw new Error(`expected a VaultError, got ${inspect(error)}`);
  return error;
}

async function damage(change: (file: Buffer) => Buffer): Promise<string> {
  await writeFile(vaultPath, change(await readFile(vaultPath)), { mode: 0o600 });
  return sha256(vaultPath);
}

const text = (value: string) => SecretValue.fromText(value);

describe('initVault', () => {
  it('creates an empty vault file with mode 0600 and nothing else beside it', async () => {
    const vault = await init();
    expect(await vault.list()).toEqual([]);
    expect((await stat(vaultPath)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['vault.dso']);
    expect((await readFile(vaultPath)).subarray(0, 8).toString()).toBe('DSOVAULT');
  });

  it('refuses an existing file with DSO_VAULT_EXISTS and leaves it byte for byte', async () => {
    await init();
    const before = await sha256(vaultPath);
    const error = await vaultError(initVault({ path: vaultPath, key: otherKey, kdf: FAST }));
    expect(error.code).toBe('DSO_VAULT_EXISTS');
    expect(await sha256(vaultPath)).toBe(before);
  });

  it('reports a missing directory as DSO_VAULT_IO and leaves no file', async () => {
    const error = await vaultError(
      initVault({ path: join(dir, 'absent', 'vault.dso'), key, kdf: FAST }),
    );
    expect(error.code).toBe('DSO_VAULT_IO');
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses scrypt parameters out of bounds', async () => {
    await expect(initVault({ path: vaultPath, key, kdf: { log2N: 4 } })).rejects.toThrow(
      RangeError,
    );
  });

  it('round-trips with the default scrypt parameters (N = 2^15, r = 8, p = 1)', async () => {
    const vault = await initVault({ path: vaultPath, key });
    opened.push(vault);
    await vault.set('app/db/password', text('s3cret'));
    const header = await readFile(vaultPath);
    expect([header[10], header[11], header[12]]).toEqual([15, 8, 1]);
    const again = await reopen();
    expect((await again.get('app/db/password')).value.revealText()).toBe('s3cret');
  });
});

describe('openVault', () => {
  it('refuses a missing file with DSO_VAULT_NOT_FOUND, saying to run dso init', async () => {
    const error = await vaultError(openVault({ path: vaultPath, key }));
    expect(error.code).toBe('DSO_VAULT_NOT_FOUND');
    expect(error.message).toContain('dso init');
  });

  it('refuses a group- or other-readable vault with DSO_VAULT_PERMISSIONS and the chmod fix', async () => {
    await init();
    await chmod(vaultPath, 0o644);
    const before = await sha256(vaultPath);
    const error = await vaultError(openVault({ path: vaultPath, key }));
    expect(error.code).toBe('DSO_VAULT_PERMISSIONS');
    expect(error.message).toContain(`chmod 600 ${vaultPath}`);
    expect(await sha256(vaultPath)).toBe(before);
  });

  it('writes through a symlink to its target, keeping the link', async () => {
    await (await init()).close();
    const link = join(dir, 'link.dso');
    await symlink(vaultPath, link);
    const vault = await openVault({ path: link, key });
    opened.push(vault);
    await vault.set('app/db', text('v'));
    expect((await stat(link)).isFile()).toBe(true);
    expect((await (await reopen()).get('app/db')).value.revealText()).toBe('v');
    expect(vault.path).toBe(vaultPath);
  });
});

describe('reading and writing secrets', () => {
  it('round-trips text and arbitrary bytes, as SecretValues', async () => {
    const vault = await init();
    const bytes = Uint8Array.from({ length: 256 }, (_, index) => index);
    expect(await vault.set('app/text', text('héllo wörld'))).toBe('1');
    expect(await vault.set('app/bytes', bytes)).toBe('1');
    const resolved = await vault.get('app/text');
    expect(isSecretValue(resolved.value)).toBe(true);
    expect(String(resolved.value)).toBe('[REDACTED]');
    expect(resolved).toMatchObject({ version: '1' });
    expect(resolved.value.revealText()).toBe('héllo wörld');
    expect(
      Buffer.from(bytes).equals((await (await reopen()).get('app/bytes')).value.reveal()),
    ).toBe(true);
  });

  it('stores a new version on each set and still reads the old one', async () => {
    let tick = 0;
    const vault = await init({ now: () => new Date(Date.UTC(2025, 0, 1, 0, 0, tick++)) });
    expect(await vault.set('app/db', text('first'))).toBe('1');
    expect(await vault.set('app/db', text('second'))).toBe('2');
    expect((await vault.get('app/db')).value.revealText()).toBe('second');
    expect((await vault.get('app/db')).version).toBe('2');
    expect((await vault.get('app/db', { version: '1' })).value.revealText()).toBe('first');
    expect(await vault.versions('app/db')).toEqual([
      { version: '1', createdAt: '2025-01-01T00:00:00.000Z' },
      { version: '2', createdAt: '2025-01-01T00:00:01.000Z' },
    ]);
  });

  it('keeps the current version when the same value is stored again, writing nothing', async () => {
    const vault = await init();
    expect(await vault.put('app/db', text('same'))).toEqual({ version: '1', created: true });
    const { statSync } = await import('node:fs');
    const before = statSync(vault.path).mtimeMs;
    expect(await vault.put('app/db', text('same'))).toEqual({ version: '1', created: false });
    expect(await vault.set('app/db', text('same'))).toBe('1');
    expect(statSync(vault.path).mtimeMs).toBe(before);
    expect((await vault.versions('app/db')).map(({ version }) => version)).toEqual(['1']);
    // A value differing only in its last byte, or in length, is a new version.
    expect(await vault.put('app/db', text('samf'))).toEqual({ version: '2', created: true });
    expect(await vault.put('app/db', text('samf2'))).toEqual({ version: '3', created: true });
    // Equal to an older version but not to the newest: a new version (a roll back is a change).
    expect(await vault.put('app/db', text('same'))).toEqual({ version: '4', created: true });
    expect(await vault.currentVersion('app/db')).toBe('4');
  });

  it('keeps at most maxVersions versions, dropping the oldest, and never reuses a number', async () => {
    const vault = await init({ maxVersions: 3 });
    for (let index = 1; index <= 5; index++) await vault.set('app/db', text(`v${index}`));
    expect((await vault.versions('app/db')).map(({ version }) => version)).toEqual(['3', '4', '5']);
    const error = await vaultError(vault.get('app/db', { version: '1' }));
    expect(error.code).toBe('DSO_VAULT_SECRET_NOT_FOUND');
    expect(error.message).toContain('versions 3..5 are kept');
    expect((await vault.get('app/db', { version: '3' })).value.revealText()).toBe('v3');
  });

  it('keeps ten versions by default', async () => {
    const vault = await init();
    for (let index = 1; index <= 12; index++) await vault.set('app/db', text(`v${index}`));
    expect(await vault.versions('app/db')).toHaveLength(10);
  });

  it('deletes every version but keeps the counter, so a later set does not reuse a version', async () => {
    const vault = await init();
    await vault.set('app/db', text('one'));
    await vault.set('app/db', text('two'));
    expect(await vault.delete('app/db')).toBe(true);
    expect(await vault.delete('app/db')).toBe(false);
    expect((await vaultError(vault.get('app/db'))).code).toBe('DSO_VAULT_SECRET_NOT_FOUND');
    expect(await vault.list()).toEqual([]);
    expect(await vault.set('app/db', text('three'))).toBe('3');
  });

  it('reports a missing path or version with DSO_VAULT_SECRET_NOT_FOUND', async () => {
    const vault = await init();
    await vault.set('app/db', text('v'));
    const missing = await vaultError(vault.get('app/other'));
    expect(missing).toMatchObject({ code: 'DSO_VAULT_SECRET_NOT_FOUND', secretPath: 'app/other' });
    for (const version of ['2', '0', 'latest']) {
      const error = await vaultError(vault.get('app/db', { version }));
      expect(error).toMatchObject({ code: 'DSO_VAULT_SECRET_NOT_FOUND', version });
    }
    expect((await vaultError(vault.versions('app/other'))).code).toBe('DSO_VAULT_SECRET_NOT_FOUND');
  });

  it('refuses malformed paths with DSO_VAULT_PATH_INVALID without touching the file', async () => {
    const vault = await init();
    const before = await sha256(vaultPath);
    for (const path of ['', '/abs', 'a/../b', 'a b']) {
      expect((await vaultError(vault.set(path, text('v')))).code).toBe('DSO_VAULT_PATH_INVALID');
      expect((await vaultError(vault.get(path))).code).toBe('DSO_VAULT_PATH_INVALID');
      expect((await vaultError(vault.delete(path))).code).toBe('DSO_VAULT_PATH_INVALID');
    }
    expect((await vaultError(vault.list('../x'))).code).toBe('DSO_VAULT_PATH_INVALID');
    expect(await sha256(vaultPath)).toBe(before);
  });

  it('lists paths sorted, under a prefix segment by segment', async () => {
    const vault = await init();
    for (const path of ['app/web/key', 'apple/pie', 'app/db', 'app', 'other']) {
      await vault.set(path, text('v'));
    }
    expect(await vault.list()).toEqual(['app', 'app/db', 'app/web/key', 'apple/pie', 'other']);
    expect(await vault.list('app')).toEqual(['app', 'app/db', 'app/web/key']);
    expect(await vault.list('app/')).toEqual(['app', 'app/db', 'app/web/key']);
    expect(await vault.list('app/web')).toEqual(['app/web/key']);
    expect(await vault.list('nothing')).toEqual([]);
  });

  it('stores a secret named __proto__ like any other', async () => {
    const vault = await init();
    await vault.set('__proto__', text('v'));
    await vault.set('a/__proto__/constructor', text('w'));
    const again = await reopen();
    expect(await again.list()).toEqual(['__proto__', 'a/__proto__/constructor']);
    expect((await again.get('__proto__')).value.revealText()).toBe('v');
  });

  it('refuses a value over maxSecretBytes with DSO_VAULT_TOO_LARGE', async () => {
    const vault = await init({ maxSecretBytes: 8 });
    expect(await vault.set('app/db', new Uint8Array(8))).toBe('1');
    expect((await vaultError(vault.set('app/db', new Uint8Array(9)))).code).toBe(
      'DSO_VAULT_TOO_LARGE',
    );
  });

  it('serializes concurrent writes: every set gets its own version and none is lost', async () => {
    const vault = await init({ maxVersions: 50 });
    const versions = await Promise.all(
      Array.from({ length: 20 }, (_, index) => vault.set('app/db', text(`v${index}`))),
    );
    expect(versions.map(Number).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 20 }, (_, index) => index + 1),
    );
    await Promise.all(Array.from({ length: 10 }, (_, index) => vault.set(`p/${index}`, text('v'))));
    expect(await vault.list('p')).toHaveLength(10);
    expect(await readdir(dir)).toEqual(['vault.dso']);
  });

  it('sees writes made through another handle on the same file', async () => {
    const writer = await init();
    const reader = await reopen();
    await writer.set('app/db', text('one'));
    expect((await reader.get('app/db')).value.revealText()).toBe('one');
    await reader.set('app/db', text('two'));
    expect((await writer.get('app/db')).version).toBe('2');
  });

  it('keeps mode 0600 after every write and rewrites with a fresh nonce', async () => {
    const vault = await init();
    const nonce = async () => (await readFile(vaultPath)).subarray(32, 44).toString('hex');
    const first = await nonce();
    await vault.set('app/db', text('v'));
    expect((await stat(vaultPath)).mode & 0o777).toBe(0o600);
    const second = await nonce();
    await vault.set('app/db', text('w'));
    expect(new Set([first, second, await nonce()]).size).toBe(3);
  });

  it('refuses to write over a vault whose mode was widened, leaving it intact', async () => {
    const vault = await init();
    await chmod(vaultPath, 0o640);
    const before = await sha256(vaultPath);
    expect((await vaultError(vault.set('app/db', text('v')))).code).toBe('DSO_VAULT_PERMISSIONS');
    expect(await sha256(vaultPath)).toBe(before);
  });
});

describe('a damaged vault or a wrong key', () => {
  // Every case: a clear code, the file byte for byte as it was, no temp or lock file left.
  async function expectIntact(hash: string): Promise<void> {
    expect(await sha256(vaultPath)).toBe(hash);
    expect(await readdir(dir)).toEqual(['vault.dso']);
  }

  async function seeded(): Promise<Vault> {
    const vault = await init();
    await vault.set('app/db', text('s3cret'));
    return vault;
  }

  it('refuses a wrong key with DSO_VAULT_WRONG_KEY, naming the key source', async () => {
    await seeded();
    const before = await sha256(vaultPath);
    const error = await vaultError(openVault({ path: vaultPath, key: otherKey }));
    expect(error.code).toBe('DSO_VAULT_WRONG_KEY');
    expect(error.message).toContain('wrong key, or the file was modified');
    expect(error.message).toContain('other passphrase');
    await expectIntact(before);
  });

  it('refuses a flipped ciphertext byte with DSO_VAULT_WRONG_KEY, for reads and writes', async () => {
    const vault = await seeded();
    const after = await damage((file) => {
      file[60]! ^= 0x80;
      return file;
    });
    expect((await vaultError(openVault({ path: vaultPath, key }))).code).toBe(
      'DSO_VAULT_WRONG_KEY',
    );
    expect((await vaultError(vault.get('app/db'))).code).toBe('DSO_VAULT_WRONG_KEY');
    expect((await vaultError(vault.set('app/db', text('x')))).code).toBe('DSO_VAULT_WRONG_KEY');
    expect((await vaultError(vault.delete('app/db'))).code).toBe('DSO_VAULT_WRONG_KEY');
    await expectIntact(after);
  });

  it('refuses a file without the magic with DSO_VAULT_CORRUPT', async () => {
    const vault = await seeded();
    const after = await damage((file) => {
      file.write('XSOVAULT', 0, 'ascii');
      return file;
    });
    expect((await vaultError(openVault({ path: vaultPath, key }))).code).toBe('DSO_VAULT_CORRUPT');
    expect((await vaultError(vault.set('app/db', text('x')))).code).toBe('DSO_VAULT_CORRUPT');
    await expectIntact(after);
  });

  it('refuses a truncated file with DSO_VAULT_TRUNCATED', async () => {
    const vault = await seeded();
    for (const keep of [0, 5, 20, 47, -1]) {
      const original = await readFile(vaultPath);
      const after = await damage((file) => file.subarray(0, keep < 0 ? file.byteLength - 1 : keep));
      const error = await vaultError(openVault({ path: vaultPath, key }));
      expect(error.code, `keeping ${keep}`).toBe('DSO_VAULT_TRUNCATED');
      expect((await vaultError(vault.set('app/db', text('x')))).code).toBe('DSO_VAULT_TRUNCATED');
      await expectIntact(after);
      await writeFile(vaultPath, original, { mode: 0o600 });
    }
  });

  it('refuses an unknown format version with DSO_VAULT_UNSUPPORTED_VERSION', async () => {
    await seeded();
    const after = await damage((file) => {
      file[8] = 2;
      return file;
    });
    const error = await vaultError(openVault({ path: vaultPath, key }));
    expect(error.code).toBe('DSO_VAULT_UNSUPPORTED_VERSION');
    expect(error.message).toContain('upgrade');
    await expectIntact(after);
  });
});

describe('locking, aborting and closing', () => {
  it('waits for another process’s lock, then gives up with DSO_VAULT_LOCKED', async () => {
    const vault = await init({ lockTimeoutMs: 30 });
    const before = await sha256(vaultPath);
    const release = await acquireFileLock(`${vaultPath}.lock`, { vaultPath });
    try {
      expect((await vaultError(vault.set('app/db', text('v')))).code).toBe('DSO_VAULT_LOCKED');
      expect(await vault.list()).toEqual([]);
    } finally {
      await release();
    }
    expect(await sha256(vaultPath)).toBe(before);
    expect(await vault.set('app/db', text('v'))).toBe('1');
  });

  it('stops at an aborted signal without writing', async () => {
    const vault = await init();
    const before = await sha256(vaultPath);
    const signal = AbortSignal.abort();
    await expect(vault.set('app/db', text('v'), { signal })).rejects.toMatchObject({
      name: 'AbortError',
    });
    await expect(vault.get('app/db', { signal })).rejects.toMatchObject({ name: 'AbortError' });
    expect(await sha256(vaultPath)).toBe(before);
    expect(await vault.set('app/db', text('v'))).toBe('1');
  });

  it('finishes pending writes on close, then refuses with DSO_VAULT_CLOSED', async () => {
    const vault = await init();
    const pending = vault.set('app/db', text('v'));
    await vault.close();
    expect(await pending).toBe('1');
    await vault.close();
    expect((await vaultError(vault.get('app/db'))).code).toBe('DSO_VAULT_CLOSED');
    expect((await vaultError(vault.set('app/db', text('w')))).code).toBe('DSO_VAULT_CLOSED');
    expect((await (await reopen()).get('app/db')).value.revealText()).toBe('v');
  });
});

describe('canary: a secret value never leaves in plaintext', () => {
  const canaryText = `canary-${randomBytes(12).toString('hex')}`;
  const canary = Buffer.from(canaryText, 'utf8');
  const forms = [
    canaryText,
    canary.toString('base64'),
    canary.toString('base64url'),
    canary.toString('hex'),
  ];

  function expectNoCanary(text: string, where: string): void {
    for (const form of forms) expect(text.includes(form), `${where} holds ${form}`).toBe(false);
  }

  it('is not in the vault file’s bytes', async () => {
    const vault = await init();
    await vault.set('app/db', SecretValue.fromBytes(canary));
    await vault.set('app/db', SecretValue.fromBytes(canary));
    await vault.set('app/other', canary);
    const raw = await readFile(vaultPath);
    for (const form of forms) expect(raw.includes(Buffer.from(form, 'utf8'))).toBe(false);
    expect(raw.includes(canary)).toBe(false);
    expect((await vault.get('app/db')).value.reveal().equals(canary)).toBe(true);
  });

  it('is in no error the vault throws, nor in its printed objects', async () => {
    const vault = await init({ maxSecretBytes: canary.byteLength });
    await vault.set('app/db', SecretValue.fromBytes(canary));
    const resolved = await vault.get('app/db');
    const errors: unknown[] = [];
    const collect = async (promise: Promise<unknown>) => {
      errors.push(
        await promise.then(
          () => new Error('did not throw'),
          (error: unknown) => error,
        ),
      );
    };

    await collect(vault.get('app/db', { version: '9' }));
    await collect(vault.get('app/missing'));
    await collect(vault.set('app/db', Buffer.concat([canary, canary])));
    await collect(openVault({ path: vaultPath, key: otherKey }));
    const original = await readFile(vaultPath);
    await damage((file) => {
      file[60]! ^= 1;
      return file;
    });
    await collect(vault.get('app/db'));
    await damage(() => original.subarray(0, original.byteLength - 3));
    await collect(vault.get('app/db'));
    await writeFile(vaultPath, original, { mode: 0o600 });
    await vault.close();
    await collect(vault.get('app/db'));

    expect(errors.every(isVaultError)).toBe(true);
    for (const error of errors) {
      expectNoCanary(inspect(error, { depth: 5 }), inspect(error));
      expectNoCanary(String(error), String(error));
    }
    expectNoCanary(inspect(resolved, { depth: 5 }), 'inspect(resolved)');
    expectNoCanary(JSON.stringify(resolved), 'JSON.stringify(resolved)');
    expectNoCanary(inspect(vault, { depth: 5, showHidden: true }), 'inspect(vault)');
  });
});
