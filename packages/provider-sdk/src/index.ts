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
export type {
  CallOptions,
  ProviderCapabilities,
  ResolvedSecret,
  SecretProvider,
  SecretRequest,
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
