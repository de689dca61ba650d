import { type Clock, checkLabels, LABELS, type LabelWarning, type Logger } from '@dso/core';
import type { ContainerStatus, DeliveryTrigger } from './agent-types.js';
import type { AuditSink, EventBus } from './reporting.js';

/** What reporting label warnings needs from the agent. */
export interface LabelWarningsContext {
  statuses: Map<string, ContainerStatus>;
  bus: EventBus;
  audit: AuditSink;
  logger: Logger;
  clock: Clock;
}

/**
 * Containers whose last warnings are remembered so that each is told once (not at every
 * reconciliation); past this many, the longest-unwarned is forgotten (and told again).
 */
export const MAX_REMEMBERED_WARNINGS = 4_096;

/**
 * Tells the operator what a managed container's labels got wrong without failing anything: an
 * unknown `dso.*` label (`dso.flie.x` delivers nothing, silently, otherwise), a near-miss
 * reference, an owner and mode that lock the readers out. Each is in the container's status
 * (`warnings`) for as long as the labels have it, and is an event, a log line and an audit line
 * (`refused`, its code and the sentence with the fix) once, when first seen.
 */
export interface LabelWarnings {
  /**
   * Checks the labels of a container just inspected; returns the warnings, which
   * {@link LabelWarnings.show} puts in its status once the delivery reported its outcome.
   */
  check(
    containerId: string,
    containerName: string | undefined,
    labels: Readonly<Record<string, string>>,
  ): LabelWarning[];
  /**
   * Puts `warnings` in the container's status (replacing earlier ones; none removes them). A
   * container with no status yet (it has nothing else to deliver: its only file label is the
   * typo) gets a failed last action naming the first warning, so `dso status` lists it.
   */
  show(containerId: string, trigger: DeliveryTrigger, warnings: readonly LabelWarning[]): void;
  /**
   * A container that started without `dso.enable=true`: when it carries DSO labels (a misspelt
   * `dso.enable`, `dso.enable=yes`, `dso.file.*` without `dso.enable`), they are reported like a
   * managed container's warnings (once: event, warn log, audit line) and it is listed in status
   * (`failed`, the first warning's code and fix) until it is removed. Labels only: nothing is
   * asked of the engine. Returns whether it was reported.
   */
  unmanaged(
    containerId: string,
    containerName: string | undefined,
    labels: Readonly<Record<string, string>>,
  ): boolean;
  /** Whether `containerId` is an unmanaged container listed for its labels (pruning keeps it). */
  isUnmanaged(containerId: string): boolean;
  /** The container is gone: its warnings and (when unmanaged) its status go. */
  forget(containerId: string): void;
}

/** `dso.*` labels that say nothing about DSO managing a container (DSO's own tests' mark). */
const NEUTRAL_LABELS: ReadonlySet<string> = new Set(['dso.test']);
/** A `dso.enable` that opts out on purpose: not reported. */
const OPTED_OUT = /^(?:false|no|off|0)$/i;

/**
 * What is wrong with the labels of a container that is not managed (no `dso.enable=true`):
 * nothing when it has no DSO label (or says `dso.enable=false`); else {@link checkLabels}'s
 * warnings (a misspelt `dso.enable` with what was meant), and, when none of them is about
 * enabling it, `DSO_LABEL_NOT_ENABLED` naming its DSO labels and the label to add.
 *
 * @example
 * notEnabledWarnings({ 'dso.enabel': 'true' }); // [{ code: 'DSO_LABEL_UNKNOWN', suggestion: 'dso.enable', … }]
 */
export function notEnabledWarnings(labels: Readonly<Record<string, string>>): LabelWarning[] {
  const enable = labels[LABELS.enable];
  if (enable === 'true' || (enable !== undefined && OPTED_OUT.test(enable.trim()))) return [];
  const dsoLabels = Object.keys(labels)
    .filter((key) => /^dso[._-]/i.test(key) && !NEUTRAL_LABELS.has(key))
    .sort();
  const warnings = checkLabels(labels);
  if (dsoLabels.length === 0 && warnings.length === 0) return [];
  if (!warnings.some((warning) => warning.suggestion?.startsWith(LABELS.enable))) {
    const shown = dsoLabels.slice(0, 3).join(', ') + (dsoLabels.length > 3 ? ', …' : '');
    warnings.unshift({
      code: 'DSO_LABEL_NOT_ENABLED',
      label: LABELS.enable,
      message: `the container has DSO labels (${shown}) but not ${LABELS.enable}=true, so DSO does not manage it; add the label ${LABELS.enable}=true (docker run --label ${LABELS.enable}=true; compose: labels: { ${LABELS.enable}: "true" }) and recreate it`,
      suggestion: `${LABELS.enable}=true`,
    });
  }
  return warnings;
}

/** @example const labelWarnings = createLabelWarnings({ statuses, bus, audit, logger, clock }); */
export function createLabelWarnings(context: LabelWarningsContext): LabelWarnings {
  const { statuses, bus, audit, logger, clock } = context;
  const told = new Map<string, string>();
  // Unmanaged containers listed in status for their labels, oldest first; as many as `told`.
  const unmanagedIds = new Set<string>();
  /** Event, log and audit line for each warning, unless these were told for this container last. */
  function tell(
    containerId: string,
    containerName: string | undefined,
    warnings: readonly LabelWarning[],
  ): void {
    const key = warnings.map((warning) => `${warning.code}\0${warning.label}`).join('\0');
    const before = told.get(containerId);
    told.delete(containerId);
    if (warnings.length === 0) return;
    told.set(containerId, key);
    if (told.size > MAX_REMEMBERED_WARNINGS) told.delete(told.keys().next().value as string);
    if (before === key) return;
    const at = Math.floor(clock.now());
    const name = containerName?.replace(/^\//, '');
    for (const warning of warnings) {
      // Named here: an unmanaged container has no status yet for the bus to name it from.
      bus.emit({
        type: 'label-warning',
        at,
        containerId,
        ...(name === undefined || name === '' ? {} : { containerName: name }),
        ...warning,
      });
      logger.warn(
        { containerId: containerId.slice(0, 12), code: warning.code, label: warning.label },
        warning.message,
      );
      audit.record({
        actor: { kind: 'agent' },
        action: 'inject',
        containerId,
        ...(name !== undefined && /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(name)
          ? { containerName: name }
          : {}),
        outcome: 'refused',
        code: warning.code,
        reason: warning.message,
      });
    }
  }
  return {
    check(containerId, containerName, labels) {
      const warnings = checkLabels(labels);
      tell(containerId, containerName, warnings);
      return warnings;
    },
    unmanaged(containerId, containerName, labels) {
      const warnings = notEnabledWarnings(labels);
      if (warnings.length === 0) {
        if (unmanagedIds.delete(containerId)) statuses.delete(containerId);
        told.delete(containerId);
        return false;
      }
      const name = containerName?.replace(/^\//, '');
      tell(containerId, name, warnings);
      const first = warnings[0]!;
      statuses.set(containerId, {
        id: containerId,
        ...(name === undefined || name === '' ? {} : { name }),
        state: 'running',
        lastAction: {
          trigger: 'started',
          at: Math.floor(clock.now()),
          outcome: 'failed',
          code: first.code,
          message: first.message,
        },
        warnings,
      });
      unmanagedIds.delete(containerId);
      unmanagedIds.add(containerId);
      if (unmanagedIds.size > MAX_REMEMBERED_WARNINGS) {
        const oldest = unmanagedIds.values().next().value as string;
        unmanagedIds.delete(oldest);
        statuses.delete(oldest);
      }
      return true;
    },
    isUnmanaged: (containerId) => unmanagedIds.has(containerId),
    forget(containerId) {
      told.delete(containerId);
      unmanagedIds.delete(containerId);
    },
    show(containerId, trigger, warnings) {
      const status = statuses.get(containerId);
      if (status === undefined) {
        const first = warnings[0];
        if (first === undefined) return;
        statuses.set(containerId, {
          id: containerId,
          lastAction: {
            trigger,
            at: Math.floor(clock.now()),
            outcome: 'failed',
            code: first.code,
            message: first.message,
          },
          warnings: [...warnings],
        });
        return;
      }
      if (warnings.length === 0) {
        if (status.warnings !== undefined) {
          const { warnings: _gone, ...rest } = status;
          statuses.set(containerId, rest);
        }
        return;
      }
      statuses.set(containerId, { ...status, warnings: [...warnings] });
    },
  };
}
