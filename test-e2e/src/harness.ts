import { type ChildProcess, execFile, type SpawnOptions, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { renameSync, symlinkSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { type AddressInfo, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, vi } from 'vitest';
import {
  type PrivateEngine,
  startPrivateEngine,
} from '../../packages/docker-runtime/src/test-support/private-engine.js';
import testImage from '../../tools/test-image.json' with { type: 'json' };

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

/** The built artifacts under test: nothing here imports the packages' source. */
export const CLI_BIN = join(ROOT, 'apps/cli/bin/dso.js');
export const AGENT_BIN = join(ROOT, 'apps/agent/bin/dso-agent.js');
export const TEST_IMAGE = testImage.image;
/** Every container a test creates carries this label, valued with the run's id, for cleanup. */
export const TEST_LABEL = testImage.label;
export const RUN_ID = randomUUID();
/**
 * The volume driver name this file's agents serve (every workspace's `DSO_VOLUME_DRIVER_NAME`):
 * `dso-e2e-p<worker slot>` (vitest's VITEST_POOL_ID), which no file running at the same time
 * has, since every engine on the host finds plugins in the one folder /run/docker/plugins. The
 * names are few and come back from file to file on purpose: an engine that has used a legacy
 * plugin keeps it until it restarts (see `hideVolumeSocket`).
 */
export const VOLUME_DRIVER = `dso-e2e-p${process.env.VITEST_POOL_ID ?? '1'}`;

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with optional stdin; never rejects on a non-zero exit. */
export function runCommand(
  command: string,
  args: string[],
  options: {
    env?: NodeJS.ProcessEnv;
    input?: string | Buffer;
    timeoutMs?: number;
    cwd?: string;
  } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 60_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    // A command that exits without reading its stdin (grep with paths, a failing docker exec)
    // makes this write fail with EPIPE: its exit code and output already say what happened.
    child.stdin.on('error', () => {});
    child.stdin.end(options.input ?? '');
  });
}

/** Runs the docker CLI; its output is trimmed, so compare file contents with {@link dockerRaw}. */
export async function docker(...args: string[]): Promise<string> {
  return (await dockerRaw(...args)).trim();
}

/** Runs the docker CLI and returns its output byte for byte. */
export async function dockerRaw(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('docker', args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/**
 * Waits, with vitest's `vi.waitFor`, for `check` to return a value other than undefined, and
 * returns it; fails after `timeoutMs` naming `what`, with the last error `check` threw (a
 * command that fails while the agent catches up is retried) as the cause.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  { timeoutMs = 30_000, intervalMs = 100 } = {},
): Promise<T> {
  return vi.waitFor(
    async () => {
      let value: T | undefined;
      try {
        value = await check();
      } catch (error) {
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: error });
      }
      if (value === undefined)
        throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      return value;
    },
    { timeout: timeoutMs, interval: intervalMs },
  );
}

/**
 * A DSO home folder of the test's own, with a vault created by the built CLI, and the host
 * folders an agent of it uses: its own volume root (under /run: the agent mounts a tmpfs there)
 * and host-path root (on /dev/shm, a tmpfs), set in its environment (`DSO_VOLUMES_ROOT`,
 * `DSO_HOST_PATH_ROOT`). As root every agent would otherwise use /run/dso/volumes and
 * /run/dso/containers whatever its home, and sweep away the folders of another agent running
 * at the same time. Its driver name is {@link VOLUME_DRIVER}. Dispose unmounts and removes
 * them: after its agents have stopped.
 */
export async function createWorkspace() {
  const home = await mkdtemp(join(tmpdir(), 'dso-e2e-'));
  const id = randomUUID().slice(0, 8);
  const volumesRoot = `/run/dso-e2e-${id}/volumes`;
  const hostPathRoot = `/dev/shm/dso-e2e-${id}/containers`;
  // The operator's own key settings would point the test at another vault's key.
  const {
    DSO_VAULT_PASSPHRASE: _passphrase,
    DSO_VAULT_KEY_FILE: _keyFile,
    DSO_VAULT_PATH: _path,
    ...inherited
  } = process.env;
  // Each workspace's agent has its own API socket, so no two agents of a run share one.
  const env: NodeJS.ProcessEnv = {
    ...inherited,
    DSO_HOME: home,
    DSO_API_SOCKET: join(home, 'agent.sock'),
    DSO_VOLUME_DRIVER_NAME: VOLUME_DRIVER,
    DSO_VOLUMES_ROOT: volumesRoot,
    DSO_HOST_PATH_ROOT: hostPathRoot,
  };
  const cli = (args: string[], input?: string) =>
    runCommand(process.execPath, [CLI_BIN, ...args], { env, input });
  return {
    home,
    env,
    cli,
    /** The driver name its agents serve: {@link VOLUME_DRIVER}. */
    volumeDriver: VOLUME_DRIVER,
    /** `volumes.root` of its agents. */
    volumesRoot,
    /** `hostPath.root` of its agents (on a tmpfs). */
    hostPathRoot,
    async [Symbol.asyncDispose]() {
      // The agent's tmpfs at the root and its read-only view in it; lazily, should a container
      // of a failed test still hold a mount. Nothing mounted when no agent served volumes.
      await runCommand('umount', ['-R', '-l', volumesRoot]);
      await rm(home, { recursive: true, force: true });
      await rm(dirname(volumesRoot), { recursive: true, force: true });
      await rm(dirname(hostPathRoot), { recursive: true, force: true });
    },
  };
}

/**
 * The agent's environment: the workspace's (its own API socket included) and metrics on a free
 * loopback port, so that no two agents (of one file or another) ever share either.
 */
export async function agentEnv(
  workspace: { env: NodeJS.ProcessEnv },
  extra: NodeJS.ProcessEnv = {},
) {
  const metricsAddress = `127.0.0.1:${await freePort()}`;
  const env: NodeJS.ProcessEnv = {
    ...workspace.env,
    DSO_METRICS_ADDRESS: metricsAddress,
    ...extra,
  };
  return { env, metricsAddress };
}

/**
 * Moves the volume plugin socket an agent just logged (`volume driver serving`) into its
 * workspace's folder, leaving a symlink at /run/docker/plugins/<name>.sock. An engine looks for
 * a driver it is told to use by following that path (symlinks too), but when it looks a volume
 * up by name it scans the folder for sockets (not symlinks), keeps every plugin it found, and
 * asks each one again at every later lookup, retrying ~15 s once its socket is gone: so every
 * engine on the host, the shared one included, would wait on every agent that ran beside it.
 * Hidden, an agent's plugin is known only to the engines told to use it. The agent removes the
 * symlink when it stops; the socket goes with the workspace's folder.
 */
function hideVolumeSocket(line: string, env: NodeJS.ProcessEnv): void {
  const root = env.DSO_VOLUMES_ROOT;
  if (root === undefined) return;
  let socketPath: unknown;
  try {
    socketPath = (JSON.parse(line) as { socketPath?: unknown }).socketPath;
  } catch {
    return; // not a JSON log line: nothing was served
  }
  if (typeof socketPath !== 'string' || !socketPath.startsWith('/run/docker/plugins/')) return;
  const hidden = join(dirname(root), 'plugin.sock');
  try {
    renameSync(socketPath, hidden);
  } catch {
    return; // another file system, or gone already: the socket stays where it is, visible
  }
  try {
    symlinkSync(hidden, socketPath);
  } catch (error) {
    renameSync(hidden, socketPath); // back where the engine looks, rather than nowhere
    throw error;
  }
}

/**
 * Agents of this file still running. A test that times out is abandoned, not finished, so its
 * `await using` never stops its agent: it is killed after the file's own hooks, rather than
 * live on and deliver to (or hold a socket of) the files after it.
 */
const runningAgents = new Set<ChildProcess>();
afterAll(async () => {
  const exits = [...runningAgents].map(
    (child) => new Promise((resolve) => child.once('exit', resolve)),
  );
  for (const child of runningAgents) child.kill('SIGKILL');
  await Promise.all(exits);
});

/**
 * The built agent, its whole output kept for the canary checks. Its volume plugin socket is
 * hidden (see `hideVolumeSocket`), unless it runs in `mountNamespace`: a private engine's with
 * `pluginsDir` (`PrivateEngine.mountNamespace`), for a Swarm node, which lists in its
 * description (which the manager places tasks by) only the plugins it finds by scanning
 * /run/docker/plugins. There the agent serves its socket in the engine's own plugins folder,
 * which no other engine sees, and makes its volumes tmpfs where the engine sees it; its files
 * are read from the host through `/proc/<pid>/root` (`hostPath`).
 */
export function startAgent(env: NodeJS.ProcessEnv, options: { mountNamespace?: string } = {}) {
  const agentEnvironment = { ...env, DSO_LOG_LEVEL: 'trace' };
  const spawnOptions: SpawnOptions = { env: agentEnvironment, stdio: ['ignore', 'pipe', 'pipe'] };
  // nsenter without --fork execs the agent: the child's pid is the agent's, for its signals.
  const child: ChildProcess =
    options.mountNamespace === undefined
      ? spawn(process.execPath, [AGENT_BIN], spawnOptions)
      : spawn(
          'nsenter',
          [`--mount=${options.mountNamespace}`, '--', process.execPath, AGENT_BIN],
          spawnOptions,
        );
  runningAgents.add(child);
  child.once('exit', () => runningAgents.delete(child));
  let output = '';
  let partial = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
    // Each whole line as it comes, so the plugin socket is hidden the moment it is served.
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      if (options.mountNamespace === undefined && line.includes('"volume driver serving"')) {
        hideVolumeSocket(line, env);
      }
    }
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    get output() {
      return output;
    },
    /** `path` as the agent sees it (in its mount namespace), for reading from the host. */
    hostPath(path: string): string {
      return options.mountNamespace === undefined ? path : `/proc/${child.pid}/root${path}`;
    },
    /** Log lines as parsed JSON (non-JSON lines are skipped). */
    lines(): Array<Record<string, unknown>> {
      return output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    waitForLog(message: string, timeoutMs = 60_000) {
      return waitFor(
        `agent log "${message}"`,
        async () => this.lines().find((line) => line.msg === message),
        { timeoutMs },
      );
    },
    async stop(): Promise<number | null> {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    async [Symbol.asyncDispose]() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/**
 * Runs a labelled test container in the background, with no network unless `args` names one;
 * removed on dispose. `env` is the docker CLI's own environment: with `-e NAME` in `args` a
 * value reaches the container the way `dso up` passes one, never through argv. `host` runs it
 * on a private engine (`unix://…`) instead of the shared one; `image` replaces the test image
 * (whose command is then `command`, or the image's own when it is empty).
 */
export async function runContainer(
  args: string[],
  command: string[] = ['sleep', '600'],
  options: { env?: NodeJS.ProcessEnv; host?: string; name?: string; image?: string } = {},
) {
  const name = options.name ?? `dso-test-${randomUUID()}`;
  const network = args.some((arg) => arg === '--network' || arg.startsWith('--network='))
    ? []
    : ['--network', 'none'];
  const on = engineArgs(options.host);
  const argv = [
    ...on,
    'run',
    '-d',
    '--name',
    name,
    ...network,
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    ...args,
    options.image ?? TEST_IMAGE,
    ...command,
  ];
  const created = await runCommand('docker', argv, { env: { ...process.env, ...options.env } });
  if (created.code !== 0) throw new Error(`docker run ${name} failed: ${created.stderr}`);
  const id = created.stdout.trim();
  return {
    id,
    name,
    exec: (...cmd: string[]) => docker(...on, 'exec', id, ...cmd),
    /** A file's exact content, not trimmed. */
    readFile: (path: string) => dockerRaw(...on, 'exec', id, 'cat', path),
    async [Symbol.asyncDispose]() {
      await docker(...on, 'rm', '-f', '-v', id).catch(() => {
        // Already gone: nothing left to clean.
      });
    },
  };
}

/**
 * What a test file starts and must not leave behind whatever happens, removed after its last
 * test: agents first (so none keeps working on what is removed next), then each private engine
 * with this run's containers on it, then workspaces and folders. A test that cleans up after
 * itself deletes what it removed.
 *
 * @example
 * const leftovers = trackLeftovers();
 * const engine = await startPrivateEngine();
 * leftovers.engines.add(engine);
 */
export function trackLeftovers() {
  const leftovers = {
    agents: new Set<AgentProcess>(),
    engines: new Set<PrivateEngine>(),
    workspaces: new Set<Workspace>(),
    paths: new Set<string>(),
  };
  afterAll(async () => {
    for (const agent of leftovers.agents) await agent[Symbol.asyncDispose]();
    for (const engine of leftovers.engines) {
      const ids = await runContainerIds({ host: engine.host }).catch(() => []);
      await removeContainers(ids, { host: engine.host });
      await engine.destroy();
    }
    for (const workspace of leftovers.workspaces) await workspace[Symbol.asyncDispose]();
    for (const path of leftovers.paths) await rm(path, { recursive: true, force: true });
  });
  return leftovers;
}

/**
 * Runs the whole file on a private engine instead of the shared one: started before the file's
 * own `beforeAll` hooks (call this first, at the top level), it sets `DOCKER_HOST` in this
 * worker's environment, which every docker CLI call of the harness, `runCommand`, compose, and
 * the workspaces made afterwards (their CLI and agents) inherit. Each file runs in a process of
 * its own, so no other file sees it. After the file's own `afterAll` hooks, the engine goes
 * with this run's containers on it. So a file written for the shared engine shares nothing
 * with the files running beside it.
 *
 * @example
 * const engine = privateEngineForFile();
 * it('…', async () => { await docker('ps'); engine.host; });
 */
export function privateEngineForFile(): { readonly host: string } {
  let engine: PrivateEngine | undefined;
  const before = process.env.DOCKER_HOST;
  beforeAll(async () => {
    engine = await startPrivateEngine();
    process.env.DOCKER_HOST = engine.host;
  }, 120_000);
  afterAll(async () => {
    if (engine !== undefined) {
      const ids = await runContainerIds({ host: engine.host }).catch(() => []);
      await removeContainers(ids, { host: engine.host });
      await engine.destroy();
    }
    if (before === undefined) delete process.env.DOCKER_HOST;
    else process.env.DOCKER_HOST = before;
  }, 120_000);
  return {
    get host() {
      if (engine === undefined) throw new Error('the file engine starts in beforeAll');
      return engine.host;
    },
  };
}

/** A workspace of {@link createWorkspace}. */
export type Workspace = Awaited<ReturnType<typeof createWorkspace>>;
/** An agent process of {@link startAgent}. */
export type AgentProcess = ReturnType<typeof startAgent>;

/** Removes every container this run labelled, even after a failed test. */
export async function removeRunContainers(): Promise<void> {
  const ids = await docker('ps', '-aq', '--filter', `label=${TEST_LABEL}=${RUN_ID}`);
  if (ids) await docker('rm', '-f', '-v', ...ids.split('\n'));
}

/**
 * Paths under `dirs` whose bytes contain `needle`, found with grep (it reads binary files as
 * text and does not follow symlinks). Every folder must exist and be searched: a check that
 * searched nothing must not pass.
 */
export async function filesContaining(needle: string, dirs: string[]): Promise<string[]> {
  for (const dir of dirs) {
    if (!(await stat(dir)).isDirectory()) throw new Error(`${dir} is not a folder to search`);
  }
  const result = await runCommand('grep', ['-rlF', '--binary-files=text', '--', needle, ...dirs], {
    timeoutMs: 300_000,
  });
  // grep: 0 = found, 1 = not found, 2 = trouble. Trouble is tolerated only for files that
  // vanished while it ran (a container's files come and go); anything else fails the check.
  if (result.code === 2) {
    const trouble = result.stderr
      .split('\n')
      .filter((line) => line && !line.endsWith('No such file or directory'));
    if (trouble.length > 0) {
      throw new Error(`grep could not search everything:\n${trouble.slice(0, 5).join('\n')}`);
    }
  } else if (result.code !== 0 && result.code !== 1) {
    throw new Error(`grep exited ${result.code}`);
  }
  return result.stdout.split('\n').filter(Boolean);
}

// ---- Many containers at once, metrics, files seen from the host, provider processes ----

/** A TCP port on 127.0.0.1 that nothing listens on at the moment (for DSO_METRICS_ADDRESS). */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** `docker` CLI arguments that address `host` (a private engine), or none for the shared one. */
function engineArgs(host: string | undefined): string[] {
  return host === undefined ? [] : ['-H', host];
}

/** Runs the docker CLI against `host` (a private engine's `unix://…`); output trimmed. */
export async function dockerOn(host: string, ...args: string[]): Promise<string> {
  return docker(...engineArgs(host), ...args);
}

export interface StartedContainers {
  /** Full ids of the containers `docker run -d` reported started, in the order they started. */
  ids: string[];
  /** What `docker run` said for each container it could not start (an engine going down, say). */
  failures: string[];
}

/**
 * Starts `count` labelled, network-less test containers, `concurrency` `docker run -d` at a
 * time. A container that cannot be started is listed in `failures`, never thrown: a test that
 * restarts the engine expects some. `onStarted` is told each start as it happens, with how many
 * have started so far.
 */
export async function runManyContainers(
  count: number,
  args: string[],
  options: {
    host?: string;
    concurrency?: number;
    command?: string[];
    onStarted?: (id: string, started: number) => void;
  } = {},
): Promise<StartedContainers> {
  const ids: string[] = [];
  const failures: string[] = [];
  let next = 0;
  const lane = async () => {
    while (next < count) {
      next += 1;
      const result = await runCommand('docker', [
        ...engineArgs(options.host),
        'run',
        '-d',
        '--name',
        `dso-test-${randomUUID()}`,
        '--network',
        'none',
        '--label',
        `${TEST_LABEL}=${RUN_ID}`,
        ...args,
        TEST_IMAGE,
        ...(options.command ?? ['sleep', '600']),
      ]);
      if (result.code === 0) {
        const id = result.stdout.trim();
        ids.push(id);
        options.onStarted?.(id, ids.length);
      } else {
        failures.push(result.stderr.trim() || `docker run exited ${result.code}`);
      }
    }
  };
  const lanes = Math.max(1, Math.min(options.concurrency ?? 20, count));
  await Promise.all(Array.from({ length: lanes }, lane));
  return { ids, failures };
}

/** Full ids of this run's labelled containers on `host` (the shared engine when absent). */
export async function runContainerIds(
  options: { host?: string; running?: boolean } = {},
): Promise<string[]> {
  const output = await docker(
    ...engineArgs(options.host),
    'ps',
    ...(options.running ? [] : ['-a']),
    '-q',
    '--no-trunc',
    '--filter',
    `label=${TEST_LABEL}=${RUN_ID}`,
  );
  return output.split('\n').filter(Boolean);
}

/** Removes containers (and their anonymous volumes) by id; ones already gone are ignored. */
export async function removeContainers(ids: string[], options: { host?: string } = {}) {
  // In slices: one docker CLI removes its arguments in parallel, and argv stays short.
  for (let start = 0; start < ids.length; start += 25) {
    await runCommand(
      'docker',
      [...engineArgs(options.host), 'rm', '-f', '-v', ...ids.slice(start, start + 25)],
      { timeoutMs: 120_000 },
    );
  }
}

const sha256 = (content: string | Buffer) => createHash('sha256').update(content).digest('hex');

/**
 * What each container's file at `path` holds, seen from the host: the sha256 of its content,
 * or why there is none (`not running`, `no such container`, `no file`). As root the file is
 * read through `/proc/<pid>/root` (the container's own mounts, its tmpfs included: no exec, so
 * polling adds no load to the engine nor events to its stream); otherwise with `docker exec`.
 */
export async function containerFileDigests(
  ids: string[],
  path: string,
  options: { host?: string } = {},
): Promise<Map<string, string>> {
  const states = new Map<string, string>(ids.map((id) => [id, 'no such container']));
  if (ids.length === 0) return states;
  // One inspect for all; a container that is gone fails the command but not the others' lines.
  const inspected = await runCommand('docker', [
    ...engineArgs(options.host),
    'inspect',
    '--format',
    '{{.Id}} {{.State.Running}} {{.State.Pid}}',
    ...ids,
  ]);
  const asRoot = process.getuid?.() === 0;
  await Promise.all(
    inspected.stdout
      .split('\n')
      .filter(Boolean)
      .map(async (line) => {
        const [fullId = '', running, pid] = line.split(' ');
        const id = ids.find((candidate) => fullId.startsWith(candidate));
        if (id === undefined) return;
        if (running !== 'true') {
          states.set(id, 'not running');
          return;
        }
        if (asRoot) {
          try {
            states.set(id, sha256(await readFile(`/proc/${pid}/root${path}`)));
          } catch (error) {
            const code = (error as NodeJS.ErrnoException).code;
            states.set(id, code === 'ENOENT' ? 'no file' : `unreadable (${code})`);
          }
          return;
        }
        const read = await runCommand('docker', [
          ...engineArgs(options.host),
          'exec',
          id,
          'cat',
          path,
        ]);
        states.set(id, read.code === 0 ? sha256(read.stdout) : 'no file');
      }),
  );
  return states;
}

/**
 * Waits until every container in `ids` has `expected` at `path`, polling the host's view every
 * `intervalMs`. On timeout the error names each container that lacks it and what it has
 * instead (never the content: a digest only says "other content").
 */
export async function waitForContainerFiles(
  ids: string[],
  path: string,
  expected: string,
  {
    host,
    timeoutMs = 60_000,
    intervalMs = 200,
  }: { host?: string; timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const want = sha256(expected);
  await vi.waitFor(
    async () => {
      const states = await containerFileDigests(ids, path, host === undefined ? {} : { host });
      const lacking = [...states].filter(([, state]) => state !== want);
      if (lacking.length === 0) return;
      const described = lacking.map(
        ([id, state]) =>
          `${id.slice(0, 12)}: ${/^[0-9a-f]{64}$/.test(state) ? 'other content' : state}`,
      );
      throw new Error(
        `${lacking.length} of ${ids.length} containers lack ${path} with the expected content ` +
          `after ${timeoutMs} ms:\n  ${described.slice(0, 40).join('\n  ')}` +
          (described.length > 40 ? `\n  … and ${described.length - 40} more` : ''),
      );
    },
    { timeout: timeoutMs, interval: intervalMs },
  );
}

/** The agent's /metrics exposition, from `address` (`host:port`). */
export async function readMetrics(address: string): Promise<string> {
  const response = await fetch(`http://${address}/metrics`, {
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`GET http://${address}/metrics answered ${response.status}`);
  return response.text();
}

/**
 * The value of the one series named `name` whose labels include `labels`, from a Prometheus
 * text exposition; undefined when there is none. Throws when several series match.
 */
export function metricValue(
  exposition: string,
  name: string,
  labels: Record<string, string> = {},
): number | undefined {
  const matches: number[] = [];
  for (const line of exposition.split('\n')) {
    const sample = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (sample === null || sample[1] !== name) continue;
    const found: Record<string, string> = {};
    for (const [, key = '', value = ''] of (sample[2] ?? '').matchAll(
      /(\w+)="((?:[^"\\]|\\.)*)"/g,
    )) {
      found[key] = value;
    }
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) {
      matches.push(Number(sample[3]));
    }
  }
  if (matches.length > 1) {
    throw new Error(`${matches.length} series of ${name} match ${JSON.stringify(labels)}`);
  }
  return matches[0];
}

/** The audit trail's lines (`$DSO_HOME/audit.jsonl` unless `path`), parsed; none when missing. */
export async function readAuditTrail(
  home: string,
  path = join(home, 'audit.jsonl'),
): Promise<Array<Record<string, unknown>>> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  // A line still being appended has no newline yet: only complete lines count.
  return text
    .split('\n')
    .slice(0, -1)
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

export interface ProviderProcess {
  pid: number;
  /** Its parent now: the agent, or whatever adopted it after the agent died. */
  ppid: number;
  /** The kernel's state letter (`R`, `S`, … `Z` for exited but not yet reaped). */
  state: string;
  command: string;
}

/**
 * Provider processes (the provider SDK's runner, `…/runner.js <module>`) that serve the DSO
 * home `home`, found in /proc by their command line and the `DSO_HOME` in their environment
 * (the local provider is given it). Linux only; reading other processes' environments needs
 * root or the same user. Exited-but-unreaped processes are listed with state `Z`.
 */
export async function providerProcesses(home: string): Promise<ProviderProcess[]> {
  const found: ProviderProcess[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const argv = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0').filter(Boolean);
      if (!argv.some((argument) => /[/\\]runner\.[jt]s$/.test(argument))) continue;
      const environ = (await readFile(`/proc/${entry}/environ`, 'utf8')).split('\0');
      if (!environ.includes(`DSO_HOME=${home}`)) continue;
      const stat = await readFile(`/proc/${entry}/stat`, 'utf8');
      // `pid (comm) state ppid …`: comm may hold spaces, so split after its closing parenthesis.
      const [state = '?', ppid = '0'] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      found.push({ pid: Number(entry), ppid: Number(ppid), state, command: argv.join(' ') });
    } catch {
      // The process exited while we looked: it is not there, which is what is being counted.
    }
  }
  return found;
}
