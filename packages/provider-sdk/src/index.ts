/**
 * @dso/provider-sdk: the contract every DSO secret-store backend implements.
 *
 * @example
 * import { ProviderError, SecretValue, type SecretProvider } from '@dso/provider-sdk';
 *
 * const provider: SecretProvider = {
 *   name: 'static',
 *   capabilities: { list: false },
 *   async resolve({ path }) {
 *     if (path !== 'app/db') throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { provider: 'static', path });
 *     return { value: SecretValue.fromText('s3cret'), version: '1' };
 *   },
 *   async close() {},
 * };
 */
export {
  type CreateProviderOptions,
  checkSdkApiVersion,
  createProvider,
  defineProvider,
  isProviderDefinition,
  PROVIDER_SDK_API_VERSION,
  type ProviderContext,
  type ProviderDefinition,
  type ProviderDefinitionInput,
  type ProviderLogger,
  SILENT_LOGGER,
  SUPPORTED_PROVIDER_SDK_API_VERSIONS,
} from './define-provider.js';
export {
  type CallOptions,
  OPTIONAL_OPERATIONS,
  type ProviderCapabilities,
  type ProviderHealth,
  type ResolvedSecret,
  type SecretChange,
  type SecretProvider,
  type SecretRequest,
  type SecretVersion,
} from './provider.js';
export {
  isProviderError,
  PROVIDER_ERROR_CODES,
  ProviderError,
  type ProviderErrorCode,
  type ProviderErrorOptions,
  toProviderError,
} from './provider-error.js';
export { isSecretValue, SecretValue } from './secret-value.js';
export { selectField } from './select-field.js';
