import { type Clock, type Logger, type Redactor, systemClock } from '@dso/core';
import type { SecretProvider } from '@dso/provider-sdk';
import type { AgentMetrics } from '../observability.js';
import {
  type ChangeDetectorOptions,
  DEFAULT_CHECKS_IN_FLIGHT,
  DEFAULT_POLL_JITTER,
  DEFAULT_WATCH_REBUILD_DELAY_MS,
  DEFAULT_WATCH_RETRY_BASE_DELAY_MS,
  DEFAULT_WATCH_RETRY_MAX_DELAY_MS,
  DEFAULT_WATCH_SETTLE_MS,
  type DetectedChange,
  type MissingSecret,
} from './types.js';

/** {@link ChangeDetectorOptions} checked, with every default filled in. */
export interface ResolvedDetectorOptions {
  readonly providers: ReadonlyMap<string, SecretProvider>;
  readonly logger: Logger;
  readonly onChange: (change: DetectedChange) => void;
  readonly onMissing: ((missing: MissingSecret) => void) | undefined;
  readonly redactor: Redactor | undefined;
  readonly metrics: Pick<AgentMetrics, 'providerCall'> | undefined;
  readonly pollIntervalMs: number;
  readonly pollIntervalByProvider: ReadonlyMap<string, number>;
  readonly jitter: number;
  readonly maxChecksInFlight: number;
  readonly watchSettleMs: number;
  readonly watchRebuildDelayMs: number;
  readonly watchRetryBaseDelayMs: number;
  readonly watchRetryMaxDelayMs: number;
  readonly clock: Clock;
  readonly random: () => number;
}

/**
 * Fills in the defaults and checks every interval, the jitter and the in-flight bound.
 * @throws RangeError when an interval, the jitter or a bound is out of range
 */
export function resolveDetectorOptions(options: ChangeDetectorOptions): ResolvedDetectorOptions {
  const resolved: ResolvedDetectorOptions = {
    providers: options.providers,
    logger: options.logger,
    onChange: options.onChange,
    onMissing: options.onMissing,
    redactor: options.redactor,
    metrics: options.metrics,
    pollIntervalMs: options.pollIntervalMs,
    pollIntervalByProvider: options.pollIntervalByProvider ?? new Map(),
    jitter: options.jitter ?? DEFAULT_POLL_JITTER,
    maxChecksInFlight: options.maxChecksInFlight ?? DEFAULT_CHECKS_IN_FLIGHT,
    watchSettleMs: options.watchSettleMs ?? DEFAULT_WATCH_SETTLE_MS,
    watchRebuildDelayMs: options.watchRebuildDelayMs ?? DEFAULT_WATCH_REBUILD_DELAY_MS,
    watchRetryBaseDelayMs: options.watchRetryBaseDelayMs ?? DEFAULT_WATCH_RETRY_BASE_DELAY_MS,
    watchRetryMaxDelayMs: options.watchRetryMaxDelayMs ?? DEFAULT_WATCH_RETRY_MAX_DELAY_MS,
    clock: options.clock ?? systemClock,
    random: options.random ?? Math.random,
  };
  const { jitter, maxChecksInFlight } = resolved;
  checkInterval('pollIntervalMs', resolved.pollIntervalMs);
  for (const [name, ms] of resolved.pollIntervalByProvider) {
    checkInterval(`pollIntervalByProvider(${name})`, ms);
  }
  if (!(Number.isFinite(jitter) && jitter >= 0 && jitter < 1)) {
    throw new RangeError(`jitter must be a fraction in [0, 1), got ${jitter}`);
  }
  if (!(Number.isInteger(maxChecksInFlight) && maxChecksInFlight >= 1)) {
    throw new RangeError(`maxChecksInFlight must be a positive integer, got ${maxChecksInFlight}`);
  }
  checkInterval('watchSettleMs', resolved.watchSettleMs, true);
  checkInterval('watchRebuildDelayMs', resolved.watchRebuildDelayMs, true);
  checkInterval('watchRetryBaseDelayMs', resolved.watchRetryBaseDelayMs);
  checkInterval('watchRetryMaxDelayMs', resolved.watchRetryMaxDelayMs);
  return resolved;
}

function checkInterval(name: string, ms: number, zeroAllowed = false): void {
  if (!(Number.isFinite(ms) && (zeroAllowed ? ms >= 0 : ms > 0))) {
    throw new RangeError(
      `${name} must be a finite number of ms ${zeroAllowed ? 'of 0 or more' : 'above 0'}, got ${ms}`,
    );
  }
}
