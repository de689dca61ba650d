/**
 * @dso/provider-sdk: the contract every DSO secret-store backend implements, and the
 * out-of-process protocol that runs one in a child process (PROTOCOL.md).
 *
 * @example
 * import { createProcessProvider, createProvider, defineProvider, ProviderError, SecretValue } from '@dso/provider-sdk';
 * import { z } from 'zod';
 *
 * const staticProvider = defineProvider({
 *   type: 'static',
 *   configSchema: z.object({ secrets: z.record(z.string(), z.string()) }),
 *   create: (config, { name }) => ({
 *     name,
 *     capabilities: { list: false, watch: false, probe: false, health: false },
 *     async resolve({ path }) {
 *       const text = config.secrets[path];
 *       if (text === undefined) throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { provider: name, path });
 *       return { value: SecretValue.fromText(text), version: '1' };
 *     },
 *     async close() {},
 *   }),
 * });
 *
 * // In process (embedded tooling):
 * const inProcess = await createProvider(staticProvider, { secrets: { 'app/db': 's3cret' } }, { name: 'static' });
 * (await inProcess.resolve({ path: 'app/db' })).value.revealText(); // 's3cret'
 *
 * // In a child process (the default for the agent): the runner imports the package by name.
 * const child = await createProcessProvider({ name: 'acme', module: 'dso-provider-acme', resolveFrom: '/var/lib/dso/plugins', config: {} });
 * await child.close();
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
  createPrivateFile,
  isPrivateFileError,
  PrivateFileError,
  type PrivateFileProblem,
  type ReadPrivateFileOptions,
  readPrivateFile,
  type WritePrivateFileOptions,
  writePrivateFile,
} from './private-file.js';
export {
  type ServeProviderOptions,
  type ServeResult,
  serveProvider,
} from './protocol/child.js';
export {
  createProcessProvider,
  DEFAULT_CALL_TIMEOUT_MS,
  DEFAULT_FAILURE_THRESHOLD,
  DEFAULT_RESTART_BASE_DELAY_MS,
  DEFAULT_RESTART_MAX_DELAY_MS,
  MAX_STDERR_LINE_BYTES,
  MIN_START_TIMEOUT_MS,
  type ProcessProvider,
  type ProcessProviderLogEntry,
  type ProcessProviderOptions,
  type ProcessProviderState,
} from './protocol/host.js';
export {
  type LoadProviderModuleOptions,
  loadProviderModule,
  resolveProviderModule,
} from './protocol/load-module.js';
export {
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_SECRET_BYTES,
  MESSAGE_OVERHEAD_BYTES,
  MIN_MAX_MESSAGE_BYTES,
  maxMessageBytesAdvice,
  maxSecretBytesFor,
  messageBytesFor,
  PROTOCOL_VERSION,
} from './protocol/messages.js';
export {
  inspectProviderPackage,
  needsSuppliedSdk,
  PROVIDER_PACKAGE_NAME,
  PROVIDER_SDK_PACKAGE,
  PROVIDER_SDK_VERSION,
  type ProviderPackageInfo,
  sdkProblem,
  supplySdkToPlugins,
} from './protocol/plugin-sdk.js';
export {
  findProviderPackageDir,
  type ProviderCommand,
  readProviderCommand,
} from './protocol/provider-package.js';
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
export { satisfiesVersionRange } from './version-range.js';
