import type { Clock, Logger, Redactor } from '@dso/core';
import type { SecretProvider } from '@dso/provider-sdk';
import type { AgentMetrics } from '../observability.js';

/** Checks of one provider's secrets running at once (probes or resolves). @default 8 */
export const DEFAULT_CHECKS_IN_FLIGHT = 8;
/** Fraction of a poll interval by which checks are spread. @default 0.1 */
export const DEFAULT_POLL_JITTER = 0.1;
/**
 * How long a new watch runs before it is trusted: then the watch it replaces is closed and each
 * secret it newly covers is checked once. @default 1_000
 */
export const DEFAULT_WATCH_SETTLE_MS = 1_000;
/** How long changes to the set of watched paths collect before the watch is rebuilt. @default 5_000 */
export const DEFAULT_WATCH_REBUILD_DELAY_MS = 5_000;
/** First delay before a watch that ended or failed is opened again. @default 1_000 */
export const DEFAULT_WATCH_RETRY_BASE_DELAY_MS = 1_000;
/** Cap of the delay before a watch is opened again. @default 60_000 */
export const DEFAULT_WATCH_RETRY_MAX_DELAY_MS = 60_000;

/**
 * One secret whose changes are detected: a provider's name and a path in it. A version-pinned
 * reference (`dso://vault:app/db@3`) never changes, so the caller does not track it.
 */
export interface SecretWatchKey {
  provider: string;
  path: string;
}

/** A secret in use, with the version its consumers were last given: the baseline. */
export interface TrackedSecret extends SecretWatchKey {
  version: string;
}

/** How a change was noticed: the provider's watch, a version probe, or a full resolve (poll). */
export type ChangeSource = 'watch' | 'probe' | 'poll';

/**
 * A secret now has a version other than its baseline. Named apart from the SDK's
 * `SecretChange` (what a provider's watch yields, without provider or source).
 */
export interface DetectedChange extends SecretWatchKey {
  version: string;
  source: ChangeSource;
}

/** A secret in use that a check found gone from its store (deleted while in use). */
export interface MissingSecret extends SecretWatchKey {
  /** The provider's code: `DSO_PROVIDER_NOT_FOUND`. */
  code: string;
}

/** Counts for status and metrics. */
export interface ChangeDetectorStats {
  /** Secrets tracked (of configured providers). */
  tracked: number;
  /** Secrets covered now by a provider's watch that is up. */
  watched: number;
  /** Secrets checked with `probe` every interval (their provider has no watch, or it is down). */
  probed: number;
  /** Secrets checked with `resolve` every interval (their provider can neither watch nor probe, or its watch is down). */
  polled: number;
  /** Changes reported through `onChange` since creation. */
  changes: number;
  /** Failed checks and failed watches since creation. */
  errors: number;
}

/** Options of `createChangeDetector`. */
export interface ChangeDetectorOptions {
  /** The agent's providers by name; keys of other providers are not tracked (logged once). */
  providers: ReadonlyMap<string, SecretProvider>;
  logger: Logger;
  /** Time between two checks of a secret whose provider cannot watch (`rotation.pollIntervalMs`). */
  pollIntervalMs: number;
  /** Per provider, an interval replacing `pollIntervalMs` (a provider's `pollIntervalMs`). */
  pollIntervalByProvider?: ReadonlyMap<string, number>;
  /**
   * Called once per change, synchronously: the agent invalidates its cache and queues the
   * consumers. Must not throw (a throw is logged, and the change is not reported again).
   */
  onChange: (change: DetectedChange) => void;
  /**
   * Called once when a check (probe or poll) finds a tracked secret gone from its store
   * (`DSO_PROVIDER_NOT_FOUND`), synchronously; again only after it was readable in between. Its
   * consumers still hold the value they were given: the agent shows them as missing. Must not
   * throw (a throw is logged). A watch reports no deletion: a watched secret is found missing
   * by the next delivery or reconciliation.
   */
  onMissing?: (missing: MissingSecret) => void;
  /** Values the poll fallback resolves are registered here before anything else happens to them. */
  redactor?: Redactor;
  /** Provider calls (`probe`, `resolve`, `watch`) are counted and timed here; none when absent. */
  metrics?: Pick<AgentMetrics, 'providerCall'>;
  /**
   * Checks are spread: each waits between `(1 - jitter)` and all of its interval, so a change is
   * seen within one interval (plus the call's own time). A secret's first check falls anywhere in
   * its first interval, so secrets tracked together (at start) spread over the whole interval.
   * @default DEFAULT_POLL_JITTER (0.1)
   */
  jitter?: number;
  /** Checks of one provider at once; more wait their turn. @default DEFAULT_CHECKS_IN_FLIGHT (8) */
  maxChecksInFlight?: number;
  /** @default DEFAULT_WATCH_SETTLE_MS */
  watchSettleMs?: number;
  /** @default DEFAULT_WATCH_REBUILD_DELAY_MS */
  watchRebuildDelayMs?: number;
  /** @default DEFAULT_WATCH_RETRY_BASE_DELAY_MS */
  watchRetryBaseDelayMs?: number;
  /** @default DEFAULT_WATCH_RETRY_MAX_DELAY_MS */
  watchRetryMaxDelayMs?: number;
  /** Every timer of the detector (checks, watch settle, rebuild and retry) is set here. @default systemClock */
  clock?: Clock;
  /** Uniform in [0, 1), for jitter. @default Math.random */
  random?: () => number;
}

/** Notices new versions of the secrets in use: see `createChangeDetector`. */
export interface ChangeDetector extends AsyncDisposable {
  /**
   * The set of secrets in use now, each with the version its consumers were last given (the
   * baseline). Replaces the previous set: watches and checks start for new secrets and stop for
   * those no longer in it. A secret already tracked keeps its watch and timer; a different
   * baseline replaces the one it had (when its provider watches it, it is checked once at
   * once, since no timer would compare it). When one secret appears more than once, the last
   * entry's version is its baseline. Ignored after {@link ChangeDetector.close}.
   * @throws TypeError for an entry without a provider, a path and a version (strings)
   */
  track(secrets: Iterable<TrackedSecret>): void;
  /** What is being watched and checked now, and what was found since creation. */
  stats(): ChangeDetectorStats;
  /** Stops every watch and timer and cancels calls in flight; resolves once none runs. Idempotent. */
  close(): Promise<void>;
}
