import {
  type Cache,
  type CacheResult,
  type Clock,
  cacheKey,
  DsoError,
  errorCode,
  formatReference,
  type Logger,
  type RedactionLease,
  type Redactor,
  type SecretReference,
} from '@dso/core';
import { type SecretProvider, type SecretValue, selectField } from '@dso/provider-sdk';
import type { DeliveredFile } from './agent-types.js';
import type { AgentMetrics } from './observability.js';

/** What the secret resolver needs from the agent. */
export interface SecretResolverContext {
  providers: ReadonlyMap<string, SecretProvider>;
  /** The provider a reference without one uses. */
  defaultProvider: string;
  cache: Cache;
  /**
   * Every value is registered here as soon as it arrives from a provider, for as long as a
   * SecretValue of it lives, and for as long as a consumer holds it ({@link SecretResolver.hold}).
   */
  redactor: Redactor;
  logger: Logger;
  metrics?: AgentMetrics | undefined;
  /** Reads the cache's time, for the staleness check. */
  clock: Clock;
  /** Per provider, how long past its expiry a last known value may serve (absent: the cache's own bound). */
  maxStalenessMs: ReadonlyMap<string, number>;
}

/** One secret, resolved: the value is the caller's to dispose. */
export interface ResolvedSecret {
  /** The reference as written (formatted). */
  formatted: string;
  provider: string;
  version: string;
  value: SecretValue;
  cacheHit: boolean;
}

/** One file's content, copied out of its SecretValue, with what the audit and digests need. */
export interface ResolvedFile {
  name: string;
  content: Buffer;
  reference: string;
  provider: string;
  version: string;
  cacheHit: boolean;
}

/** The agent's one way to a secret's value: cache, providers, versions, staleness. */
export interface SecretResolver {
  /**
   * One secret through the cache: one provider call however many containers want it at once,
   * and the last known value while the provider is down, within the provider's maximum
   * staleness. The value, field selected, is the caller's to dispose.
   * @throws DsoError DSO_AGENT_PROVIDER_UNKNOWN, DSO_AGENT_RESOLVE_FAILED (naming the reference)
   */
  resolve(reference: SecretReference, signal: AbortSignal): Promise<ResolvedSecret>;
  /**
   * Each entry's reference in order; the values are the caller's to dispose, and all are
   * disposed when one fails.
   */
  resolveEach<T extends { name: string; reference: SecretReference }>(
    entries: readonly T[],
    signal: AbortSignal,
  ): Promise<Array<ResolvedSecret & { name: string }>>;
  /** Each file's content as a Buffer the caller zeroes (the SecretValues are disposed). */
  resolveFiles(
    files: ReadonlyArray<{ name: string; reference: SecretReference }>,
    signal: AbortSignal,
  ): Promise<ResolvedFile[]>;
  /** Each variable's reference and current version (values disposed at once). */
  versionsOf(
    variables: ReadonlyArray<{ name: string; reference: SecretReference }>,
    signal: AbortSignal,
  ): Promise<DeliveredFile[]>;
  /**
   * Asks the provider again past the cache and stores the answer there. A provider that fails
   * leaves the cached (last known good) value in place.
   * @returns whether the provider answered
   */
  refresh(provider: string, path: string, signal: AbortSignal): Promise<boolean>;
  /** The provider a formatted reference names, or the default. */
  providerOf(reference: string): string;
  /**
   * A consumer (a container) now holds these values, delivered: the redactor keeps them until
   * the consumer is given others or {@link SecretResolver.letGo} says it is gone. Call while
   * the contents are still intact (they are registered again, not kept).
   */
  hold(consumerId: string, contents: readonly Uint8Array[]): void;
  /** The consumer is gone: the values only it held are forgotten by the redactor. */
  letGo(consumerId: string): void;
}

/**
 * The agent's secret resolution.
 *
 * @example
 * const secrets = createSecretResolver({ providers, defaultProvider: 'local', cache, redactor, logger, clock, maxStalenessMs: new Map() });
 * const { value } = await secrets.resolve(parseReference('dsofile://app/db'), signal);
 */
export function createSecretResolver(context: SecretResolverContext): SecretResolver {
  const { providers, defaultProvider, cache, redactor, logger, metrics, clock } = context;
  /** Per consumer, the redactor's registrations of the values it was last given. */
  const held = new Map<string, RedactionLease[]>();
  /**
   * A file's content is the caller's until it zeroes it, with no call to say when: its value
   * stays registered while the Buffer is reachable (until a consumer holds it, see `hold`),
   * and the registration is given back once the Buffer is garbage.
   */
  const whileReachable = new FinalizationRegistry<RedactionLease>((lease) => lease.release());

  /**
   * Registers a value with the redactor for as long as it lives: the registration is given
   * back when the SecretValue is disposed (a call in flight ends, a value is copied out).
   */
  function registerWhileLive(value: SecretValue): void {
    const lease = redactor.register(value.reveal());
    value.onDispose(() => lease.release());
  }

  /** One call to a provider, counted, its value registered with the redactor at once. */
  async function fetchSecret(
    providerName: string,
    provider: SecretProvider,
    path: string,
    version: string | undefined,
    signal: AbortSignal,
  ): Promise<{ value: SecretValue; version: string; provider: string }> {
    const callStarted = performance.now();
    let fetched: Awaited<ReturnType<SecretProvider['resolve']>>;
    try {
      fetched = await provider.resolve({ path, ...(version ? { version } : {}) }, { signal });
    } catch (error) {
      metrics?.providerCall(providerName, 'resolve', performance.now() - callStarted, error);
      throw error;
    }
    metrics?.providerCall(providerName, 'resolve', performance.now() - callStarted);
    // Registered before the value goes anywhere, so no later log line can carry it.
    registerWhileLive(fetched.value);
    return { value: fetched.value, version: fetched.version, provider: providerName };
  }

  const resolver: SecretResolver = {
    async resolve(reference, signal) {
      const providerName = reference.provider ?? defaultProvider;
      const provider = providers.get(providerName);
      const formatted = formatReference(reference);
      if (!provider) {
        throw new DsoError(
          'DSO_AGENT_PROVIDER_UNKNOWN',
          `${formatted} names provider "${providerName}", which is not configured (configured: ${[...providers.keys()].join(', ')})`,
          { reference: formatted },
        );
      }
      const version = reference.version;
      let result: CacheResult;
      let loaded = false;
      try {
        result = await cache.getOrLoad(
          cacheKey(providerName, reference.path, version),
          (loadSignal) => {
            loaded = true;
            return fetchSecret(providerName, provider, reference.path, version, loadSignal);
          },
          { signal },
        );
      } catch (error) {
        // A reference without `provider:` does not show which provider it asked: say it, and
        // why that one (dso.yaml's defaultProvider rule), so a miss there is not taken for a
        // miss in the vault.
        const asked =
          reference.provider === undefined
            ? ` from provider ${providerName} (the default for references without \`provider:\`)`
            : '';
        throw new DsoError('DSO_AGENT_RESOLVE_FAILED', `could not resolve ${formatted}${asked}`, {
          cause: error,
          reference: formatted,
        });
      }
      if (result.stale) {
        const maxStalenessMs = context.maxStalenessMs.get(providerName);
        if (maxStalenessMs !== undefined && clock.now() - result.expiresAt > maxStalenessMs) {
          result.value.dispose();
          throw new DsoError(
            'DSO_AGENT_RESOLVE_FAILED',
            `could not resolve ${formatted}: its provider is unavailable and the last known value is older than the provider's maxStalenessMs (${maxStalenessMs} ms)`,
            { reference: formatted, retryable: true },
          );
        }
        logger.warn(
          { reference: formatted, version: result.version },
          'provider unavailable, serving the last known value',
        );
      }
      let value: SecretValue;
      try {
        value = reference.field
          ? selectField(result.value, reference.field, reference.path)
          : result.value;
      } catch (error) {
        // Not JSON, or no such field: said with the reference, the value zeroed.
        result.value.dispose();
        throw new DsoError('DSO_AGENT_RESOLVE_FAILED', `could not resolve ${formatted}`, {
          cause: error,
          reference: formatted,
        });
      }
      registerWhileLive(value);
      if (value !== result.value) result.value.dispose();
      return {
        formatted,
        provider: providerName,
        version: result.version,
        value,
        cacheHit: !loaded,
      };
    },

    async resolveEach(entries, signal) {
      const resolved: Array<ResolvedSecret & { name: string }> = [];
      try {
        for (const { name, reference } of entries) {
          resolved.push({ ...(await resolver.resolve(reference, signal)), name });
        }
        return resolved;
      } catch (error) {
        for (const one of resolved) one.value.dispose();
        throw error;
      }
    },

    async resolveFiles(files, signal) {
      return (await resolver.resolveEach(files, signal)).map((one) => {
        const content = Buffer.from(one.value.reveal());
        whileReachable.register(content, redactor.register(content));
        const file = {
          name: one.name,
          content,
          reference: one.formatted,
          provider: one.provider,
          version: one.version,
          cacheHit: one.cacheHit,
        };
        one.value.dispose();
        return file;
      });
    },

    async versionsOf(variables, signal) {
      return (await resolver.resolveEach(variables, signal)).map((one) => {
        one.value.dispose();
        return {
          name: one.name,
          reference: one.formatted,
          provider: one.provider,
          version: one.version,
        };
      });
    },

    async refresh(providerName, path, signal) {
      const provider = providers.get(providerName);
      if (provider === undefined) return false;
      try {
        const fetched = await fetchSecret(providerName, provider, path, undefined, signal);
        try {
          await cache.set(cacheKey(providerName, path), fetched);
        } finally {
          fetched.value.dispose();
        }
        return true;
      } catch (error) {
        logger.warn(
          { err: error, code: errorCode(error), reference: `${providerName}:${path}` },
          'could not ask the provider again; the cached value stays',
        );
        return false;
      }
    },

    hold(consumerId, contents) {
      // The new registrations first: a value the consumer keeps is never forgotten between.
      const leases = contents.map((content) => redactor.register(content));
      const previous = held.get(consumerId);
      held.set(consumerId, leases);
      for (const lease of previous ?? []) lease.release();
    },

    letGo(consumerId) {
      const leases = held.get(consumerId);
      held.delete(consumerId);
      for (const lease of leases ?? []) lease.release();
    },

    providerOf(reference) {
      const match = /^dso(?:file)?:\/\/([a-z][a-z0-9-]*):/.exec(reference);
      return match?.[1] ?? defaultProvider;
    },
  };
  return resolver;
}

/**
 * The code to report for a failure: the provider's own (not found, unauthorized, …) under the
 * agent's wrapper when there is one, else the error's, else `DSO_ERROR`.
 */
export function failureCode(error: unknown): string {
  return errorCode((error as { cause?: unknown }).cause) ?? errorCode(error) ?? 'DSO_ERROR';
}

/** The reference a failure concerns, when its error names one (never a value). */
export function failedReference(error: unknown): string | undefined {
  const reference = (error as { details?: { reference?: unknown } }).details?.reference;
  return typeof reference === 'string' ? reference : undefined;
}
