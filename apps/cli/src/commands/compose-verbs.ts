import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { DsoError, errorCode } from '@dso/core';
import type { Command } from 'commander';
import { type AgentClient, createAgentClient } from '../agent-client.js';
import { composeProjectName, dsoVolumesOf, parseDotEnv } from '../compose.js';
import {
  type ComposeCommand,
  type ComposeRun,
  detectCompose,
  listProjectVolumes,
  type ProjectVolume,
  removeVolumes,
  runCompose,
} from '../docker-cli.js';
import type { CliIo } from '../program.js';
import { collect, composeFilePaths } from './up.js';

// ---------------------------------------------------------------------------------------------
// The compose verbs a user reaches for after `dso up`: `down`, `ps`, `logs`, `stop`, `start`,
// `restart`. Each runs compose with the project and files `dso up` finds (the same `-f`, `-p`,
// `COMPOSE_FILE` or default lookup), so `dso up` / `dso ps` / `dso down` act on one project as
// `docker compose up` / `ps` / `down` do. None needs dso up's override: they act on containers
// that exist, which carry their labels and environment already (`start` and `restart` keep
// them; the agent delivers the files on every start). `up` itself is not passed through: a
// plain compose up recreates services without the references wired in (the agent reports it).
//
// `dso down` also removes the DSO volumes `dso up` made for the project, always (not only with
// `-v`): they hold references, never data (the files live in the agent's tmpfs), and `dso up`
// makes them again as they were. Compose cannot remove them itself: they are declared only in
// the override `dso up` hands it, not in the user's files. Their driver is the agent, so the
// agent must be running for the engine to remove them.
// ---------------------------------------------------------------------------------------------

/** The verbs passed through to compose, and what each says in `dso --help`. */
export const COMPOSE_VERBS = {
  down: 'docker compose down for the project dso up started, and remove the DSO volumes dso up made for it (references only, never data; dso up makes them again)',
  ps: 'docker compose ps for the project dso up started',
  logs: 'docker compose logs for the project dso up started',
  stop: 'docker compose stop for the project dso up started',
  start:
    'docker compose start for the project dso up started (the containers keep their references; the agent delivers the files on start)',
  restart: 'docker compose restart for the project dso up started',
} as const;

/** One of {@link COMPOSE_VERBS}. */
export type ComposeVerb = keyof typeof COMPOSE_VERBS;

/** The options of a compose verb. */
export interface ComposeVerbOptions {
  /** `-f`: compose files in order; none means compose's own lookup. */
  file: string[];
  /** `-p`: compose's project name. */
  projectName?: string;
  /** The verb's own arguments (`-v`, `--tail 20`, service names, …), after `--` for flags. */
  composeArgs: string[];
}

/** What the verbs read and run; injected so tests need no engine, compose or agent. */
export interface ComposeVerbDependencies {
  cwd: string;
  agent: () => Pick<AgentClient, 'status'>;
  detectCompose: (env: NodeJS.ProcessEnv) => Promise<ComposeCommand>;
  runCompose: (run: ComposeRun) => Promise<number>;
  readText: (path: string) => Promise<string>;
  listProjectVolumes: (project: string, env: NodeJS.ProcessEnv) => Promise<ProjectVolume[]>;
  removeVolumes: (
    names: readonly string[],
    env: NodeJS.ProcessEnv,
  ) => Promise<Array<{ name: string; problem: string }>>;
}

/** The real ones. */
export function defaultComposeVerbDependencies(io: CliIo): ComposeVerbDependencies {
  return {
    cwd: process.cwd(),
    agent: () => createAgentClient({ socketPath: { env: io.env } }),
    detectCompose,
    runCompose,
    readText: (path) => readFile(path, 'utf8'),
    listProjectVolumes,
    removeVolumes,
  };
}

/** Adds `dso down`, `dso ps`, `dso logs`, `dso stop`, `dso start` and `dso restart`. */
export function registerComposeVerbCommands(
  program: Command,
  io: CliIo,
  dependencies: () => ComposeVerbDependencies = () => defaultComposeVerbDependencies(io),
): void {
  for (const [verb, description] of Object.entries(COMPOSE_VERBS) as Array<[ComposeVerb, string]>) {
    const command = program.command(verb).description(description);
    // `logs -f` follows, as in compose; its files are given with --file.
    if (verb === 'logs') command.option('-f, --follow', 'follow the output (compose logs -f)');
    command
      .option(
        verb === 'logs' ? '--file <path>' : '-f, --file <path>',
        'a compose file (repeat for several), as given to dso up',
        collect,
        [],
      )
      .option('-p, --project-name <name>', "compose's project name, as given to dso up")
      .argument('[compose-args...]', `arguments for compose ${verb} (flags after --, e.g. -- -v)`)
      // Compose's own flags (`down -v`, `logs -f`) are passed on as they are.
      .allowUnknownOption()
      .action(
        async (
          composeArgs: string[],
          options: { file: string[]; projectName?: string; follow?: boolean },
        ) => {
          const code = await runComposeVerb(
            verb,
            {
              file: options.file,
              composeArgs: [...(options.follow ? ['--follow'] : []), ...composeArgs],
              ...(options.projectName === undefined ? {} : { projectName: options.projectName }),
            },
            io,
            dependencies(),
          );
          if (code !== 0) {
            throw new DsoError(
              'DSO_CLI_COMPOSE_FAILED',
              `compose ${verb} exited ${code}: see its output above (dso exits with the same code)`,
              { exitCode: code },
            );
          }
        },
      );
  }
}

/**
 * Runs `compose [-p <project>] -f <file>… <verb> <args>` with the files `dso up` would read.
 * For `down`, then removes the project's DSO volumes (see the module comment). Returns
 * compose's exit code, or 1 when a DSO volume could not be removed.
 *
 * @throws DsoError DSO_CLI_COMPOSE_NOT_FOUND when no compose file is found;
 *   DSO_CLI_COMPOSE_MISSING when compose is not installed
 */
export async function runComposeVerb(
  verb: ComposeVerb,
  options: ComposeVerbOptions,
  io: CliIo,
  dependencies: ComposeVerbDependencies,
): Promise<number> {
  const err = (line: string) => io.stderr.write(`${line}\n`);
  const paths = await composeFilePaths(options.file, io.env, dependencies);
  const compose = await dependencies.detectCompose(io.env);
  const code = await dependencies.runCompose({
    compose,
    args: [
      ...(options.projectName === undefined ? [] : ['-p', options.projectName]),
      ...paths.flatMap((path) => ['-f', path]),
    ],
    upArgs: [verb, ...options.composeArgs],
    env: io.env,
    stdout: io.stdout,
    stderr: io.stderr,
  });
  if (verb !== 'down' || code !== 0) return code;

  const firstFile = paths[0] as string;
  let dotEnv: Record<string, string> = {};
  try {
    dotEnv = parseDotEnv(await dependencies.readText(join(dirname(firstFile), '.env')));
  } catch {
    dotEnv = {}; // no .env: the environment and the folder name, as for compose
  }
  const project = composeProjectName({
    projectName: options.projectName,
    env: io.env,
    dotEnv,
    firstFile,
  });
  let volumeDriver: string | undefined;
  try {
    volumeDriver = (await dependencies.agent().status()).volumeDriver;
  } catch (error) {
    // Without the agent the engine cannot remove the volumes it serves: say how to finish.
    const left = dsoVolumesOf(await dependencies.listProjectVolumes(project, io.env), undefined);
    if (left.length > 0) {
      err(
        `dso down: the agent does not answer (${errorCode(error) ?? 'error'}), and the engine needs it to remove the DSO volumes ${left.map(({ name }) => name).join(', ')}: start the agent and run dso down again`,
      );
      return 1;
    }
    return 0;
  }
  const volumes = dsoVolumesOf(
    await dependencies.listProjectVolumes(project, io.env),
    volumeDriver,
  );
  if (volumes.length === 0) return 0;
  const failed = await dependencies.removeVolumes(
    volumes.map(({ name }) => name),
    io.env,
  );
  const removed = volumes.filter(({ name }) => !failed.some((one) => one.name === name));
  if (removed.length > 0) {
    err(`dso down: removed the DSO volumes ${removed.map(({ name }) => name).join(', ')}`);
  }
  for (const { name, problem } of failed) {
    err(
      `dso down: could not remove the DSO volume ${name} (${problem}): a container still uses it? remove that container, then docker volume rm ${name}`,
    );
  }
  return failed.length === 0 ? 0 : 1;
}
