/**
 * The built agent against Podman (4.3's Docker-compatible API service), as a user runs it:
 * `DOCKER_HOST` at the service's socket, and the service's containers.conf naming the agent's
 * volume driver in `[engine.volume_plugins]`. One private Podman service and one agent for the
 * whole file: a DSO volume made with `podman volume create --driver` (or `docker volume create
 * -d` through the service) is read by a hardened container at its first instruction, two volumes
 * at once each get their own files, a new version reaches a volume's containers with their
 * `dso.rotate` policy, and the folders go with the last container and the volume; the labels
 * path delivers into a tmpfs, rotates by files, restarts a container (`dso.rotate=restart`) and
 * replaces one for a `dso://` value; an anonymous `--mount …,volume-driver=` through the Docker
 * API gets an empty local volume (Podman ignores the driver, the agent is never asked);
 * `podman stop` and `podman rm` are seen (a host-path folder loses its secret); no value is in
 * the agent's log, `podman inspect`, or anywhere under the service's folders.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PrivatePodman,
  startPrivatePodman,
} from '../../packages/docker-runtime/src/test-support/private-podman.js';
import {
  type AgentProcess,
  agentEnv,
  createWorkspace,
  filesContaining,
  RUN_ID,
  readAuditTrail,
  runCommand,
  startAgent,
  TEST_IMAGE,
  TEST_LABEL,
  type Workspace,
  waitFor,
} from './harness.js';

/** Values of `dsofile://` secrets: never anywhere but the containers' files. */
const fileCanary = `canary-file-${randomUUID()}`;
const otherCanary = `canary-other-${randomUUID()}`;
const volumeCanary = `canary-volume-${randomUUID()}`;
const rotatedVolumeCanary = `canary-volume-rotated-${randomUUID()}`;
const rotatedCanary = `canary-rotated-${randomUUID()}`;
const restartCanary = `canary-restart-${randomUUID()}`;
const restartedCanary = `canary-restarted-${randomUUID()}`;
/** The `dso://` value: in its container's environment by design, never in the agent's log. */
const tokenCanary = `canary-token-${randomUUID()}`;

let podman: PrivatePodman;
let workspace: Workspace;
let agent: AgentProcess;
/** The workspace's driver name, roots of the agent's folders (its own, none other file's). */
let driver: string;
let volumesRoot: string;
let hostPathRoot: string;

/** `podman --url <service> …`, failing with podman's own words. */
async function pm(...args: string[]): Promise<string> {
  const result = await podman.podman(...args);
  if (result.code !== 0) throw new Error(`podman ${args[0]} failed: ${result.stderr}`);
  return result.stdout.trim();
}

/** `podman run -d` of the test image, labelled for this run, without a network. */
function run(args: string[], command: string[] = ['sleep', '600']): Promise<string> {
  return pm(
    'run',
    '-d',
    '--network',
    'none',
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    ...args,
    TEST_IMAGE,
    ...command,
  );
}

async function setSecret(path: string, value: string): Promise<void> {
  const stored = await workspace.cli(['secret', 'set', path], value);
  if (stored.code !== 0) throw new Error(`dso secret set failed: ${stored.stderr}`);
}

/** The agent's view of one container, from `dso status --json`, or undefined when it has none. */
async function statusOf(id: string): Promise<{ state?: string } | undefined> {
  const status = await workspace.cli(['status', '--json']);
  if (status.code !== 0) throw new Error(`dso status failed: ${status.stderr}`);
  const { containers } = JSON.parse(status.stdout) as {
    containers: Array<{ id: string; state?: string }>;
  };
  return containers.find((container) => container.id === id);
}

const readIn = (id: string, path: string) =>
  podman.podman('exec', id, 'cat', path).then((result) => result.stdout);

beforeAll(async () => {
  workspace = await createWorkspace();
  ({ volumeDriver: driver, volumesRoot, hostPathRoot } = workspace);
  // Podman finds the driver by the path its containers.conf names (a symlink to the socket the
  // harness hides in the workspace's folder: it follows it).
  podman = await startPrivatePodman({
    volumePlugins: { [driver]: `/run/docker/plugins/${driver}.sock` },
  });
  expect((await workspace.cli(['init'])).code).toBe(0);
  await setSecret('app/db', fileCanary);
  await setSecret('app/other', otherCanary);
  await setSecret('app/vol', volumeCanary);
  await setSecret('app/token', tokenCanary);
  await setSecret('app/rotating', fileCanary);
  await setSecret('app/restarting', restartCanary);
  await writeFile(
    join(workspace.home, 'dso.yaml'),
    [
      // Every check asks the provider, each second: a new version is seen at once.
      'cache: { ttlMs: 0 }',
      'reconcile: { intervalMs: 1s }',
      'rotation: { jitterMs: 0, healthTimeoutMs: 30s, stopTimeoutMs: 1s }',
    ].join('\n'),
  );
  await mkdir(hostPathRoot, { recursive: true, mode: 0o700 });
  const { env } = await agentEnv(workspace, { DOCKER_HOST: podman.host });
  agent = startAgent(env);
  await agent.waitForLog('agent ready');
}, 120_000);

afterAll(async () => {
  // The agent first (nothing works on what goes next; stopped, it removes its plugin socket's
  // link), then the service with its containers, then the workspace with the agent's folders.
  await agent?.stop();
  await podman?.destroy();
  await workspace?.[Symbol.asyncDispose]();
}, 120_000);

describe('the agent on Podman', () => {
  it('names Podman as its engine', () => {
    expect(agent.lines().find((line) => line.msg === 'agent starting')).toMatchObject({
      engineKind: 'podman',
    });
  });

  it('serves a DSO volume made with podman volume create --driver: a hardened container reads its file at its first instruction', async () => {
    const [first, second] = [`dso-a-${RUN_ID.slice(0, 8)}`, `dso-b-${RUN_ID.slice(0, 8)}`];
    await pm('volume', 'create', '--driver', driver, '-o', 'db=dsofile://app/vol', first);
    await pm('volume', 'create', '--driver', driver, '-o', 'db=dsofile://app/other', second);
    // The containers.conf line the README gives: Podman waits for the plugin that long (not 5 s).
    expect(await pm('volume', 'inspect', '--format', '{{.Timeout}}', first)).toBe('30');
    // The container's command is the read itself: no wait, no shell, no exec.
    const read = await podman.podman(
      'run',
      '--rm',
      '--network',
      'none',
      '--label',
      `${TEST_LABEL}=${RUN_ID}`,
      '-v',
      `${first}:/run/secrets`,
      '--read-only',
      '--cap-drop',
      'ALL',
      '--user',
      '1000:1000',
      TEST_IMAGE,
      'cat',
      '/run/secrets/db',
    );
    expect(read).toMatchObject({ code: 0, stdout: volumeCanary });

    // Podman gives every plugin mount the same id: two volumes mounted at once stay apart, and
    // two containers of one volume share its folder.
    const signalled = await run(
      [
        '-v',
        `${first}:/run/secrets`,
        '--user',
        '1000:1000',
        '--label',
        'dso.rotate=signal',
        '--label',
        'dso.rotate.signal=SIGUSR1',
      ],
      ['sh', '-c', 'trap "echo got-usr1" USR1; while true; do sleep 0.2; done'],
    );
    const sharing = await run(['-v', `${first}:/run/secrets`, '--user', '1000:1000']);
    const other = await run(['-v', `${second}:/run/secrets`, '--user', '1000:1000']);
    expect(await readIn(signalled, '/run/secrets/db')).toBe(volumeCanary);
    expect(await readIn(sharing, '/run/secrets/db')).toBe(volumeCanary);
    expect(await readIn(other, '/run/secrets/db')).toBe(otherCanary);

    // A new version: the folder is rewritten, then the container's policy runs (a signal).
    await setSecret('app/vol', rotatedVolumeCanary);
    await waitFor('the rotated volume file', async () =>
      (await readIn(sharing, '/run/secrets/db')) === rotatedVolumeCanary ? true : undefined,
    );
    await waitFor('the signal', async () =>
      (await pm('logs', signalled)).includes('got-usr1') ? true : undefined,
    );

    // One container of the shared volume goes: the other keeps its files.
    await pm('rm', '--force', '--time', '0', signalled);
    expect(await readIn(sharing, '/run/secrets/db')).toBe(rotatedVolumeCanary);
    // The last ones go: the agent's folders go with their files.
    await pm('rm', '--force', '--time', '0', sharing, other);
    await waitFor('the mounts’ folders to be removed', async () =>
      (await filesContaining(rotatedVolumeCanary, [volumesRoot])).length === 0 &&
      (await filesContaining(otherCanary, [volumesRoot])).length === 0
        ? true
        : undefined,
    );

    // Through the Docker API of the service, as a docker CLI user would.
    const third = `dso-c-${RUN_ID.slice(0, 8)}`;
    const dockerCli = (...args: string[]) => runCommand('docker', ['-H', podman.host, ...args]);
    expect(
      await dockerCli('volume', 'create', '-d', driver, '-o', 'db=dsofile://app/other', third),
    ).toMatchObject({ code: 0 });
    expect(
      await dockerCli(
        'run',
        '--rm',
        '--network',
        'none',
        '--label',
        `${TEST_LABEL}=${RUN_ID}`,
        '-v',
        `${third}:/run/secrets`,
        TEST_IMAGE,
        'cat',
        '/run/secrets/db',
      ),
    ).toMatchObject({ code: 0, stdout: otherCanary });

    // A missing secret fails the start with the reference and its code: closed, never open.
    const missing = `dso-m-${RUN_ID.slice(0, 8)}`;
    await pm('volume', 'create', '--driver', driver, '-o', 'db=dsofile://app/missing', missing);
    const refused = await podman.podman(
      'run',
      '--rm',
      '--network',
      'none',
      '--label',
      `${TEST_LABEL}=${RUN_ID}`,
      '-v',
      `${missing}:/run/secrets`,
      TEST_IMAGE,
      'echo',
      'started',
    );
    expect(refused.code).not.toBe(0);
    expect(refused.stdout).not.toContain('started');
    expect(refused.stderr).toContain('dsofile://app/missing');
    expect(refused.stderr).toContain('DSO_PROVIDER_NOT_FOUND');

    // An option that is not a reference is refused at create, named without its value.
    const refusedCreate = await podman.podman(
      'volume',
      'create',
      '--driver',
      driver,
      '-o',
      `db=${fileCanary}`,
      `dso-x-${RUN_ID.slice(0, 8)}`,
    );
    expect(refusedCreate.code).not.toBe(0);
    expect(refusedCreate.stderr).toContain('volume option db');
    expect(refusedCreate.stderr).not.toContain(fileCanary);
    expect(await pm('volume', 'ls', '--quiet')).not.toContain(`dso-x-${RUN_ID.slice(0, 8)}`);

    // podman volume rm reaches the driver: the agent forgets the volumes.
    await pm('volume', 'rm', first, second, third, missing);
    const state = JSON.parse(await readFile(join(workspace.home, 'volumes.json'), 'utf8')) as {
      volumes: Record<string, unknown>;
      mounts: Record<string, unknown>;
    };
    expect(state.volumes).toEqual({});
    expect(state.mounts).toEqual({});
  });

  it('ignores the driver of an anonymous --mount volume through the Docker API: an empty local volume, the agent not asked', async () => {
    const name = `dso-anon-${RUN_ID.slice(0, 8)}`;
    const started = await runCommand('docker', [
      '-H',
      podman.host,
      'run',
      '--name',
      name,
      '--network',
      'none',
      '--label',
      `${TEST_LABEL}=${RUN_ID}`,
      '--mount',
      `type=volume,volume-driver=${driver},dst=/run/secrets,volume-opt=db=dsofile://app/other`,
      TEST_IMAGE,
      'ls',
      '-A',
      '/run/secrets',
    ]);
    try {
      // It starts, and its folder is empty: no file, no error.
      expect(started).toMatchObject({ code: 0, stdout: '' });
      const mounts = JSON.parse(
        await pm('inspect', '--format', '{{json .Mounts}}', name),
      ) as Array<{
        Type: string;
        Name: string;
        Driver: string;
        Destination: string;
      }>;
      expect(mounts).toEqual([
        expect.objectContaining({ Type: 'volume', Driver: 'local', Destination: '/run/secrets' }),
      ]);
      // The agent never heard of it: no line names the volume, its state holds no volume.
      const volume = mounts[0]?.Name ?? '';
      expect(volume).not.toBe('');
      expect(agent.output).not.toContain(volume);
      const state = JSON.parse(await readFile(join(workspace.home, 'volumes.json'), 'utf8')) as {
        volumes: Record<string, unknown>;
      };
      expect(state.volumes).toEqual({});
    } finally {
      await pm('rm', '--volumes', '--force', '--time', '0', name);
    }
  });

  it('delivers by labels into a tmpfs and rotates the files when the secret changes', async () => {
    const id = await run([
      '--label',
      'dso.enable=true',
      '--label',
      'dso.file.db=dsofile://app/rotating',
      '--tmpfs',
      '/run/secrets',
      '--read-only',
      '--cap-drop',
      'ALL',
      '--user',
      '1000:1000',
    ]);
    await waitFor('the first version', async () =>
      (await readIn(id, '/run/secrets/db')) === fileCanary ? true : undefined,
    );
    await setSecret('app/rotating', rotatedCanary);
    await waitFor('the rotated version', async () =>
      (await readIn(id, '/run/secrets/db')) === rotatedCanary ? true : undefined,
    );
    expect(await pm('exec', id, 'stat', '-L', '-c', '%a %u', '/run/secrets/db')).toBe('400 1000');
  });

  it('restarts a labels-path container (dso.rotate=restart): the new value in its tmpfs, the same container, nothing left over', async () => {
    const name = `dso-restart-${RUN_ID.slice(0, 8)}`;
    const id = await run([
      '--name',
      name,
      '--label',
      'dso.enable=true',
      '--label',
      'dso.file.db=dsofile://app/restarting',
      '--label',
      'dso.rotate=restart',
      '--tmpfs',
      '/run/secrets',
    ]);
    await waitFor('the first version', async () =>
      (await readIn(id, '/run/secrets/db')) === restartCanary ? true : undefined,
    );
    const startedAt = () => pm('inspect', '--format', '{{.State.StartedAt}}', id);
    const firstStart = await startedAt();
    const containersBefore = (await pm('ps', '-aq', '--no-trunc')).split('\n').sort();

    await setSecret('app/restarting', restartedCanary);
    await waitFor('the restart', async () =>
      (await startedAt()) !== firstStart ? true : undefined,
    );
    // The restart empties the tmpfs: the agent writes the new version into it as it starts.
    await waitFor('the new version after the restart', async () =>
      (await readIn(id, '/run/secrets/db')) === restartedCanary ? true : undefined,
    );
    expect(await pm('inspect', '--format', '{{.State.Running}} {{.Name}}', id)).toBe(
      `true ${name}`,
    );
    // The same containers as before (no clone, none left behind), the agent's view running.
    expect((await pm('ps', '-aq', '--no-trunc')).split('\n').sort()).toEqual(containersBefore);
    await waitFor('the agent to see it running', async () =>
      (await statusOf(id))?.state === 'running' ? true : undefined,
    );
    const restarts = (await readAuditTrail(workspace.home)).filter(
      (line) =>
        line.action === 'rotate' &&
        line.policy === 'restart' &&
        String(line.containerId ?? '').startsWith(id.slice(0, 12)),
    );
    expect(restarts.map((line) => line.outcome)).toEqual(['ok']);
    await pm('rm', '--force', '--time', '0', id);
  });

  it('replaces a container whose dso:// value changed: the new one has the name and the value', async () => {
    const name = `dso-test-${randomUUID()}`;
    // As `dso up` creates one: the value from the CLI's environment (never argv), its reference
    // in a label.
    const created = await runCommand(
      'podman',
      [
        '--url',
        podman.host,
        'run',
        '-d',
        '--name',
        name,
        '--network',
        'none',
        '--label',
        `${TEST_LABEL}=${RUN_ID}`,
        '--label',
        'dso.enable=true',
        '--label',
        'dso.env.TOKEN=dso://app/token',
        '--label',
        'dso.rotate=replace',
        '-e',
        'TOKEN',
        TEST_IMAGE,
        'sleep',
        '600',
      ],
      { env: { ...podman.env, TOKEN: tokenCanary } },
    );
    expect(created).toMatchObject({ code: 0 });
    const firstId = created.stdout.trim();
    await waitFor('the agent to see the container', async () =>
      (await statusOf(firstId)) === undefined ? undefined : true,
    );
    const next = `${tokenCanary}-2`;
    await setSecret('app/token', next);
    await agent.waitForLog('container replaced', 60_000);
    const [nextId, env] = (
      await pm('inspect', '--format', '{{.Id}} {{json .Config.Env}}', name)
    ).split(' ', 2) as [string, string];
    expect(nextId).not.toBe(firstId);
    expect(JSON.parse(env)).toContain(`TOKEN=${next}`);
    expect(await pm('inspect', '--format', '{{.State.Running}}', name)).toBe('true');
    expect((await podman.podman('container', 'exists', firstId)).code).toBe(1);
  });

  it('sees podman stop (exited, the host-path folder emptied) and podman rm (gone)', async () => {
    const folder = join(hostPathRoot, `web-${RUN_ID.slice(0, 8)}`);
    await mkdir(folder);
    const id = await run([
      '--label',
      'dso.enable=true',
      '--label',
      'dso.file.db=dsofile://app/db',
      '--mount',
      `type=bind,source=${folder},target=/run/secrets,readonly`,
    ]);
    await waitFor('the file through the bind mount', async () =>
      (await readIn(id, '/run/secrets/db')) === fileCanary ? true : undefined,
    );
    await pm('stop', '--time', '0', id);
    await waitFor('the agent to see the container exited', async () =>
      (await statusOf(id))?.state === 'exited' ? true : undefined,
    );
    await waitFor('the folder to be emptied', async () =>
      existsSync(join(folder, '..data')) ? undefined : true,
    );
    expect(await filesContaining(fileCanary, [folder])).toEqual([]);
    await pm('rm', id);
    await waitFor('the agent to forget the container', async () =>
      (await statusOf(id)) === undefined ? true : undefined,
    );
  });

  it('leaves no value in its log, podman inspect, or the service’s folders', async () => {
    const ids = (await pm('ps', '-aq', '--no-trunc')).split('\n').filter(Boolean);
    expect(ids.length).toBeGreaterThan(0);
    const inspected = await pm('inspect', ...ids);
    const canaries = [
      fileCanary,
      otherCanary,
      rotatedCanary,
      volumeCanary,
      rotatedVolumeCanary,
      restartCanary,
      restartedCanary,
    ];
    for (const canary of canaries) {
      expect(inspected).not.toContain(canary);
      expect(await filesContaining(canary, [podman.dir])).toEqual([]);
    }
    for (const canary of [...canaries, tokenCanary]) expect(agent.output).not.toContain(canary);
  });
});
