import { type Clock, type ClockTimer, errorCode, LABELS, type Logger } from '@dso/core';
import type { DockerRuntime } from '@dso/docker-runtime';
import type { DeliveryTrigger } from './agent-types.js';
import type { AgentHealth, AgentMetrics } from './observability.js';

/** The triggers of a reconciliation (a listing of every managed container). */
export type ReconcileTrigger = Exclude<DeliveryTrigger, 'started' | 'changed'>;

/** What reconciliation needs from the agent. */
export interface ReconcilerContext {
  runtime: Pick<DockerRuntime, 'listContainers'>;
  /** Queues a check of one running managed container. */
  enqueue(containerId: string, trigger: ReconcileTrigger): void;
  /**
   * Called with the ids of every managed container running now, and the state of every managed
   * container that exists (stopped ones included): the agent forgets what it delivered to the
   * ones not running and cleans their host folders, shows the stopped ones as such, and forgets
   * the ones that are gone (a destroy event may have been lost).
   */
  prune(
    running: ReadonlySet<string>,
    existing: ReadonlyMap<string, string>,
    signal: AbortSignal,
  ): void;
  /**
   * Told, at start-up and after a resync (when start events may have been missed), of each
   * running container without `dso.enable=true`, by its labels as listed (one listing, no
   * inspection): a misspelt `dso.enable` is reported. Absent: not listed.
   */
  unmanaged?(containerId: string, name: string, labels: Readonly<Record<string, string>>): void;
  /** Other consumers checked with every reconciliation (DSO volume mounts). */
  moreConsumers?: () => string[];
  intervalMs: number;
  clock: Clock;
  logger: Logger;
  metrics?: AgentMetrics | undefined;
  health?: AgentHealth | undefined;
}

/** The safety net behind the events: every managed container, listed and checked. */
export interface Reconciler {
  /**
   * Lists every running managed container and queues each for a check.
   * @returns how many were queued
   */
  reconcile(trigger: ReconcileTrigger, signal: AbortSignal): Promise<number>;
  /** Reconciles every `intervalMs` (`periodic`) until `signal` aborts; failures are logged. */
  startPeriodic(signal: AbortSignal): void;
}

/**
 * @example
 * const reconciler = createReconciler({ runtime, enqueue: (id, t) => queue.add(id, t), prune, intervalMs: 600_000, clock, logger });
 * await reconciler.reconcile('startup', signal);
 * reconciler.startPeriodic(signal);
 */
export function createReconciler(context: ReconcilerContext): Reconciler {
  const { runtime, clock, logger, metrics, health } = context;

  /** Running containers not managed, by their listed labels (their starts may have been missed). */
  async function reportUnmanaged(
    unmanaged: NonNullable<ReconcilerContext['unmanaged']>,
    signal: AbortSignal,
  ): Promise<void> {
    try {
      for (const container of await runtime.listContainers({ signal })) {
        if (container.labels[LABELS.enable] !== 'true') {
          unmanaged(container.id, container.name, container.labels);
        }
      }
    } catch (error) {
      // Only a report: the managed containers are queued already; the next start event or
      // resync tells the rest.
      if (!signal.aborted) {
        logger.warn({ err: error, code: errorCode(error) }, 'could not list unmanaged containers');
      }
    }
  }

  const reconciler: Reconciler = {
    async reconcile(trigger, signal) {
      const listStarted = performance.now();
      let listed: Awaited<ReturnType<DockerRuntime['listContainers']>>;
      try {
        // Stopped ones too: status shows them `exited` until they are removed.
        listed = await runtime.listContainers({
          label: `${LABELS.enable}=true`,
          all: true,
          signal,
        });
      } catch (error) {
        metrics?.reconciliation(trigger, 'error', performance.now() - listStarted);
        throw error;
      }
      const containers = listed.filter((container) => container.state === 'running');
      metrics?.reconciliation(trigger, 'ok', performance.now() - listStarted);
      metrics?.managedContainers(containers.length);
      logger.info({ containers: containers.length, trigger }, 'managed containers found');
      context.prune(
        new Set(containers.map((container) => container.id)),
        new Map(listed.map((container) => [container.id, container.state])),
        signal,
      );
      for (const container of containers) context.enqueue(container.id, trigger);
      if (context.unmanaged !== undefined && (trigger === 'startup' || trigger === 'resync')) {
        await reportUnmanaged(context.unmanaged, signal);
      }
      for (const id of context.moreConsumers?.() ?? []) context.enqueue(id, trigger);
      // Ready once every managed container has been looked at once (the deliveries follow).
      health?.reconciled();
      return containers.length;
    },
    startPeriodic(signal) {
      let timer: ClockTimer | undefined;
      const arm = () => {
        timer = clock.setTimeout(() => {
          if (signal.aborted) return;
          arm();
          void reconciler.reconcile('periodic', signal).catch((error: unknown) => {
            if (signal.aborted) return;
            logger.warn(
              { err: error, code: errorCode(error) },
              'could not list managed containers',
            );
          });
        }, context.intervalMs);
        (timer as { unref?: () => void }).unref?.();
      };
      signal.addEventListener(
        'abort',
        () => {
          if (timer !== undefined) clock.clearTimeout(timer);
        },
        { once: true },
      );
      if (!signal.aborted) arm();
    },
  };
  return reconciler;
}
