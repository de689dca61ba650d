/**
 * A second, private Docker Engine for tests that stop and start an engine: its own socket,
 * data root and exec root under /tmp, started exactly like the shared one (no bridge, no
 * iptables), so restarting it never disturbs other tests. Needs root and Debian's dockerd.
 * It answers on its unix socket always, and on whatever else `extraArgs` adds. With `netns`
 * it runs in a network namespace of its own, for tests whose engine makes networks.
 * Test-only.
 */
import { type ChildProcess, execFile, type SpawnOptions, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { type FileHandle, mkdir, open, readdir, readFile, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { docker as sharedEngine, TEST_IMAGE, waitFor, waitForEngineProcess } from './engine.js';

const run = promisify(execFile);

export interface PrivateEngine {
  /** `unix://…` for the runtime's host option. */
  readonly host: string;
  /** dockerode on the private engine, for arranging what the tests need. */
  readonly docker: Docker;
  /**
   * With `pluginsDir`: `/proc/<dockerd's pid>/ns/mnt`, the engine's mount namespace of its
   * current start, for `nsenter --mount=…`; undefined otherwise or while it is stopped.
   */
  readonly mountNamespace: string | undefined;
  /** Stops the engine (SIGTERM, as systemd does) and waits until it has exited. */
  stop(): Promise<void>;
  /** Starts it again on the same data root and waits until it answers. */
  start(): Promise<void>;
  /** Stops it and removes everything it kept. */
  destroy(): Promise<void>;
}

export interface PrivateEngineOptions {
  /** More dockerd arguments, e.g. a TLS listener: `--tlsverify`, `--host=tcp://127.0.0.1:<port>`. */
  extraArgs?: string[];
  /**
   * More environment for dockerd, e.g. `DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: '1'` so that Swarm
   * tasks use the local image instead of trying a registry first.
   */
  env?: NodeJS.ProcessEnv;
  /**
   * Runs dockerd (and so its containerd and shims) in a new network namespace with only its
   * loopback up (`unshare --net`, then `ip link set lo up`): the networks it creates, Swarm's
   * `ingress` overlay and `docker_gwbridge` bridge among them, exist only in there, and its
   * 127.0.0.1 is the namespace's own. Its socket, data root and mounts stay on the host's
   * filesystem, so clients, volume plugins and bind mounts work as usual. Each start gets a
   * new namespace; `stop()` kills whatever is still in it once dockerd has exited, so it goes
   * with them. Needs util-linux's `unshare` and iproute2's `ip`.
   * @default false
   */
  netns?: boolean;
  /**
   * Runs dockerd also in a mount namespace of its own (`unshare --mount --propagation slave`)
   * where this host folder is bind-mounted over /run/docker/plugins: the engine finds volume
   * plugins there only, and no other engine on the host sees a socket put there. A host
   * folder has no shared mount here (`/` is private), so a mount made on the host later, such
   * as an agent's volumes tmpfs, does not reach the engine: run a plugin that answers with
   * mount points inside the engine's namespace (`nsenter --mount=<mountNamespace>`), where it
   * finds the same folder at /run/docker/plugins. Each start gets a new namespace. Needs
   * util-linux's `unshare` and `mount`.
   */
  pluginsDir?: string;
}

/**
 * Pids of the processes in the network namespace `namespace` is open on, and of their
 * descendants (a container's processes, in namespaces of their own under their shim).
 */
async function processesIn(namespace: FileHandle): Promise<number[]> {
  const { dev, ino } = await namespace.stat();
  const found = new Set<number>();
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    try {
      const net = await stat(`/proc/${entry}/ns/net`);
      if (net.dev === dev && net.ino === ino) found.add(pid);
      // `pid (comm) state ppid …`: comm may hold spaces, so split after its closing parenthesis.
      const line = await readFile(`/proc/${entry}/stat`, 'utf8');
      parents.set(pid, Number(line.slice(line.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      // The process exited while we looked: it is in no namespace any more.
    }
  }
  for (let grown = true; grown; ) {
    grown = false;
    for (const [pid, parent] of parents) {
      if (!found.has(pid) && found.has(parent)) {
        found.add(pid);
        grown = true;
      }
    }
  }
  return [...found];
}

export async function startPrivateEngine(
  options: PrivateEngineOptions = {},
): Promise<PrivateEngine> {
  const dir = `/tmp/dso-engine-${randomUUID().slice(0, 8)}`;
  const socketPath = join(dir, 'docker.sock');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const docker = new Docker({ socketPath });
  let child: ChildProcess | undefined;
  // Held open while the engine runs: the namespace cannot go, nor its inode be given to another
  // namespace, until stop() has seen it empty.
  let namespace: FileHandle | undefined;

  async function start(): Promise<void> {
    const log = await open(join(dir, 'dockerd.log'), 'a');
    const dockerdArgs = [
      `--data-root=${join(dir, 'data')}`,
      `--exec-root=${join(dir, 'exec')}`,
      `--pidfile=${join(dir, 'dockerd.pid')}`,
      `--host=unix://${socketPath}`,
      '--bridge=none',
      '--iptables=false',
      '--ip-masq=false',
      '--ip-forward=false',
      ...(options.extraArgs ?? []),
    ];
    const spawnOptions: SpawnOptions = {
      stdio: ['ignore', log.fd, log.fd],
      ...(options.env === undefined ? {} : { env: { ...process.env, ...options.env } }),
    };
    // No --fork: unshare and sh exec in turn, so the child's pid is dockerd's, for stop(). The
    // plugins folder comes as sh's $0, so that "$@" stays dockerd's command line.
    const namespaces = [
      ...(options.netns ? ['--net'] : []),
      ...(options.pluginsDir === undefined ? [] : ['--mount', '--propagation', 'slave']),
    ];
    const setUp = [
      ...(options.netns ? ['ip link set lo up'] : []),
      ...(options.pluginsDir === undefined
        ? []
        : ['mkdir -p /run/docker/plugins', 'mount --bind "$0" /run/docker/plugins']),
    ];
    child =
      namespaces.length > 0
        ? spawn(
            'unshare',
            [
              ...namespaces,
              '--',
              'sh',
              '-c',
              `${setUp.join(' && ')} && exec "$@"`,
              options.pluginsDir ?? 'sh',
              'dockerd',
              ...dockerdArgs,
            ],
            spawnOptions,
          )
        : spawn('dockerd', dockerdArgs, spawnOptions);
    await log.close();
    const running = child;
    await waitForEngineProcess('the private dockerd', running, docker, `${dir}/dockerd.log`);
    if (options.netns) {
      namespace = await open(`/proc/${running.pid}/ns/net`, 'r');
      const [own, host] = [await namespace.stat(), await stat('/proc/self/ns/net')];
      if (own.dev === host.dev && own.ino === host.ino) {
        await stop();
        throw new Error('the private engine runs in the host network namespace, not its own');
      }
    }
  }

  async function stop(): Promise<void> {
    const running = child;
    child = undefined;
    if (running !== undefined && running.exitCode === null && running.signalCode === null) {
      const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
      running.kill('SIGTERM');
      await exited;
    }
    const held = namespace;
    namespace = undefined;
    if (held === undefined) return;
    try {
      // dockerd stops its containers and its containerd when it exits; anything left in its
      // namespace (a shim, a container on the engine's network) or under it (a container's
      // processes) was started by it, and goes.
      await waitFor(
        'the private engine’s processes to exit',
        async () => {
          const left = await processesIn(held);
          for (const pid of left) {
            try {
              process.kill(pid, 'SIGKILL');
            } catch {
              // It exited meanwhile: one fewer to wait for.
            }
          }
          return left.length === 0 ? true : undefined;
        },
        10_000,
      );
    } finally {
      // The test's own reference: with no process left in it, nothing else holds the namespace.
      await held.close();
    }
  }

  await start();
  // The test image, copied from the shared engine (no registry can be reached here).
  const image = await sharedEngine.getImage(TEST_IMAGE).get();
  await new Promise<void>((resolve, reject) => {
    docker.loadImage(image, {}, (error, output) => {
      if (error) return reject(error);
      output?.on('error', reject);
      output?.on('end', () => resolve());
      output?.resume();
    });
  });
  // Copied from Podman (DOCKER_HOST naming its service), the image is named
  // `localhost/dso-test/busybox:1`: give it the name the tests use.
  const loaded = await docker.listImages({ filters: { reference: [TEST_IMAGE] } });
  if (loaded.length === 0) {
    const [repo = '', tag] = TEST_IMAGE.split(':');
    await docker.getImage(`localhost/${TEST_IMAGE}`).tag({ repo, tag });
  }

  return {
    host: `unix://${socketPath}`,
    docker,
    get mountNamespace() {
      const pid = child?.pid;
      return options.pluginsDir === undefined || pid === undefined
        ? undefined
        : `/proc/${pid}/ns/mnt`;
    },
    start,
    stop,
    async destroy() {
      // Containers first (their layers are mounted while they exist), then the engine, then
      // whatever mount is still left under the directory (a lazy unmount), then the files.
      if (child !== undefined) {
        try {
          for (const info of await docker.listContainers({ all: true })) {
            await docker.getContainer(info.Id).remove({ force: true });
          }
        } catch {
          // The engine may already be gone: the unmount below still cleans up.
        }
      }
      await stop();
      const mounts = (await readFile('/proc/self/mounts', 'utf8'))
        .split('\n')
        .map((line) => line.split(' ')[1] ?? '')
        .filter((path) => path.startsWith(`${dir}/`))
        .sort((a, b) => b.length - a.length);
      for (const path of mounts) await run('umount', ['-l', path]).catch(() => undefined);
      await rm(dir, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
    },
  };
}
