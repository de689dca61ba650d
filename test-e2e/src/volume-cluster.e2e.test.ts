/**
 * DSO volumes on a private engine, with the built agent:
 *
 * - an engine that restarts: a `--restart always` consumer gets its file at each start, the
 *   first and the one after the engine stopped and started again (the engine asks the
 *   still-running agent's `Mount` again, and the agent's events stream reconnects by itself);
 *   its new mount is the one the agent rotates.
 * - Swarm: a service's task mounts a DSO volume (the engine's executor creates it with the
 *   service's driver and options, and asks the agent's `Mount` for the task), reads its secret,
 *   and when the service is removed its container and volume go with the agent's files.
 *
 * On Docker 20.10 a fresh swarm always gets the `ingress` overlay network, and every node then
 * builds the `ingress-sbox` sandbox, whose overlay endpoint has no gateway, so the engine
 * creates the `docker_gwbridge` bridge (172.x/16) to give it one: neither `swarm init` nor
 * dockerd can avoid it. These tests never make an engine create a bridge or an address in the
 * host's network, so the Swarm engine runs in a network namespace of its own (`netns`), where
 * its 127.0.0.1 is the namespace's own loopback and its networks go with the namespace.
 *
 * A Swarm node lists in its description (which the manager places tasks by) only the plugins it
 * finds by scanning /run/docker/plugins, so the agent's socket cannot be hidden from it as
 * elsewhere (see the harness's `hideVolumeSocket`). But that folder is the whole host's: every
 * engine that scanned a socket there waits ~15 s on it at every later volume lookup once it is
 * gone. So the Swarm engine also has a mount namespace of its own, with a folder of the
 * workspace mounted over /run/docker/plugins (`pluginsDir`), and the agent runs in that
 * namespace: its socket is there, seen by that engine only, and so are its volumes' mounts.
 *
 * Only one agent serves the `dso-e2e` driver at a time: each suite starts its own engine and
 * agent, and stops them (the agent after its volumes are removed) before the next one starts.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PrivateEngine,
  type PrivateEngineOptions,
  startPrivateEngine,
} from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  createWorkspace,
  dockerOn,
  dockerRaw,
  RUN_ID,
  removeContainers,
  runContainerIds,
  startAgent,
  TEST_IMAGE,
  TEST_LABEL,
  VOLUME_DRIVER,
  waitFor,
} from './harness.js';

const SECRET_FILE = '/run/secrets/db';
const DSO_MOUNT = `type=volume,volume-driver=${VOLUME_DRIVER},dst=/run/secrets,volume-opt=db=dsofile://app/db`;

const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

// The current suite's vault, engine and agent, and the folder of the agent's volumes root.
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

/** Keys of the mounts whose files the agent holds under its volumes root (as it sees it). */
const heldMounts = async () =>
  (
    await readdir(agent?.hostPath(join(workspace?.volumesRoot ?? '/nonexistent', 'data')) ?? '')
  ).sort();

/**
 * A vault holding `app/db` = the canary, a private engine, and the built agent serving that
 * engine DSO volumes under its workspace's volume root. With `ownPluginsFolder` the engine
 * finds plugins in a folder of the workspace's only, and the agent runs in the engine's mount
 * namespace, where it serves its socket in that folder (see `startAgent`).
 */
async function setUp(
  engineOptions: PrivateEngineOptions = {},
  beforeAgent: () => Promise<void> = async () => {},
  ownPluginsFolder = false,
): Promise<void> {
  workspace = await createWorkspace();
  expect((await workspace.cli(['init'])).code).toBe(0);
  await setSecret('app/db', canary);
  await writeFile(
    join(workspace.home, 'dso.yaml'),
    'rotation: { jitterMs: 0, pollIntervalMs: 600000 }\n',
  );
  const pluginsDir = join(dirname(workspace.volumesRoot), 'plugins');
  if (ownPluginsFolder) await mkdir(pluginsDir, { recursive: true, mode: 0o700 });
  engine = await startPrivateEngine({
    ...engineOptions,
    ...(ownPluginsFolder ? { pluginsDir } : {}),
  });
  await beforeAgent();
  const { env } = await agentEnv(workspace, {
    DOCKER_HOST: engine.host,
    DSO_VOLUME_DRIVER_NAME: VOLUME_DRIVER,
  });
  agent = startAgent(env, ownPluginsFolder ? { mountNamespace: engine.mountNamespace } : {});
  await agent.waitForLog('agent ready');
  // Another agent on the host serving the same driver name would leave this one without it
  // (DSO_VOLUME_SOCKET_IN_USE): nothing below would test this agent.
  expect(logged('volume driver serving')).toHaveLength(1);
}

/** Removes what {@link setUp} made, in reverse order, even after a failed test. */
async function tearDown(): Promise<void> {
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
  await engine?.destroy();
  await workspace?.[Symbol.asyncDispose]();
  [workspace, engine, agent] = [undefined, undefined, undefined];
}

describe('DSO volumes on a private engine', () => {
  beforeAll(() => setUp(), 120_000);
  afterAll(tearDown, 120_000);

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

describe('DSO volumes in a Swarm service on a private engine', () => {
  // The host's network interfaces before the engine starts.
  let hostInterfaces: string[] = [];

  beforeAll(async () => {
    hostInterfaces = (await readdir('/sys/class/net')).sort();
    // Swarm's networks stay in the engine's own namespace; its tasks use the image loaded into
    // the engine instead of asking a registry first.
    // The node joins its swarm first, as on a host whose agent (re)starts on a Swarm node.
    await setUp(
      { netns: true, env: { DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: '1' } },
      async () => {
        await onEngine(
          'swarm',
          'init',
          '--advertise-addr',
          '127.0.0.1',
          '--listen-addr',
          '127.0.0.1:2377',
          '--data-path-addr',
          '127.0.0.1',
        );
      },
      // A node lists in its description only the plugins it finds in /run/docker/plugins:
      // the engine's own folder, where the agent serves its socket, which no other engine sees.
      true,
    );
    // The host's folder holds no path to it (another run's agent may serve the same name there).
    const socket = join(dirname(workspace?.volumesRoot ?? ''), 'plugins', `${VOLUME_DRIVER}.sock`);
    const { ino } = await stat(socket);
    for (const name of await readdir('/run/docker/plugins')) {
      const seen = await stat(join('/run/docker/plugins', name)).catch(() => undefined);
      expect(seen?.ino).not.toBe(ino);
    }
    // The scheduler places a task with a volume driver only on a node whose description lists
    // that driver ("no suitable node (missing plugin on 1 node)" otherwise), and an engine
    // lists a legacy plugin only once it has used it: on a Swarm node the agent has its engine
    // load the driver as soon as it serves it, and the node describes itself again.
    expect(logged('volume driver announced to the swarm node')).toHaveLength(1);
    await waitFor('the swarm node to list the DSO volume driver', async () =>
      (
        await onEngine(
          'node',
          'inspect',
          'self',
          '--format',
          '{{json .Description.Engine.Plugins}}',
        )
      ).includes(`{"Type":"Volume","Name":"${VOLUME_DRIVER}"}`)
        ? true
        : undefined,
    );
  }, 120_000);

  afterAll(async () => {
    // After a failed test: services go while the agent still answers for their volumes, then
    // the node leaves its swarm; tearDown removes whatever container and volume are left.
    if (engine !== undefined) {
      const services = await onEngine('service', 'ls', '-q').catch(() => '');
      for (const service of services.split('\n').filter(Boolean)) {
        await onEngine('service', 'rm', service).catch(() => {
          // Removed meanwhile, or the engine is gone: nothing left to remove.
        });
      }
      await onEngine('swarm', 'leave', '--force').catch(() => {
        // Not in a swarm (setUp failed before swarm init): nothing to leave.
      });
    }
    await tearDown();
  }, 120_000);

  it('runs a Swarm service whose task mounts a DSO volume', async () => {
    if (engine === undefined || agent === undefined) throw new Error('beforeAll did not finish');
    const host = engine.host;
    const service = `dso-test-${randomUUID().slice(0, 8)}`;
    // The task prints the hash of what the file holds at its first instruction, never the
    // value. `sleep` as pid 1 ignores SIGTERM: a short grace period keeps the removal quick.
    await onEngine(
      'service',
      'create',
      '--detach',
      '--no-resolve-image',
      '--name',
      service,
      '--label',
      `${TEST_LABEL}=${RUN_ID}`,
      '--container-label',
      `${TEST_LABEL}=${RUN_ID}`,
      '--restart-condition',
      'none',
      '--stop-grace-period',
      '1s',
      '--mount',
      DSO_MOUNT,
      TEST_IMAGE,
      'sh',
      '-c',
      `sha256sum ${SECRET_FILE}; exec sleep 600`,
    );

    // The task ends up running, or failed (a Mount refused, say) with the engine's reason.
    const task = await waitFor(
      'the service’s task to run or fail',
      async () => {
        const [state = '', error = ''] = (
          await onEngine(
            'service',
            'ps',
            '--no-trunc',
            '--format',
            '{{.CurrentState}}|{{.Error}}',
            service,
          )
        ).split('|');
        if (/^(Running|Failed|Rejected)/.test(state)) return { state, error };
        // Kept as the timeout's cause: where the task stopped, and the engine's reason.
        throw new Error(`the task is ${state || 'not created'}${error ? `: ${error}` : ''}`);
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(task.error).toBe('');
    expect(task.state).toMatch(/^Running/);
    const [id, ...others] = await runContainerIds({ host, running: true });
    if (id === undefined) throw new Error('the running task has no container on the engine');
    expect(others).toEqual([]);
    expect(
      await onEngine(
        'inspect',
        '--format',
        '{{index .Config.Labels "com.docker.swarm.service.name"}}',
        id,
      ),
    ).toBe(service);

    // The task's volume is the agent's, made by the engine from the service's mount, and the
    // agent mounted it for this task: the file was there before the task's first instruction.
    const [volume = '', driver] = (
      await onEngine(
        'inspect',
        '--format',
        '{{(index .Mounts 0).Name}} {{(index .Mounts 0).Driver}}',
        id,
      )
    ).split(' ');
    expect(driver).toBe(VOLUME_DRIVER);
    // Swarm's executor first creates a volume of its own for a mount without a source, then the
    // task's container creates its anonymous one, the one mounted: the first is a spare that
    // nothing mounts nor removes (moby/moby#31492, still so on 20.10).
    const created = logged('volume created').map((line) => String(line.volume));
    expect(created).toContain(volume);
    const spares = created.filter((name) => name !== volume);
    expect(logged('volume mounted').map((line) => line.volume)).toEqual([volume]);
    expect(await heldMounts()).toHaveLength(1);
    await waitFor('the task’s hash in its logs', async () =>
      (await onEngine('logs', id)) === `${sha256(canary)}  ${SECRET_FILE}` ? true : undefined,
    );
    expect(await readInContainer(id)).toBe(canary);

    // Swarm made its networks, in the engine's namespace: the host's interfaces are unchanged.
    await waitFor('the engine’s docker_gwbridge network', async () =>
      (await onEngine('network', 'ls', '--format', '{{.Name}}'))
        .split('\n')
        .includes('docker_gwbridge')
        ? true
        : undefined,
    );
    expect((await readdir('/sys/class/net')).sort()).toEqual(hostInterfaces);

    // Removing the service removes its task's container and, with it, its volume: the engine
    // asks the agent to unmount and remove it, and the agent's files go. Only the spares stay.
    const dsoVolumes = async () =>
      (await onEngine('volume', 'ls', '-q', '--filter', `driver=${VOLUME_DRIVER}`))
        .split('\n')
        .filter(Boolean)
        .sort();
    await onEngine('service', 'rm', service);
    await waitFor(
      'the task’s container and volume to go',
      async () => {
        const containers = await runContainerIds({ host });
        const left = await dsoVolumes();
        return containers.length === 0 && !left.includes(volume) ? left : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 200 },
    );
    expect(await dsoVolumes()).toEqual([...spares].sort());
    await waitFor('the agent to remove the volume', async () =>
      logged('volume removed').length > 0 ? true : undefined,
    );
    expect(logged('volume unmounted: files removed').map((line) => line.volume)).toEqual([volume]);
    expect(logged('volume removed').map((line) => line.volume)).toEqual([volume]);
    expect(await heldMounts()).toEqual([]);

    // The spares go as any unused volume does, while the agent answers for them.
    for (const spare of spares) await onEngine('volume', 'rm', spare);
    expect(await dsoVolumes()).toEqual([]);
    expect(logged('volume removed').map((line) => line.volume)).toEqual([volume, ...spares]);
    expect(agent.output).not.toContain(canary);
  });
});
