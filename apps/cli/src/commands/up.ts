import { readFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { DsoError, errorCode, isDsoError, LABELS, suggestReference } from '@dso/core';
import type { Command } from 'commander';
import { type AgentClient, createAgentClient } from '../agent-client.js';
import {
  activeServices,
  COMPOSE_FILE_NAMES,
  COMPOSE_OVERRIDE_FILE_NAMES,
  type ComposeModel,
  type ComposeUpPlan,
  composeSearchDirectories,
  type ImageCommand,
  planComposeUp,
  readComposeModel,
  renderOverride,
  type ServiceView,
  servicesNeedingImage,
} from '../compose.js';
import {
  type ComposeCommand,
  type ComposeModelRun,
  type ComposeRun,
  composeModel,
  detectCompose,
  inspectImageCommand,
  runCompose,
} from '../docker-cli.js';
import type { CliIo } from '../program.js';

/** The options of `dso up`. */
export interface UpOptions {
  /** `-f`: compose files in order; none means compose's own lookup. */
  file: string[];
  /** `-p`: compose's project name. */
  projectName?: string;
  /** `--profile`: profiles to enable, as with compose (and `COMPOSE_PROFILES`). */
  profile?: string[];
  /** Print the override (references only) instead of running compose. */
  dryRun?: boolean;
  /** `-d`: pass `-d` to `compose up`. */
  detach?: boolean;
  /**
   * `--no-check` (false): start without first asking the agent whether every referenced
   * secret is in its store.
   * @default true
   */
  check?: boolean;
  /** Arguments after `--`, passed to `compose up`. */
  composeArgs: string[];
}

/** What `dso up` reads and runs; injected so tests need no engine, compose or agent. */
export interface UpDependencies {
  /** Where a default compose file is looked for (then in each parent). */
  cwd: string;
  agent: () => Pick<AgentClient, 'check' | 'resolve' | 'status'>;
  detectCompose: (env: NodeJS.ProcessEnv) => Promise<ComposeCommand>;
  /** Compose's merged model of the project (`config`), as it prints it. */
  composeModel: (run: ComposeModelRun) => Promise<string>;
  inspectImage: (image: string, service: string, env: NodeJS.ProcessEnv) => Promise<ImageCommand>;
  runCompose: (run: ComposeRun) => Promise<number>;
  readText: (path: string) => Promise<string>;
}

/** The real ones. */
export function defaultUpDependencies(io: CliIo): UpDependencies {
  return {
    cwd: process.cwd(),
    agent: () => createAgentClient({ socketPath: { env: io.env } }),
    detectCompose,
    composeModel,
    inspectImage: inspectImageCommand,
    runCompose,
    readText: (path) => readFile(path, 'utf8'),
  };
}

/** Adds `dso up`: compose up with the project's `dso://` and `dsofile://` references wired in. */
export function registerUpCommand(
  program: Command,
  io: CliIo,
  dependencies: () => UpDependencies = () => defaultUpDependencies(io),
): void {
  program
    .command('up')
    .description(
      "docker compose up, with the dso:// and dsofile:// references in the services' environment wired in: files delivered by the agent into a tmpfs (the service waits for them), dso:// values resolved by the agent and given to compose in its environment, never on disk or in argv",
    )
    .option(
      '-f, --file <path>',
      'a compose file (repeat for several, as with compose)',
      collect,
      [],
    )
    .option('-p, --project-name <name>', "compose's project name")
    .option(
      '--profile <name>',
      'a compose profile to enable (repeat for several, as with compose; COMPOSE_PROFILES too)',
      collect,
      [],
    )
    .option('-d, --detach', 'run the containers in the background (compose up -d)')
    .option(
      '--no-check',
      'start without first having the agent check that every referenced secret exists (by default a missing one starts nothing)',
    )
    .option(
      '--dry-run',
      'print what dso up adds to the compose project (references, never values) and start nothing (compose is only asked for its model)',
    )
    .argument('[compose-args...]', 'more arguments for compose up, after --')
    .action(
      async (
        composeArgs: string[],
        options: {
          file: string[];
          projectName?: string;
          profile: string[];
          detach?: boolean;
          dryRun?: boolean;
          check?: boolean;
        },
      ) => {
        const code = await runUp(
          {
            file: options.file,
            composeArgs,
            ...(options.projectName === undefined ? {} : { projectName: options.projectName }),
            ...(options.profile.length === 0 ? {} : { profile: options.profile }),
            ...(options.detach ? { detach: true } : {}),
            ...(options.dryRun ? { dryRun: true } : {}),
            ...(options.check === false ? { check: false } : {}),
          },
          io,
          dependencies(),
        );
        if (code !== 0) {
          throw new DsoError(
            'DSO_CLI_COMPOSE_FAILED',
            `compose up exited ${code}: see its output above (dso exits with the same code)`,
            { exitCode: code },
          );
        }
      },
    );
}

/**
 * `dso up`. Has compose print the project's merged model (`config`), refuses near-miss
 * references, plans what DSO adds (`planComposeUp`), has the agent check every reference and
 * resolve every `dso://` one in one call, and runs `compose -f <files>… -f <override> up` with
 * the override on stdin (or a named pipe) and the values in compose's environment. Returns
 * compose's exit code (0 for `--dry-run`).
 *
 * @throws DsoError DSO_CLI_COMPOSE_NOT_FOUND when there is no compose file;
 *   DSO_CLI_COMPOSE_FAILED (with compose's `exitCode`) when compose refuses the files;
 *   DSO_REFERENCE_NEAR_MISS, DSO_REFERENCE_INVALID, DSO_CLI_UP_* for what the services ask;
 *   DSO_CLI_UP_SECRET_MISSING, DSO_CLI_AGENT_* and the agent's DSO_AGENT_RESOLVE_* when values
 *   cannot be had; DSO_CLI_COMPOSE_MISSING
 */
export async function runUp(
  options: UpOptions,
  io: CliIo,
  dependencies: UpDependencies,
): Promise<number> {
  const paths = await composeFilePaths(options.file, io.env, dependencies);
  const compose = await dependencies.detectCompose(io.env);
  const args = [
    ...(options.projectName === undefined ? [] : ['-p', options.projectName]),
    ...(options.profile ?? []).flatMap((profile) => ['--profile', profile]),
    ...paths.flatMap((path) => ['-f', path]),
  ];
  // Compose's own merged model, read with the caller's environment: no value is resolved yet.
  // Its stderr (a variable that is not set, a refused file) is kept: `compose up` prints the
  // same warnings again, so they are shown only when dso up stops before compose up runs, and
  // for --dry-run.
  const kept: Buffer[] = [];
  const composeStderr = new Writable({
    write(chunk, _encoding, done) {
      kept.push(Buffer.from(chunk));
      done();
    },
  });
  const showComposeStderr = () => {
    if (kept.length > 0) io.stderr.write(Buffer.concat(kept.splice(0)));
  };
  try {
    const model = readComposeModel(
      await dependencies.composeModel({ compose, args, env: io.env, stderr: composeStderr }),
    );
    return await upWithModel(
      model,
      { paths, compose, args, showComposeStderr },
      options,
      io,
      dependencies,
    );
  } catch (error) {
    showComposeStderr();
    throw error;
  }
}

/** The rest of {@link runUp}, once compose has printed its model. */
async function upWithModel(
  model: ComposeModel,
  context: {
    paths: string[];
    compose: ComposeCommand;
    args: string[];
    showComposeStderr: () => void;
  },
  options: UpOptions,
  io: CliIo,
  dependencies: UpDependencies,
): Promise<number> {
  const out = (line: string) => io.stdout.write(`${line}\n`);
  const err = (line: string) => io.stderr.write(`${line}\n`);
  const { paths, compose, args } = context;
  const views = activeServices(model.services, {
    profiles: [
      ...(options.profile ?? []),
      ...(io.env.COMPOSE_PROFILES ?? '').split(',').filter(Boolean),
    ],
    named: options.composeArgs.filter((arg) => !arg.startsWith('-')),
  });
  refuseNearMisses(views);
  const volumeDriver = await volumeDriverOf(views, dependencies, err);

  const images = new Map<string, ImageCommand>();
  for (const { service, image, build } of servicesNeedingImage(views, volumeDriver)) {
    if (image === undefined) {
      throw new DsoError(
        'DSO_CLI_UP_NO_COMMAND',
        `service ${service} ${build ? 'is built (build:) and names no image' : 'names no image'}, so dso up cannot read the entrypoint it must run after the wait for the secret files: give it an image name (and build it first: docker compose build ${service}) or an entrypoint in the compose file`,
        { service },
      );
    }
    images.set(service, await dependencies.inspectImage(image, service, io.env));
  }

  const plan = planComposeUp(views, {
    images,
    ...(volumeDriver === undefined ? {} : { volumeDriver }),
  });
  const { version } = model;
  const shownFiles = paths.map((path) => basename(path)).join(', ');

  if (options.dryRun) {
    context.showComposeStderr();
    if (plan.services.length === 0) {
      out(`# dso up: no dso:// or dsofile:// reference in ${shownFiles}: compose would run as is`);
      return 0;
    }
    out(`# dso up --dry-run: compose would read ${paths.join(', ')}, then this on its stdin.`);
    out('# <dso:…> stands for the value the agent resolves; values are never printed.');
    io.stdout.write(
      renderOverride(plan, { dryRun: true, ...(version === undefined ? {} : { version }) }),
    );
    return 0;
  }

  const upArgs = ['up', ...(options.detach ? ['-d'] : []), ...options.composeArgs];
  if (plan.services.length === 0) {
    err(`dso up: no dso:// or dsofile:// reference in ${shownFiles}: running compose as is`);
    return dependencies.runCompose({
      compose,
      args,
      upArgs,
      env: io.env,
      stdout: io.stdout,
      stderr: io.stderr,
    });
  }

  if (options.check !== false) await checkReferences(plan, dependencies);
  const { values, versions } = await resolveValues(plan, dependencies);
  recordVersions(plan, versions);
  describe(plan, err);
  return dependencies.runCompose({
    compose,
    args,
    override: renderOverride(plan, version === undefined ? {} : { version }),
    upArgs,
    env: { ...io.env, ...values },
    stdout: io.stdout,
    stderr: io.stderr,
  });
}

/**
 * Refuses, before anything is asked or started, an environment value that looks like a mistyped
 * reference (`dsofile:/app/x`, `dso//app/x`, `dos://app/x`): compose would hand it to the
 * application as a literal, which fails later and far from the typo. The values named are
 * reference-shaped text, never a resolved value.
 *
 * @throws DsoError DSO_REFERENCE_NEAR_MISS naming each `service.VARIABLE`, what it holds and
 *   what was meant
 */
export function refuseNearMisses(views: readonly ServiceView[]): void {
  const misses: string[] = [];
  for (const view of views) {
    for (const [variable, value] of view.environment) {
      const meant = value === null ? undefined : suggestReference(value);
      if (meant === undefined) continue;
      misses.push(
        `${view.name}.${variable}=${JSON.stringify(value)} is not a reference; did you mean ${meant}?`,
      );
    }
  }
  if (misses.length === 0) return;
  throw new DsoError(
    'DSO_REFERENCE_NEAR_MISS',
    `nothing was started: ${misses.join('; ')} Fix the compose file (compose would pass ${misses.length === 1 ? 'it' : 'them'} to the application as plain text), then run dso up again`,
    { count: misses.length },
  );
}

/**
 * The volume driver the agent serves, when some service has `dsofile://` files: its files then
 * come through a DSO volume. An agent that does not answer (or serves no driver) leaves the
 * files to the tmpfs and the wait, said once.
 */
async function volumeDriverOf(
  views: readonly ServiceView[],
  dependencies: UpDependencies,
  err: (line: string) => void,
): Promise<string | undefined> {
  const hasFiles = views.some((view) =>
    [...view.environment.values()].some((value) => value?.startsWith('dsofile://') === true),
  );
  if (!hasFiles) return undefined;
  try {
    const driver = (await dependencies.agent().status()).volumeDriver;
    if (driver === undefined) {
      err(
        'dso up: the agent serves no volume driver: files go into a tmpfs and each service waits for them',
      );
    }
    return driver;
  } catch (error) {
    err(
      `dso up: could not ask the agent for its volume driver (${errorCode(error) ?? 'error'}): files go into a tmpfs and each service waits for them`,
    );
    return undefined;
  }
}

/**
 * Has the agent look up every reference the services use, `dso://` and `dsofile://`, before
 * anything starts: a secret that is not in its store (or a store that cannot answer) would
 * otherwise surface only once the container runs, as a failed start or an exit 60 s later.
 *
 * @throws DsoError DSO_CLI_UP_SECRET_MISSING naming each failing reference with its service and
 *   variable, its code and the agent's message
 */
async function checkReferences(plan: ComposeUpPlan, dependencies: UpDependencies): Promise<void> {
  const users = new Map<string, string[]>();
  for (const service of plan.services) {
    for (const { variable, reference } of [...service.files, ...service.env]) {
      users.set(reference, [...(users.get(reference) ?? []), `${service.name}.${variable}`]);
    }
  }
  const references = [...users.keys()].sort();
  if (references.length === 0) return;
  let checked: Awaited<ReturnType<AgentClient['check']>>;
  try {
    checked = await dependencies.agent().check(references);
  } catch (error) {
    if (!isDsoError(error)) throw error;
    throw new DsoError(
      error.code,
      `dso up checks that every secret exists before it starts anything, and the agent could not check: ${error.message} (or start without the check: dso up --no-check)`,
      { cause: error },
    );
  }
  const failed = checked.filter((one) => one.code !== undefined);
  if (failed.length === 0) return;
  const lines = failed.map(
    (one) =>
      `${one.reference} (${(users.get(one.reference) ?? []).join(', ')}): ${one.code}${one.error === undefined ? '' : ` (${one.error})`}`,
  );
  throw new DsoError(
    'DSO_CLI_UP_SECRET_MISSING',
    `nothing was started: ${failed.length === 1 ? 'a secret' : `${failed.length} secrets`} the services use cannot be had: ${lines.join('; ')}: store ${failed.length === 1 ? 'it' : 'them'} (dso secret set <path>) or fix the reference${failed.length === 1 ? '' : 's'}, then run dso up again`,
    { references: failed.map((one) => one.reference) },
  );
}

/** The values of every `dso://` variable, by variable name, from one call to the agent. */
async function resolveValues(
  plan: ComposeUpPlan,
  dependencies: UpDependencies,
): Promise<{ values: Record<string, string>; versions: Map<string, string> }> {
  const versions = new Map<string, string>();
  if (plan.variables.length === 0) return { values: {}, versions };
  const resolved = await dependencies
    .agent()
    .resolve(plan.variables.map(({ reference }) => reference));
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const values: Record<string, string> = {};
  try {
    for (const [index, { name, reference }] of plan.variables.entries()) {
      const bytes = (resolved[index] as (typeof resolved)[number]).value;
      let text: string | undefined;
      try {
        text = decoder.decode(bytes);
      } catch {
        text = undefined; // not UTF-8: refused just below, without the bytes
      }
      if (text === undefined || text.includes('\0')) {
        throw new DsoError(
          'DSO_CLI_UP_VALUE_BINARY',
          `the value of ${reference} is not UTF-8 text without NUL bytes, which an environment variable cannot carry: deliver it as a file with dsofile://`,
          { reference },
        );
      }
      values[name] = text;
      versions.set(name, (resolved[index] as (typeof resolved)[number]).version);
    }
    return { values, versions };
  } finally {
    // The strings handed to compose cannot be zeroed (V8 strings); the bytes can.
    for (const { value } of resolved) value.fill(0);
  }
}

/**
 * Adds `dso.env-version.<NAME>` (the version each `dso://` value was created with) to each
 * service's labels, so the agent replaces a container whose value has since changed, once,
 * even across its own restarts.
 */
function recordVersions(plan: ComposeUpPlan, versions: ReadonlyMap<string, string>): void {
  for (const service of plan.services) {
    const override = plan.override.services[service.name];
    if (override === undefined) continue;
    const labels = { ...(override.labels as Record<string, string> | undefined) };
    for (const { variable, carrier } of service.env) {
      const version = versions.get(carrier);
      if (version !== undefined) labels[`${LABELS.envVersionPrefix}${variable}`] = version;
    }
    override.labels = Object.fromEntries(
      Object.entries(labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)),
    );
  }
}

/** What dso up wires in, and the warning DESIGN.md asks for whenever `dso://` values are used. */
function describe(plan: ComposeUpPlan, err: (line: string) => void): void {
  for (const service of plan.services) {
    const parts: string[] = [];
    if (service.files.length > 0 && service.volume !== undefined) {
      parts.push(
        `files ${service.files.map(({ path }) => path).join(', ')} (DSO volume ${service.volume}: in place before the service starts)`,
      );
    } else if (service.files.length > 0) {
      parts.push(
        `files ${service.files.map(({ path }) => path).join(', ')} (the service waits for them${service.commandFromImage ? "; its image's command is run after the wait" : ''})`,
      );
    }
    if (service.env.length > 0) {
      parts.push(`environment ${service.env.map(({ variable }) => variable).join(', ')}`);
    }
    err(`dso up: ${service.name}: ${parts.join('; ')}`);
  }
  const names = plan.services.flatMap((service) =>
    service.env.map(({ variable }) => `${service.name}.${variable}`),
  );
  if (names.length > 0) {
    err(
      `dso up: warning: ${names.join(', ')} ${names.length === 1 ? 'is a dso:// value' : 'are dso:// values'} in the container's environment, which docker inspect shows to anyone who can use the engine: prefer dsofile:// (a file in a tmpfs, never in docker inspect) where the application can read a file`,
    );
  }
}

/** `-f` paths made absolute; else `COMPOSE_FILE`; else compose's lookup (with its override file). */
export async function composeFilePaths(
  given: readonly string[],
  env: NodeJS.ProcessEnv,
  dependencies: Pick<UpDependencies, 'cwd' | 'readText'>,
): Promise<string[]> {
  if (given.includes('-')) {
    throw new DsoError(
      'DSO_CLI_UP_STDIN',
      'dso up reads the compose files itself and gives compose its additions on stdin, so it cannot take a file from stdin: pass the file by path with -f',
    );
  }
  if (given.length > 0) return given.map((path) => resolve(dependencies.cwd, path));
  const fromEnv = env.COMPOSE_FILE;
  if (fromEnv !== undefined && fromEnv !== '') {
    return fromEnv
      .split(env.COMPOSE_PATH_SEPARATOR || ':')
      .filter(Boolean)
      .map((path) => resolve(dependencies.cwd, path));
  }
  for (const directory of composeSearchDirectories(dependencies.cwd)) {
    for (const name of COMPOSE_FILE_NAMES) {
      const path = join(directory, name);
      if (!(await exists(path, dependencies))) continue;
      // Compose reads the first override file beside it too when no file is given.
      for (const overrideName of COMPOSE_OVERRIDE_FILE_NAMES) {
        const override = join(directory, overrideName);
        if (await exists(override, dependencies)) return [path, override];
      }
      return [path];
    }
  }
  throw new DsoError(
    'DSO_CLI_COMPOSE_NOT_FOUND',
    `no compose file: looked for ${COMPOSE_FILE_NAMES.join(', ')} in ${dependencies.cwd} and its parents: run dso up in the project's folder, or name the file with -f`,
  );
}

async function exists(
  path: string,
  dependencies: Pick<UpDependencies, 'readText'>,
): Promise<boolean> {
  try {
    await dependencies.readText(path);
    return true;
  } catch {
    return false; // missing or unreadable: not the file compose would pick either
  }
}

/** Commander's collector for a repeated option. */
export function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}
