import { defineProvider } from '@dso/provider-sdk';
import { AZURE_CAPABILITIES, createAzureProvider } from './azure-provider.js';
import { type AzureProviderConfig, azureConfigSchema } from './config.js';

/**
 * The `azure` provider type: Azure Key Vault secrets through the Azure SDK
 * (`@azure/keyvault-secrets`, `@azure/identity`), with resolve, list and health. Its
 * configuration is {@link azureConfigSchema}; load it with
 * `createProvider(azureProvider, config, { name, env })`, or out of process by its package name.
 *
 * @throws ProviderError (from `create`) DSO_PROVIDER_INVALID_CONFIG for a configuration the
 *   schema refuses, an unreadable `tls.caFile`, or an unset `credential.clientSecretEnv`
 * @throws ProviderError (from calls) DSO_PROVIDER_NOT_FOUND, _UNAUTHORIZED, _THROTTLED,
 *   _UNAVAILABLE, _TIMEOUT, _INVALID_CONFIG, _INTERNAL: see the README's errors table
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import { azureProvider } from '@dso/provider-azure';
 * const provider = await createProvider(
 *   azureProvider,
 *   { vaultUrl: 'https://myvault.vault.azure.net/', credential: { kind: 'managedIdentity' } },
 *   { name: 'prod-azure' },
 * );
 */
export const azureProvider = defineProvider<AzureProviderConfig>({
  type: 'azure',
  description: 'Azure Key Vault secrets (Azure SDK): versions, list, credential chain',
  capabilities: AZURE_CAPABILITIES,
  configSchema: azureConfigSchema,
  create: createAzureProvider,
});
