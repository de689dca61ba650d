import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConformanceFixture, runProviderConformance } from '@dso/provider-conformance';
import localProvider from './index.js';
import { initVault } from './vault.js';
import { VAULT_PASSPHRASE_ENV, vaultKeyFromPassphrase } from './vault-key.js';

// The vault's key derivation at its lowest cost (N = 2^10), so every provider the suite opens
// derives its key in about a millisecond.
const FAST_KDF = { log2N: 10 };

/**
 * A fresh vault in a temporary directory, with a random passphrase given to the provider
 * through `DSO_VAULT_PASSPHRASE` (fixture.env) and written to by a second vault object, the
 * way `dso secret set` writes while the agent reads.
 */
async function vaultFixture(): Promise<ConformanceFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'dso-local-conformance-'));
  const vaultPath = join(dir, 'vault.dso');
  const passphrase = `passphrase-${randomBytes(12).toString('hex')}`;
  const writer = await initVault({
    path: vaultPath,
    key: vaultKeyFromPassphrase(passphrase),
    kdf: FAST_KDF,
  });

  /** Swaps the vault file for other bytes; returns a function that puts the original back. */
  const replaceVault = async (swap: (aside: string) => Promise<void>) => {
    const aside = join(dir, `vault.aside-${randomBytes(4).toString('hex')}`);
    await rename(vaultPath, aside);
    await swap(aside);
    return async () => {
      await unlink(vaultPath);
      await rename(aside, vaultPath);
    };
  };

  return {
    config: { vaultPath },
    env: { [VAULT_PASSPHRASE_ENV]: passphrase },
    put: (path, value) => writer.set(path, value),
    history: true,
    // Three, each a different kind of mistake: every one costs a child process in the suite's
    // second half. src/definition.test.ts refuses more.
    invalidConfigs: [
      {},
      { vaultPath: 'relative/vault.dso' },
      { vaultPath, keyFile: '/etc/dso/vault.key', passphraseEnv: 'HOME_VAULT_PASSPHRASE' },
    ],
    faults: {
      // The vault re-encrypted under another passphrase (rekeyed by someone else): the
      // provider's key no longer opens it.
      DSO_PROVIDER_UNAUTHORIZED: () =>
        replaceVault(async () => {
          const other = join(dir, `rekeyed-${randomBytes(4).toString('hex')}.dso`);
          const rekeyed = await initVault({
            path: other,
            key: vaultKeyFromPassphrase(`other-${randomBytes(8).toString('hex')}`),
            kdf: FAST_KDF,
          });
          await rekeyed.close();
          await writeFile(vaultPath, await readFile(other), { mode: 0o600 });
          await unlink(other);
        }),
      // The vault's path cannot be read (an I/O error: here a symlink loop where the file was).
      DSO_PROVIDER_UNAVAILABLE: () =>
        replaceVault(async () => {
          await symlink(vaultPath, vaultPath);
        }),
    },
    async close() {
      await writer.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

runProviderConformance({
  name: 'local',
  definition: localProvider,
  module: new URL('./index.ts', import.meta.url).pathname,
  fixture: vaultFixture,
});
