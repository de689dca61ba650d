/**
 * Helpers for the engine tests: the shared test image, labelled throwaway containers that are
 * always removed, and a one-shot `docker exec` to read state back. Test-only; not published.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Docker from 'dockerode';
import testImage from '../../../../tools/test-image.json' with { type: 'json' };

const run = promisify(execFile);
const WORKSPACE = join(import.meta.dirname, '../../../..');

/** The test image tag and the label every test object carries, from tools/test-image.json. */
export const TEST_IMAGE = testImage.image;
export const TEST_LABEL = testImage.label;

/** The engine, straight through dockerode, for arranging and checking what the tests need. */
export const docker = new Docker({ socketPath: '/var/run/docker.sock' });

/** Builds the test image with tools/test-image.sh when it is missing. */
export async function ensureTestImage(): Promise<void> {
  try {
    await docker.getImage(TEST_IMAGE).inspect();
  } catch {
    // Missing (or unreadable): build it; the script fails loudly if it cannot.
    await run('bash', [join(WORKSPACE, 'tools/test-image.sh')], { cwd: WORKSPACE });
  }
}

export interface TestContainerOptions {
  user?: string;
  tmpfs?: Record<string, string>;
  readonlyRootfs?: boolean;
  mounts?: Docker.MountConfig;
  capDrop?: string[];
  labels?: Record<string, string>;
  start?: boolean;
}

/**
 * Creates labelled containers for one test file (label `dso.test=<runId>`, name
 * `dso-test-<uuid>`, no network) and removes all of them, however the tests ended.
 */
export function createContainerPool() {
  const runId = randomUUID();
  const ids = new Set<string>();

  return {
    runId,
    /** A container running `sleep 3600`, started unless `start: false`. */
    async create(options: TestContainerOptions = {}): Promise<{ id: string; name: string }> {
      const name = `dso-test-${randomUUID()}`;
      const container = await docker.createContainer({
        name,
        Image: TEST_IMAGE,
        Cmd: ['sleep', '3600'],
        User: options.user ?? '',
        Labels: { [TEST_LABEL]: runId, ...options.labels },
        HostConfig: {
          NetworkMode: 'none',
          Tmpfs: options.tmpfs ?? {},
          ReadonlyRootfs: options.readonlyRootfs ?? false,
          Mounts: options.mounts ?? [],
          CapDrop: options.capDrop ?? [],
        },
      });
      ids.add(container.id);
      if (options.start !== false) await container.start();
      return { id: container.id, name };
    },
    /** Force-removes every container of this run, the ones created elsewhere included. */
    async removeAll(): Promise<void> {
      const listed = await docker.listContainers({
        all: true,
        filters: { label: [`${TEST_LABEL}=${runId}`] },
      });
      for (const info of listed) ids.add(info.Id);
      await Promise.all(
        [...ids].map(async (id) => {
          try {
            await docker.getContainer(id).remove({ force: true, v: true });
          } catch (error) {
            // Already gone is the goal; anything else must fail the run.
            if ((error as { statusCode?: number }).statusCode !== 404) throw error;
          }
        }),
      );
      ids.clear();
    },
  };
}

/** Runs a command in a container through the docker CLI; output as raw bytes. */
export async function execIn(
  id: string,
  command: string[],
  options: { user?: string } = {},
): Promise<{ stdout: Buffer; stderr: string }> {
  const { stdout, stderr } = await run(
    'docker',
    ['exec', ...(options.user === undefined ? [] : ['-u', options.user]), id, ...command],
    { encoding: 'buffer', maxBuffer: 16 * 1024 * 1024 },
  );
  return { stdout, stderr: stderr.toString() };
}

/** Runs a shell snippet in a container and returns its stdout as text. */
export async function shIn(id: string, script: string, user = '0'): Promise<string> {
  return (await execIn(id, ['sh', '-c', script], { user })).stdout.toString();
}

/** Polls `check` until it returns a value other than undefined, or fails at the deadline. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  timeoutMs = 10_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
