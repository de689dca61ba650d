/**
 * A private, rootful Podman API service for tests: `podman system service` on its own socket,
 * with its own containers.conf (the same safety settings as tools/services.sh's shared service:
 * no default ulimits, no network but none, cgroupfs, events to a file; plus the volume plugins
 * a test names), its own storage, run and temporary roots (so it never sees the shared
 * service's containers, nor they its), and the test image copied from the shared Docker engine.
 * Several may run at once. Needs root and Debian's podman. Test-only.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { docker as sharedEngine, TEST_IMAGE, waitForEngineProcess } from './engine.js';

const run = promisify(execFile);

export interface PrivatePodman {
  /** `unix://…` for DOCKER_HOST, the runtime's host option or `podman --url`. */
  readonly host: string;
  /** dockerode on the service's Docker-compatible API. */
  readonly docker: Docker;
  /** Its folder: containers.conf, storage, run and temporary roots, events log, service log. */
  readonly dir: string;
  /** The folders where the service keeps what it stores or runs: searched for canaries. */
  readonly storageDirs: readonly string[];
  /** The environment the podman CLI needs to address it: `CONTAINERS_CONF`. */
  readonly env: NodeJS.ProcessEnv;
  /** Runs `podman --url <host> <args>`; never rejects on a non-zero exit. */
  podman(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /**
   * Stops the service and starts it again (its containers keep running under conmon, and its
   * events log file keeps every event).
   */
  restart(): Promise<void>;
  /** Removes its containers, stops the service, unmounts and removes its folder. */
  destroy(): Promise<void>;
}

export interface PrivatePodmanOptions {
  /**
   * `[engine.volume_plugins]`: a plugin's name → its socket, e.g. `{ dso: '/run/docker/plugins/dso.sock' }`.
   * @default {}
   */
  volumePlugins?: Record<string, string>;
}

/** Pids of the processes whose command line names a path under `dir` (this service's conmon). */
async function processesUnder(dir: string): Promise<number[]> {
  const found: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const args = (await readFile(`/proc/${entry}/cmdline`, 'utf8')).split('\0');
      if (args.some((arg) => arg.startsWith(`${dir}/`))) found.push(Number(entry));
    } catch {
      // The process exited while we looked.
    }
  }
  return found;
}

/** What tools/services.sh writes for the shared service, with this service's own folders. */
function containersConf(dir: string, volumePlugins: Record<string, string>): string {
  const plugins = Object.entries(volumePlugins).map(
    ([name, socket]) => `${JSON.stringify(name)} = ${JSON.stringify(socket)}`,
  );
  return [
    '[containers]',
    'default_ulimits = []',
    'netns = "none"',
    '',
    '[network]',
    'network_backend = "cni"',
    `network_config_dir = "${dir}/cni-conf"`,
    // An empty plugin folder: no bridge can ever be made.
    `cni_plugin_dirs = ["${dir}/no-cni-plugins"]`,
    '',
    '[engine]',
    'events_logger = "file"',
    `events_logfile_path = "${dir}/events.log"`,
    'cgroup_manager = "cgroupfs"',
    `tmp_dir = "${dir}/tmp"`,
    `volume_path = "${dir}/volumes"`,
    // Podman waits 5 s for a volume plugin by default; the agent's Mount may take up to
    // volumes.mountTimeoutMs (20 s), and must be the one that says why it failed.
    'volume_plugin_timeout = 30',
    '',
    '[engine.volume_plugins]',
    ...plugins,
    '',
  ].join('\n');
}

/**
 * Starts the service and loads the test image into it.
 *
 * @example
 * const podman = await startPrivatePodman({ volumePlugins: { dso: '/run/docker/plugins/dso.sock' } });
 * try { await podman.podman('run', '--rm', TEST_IMAGE, 'true'); } finally { await podman.destroy(); }
 */
export async function startPrivatePodman(
  options: PrivatePodmanOptions = {},
): Promise<PrivatePodman> {
  const dir = `/tmp/dso-podman-${randomUUID().slice(0, 8)}`;
  const socketPath = join(dir, 'podman.sock');
  const host = `unix://${socketPath}`;
  const root = join(dir, 'root');
  const runRoot = join(dir, 'runroot');
  for (const sub of ['cni-conf', 'no-cni-plugins', 'tmp', 'volumes']) {
    await mkdir(join(dir, sub), { recursive: true, mode: 0o700 });
  }
  const confPath = join(dir, 'containers.conf');
  await writeFile(confPath, containersConf(dir, options.volumePlugins ?? {}), { mode: 0o600 });
  const env: NodeJS.ProcessEnv = { ...process.env, CONTAINERS_CONF: confPath };
  const docker = new Docker({ socketPath });

  async function spawnService(): Promise<ChildProcess> {
    const log = await open(join(dir, 'podman.log'), 'a');
    // The storage roots are flags (they belong to storage.conf, not containers.conf); conmon's
    // cleanup command inherits them, so an exiting container is cleaned up here, not in the
    // shared service's storage.
    const spawned = spawn(
      'podman',
      ['--root', root, '--runroot', runRoot, 'system', 'service', '--time=0', host],
      { env, stdio: ['ignore', log.fd, log.fd] },
    );
    await log.close();
    return spawned;
  }
  let child = await spawnService();

  const podman = (...args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve, reject) => {
      execFile(
        'podman',
        ['--url', host, ...args],
        { env, maxBuffer: 16 * 1024 * 1024 },
        (error, stdout, stderr) => {
          const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
          if (error !== null && typeof error.code !== 'number') reject(error);
          else resolve({ code, stdout, stderr });
        },
      );
    });

  async function stop(): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGTERM');
    await exited;
  }

  async function destroy(): Promise<void> {
    if (child.exitCode === null) {
      // Containers first: conmon and their mounts go with them. Volumes are not removed through
      // the service: a plugin's may outlive its agent, and the folder goes below anyway.
      await podman('rm', '--all', '--force', '--time', '0').catch(() => undefined);
    }
    await stop();
    // conmon outlives its exec sessions by minutes (`--exit-delay 300`) so the service can read
    // their exit codes: those of this service go now. Each names a folder under `dir`.
    for (const pid of await processesUnder(dir)) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // It exited meanwhile: one fewer to stop.
      }
    }
    const mounts = (await readFile('/proc/self/mounts', 'utf8'))
      .split('\n')
      .map((line) => line.split(' ')[1] ?? '')
      .filter((path) => path.startsWith(`${dir}/`))
      .sort((a, b) => b.length - a.length);
    for (const path of mounts) await run('umount', ['-l', path]).catch(() => undefined);
    await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }

  function answering(): Promise<void> {
    return waitForEngineProcess('the private Podman service', child, docker, `${dir}/podman.log`);
  }

  /** Stops the service and starts it again on the same socket, state and event log. */
  async function restart(): Promise<void> {
    await stop();
    child = await spawnService();
    await answering();
  }

  try {
    await answering();
    // The test image, copied from the shared Docker engine (no registry can be reached here).
    const image = await sharedEngine.getImage(TEST_IMAGE).get();
    await new Promise<void>((resolve, reject) => {
      docker.loadImage(image, {}, (error, output) => {
        if (error) return reject(error);
        output?.on('error', reject);
        output?.on('end', () => resolve());
        output?.resume();
      });
    });
  } catch (error) {
    await destroy();
    throw error;
  }

  return {
    host,
    docker,
    dir,
    storageDirs: [root, runRoot, join(dir, 'tmp'), join(dir, 'volumes')],
    env,
    podman,
    restart,
    destroy,
  };
}
