import { type Clock, isRetryable } from '@dso/core';
import type { ContainerStatus, DeliveredFile, DeliveryTrigger } from './agent-types.js';
import type { AuditSink, EventBus } from './reporting.js';
import { failedReference, failureCode } from './secrets.js';

/** What reporting a consumer's outcome needs from the agent. */
export interface OutcomesContext {
  /** The last action per consumer, for status(): references and versions, never values. */
  statuses: Map<string, ContainerStatus>;
  bus: EventBus;
  audit: AuditSink;
  /** The provider a formatted reference names. */
  providerOf(reference: string): string;
  clock: Clock;
}

/** Where the audit trail says a secret went: a container, or a DSO volume. */
export type AuditTarget = { containerId: string } | { volume: string };

/**
 * One way to tell status, subscribers and the audit trail what happened to a consumer (a
 * container, or a DSO volume mount): containers and volumes report alike.
 */
export interface Outcomes {
  /** Files written: the status lists them, subscribers hear `delivered`. */
  delivered(
    id: string,
    trigger: DeliveryTrigger,
    files: readonly DeliveredFile[],
    method: 'exec' | 'host' | 'volume',
    env?: readonly DeliveredFile[],
  ): void;
  /** One audit line per file written (references and versions, never values). */
  written(
    files: ReadonlyArray<DeliveredFile & { cacheHit: boolean }>,
    target: AuditTarget,
    durationMs: number,
  ): void;
  /** Nothing to write: the same versions are there. */
  upToDate(id: string, trigger: DeliveryTrigger): void;
  /**
   * A failure: its code and the reference it concerns (never a value) in status (unless
   * `status` is false), to subscribers and in the audit trail.
   */
  failed(
    id: string,
    trigger: DeliveryTrigger,
    error: unknown,
    target: AuditTarget,
    options?: { status?: boolean },
  ): void;
}

/** @example const outcomes = createOutcomes({ statuses, bus, audit, providerOf, clock }); */
export function createOutcomes(context: OutcomesContext): Outcomes {
  const { statuses, bus, audit, clock } = context;
  const now = () => Math.floor(clock.now());
  const described = ({ name, reference, provider, version }: DeliveredFile) => ({
    name,
    reference,
    provider,
    version,
  });
  return {
    delivered(id, trigger, files, method, env = []) {
      const at = now();
      statuses.set(id, {
        id,
        files: files.map(described),
        ...(env.length === 0 ? {} : { env: env.map(described) }),
        deliveredAt: at,
        lastAction: { trigger, at, outcome: 'delivered' },
      });
      bus.emit({ type: 'delivered', at, containerId: id, trigger, files: files.length, method });
    },
    written(files, target, durationMs) {
      for (const file of files) {
        audit.record({
          actor: { kind: 'agent' },
          action: 'inject',
          reference: file.reference,
          provider: file.provider,
          version: file.version,
          ...target,
          outcome: 'ok',
          cacheHit: file.cacheHit,
          durationMs,
        });
      }
    },
    upToDate(id, trigger) {
      statuses.set(id, {
        ...statuses.get(id),
        id,
        lastAction: { trigger, at: now(), outcome: 'up-to-date' },
      });
    },
    failed(id, trigger, error, target, options = {}) {
      const reference = failedReference(error);
      const code = failureCode(error);
      const at = now();
      const about = reference === undefined ? {} : { reference };
      if (options.status !== false) {
        statuses.set(id, {
          ...statuses.get(id),
          id,
          lastAction: { trigger, at, outcome: 'failed', code, ...about },
        });
      }
      bus.emit({
        type: 'delivery-failed',
        at,
        containerId: id,
        trigger,
        code,
        ...about,
        retry: isRetryable(error),
      });
      if (reference !== undefined) {
        audit.record({
          actor: { kind: 'agent' },
          action: 'inject',
          reference,
          provider: context.providerOf(reference),
          ...target,
          outcome: 'error',
          code,
        });
      }
    },
  };
}
