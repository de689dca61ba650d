/**
 * @dso/provider-local: DSO's local encrypted vault and the provider that serves it. One file,
 * AES-256-GCM under a key derived with scrypt (parameters and salt in the authenticated
 * header), versions kept per secret, written atomically with mode 0600. Key material comes from
 * `DSO_VAULT_PASSPHRASE` or the key file named by `DSO_VAULT_KEY_FILE`, never from argv.
 *
 * @example
 * import { SecretValue } from '@dso/provider-sdk';
 * import { createLocalProvider, initVault, resolveVaultKey } from '@dso/provider-local';
 *
 * // DSO_VAULT_PASSPHRASE=… or DSO_VAULT_KEY_FILE=/var/lib/dso/vault.key in the environment
 * const key = await resolveVaultKey();
 * const vault = await initVault({ path: '/tmp/example.dso', key });
 * await vault.set('app/db/password', SecretValue.fromText('s3cret')); // '1'
 * await vault.close();
 *
 * const provider = createLocalProvider({ vaultPath: '/tmp/example.dso', key });
 * const { value, version } = await provider.resolve({ path: 'app/db/password' });
 * `${value}`;          // '[REDACTED]'
 * value.revealText();  // 's3cret'
 * await provider.close();
 *
 * // Or as a provider type, the way the agent loads it (in process here):
 * import { createProvider } from '@dso/provider-sdk';
 * import local from '@dso/provider-local';
 * const configured = await createProvider(local, { vaultPath: '/tmp/example.dso' }, {
 *   name: 'local',
 *   env: { DSO_VAULT_PASSPHRASE: process.env.DSO_VAULT_PASSPHRASE },
 * });
 * await configured.probe?.({ path: 'app/db/password' }); // { version: '1' }
 * await configured.close();
 */
export {
  type LocalProviderConfig,
  localProvider as default,
  localProvider as provider,
  localProviderConfigSchema,
} from './definition.js';
export { DEFAULT_LOCK_TIMEOUT_MS } from './file-lock.js';
export { createLocalProvider, type LocalProviderOptions } from './local-provider.js';
export { assertSecretPath, MAX_SECRET_PATH_LENGTH } from './secret-path.js';
export {
  DEFAULT_MAX_SECRET_BYTES,
  DEFAULT_MAX_VERSIONS,
  type InitVaultOptions,
  initVault,
  type OpenVaultOptions,
  openVault,
  type PutResult,
  type SecretVersionInfo,
  type Vault,
  type VaultGetOptions,
} from './vault.js';
export {
  isVaultError,
  VAULT_ERROR_CODES,
  VaultError,
  type VaultErrorCode,
  type VaultErrorOptions,
} from './vault-error.js';
export {
  DEFAULT_SCRYPT_PARAMS,
  MAX_SCRYPT_MEMORY_BYTES,
  MAX_VAULT_FILE_BYTES,
  type ScryptParams,
  VAULT_FORMAT_VERSION,
} from './vault-format.js';
export {
  generateKeyFile,
  MAX_KEY_FILE_BYTES,
  MIN_KEY_FILE_BYTES,
  type ResolveVaultKeyOptions,
  readKeyFile,
  resolveVaultKey,
  VAULT_KEY_FILE_ENV,
  VAULT_PASSPHRASE_ENV,
  type VaultKey,
  vaultKeyFromPassphrase,
} from './vault-key.js';
