/**
 * A second, private Docker Engine for tests that stop and start an engine: its own socket,
 * data root and exec root under /tmp, started exactly like the shared one (no bridge, no
 * iptables), so restarting it never disturbs other tests. Needs root and Debian's dockerd.
 * It answers on its unix socket always, and on whatever else `extraArgs` adds.
 * Test-only.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import { docker as sharedEngine, TEST_IMAGE, waitFor } from './engine.js';

const run = promisify(execFile);

export interface PrivateEngine {
  /** `unix://…` for the runtime's host option. */
  readonly host: string;
  /** dockerode on the private engine, for arranging what the tests need. */
  readonly docker: Docker;
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
}

export async function startPrivateEngine(
  options: PrivateEngineOptions = {},
): Promise<PrivateEngine> {
  const dir = `/tmp/dso-engine-${randomUUID().slice(0, 8)}`;
  const socketPath = join(dir, 'docker.sock');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const docker = new Docker({ socketPath });
  let child: ChildProcess | undefined;

  async function start(): Promise<void> {
    const log = await open(join(dir, 'dockerd.log'), 'a');
    child = spawn(
      'dockerd',
      [
        `--data-root=${join(dir, 'data')}`,
        `--exec-root=${join(dir, 'exec')}`,
        `--pidfile=${join(dir, 'dockerd.pid')}`,
        `--host=unix://${socketPath}`,
        '--bridge=none',
        '--iptables=false',
        '--ip-masq=false',
        '--ip-forward=false',
        ...(options.extraArgs ?? []),
      ],
      { stdio: ['ignore', log.fd, log.fd] },
    );
    await log.close();
    const running = child;
    await waitFor(
      'the private engine to answer',
      async () => {
        if (running.exitCode !== null) {
          throw new Error(`dockerd exited with ${running.exitCode}; see ${dir}/dockerd.log`);
        }
        try {
          await docker.ping();
          return true;
        } catch {
          // Not up yet: the next poll asks again.
          return undefined;
        }
      },
      30_000,
    );
  }

  async function stop(): Promise<void> {
    const running = child;
    child = undefined;
    if (running === undefined || running.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    await exited;
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

  return {
    host: `unix://${socketPath}`,
    docker,
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
