import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import {
  createProvider,
  isProviderDefinition,
  isProviderError,
  type ProviderError,
  type SecretProvider,
  SecretValue,
} from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import localProvider, { provider as namedExport } from './index.js';
import { initVault } from './vault.js';
import { isVaultError } from './vault-error.js';
import { generateKeyFile, vaultKeyFromPassphrase } from './vault-key.js';

const PASSPHRASE = `passphrase-${randomBytes(8).toString('hex')}`;
const CANARY = `canary-${randomBytes(8).toString('hex')}`;

let dir: string;
let vaultPath: string;
const cleanups: Array<() => Promise<void>> = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-local-definition-'));
  vaultPath = join(dir, 'vault.dso');
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function seed(passphrase = PASSPHRASE): Promise<void> {
  const vault = await initVault({
    path: vaultPath,
    key: vaultKeyFromPassphrase(passphrase),
    kdf: { log2N: 10 },
  });
  await vault.set('app/db', SecretValue.fromText(CANARY));
  await vault.close();
}

async function create(
  config: unknown,
  env: Record<string, string | undefined>,
): Promise<SecretProvider> {
  const created = await createProvider(localProvider, config, { name: 'home', env });
  cleanups.push(() => created.close());
  return created;
}

async function providerError(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isProviderError(error)) throw new Error(`expected a ProviderError, got ${inspect(error)}`);
  return error;
}

describe('the local provider definition', () => {
  it('is exported as default and as `provider`, with type local, list and probe', () => {
    expect(isProviderDefinition(localProvider)).toBe(true);
    expect(namedExport).toBe(localProvider);
    expect(localProvider.type).toBe('local');
    expect(localProvider.capabilities).toEqual({
      list: true,
      watch: false,
      probe: true,
      health: false,
    });
  });

  it('reads the passphrase from DSO_VAULT_PASSPHRASE in the environment it is given', async () => {
    await seed();
    const local = await create({ vaultPath }, { DSO_VAULT_PASSPHRASE: PASSPHRASE });
    const { value, version } = await local.resolve({ path: 'app/db' });
    expect(version).toBe('1');
    expect(value.revealText()).toBe(CANARY);
    expect(await local.probe?.({ path: 'app/db' })).toEqual({ version: '1' });
    expect(await local.list?.()).toEqual(['app/db']);
  });

  it('reads the key file named by DSO_VAULT_KEY_FILE, or by keyFile in the configuration', async () => {
    const keyFile = join(dir, 'vault.key');
    const key = await generateKeyFile(keyFile);
    const vault = await initVault({ path: vaultPath, key, kdf: { log2N: 10 } });
    await vault.set('app/db', SecretValue.fromText(CANARY));
    await vault.close();
    const fromEnv = await create({ vaultPath }, { DSO_VAULT_KEY_FILE: keyFile });
    expect((await fromEnv.resolve({ path: 'app/db' })).value.revealText()).toBe(CANARY);
    // The configured key file wins over a passphrase in the environment (meant for another vault).
    const fromConfig = await create(
      { vaultPath, keyFile },
      { DSO_VAULT_PASSPHRASE: 'for-the-other-vault' },
    );
    expect((await fromConfig.resolve({ path: 'app/db' })).value.revealText()).toBe(CANARY);
  });

  it('reads the passphrase from the variable passphraseEnv names', async () => {
    await seed('second-vault-passphrase');
    const local = await create(
      { vaultPath, passphraseEnv: 'HOME_VAULT_PASSPHRASE' },
      { DSO_VAULT_PASSPHRASE: PASSPHRASE, HOME_VAULT_PASSPHRASE: 'second-vault-passphrase' },
    );
    expect((await local.resolve({ path: 'app/db' })).value.revealText()).toBe(CANARY);
  });

  it('refuses a configuration that is not absolute, has both key sources, or unknown keys', async () => {
    for (const config of [
      {},
      { vaultPath: 'vault.dso' },
      { vaultPath, keyFile: 'vault.key' },
      { vaultPath, keyFile: '/k', passphraseEnv: 'X' },
      { vaultPath, passphraseEnv: 'NOT-A-NAME' },
      { vaultPath, passphrase: CANARY },
    ]) {
      const error = await providerError(createProvider(localProvider, config, { env: {} }));
      expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
      expect(error.message).not.toContain(CANARY);
    }
  });

  it('fails creation with DSO_PROVIDER_UNAUTHORIZED when no key is found, saying where to put one', async () => {
    await seed();
    const missing = await providerError(createProvider(localProvider, { vaultPath }, { env: {} }));
    expect(missing.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(missing.message).toContain('DSO_VAULT_PASSPHRASE');
    expect(isVaultError(missing.cause) && missing.cause.code).toBe('DSO_VAULT_KEY_MISSING');
    // The vault exists: its key is to be restored (the agent names $DSO_HOME/vault.key), never
    // made anew, which could not open it.
    const gone = join(dir, 'gone.key');
    const moved = await providerError(
      createProvider(localProvider, { vaultPath }, { env: { DSO_VAULT_KEY_FILE: gone } }),
    );
    expect(moved.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(moved.message).toContain(`restore the vault's key file to ${gone}`);
    expect(moved.message).toContain(`a new key cannot open the vault at ${vaultPath}`);
    expect(moved.message).not.toMatch(/urandom|dso init/);
    const unset = await providerError(
      createProvider(localProvider, { vaultPath, passphraseEnv: 'HOME_VAULT' }, { env: {} }),
    );
    expect(unset.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(unset.message).toContain('HOME_VAULT');
  });

  it('fails creation with DSO_PROVIDER_INVALID_CONFIG for a key file others may read', async () => {
    const keyFile = join(dir, 'wide.key');
    await generateKeyFile(keyFile);
    await chmod(keyFile, 0o644);
    const error = await providerError(
      createProvider(localProvider, { vaultPath, keyFile }, { env: {} }),
    );
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('chmod 600');
  });

  it('reports a wrong passphrase as DSO_PROVIDER_UNAUTHORIZED on the first call', async () => {
    await seed();
    const local = await create({ vaultPath }, { DSO_VAULT_PASSPHRASE: 'wrong' });
    const error = await providerError(local.resolve({ path: 'app/db' }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_UNAUTHORIZED', provider: 'home' });
    expect(JSON.stringify(inspect(error, { depth: 10 }))).not.toContain(CANARY);
  });
});
