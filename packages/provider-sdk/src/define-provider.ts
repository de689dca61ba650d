import type { ZodType } from 'zod';
import {
  type CallOptions,
  OPTIONAL_OPERATIONS,
  type ProviderCapabilities,
  type SecretProvider,
} from './provider.js';
import { ProviderError, toProviderError } from './provider-error.js';
import { isSecretValue } from './secret-value.js';

/**
 * The provider API this SDK speaks. A definition records the version it was built with; a host
 * refuses one it does not support, with a clear error, instead of failing later.
 */
export const PROVIDER_SDK_API_VERSION = 1;
/** Every provider API version this SDK can host. */
export const SUPPORTED_PROVIDER_SDK_API_VERSIONS: readonly number[] = Object.freeze([1]);

/** A type name: what `type:` says in a provider's configuration. */
const TYPE_PATTERN = /^[a-z][a-z0-9-]{0,63}$/;
/** A configured provider's name: what a reference says before `:`. */
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

// A global symbol, so a definition made by another copy of this package is still recognised.
const DEFINITION = Symbol.for('dso.provider-definition');

/** Where a provider writes its log lines. Never pass a secret value: the host redacts anyway. */
export interface ProviderLogger {
  debug(message: string, fields?: Record<string, unknown>): void;
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
  error(message: string, fields?: Record<string, unknown>): void;
}

/** What the host gives a provider when it creates it. */
export interface ProviderContext {
  /** The name it is configured under (`prod-vault`), which its errors should carry. */
  name: string;
  log: ProviderLogger;
  /** The environment it may read (credentials chains, `env` provider): the host chooses it. */
  env: Readonly<Record<string, string | undefined>>;
}

/** A provider type: what a provider package exports (as `default` or `provider`). */
export interface ProviderDefinition<Config = unknown> {
  /** The type name that `type:` in the configuration selects, e.g. `vault`. */
  readonly type: string;
  /** The provider API version it was built with: {@link PROVIDER_SDK_API_VERSION} then. */
  readonly sdkApiVersion: number;
  /** One line for humans: what store it reads. */
  readonly description: string;
  readonly capabilities: ProviderCapabilities;
  /** Validates (and defaults) its configuration; messages must never quote a value. */
  readonly configSchema: ZodType<Config>;
  /** Builds the live provider from a validated configuration. */
  create(config: Config, context: ProviderContext): SecretProvider | Promise<SecretProvider>;
}

/** What {@link defineProvider} takes: capabilities not listed are `false`. */
export interface ProviderDefinitionInput<Config> {
  type: string;
  description?: string;
  capabilities?: Partial<ProviderCapabilities>;
  configSchema: ZodType<Config>;
  create(config: Config, context: ProviderContext): SecretProvider | Promise<SecretProvider>;
}

/**
 * Declares a provider type: its name, the zod schema of its configuration, the optional
 * operations it implements, and `create()`. Export the result from the provider's package
 * (`export default defineProvider({...})`); the agent loads it in process or in a child
 * process through the runner, with the same contract.
 *
 * @throws TypeError for a malformed definition (a programming error, found at import)
 * @example
 * import { z } from 'zod';
 * import { defineProvider, SecretValue, ProviderError } from '@dso/provider-sdk';
 *
 * export default defineProvider({
 *   type: 'static',
 *   description: 'fixed secrets from the configuration (for tests)',
 *   capabilities: { list: true },
 *   configSchema: z.object({ secrets: z.record(z.string(), z.string()) }),
 *   create: (config, { name }) => ({
 *     name,
 *     capabilities: { list: true, watch: false, probe: false, health: false },
 *     async resolve({ path }) {
 *       const text = config.secrets[path];
 *       if (text === undefined) throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { provider: name, path });
 *       return { value: SecretValue.fromText(text), version: '1' };
 *     },
 *     async list(prefix = '') { return Object.keys(config.secrets).filter((p) => p.startsWith(prefix)); },
 *     async close() {},
 *   }),
 * });
 */
export function defineProvider<Config>(
  input: ProviderDefinitionInput<Config>,
): ProviderDefinition<Config> {
  if (typeof input?.type !== 'string' || !TYPE_PATTERN.test(input.type)) {
    throw new TypeError(
      `defineProvider: type ${JSON.stringify(input?.type)} must be lowercase letters, digits and - (at most 64), starting with a letter`,
    );
  }
  if (typeof input.configSchema?.safeParse !== 'function') {
    throw new TypeError(`defineProvider(${input.type}): configSchema must be a zod schema`);
  }
  if (typeof input.create !== 'function') {
    throw new TypeError(`defineProvider(${input.type}): create must be a function`);
  }
  const capabilities = Object.freeze(
    Object.fromEntries(
      OPTIONAL_OPERATIONS.map((operation) => [operation, input.capabilities?.[operation] === true]),
    ) as unknown as ProviderCapabilities,
  );
  const definition: ProviderDefinition<Config> = {
    type: input.type,
    sdkApiVersion: PROVIDER_SDK_API_VERSION,
    description: input.description ?? input.type,
    capabilities,
    configSchema: input.configSchema,
    create: input.create,
  };
  Object.defineProperty(definition, DEFINITION, { value: true });
  return Object.freeze(definition);
}

/** True for a {@link ProviderDefinition} made by any copy of this package. */
export function isProviderDefinition(value: unknown): value is ProviderDefinition {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[DEFINITION] === true
  );
}

/** Options of {@link createProvider}. */
export interface CreateProviderOptions {
  /** The configured name; references use it before `:`. @default the definition's type */
  name?: string;
  /** @default a logger that drops everything */
  log?: ProviderLogger;
  /** @default process.env */
  env?: Readonly<Record<string, string | undefined>>;
}

/** A logger that drops every line. */
export const SILENT_LOGGER: ProviderLogger = Object.freeze({
  debug() {},
  info() {},
  warn() {},
  error() {},
});

/**
 * Creates a provider in this process, for embedded tooling and for the runner's child: checks
 * the definition's SDK API version, validates `config` with its schema (every problem listed,
 * by path, never by value), creates it, cross-checks the capabilities it declared against the
 * methods it has, and returns it guarded: errors normalised to {@link ProviderError} carrying
 * the configured name, results checked to hold a SecretValue and a version, calls refused
 * after `close()`.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG for an unsupported SDK API version or a
 *   configuration its schema refuses
 * @throws ProviderError DSO_PROVIDER_INTERNAL when the provider does not implement what it
 *   declared (or implements what it did not)
 * @example
 * import vault from '@dso/provider-vault';
 * const provider = await createProvider(vault, { address: 'https://vault:8200', auth: { token: process.env.VAULT_TOKEN } }, { name: 'prod' });
 * const { value, version } = await provider.resolve({ path: 'app/db' }, { signal });
 */
export async function createProvider<Config>(
  definition: ProviderDefinition<Config>,
  config: unknown,
  options: CreateProviderOptions = {},
): Promise<SecretProvider> {
  const name = options.name ?? definition?.type;
  if (!isProviderDefinition(definition)) {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      'not a provider definition: a provider package must export the result of defineProvider() as default or as `provider`',
      { provider: name },
    );
  }
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider name ${JSON.stringify(name)} must be letters, digits, _ . - (at most 64)`,
    );
  }
  checkSdkApiVersion(definition, name);
  const parsed = definition.configSchema.safeParse(config);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map(
        (issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`,
      )
      .join('; ');
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `invalid configuration for provider ${name} (type ${definition.type}): ${problems}`,
      { provider: name },
    );
  }
  let provider: SecretProvider;
  try {
    provider = await definition.create(parsed.data, {
      name,
      log: options.log ?? SILENT_LOGGER,
      env: options.env ?? process.env,
    });
  } catch (error) {
    throw toProviderError(error, name);
  }
  for (const operation of OPTIONAL_OPERATIONS) {
    const declared = definition.capabilities[operation];
    const implemented = typeof provider?.[operation] === 'function';
    if (declared !== implemented) {
      await provider?.close?.().catch(() => undefined);
      throw new ProviderError(
        'DSO_PROVIDER_INTERNAL',
        `provider ${name} (type ${definition.type}) ${declared ? 'declares' : 'does not declare'} ` +
          `${operation} but ${implemented ? 'implements' : 'does not implement'} it: fix its definition`,
        { provider: name },
      );
    }
  }
  return guardProvider(provider, name, definition.capabilities);
}

/**
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when the definition was built for an SDK
 *   API version this host does not support
 */
export function checkSdkApiVersion(
  definition: { sdkApiVersion: unknown; type: unknown },
  name?: string,
): void {
  if (!SUPPORTED_PROVIDER_SDK_API_VERSIONS.includes(definition.sdkApiVersion as number)) {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider type ${String(definition.type)} was built for provider SDK API version ` +
        `${String(definition.sdkApiVersion)}; this host supports ${SUPPORTED_PROVIDER_SDK_API_VERSIONS.join(', ')}: ` +
        'install a release of the provider built for it, or upgrade DSO',
      name === undefined ? {} : { provider: name },
    );
  }
}

function guardProvider(
  inner: SecretProvider,
  name: string,
  capabilities: ProviderCapabilities,
): SecretProvider {
  let closed = false;
  const open = (operation: string) => {
    if (closed) {
      throw new ProviderError(
        'DSO_PROVIDER_INTERNAL',
        `provider ${name} is closed: cannot ${operation}`,
        {
          provider: name,
        },
      );
    }
  };
  const call = async <T>(
    operation: string,
    options: CallOptions | undefined,
    run: () => Promise<T>,
  ) => {
    open(operation);
    try {
      options?.signal?.throwIfAborted();
      return await run();
    } catch (error) {
      throw toProviderError(error, name);
    }
  };
  const guarded: SecretProvider = {
    name,
    capabilities,
    resolve: (request, options) =>
      call('resolve', options, async () => {
        checkPath(request?.path, name);
        const result = await inner.resolve(request, options);
        if (!isSecretValue(result?.value) || typeof result.version !== 'string') {
          result?.value?.dispose?.();
          throw new ProviderError(
            'DSO_PROVIDER_INTERNAL',
            `provider ${name} returned something other than { value: SecretValue, version: string } for ${request.path}`,
            { provider: name, path: request.path },
          );
        }
        return result;
      }),
    async close() {
      if (closed) return;
      closed = true;
      try {
        await inner.close();
      } catch (error) {
        throw toProviderError(error, name);
      }
    },
  };
  if (inner.list) {
    const list = inner.list.bind(inner);
    guarded.list = (prefix, options) => call('list', options, () => list(prefix, options));
  }
  if (inner.probe) {
    const probe = inner.probe.bind(inner);
    guarded.probe = (request, options) =>
      call('probe', options, async () => {
        checkPath(request?.path, name);
        const result = await probe(request, options);
        if (typeof result?.version !== 'string') {
          throw new ProviderError(
            'DSO_PROVIDER_INTERNAL',
            `provider ${name} probe returned no version`,
            {
              provider: name,
              path: request.path,
            },
          );
        }
        return { version: result.version };
      });
  }
  if (inner.health) {
    const health = inner.health.bind(inner);
    guarded.health = (options) => call('health', options, () => health(options));
  }
  if (inner.watch) {
    const watch = inner.watch.bind(inner);
    guarded.watch = (paths, options) => {
      open('watch');
      return (async function* () {
        try {
          yield* watch(paths, options);
        } catch (error) {
          if (options.signal.aborted) return;
          throw toProviderError(error, name);
        }
      })();
    };
  }
  return guarded;
}

function checkPath(path: unknown, name: string): void {
  if (typeof path !== 'string' || path === '' || path.length > 1024) {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      'a secret path must be a non-empty string of at most 1024 characters',
      {
        provider: name,
      },
    );
  }
}
