import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { SecretValue } from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { initVault, openVault, type Vault } from './vault.js';
import { isVaultError, type VaultError } from './vault-error.js';
import * as format from './vault-format.js';
import { vaultKeyFromPassphrase } from './vault-key.js';

// Counts decryptions, so the tests can tell a probe answered from the index from one that
// decrypted the file.
vi.mock('./vault-format.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('./vault-format.js')>();
  return { ...original, openSealedVault: vi.fn(original.openSealedVault) };
});
const decryptions = () => vi.mocked(format.openSealedVault).mock.calls.length;

const key = vaultKeyFromPassphrase('correct horse battery staple', 'test passphrase');
const CANARY = `canary-${Math.random().toString(36).slice(2)}`;

let dir: string;
let vaultPath: string;
const opened: Vault[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-vault-version-'));
  vaultPath = join(dir, 'vault.dso');
  vi.mocked(format.openSealedVault).mockClear();
});

afterEach(async () => {
  for (const vault of opened.splice(0)) await vault.close();
  await rm(dir, { recursive: true, force: true });
});

async function seeded(): Promise<Vault> {
  const vault = await initVault({ path: vaultPath, key, kdf: { log2N: 10 } });
  opened.push(vault);
  await vault.set('app/db', SecretValue.fromText('one'));
  await vault.set('app/db', SecretValue.fromText(CANARY));
  return vault;
}

async function vaultError(promise: Promise<unknown>): Promise<VaultError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isVaultError(error)) throw new Error(`expected a VaultError, got ${inspect(error)}`);
  return error;
}

describe('Vault.currentVersion', () => {
  it('decrypts once, then answers from its index while the file is unchanged', async () => {
    await seeded();
    const reader = await openVault({ path: vaultPath, key });
    opened.push(reader);
    await reader.currentVersion('app/db');
    const before = decryptions();
    expect(await reader.currentVersion('app/db')).toBe('2');
    expect(await reader.currentVersion('app/db')).toBe('2');
    expect(decryptions()).toBe(before);
  });

  it('decrypts again after a write by another vault object, and reports the new version', async () => {
    const writer = await seeded();
    const reader = await openVault({ path: vaultPath, key });
    opened.push(reader);
    expect(await reader.currentVersion('app/db')).toBe('2');
    await writer.set('app/db', SecretValue.fromText('three'));
    const before = decryptions();
    expect(await reader.currentVersion('app/db')).toBe('3');
    expect(decryptions()).toBe(before + 1);
  });

  it('notices a file replaced by other bytes of the same size', async () => {
    await seeded();
    const reader = await openVault({ path: vaultPath, key });
    opened.push(reader);
    await reader.currentVersion('app/db');
    const file = await readFile(vaultPath);
    // Flip one ciphertext byte: the same size and, on a coarse clock, maybe the same mtime.
    const last = file.length - 20;
    file[last] = (file[last] ?? 0) ^ 1;
    await writeFile(vaultPath, file, { mode: 0o600 });
    // Answered from the index it would say '2'; decrypted, the tag fails (which the format
    // cannot tell apart from a wrong key).
    const error = await vaultError(reader.currentVersion('app/db'));
    expect(error.code).toBe('DSO_VAULT_WRONG_KEY');
  });

  it('rejects a path with no stored version as DSO_VAULT_SECRET_NOT_FOUND, naming no value', async () => {
    const vault = await seeded();
    await vault.delete('app/db');
    for (const path of ['app/db', 'app/other']) {
      const error = await vaultError(vault.currentVersion(path));
      expect(error.code).toBe('DSO_VAULT_SECRET_NOT_FOUND');
      expect(inspect(error, { depth: 5 })).not.toContain(CANARY);
    }
  });

  it('refuses a malformed path and an aborted call', async () => {
    const vault = await seeded();
    expect((await vaultError(vault.currentVersion('../x'))).code).toBe('DSO_VAULT_PATH_INVALID');
    await expect(
      vault.currentVersion('app/db', { signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ name: 'AbortError' });
  });
});
