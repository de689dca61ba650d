import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import {
  isProviderError,
  isSecretValue,
  type ProviderError,
  type SecretProvider,
  SecretValue,
} from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLocalProvider } from './local-provider.js';
import { initVault, type Vault } from './vault.js';
import { isVaultError } from './vault-error.js';
import { vaultKeyFromPassphrase } from './vault-key.js';

const key = vaultKeyFromPassphrase('correct horse battery staple', 'test passphrase');
const VALUE = 'provider-test-value-4b1d';

let dir: string;
let vaultPath: string;
const cleanups: Array<() => Promise<void>> = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-provider-'));
  vaultPath = join(dir, 'vault.dso');
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function seededVault(): Promise<Vault> {
  const vault = await initVault({ path: vaultPath, key, kdf: { log2N: 10 } });
  cleanups.push(() => vault.close());
  await vault.set('app/db/password', SecretValue.fromText('old'));
  await vault.set('app/db/password', SecretValue.fromText(VALUE));
  await vault.set('app/web/token', SecretValue.fromText('t'));
  await vault.set('other', SecretValue.fromText('o'));
  return vault;
}

function provider(options: { name?: string } = {}): SecretProvider {
  const created = createLocalProvider({ vaultPath, key, ...options });
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

describe('createLocalProvider', () => {
  it('declares its name and the list and probe capabilities', () => {
    expect(provider()).toMatchObject({
      name: 'local',
      capabilities: { list: true, watch: false, probe: true, health: false },
    });
    expect(provider({ name: 'home' }).name).toBe('home');
  });

  it('resolves the newest version as a SecretValue that prints as [REDACTED]', async () => {
    await seededVault();
    const resolved = await provider().resolve({ path: 'app/db/password' });
    expect(resolved.version).toBe('2');
    expect(isSecretValue(resolved.value)).toBe(true);
    expect(String(resolved.value)).toBe('[REDACTED]');
    expect(`${resolved.value}`).toBe('[REDACTED]');
    expect(JSON.stringify(resolved)).not.toContain(VALUE);
    expect(inspect(resolved)).not.toContain(VALUE);
    expect(resolved.value.revealText()).toBe(VALUE);
  });

  it('resolves a pinned version', async () => {
    await seededVault();
    const resolved = await provider().resolve({ path: 'app/db/password', version: '1' });
    expect(resolved.version).toBe('1');
    expect(resolved.value.revealText()).toBe('old');
  });

  it('rejects a missing path, a missing version and a malformed path with DSO_PROVIDER_NOT_FOUND', async () => {
    await seededVault();
    const local = provider();
    for (const request of [
      { path: 'app/missing' },
      { path: 'app/db/password', version: '7' },
      { path: '../etc/passwd' },
    ]) {
      const error = await providerError(local.resolve(request));
      expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(error).toMatchObject({ provider: 'local', path: request.path, retryable: false });
      expect(isVaultError(error.cause)).toBe(true);
      expect(error.message).not.toContain(VALUE);
      expect(inspect(error, { depth: 5 })).not.toContain(VALUE);
    }
  });

  it('lists paths, all or under a prefix', async () => {
    await seededVault();
    const local = provider();
    expect(await local.list?.()).toEqual(['app/db/password', 'app/web/token', 'other']);
    expect(await local.list?.('app/db')).toEqual(['app/db/password']);
  });

  it('probes the newest version, and sees a write made after its last probe', async () => {
    const vault = await seededVault();
    const local = provider();
    expect(await local.probe?.({ path: 'app/db/password' })).toEqual({ version: '2' });
    await vault.set('app/db/password', SecretValue.fromText('third'));
    expect(await local.probe?.({ path: 'app/db/password' })).toEqual({ version: '3' });
    const error = await providerError(local.probe!({ path: 'app/missing' }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_NOT_FOUND', path: 'app/missing' });
  });

  it('sees secrets stored after it opened the vault', async () => {
    const vault = await seededVault();
    const local = provider();
    await local.resolve({ path: 'other' });
    await vault.set('later', SecretValue.fromText('l'));
    expect((await local.resolve({ path: 'later' })).value.revealText()).toBe('l');
  });

  it('reports a missing vault as DSO_PROVIDER_INVALID_CONFIG, and recovers once it exists', async () => {
    const local = provider();
    const error = await providerError(local.resolve({ path: 'other' }));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('dso init');
    await seededVault();
    expect((await local.resolve({ path: 'other' })).value.revealText()).toBe('o');
  });

  it('reports a wrong key as DSO_PROVIDER_UNAUTHORIZED with the vault error as cause', async () => {
    await seededVault();
    const wrong = createLocalProvider({ vaultPath, key: vaultKeyFromPassphrase('nope') });
    cleanups.push(() => wrong.close());
    const error = await providerError(wrong.resolve({ path: 'other' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(isVaultError(error.cause) && error.cause.code).toBe('DSO_VAULT_WRONG_KEY');
  });

  it('keeps its own copy of the key, so the caller may dispose its own', async () => {
    await seededVault();
    const mine = vaultKeyFromPassphrase('correct horse battery staple');
    const local = createLocalProvider({ vaultPath, key: mine });
    cleanups.push(() => local.close());
    mine.material.dispose();
    expect((await local.resolve({ path: 'other' })).value.revealText()).toBe('o');
  });

  it('maps an aborted call to DSO_PROVIDER_TIMEOUT', async () => {
    await seededVault();
    const error = await providerError(
      provider().resolve({ path: 'other' }, { signal: AbortSignal.abort() }),
    );
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
  });

  it('closes through Symbol.asyncDispose too', async () => {
    await seededVault();
    const local = createLocalProvider({ vaultPath, key });
    await local.resolve({ path: 'other' });
    await local[Symbol.asyncDispose]();
    const error = await providerError(local.resolve({ path: 'other' }));
    expect(error.message).toContain('closed');
  });

  it('refuses calls after close', async () => {
    await seededVault();
    const local = provider();
    await local.resolve({ path: 'other' });
    await local.close();
    await local.close();
    expect(isProviderError(await local.resolve({ path: 'other' }).catch((error) => error))).toBe(
      true,
    );
  });
});
