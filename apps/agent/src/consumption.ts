import type { Clock, ClockTimer, Logger } from '@dso/core';
import { errorCode } from '@dso/core';
import type { ChangeDetector, TrackedSecret } from './change-detector.js';

/** How long changes to what containers consume are gathered before the detector hears of them. */
export const TRACK_COALESCE_MS = 100;

/** What consumption tracking needs from the agent. */
export interface ConsumptionContext {
  /** Absent: nothing is tracked (new versions are noticed by reconciliation only). */
  detector?: ChangeDetector | undefined;
  clock: Clock;
  logger: Logger;
}

/**
 * Who consumes which version of which secret: what the change detector watches, and who is
 * checked again when a secret changes.
 */
export interface Consumption {
  /**
   * Records the secrets a container was just given (provider, path, version; never a pinned
   * version), or forgets the container (`undefined`). The detector hears of the whole set
   * shortly after (changes within {@link TRACK_COALESCE_MS} are coalesced).
   */
  record(containerId: string, secrets: readonly TrackedSecret[] | undefined): void;
  /** The containers that consume `provider:path`. */
  consumersOf(provider: string, path: string): string[];
  /** Stops the pending hand-over to the detector. */
  close(): void;
}

/** One container's consumed secrets and when it consumed them (a counter: only order matters). */
export interface Consumed {
  secrets: readonly TrackedSecret[];
  at: number;
}

/**
 * The baseline of each secret for the detector: the version most recently delivered to any of
 * its consumers. A consumer that lags (its delivery failing) must not move a baseline back, or
 * the detector would report the newer version again and again.
 */
export function latestBaselines(consumed: Iterable<Consumed>): TrackedSecret[] {
  const latest = new Map<string, { secret: TrackedSecret; at: number }>();
  for (const { secrets, at } of consumed) {
    for (const secret of secrets) {
      const key = `${secret.provider}:${secret.path}`;
      const known = latest.get(key);
      if (known === undefined || known.at < at) latest.set(key, { secret, at });
    }
  }
  return [...latest.values()].map(({ secret }) => secret);
}

/**
 * Tracks what each container consumes and keeps the change detector's list in step.
 *
 * @example
 * const consumption = createConsumption({ detector, clock, logger });
 * consumption.record(containerId, [{ provider: 'local', path: 'app/db', version: '3' }]);
 */
export function createConsumption(context: ConsumptionContext): Consumption {
  const { detector, clock, logger } = context;
  const consumed = new Map<string, Consumed>();
  let counter = 0;
  let timer: ClockTimer | undefined;
  let closed = false;

  function handOver(): void {
    timer = undefined;
    if (closed || detector === undefined) return;
    try {
      detector.track(latestBaselines(consumed.values()));
    } catch (error) {
      logger.error({ err: error, code: errorCode(error) }, 'change detection could not track');
    }
  }

  return {
    record(containerId, secrets) {
      if (detector === undefined) return;
      if (secrets === undefined) {
        consumed.delete(containerId);
      } else {
        counter += 1;
        // A provider that reports no version gives nothing to compare: not tracked.
        consumed.set(containerId, {
          secrets: secrets.filter((secret) => secret.version !== ''),
          at: counter,
        });
      }
      if (timer !== undefined || closed) return;
      timer = clock.setTimeout(handOver, TRACK_COALESCE_MS);
      (timer as { unref?: () => void }).unref?.();
    },
    consumersOf(provider, path) {
      const ids: string[] = [];
      for (const [id, { secrets }] of consumed) {
        if (secrets.some((s) => s.provider === provider && s.path === path)) ids.push(id);
      }
      return ids;
    },
    close() {
      closed = true;
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
    },
  };
}
