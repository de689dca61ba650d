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
   * Called with the ids of every managed container running now: the agent forgets the others
   * (a destroy event may have been lost) and cleans their host folders.
   */
  prune(running: ReadonlySet<string>, signal: AbortSignal): void;
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

  const reconciler: Reconciler = {
    async reconcile(trigger, signal) {
      const listStarted = performance.now();
      let containers: Awaited<ReturnType<DockerRuntime['listContainers']>>;
      try {
        containers = await runtime.listContainers({ label: `${LABELS.enable}=true`, signal });
      } catch (error) {
        metrics?.reconciliation(trigger, 'error', performance.now() - listStarted);
        throw error;
      }
      metrics?.reconciliation(trigger, 'ok', performance.now() - listStarted);
      metrics?.managedContainers(containers.length);
      logger.info({ containers: containers.length, trigger }, 'managed containers found');
      context.prune(new Set(containers.map((container) => container.id)), signal);
      for (const container of containers) context.enqueue(container.id, trigger);
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
