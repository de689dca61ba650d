import { type ClockTimer, createLimiter, type Limiter } from '@dso/async';
import type { SecretProvider } from '@dso/provider-sdk';

/** What the detector knows of one provider: created at its first tracked secret and kept (there are few). */
export interface ProviderState {
  readonly name: string;
  readonly provider: SecretProvider;
  readonly canWatch: boolean;
  /** How a secret is checked while no watch covers it. */
  readonly check: 'probe' | 'poll';
  readonly intervalMs: number;
  readonly keys: Map<string, KeyState>;
  /** At most `maxChecksInFlight` checks at once; the rest wait in order. */
  readonly limiter: Limiter;
  /** The newest watch: the one covering, or one settling to replace it. */
  watch: WatchRun | undefined;
  /** The watch that has settled and covers its paths now. */
  covering: WatchRun | undefined;
  /** A rebuild, or a retry after a failure. */
  watchTimer: ClockTimer | undefined;
  /** `watchTimer` is a retry after a failure (a rebuild would not shorten it). */
  retrying: boolean;
  watchFailures: number;
  /** The last retryable code logged for the provider, and when: one line for all its secrets. */
  outageCode: string | undefined;
  outageLoggedAt: number;
}

/** One tracked secret of a provider. */
export interface KeyState {
  readonly owner: ProviderState;
  readonly path: string;
  baseline: string;
  /** Bumped when the baseline changes, so an answer older than the change decides nothing. */
  epoch: number;
  timer: ClockTimer | undefined;
  running: AbortController | undefined;
  /** Waiting for a free slot of its provider's limiter; aborting `leave` takes it out of line. */
  queued: boolean;
  leave: AbortController | undefined;
  /** Asked for while a check was running: check again when it ends. */
  recheck: boolean;
  removed: boolean;
  /** The code of the last check that failed for this secret alone (not retryable), until one succeeds. */
  lastErrorCode: string | undefined;
}

/** One call of a provider's `watch` over a set of paths. */
export interface WatchRun {
  readonly controller: AbortController;
  readonly paths: ReadonlySet<string>;
  readonly startedAt: number;
  settleTimer: ClockTimer | undefined;
  ended: boolean;
}

/** A provider's state before any secret of it is tracked: how it can be watched or checked. */
export function createProviderState(
  name: string,
  provider: SecretProvider,
  intervalMs: number,
  maxChecksInFlight: number,
): ProviderState {
  const canWatch = provider.capabilities.watch && typeof provider.watch === 'function';
  const canProbe = provider.capabilities.probe && typeof provider.probe === 'function';
  return {
    name,
    provider,
    canWatch,
    check: canProbe ? 'probe' : 'poll',
    intervalMs,
    keys: new Map(),
    limiter: createLimiter(maxChecksInFlight),
    watch: undefined,
    covering: undefined,
    watchTimer: undefined,
    retrying: false,
    watchFailures: 0,
    outageCode: undefined,
    outageLoggedAt: Number.NEGATIVE_INFINITY,
  };
}

/** A secret newly tracked, with the version its consumers were given. */
export function createKeyState(owner: ProviderState, path: string, baseline: string): KeyState {
  return {
    owner,
    path,
    baseline,
    epoch: 0,
    timer: undefined,
    running: undefined,
    queued: false,
    leave: undefined,
    recheck: false,
    removed: false,
    lastErrorCode: undefined,
  };
}

/** Whether a watch that has settled covers the secret now (then no timer checks it). */
export function isCovered(key: KeyState): boolean {
  return key.owner.covering?.paths.has(key.path) === true;
}

/** `provider:path`: how a secret is named in logs, never with a value. */
export function referenceOf(key: KeyState): string {
  return `${key.owner.name}:${key.path}`;
}

/** Whether a watch's paths are exactly the provider's tracked ones. */
export function sameSet(a: ReadonlySet<string>, b: ReadonlyMap<string, unknown>): boolean {
  if (a.size !== b.size) return false;
  for (const item of a) if (!b.has(item)) return false;
  return true;
}
