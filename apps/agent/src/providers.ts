import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type DsoConfig, DsoError, type Logger, type ProviderConfig } from '@dso/core';
import {
  checkSdkApiVersion,
  createProcessProvider,
  createProvider,
  isProviderDefinition,
  type ProviderLogger,
  type SecretProvider,
} from '@dso/provider-sdk';

/** The package behind each built-in provider type; they ship with the agent. */
export const BUILTIN_PROVIDER_PACKAGES: Readonly<Record<string, string>> = Object.freeze({
  local: '@dso/provider-local',
  env: '@dso/provider-env',
  file: '@dso/provider-file',
  vault: '@dso/provider-vault',
  aws: '@dso/provider-aws',
  azure: '@dso/provider-azure',
});

/**
 * Environment variables each built-in type reads, passed to its process on top of `PATH`,
 * `HOME` and the entry's own `env` list. Nothing else of the agent's environment reaches a
 * provider.
 */
const BUILTIN_ENV: Readonly<Record<string, readonly string[]>> = Object.freeze({
  local: ['DSO_HOME', 'DSO_VAULT_*'],
  env: [],
  file: [],
  vault: ['VAULT_*'],
  aws: ['AWS_*'],
  azure: ['AZURE_*', 'IDENTITY_*', 'MSI_*'],
});

/** Options of {@link startProviders}. */
export interface StartProvidersOptions {
  /** The agent's environment, filtered per provider. */
  env: NodeJS.ProcessEnv;
  logger: Logger;
  /** Where the built-in packages resolve from. @default this file's folder */
  builtinFrom?: string;
  /** Node arguments for provider processes (tests run TypeScript sources: tsx). @default [] */
  execArgv?: string[];
}

/**
 * Starts one provider per configured name: a built-in type from the agent's own packages, any
 * other type as a package installed in `pluginsDir`, in its own process (`mode: process`, the
 * default: JSON-RPC over stdio through the SDK's runner) or in the agent's (`mode: inline`).
 * Each provider sees only the environment variables it needs. A provider that fails to start
 * stops the agent with a clear error: serving from a half-configured set of stores would fail
 * later and less clearly.
 *
 * @throws DsoError DSO_AGENT_PROVIDER_NOT_INSTALLED when a third-party package is not in pluginsDir
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG for a bad configuration or an SDK API version
 *   this agent does not support
 */
export async function startProviders(
  config: Pick<DsoConfig, 'providers' | 'pluginsDir'>,
  options: StartProvidersOptions,
): Promise<Map<string, SecretProvider>> {
  const providers = new Map<string, SecretProvider>();
  try {
    for (const [name, entry] of Object.entries(config.providers)) {
      providers.set(name, await startProvider(name, entry, config.pluginsDir, options));
    }
    return providers;
  } catch (error) {
    // Leave no process behind: the agent exits with the error.
    await Promise.all([...providers.values()].map((provider) => provider.close().catch(() => {})));
    throw error;
  }
}

async function startProvider(
  name: string,
  entry: ProviderConfig,
  pluginsDir: string,
  options: StartProvidersOptions,
): Promise<SecretProvider> {
  const builtin = BUILTIN_PROVIDER_PACKAGES[entry.type];
  const modulePath = resolveProviderModule(
    name,
    builtin ?? entry.type,
    builtin === undefined ? pluginsDir : (options.builtinFrom ?? import.meta.dirname),
    builtin === undefined,
  );
  const env = providerEnv(entry, options.env);
  const log = options.logger.child({ provider: name });
  if (entry.mode === 'inline') {
    const loaded = (await import(pathToFileURL(modulePath).href)) as Record<string, unknown>;
    const definition = loaded.default ?? loaded.provider;
    if (!isProviderDefinition(definition)) {
      throw new DsoError(
        'DSO_AGENT_PROVIDER_INVALID',
        `provider "${name}": ${entry.type} does not export a provider definition (default or \`provider\`, made with defineProvider)`,
        { provider: name },
      );
    }
    checkSdkApiVersion(definition, name);
    return createProvider(definition, entry.config, { name, env, log: providerLogger(log) });
  }
  return createProcessProvider({
    name,
    module: modulePath,
    config: entry.config,
    env,
    ...(options.execArgv === undefined ? {} : { execArgv: options.execArgv }),
    callTimeoutMs: entry.timeoutMs,
    failureThreshold: entry.failureThreshold,
    restart: { maxDelayMs: entry.circuitOpenMs },
    onLog: ({ level, message, fields, source }) => {
      // The logger redacts every line; stderr text is the provider's own and stays bounded.
      log[level]({ ...fields, source }, message);
    },
  });
}

/**
 * The file a provider type loads from: a package name resolved from `from` (the agent's own
 * folder for built-ins, `pluginsDir` for the rest).
 */
function resolveProviderModule(
  name: string,
  packageName: string,
  from: string,
  plugin: boolean,
): string {
  if (plugin && !existsSync(from)) {
    throw notInstalled(name, packageName, from);
  }
  try {
    return createRequire(join(from, 'noop.js')).resolve(packageName);
  } catch (error) {
    if (plugin) throw notInstalled(name, packageName, from, error);
    throw new DsoError(
      'DSO_AGENT_PROVIDER_INVALID',
      `provider "${name}": the built-in package ${packageName} cannot be loaded: reinstall the agent`,
      { provider: name, cause: error },
    );
  }
}

function notInstalled(name: string, packageName: string, dir: string, cause?: unknown): DsoError {
  return new DsoError(
    'DSO_AGENT_PROVIDER_NOT_INSTALLED',
    `provider "${name}" has type ${packageName}, which is neither built in nor installed in ${dir}: ` +
      `install it with \`npm install --prefix ${dir} ${packageName}\` (pluginsDir in dso.yaml)`,
    { provider: name, ...(cause === undefined ? {} : { cause }) },
  );
}

/** `PATH`, `HOME`, what the type reads, and the entry's own list: nothing more. */
export function providerEnv(
  entry: Pick<ProviderConfig, 'type' | 'env' | 'config'>,
  env: NodeJS.ProcessEnv,
): Record<string, string> {
  const patterns = ['PATH', 'HOME', ...(BUILTIN_ENV[entry.type] ?? []), ...entry.env];
  if (entry.type === 'env' && Array.isArray(entry.config.allow)) {
    for (const name of entry.config.allow) if (typeof name === 'string') patterns.push(name);
  }
  const picked: Record<string, string> = {};
  for (const [key, value] of Object.entries(env)) {
    if (value === undefined) continue;
    if (patterns.some((pattern) => matches(pattern, key))) picked[key] = value;
  }
  return picked;
}

function matches(pattern: string, name: string): boolean {
  return pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern;
}

function providerLogger(log: Logger): ProviderLogger {
  return {
    debug: (message, fields) => log.debug(fields ?? {}, message),
    info: (message, fields) => log.info(fields ?? {}, message),
    warn: (message, fields) => log.warn(fields ?? {}, message),
    error: (message, fields) => log.error(fields ?? {}, message),
  };
}
