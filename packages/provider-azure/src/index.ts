/**
 * @dso/provider-azure: the DSO provider for Azure Key Vault secrets, on the Azure SDK
 * (`@azure/keyvault-secrets` and `@azure/identity`). A path maps to a secret name with each `/`
 * written as `--` (`app/db` is the secret `app--db`); a version is Key Vault's 32-character
 * version id. Tokens come from a service principal, workload identity or managed identity, read
 * from the provider's own environment. `list` pages through the vault's secrets; `health`
 * reads one page of metadata. There is no `probe`: Key Vault cannot tell a secret's current
 * version without sending its value (see the README).
 *
 * @example
 * import { createProvider, selectField } from '@dso/provider-sdk';
 * import azure from '@dso/provider-azure';
 *
 * // Key Vault "myvault" holds the secret app--db = {"user":"app","password":"s3cret"}
 * const provider = await createProvider(
 *   azure,
 *   {
 *     vaultUrl: 'https://myvault.vault.azure.net/',
 *     credential: { kind: 'clientSecret', tenantId: '<tenant-guid>', clientId: '<app-guid>', clientSecretEnv: 'AZURE_CLIENT_SECRET' },
 *   },
 *   { name: 'prod-azure', env: { AZURE_CLIENT_SECRET: process.env.AZURE_CLIENT_SECRET } },
 * );
 * const { value, version } = await provider.resolve({ path: 'app/db' }, { signal: AbortSignal.timeout(30_000) });
 * `${value}`;                                    // '[REDACTED]'
 * selectField(value, 'password').revealText();  // 's3cret' (what dso://prod-azure:app/db#password gives)
 * version;                                       // e.g. '4c2f0e8a9b7d4e1f8a6b5c3d2e1f0a9b'
 * await provider.list?.('app/');                 // ['app/db']
 * await provider.close();
 */
export {
  AzureServiceError,
  MAX_QUOTED_MESSAGE_CHARS,
} from './azure-error.js';
export {
  AZURE_CAPABILITIES,
  createAzureProvider,
  MAX_LIST_PATHS,
  MAX_SOCKETS,
} from './azure-provider.js';
export {
  type AzureCredentialConfig,
  type AzureProviderConfig,
  type AzureProviderConfigInput,
  azureConfigSchema,
  DEFAULT_AUTHORITY_HOST,
  DEFAULT_MAX_RETRIES,
  DEFAULT_MAX_RETRY_DELAY_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRY_DELAY_MS,
  KEY_VAULT_SERVICE_VERSIONS,
} from './config.js';
export {
  azureProvider as default,
  azureProvider as provider,
  azureProvider,
} from './definition.js';
export {
  BINARY_CONTENT_TYPE,
  type EncodedSecret,
  encodeSecretValue,
} from './secret-encoding.js';
export {
  isSecretVersionId,
  MAX_SECRET_NAME_LENGTH,
  PATH_SEPARATOR_IN_NAME,
  pathForSecretName,
  secretNameForPath,
} from './secret-name.js';
