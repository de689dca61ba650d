import { type AgentApiEventLine, DsoError } from '@dso/core';
import type { Command } from 'commander';
import { type AgentClient, consumerLabel, createAgentClient, printable } from '../agent-client.js';
import type { CliIo } from '../program.js';

/** What `dso events` calls; injected so tests need no agent. */
export interface EventsDependencies {
  agent: () => Pick<AgentClient, 'events'>;
  /** Aborts when the user stops the command (Ctrl-C). */
  signal: AbortSignal;
}

/**
 * Adds `dso events [--json]`: follows what the agent does to containers (deliveries, failures
 * with their code, reference, reason and fix, rotations, replacements), each naming the
 * container, until Ctrl-C (exit 0). When the agent stops (or drops the stream) it says so on
 * stderr and fails with DSO_CLI_AGENT_UNAVAILABLE, as `docker events` fails when its daemon goes:
 * a script or supervisor sees the end and starts it again.
 */
export function registerEventsCommand(
  program: Command,
  io: CliIo,
  dependencies: () => EventsDependencies = () => ({
    agent: () => createAgentClient({ socketPath: { env: io.env } }),
    signal: interruptSignal(),
  }),
): void {
  program
    .command('events')
    .description(
      'follow what the agent does, naming each container: deliveries, failures (code, reference, reason and fix; never a value), rotations and replacements, until Ctrl-C; fails when the agent stops',
    )
    .option('--json', 'print each event as one JSON object a line')
    .action(async (options: { json?: boolean }) => {
      const { agent, signal } = dependencies();
      let dropped: string | undefined;
      await agent().events(
        (event) => {
          if (event.type === 'heartbeat') return;
          if (event.type === 'dropped') dropped = String(event.reason);
          io.stdout.write(`${options.json ? JSON.stringify(event) : describeEvent(event)}\n`);
        },
        { signal },
      );
      if (signal.aborted) return;
      // The stream has no end of its own: the agent ended it (stopping), or dropped this reader.
      throw new DsoError(
        'DSO_CLI_AGENT_UNAVAILABLE',
        dropped === undefined
          ? 'the agent stopped: its events ended; run dso events again once it is back (dso status says when it answers)'
          : `the agent dropped this stream (${printable(dropped.slice(0, 200))}): run dso events again, and read its output faster (not through a slow pipe)`,
      );
    });
}

/** The container an event concerns, for people: `name (id12, state)`, or what is known of it. */
function containerOf(event: AgentApiEventLine): string {
  if (typeof event.containerId !== 'string') return '';
  const short = consumerLabel(event.containerId);
  const name = typeof event.containerName === 'string' ? event.containerName : undefined;
  const state = typeof event.containerState === 'string' ? event.containerState : undefined;
  if (name === undefined) return state === undefined ? short : `${short} (${state})`;
  return `${name} (${[short, state].filter((part) => part !== undefined).join(', ')})`;
}

/** One event as a line for people: time, what, container, details, and a failure's reason and fix. */
export function describeEvent(event: AgentApiEventLine): string {
  const time = new Date(event.at).toISOString();
  const container = containerOf(event);
  const fields = (names: string[]) =>
    names
      .filter((name) => event[name] !== undefined)
      .map((name) => `${name}=${String(event[name])}`)
      .join(' ');
  const why = typeof event.message === 'string' ? `: ${event.message}` : '';
  const line = (() => {
    switch (event.type) {
      case 'subscribed':
        return `${time} following the agent's events (Ctrl-C to stop)`;
      case 'delivered':
        return `${time} delivered       ${container} ${fields(['files', 'method', 'trigger'])}`;
      case 'delivery-failed':
        return `${time} delivery failed ${container} ${fields(['code', 'reference', 'trigger', 'retry'])}${why}`;
      case 'rotated':
        return `${time} rotated         ${container} ${fields(['policy'])}`;
      case 'rotation-failed':
        return `${time} rotation failed ${container} ${fields(['policy', 'code', 'rolledBack'])}${why}`;
      case 'secret-missing':
        return `${time} secret missing  ${container} ${fields(['reference', 'code'])}${why}`;
      case 'label-warning':
        return `${time} label warning   ${container} ${fields(['label', 'code', 'suggestion'])}${why}`;
      case 'literal-references':
        return `${time} literal refs    ${container} ${fields(['variables', 'code'])}${why}`;
      case 'replaced':
        return `${time} replaced        ${container} by ${String(event.newContainerId).slice(0, 12)}`;
      case 'dropped':
        return `${time} the agent stopped this stream: ${String(event.reason)}`;
      default:
        return `${time} ${event.type} ${container}`.trimEnd();
    }
  })();
  // Labels and names are anyone-with-docker text: no control character reaches the terminal.
  return printable(line);
}

/** A signal that aborts on SIGINT or SIGTERM, so the command ends with exit code 0. */
function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return controller.signal;
}
