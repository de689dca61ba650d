import type { SecretValue } from './secret-value.js';

/** What a provider is asked for: a path in its store, and optionally one version. */
export interface SecretRequest {
  /** Slash-separated path in the provider's store, e.g. `app/db/password`. */
  path: string;
  /** A version the provider understands; absent means the current one. */
  version?: string;
}

/** A resolved secret: the value and the version it came from. */
export interface ResolvedSecret {
  value: SecretValue;
  /** The provider's version identifier for this value. */
  version: string;
}

/** The current version of a secret, without its value: what a cheap probe returns. */
export interface SecretVersion {
  version: string;
}

/** A change the store reported for one watched path: it now has `version`. */
export interface SecretChange {
  path: string;
  version: string;
}

/** How a provider's backend is doing, as `health()` reports it. */
export interface ProviderHealth {
  ok: boolean;
  /** A short reason, never a secret value: `token expires in 2 h`, `HTTP 503 from vault`. */
  detail?: string;
}

/**
 * Options every provider call takes. The host always passes a signal: it fires at the call's
 * deadline, when the caller gives up, or when the host shuts down.
 */
export interface CallOptions {
  signal?: AbortSignal;
}

/**
 * Which optional operations a provider implements, declared once in its definition and
 * cross-checked against the methods it has: a declared capability without its method, or a
 * method without its capability, is refused when the provider is created.
 */
export interface ProviderCapabilities {
  /** `list(prefix)` enumerates paths. */
  list: boolean;
  /** `watch(paths)` streams changes as the store reports them (push, long poll, events). */
  watch: boolean;
  /** `probe(request)` returns the current version without reading the value (cheap). */
  probe: boolean;
  /** `health()` reports the backend's state. */
  health: boolean;
}

/** The names of the optional operations, in the order capabilities are listed. */
export const OPTIONAL_OPERATIONS = ['list', 'watch', 'probe', 'health'] as const;

/**
 * A live connection to one secret store. Every call takes an AbortSignal; `close()` releases
 * whatever the provider holds.
 */
export interface SecretProvider {
  /** The provider's configured name, e.g. `local` or `prod-vault`. */
  readonly name: string;
  readonly capabilities: ProviderCapabilities;
  /**
   * Resolves one secret (the whole value: a `#field` is selected by the SDK, not here).
   * @throws ProviderError DSO_PROVIDER_NOT_FOUND when nothing is stored at the path or version
   */
  resolve(request: SecretRequest, options?: CallOptions): Promise<ResolvedSecret>;
  /** Paths under `prefix` (all when absent); only with `capabilities.list`. */
  list?(prefix?: string, options?: CallOptions): Promise<string[]>;
  /**
   * The current version of a secret, cheaper than `resolve` (metadata only); only with
   * `capabilities.probe`.
   * @throws ProviderError DSO_PROVIDER_NOT_FOUND when nothing is stored at the path
   */
  probe?(request: SecretRequest, options?: CallOptions): Promise<SecretVersion>;
  /**
   * Changes to `paths` as the store reports them, until `signal` aborts (then the iteration
   * ends without an error); only with `capabilities.watch`. A change may be reported more than
   * once; the caller compares versions.
   */
  watch?(paths: readonly string[], options: { signal: AbortSignal }): AsyncIterable<SecretChange>;
  /** The backend's state; only with `capabilities.health`. */
  health?(options?: CallOptions): Promise<ProviderHealth>;
  close(): Promise<void>;
}
