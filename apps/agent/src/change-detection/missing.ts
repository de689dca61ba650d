import { type Clock, type Logger, parseReference } from '@dso/core';
import type { ContainerStatus, DeliveredFile } from '../agent-types.js';
import type { AuditSink, EventBus } from '../reporting.js';
import type { MissingSecret } from './types.js';

/** What reporting a secret gone from its store needs from the agent. */
export interface MissingReportContext {
  /** The status of each consumer, where it is shown missing. */
  statuses: Map<string, ContainerStatus>;
  /** The consumers of `provider:path` (containers and volume mounts). */
  consumersOf(provider: string, path: string): string[];
  /** Drops the secret's cached value, so the next delivery asks the provider (and fails). */
  forgetCached(provider: string, path: string): void;
  bus: EventBus;
  audit: AuditSink;
  logger: Logger;
  clock: Clock;
}

/** Where the audit trail says a consumer is: a container, or a volume (`volume:<name>:<mount id>`). */
function auditTarget(id: string): { containerId: string } | { volume: string } {
  if (!id.startsWith('volume:')) return { containerId: id };
  return { volume: id.slice('volume:'.length).split(':')[0] ?? '' };
}

/** The consumer's own reference to `provider:path`, as its status lists it. */
function referenceIn(
  status: ContainerStatus | undefined,
  missing: MissingSecret,
): DeliveredFile | undefined {
  for (const entry of [...(status?.files ?? []), ...(status?.env ?? [])]) {
    if (entry.provider !== missing.provider) continue;
    try {
      if (parseReference(entry.reference).path === missing.path) return entry;
    } catch {
      // A status entry always holds a formatted reference; one that does not parse names nothing.
    }
  }
  return undefined;
}

/**
 * A secret deleted from its store while containers use it: each consumer keeps the value it
 * was given (its files stay, its environment too) but is no longer up to date with its store.
 * Each is shown `missing` in status with the reference and what to do, a `secret-missing`
 * event is sent, and an audit line (`inject`, `error`, the provider's code) is written; the
 * cached value is dropped, so the next check or reconciliation asks the store again and fails
 * the same way instead of answering "up to date" from the cache.
 *
 * @example
 * const onMissing = createMissingReporter({ statuses, consumersOf, forgetCached, bus, audit, logger, clock });
 * createChangeDetector({ …, onMissing });
 */
export function createMissingReporter(
  context: MissingReportContext,
): (missing: MissingSecret) => void {
  const { statuses, bus, audit, logger, clock } = context;
  return (missing) => {
    context.forgetCached(missing.provider, missing.path);
    const consumers = context.consumersOf(missing.provider, missing.path);
    const at = Math.floor(clock.now());
    for (const id of consumers) {
      const known = statuses.get(id);
      const entry = referenceIn(known, missing);
      const reference = entry?.reference ?? `${missing.provider}:${missing.path}`;
      const held = entry === undefined ? '' : ` (version ${entry.version})`;
      const message = `${reference} is no longer in provider ${missing.provider}: the container keeps the value it was given${held} until it restarts, when its delivery fails; store the secret again or remove the reference`;
      statuses.set(id, {
        ...known,
        id,
        lastAction: {
          trigger: 'changed',
          at,
          outcome: 'missing',
          code: missing.code,
          reference,
          message,
        },
      });
      bus.emit({
        type: 'secret-missing',
        at,
        containerId: id,
        reference,
        code: missing.code,
        message,
      });
      audit.record({
        actor: { kind: 'agent' },
        action: 'inject',
        reference,
        provider: missing.provider,
        ...auditTarget(id),
        outcome: 'error',
        code: missing.code,
      });
    }
    logger.warn(
      {
        reference: `${missing.provider}:${missing.path}`,
        code: missing.code,
        containers: consumers.length,
      },
      'secret removed from its store while in use: its consumers are shown missing',
    );
  };
}
