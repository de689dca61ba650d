import { type Clock, errorCode, isRetryable } from '@dso/core';
import type { ContainerStatus, DeliveredFile, DeliveryTrigger } from './agent-types.js';
import type { AuditSink, EventBus } from './reporting.js';
import { failedReference, failureCode } from './secrets.js';

/** What a delivery learnt of its container when it inspected it: shown in status and events. */
export interface ContainerFacts {
  /** Its name, without the leading `/`. */
  name: string;
  /** The engine's state: `running`, `exited`, … */
  state: string;
  /** Its `dso.rotation` policy as written on it, when it has one. */
  rotation?: string;
}

/**
 * What to do about a failure, by code, where the error's own message does not say it (a
 * provider's message says what it found, not what the operator does next).
 */
const FIXES: Readonly<Record<string, string>> = {
  DSO_PROVIDER_NOT_FOUND:
    'store the secret in the provider named (dso secret set <path> for the local vault) or correct the reference in the label (`provider:` before the path names another provider), then restart the container or run dso reconcile',
  DSO_PROVIDER_UNAUTHORIZED: "check the provider's credentials in dso.yaml",
  DSO_PROVIDER_INVALID_CONFIG:
    "correct the provider's configuration in dso.yaml and restart the agent",
  DSO_PROVIDER_TOO_LARGE: 'store a smaller value, or raise the provider’s size limit in dso.yaml',
};

/**
 * A failure in one line for people: the agent's message, what the error it wraps says (a
 * provider's or the engine's message: built from references, ids and paths, never a value), and
 * what to do. An error that is not DSO's own may quote anything: only its code is named.
 */
export function failureMessage(error: unknown): string {
  const code = failureCode(error);
  const retry = isRetryable(error);
  const own = (value: unknown): value is Error =>
    value instanceof Error && errorCode(value) !== undefined && value.message !== '';
  let text: string;
  if (own(error)) {
    text = error.message;
    const cause = (error as { cause?: unknown }).cause;
    if (own(cause) && !text.includes(cause.message)) text = `${text}: ${cause.message}`;
  } else {
    text = `the delivery failed (${code}): the agent's log has the details`;
  }
  const fix = FIXES[code];
  if (fix !== undefined && !text.includes(fix)) text = `${text}; ${fix}`;
  return retry ? `${text} (the agent tries again)` : text;
}

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
    container?: ContainerFacts,
    /** When the files were written (the delivered store's stamp); default now. */
    deliveredAt?: number,
  ): void;
  /** One audit line per file written (references and versions, never values). */
  written(
    files: ReadonlyArray<DeliveredFile & { cacheHit: boolean }>,
    target: AuditTarget,
    durationMs: number,
  ): void;
  /**
   * Nothing to write: the same versions are there. `delivered` lists them, for a status that
   * has none (after an agent restart, the files were delivered by the agent before).
   */
  upToDate(
    id: string,
    trigger: DeliveryTrigger,
    delivered?: {
      files: readonly DeliveredFile[];
      env?: readonly DeliveredFile[];
      container?: ContainerFacts;
      /** When the files were written, when known (the state file's, after an agent restart). */
      deliveredAt?: number;
    },
  ): void;
  /** The engine says the container's state changed (it died): status and events show it. */
  stateChanged(id: string, state: string): void;
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
    options?: { status?: boolean; container?: ContainerFacts },
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
  // What status keeps of a container across its outcomes: its facts and its last failure.
  const kept = (id: string, container: ContainerFacts | undefined) => {
    const known = statuses.get(id);
    const facts = container ?? known;
    return {
      ...(facts?.name === undefined ? {} : { name: facts.name }),
      ...(facts?.state === undefined ? {} : { state: facts.state }),
      ...(facts?.rotation === undefined ? {} : { rotation: facts.rotation }),
      ...(known?.lastFailure === undefined ? {} : { lastFailure: known.lastFailure }),
    };
  };
  return {
    delivered(id, trigger, files, method, env = [], container = undefined, deliveredAt = now()) {
      refusals.delete(id);
      const at = deliveredAt;
      statuses.set(id, {
        id,
        ...kept(id, container),
        files: files.map(described),
        ...(env.length === 0 ? {} : { env: env.map(described) }),
        deliveredAt: at,
        lastAction: { trigger, at, outcome: 'delivered' },
      });
      bus.emit({ type: 'delivered', at, containerId: id, trigger, files: files.length, method });
    },
    stateChanged(id, state) {
      const known = statuses.get(id);
      if (known !== undefined) statuses.set(id, { ...known, state });
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
    upToDate(id, trigger, delivered) {
      refusals.delete(id);
      const known = statuses.get(id);
      // Known files are the ones delivered; a restarted agent knows none until this check.
      const files =
        known?.files !== undefined || delivered === undefined
          ? {}
          : {
              files: delivered.files.map(described),
              ...(delivered.env === undefined || delivered.env.length === 0
                ? {}
                : { env: delivered.env.map(described) }),
            };
      statuses.set(id, {
        ...known,
        ...kept(id, delivered?.container),
        ...files,
        ...(known?.deliveredAt === undefined && delivered?.deliveredAt !== undefined
          ? { deliveredAt: delivered.deliveredAt }
          : {}),
        id,
        lastAction: { trigger, at: now(), outcome: 'up-to-date' },
      });
    },
    failed(id, trigger, error, target, options = {}) {
      const reference = failedReference(error);
      const code = failureCode(error);
      const at = now();
      const about = reference === undefined ? {} : { reference };
      // Every failure says what happened and what to do, in status and events (DSO's messages
      // are built from references, ids and paths, never a value).
      const message = failureMessage(error);
      if (options.status !== false) {
        const failure = { trigger, at, code, ...about, message };
        statuses.set(id, {
          ...statuses.get(id),
          ...kept(id, options.container),
          id,
          lastAction: { ...failure, outcome: 'failed' },
          lastFailure: failure,
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
        message,
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
