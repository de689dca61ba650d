import { defineProvider, type ProviderDefinition } from '@dso/provider-sdk';
import { z } from 'zod';
import { ALLOW_ENTRY, MAX_VARIABLE_NAME_LENGTH } from './allow-list.js';
import { createEnvProvider } from './env-provider.js';

/** The most entries an allow-list may have. */
export const MAX_ALLOW_ENTRIES = 1000;

/** Configuration of an `env` provider. */
export const envProviderConfigSchema = z.strictObject({
  /**
   * Variable names (`DB_PASSWORD`) or prefixes followed by `*` (`APP_*`) it may serve. A bare
   * `*` is refused: it would serve the agent's whole environment.
   */
  allow: z
    .array(
      z
        .string()
        .max(
          MAX_VARIABLE_NAME_LENGTH,
          `an allow entry is at most ${MAX_VARIABLE_NAME_LENGTH} characters`,
        )
        .regex(
          ALLOW_ENTRY,
          'an allow entry must be a variable name (letters, digits, _ . / -) or such a prefix followed by one * (e.g. APP_*); a bare * would serve the whole environment, the agent’s own credentials included',
        ),
    )
    .min(1, 'allow must name at least one variable or PREFIX* pattern')
    .max(MAX_ALLOW_ENTRIES, `allow has at most ${MAX_ALLOW_ENTRIES} entries`),
  /** `text` (UTF-8) or `base64` (decoded; for binary secrets). */
  encoding: z.enum(['text', 'base64']).default('text'),
});

/** A validated `env` provider configuration. */
export type EnvProviderConfig = z.infer<typeof envProviderConfigSchema>;

/**
 * The `env` provider type: variables of the environment the host gives it
 * (`ProviderContext.env`), restricted to its allow-list. Capabilities: list and probe.
 *
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import env from '@dso/provider-env';
 *
 * const provider = await createProvider(env, { allow: ['DB_PASSWORD', 'APP_*'] }, { name: 'env' });
 * const { value, version } = await provider.resolve({ path: 'DB_PASSWORD' });
 * @throws ProviderError from `createProvider`: DSO_PROVIDER_INVALID_CONFIG for a configuration
 *   its schema refuses; from calls, as `createEnvProvider`
 */
export const envProvider: ProviderDefinition<EnvProviderConfig> = defineProvider({
  type: 'env',
  description: "the agent's environment variables, restricted to an allow-list",
  capabilities: { list: true, probe: true },
  configSchema: envProviderConfigSchema,
  create: (config, context) =>
    createEnvProvider({
      name: context.name,
      allow: config.allow,
      encoding: config.encoding,
      env: context.env,
    }),
});
