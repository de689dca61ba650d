import { DsoError, errorCode, LABELS, type Logger } from '@dso/core';
import type { ContainerEvent, DockerRuntime } from '@dso/docker-runtime';
import type { AgentHealth, AgentMetrics } from './observability.js';

/** What a container event asks of the agent. */
export interface ContainerEventHandlers {
  /** A managed container started (or restarted): deliver its files. */
  started(containerId: string): void;
  /**
   * Any container started, managed or not: the host folders it binds are judged again (a
   * writable binder that appears later stops the owner's deliveries).
   */
  anyStarted?(containerId: string): void;
  /**
   * A container started without `dso.enable=true` (its name and labels from the event, so the
   * engine is not asked anything): the agent looks for DSO labels on it (a misspelt
   * `dso.enable`) and reports them.
   */
  unmanagedStarted?(
    containerId: string,
    name: string,
    labels: Readonly<Record<string, string>>,
  ): void;
  /** A container stopped: its host folder is emptied. */
  died(containerId: string): void;
  /** A container is gone: forget it. */
  destroyed(containerId: string): void;
  /** Events may have been missed: list every managed container again (must not block). */
  resync(reason: string): void;
}

/** Routes one engine event to its handler; unmanaged starts and other events are ignored. */
export function routeEvent(event: ContainerEvent, handlers: ContainerEventHandlers): void {
  switch (event.type) {
    case 'container.died':
      handlers.died(event.id);
      return;
    case 'container.destroyed':
      handlers.destroyed(event.id);
      return;
    case 'container.started':
      handlers.anyStarted?.(event.id);
      if (event.labels[LABELS.enable] === 'true') handlers.started(event.id);
      else handlers.unmanagedStarted?.(event.id, event.name, event.labels);
      return;
    default:
      return;
  }
}

/** What the watch needs from the agent. */
export interface EngineWatchContext {
  runtime: Pick<DockerRuntime, 'events'>;
  handlers: ContainerEventHandlers;
  reconnect: { maxAttempts: number; baseDelayMs: number; maxDelayMs: number };
  logger: Logger;
  metrics?: AgentMetrics | undefined;
  health?: AgentHealth | undefined;
}

/**
 * Watches the engine's container events until `signal` aborts. The runtime reconnects a broken
 * stream itself, resumes after the last event, drops the replay's duplicates, and says `resync`
 * when events may have been missed (a gap longer than the engine's buffer, or an engine
 * restart). Only when the engine stays unreachable does this end, with DSO_AGENT_ENGINE_LOST,
 * so the supervisor restarts the agent.
 *
 * @throws DsoError DSO_AGENT_ENGINE_LOST after `reconnect.maxAttempts` failed reconnects in a row
 */
export async function watchEngine(
  context: EngineWatchContext,
  sinceMs: number,
  signal: AbortSignal,
): Promise<void> {
  const { runtime, handlers, logger, metrics, health } = context;
  try {
    for await (const item of runtime.events({
      since: sinceMs,
      signal,
      reconnect: context.reconnect,
      onConnected: () => health?.eventsConnected(),
      onReconnecting: ({ attempt, delayMs, error }) => {
        health?.eventsLost();
        metrics?.eventsReconnecting();
        logger.warn(
          { err: error, code: error.code, attempt, delayMs },
          'events stream lost, reconnecting',
        );
      },
    })) {
      metrics?.eventReceived(item.type);
      if (item.type === 'resync') {
        logger.warn({ reason: item.reason }, 'events may have been missed, listing containers');
        // Not awaited: the stream must be drained promptly, the list runs beside it.
        handlers.resync(item.reason);
        continue;
      }
      routeEvent(item, handlers);
    }
  } catch (error) {
    if (signal.aborted) return;
    if (errorCode(error) === 'DSO_DOCKER_RECONNECT_FAILED') {
      throw new DsoError(
        'DSO_AGENT_ENGINE_LOST',
        `the engine's events stream failed ${context.reconnect.maxAttempts} reconnects in a row; exiting so the supervisor restarts the agent`,
        { cause: error },
      );
    }
    throw error;
  }
}
