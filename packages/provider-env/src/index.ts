/**
 * @dso/provider-env: serves variables of the agent's environment as secrets, restricted to the
 * names and `PREFIX*` patterns its configuration allows. Nothing outside the allow-list is ever
 * readable, and a refused name gets the same answer whether or not it is set.
 *
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import env from '@dso/provider-env';
 *
 * const provider = await createProvider(env, { allow: ['DB_PASSWORD', 'APP_*'] }, {
 *   name: 'env',
 *   env: { DB_PASSWORD: 's3cret', APP_TOKEN: 't0ken', HOME: '/root' },
 * });
 * const { value, version } = await provider.resolve({ path: 'DB_PASSWORD' });
 * value.revealText();                 // 's3cret'
 * version;                            // first 16 hex digits of the value's SHA-256
 * await provider.list?.();            // ['APP_TOKEN', 'DB_PASSWORD']
 * await provider.resolve({ path: 'HOME' }); // rejects: DSO_PROVIDER_NOT_FOUND (not allowed)
 * await provider.close();
 */
export {
  ALLOW_ENTRY,
  type AllowList,
  allowedEnvironment,
  compileAllowList,
  isReserved,
  isVariableName,
  MAX_VARIABLE_NAME_LENGTH,
  RESERVED_PREFIX,
  RESERVED_VARIABLES,
  VARIABLE_NAME,
} from './allow-list.js';
export {
  type EnvProviderConfig,
  envProvider as default,
  envProvider as provider,
  envProviderConfigSchema,
  MAX_ALLOW_ENTRIES,
} from './definition.js';
export {
  createEnvProvider,
  type EnvEncoding,
  type EnvProviderOptions,
  valueVersion,
} from './env-provider.js';
