import { backoffDelay } from '@dso/async';
import {
  type Clock,
  createEventQueue,
  DEFAULT_QUEUE_RETRY,
  type EventQueue,
  type EventQueueRetryOptions,
  errorCode,
  isRetryable,
  type Logger,
} from '@dso/core';
import type { DeliveryTrigger } from './agent-types.js';
import type { Deliver } from './delivery.js';

/**
 * Engine slots retries may hold at once: half of them (at least one), so containers that keep
 * failing slowly (an exec that hangs until its deadline) leave the other half to the rest.
 */
export function retrySlots(concurrency: number): number {
  return Math.max(1, Math.floor(concurrency / 2));
}

/** After the queue gives up on a container: the first wait before it is tried again. */
export const GAVE_UP_RETRY_BASE_MS = 30_000;
/** After the queue gives up on a container: the longest wait before it is tried again. */
export const GAVE_UP_RETRY_MAX_MS = 10 * 60_000;

/**
 * Two triggers for one container, coalesced while it waits in the queue. A start coalesced
 * with anything is still a start (its tmpfs is new, so the files must be written whatever the
 * digest says); otherwise the later trigger wins.
 */
export function mergeTriggers(queued: DeliveryTrigger, next: DeliveryTrigger): DeliveryTrigger {
  return queued === 'started' || next === 'started' ? 'started' : next;
}

/**
 * How long after its `rounds`-th time in a row that the queue gave up on a container it is
 * tried again: 30 s, doubling, at most 10 minutes.
 */
export function gaveUpRetryDelayMs(rounds: number): number {
  return backoffDelay(rounds, {
    baseMs: GAVE_UP_RETRY_BASE_MS,
    maxMs: GAVE_UP_RETRY_MAX_MS,
    jitter: 'none',
  });
}

/** What the delivery queue needs from the agent. */
export interface DeliveryQueueContext {
  /**
   * Delivers one container; throws when it failed. What may pass ({@link isRetryable}) is
   * retried with backoff; the rest is given up at once. Waits that are not engine work go
   * through its `outside` argument, so they hold none of the `concurrency` slots.
   */
  deliver: Deliver;
  /** Deliveries doing engine work at once (inspect, exec, write). */
  concurrency: number;
  maxSize?: number | undefined;
  retry?: EventQueueRetryOptions | undefined;
  clock: Clock;
  logger: Logger;
  /** Aborted when the agent stops: no retry is scheduled after that. */
  stopping: AbortSignal;
}

/** The keyed queue of deliveries, with what happens to the containers it gives up on or sheds. */
export interface DeliveryQueue {
  readonly queue: EventQueue<DeliveryTrigger>;
  /** A container was delivered to, or is gone: its give-up count starts over. */
  forgetFailures(containerId: string): void;
}

/**
 * Deliveries keyed by container: one at a time per container, coalesced ({@link mergeTriggers}),
 * at most `concurrency` of them doing engine work at once; a delivery waiting on its secret
 * store gives its slot to the next one meanwhile (`outside`), so a hung store holds no slot,
 * and retries hold at most {@link retrySlots} of them, so a container whose engine call hangs
 * until its deadline, again and again, leaves the other slots to the rest.
 * A failure that may pass is retried with backoff; a container the queue gives up on after
 * those retries is not forgotten: it is tried again after {@link gaveUpRetryDelayMs}, as long
 * as it runs and the agent does. A failure that cannot pass (not retryable: a hardened
 * container, a refused target, a secret the store does not have) is given up at once and not
 * retried on a timer: the container is tried again when something changes (its start, a new
 * version, `dso reconcile`, `dso rotate`, an agent restart with a new configuration) and at the
 * periodic reconciliation. Containers shed under load are delivered to once the queue has
 * drained.
 *
 * @example
 * const { queue } = createDeliveryQueue({ deliver, concurrency: 4, clock, logger, stopping });
 * queue.add(containerId, 'started');
 */
export function createDeliveryQueue(context: DeliveryQueueContext): DeliveryQueue {
  const { clock, logger, stopping } = context;
  /** Containers whose delivery gave up, with how many times in a row. */
  const gaveUp = new Map<string, number>();
  const shed = new Set<string>();

  const queue = createEventQueue<DeliveryTrigger>({
    concurrency: context.concurrency,
    ...(context.maxSize === undefined ? {} : { maxSize: context.maxSize }),
    retry: {
      ...(context.retry ?? DEFAULT_QUEUE_RETRY),
      concurrency: retrySlots(context.concurrency),
    },
    clock,
    worker: (containerId, trigger, { signal, attempt, outside }) =>
      context.deliver(containerId, trigger, signal, attempt, outside),
    merge: mergeTriggers,
    retryable: isRetryable,
    onFailed: (containerId, error, attempts) => {
      if (!isRetryable(error)) {
        // Trying again on a timer cannot help (the failure was reported where it happened):
        // a pending re-try from an earlier give-up is dropped too.
        gaveUp.delete(containerId);
        logger.info(
          { containerId: containerId.slice(0, 12), code: errorCode(error), attempts },
          'secrets delivery not retried: it fails until the container or its secrets change',
        );
        return;
      }
      const rounds = (gaveUp.get(containerId) ?? 0) + 1;
      gaveUp.set(containerId, rounds);
      const delayMs = gaveUpRetryDelayMs(rounds);
      logger.error(
        {
          containerId: containerId.slice(0, 12),
          code: errorCode(error),
          attempts,
          retryInMs: delayMs,
        },
        'secrets delivery gave up',
      );
      const timer = clock.setTimeout(() => {
        if (!stopping.aborted && gaveUp.has(containerId)) queue.add(containerId, 'resync');
      }, delayMs);
      (timer as { unref?: () => void }).unref?.();
    },
    onShed: (containerIds) => {
      // Too much work at once: the oldest waiting containers were dropped from the queue. They
      // are delivered to once the queue has drained, so none is forgotten.
      logger.warn({ containers: containerIds.length }, 'delivery work shed, will retry when idle');
      for (const id of containerIds) shed.add(id);
      void queue.idle().then(() => {
        const ids = [...shed];
        shed.clear();
        for (const id of ids) queue.add(id, 'resync');
      });
    },
  });

  return {
    queue,
    forgetFailures(containerId) {
      gaveUp.delete(containerId);
    },
  };
}
