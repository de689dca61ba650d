import { isAbsolute } from 'node:path';
import { defineProvider, type ProviderContext, type ProviderDefinition } from '@dso/provider-sdk';
import { z } from 'zod';
import { createLocalProvider, toLocalProviderError } from './local-provider.js';
import { VaultError } from './vault-error.js';
import {
  readKeyFile,
  resolveVaultKey,
  VAULT_KEY_FILE_ENV,
  VAULT_PASSPHRASE_ENV,
  type VaultKey,
  vaultKeyFromPassphrase,
} from './vault-key.js';

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;

const absolutePath = (what: string) =>
  z
    .string()
    .min(1, `${what} must not be empty`)
    .refine((value) => isAbsolute(value), `${what} must be an absolute path`)
    .refine((value) => !value.includes('\0'), `${what} must not contain a NUL byte`);

/**
 * Configuration of a `local` provider. It names where the key is, never the key: a passphrase
 * or key material in the configuration would sit in a file every reader of the configuration
 * can see.
 */
export const localProviderConfigSchema = z
  .strictObject({
    /** The vault file (absolute). */
    vaultPath: absolutePath('vaultPath'),
    /** A key file (absolute, mode 0600) to use instead of the environment. */
    keyFile: absolutePath('keyFile').optional(),
    /**
     * The environment variable holding this vault's passphrase, instead of
     * `DSO_VAULT_PASSPHRASE` (for a second vault with its own passphrase).
     */
    passphraseEnv: z
      .string()
      .regex(ENV_NAME, 'passphraseEnv must be an environment variable name')
      .optional(),
  })
  .refine((config) => config.keyFile === undefined || config.passphraseEnv === undefined, {
    message: 'set keyFile or passphraseEnv, not both: the vault key must come from one place',
    path: ['keyFile'],
  });

/** A validated `local` provider configuration. */
export type LocalProviderConfig = z.infer<typeof localProviderConfigSchema>;

/**
 * The `local` provider type: DSO's encrypted vault file, with versions kept per secret (ten by
 * default), `list`, and a `probe` that costs a read and a hash while the vault is unchanged.
 * The key comes from, in order: the configured `keyFile`; the variable named by
 * `passphraseEnv`; else `DSO_VAULT_PASSPHRASE` or `DSO_VAULT_KEY_FILE` in the environment the
 * host gives the provider (`ProviderContext.env`).
 *
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import local from '@dso/provider-local';
 *
 * const provider = await createProvider(local, { vaultPath: '/var/lib/dso/vault.dso' }, {
 *   name: 'local',
 *   env: { DSO_VAULT_KEY_FILE: '/var/lib/dso/vault.key' },
 * });
 * const { value, version } = await provider.resolve({ path: 'app/db/password' });
 * @throws ProviderError from `createProvider`: DSO_PROVIDER_INVALID_CONFIG for a configuration
 *   its schema refuses, or an unusable key file (wide mode, too short);
 *   DSO_PROVIDER_UNAUTHORIZED when no key is found; from calls, as `createLocalProvider`
 */
export const localProvider: ProviderDefinition<LocalProviderConfig> = defineProvider({
  type: 'local',
  description: "DSO's encrypted local vault file (AES-256-GCM, scrypt), versions kept per secret",
  capabilities: { list: true, probe: true },
  configSchema: localProviderConfigSchema,
  async create(config, context) {
    let key: VaultKey;
    try {
      key = await findKey(config, context);
    } catch (error) {
      throw toLocalProviderError(error, context.name);
    }
    try {
      return createLocalProvider({ name: context.name, vaultPath: config.vaultPath, key });
    } finally {
      // createLocalProvider keeps its own copy.
      key.material.dispose();
    }
  },
});

async function findKey(config: LocalProviderConfig, context: ProviderContext): Promise<VaultKey> {
  // The vault's path words a missing key's advice: restore it, or make one for a new vault.
  const { vaultPath } = config;
  if (config.keyFile !== undefined) return readKeyFile(config.keyFile, { vaultPath });
  if (config.passphraseEnv !== undefined) {
    const passphrase = context.env[config.passphraseEnv];
    if (passphrase === undefined || passphrase === '') {
      throw new VaultError(
        'DSO_VAULT_KEY_MISSING',
        `no vault key: passphraseEnv names ${config.passphraseEnv}, which is not set in the provider's environment; set it, or remove passphraseEnv to use ${VAULT_PASSPHRASE_ENV} or ${VAULT_KEY_FILE_ENV}`,
      );
    }
    return vaultKeyFromPassphrase(passphrase, `env ${config.passphraseEnv}`);
  }
  return resolveVaultKey({ env: context.env, vaultPath });
}
