/**
 * The volume driver with the real engine and the built agent: the engine calls the agent's
 * `Mount` before the container's first instruction, so an image with one static binary and no
 * shell, run as a non-root user with a read-only root and no capability, reads its secret at
 * once; a missing secret fails `docker run` with the reference; a new version reaches running
 * consumers by their policy (signal, restart); an agent killed and started again keeps old
 * mounts' files and rotation and serves new mounts; compose's `driver_opts` work; the value is
 * found nowhere on the host's disk.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  agentEnv,
  createWorkspace,
  docker,
  filesContaining,
  privateEngineForFile,
  RUN_ID,
  removeRunContainers,
  runCommand,
  startAgent,
  TEST_IMAGE,
  TEST_LABEL,
  VOLUME_DRIVER,
  waitFor,
} from './harness.js';

// The whole file on an engine of its own (DOCKER_HOST), so it runs beside other files.
privateEngineForFile();

/** The shell-less image: `/reader` (reader.c, static) and nothing else. */
const READER_IMAGE = 'dso-test/static-reader:1';
const RUNS = 100;
const AT_ONCE = 10;

/** What reader.c prints for a content: its length and FNV-1a 64. */
function fingerprint(text: string): string {
  let hash = 0xcbf29ce484222325n;
  const bytes = Buffer.from(text);
  for (const byte of bytes) {
    hash ^= BigInt(byte);
    hash = (hash * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return `bytes=${bytes.length} fnv1a64=${hash.toString(16).padStart(16, '0')}`;
}

/** Builds the shell-less image from reader.c (gcc -static; `docker import` of one file). */
async function buildReaderImage(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'dso-reader-'));
  try {
    const rootfs = join(dir, 'rootfs');
    await mkdir(rootfs);
    const built = await runCommand('gcc', [
      '-static',
      '-O2',
      '-o',
      join(rootfs, 'reader'),
      join(import.meta.dirname, '..', 'fixtures', 'reader.c'),
    ]);
    if (built.code !== 0) throw new Error(`gcc failed: ${built.stderr}`);
    const imported = await runCommand('sh', [
      '-c',
      `tar --numeric-owner --owner=0 --group=0 -C "${rootfs}" -c reader | docker import --change 'LABEL ${TEST_LABEL}=image' --change 'ENTRYPOINT ["/reader"]' - ${READER_IMAGE}`,
    ]);
    if (imported.code !== 0) throw new Error(`docker import failed: ${imported.stderr}`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// The driver name of this file's agents (see VOLUME_DRIVER in the harness).
const driver = VOLUME_DRIVER;
let workspace: Awaited<ReturnType<typeof createWorkspace>>;
let agent: ReturnType<typeof startAgent>;
let env: NodeJS.ProcessEnv;
const canary = `canary-${randomUUID()}`;
const created: string[] = [];

async function setSecret(path: string, value: string): Promise<void> {
  const stored = await workspace.cli(['secret', 'set', path], value);
  if (stored.code !== 0) throw new Error(`dso secret set failed: ${stored.stderr}`);
}

async function startTheAgent(): Promise<void> {
  agent = startAgent(env);
  await agent.waitForLog('agent ready');
}

/** `docker run -d` of the busybox image with a DSO volume and labels; removed after the file. */
async function runConsumer(volumeArgs: string[], labels: string[], command: string) {
  const id = await docker(
    'run',
    '-d',
    '--network',
    'none',
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    ...labels.flatMap((label) => ['--label', label]),
    ...volumeArgs,
    TEST_IMAGE,
    'sh',
    '-c',
    command,
  );
  created.push(id);
  return id;
}

const read = (id: string, path = '/run/secrets/db') => docker('exec', id, 'cat', path);

beforeAll(async () => {
  await buildReaderImage();
  workspace = await createWorkspace();
  expect((await workspace.cli(['init'])).code).toBe(0);
  await setSecret('app/db', canary);
  await writeFile(
    join(workspace.home, 'dso.yaml'),
    'rotation: { jitterMs: 0, pollIntervalMs: 600000 }\n',
  );
  ({ env } = await agentEnv(workspace));
  await startTheAgent();
}, 120_000);

afterAll(async () => {
  await removeRunContainers();
  for (const id of created) await docker('rm', '-f', '-v', id).catch(() => {});
  const volumes = await docker('volume', 'ls', '-q', '--filter', `driver=${driver}`).catch(
    () => '',
  );
  for (const volume of volumes.split('\n').filter(Boolean)) {
    await docker('volume', 'rm', '-f', volume).catch(() => {});
  }
  await agent?.stop();
  // Its volume root goes with it.
  await workspace?.[Symbol.asyncDispose]();
});

describe('the volume driver', () => {
  it(`gives a shell-less, non-root, read-only, capability-less application its file at its first instruction: ${RUNS} of ${RUNS}`, async () => {
    const expected = fingerprint(canary);
    const runOnce = async () => {
      const result = await runCommand('docker', [
        'run',
        '--rm',
        '--network',
        'none',
        '--label',
        `${TEST_LABEL}=${RUN_ID}`,
        '--user',
        '1000:1000',
        '--read-only',
        '--cap-drop',
        'ALL',
        '--mount',
        `type=volume,volume-driver=${driver},dst=/run/secrets,volume-opt=db=dsofile://app/db`,
        READER_IMAGE,
        '/run/secrets/db',
      ]);
      return `${result.code} ${result.stdout.trim()}`;
    };
    const results: string[] = [];
    for (let done = 0; done < RUNS; done += AT_ONCE) {
      results.push(...(await Promise.all(Array.from({ length: AT_ONCE }, runOnce))));
    }
    expect(results.filter((result) => result !== `0 ${expected}`)).toEqual([]);
    // Every run's anonymous volume was unmounted and removed: no folder is left.
    await waitFor('no mount left', async () =>
      (await docker('volume', 'ls', '-q', '--filter', `driver=${driver}`)) === ''
        ? true
        : undefined,
    );
  });

  it('fails docker run with the reference and its code when the secret is missing', async () => {
    const result = await runCommand('docker', [
      'run',
      '--rm',
      '--network',
      'none',
      '--mount',
      `type=volume,volume-driver=${driver},dst=/run/secrets,volume-opt=db=dsofile://app/missing`,
      READER_IMAGE,
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(
      'could not resolve dsofile://app/missing (DSO_PROVIDER_NOT_FOUND)',
    );
  });

  it('refuses a volume whose option is not a reference, naming the option and not the value', async () => {
    const result = await runCommand('docker', [
      'volume',
      'create',
      '-d',
      driver,
      '-o',
      `db=${canary}`,
      `dso-e2e-bad-${RUN_ID.slice(0, 8)}`,
    ]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('volume option db does not hold a dsofile:// reference');
    expect(result.stderr).not.toContain(canary);
  });

  it('rewrites a running consumer’s files and signals it (dso.rotate=signal), or restarts it (restart)', async () => {
    await setSecret('app/rotating', 'v1');
    const volume = `dso-e2e-rot-${RUN_ID.slice(0, 8)}`;
    await docker('volume', 'create', '-d', driver, '-o', 'db=dsofile://app/rotating', volume);
    const signalled = await runConsumer(
      ['-v', `${volume}:/run/secrets`],
      ['dso.rotate=signal', 'dso.rotate.signal=SIGUSR1'],
      'trap "echo reloaded" USR1; while true; do sleep 1; done',
    );
    const restarted = await runConsumer(
      [
        '--mount',
        `type=volume,volume-driver=${driver},dst=/run/secrets,volume-opt=db=dsofile://app/rotating`,
      ],
      ['dso.rotate=restart'],
      'sleep 600',
    );
    expect(await read(signalled)).toBe('v1');
    // Root in the container cannot change its folder (the agent's writes stay its own).
    const planted = await runCommand('docker', [
      'exec',
      signalled,
      'sh',
      '-c',
      'ln -s /etc /run/secrets/evil || touch /run/secrets/x',
    ]);
    expect(planted.code).not.toBe(0);
    expect(planted.stderr).toContain('Read-only file system');
    // `docker cp` mounts a running container's volumes again and unmounts them: the files stay.
    await docker('cp', `${signalled}:/etc/passwd`, join(tmpdir(), `dso-e2e-cp-${RUN_ID}`));
    await rm(join(tmpdir(), `dso-e2e-cp-${RUN_ID}`), { force: true });
    expect(await read(signalled)).toBe('v1');
    const startedBefore = await docker('inspect', '-f', '{{.State.StartedAt}}', restarted);
    await setSecret('app/rotating', 'v2');
    expect((await workspace.cli(['rotate'])).code).toBe(0);
    await waitFor('the new version in the signalled consumer', async () =>
      (await read(signalled)) === 'v2' ? true : undefined,
    );
    await waitFor('the signal', async () =>
      (await docker('logs', signalled)).includes('reloaded') ? true : undefined,
    );
    await waitFor('the restart', async () =>
      (await docker('inspect', '-f', '{{.State.StartedAt}}', restarted)) !== startedBefore
        ? true
        : undefined,
    );
    expect(await read(restarted)).toBe('v2');
  });

  it('keeps old mounts’ files and rotation, and serves new mounts, after the agent is SIGKILLed and started again', async () => {
    await setSecret('app/survivor', 'before');
    const old = await runConsumer(
      [
        '--mount',
        `type=volume,volume-driver=${driver},dst=/run/secrets,volume-opt=db=dsofile://app/survivor`,
      ],
      ['dso.rotate=files'],
      'sleep 600',
    );
    expect(await read(old)).toBe('before');
    await agent[Symbol.asyncDispose](); // SIGKILL
    expect(await read(old)).toBe('before'); // the files stay while no agent runs
    // With no agent, a new consumer does not start: closed, never open.
    const refused = await runCommand('docker', [
      'run',
      '--rm',
      '--network',
      'none',
      '--mount',
      `type=volume,volume-driver=${driver},dst=/run/secrets,volume-opt=db=dsofile://app/survivor`,
      READER_IMAGE,
    ]);
    expect(refused.code).not.toBe(0);
    await startTheAgent();
    await setSecret('app/survivor', 'after');
    expect((await workspace.cli(['rotate'])).code).toBe(0);
    await waitFor('the old mount rotated by the new agent', async () =>
      (await read(old)) === 'after' ? true : undefined,
    );
    const fresh = await runCommand('docker', [
      'run',
      '--rm',
      '--network',
      'none',
      '--mount',
      `type=volume,volume-driver=${driver},dst=/run/secrets,volume-opt=db=dsofile://app/survivor`,
      READER_IMAGE,
    ]);
    expect(fresh.stdout.trim()).toBe(fingerprint('after'));
  });

  it('serves compose volumes with driver_opts (docker-compose 1.29)', async () => {
    const project = await mkdtemp(join(tmpdir(), 'dso-e2e-compose-'));
    const name = `dsoe2e${RUN_ID.slice(0, 8)}`;
    try {
      await writeFile(
        join(project, 'docker-compose.yml'),
        [
          "version: '3.7'",
          'services:',
          '  app:',
          `    image: ${READER_IMAGE}`,
          '    command: ["/run/secrets/db"]',
          '    network_mode: none',
          '    user: "1000:1000"',
          '    read_only: true',
          '    cap_drop: [ALL]',
          `    labels: { ${TEST_LABEL}: ${RUN_ID} }`,
          '    volumes: [secrets:/run/secrets]',
          'volumes:',
          '  secrets:',
          `    driver: ${driver}`,
          '    driver_opts:',
          '      db: dsofile://app/db',
          '',
        ].join('\n'),
      );
      const compose = (...args: string[]) =>
        runCommand('docker-compose', ['-p', name, ...args], { cwd: project });
      const up = await compose('up', '--no-color');
      expect(up.code).toBe(0);
      expect(up.stdout).toContain(fingerprint(canary));
      expect((await compose('down', '-v')).code).toBe(0);
    } finally {
      await rm(project, { recursive: true, force: true });
    }
  });

  it('leaves the value nowhere on the host’s disk: engine data root, agent output, audit trail, DSO home', async () => {
    expect(agent.output).not.toContain(canary);
    const dockerRoot = await docker('info', '--format', '{{.DockerRootDir}}');
    expect(await filesContaining(canary, [workspace.home, dockerRoot])).toEqual([]);
    // The audit trail names the volume and the reference, not the value.
    const audit = await runCommand('cat', [join(workspace.home, 'audit.jsonl')]);
    expect(audit.stdout).toContain('"volume"');
    expect(audit.stdout).not.toContain(canary);
  });
});
