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

/** Options every provider call takes. */
export interface CallOptions {
  signal?: AbortSignal;
}

/** Which optional operations a provider implements. */
export interface ProviderCapabilities {
  /** `list()` enumerates paths. */
  list: boolean;
}

/**
 * A live connection to one secret store. Every call takes an AbortSignal; `close()` releases
 * whatever the provider holds.
 */
export interface SecretProvider {
  /** The provider's configured name, e.g. `local`. */
  readonly name: string;
  readonly capabilities: ProviderCapabilities;
  /**
   * Resolves one secret.
   * @throws ProviderError DSO_PROVIDER_NOT_FOUND when nothing is stored at the path or version
   */
  resolve(request: SecretRequest, options?: CallOptions): Promise<ResolvedSecret>;
  /** Paths under `prefix` (all when absent); only when `capabilities.list`. */
  list?(prefix?: string, options?: CallOptions): Promise<string[]>;
  close(): Promise<void>;
}
