import { defineProvider, type ProviderDefinition } from '@dso/provider-sdk';
import { type VaultProviderConfig, vaultProviderConfigSchema } from './config.js';
import { openVaultProvider, VAULT_CAPABILITIES } from './vault-provider.js';

/**
 * The `vault` provider type: HashiCorp Vault's KV version 2 secrets engine over its HTTP API,
 * with token or AppRole auth, namespaces, TLS options and versions; `list`, a metadata-only
 * `probe`, and `health` from `sys/health`. A secret's value is the JSON of its `data` object
 * (keys sorted), or one key of it with `valueKey`; `#field` in a reference is selected from that
 * JSON by the SDK. The version is KV's version number as a string.
 *
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import vault from '@dso/provider-vault';
 *
 * const provider = await createProvider(
 *   vault,
 *   { address: 'https://vault.internal:8200', mount: 'secret', auth: { method: 'token', tokenEnv: 'VAULT_TOKEN' } },
 *   { name: 'prod-vault', env: process.env },
 * );
 * const { value, version } = await provider.resolve({ path: 'app/db' }); // value: '{"password":"…","user":"app"}'
 * await provider.close();
 * @throws ProviderError from `createProvider`: DSO_PROVIDER_INVALID_CONFIG for a configuration
 *   the schema refuses, an unreadable TLS file, or a token or secret ID variable that is not set
 */
export const vaultProvider: ProviderDefinition<VaultProviderConfig> = defineProvider({
  type: 'vault',
  description: 'HashiCorp Vault KV version 2 (token or AppRole auth, namespaces, TLS, versions)',
  capabilities: {
    list: VAULT_CAPABILITIES.list,
    probe: VAULT_CAPABILITIES.probe,
    health: VAULT_CAPABILITIES.health,
  },
  configSchema: vaultProviderConfigSchema,
  create: (config, context) => openVaultProvider(config, context),
});
