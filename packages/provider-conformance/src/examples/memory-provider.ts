import { backoffDelay, pause } from '@dso/async';
import {
  defineProvider,
  isProviderError,
  type ProviderCapabilities,
  type ProviderContext,
  type ProviderDefinition,
  ProviderError,
  type ProviderErrorCode,
  type SecretChange,
  type SecretProvider,
  SecretValue,
} from '@dso/provider-sdk';
import { z } from 'zod';

/**
 * The example provider's configuration: where the store listens, and which environment
 * variable holds its token (a secret never goes into the configuration itself).
 */
export const memoryProviderConfig = z.strictObject({
  url: z.url({ protocol: /^https?$/ }),
  tokenEnv: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/)
    .default('DSO_MEMORY_STORE_TOKEN'),
});

export type MemoryProviderConfig = z.infer<typeof memoryProviderConfig>;

/** How long one watch request is held by the store before it answers with no change. */
const WATCH_WAIT_MS = 10_000;
/** Backoff of a watch whose store fails, between its first and its longest retry. */
const WATCH_RETRY = { baseMs: 100, maxMs: 2_000, jitter: 'none' } as const;

const CODE_BY_STATUS: Record<number, ProviderErrorCode> = {
  401: 'DSO_PROVIDER_UNAUTHORIZED',
  403: 'DSO_PROVIDER_UNAUTHORIZED',
  404: 'DSO_PROVIDER_NOT_FOUND',
  429: 'DSO_PROVIDER_THROTTLED',
};

/**
 * Defines a provider of the example memory store (see `memory-store.ts`) implementing the
 * `capabilities` asked for: a model of a provider package, and the suite's own test subject.
 *
 * @example
 * export default defineMemoryProvider({ type: 'memory', capabilities: { list: true, watch: true, probe: true, health: true } });
 */
export function defineMemoryProvider(options: {
  type: string;
  capabilities: Partial<ProviderCapabilities>;
}): ProviderDefinition<MemoryProviderConfig> {
  return defineProvider({
    type: options.type,
    description:
      'the conformance suite’s example: a versioned store in memory, served over HTTP on loopback',
    capabilities: options.capabilities,
    configSchema: memoryProviderConfig,
    create: (config, context) => createMemoryProvider(config, context, options.capabilities),
  });
}

function createMemoryProvider(
  config: MemoryProviderConfig,
  context: ProviderContext,
  declared: Partial<ProviderCapabilities>,
): SecretProvider {
  const { name, log } = context;
  const token = context.env[config.tokenEnv];
  if (token === undefined || token === '') {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider ${name}: environment variable ${config.tokenEnv} is not set; set it to the store's token`,
      { provider: name },
    );
  }
  const base = config.url.replace(/\/+$/, '');

  /** One request to the store; failures become ProviderErrors named by path, never by value. */
  const request = async (
    operation: string,
    route: string,
    init: { query?: Record<string, string>; body?: unknown; signal?: AbortSignal; path?: string },
  ): Promise<unknown> => {
    const url = new URL(`${base}${route}`);
    for (const [key, value] of Object.entries(init.query ?? {})) url.searchParams.set(key, value);
    const subject = init.path === undefined ? '' : ` ${init.path}`;
    let response: Response;
    try {
      response = await fetch(url, {
        method: init.body === undefined ? 'GET' : 'POST',
        headers: {
          authorization: `Bearer ${token}`,
          ...(init.body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(init.body === undefined ? {} : { body: JSON.stringify(init.body) }),
        ...(init.signal === undefined ? {} : { signal: init.signal }),
      });
    } catch (error) {
      if (init.signal?.aborted) {
        throw new ProviderError(
          'DSO_PROVIDER_TIMEOUT',
          `provider ${name}: ${operation}${subject} was aborted`,
          {
            provider: name,
            path: init.path,
            cause: init.signal.reason,
          },
        );
      }
      log.warn('store unreachable', { operation });
      throw new ProviderError(
        'DSO_PROVIDER_UNAVAILABLE',
        `provider ${name}: cannot reach the store at ${base} for ${operation}${subject}; check that it runs`,
        { provider: name, path: init.path, cause: error },
      );
    }
    if (response.ok) {
      try {
        return await response.json();
      } catch {
        // A JSON parse error can quote the body, which may hold a value: it is dropped, and
        // only the fact that the answer was cut short or malformed is kept.
        if (init.signal?.aborted) {
          throw new ProviderError(
            'DSO_PROVIDER_TIMEOUT',
            `provider ${name}: ${operation}${subject} was aborted`,
            {
              provider: name,
              path: init.path,
            },
          );
        }
        throw new ProviderError(
          'DSO_PROVIDER_INTERNAL',
          `provider ${name}: the store sent a malformed answer to ${operation}${subject}`,
          {
            provider: name,
            path: init.path,
          },
        );
      }
    }
    // An error body is never read into the error: a backend's message may quote what it was sent.
    await response.body?.cancel().catch(() => undefined);
    const code = CODE_BY_STATUS[response.status] ?? 'DSO_PROVIDER_UNAVAILABLE';
    log.warn('store refused a request', { operation, status: response.status });
    const hint: Partial<Record<ProviderErrorCode, string>> = {
      DSO_PROVIDER_UNAUTHORIZED: `check the token in ${config.tokenEnv}`,
      DSO_PROVIDER_NOT_FOUND: 'store it first, or check the path and version',
      DSO_PROVIDER_THROTTLED: 'retry later',
    };
    const what =
      code === 'DSO_PROVIDER_NOT_FOUND'
        ? `no secret at${subject}${init.query?.version === undefined ? '' : ` version ${init.query.version}`}`
        : `${operation}${subject} failed with HTTP ${response.status}`;
    throw new ProviderError(
      code,
      `provider ${name}: ${what}; ${hint[code] ?? 'retry later, or check the store'}`,
      {
        provider: name,
        path: init.path,
      },
    );
  };

  const provider: SecretProvider = {
    name,
    capabilities: {
      list: declared.list === true,
      watch: declared.watch === true,
      probe: declared.probe === true,
      health: declared.health === true,
    },

    async resolve({ path, version }, options = {}) {
      log.debug('resolve', { path, ...(version === undefined ? {} : { version }) });
      const body = (await request('resolve', '/v1/secret', {
        query: { path, ...(version === undefined ? {} : { version }) },
        signal: options.signal,
        path,
      })) as { version: string; value: string };
      const bytes = Buffer.from(body.value, 'base64');
      try {
        return { value: SecretValue.fromBytes(bytes), version: body.version };
      } finally {
        bytes.fill(0);
      }
    },

    async close() {
      log.debug('closed');
    },
  };

  if (declared.list) {
    provider.list = async (prefix = '', options = {}) => {
      const body = (await request('list', '/v1/list', {
        query: { prefix },
        signal: options.signal,
      })) as {
        paths: string[];
      };
      return body.paths;
    };
  }
  if (declared.probe) {
    provider.probe = async ({ path }, options = {}) => {
      const body = (await request('probe', '/v1/version', {
        query: { path },
        signal: options.signal,
        path,
      })) as {
        version: string;
      };
      return { version: body.version };
    };
  }
  if (declared.health) {
    provider.health = async (options = {}) => {
      try {
        await request('health', '/v1/health', { signal: options.signal });
        return { ok: true };
      } catch (error) {
        if (options.signal?.aborted) throw error;
        return { ok: false, detail: isProviderError(error) ? error.code : 'store unreachable' };
      }
    };
  }
  if (declared.watch) {
    provider.watch = (paths, { signal }) => watchStore(paths, signal);
  }

  /**
   * Long polls the store: the first request takes the current versions as a baseline, each
   * next one is held until a version differs from it. A failing store is retried with backoff
   * until the signal aborts, since a watch outlives a store's restarts.
   */
  async function* watchStore(
    paths: readonly string[],
    signal: AbortSignal,
  ): AsyncIterable<SecretChange> {
    let known: Record<string, string | null> | undefined;
    let failures = 0;
    while (!signal.aborted) {
      let current: Record<string, string | null>;
      try {
        const body = (await request('watch', '/v1/watch', {
          body: { paths, known, waitMs: known === undefined ? 0 : WATCH_WAIT_MS },
          signal,
        })) as { current: Record<string, string | null> };
        current = body.current;
        failures = 0;
      } catch (error) {
        if (signal.aborted) return;
        if (!isProviderError(error) || !error.retryable) throw error;
        failures += 1;
        const retryMs = backoffDelay(failures, WATCH_RETRY);
        log.warn('watch failed, retrying', { code: error.code, retryMs });
        await pause(retryMs, { signal });
        continue;
      }
      const previous = known;
      known = current;
      if (previous === undefined) continue;
      for (const path of paths) {
        const version = current[path];
        if (version !== null && version !== undefined && version !== previous[path]) {
          yield { path, version };
        }
      }
    }
  }

  return provider;
}

/** The example with every capability: list, watch, probe and health. */
export const memoryProvider = defineMemoryProvider({
  type: 'memory',
  capabilities: { list: true, watch: true, probe: true, health: true },
});

export default memoryProvider;
