import { spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DsoError } from '@dso/core';
import type { ImageCommand } from './compose.js';

// ---------------------------------------------------------------------------------------------
// The docker and compose command lines `dso up` and `dso rotate` run. No value ever goes into
// their argv: argv holds file paths, image and container names, and compose's own flags. The
// values of `dso://` references reach compose through its environment only (`runCompose`).
// ---------------------------------------------------------------------------------------------

/** How long a `docker … version` or `inspect` may take. */
export const DOCKER_QUERY_TIMEOUT_MS = 15_000;
/**
 * How long listing or removing volumes may take: the engine asks every volume plugin it has met
 * (each socket in /run/docker/plugins) and waits ~15 s for one whose socket is gone.
 */
export const DOCKER_VOLUME_QUERY_TIMEOUT_MS = 60_000;
/** The most output read from a `docker` query. */
const MAX_QUERY_OUTPUT = 1024 * 1024;

/** Which compose to run, as an argv prefix, and how it is handed the override. */
export interface ComposeCommand {
  /** `['docker', 'compose']` (v2) or `['docker-compose']` (v1). */
  argv: string[];
  /**
   * `stdin`: `-f -` among other files (compose v2). `fifo`: `-f <a named pipe>` in a fresh
   * 0700 folder, for docker-compose 1.x, which reads `-` only when it is the only file and
   * cannot open `/dev/stdin` when that is the socket Node gives a child as its stdin (ENXIO).
   * Either way the override travels through the kernel, never through a file's content.
   */
  override: 'stdin' | 'fifo';
  /**
   * How it prints its merged model: `json` (`config --format json`, Compose v2) or `yaml`
   * (`config`, docker-compose 1.x, which has no `--format`).
   */
  model: 'json' | 'yaml';
}

interface Output {
  code: number;
  stdout: string;
  stderr: string;
  /** The spawn error (ENOENT when the program is not installed). */
  error?: NodeJS.ErrnoException;
}

/** Runs a short query and collects its output; never rejects. */
export function query(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs = DOCKER_QUERY_TIMEOUT_MS,
): Promise<Output> {
  return new Promise((resolve) => {
    const child = spawn(command, args, {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: timeoutMs,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      if (stdout.length < MAX_QUERY_OUTPUT) stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      if (stderr.length < MAX_QUERY_OUTPUT) stderr += text;
    });
    child.once('error', (error: NodeJS.ErrnoException) =>
      resolve({ code: -1, stdout, stderr, error }),
    );
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/**
 * The compose to run: `docker compose` when `docker compose version` answers, else
 * `docker-compose` when `docker-compose version` does.
 *
 * @throws DsoError DSO_CLI_COMPOSE_MISSING when neither is installed, saying how to install one
 */
export async function detectCompose(env: NodeJS.ProcessEnv): Promise<ComposeCommand> {
  const plugin = await query('docker', ['compose', 'version'], env);
  if (plugin.code === 0) return { argv: ['docker', 'compose'], override: 'stdin', model: 'json' };
  const standalone = await query('docker-compose', ['version'], env);
  if (standalone.code === 0) return { argv: ['docker-compose'], override: 'fifo', model: 'yaml' };
  throw new DsoError(
    'DSO_CLI_COMPOSE_MISSING',
    'dso up runs Docker Compose, and neither `docker compose` nor `docker-compose` answers: install the Compose plugin (apt-get install docker-compose-plugin, or see https://docs.docker.com/compose/install/) or docker-compose (apt-get install docker-compose)',
  );
}

/**
 * The image's Entrypoint and Cmd (`docker image inspect`), for a service that gives no
 * entrypoint of its own.
 *
 * @throws DsoError DSO_CLI_UP_IMAGE_UNKNOWN when the image is not on the engine (pull or build it)
 * @throws DsoError DSO_CLI_DOCKER_FAILED when docker cannot be run or answers something else
 */
export async function inspectImageCommand(
  image: string,
  service: string,
  env: NodeJS.ProcessEnv,
): Promise<ImageCommand> {
  const result = await query(
    'docker',
    ['image', 'inspect', '--format', '{{json .Config}}', image],
    env,
  );
  if (result.error !== undefined) throw dockerMissing(result.error);
  if (result.code !== 0) {
    if (/no such image/i.test(result.stderr)) {
      throw new DsoError(
        'DSO_CLI_UP_IMAGE_UNKNOWN',
        `service ${service}: dso up makes it wait for its secret files by running the image's entrypoint after a wait, so it must read that entrypoint, and the image ${image} is not on this engine: pull or build it first (docker compose pull ${service} / docker compose build ${service}), or give the service an entrypoint in the compose file`,
        { service, image },
      );
    }
    throw new DsoError(
      'DSO_CLI_DOCKER_FAILED',
      `docker image inspect ${image} failed (exit ${result.code}): ${firstLine(result.stderr)}`,
      { service, image },
    );
  }
  let config: unknown;
  try {
    config = JSON.parse(result.stdout);
  } catch {
    config = undefined;
  }
  const record = (typeof config === 'object' && config !== null ? config : {}) as Record<
    string,
    unknown
  >;
  const list = (value: unknown) =>
    Array.isArray(value) && value.every((arg) => typeof arg === 'string')
      ? (value as string[])
      : [];
  if (config === undefined) {
    throw new DsoError(
      'DSO_CLI_DOCKER_FAILED',
      `docker image inspect ${image} did not answer JSON: check the docker CLI`,
      { service, image },
    );
  }
  return { entrypoint: list(record.Entrypoint), cmd: list(record.Cmd) };
}

/**
 * The full id of a container named or id-prefixed `container` (`docker container inspect`).
 *
 * @throws DsoError DSO_CLI_CONTAINER_UNKNOWN when the engine knows no such container
 */
export async function containerId(container: string, env: NodeJS.ProcessEnv): Promise<string> {
  const result = await query(
    'docker',
    ['container', 'inspect', '--format', '{{.Id}}', container],
    env,
  );
  if (result.error !== undefined) throw dockerMissing(result.error);
  const id = result.stdout.trim();
  if (result.code !== 0 || !/^[0-9a-f]{64}$/.test(id)) {
    throw new DsoError(
      'DSO_CLI_CONTAINER_UNKNOWN',
      `no container ${JSON.stringify(container)} on this engine (${firstLine(result.stderr) || `exit ${result.code}`}): give a name or id from docker ps`,
      { container },
    );
  }
  return id;
}

/** How long compose may take to print its model (docker-compose 1.x starts slowly). */
export const COMPOSE_CONFIG_TIMEOUT_MS = 60_000;

/** What {@link composeModel} runs. */
export interface ComposeModelRun {
  compose: ComposeCommand;
  /** Compose's global arguments: `-p`, `--profile`, then `-f` for each of the user's files. */
  args: string[];
  /** Compose's environment: the caller's, without any value DSO resolves. */
  env: NodeJS.ProcessEnv;
  /** Where compose's own stderr goes: its message when it refuses the files, else its warnings. */
  stderr: NodeJS.WritableStream;
}

/**
 * The project's merged model as compose prints it (`config`, JSON for Compose v2, YAML for
 * docker-compose 1.x): every file merged, `extends` followed, interpolated. Read it with
 * `readComposeModel`. It runs with the caller's environment: compose sees only references.
 *
 * Compose's stderr is written to `stderr` (its warnings, such as a variable that is not set).
 *
 * @throws DsoError DSO_CLI_COMPOSE_FAILED with compose's exit code (`exitCode`) when compose
 *   refuses the files; its own message is written to `stderr` first
 * @throws DsoError DSO_CLI_COMPOSE_MISSING when compose cannot be started
 */
export async function composeModel(run: ComposeModelRun): Promise<string> {
  const [command, ...prefix] = run.compose.argv as [string, ...string[]];
  const config = run.compose.model === 'json' ? ['config', '--format', 'json'] : ['config'];
  const result = await query(
    command,
    [...prefix, ...run.args, ...config],
    run.env,
    COMPOSE_CONFIG_TIMEOUT_MS,
  );
  const shown = `${run.compose.argv.join(' ')} config`;
  if (result.error !== undefined) {
    throw new DsoError(
      'DSO_CLI_COMPOSE_MISSING',
      `cannot run ${shown} (${result.error.code ?? result.error.message}): install Docker Compose`,
      { cause: result.error },
    );
  }
  if (result.code === -1) {
    throw new DsoError(
      'DSO_CLI_DOCKER_FAILED',
      `${shown} gave no answer within ${COMPOSE_CONFIG_TIMEOUT_MS / 1000} s: check that it runs on its own`,
    );
  }
  // Compose's own words: they name the file, the key and the fix better than any summary.
  if (result.stderr !== '') {
    run.stderr.write(result.stderr.endsWith('\n') ? result.stderr : `${result.stderr}\n`);
  }
  if (result.code !== 0) {
    throw new DsoError(
      'DSO_CLI_COMPOSE_FAILED',
      `${shown} refused the compose files (exit ${result.code}, its message is above): fix them, then run the command again; nothing was started`,
      { exitCode: result.code },
    );
  }
  if (result.stdout.length >= MAX_QUERY_OUTPUT) {
    throw new DsoError(
      'DSO_CLI_COMPOSE_INVALID',
      `${shown} printed more than ${MAX_QUERY_OUTPUT / 1024} KiB: dso reads models up to that size; split the project`,
    );
  }
  return result.stdout;
}

/** What {@link runCompose} runs. */
export interface ComposeRun {
  compose: ComposeCommand;
  /** Compose's global arguments: `-p`, then `-f` for each of the user's files. */
  args: string[];
  /** The override read after the user's files (references and `${…}` names only); none when absent. */
  override?: string;
  /** The compose command (`up`, `down`, `ps`, …) and its arguments. */
  upArgs: string[];
  /** Compose's whole environment: the caller's, plus the `DSO_UP_*` variables. */
  env: NodeJS.ProcessEnv;
  /** Where compose's output goes; the process's own streams are handed over as they are. */
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * Runs compose to completion and returns its exit code. Its output goes to `stdout`/`stderr`
 * (the terminal itself when they are the process's own, so compose keeps its colours and
 * progress). While it runs, SIGINT is left to compose (a terminal sends it to both: compose
 * stops its containers and exits, then so does dso) and SIGTERM is passed on.
 *
 * @throws DsoError DSO_CLI_COMPOSE_MISSING when the program cannot be started
 * @throws DsoError DSO_CLI_COMPOSE_PIPE when the named pipe for docker-compose 1.x cannot be made
 */
export async function runCompose(run: ComposeRun): Promise<number> {
  const fifo =
    run.override !== undefined && run.compose.override === 'fifo'
      ? await makeFifo(run.env)
      : undefined;
  try {
    const overrideArgs =
      run.override === undefined ? [] : ['-f', fifo === undefined ? '-' : fifo.path];
    return await spawnCompose(run, [...run.args, ...overrideArgs, ...run.upArgs], fifo?.path);
  } finally {
    if (fifo !== undefined) await rm(fifo.directory, { recursive: true, force: true });
  }
}

function spawnCompose(run: ComposeRun, args: string[], fifo: string | undefined): Promise<number> {
  const [command, ...prefix] = run.compose.argv as [string, ...string[]];
  const own = (stream: NodeJS.WritableStream, fd: 1 | 2) =>
    stream === (fd === 1 ? process.stdout : process.stderr) ? 'inherit' : 'pipe';
  return new Promise((resolve, reject) => {
    const viaStdin = run.override !== undefined && fifo === undefined;
    const child = spawn(command, [...prefix, ...args], {
      env: run.env,
      stdio: [viaStdin ? 'pipe' : 'ignore', own(run.stdout, 1), own(run.stderr, 2)],
    });
    child.stdout?.pipe(run.stdout, { end: false });
    child.stderr?.pipe(run.stderr, { end: false });
    const onInterrupt = () => {
      // The terminal sent it to compose too.
    };
    const onTerminate = () => child.kill('SIGTERM');
    process.on('SIGINT', onInterrupt);
    process.on('SIGTERM', onTerminate);
    const exited = new Promise<void>((settle) => child.once('close', () => settle()));
    const writing =
      fifo === undefined || run.override === undefined
        ? Promise.resolve()
        : writeFifo(fifo, run.override, exited);
    const done = () => {
      process.off('SIGINT', onInterrupt);
      process.off('SIGTERM', onTerminate);
    };
    child.once('error', (error: NodeJS.ErrnoException) => {
      done();
      reject(
        error.code === 'ENOENT'
          ? new DsoError(
              'DSO_CLI_COMPOSE_MISSING',
              `cannot run ${run.compose.argv.join(' ')} (not found): install Docker Compose`,
              { cause: error },
            )
          : error,
      );
    });
    child.once('close', (code, signal) => {
      done();
      void writing.then(() => resolve(code ?? (signal === null ? 1 : 128 + signalNumber(signal))));
    });
    if (viaStdin) {
      // Compose may exit before reading all of it (a usage error): its exit code says why.
      child.stdin?.on('error', () => {});
      child.stdin?.end(run.override);
    }
  });
}

/** A named pipe in a fresh 0700 folder: its content never touches the disk. */
async function makeFifo(env: NodeJS.ProcessEnv): Promise<{ directory: string; path: string }> {
  const directory = await mkdtemp(join(tmpdir(), 'dso-up-'));
  const path = join(directory, 'dso-up.override.yaml');
  const made = await query('mkfifo', ['-m', '600', path], env);
  if (made.code !== 0) {
    await rm(directory, { recursive: true, force: true });
    throw new DsoError(
      'DSO_CLI_COMPOSE_PIPE',
      `cannot make a named pipe to hand docker-compose its override (mkfifo: ${firstLine(made.stderr) || made.error?.code || `exit ${made.code}`}): check that mkfifo (coreutils) is installed and ${tmpdir()} is writable, or install the Compose plugin (docker compose), which reads it from stdin`,
      { cause: made.error },
    );
  }
  return { directory, path };
}

/**
 * Writes `text` into the pipe once compose opens it. Opening a pipe for writing waits for a
 * reader: when compose exits without opening it (a usage error), a reader of our own releases
 * the wait, so dso never hangs.
 */
async function writeFifo(path: string, text: string, exited: Promise<void>): Promise<void> {
  let opened = false;
  const release = exited.then(async () => {
    if (opened) return;
    const reader = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch(
      () => undefined,
    );
    await reader?.close();
  });
  try {
    const writer = await open(path, 'w');
    opened = true;
    try {
      await writer.writeFile(text);
    } finally {
      await writer.close();
    }
  } catch {
    // EPIPE: compose went away before reading it all; its exit code says why.
  }
  await release;
}

function signalNumber(signal: NodeJS.Signals): number {
  return signal === 'SIGINT' ? 2 : signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 0;
}

function dockerMissing(error: NodeJS.ErrnoException): DsoError {
  return new DsoError(
    'DSO_CLI_DOCKER_FAILED',
    error.code === 'ENOENT'
      ? 'the docker CLI is not installed: install it (apt-get install docker.io, or Docker Engine from docs.docker.com)'
      : `cannot run docker (${error.code ?? error.message})`,
    { cause: error },
  );
}

function firstLine(text: string): string {
  return (text.trim().split('\n')[0] ?? '').slice(0, 300);
}

/** A volume compose made for a project: its engine name, driver and name in the compose file. */
export interface ProjectVolume {
  name: string;
  driver: string;
  /** The `com.docker.compose.volume` label: the name the compose file (or dso up's override) gave it. */
  composeName: string;
}

/**
 * The volumes compose made for `project` (`docker volume ls` by the label
 * `com.docker.compose.project`).
 *
 * @throws DsoError DSO_CLI_DOCKER_FAILED when docker cannot be run or fails
 */
export async function listProjectVolumes(
  project: string,
  env: NodeJS.ProcessEnv,
): Promise<ProjectVolume[]> {
  const result = await query(
    'docker',
    [
      'volume',
      'ls',
      '--filter',
      `label=com.docker.compose.project=${project}`,
      '--format',
      '{{.Name}}\t{{.Driver}}\t{{.Label "com.docker.compose.volume"}}',
    ],
    env,
    DOCKER_VOLUME_QUERY_TIMEOUT_MS,
  );
  if (result.error !== undefined) throw dockerMissing(result.error);
  if (result.code !== 0) {
    throw new DsoError(
      'DSO_CLI_DOCKER_FAILED',
      `docker volume ls failed (exit ${result.code}): ${firstLine(result.stderr)}`,
      { project },
    );
  }
  return result.stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [name = '', driver = '', composeName = ''] = line.split('\t');
      return { name, driver, composeName };
    });
}

/**
 * Removes volumes by name (`docker volume rm`); answers the ones that could not be removed
 * with docker's first line of why.
 */
export async function removeVolumes(
  names: readonly string[],
  env: NodeJS.ProcessEnv,
): Promise<Array<{ name: string; problem: string }>> {
  const failed: Array<{ name: string; problem: string }> = [];
  for (const name of names) {
    const result = await query(
      'docker',
      ['volume', 'rm', name],
      env,
      DOCKER_VOLUME_QUERY_TIMEOUT_MS,
    );
    if (result.error !== undefined) throw dockerMissing(result.error);
    if (result.code !== 0) failed.push({ name, problem: firstLine(result.stderr) });
  }
  return failed;
}
