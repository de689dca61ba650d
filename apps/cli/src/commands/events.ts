import { type AgentApiEventLine, resolveApiSocket } from '@dso/core';
import type { Command } from 'commander';
import { type AgentClient, consumerLabel, createAgentClient } from '../agent-client.js';
import type { CliIo } from '../program.js';

/** What `dso events` calls; injected so tests need no agent. */
export interface EventsDependencies {
  agent: () => Pick<AgentClient, 'events'>;
  /** Aborts when the user stops the command (Ctrl-C). */
  signal: AbortSignal;
}

/**
 * Adds `dso events [--json]`: follows what the agent does to containers (deliveries, failures
 * with their code and reference, rotations, replacements) until Ctrl-C or the agent stops.
 */
export function registerEventsCommand(
  program: Command,
  io: CliIo,
  dependencies: () => EventsDependencies = () => ({
    agent: () => createAgentClient({ socketPath: resolveApiSocket(io.env) }),
    signal: interruptSignal(),
  }),
): void {
  program
    .command('events')
    .description(
      'follow what the agent does: deliveries, failures (code and reference, never a value), rotations and replacements, until Ctrl-C',
    )
    .option('--json', 'print each event as a JSON line')
    .action(async (options: { json?: boolean }) => {
      const { agent, signal } = dependencies();
      await agent().events(
        (event) => {
          if (event.type === 'heartbeat') return;
          io.stdout.write(`${options.json ? JSON.stringify(event) : describeEvent(event)}\n`);
        },
        { signal },
      );
    });
}

/** One event as a line for people: time, what, container, details. */
export function describeEvent(event: AgentApiEventLine): string {
  const time = new Date(event.at).toISOString();
  const container = typeof event.containerId === 'string' ? consumerLabel(event.containerId) : '';
  const fields = (names: string[]) =>
    names
      .filter((name) => event[name] !== undefined)
      .map((name) => `${name}=${String(event[name])}`)
      .join(' ');
  switch (event.type) {
    case 'subscribed':
      return `${time} following the agent's events (Ctrl-C to stop)`;
    case 'delivered':
      return `${time} delivered       ${container} ${fields(['files', 'method', 'trigger'])}`;
    case 'delivery-failed':
      return `${time} delivery failed ${container} ${fields(['code', 'reference', 'trigger', 'retry'])}`;
    case 'rotated':
      return `${time} rotated         ${container} ${fields(['policy'])}`;
    case 'rotation-failed':
      return `${time} rotation failed ${container} ${fields(['policy', 'code', 'rolledBack'])}${
        typeof event.message === 'string' ? `: ${event.message}` : ''
      }`;
    case 'secret-missing':
      return `${time} secret missing  ${container} ${fields(['reference', 'code'])}`;
    case 'replaced':
      return `${time} replaced        ${container} by ${String(event.newContainerId).slice(0, 12)}`;
    case 'dropped':
      return `${time} the agent stopped this stream: ${String(event.reason)}`;
    default:
      return `${time} ${event.type} ${container}`.trimEnd();
  }
}

/** A signal that aborts on SIGINT or SIGTERM, so the command ends with exit code 0. */
function interruptSignal(): AbortSignal {
  const controller = new AbortController();
  const stop = () => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return controller.signal;
}
