import { createLimiter } from '@dso/async';
import { type Clock, errorCode, type Logger } from '@dso/core';
import type { DockerRuntime } from '@dso/docker-runtime';
import type { ContainerStatus } from './agent-types.js';
import type { AuditSink, EventBus } from './reporting.js';

// ---------------------------------------------------------------------------------------------
// A container started with `dso://` or `dsofile://` text as the value of an environment
// variable was created without the references wired in: most often a plain `docker compose up`
// after `dso up`, which recreates the service from the user's files alone. Its application gets
// the text "dso://app/db", not the secret, and usually fails in a way that does not say why.
// Every started container (managed or not) is inspected for that, and each one found is told
// loudly, once: its status (a failed last action naming the variables and the command that
// fixes it, and `literalReferences`), a `literal-references` event, a warn log line and a
// `refused` audit line.
// ---------------------------------------------------------------------------------------------

/**
 * Inspections at once: a burst of starts (the engine emits up to ~1,450 a minute here) waits in
 * line instead of holding as many engine connections.
 */
export const LITERAL_CHECK_CONCURRENCY = 2;

/** The code of the report. */
export const LITERAL_REFERENCE_CODE = 'DSO_AGENT_LITERAL_REFERENCE';

/** Containers remembered as reported; past this many, the oldest is forgotten. */
export const MAX_REPORTED_CONTAINERS = 4_096;

/** What the part needs of the agent. */
export interface LiteralReferencesContext {
  runtime: Pick<DockerRuntime, 'inspectContainer'>;
  statuses: Map<string, ContainerStatus>;
  bus: EventBus;
  audit: AuditSink;
  logger: Logger;
  clock: Clock;
}

/** See the module comment. */
export interface LiteralReferences {
  /** A container started: inspects it and reports literal references. Never rejects. */
  check(containerId: string, signal: AbortSignal): Promise<void>;
  /**
   * Whether the container was reported: its status is kept for as long as the container
   * exists, though it is not a managed one (the reconciler prunes those).
   */
  reported(containerId: string): boolean;
  /** The container is gone. */
  forget(containerId: string): void;
}

/** @example const literal = createLiteralReferences({ runtime, statuses, bus, audit, logger, clock }); */
export function createLiteralReferences(context: LiteralReferencesContext): LiteralReferences {
  const { runtime, statuses, bus, audit, logger, clock } = context;
  const reported = new Set<string>();
  const limiter = createLimiter(LITERAL_CHECK_CONCURRENCY);
  return {
    async check(containerId, signal) {
      // Its environment cannot change while it exists: a restart is not told again.
      if (reported.has(containerId)) return;
      let details: Awaited<ReturnType<DockerRuntime['inspectContainer']>>;
      try {
        details = await limiter.run(() => runtime.inspectContainer(containerId, { signal }), {
          signal,
        });
      } catch (error) {
        // Gone already, or the engine did not answer: nothing to tell about it.
        logger.debug(
          { containerId: containerId.slice(0, 12), code: errorCode(error) },
          'could not inspect a started container for literal references',
        );
        return;
      }
      const found = details.envReferences ?? [];
      if (found.length === 0 || signal.aborted) return;
      reported.add(containerId);
      if (reported.size > MAX_REPORTED_CONTAINERS) {
        reported.delete(reported.values().next().value as string);
      }
      const variables = found.map(({ name }) => name);
      const literalReferences = found.map(({ name, value }) => ({
        variable: name,
        reference: value.length > 300 ? `${value.slice(0, 300)}…` : value,
      }));
      const name = details.name || containerId.slice(0, 12);
      const fix = fixFor(details.labels);
      const message = `container ${name} was started with DSO references as literal text in its environment (${variables.join(', ')}): its application gets the text, not the secret. It was created without dso up (a plain docker compose up?): ${fix}`;
      const at = Math.floor(clock.now());
      const status = statuses.get(containerId);
      statuses.set(
        containerId,
        status === undefined
          ? {
              id: containerId,
              name,
              ...(details.state === '' ? {} : { state: details.state }),
              lastAction: {
                trigger: 'started',
                at,
                outcome: 'failed',
                code: LITERAL_REFERENCE_CODE,
                message,
              },
              lastFailure: { trigger: 'started', at, code: LITERAL_REFERENCE_CODE, message },
              literalReferences,
            }
          : { ...status, literalReferences },
      );
      bus.emit({
        type: 'literal-references',
        at,
        containerId,
        variables,
        code: LITERAL_REFERENCE_CODE,
        message,
      });
      logger.warn(
        {
          containerId: containerId.slice(0, 12),
          container: name,
          variables,
          code: LITERAL_REFERENCE_CODE,
        },
        message,
      );
      audit.record({
        actor: { kind: 'agent' },
        action: 'inject',
        containerId,
        ...(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(details.name)
          ? { containerName: details.name }
          : {}),
        outcome: 'refused',
        code: LITERAL_REFERENCE_CODE,
        // Short, for the trail's limit: the fix first.
        reason: `started with reference text in ${variables.join(', ')}: ${fix}`,
      });
    },
    reported: (containerId) => reported.has(containerId),
    forget(containerId) {
      reported.delete(containerId);
    },
  };
}

/**
 * The command that recreates the container with its references wired in: `dso up` with the
 * project and files compose labelled it with, when compose made it.
 */
export function fixFor(labels: Readonly<Record<string, string>>): string {
  const project = labels['com.docker.compose.project'];
  const service = labels['com.docker.compose.service'];
  if (project === undefined || project === '') {
    return 'recreate it with the references wired in: from a compose file with dso up -d, or with the labels dso.enable=true and dso.env.<NAME>/dso.file.<name> (see the README)';
  }
  const files = (labels['com.docker.compose.project.config_files'] ?? '')
    .split(',')
    .filter((file) => file !== '' && !file.startsWith('/dev/') && !file.includes('dso-up'));
  const directory = labels['com.docker.compose.project.working_dir'];
  const command = [
    'dso up -d',
    `-p ${shellWord(project)}`,
    ...files.map((file) => `-f ${shellWord(file)}`),
    ...(service === undefined || service === '' ? [] : [shellWord(service)]),
  ].join(' ');
  // Compose records the files as given: relative ones are from its working folder.
  const cd =
    directory !== undefined && directory !== '' && !files.every((file) => file.startsWith('/'))
      ? `cd ${shellWord(directory)} && `
      : '';
  return `recreate it with dso up instead of docker compose up: ${cd}${command}`;
}

/** `text` as one shell word: as is when plain, else single-quoted. */
function shellWord(text: string): string {
  return /^[A-Za-z0-9_./:@%+=,-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}
