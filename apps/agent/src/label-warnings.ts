import { type Clock, checkLabels, type LabelWarning, type Logger } from '@dso/core';
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
}

/** @example const labelWarnings = createLabelWarnings({ statuses, bus, audit, logger, clock }); */
export function createLabelWarnings(context: LabelWarningsContext): LabelWarnings {
  const { statuses, bus, audit, logger, clock } = context;
  const told = new Map<string, string>();
  return {
    check(containerId, containerName, labels) {
      const warnings = checkLabels(labels);
      const key = warnings.map((warning) => `${warning.code}\0${warning.label}`).join('\0');
      const before = told.get(containerId);
      told.delete(containerId);
      if (warnings.length === 0) return warnings;
      told.set(containerId, key);
      if (told.size > MAX_REMEMBERED_WARNINGS) told.delete(told.keys().next().value as string);
      if (before === key) return warnings;
      const at = Math.floor(clock.now());
      const name = containerName?.replace(/^\//, '');
      for (const warning of warnings) {
        bus.emit({ type: 'label-warning', at, containerId, ...warning });
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
      return warnings;
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
