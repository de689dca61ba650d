import {
  type AgentApiContainer,
  type AgentApiProvider,
  type AgentApiStatus,
  DsoError,
} from '@dso/core';
import type { Command } from 'commander';
import { consumerLabel, createAgentClient, printable } from '../agent-client.js';
import type { CliIo } from '../program.js';

/**
 * Adds `dso status [container] [--json]`: what the agent did for each managed container (names,
 * states, references, versions and outcomes with their reason and fix, never values), its
 * queue, cache and providers; with a container (a name, or an id or its prefix), that
 * container's files, variables, last delivery, last failure and rotation policy.
 */
export function registerStatusCommand(program: Command, io: CliIo): void {
  program
    .command('status')
    .argument('[container]', 'one container: its name, or its id or a prefix of it')
    .description(
      "show the agent's managed containers (name, state, files, last action, outcome, reason and fix), queue, cache and providers, or one container in full; never a secret value",
    )
    .option('--json', "print the agent's answer as JSON (with a container: that container's entry)")
    .action(async (selector: string | undefined, options: { json?: boolean }) => {
      const agent = createAgentClient({ socketPath: { env: io.env } });
      const status = await agent.status();
      if (selector !== undefined) {
        const container = findContainer(status.containers, selector);
        io.stdout.write(
          options.json
            ? `${JSON.stringify(container, null, 2)}\n`
            : formatContainer(container, Date.now()),
        );
        return;
      }
      io.stdout.write(
        options.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status, Date.now()),
      );
    });
}

/**
 * The one container `selector` names, as `docker inspect` finds it: its exact name, its exact
 * id, else the one id that starts with it (a DSO volume's consumers by `volume <name>` or the
 * volume's name).
 *
 * @throws DsoError DSO_CLI_CONTAINER_UNKNOWN when none matches, DSO_CLI_CONTAINER_AMBIGUOUS when
 *   several ids start with it (both name what to do)
 */
export function findContainer(
  containers: readonly AgentApiContainer[],
  selector: string,
): AgentApiContainer {
  const wanted = selector.replace(/^\//, '');
  const exact = containers.filter(
    (container) =>
      container.name === wanted ||
      container.id === wanted ||
      consumerLabel(container.id) === wanted ||
      consumerLabel(container.id) === `volume ${wanted}`,
  );
  if (exact.length === 1) return exact[0]!;
  const prefixed =
    exact.length > 1 || !/^[0-9a-f]+$/.test(wanted)
      ? exact
      : containers.filter((container) => container.id.startsWith(wanted));
  if (prefixed.length === 1) return prefixed[0]!;
  const shown = printable(selector.slice(0, 80));
  if (prefixed.length > 1) {
    throw new DsoError(
      'DSO_CLI_CONTAINER_AMBIGUOUS',
      `"${shown}" names ${prefixed.length} containers (${prefixed
        .slice(0, 5)
        .map((container) => labelOf(container))
        .join(', ')}): give more of the id, or the name`,
    );
  }
  throw new DsoError(
    'DSO_CLI_CONTAINER_UNKNOWN',
    `no container the agent manages is named "${shown}" or has an id starting with it (${containers.length} managed): see dso status; a container without dso.enable=true (and no other dso.* label), or one the agent has not handled yet, is not listed`,
  );
}

/** A label warning in one line: its message, and the suggestion when the message has not said it. */
function warningText(warning: NonNullable<AgentApiContainer['warnings']>[number]): string {
  const { message, suggestion } = warning;
  return suggestion === undefined || message.includes(suggestion)
    ? message
    : `${message} (did you mean ${suggestion}?)`;
}

/** A container for people: `name (id12)`, its short id alone before the agent knows its name. */
function labelOf(container: AgentApiContainer): string {
  const short = consumerLabel(container.id);
  return container.name === undefined ? short : `${container.name} (${short})`;
}

/**
 * One container in full, as `kubectl describe` shows one: what it is, its state and rotation
 * policy, its last action, delivery and failure (reason and fix), then every file and variable
 * with its reference, provider and version. Text from the agent is made printable.
 */
export function formatContainer(container: AgentApiContainer, now: number): string {
  const when = (at: number) => `${formatAge(now - at)} ago (${new Date(at).toISOString()})`;
  const { lastAction, lastFailure } = container;
  const rows: Array<[string, string]> = [
    [
      'Name:',
      container.name ?? (container.id.startsWith('volume:') ? consumerLabel(container.id) : '-'),
    ],
    ['ID:', container.id],
    ['State:', container.state ?? '-'],
    // The agent names its default when no label sets one; an older agent, or one that could not
    // read the labels yet, does not.
    [
      'Rotation:',
      container.rotation ?? "not reported (the agent's default applies: rotation in dso.yaml)",
    ],
    ['Last action:', `${lastAction.outcome} (${lastAction.trigger}), ${when(lastAction.at)}`],
    [
      'Last delivery:',
      container.deliveredAt !== undefined
        ? when(container.deliveredAt)
        : container.files !== undefined
          ? 'before the agent started, time unknown (its files are there, same versions)'
          : 'none',
    ],
  ];
  const failure = lastFailure ?? (lastAction.code === undefined ? undefined : lastAction);
  rows.push([
    'Last failure:',
    failure === undefined || failure.code === undefined
      ? 'none'
      : `${[failure.code, failure.reference].filter((part) => part !== undefined).join(' ')} (${failure.trigger}), ${when(failure.at)}`,
  ]);
  const width = Math.max(...rows.map(([key]) => key.length)) + 1;
  const lines = rows.map(([key, value]) => `${key.padEnd(width)}${printable(value)}`);
  if (failure?.message !== undefined)
    lines.push(`${''.padEnd(width)}${printable(failure.message)}`);
  // A missing secret's message, or what an action did (a Swarm task stopped, by names).
  if (lastAction.message !== undefined && lastAction.message !== failure?.message) {
    lines.push(`${''.padEnd(width)}${printable(lastAction.message)}`);
  }
  const delivered = (title: string, entries: AgentApiContainer['files'], head: string) => {
    lines.push('', title);
    if (entries === undefined || entries.length === 0) {
      lines.push('  none');
      return;
    }
    lines.push(
      ...table([
        [head, 'REFERENCE', 'PROVIDER', 'VERSION'],
        ...entries.map((entry) => [entry.name, entry.reference, entry.provider, entry.version]),
      ]).map((line) => `  ${line}`),
    );
  };
  delivered('Files:', container.files, 'FILE');
  delivered('Environment:', container.env, 'VARIABLE');
  if (container.warnings !== undefined && container.warnings.length > 0) {
    lines.push('', 'Warnings:');
    for (const warning of container.warnings) {
      lines.push(`  ${printable(warning.code)}: ${printable(warningText(warning))}`);
    }
  }
  return `${lines.join('\n')}\n`;
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
        [
          'NAME',
          'CONTAINER ID',
          'STATE',
          'FILES',
          'ENV',
          'LAST ACTION',
          'OUTCOME',
          'WHEN',
          'DETAIL',
        ],
        ...containers.map((container) => containerRow(container, now)),
      ]),
    );
    // What happened and what to do, too long for a column: one line per container below.
    for (const container of containers) {
      const { message } = container.lastAction;
      if (message !== undefined) {
        lines.push(`${printable(labelOf(container))}: ${printable(message)}`);
      }
      for (const warning of container.warnings ?? []) {
        lines.push(`${printable(labelOf(container))}: warning: ${printable(warningText(warning))}`);
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
  const volume = container.id.startsWith('volume:');
  return [
    volume ? consumerLabel(container.id) : (container.name ?? '-'),
    volume ? '-' : consumerLabel(container.id),
    container.state ?? '-',
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
