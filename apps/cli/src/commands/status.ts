import {
  type AgentApiContainer,
  type AgentApiProvider,
  type AgentApiStatus,
  resolveApiSocket,
} from '@dso/core';
import type { Command } from 'commander';
import { consumerLabel, createAgentClient, printable } from '../agent-client.js';
import type { CliIo } from '../program.js';

/**
 * Adds `dso status [--json]`: what the agent did for each managed container (references,
 * versions and outcomes, never values), its queue, cache and providers.
 */
export function registerStatusCommand(program: Command, io: CliIo): void {
  program
    .command('status')
    .description(
      "show the agent's managed containers (files, last action, outcome), queue, cache and providers; never a secret value",
    )
    .option('--json', "print the agent's answer as JSON")
    .action(async (options: { json?: boolean }) => {
      const agent = createAgentClient({ socketPath: resolveApiSocket(io.env) });
      const status = await agent.status();
      io.stdout.write(
        options.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status, Date.now()),
      );
    });
}

/**
 * The status as a readable report: the agent line, a table of containers (newest action first),
 * queue and cache lines, and a table of providers. Text from the agent is made printable.
 */
export function formatStatus(status: AgentApiStatus, now: number): string {
  const lines: string[] = [];
  lines.push(
    status.startedAt === null
      ? 'agent: starting'
      : `agent: running since ${new Date(status.startedAt).toISOString()} (up ${formatAge(now - status.startedAt)})`,
  );
  lines.push('');
  if (status.containers.length === 0) {
    lines.push('no managed container handled yet');
  } else {
    const containers = [...status.containers].sort((a, b) => b.lastAction.at - a.lastAction.at);
    lines.push(
      ...table([
        ['CONTAINER', 'FILES', 'ENV', 'LAST ACTION', 'OUTCOME', 'WHEN', 'DETAIL'],
        ...containers.map((container) => containerRow(container, now)),
      ]),
    );
    // What happened and what to do, too long for a column: one line per container below.
    for (const container of containers) {
      const { message } = container.lastAction;
      if (message !== undefined) {
        lines.push(`${consumerLabel(container.id)}: ${printable(message)}`);
      }
    }
  }
  lines.push('');
  const { queue, cache } = status;
  lines.push(`queue: ${queue.depth} waiting, ${queue.inFlight} in flight, ${queue.shed} shed`);
  lines.push(
    `cache: ${cache.entries} ${plural(cache.entries, 'entry', 'entries')}, ${cache.hits} ${plural(cache.hits, 'hit', 'hits')}, ${cache.misses} ${plural(cache.misses, 'miss', 'misses')}, ${cache.staleServed} stale served`,
  );
  lines.push('');
  if (status.providers.length === 0) {
    lines.push('providers: none reported');
  } else {
    lines.push(
      ...table([['PROVIDER', 'TYPE', 'STATE'], ...status.providers.map((p) => providerRow(p))]),
    );
  }
  return `${lines.join('\n')}\n`;
}

function containerRow(container: AgentApiContainer, now: number): string[] {
  const { lastAction } = container;
  const detail =
    lastAction.outcome === 'failed' || lastAction.outcome === 'missing'
      ? [lastAction.code, lastAction.reference].filter((part) => part !== undefined).join(' ')
      : '';
  return [
    consumerLabel(container.id),
    container.files === undefined ? '-' : String(container.files.length),
    container.env === undefined ? '-' : String(container.env.length),
    lastAction.trigger,
    lastAction.outcome,
    `${formatAge(now - lastAction.at)} ago`,
    detail,
  ];
}

function providerRow(provider: AgentApiProvider): string[] {
  const state = Object.entries(provider.state ?? {})
    .map(([key, value]) => `${key}=${String(value)}`)
    .join(' ');
  return [provider.name, provider.type, state === '' ? '-' : state];
}

/** Left-aligned columns two spaces apart, no trailing spaces. */
function table(rows: string[][]): string[] {
  const cells = rows.map((row) => row.map((cell) => printable(cell)));
  const widths: number[] = [];
  for (const row of cells) {
    row.forEach((cell, index) => {
      widths[index] = Math.max(widths[index] ?? 0, cell.length);
    });
  }
  return cells.map((row) =>
    row
      .map((cell, index) => (index === row.length - 1 ? cell : cell.padEnd(widths[index]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** A rough age for people: `42s`, `5m`, `3h 12m`, `4d`. */
export function formatAge(ms: number): string {
  const seconds = Math.max(0, Math.floor(ms / 1_000));
  if (seconds < 60) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 48) return minutes % 60 === 0 ? `${hours}h` : `${hours}h ${minutes % 60}m`;
  return `${Math.floor(hours / 24)}d`;
}

function plural(count: number, one: string, many: string): string {
  return count === 1 ? one : many;
}
