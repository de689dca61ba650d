import { chmod, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SecretValue } from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { isVaultError, type VaultError } from './vault-error.js';
import {
  generateKeyFile,
  readKeyFile,
  resolveVaultKey,
  VAULT_KEY_FILE_ENV,
  VAULT_PASSPHRASE_ENV,
  vaultKeyFromPassphrase,
} from './vault-key.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-key-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function vaultError(promise: Promise<unknown>): Promise<VaultError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isVaultError(error)) throw new Error(`expected a VaultError, got ${String(error)}`);
  return error;
}

describe('resolveVaultKey', () => {
  it('takes the passphrase from DSO_VAULT_PASSPHRASE', async () => {
    const key = await resolveVaultKey({ env: { [VAULT_PASSPHRASE_ENV]: 'correct horse' } });
    expect(key.source).toBe('env DSO_VAULT_PASSPHRASE');
    expect(key.material.revealText()).toBe('correct horse');
    expect(String(key.material)).toBe('[REDACTED]');
  });

  it('reads the key file named by DSO_VAULT_KEY_FILE, without surrounding whitespace', async () => {
    const path = join(dir, 'vault.key');
    await writeFile(path, '  0123456789abcdef0123456789abcdef\n', { mode: 0o600 });
    const key = await resolveVaultKey({ env: { [VAULT_KEY_FILE_ENV]: path } });
    expect(key.source).toBe(`key file ${path}`);
    expect(key.material.revealText()).toBe('0123456789abcdef0123456789abcdef');
  });

  it('refuses with DSO_VAULT_KEY_MISSING when neither is set, saying how to set one', async () => {
    const error = await vaultError(resolveVaultKey({ env: { [VAULT_PASSPHRASE_ENV]: '' } }));
    expect(error.code).toBe('DSO_VAULT_KEY_MISSING');
    expect(error.message).toContain('DSO_VAULT_PASSPHRASE');
    expect(error.message).toContain('DSO_VAULT_KEY_FILE');
    expect(error.message).toContain('`dso init`');
  });

  it('falls back to an existing default key file, and only to an existing one', async () => {
    const path = join(dir, 'vault.key');
    const missing = await vaultError(resolveVaultKey({ env: {}, defaultKeyFile: path }));
    expect(missing.code).toBe('DSO_VAULT_KEY_MISSING');
    expect(missing.message).toContain(path);
    await generateKeyFile(path);
    const key = await resolveVaultKey({ env: {}, defaultKeyFile: path });
    expect(key.source).toBe(`key file ${path}`);
  });

  it('for a vault that exists, says to restore its key, never to make a new one', async () => {
    const vaultPath = join(dir, 'vault.dso');
    await writeFile(vaultPath, 'a vault', { mode: 0o600 });
    const keyFile = join(dir, 'vault.key');
    const missing = await vaultError(
      resolveVaultKey({ env: {}, defaultKeyFile: keyFile, vaultPath }),
    );
    expect(missing.code).toBe('DSO_VAULT_KEY_MISSING');
    expect(missing.message).toContain(`restore the vault's key file to ${keyFile}`);
    expect(missing.message).toContain(VAULT_PASSPHRASE_ENV);
    expect(missing.message).toContain(`a new key cannot open the vault at ${vaultPath}`);
    expect(missing.message).not.toMatch(/urandom|dso init|create/);
    // The same through DSO_VAULT_KEY_FILE naming a file that is gone.
    const named = await vaultError(
      resolveVaultKey({ env: { [VAULT_KEY_FILE_ENV]: keyFile }, vaultPath }),
    );
    expect(named.message).toContain(`key file ${keyFile} does not exist: restore`);
    expect(named.message).not.toMatch(/urandom|dso init|create/);
  });

  it('for a vault that does not exist yet, says how to make it and a new key', async () => {
    const vaultPath = join(dir, 'vault.dso');
    const keyFile = join(dir, 'vault.key');
    for (const env of [{}, { [VAULT_KEY_FILE_ENV]: keyFile }]) {
      const error = await vaultError(resolveVaultKey({ env, defaultKeyFile: keyFile, vaultPath }));
      expect(error.code).toBe('DSO_VAULT_KEY_MISSING');
      expect(error.message).toContain(`there is no vault at ${vaultPath} yet: \`dso init\``);
      expect(error.message).toContain(`head -c 32 /dev/urandom | base64 > ${keyFile}`);
      expect(error.message).not.toContain('restore');
    }
  });

  it('refuses with DSO_VAULT_KEY_CONFLICT when both variables are set', async () => {
    const env = { [VAULT_PASSPHRASE_ENV]: 'p', [VAULT_KEY_FILE_ENV]: join(dir, 'vault.key') };
    expect((await vaultError(resolveVaultKey({ env }))).code).toBe('DSO_VAULT_KEY_CONFLICT');
  });

  it('reads process.env by default', async () => {
    vi.stubEnv(VAULT_KEY_FILE_ENV, '');
    vi.stubEnv(VAULT_PASSPHRASE_ENV, 'from process env');
    try {
      expect((await resolveVaultKey()).material.revealText()).toBe('from process env');
    } finally {
      vi.unstubAllEnvs();
    }
  });
});

describe('readKeyFile', () => {
  it('refuses a group- or other-readable key file with DSO_VAULT_KEY_PERMISSIONS and the chmod fix', async () => {
    const path = join(dir, 'vault.key');
    await writeFile(path, '0123456789abcdef0123456789abcdef');
    await chmod(path, 0o644);
    const error = await vaultError(readKeyFile(path));
    expect(error.code).toBe('DSO_VAULT_KEY_PERMISSIONS');
    expect(error.message).toContain(`chmod 600 ${path}`);
    expect(error.message).not.toContain('0123456789abcdef');
    expect(error.keyFile).toBe(path);
  });

  it('refuses a missing file with DSO_VAULT_KEY_MISSING, naming the variables and dso init', async () => {
    const error = await vaultError(readKeyFile(join(dir, 'absent.key')));
    expect(error.code).toBe('DSO_VAULT_KEY_MISSING');
    expect(error.message).toContain('DSO_VAULT_KEY_FILE');
    expect(error.message).toContain('DSO_VAULT_PASSPHRASE');
    expect(error.message).toContain('`dso init`');
  });

  it('refuses a directory, an empty file and a huge file with DSO_VAULT_KEY_INVALID', async () => {
    const directory = join(dir, 'key.d');
    await mkdir(directory, { mode: 0o700 });
    const empty = join(dir, 'empty.key');
    await writeFile(empty, '\n', { mode: 0o600 });
    const huge = join(dir, 'huge.key');
    await writeFile(huge, 'x'.repeat(5000), { mode: 0o600 });
    for (const path of [directory, empty, huge]) {
      expect((await vaultError(readKeyFile(path))).code, path).toBe('DSO_VAULT_KEY_INVALID');
    }
  });
});

describe('generateKeyFile', () => {
  it('writes 32 random bytes in base64 with mode 0600, and returns the key it wrote', async () => {
    const path = join(dir, 'vault.key');
    const key = await generateKeyFile(path);
    const text = await readFile(path, 'utf8');
    expect(Buffer.from(text.trim(), 'base64')).toHaveLength(32);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(key.material.revealText()).toBe(text.trim());
    expect((await readKeyFile(path)).material.revealText()).toBe(text.trim());
    expect(await readdir(dir)).toEqual(['vault.key']);
  });

  it('refuses to overwrite with DSO_VAULT_KEY_EXISTS, leaving the old key', async () => {
    const path = join(dir, 'vault.key');
    await generateKeyFile(path);
    const before = await readFile(path);
    expect((await vaultError(generateKeyFile(path))).code).toBe('DSO_VAULT_KEY_EXISTS');
    expect((await readFile(path)).equals(before)).toBe(true);
  });

  it('reports a missing directory as DSO_VAULT_IO', async () => {
    const error = await vaultError(generateKeyFile(join(dir, 'absent', 'vault.key')));
    expect(error.code).toBe('DSO_VAULT_IO');
  });
});

describe('vaultKeyFromPassphrase', () => {
  it('copies a SecretValue and refuses an empty passphrase', () => {
    const value = SecretValue.fromText('pw');
    const key = vaultKeyFromPassphrase(value, 'test');
    value.dispose();
    expect(key.material.revealText()).toBe('pw');
    expect(key.source).toBe('test');
    expect(() => vaultKeyFromPassphrase('')).toThrow(TypeError);
  });
});
