import { type AuditLog, errorCode, type Logger } from '@dso/core';
import type { AgentEvent } from './agent-types.js';

/** The agent's subscribers: the API's event streams. */
export interface EventBus {
  /** Tells every subscriber, synchronously; one that throws is dropped. */
  emit(event: AgentEvent): void;
  /** Returns the unsubscribe function. */
  subscribe(listener: (event: AgentEvent) => void): () => void;
}

/**
 * @param describe The container's name and state as the agent knows them: every event carries
 *   them (an event's own fields win), so a reader sees names, not only ids.
 * @example const bus = createEventBus(); bus.subscribe(console.log);
 */
export function createEventBus(
  describe: (containerId: string) => { name?: string; state?: string } | undefined = () =>
    undefined,
): EventBus {
  const listeners = new Set<(event: AgentEvent) => void>();
  return {
    emit(plain) {
      if (listeners.size === 0) return;
      const known = describe(plain.containerId);
      const event: AgentEvent = {
        ...plain,
        ...(known?.name === undefined || plain.containerName !== undefined
          ? {}
          : { containerName: known.name }),
        ...(known?.state === undefined || plain.containerState !== undefined
          ? {}
          : { containerState: known.state }),
      };
      for (const listener of listeners) {
        try {
          listener(event);
        } catch {
          // A listener must not block or throw: one that does is dropped, the others go on.
          listeners.delete(listener);
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
  };
}

/** What the agent records in the audit trail. */
export type AuditRecord = Parameters<AuditLog['record']>[0];

/** The audit trail as the agent's parts write it: never throwing. */
export interface AuditSink {
  record(entry: AuditRecord): void;
}

/**
 * The audit trail, never throwing: a trail that cannot be written (disk full) is logged once
 * per outage, and never turns a delivery or a rotation that happened into a failure (nor a
 * successful action into an escalation). Absent trail: records nothing.
 *
 * @example
 * const audit = createAuditSink(auditLog, logger);
 * audit.record({ actor: { kind: 'agent' }, action: 'inject', … });
 */
export function createAuditSink(log: AuditLog | undefined, logger: Logger): AuditSink {
  let failing = false;
  return {
    record(entry) {
      if (log === undefined) return;
      try {
        log.record(entry);
        if (failing) {
          failing = false;
          logger.info('audit trail written again');
        }
      } catch (error) {
        if (!failing) {
          failing = true;
          logger.error(
            { err: error, code: errorCode(error) },
            'audit trail cannot be written: fix it (disk space, permissions); the agent goes on',
          );
        }
      }
    },
  };
}
