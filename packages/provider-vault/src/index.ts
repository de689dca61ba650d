/**
 * @dso/provider-vault: the DSO provider for HashiCorp Vault's KV version 2 secrets engine. It
 * speaks Vault's HTTP API directly (HashiCorp publishes no official JavaScript client) through
 * undici's `fetch` and an undici `Agent` carrying the TLS settings. Token or AppRole auth,
 * namespaces, versions, `list`, a metadata-only `probe`, and `health`.
 *
 * @example
 * import { createProvider, selectField } from '@dso/provider-sdk';
 * import vault from '@dso/provider-vault';
 *
 * // VAULT_TOKEN=… in the environment; Vault holds secret/app/db = { user: 'app', password: 's3cret' }
 * const provider = await createProvider(
 *   vault,
 *   { address: 'https://vault.internal:8200', tls: { caFile: '/etc/dso/vault-ca.pem' } },
 *   { name: 'prod-vault', env: process.env },
 * );
 * const { value, version } = await provider.resolve({ path: 'app/db' });
 * `${value}`;                                        // '[REDACTED]'
 * value.revealText();                                // '{"password":"s3cret","user":"app"}'
 * selectField(value, 'password').revealText();      // 's3cret' (what dso://prod-vault:app/db#password gives)
 * version;                                           // '3'
 * await provider.probe?.({ path: 'app/db' });        // { version: '3' }, without reading the value
 * await provider.close();
 */
export {
  DEFAULT_APPROLE_MOUNT,
  DEFAULT_KV_MOUNT,
  DEFAULT_MAX_LIST_PATHS,
  DEFAULT_MAX_RESPONSE_BYTES,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_TOKEN_ENV,
  type VaultAuthConfig,
  type VaultProviderConfig,
  type VaultProviderConfigInput,
  type VaultTlsConfig,
  vaultProviderConfigSchema,
} from './config.js';
export {
  vaultProvider as default,
  vaultProvider as provider,
  vaultProvider,
} from './definition.js';
export {
  isVaultProviderError,
  MAX_QUOTED_VAULT_ERROR_CHARS,
  type VaultErrorDetails,
  VaultProviderError,
} from './vault-error.js';
export {
  createVaultProvider,
  LIST_PAGE_SIZE,
  VAULT_CAPABILITIES,
  type VaultProviderOptions,
} from './vault-provider.js';
