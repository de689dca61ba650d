/**
 * DSO volumes on an engine that restarts, with the built agent: a `--restart always` consumer on
 * a private engine gets its file at each start, the first and the one after the engine stopped
 * and started again (the engine asks the still-running agent's `Mount` again, and the agent's
 * events stream reconnects by itself); its new mount is the one the agent rotates.
 *
 * Swarm is not tested here. On Docker 20.10 a fresh swarm always gets the `ingress` overlay
 * network (swarmkit creates it at `swarm init`, with no flag to skip it), and every node then
 * builds the `ingress-sbox` sandbox, whose overlay endpoint has no gateway, so the engine
 * creates the `docker_gwbridge` bridge (172.x/16) on the host to give it one. Neither
 * `swarm init` nor dockerd has an option that avoids that bridge, and these tests never make
 * the engine create a bridge or an address off loopback.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PrivateEngine,
  startPrivateEngine,
} from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  createWorkspace,
  dockerOn,
  dockerRaw,
  RUN_ID,
  removeContainers,
  runCommand,
  runContainerIds,
  startAgent,
  TEST_IMAGE,
  TEST_LABEL,
  VOLUME_DRIVER,
  waitFor,
} from './harness.js';

const VOLUMES_DIR = '/run/dso-e2e-cluster';
const VOLUMES_ROOT = `${VOLUMES_DIR}/volumes`;
const SECRET_FILE = '/run/secrets/db';
const DSO_MOUNT = `type=volume,volume-driver=${VOLUME_DRIVER},dst=/run/secrets,volume-opt=db=dsofile://app/db`;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

let workspace: Awaited<ReturnType<typeof createWorkspace>> | undefined;
let engine: PrivateEngine | undefined;
let agent: ReturnType<typeof startAgent> | undefined;
const canary = `canary-${randomUUID()}`;

async function setSecret(path: string, value: string): Promise<void> {
  const stored = await workspace?.cli(['secret', 'set', path], value);
  if (stored?.code !== 0) throw new Error(`dso secret set failed: ${stored?.stderr}`);
}

/** The engine's `docker` CLI; the private engine must be up. */
function onEngine(...args: string[]): Promise<string> {
  if (engine === undefined) throw new Error('the private engine is not started');
  return dockerOn(engine.host, ...args);
}

/** A file's exact content in a running container, read as an application would. */
function readInContainer(id: string, path = SECRET_FILE): Promise<string> {
  if (engine === undefined) throw new Error('the private engine is not started');
  return dockerRaw('-H', engine.host, 'exec', id, 'cat', path);
}

/** The agent's log lines with this message. */
const logged = (message: string) => agent?.lines().filter((line) => line.msg === message) ?? [];

/** Keys of the mounts whose files the agent holds under its volumes root. */
const heldMounts = async () => (await readdir(join(VOLUMES_ROOT, 'data'))).sort();

beforeAll(async () => {
  workspace = await createWorkspace();
  expect((await workspace.cli(['init'])).code).toBe(0);
  await setSecret('app/db', canary);
  await writeFile(
    join(workspace.home, 'dso.yaml'),
    `volumes: { root: ${VOLUMES_ROOT} }\nrotation: { jitterMs: 0, pollIntervalMs: 600000 }\n`,
  );
  engine = await startPrivateEngine();
  const { env } = await agentEnv(workspace, {
    DOCKER_HOST: engine.host,
    DSO_VOLUME_DRIVER_NAME: VOLUME_DRIVER,
  });
  agent = startAgent(env);
  await agent.waitForLog('agent ready');
  // Another agent on the host serving the same driver name would leave this one without it
  // (DSO_VOLUME_SOCKET_IN_USE): nothing below would test this agent.
  expect(logged('volume driver serving')).toHaveLength(1);
}, 120_000);

afterAll(async () => {
  // Volumes go while the agent still answers for them: the engine asks their driver to remove
  // each, and keeps retrying a driver whose socket is gone.
  if (engine !== undefined) {
    const host = engine.host;
    await removeContainers(await runContainerIds({ host }).catch(() => []), { host });
    // When the engine is gone already, so are its volumes: its data root is removed below.
    const listed = dockerOn(host, 'volume', 'ls', '-q', '--filter', `driver=${VOLUME_DRIVER}`);
    const volumes = await listed.catch(() => '');
    for (const volume of volumes.split('\n').filter(Boolean)) {
      await dockerOn(host, 'volume', 'rm', '-f', volume).catch(() => {
        // Removed with its container meanwhile: nothing left to remove.
      });
    }
  }
  await agent?.stop();
  await runCommand('umount', ['-R', VOLUMES_ROOT]);
  await rm(VOLUMES_DIR, { recursive: true, force: true });
  await engine?.destroy();
  await workspace?.[Symbol.asyncDispose]();
}, 120_000);

describe('DSO volumes on a private engine', () => {
  it('gives a --restart always consumer its file again when the engine restarts, and rotates its new mount', async () => {
    if (engine === undefined || agent === undefined) throw new Error('beforeAll did not finish');
    // Each start prints the hash of what the file holds at its first instruction, never the
    // value. `sleep` as pid 1 ignores SIGTERM: a short stop timeout keeps the engine's stop quick.
    const id = await onEngine(
      'run',
      '-d',
      '--name',
      `dso-test-${randomUUID()}`,
      '--network',
      'none',
      '--label',
      `${TEST_LABEL}=${RUN_ID}`,
      '--label',
      'dso.rotate=files',
      '--restart',
      'always',
      '--stop-timeout',
      '1',
      '--mount',
      DSO_MOUNT,
      TEST_IMAGE,
      'sh',
      '-c',
      `sha256sum ${SECRET_FILE}; exec sleep 600`,
    );
    const hashLine = `${sha256(canary)}  ${SECRET_FILE}`;
    expect(await readInContainer(id)).toBe(canary);
    await waitFor('the first start’s hash in the logs', async () =>
      (await onEngine('logs', id)) === hashLine ? true : undefined,
    );
    const volume = await onEngine('inspect', '--format', '{{(index .Mounts 0).Name}}', id);
    expect(await heldMounts()).toHaveLength(1);
    const [firstMount] = await heldMounts();
    expect(logged('volume mounted')).toHaveLength(1);

    const stoppedAt = Date.now();
    await engine.stop();
    await engine.start();

    // The engine starts it again by itself, after the agent answered its Mount.
    await waitFor(
      'the consumer running again after the engine restart',
      async () => {
        const [running, startedAt] = (
          await onEngine('inspect', '--format', '{{.State.Running}} {{.State.StartedAt}}', id)
        ).split(' ');
        return running === 'true' && Date.parse(startedAt ?? '') > stoppedAt ? true : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(await readInContainer(id)).toBe(canary);
    // Two starts, each with the file before its first instruction.
    expect((await onEngine('logs', id)).split('\n')).toEqual([hashLine, hashLine]);
    // The same volume, mounted again: the engine unmounted the old mount when it stopped the
    // container, so the agent holds the new mount's files and no longer the old one's.
    expect(await onEngine('inspect', '--format', '{{(index .Mounts 0).Name}}', id)).toBe(volume);
    expect(logged('volume mounted')).toHaveLength(2);
    const held = await heldMounts();
    expect(held).toHaveLength(1);
    expect(held).not.toContain(firstMount);
    // The agent followed the engine through its restart without being restarted itself.
    expect(logged('events stream lost, reconnecting').length).toBeGreaterThan(0);

    // The new mount is the one the agent keeps up to date.
    await setSecret('app/db', 'rotated');
    expect((await workspace?.cli(['rotate']))?.code).toBe(0);
    await waitFor('the rotated value in the restarted consumer', async () =>
      (await readInContainer(id)) === 'rotated' ? true : undefined,
    );
    expect(agent.output).not.toContain(canary);
  });
});
