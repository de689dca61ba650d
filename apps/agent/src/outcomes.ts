import { type Clock, isDsoError, isRetryable } from '@dso/core';
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

/**
 * Where the audit trail says a secret went: a container (with its name when known: a refusal's
 * line names it), or a DSO volume.
 */
export type AuditTarget = { containerId: string; containerName?: string } | { volume: string };

/**
 * Consumers whose last refusal is remembered so that it is audited once, not at every retry or
 * reconciliation; past this many, the longest-unrefused is forgotten (and audited again).
 */
export const MAX_REMEMBERED_REFUSALS = 4_096;

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
   * `status` is false), to subscribers and in the audit trail. A failure that may pass (the
   * error is retryable) is an `error` line when it names a reference; one that will not pass by
   * itself (a bad label, a target that is no tmpfs, a missing shell, a refused host folder: any
   * non-retryable failure) is a `refused` line with the container's name, the code and the
   * reason, written once per distinct refusal of a consumer (not at each retry), and again
   * only after the consumer was delivered to or refused otherwise.
   */
  failed(
    id: string,
    trigger: DeliveryTrigger,
    error: unknown,
    target: AuditTarget,
    options?: { status?: boolean },
  ): void;
}

/** The target as an audit line takes it: a container's name only when the engine allows it. */
function auditTarget(target: AuditTarget): AuditTarget {
  if (!('containerId' in target) || target.containerName === undefined) return target;
  const name = target.containerName.replace(/^\//, '');
  return /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(name)
    ? { containerId: target.containerId, containerName: name }
    : { containerId: target.containerId };
}

/** @example const outcomes = createOutcomes({ statuses, bus, audit, providerOf, clock }); */
export function createOutcomes(context: OutcomesContext): Outcomes {
  const { statuses, bus, audit, clock } = context;
  // Per consumer, the last refusal audited (code, reference, reason): not written twice.
  const refusals = new Map<string, string>();
  const refused = (id: string, key: string): boolean => {
    const seen = refusals.get(id) === key;
    // Re-set: the map's order is the order of the last refusals, oldest first.
    refusals.delete(id);
    refusals.set(id, key);
    if (refusals.size > MAX_REMEMBERED_REFUSALS) {
      refusals.delete(refusals.keys().next().value as string);
    }
    return seen;
  };
  const now = () => Math.floor(clock.now());
  const described = ({ name, reference, provider, version }: DeliveredFile) => ({
    name,
    reference,
    provider,
    version,
  });
  return {
    delivered(id, trigger, files, method, env = []) {
      refusals.delete(id);
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
          ...auditTarget(target),
          outcome: 'ok',
          cacheHit: file.cacheHit,
          durationMs,
        });
      }
    },
    upToDate(id, trigger) {
      refusals.delete(id);
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
      // A failure that will not pass by itself needs the operator: status says what to do. A
      // DsoError's message is built from references, ids and paths, never a value.
      const advice = !isRetryable(error) && isDsoError(error) ? { message: error.message } : {};
      if (options.status !== false) {
        statuses.set(id, {
          ...statuses.get(id),
          id,
          lastAction: { trigger, at, outcome: 'failed', code, ...about, ...advice },
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
      if (!isRetryable(error)) {
        const reason = error instanceof Error && error.message !== '' ? error.message : code;
        if (refused(id, `${code}\0${reference ?? ''}\0${reason}`)) return;
        audit.record({
          actor: { kind: 'agent' },
          action: 'inject',
          ...(reference === undefined
            ? {}
            : { reference, provider: context.providerOf(reference) }),
          ...auditTarget(target),
          outcome: 'refused',
          code,
          reason,
        });
      } else if (reference !== undefined) {
        audit.record({
          actor: { kind: 'agent' },
          action: 'inject',
          reference,
          provider: context.providerOf(reference),
          ...auditTarget(target),
          outcome: 'error',
          code,
        });
      }
    },
  };
}
