import { randomUUID } from 'node:crypto';
import { inspect as nodeInspect } from 'node:util';
import type Docker from 'dockerode';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDockerRuntime, type DockerRuntime } from './docker-runtime.js';
import { type DockerRuntimeError, isDockerRuntimeError } from './errors.js';
import {
  createContainer,
  planReplacement,
  REPLACE_LABELS,
  type ReplaceRecovery,
  replacementNames,
} from './replace.js';
import {
  createContainerPool,
  docker,
  ensureTestImage,
  shIn,
  TEST_IMAGE,
  TEST_LABEL,
  testEngineFacts,
  waitFor,
} from './test-support/engine.js';

const engine = await testEngineFacts();
/**
 * Variables the engine writes into every container's `Config.Env` itself: none on Docker (the
 * test image sets none); Podman adds its defaults and `HOSTNAME` (checked on its own below).
 */
const ENGINE_ENV = new Set(
  engine.kind === 'podman' ? ['PATH', 'TERM', 'container', 'HOME', 'HOSTNAME'] : [],
);
/**
 * A container's environment without what the engine added: what its creator gave. Sorted on
 * Podman, which keeps the environment in a map and reports it in no stable order.
 */
function ownEnv(info: Docker.ContainerInspectInfo): string[] {
  const own = (info.Config.Env ?? []).filter((entry) => !ENGINE_ENV.has(entry.split('=')[0] ?? ''));
  return engine.kind === 'podman' ? own.sort() : own;
}

const pool = createContainerPool();
let runtime: DockerRuntime;
/** Volumes and networks tests made (containers go with the pool). */
const volumes = new Set<string>();
const networks = new Set<string>();

const MS = 1_000_000; // healthcheck durations are in nanoseconds
/** Fast checks for tests: the old `sleep` ignores SIGTERM, so no grace either. */
const FAST = { health: { timeoutMs: 20_000, runningForMs: 300 }, stopTimeoutMs: 0 } as const;

beforeAll(async () => {
  await ensureTestImage();
  runtime = await createDockerRuntime();
});
afterEach(async () => {
  // Forgotten whatever happens: a failed cleanup fails its own test, not every test after it.
  const made = { volumes: [...volumes], networks: [...networks] };
  volumes.clear();
  networks.clear();
  await pool.removeAll();
  for (const name of made.volumes) await ignoreMissing(docker.getVolume(name).remove());
  for (const name of made.networks) await ignoreMissing(docker.getNetwork(name).remove());
});
afterAll(async () => {
  await pool.removeAll();
  await runtime?.close();
});

async function ignoreMissing(promise: Promise<unknown>): Promise<void> {
  try {
    await promise;
  } catch (error) {
    // Already gone is the goal; anything else must fail the run.
    if ((error as { statusCode?: number }).statusCode !== 404) throw error;
  }
}

interface OldSpec {
  image?: string;
  cmd?: string[];
  env?: string[];
  user?: string;
  workingDir?: string;
  healthcheck?: Docker.HealthConfig;
  volumes?: Record<string, object>;
  hostConfig?: Docker.HostConfig;
  networking?: Docker.ContainerCreateOptions['NetworkingConfig'];
  labels?: Record<string, string>;
}

/** A labelled, started container of the test image: the "old" one. */
async function createOld(spec: OldSpec = {}): Promise<{ id: string; name: string }> {
  const name = `dso-test-${randomUUID()}`;
  const container = await docker.createContainer({
    name,
    Image: spec.image ?? TEST_IMAGE,
    Cmd: spec.cmd ?? ['sleep', '3600'],
    Env: spec.env ?? [],
    User: spec.user ?? '',
    WorkingDir: spec.workingDir ?? '',
    Labels: { [TEST_LABEL]: pool.runId, ...spec.labels },
    ...(spec.healthcheck === undefined ? {} : { Healthcheck: spec.healthcheck }),
    ...(spec.volumes === undefined ? {} : { Volumes: spec.volumes }),
    ...(spec.networking === undefined ? {} : { NetworkingConfig: spec.networking }),
    HostConfig: { NetworkMode: 'none', ...spec.hostConfig },
  });
  await container.start();
  const info = await container.inspect();
  for (const mount of info.Mounts)
    if (mount.Type === 'volume' && mount.Name) volumes.add(mount.Name);
  return { id: container.id, name };
}

async function imageExists(id: string): Promise<boolean> {
  const listed = await docker.listImages({ all: true });
  return listed.some((image) => image.Id === id || image.Id === `sha256:${id}`);
}

async function inspectOrUndefined(ref: string): Promise<Docker.ContainerInspectInfo | undefined> {
  try {
    return await docker.getContainer(ref).inspect();
  } catch (error) {
    if ((error as { statusCode?: number }).statusCode === 404) return undefined;
    throw error;
  }
}

async function failureOf(promise: Promise<unknown>): Promise<DockerRuntimeError> {
  try {
    await promise;
  } catch (error) {
    if (isDockerRuntimeError(error)) return error;
    throw error;
  }
  throw new Error('expected a DockerRuntimeError, got a result');
}

/** Everything an error carries, its cause chain included, as text. */
function serialised(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; current !== undefined && current !== null && depth < 10; depth += 1) {
    const value = current as { message?: unknown; details?: unknown; cause?: unknown };
    parts.push(String(value.message), JSON.stringify(value.details ?? {}), JSON.stringify(current));
    current = value.cause;
  }
  parts.push(nodeInspect(error, { depth: 20, showHidden: true }));
  return parts.join('\n');
}

/** The old container is still there, under its own name, running. */
async function expectOldIntact(old: { id: string; name: string }): Promise<void> {
  const info = await inspectOrUndefined(old.id);
  expect(info?.Name).toBe(`/${old.name}`);
  expect(info?.State.Running).toBe(true);
}

/** No container of this replacement remains but the old one. */
async function expectNoNew(old: { id: string; name: string }): Promise<void> {
  const listed = await docker.listContainers({
    all: true,
    filters: { label: [`${REPLACE_LABELS.of}=${old.id}`] },
  });
  expect(listed).toEqual([]);
}

describe('replaceContainer', () => {
  it('recreates a container without a healthcheck with the new env, keeping its configuration', async () => {
    const named = `dso-test-${randomUUID()}`;
    await docker.createVolume({ Name: named, Labels: { [TEST_LABEL]: pool.runId } });
    volumes.add(named);
    const old = await createOld({
      env: ['A=1', 'KEEP=k', 'DROP=d'],
      user: '1000:1000',
      workingDir: '/tmp',
      volumes: { '/data': {} },
      labels: { 'dso.enable': 'true' },
      hostConfig: {
        NetworkMode: 'none',
        // Podman 4.3's tmpfs takes no uid=: its `U` gives the tmpfs to the container's user.
        Tmpfs: { '/run/secrets': engine.kind === 'podman' ? 'mode=0700,U' : 'mode=0700,uid=1000' },
        Mounts: [{ Type: 'volume', Source: named, Target: '/named' }],
        RestartPolicy: { Name: 'unless-stopped', MaximumRetryCount: 0 },
        // Podman's inspect names these RLIMIT_NOFILE and RLIMIT_NPROC, which its create
        // refuses. nproc is set too: without it Podman adds a raised one, which this kind of
        // machine forbids (the start fails), and lowering is always allowed.
        Ulimits: [
          { Name: 'nofile', Soft: 1024, Hard: 2048 },
          { Name: 'nproc', Soft: 8192, Hard: 8192 },
        ],
      },
    });
    await shIn(old.id, 'echo kept > /data/file && echo named > /named/file');
    const before = await docker.getContainer(old.id).inspect();

    const result = await runtime.replaceContainer(old.id, {
      env: { A: '2', DROP: null, NEW: 'n' },
      ...FAST,
    });

    expect(result).toMatchObject({
      oldId: old.id,
      name: old.name,
      generation: 1,
      health: 'running',
      oldRemoved: true,
    });
    expect(result.cleanupError).toBeUndefined();
    expect(await inspectOrUndefined(old.id)).toBeUndefined();
    const after = await docker.getContainer(result.newId).inspect();
    expect(after.Name).toBe(`/${old.name}`);
    expect(after.State.Running).toBe(true);
    expect(ownEnv(after)).toEqual(['A=2', 'KEEP=k', 'NEW=n']);
    // Its own hostname, in its environment too: not the old one's (Podman writes HOSTNAME).
    const newShort = result.newId.slice(0, 12);
    expect(await shIn(result.newId, 'echo "$HOSTNAME $(hostname)"')).toBe(
      `${newShort} ${newShort}\n`,
    );
    expect(after.Config.Env).not.toContain(`HOSTNAME=${old.id.slice(0, 12)}`);
    expect(after.Config.Labels).toEqual({
      [TEST_LABEL]: pool.runId,
      'dso.enable': 'true',
      [REPLACE_LABELS.of]: old.id,
      [REPLACE_LABELS.name]: old.name,
      [REPLACE_LABELS.generation]: '1',
    });
    expect(after.Image).toBe(before.Image);
    // As the engine reports it (Podman: `localhost/` before a local image's name).
    expect(after.Config.Image).toBe(before.Config.Image);
    expect(after.Config.User).toBe('1000:1000');
    expect(after.Config.WorkingDir).toBe('/tmp');
    expect(after.Config.Cmd).toEqual(['sleep', '3600']);
    expect(after.Config.Hostname).toBe(result.newId.slice(0, 12));
    expect(after.HostConfig.Tmpfs).toEqual(before.HostConfig.Tmpfs);
    expect(after.HostConfig.Tmpfs?.['/run/secrets']).toMatch(/mode=0700/);
    expect(await shIn(result.newId, 'stat -c %u /run/secrets', '1000')).toBe('1000\n');
    expect(after.HostConfig.Ulimits).toEqual(before.HostConfig.Ulimits);
    // Its main process's limits (an exec may get others: Podman gives it the hard limit).
    const limits = await shIn(result.newId, 'cat /proc/1/limits');
    expect(limits).toMatch(/^Max open files\s+1024\s+2048\s/m);
    expect(limits).toMatch(/^Max processes\s+8192\s+8192\s/m);
    expect(after.HostConfig.RestartPolicy).toEqual({
      Name: 'unless-stopped',
      MaximumRetryCount: 0,
    });
    const volumeOf = (info: Docker.ContainerInspectInfo, destination: string) =>
      info.Mounts.find((mount) => mount.Destination === destination)?.Name;
    // The anonymous volume carried over: same volume, same data.
    expect(volumeOf(after, '/data')).toBe(volumeOf(before, '/data'));
    expect(volumeOf(after, '/named')).toBe(named);
    expect(await shIn(result.newId, 'cat /data/file /named/file')).toBe('kept\nnamed\n');
    expect(await shIn(result.newId, 'grep " /run/secrets " /proc/mounts')).toMatch(/^tmpfs /);

    // A second replacement counts the generation and points at the first replacement.
    const again = await runtime.replaceContainer(old.name, { env: { A: '3' }, ...FAST });
    expect(again).toMatchObject({ oldId: result.newId, name: old.name, generation: 2 });
    const third = await docker.getContainer(again.newId).inspect();
    expect(third.Config.Labels[REPLACE_LABELS.of]).toBe(result.newId);
    expect(ownEnv(third)).toEqual(['A=3', 'KEEP=k', 'NEW=n']);
    expect(await inspectOrUndefined(result.newId)).toBeUndefined();
  });

  it('switches once the healthcheck passes', async () => {
    const old = await createOld({
      cmd: ['sh', '-c', 'sleep 0.3; touch /tmp/ready; exec sleep 3600'],
      healthcheck: {
        Test: ['CMD-SHELL', 'test -f /tmp/ready'],
        Interval: 100 * MS,
        Timeout: 1000 * MS,
        Retries: 50,
      },
    });
    const result = await runtime.replaceContainer(old.id, { env: { V: '2' }, ...FAST });
    expect(result.health).toBe('healthy');
    const after = await docker.getContainer(result.newId).inspect();
    expect(after.State.Health?.Status).toBe('healthy');
    expect(after.Name).toBe(`/${old.name}`);
    expect(after.Config.Healthcheck?.Test).toEqual(['CMD-SHELL', 'test -f /tmp/ready']);
    expect(await inspectOrUndefined(old.id)).toBeUndefined();
  });

  it('rolls back when the new container turns unhealthy, and never leaks a value', async () => {
    const canary = `canary-${randomUUID()}`;
    const old = await createOld({
      env: ['MODE=ok'],
      healthcheck: {
        Test: ['CMD-SHELL', 'echo "checking with $TOKEN"; test "$MODE" = ok'],
        Interval: 100 * MS,
        Timeout: 1000 * MS,
        Retries: 2,
      },
    });
    const error = await failureOf(
      runtime.replaceContainer(old.id, { env: { MODE: 'bad', TOKEN: canary }, ...FAST }),
    );
    expect(error.code).toBe('DSO_DOCKER_REPLACE_FAILED');
    expect(error.details).toMatchObject({
      stage: 'health',
      reason: 'unhealthy',
      healthStatus: 'unhealthy',
      rollback: 'done',
      oldRunning: true,
      containerId: old.id,
    });
    expect(error.details.healthOutput).toMatch(/checking with \[REDACTED\]/);
    expect(serialised(error)).not.toContain(canary);
    expect(await inspectOrUndefined(String(error.details.newId))).toBeUndefined();
    await expectOldIntact(old);
    await expectNoNew(old);
  });

  it('rolls back when the new container exits, with its exit code and a redacted log tail', async () => {
    const canary = `canary-${randomUUID()}`;
    const kept = `kept-secret-${randomUUID()}`;
    const old = await createOld({
      env: ['MODE=ok', `KEPT=${kept}`],
      cmd: [
        'sh',
        '-c',
        'echo "starting with $SECRET and $KEPT"; env; test "$MODE" = ok && exec sleep 3600',
      ],
    });
    const error = await failureOf(
      runtime.replaceContainer(old.id, { env: { MODE: 'bad', SECRET: canary }, ...FAST }),
    );
    expect(error.code).toBe('DSO_DOCKER_REPLACE_FAILED');
    expect(error.details).toMatchObject({
      stage: 'health',
      reason: 'exited',
      exitCode: 1,
      rollback: 'done',
      oldRunning: true,
    });
    expect(error.details.logTail).toMatch(/starting with \[REDACTED\] and \[REDACTED\]/);
    expect(error.message).toMatch(/exited with code 1/);
    const text = serialised(error);
    expect(text).not.toContain(canary);
    expect(text).not.toContain(kept);
    await expectOldIntact(old);
    await expectNoNew(old);
  });

  it('keeps no log tail when logTailBytes is 0', async () => {
    const old = await createOld({
      env: ['MODE=ok'],
      cmd: ['sh', '-c', 'echo hello; test "$MODE" = ok && exec sleep 3600'],
    });
    const error = await failureOf(
      runtime.replaceContainer(old.id, { env: { MODE: 'bad' }, logTailBytes: 0, ...FAST }),
    );
    expect(error.details).toMatchObject({ reason: 'exited' });
    expect(error.details).not.toHaveProperty('logTail');
  });

  it('rolls back when the healthcheck does not pass in time', async () => {
    const old = await createOld({
      healthcheck: {
        Test: ['CMD-SHELL', 'test -f /tmp/never'],
        Interval: 100 * MS,
        Timeout: 1000 * MS,
        Retries: 10_000,
      },
    });
    const startedAt = performance.now();
    const error = await failureOf(
      runtime.replaceContainer(old.id, { ...FAST, health: { timeoutMs: 800 } }),
    );
    expect(performance.now() - startedAt).toBeLessThan(10_000);
    expect(error.details).toMatchObject({
      stage: 'health',
      reason: 'health-timeout',
      healthStatus: 'starting',
      rollback: 'done',
    });
    await expectOldIntact(old);
    await expectNoNew(old);
  });

  it('rolls back when a restart policy restarts the new container', async () => {
    const old = await createOld({
      env: ['MODE=ok'],
      cmd: ['sh', '-c', 'test "$MODE" = ok && exec sleep 3600; sleep 0.2; exit 3'],
      hostConfig: { NetworkMode: 'none', RestartPolicy: { Name: 'always', MaximumRetryCount: 0 } },
    });
    const error = await failureOf(
      runtime.replaceContainer(old.id, {
        env: { MODE: 'bad' },
        ...FAST,
        health: { runningForMs: 3_000 },
      }),
    );
    expect(['restarted', 'exited']).toContain(error.details.reason);
    expect(error.details.rollback).toBe('done');
    await expectOldIntact(old);
    await expectNoNew(old);
  });

  it('rolls back when aborted during the health wait', async () => {
    const old = await createOld({
      healthcheck: {
        Test: ['CMD-SHELL', 'test -f /tmp/never'],
        Interval: 100 * MS,
        Timeout: 1000 * MS,
        Retries: 10_000,
      },
    });
    const controller = new AbortController();
    const error = await failureOf(
      runtime.replaceContainer(old.id, {
        ...FAST,
        health: { timeoutMs: 60_000 },
        signal: controller.signal,
        onStarted: async () => {
          setTimeout(() => controller.abort(), 300);
        },
      }),
    );
    expect(error.code).toBe('DSO_DOCKER_ABORTED');
    expect(error.details).toMatchObject({ stage: 'health', rollback: 'done', oldRunning: true });
    await expectOldIntact(old);
    await expectNoNew(old);
  });

  it('calls onCreated before start and onStarted after, with the new id', async () => {
    const old = await createOld();
    const calls: string[] = [];
    const result = await runtime.replaceContainer(old.id, {
      ...FAST,
      onCreated: async (newId, signal) => {
        expect(signal.aborted).toBe(false);
        const info = await docker.getContainer(newId).inspect();
        calls.push(`created:${newId}:${info.State.Status}:${info.Name}`);
      },
      onStarted: async (newId) => {
        const info = await docker.getContainer(newId).inspect();
        calls.push(`started:${newId}:${info.State.Status}`);
      },
    });
    const { next } = replacementNames(old.name, old.id);
    expect(calls).toEqual([
      `created:${result.newId}:created:/${next}`,
      `started:${result.newId}:running`,
    ]);
  });

  it.each(['onCreated', 'onStarted'] as const)('rolls back when %s throws', async (hook) => {
    const old = await createOld();
    const thrown = new Error('files not ready');
    const error = await failureOf(
      runtime.replaceContainer(old.id, {
        ...FAST,
        [hook]: async () => {
          throw thrown;
        },
      }),
    );
    expect(error.code).toBe('DSO_DOCKER_REPLACE_FAILED');
    expect(error.details).toMatchObject({
      stage: hook === 'onCreated' ? 'on-created' : 'on-started',
      reason: 'hook-failed',
      rollback: 'done',
    });
    expect(error.cause).toBe(thrown);
    await expectOldIntact(old);
    await expectNoNew(old);
  });

  it('rolls back a hook that outlives hookTimeoutMs, aborting its signal', async () => {
    const old = await createOld();
    let hookSignal: AbortSignal | undefined;
    const error = await failureOf(
      runtime.replaceContainer(old.id, {
        ...FAST,
        hookTimeoutMs: 200,
        onCreated: (_id, signal) => {
          hookSignal = signal;
          return new Promise(() => {});
        },
      }),
    );
    expect(error.details).toMatchObject({ reason: 'hook-failed', timedOut: true });
    expect(hookSignal?.aborted).toBe(true);
    await expectOldIntact(old);
  });

  it('rolls back when the swap fails, leaving the old container under its name', async () => {
    const old = await createOld();
    // Something already holds the old container's temporary name: its rename is refused.
    await docker.createContainer({
      name: replacementNames(old.name, old.id).old,
      Image: TEST_IMAGE,
      Cmd: ['sleep', '3600'],
      Labels: { [TEST_LABEL]: pool.runId },
      HostConfig: { NetworkMode: 'none' },
    });
    const error = await failureOf(runtime.replaceContainer(old.id, { env: { X: '1' }, ...FAST }));
    expect(error.code).toBe('DSO_DOCKER_REPLACE_FAILED');
    expect(error.details).toMatchObject({
      stage: 'swap',
      reason: 'engine-error',
      rollback: 'done',
      oldRunning: true,
    });
    await expectOldIntact(old);
    await expectNoNew(old);
  });

  it('keeps running the same image id when its tag has moved since', async () => {
    const repo = `dso-test/replace-${randomUUID()}`;
    const base = await docker.getImage(TEST_IMAGE).inspect();
    await docker.getImage(TEST_IMAGE).tag({ repo, tag: '1' });
    const other = await createOld();
    let moved: string | undefined;
    try {
      const old = await createOld({ image: `${repo}:1` });
      // Move the tag to another image: a commit of another container, with a file more.
      await shIn(other.id, 'echo changed > /changed');
      moved = (
        (await docker.getContainer(other.id).commit({
          changes: [`LABEL ${TEST_LABEL}=${pool.runId}`],
        })) as { Id: string }
      ).Id;
      await docker.getImage(moved).tag({ repo, tag: '1' });

      const result = await runtime.replaceContainer(old.id, FAST);

      const after = await docker.getContainer(result.newId).inspect();
      expect(after.Image).toBe(base.Id);
      // Created from the id: Docker shows that, Podman a name the image still has.
      expect(after.Config.Image).not.toContain(repo);
      expect(await shIn(result.newId, 'test -e /changed && echo moved || echo same')).toBe(
        'same\n',
      );
    } finally {
      await pool.removeAll();
      await ignoreMissing(docker.getImage(`${repo}:1`).remove());
      // Untagging may have removed it already; Podman answers 500, not 404, for a gone id.
      if (moved !== undefined && (await imageExists(moved))) {
        await docker.getImage(moved).remove({ force: true });
      }
    }
  });

  it('replaces an auto-removed container', async () => {
    const old = await createOld({ hostConfig: { NetworkMode: 'none', AutoRemove: true } });
    const result = await runtime.replaceContainer(old.id, { env: { X: '1' }, ...FAST });
    expect(result.oldRemoved).toBe(true);
    expect(await inspectOrUndefined(old.id)).toBeUndefined();
    expect((await docker.getContainer(result.newId).inspect()).HostConfig.AutoRemove).toBe(true);
  });

  // The Podman service of tools/services.sh has no CNI plugins (this kind of machine allows no
  // bridge), so no container of it can join a network: a network it creates cannot even be
  // removed again. Its networks are Podman's own business; this runs where networks exist.
  it.runIf(engine.kind === 'docker')(
    'keeps user-defined networks and aliases, without the old id alias',
    async () => {
      const front = `dso-test-${randomUUID()}`;
      const back = `dso-test-${randomUUID()}`;
      for (const name of [front, back]) {
        await docker.createNetwork({ Name: name, Labels: { [TEST_LABEL]: pool.runId } });
        networks.add(name);
      }
      const old = await createOld({
        hostConfig: { NetworkMode: front },
        networking: { EndpointsConfig: { [front]: { Aliases: ['svc'] } } },
      });
      await docker
        .getNetwork(back)
        .connect({ Container: old.id, EndpointConfig: { Aliases: ['svc-b'] } });

      const result = await runtime.replaceContainer(old.id, FAST);

      const after = await docker.getContainer(result.newId).inspect();
      expect(after.HostConfig.NetworkMode).toBe(front);
      const joined = after.NetworkSettings.Networks as Record<string, { Aliases?: string[] }>;
      expect(Object.keys(joined).sort()).toEqual([front, back].sort());
      expect(joined[front]?.Aliases).toContain('svc');
      expect(joined[back]?.Aliases).toContain('svc-b');
      expect(JSON.stringify(joined)).not.toContain(old.id.slice(0, 12));
    },
  );

  it('refuses a container whose network namespace another container uses', async () => {
    const old = await createOld();
    const sidecarName = `dso-test-${randomUUID()}`;
    const sidecar = await docker.createContainer({
      name: sidecarName,
      Image: TEST_IMAGE,
      Cmd: ['sleep', '3600'],
      Labels: { [TEST_LABEL]: pool.runId },
      HostConfig: { NetworkMode: `container:${old.id}` },
    });
    try {
      const error = await failureOf(runtime.replaceContainer(old.id, FAST));
      expect(error.details).toMatchObject({
        stage: 'plan',
        reason: 'network-dependents',
        dependents: [sidecarName],
      });
      expect(error.message).toContain('restart');
      // Stopped, it still holds the namespace (and Podman still refuses to remove the old one).
      await sidecar.start();
      await sidecar.stop({ t: 0 });
      expect((await failureOf(runtime.replaceContainer(old.id, FAST))).details).toMatchObject({
        reason: 'network-dependents',
      });
    } finally {
      // Before the old one: Podman refuses to remove a container others depend on.
      await sidecar.remove({ force: true });
    }
    await expectOldIntact(old);
    await expectNoNew(old);
  });

  it('refuses a missing, a stopped, and a pending container', async () => {
    expect((await failureOf(runtime.replaceContainer(`dso-test-${randomUUID()}`, FAST))).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
    const stopped = await createOld();
    await docker.getContainer(stopped.id).stop({ t: 0 });
    expect((await failureOf(runtime.replaceContainer(stopped.id, FAST))).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_RUNNING',
    );

    const old = await createOld();
    const { newId } = await simulate(old, 'created');
    const error = await failureOf(runtime.replaceContainer(old.id, FAST));
    expect(error.details).toMatchObject({ stage: 'inspect', reason: 'replace-pending' });
    expect(error.message).toContain('recoverReplacements');
    // The interrupted one is left for recovery, untouched.
    expect((await inspectOrUndefined(newId))?.State.Status).toBe('created');
    await expectOldIntact(old);
    // Its new side cannot be replaced either.
    const side = await failureOf(
      (async () => {
        await docker.getContainer(newId).start();
        return runtime.replaceContainer(newId, FAST);
      })(),
    );
    expect(side.details).toMatchObject({ reason: 'replace-pending' });
  });

  it('refuses a second replacement of the same container while one runs', async () => {
    const old = await createOld();
    let release: () => void = () => {};
    let entered: () => void = () => {};
    const inHook = new Promise<void>((resolve) => (entered = resolve));
    const first = runtime.replaceContainer(old.id, {
      ...FAST,
      onStarted: () => {
        entered();
        return new Promise<void>((resolve) => (release = resolve));
      },
    });
    // The first is inside its hook (or failed before it, which fails the test here).
    await Promise.race([inHook, first]);
    const second = await failureOf(runtime.replaceContainer(old.id, FAST));
    expect(second.details).toMatchObject({ reason: 'replace-pending' });
    // Recovery leaves a replacement running in this runtime alone.
    const recovered = await runtime.recoverReplacements();
    expect(recovered.filter((entry) => entry.oldId === old.id)).toEqual([]);
    release();
    const result = await first;
    expect(result.name).toBe(old.name);
  });
});

type CrashPoint = 'created' | 'old-renamed' | 'swapped' | 'old-gone';

/**
 * Performs a replacement's steps with dockerode directly, stopping where a crash would:
 * `created` (new created under its temporary name), `old-renamed` (old renamed, new not yet),
 * `swapped` (both renamed, old still running), `old-gone` (old removed, new still temporary).
 */
async function simulate(
  old: { id: string; name: string },
  point: CrashPoint,
): Promise<{ newId: string }> {
  const info = await docker.getContainer(old.id).inspect();
  const plan = planReplacement(info, { env: [['CRASH', point]], image: info.Image });
  const newId = await createContainer(
    docker,
    plan.nextName,
    plan.body,
    new AbortController().signal,
  );
  if (point === 'created') return { newId };
  await docker.getContainer(newId).start();
  if (point === 'old-gone') {
    await docker.getContainer(old.id).remove({ force: true });
    return { newId };
  }
  await docker.getContainer(old.id).rename({ name: plan.oldTempName });
  if (point === 'swapped') await docker.getContainer(newId).rename({ name: plan.name });
  return { newId };
}

async function recoverMine(ids: string[]): Promise<ReplaceRecovery[]> {
  const all = await runtime.recoverReplacements({ stopTimeoutMs: 0 });
  return all.filter((entry) => ids.includes(entry.newId));
}

describe('recoverReplacements', () => {
  it.each([
    ['created', 'undone', 'old'],
    ['old-renamed', 'undone', 'old'],
    ['swapped', 'finished', 'new'],
    ['old-gone', 'finished', 'new'],
  ] as const)('after a crash at %s: %s, then nothing', async (point, action, survivor) => {
    const old = await createOld();
    const { newId } = await simulate(old, point);

    const first = await recoverMine([newId]);
    expect(first).toEqual([{ name: old.name, oldId: old.id, newId, action }]);

    const oldInfo = await inspectOrUndefined(old.id);
    const newInfo = await inspectOrUndefined(newId);
    if (survivor === 'old') {
      expect(newInfo).toBeUndefined();
      expect(oldInfo?.Name).toBe(`/${old.name}`);
      expect(oldInfo?.State.Running).toBe(true);
    } else {
      expect(oldInfo).toBeUndefined();
      expect(newInfo?.Name).toBe(`/${old.name}`);
      expect(newInfo?.State.Running).toBe(true);
    }
    expect(await recoverMine([newId])).toEqual([]);
  });

  it('does not hand the name to a new container that is not serving when the old one is gone', async () => {
    const old = await createOld();
    const { newId } = await simulate(old, 'old-gone');
    // It never passed its health wait: here it has stopped.
    await docker.getContainer(newId).stop({ t: 0 });
    expect(await recoverMine([newId])).toEqual([
      { name: old.name, oldId: old.id, newId, action: 'blocked', reason: 'new-unproven' },
    ]);
    expect((await inspectOrUndefined(newId))?.Name).not.toBe(`/${old.name}`);
    // Once it serves, recovery finishes.
    await docker.getContainer(newId).start();
    expect((await recoverMine([newId]))[0]?.action).toBe('finished');
  });

  it('finishes an old-gone replacement once the new container is healthy by its healthcheck', async () => {
    const old = await createOld({
      healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 100 * MS, Timeout: 1000 * MS },
    });
    const { newId } = await simulate(old, 'old-gone');
    if (engine.kind === 'docker') {
      // Docker runs the check on its own schedule; Podman here has no systemd timer to run
      // it, so recovery runs it once itself.
      await waitFor('the new container to be healthy', async () =>
        (await docker.getContainer(newId).inspect()).State.Health?.Status === 'healthy'
          ? true
          : undefined,
      );
    } else {
      expect((await docker.getContainer(newId).inspect()).State.Health?.Status).toBe('starting');
    }
    expect(await recoverMine([newId])).toEqual([
      { name: old.name, oldId: old.id, newId, action: 'finished' },
    ]);
    expect((await docker.getContainer(newId).inspect()).Name).toBe(`/${old.name}`);
  });

  it('leaves both when the name it would restore is taken, and says so', async () => {
    const old = await createOld();
    const { newId } = await simulate(old, 'old-renamed');
    // Someone else took the name meanwhile.
    const intruder = await docker.createContainer({
      name: old.name,
      Image: TEST_IMAGE,
      Cmd: ['sleep', '3600'],
      Labels: { [TEST_LABEL]: pool.runId },
      HostConfig: { NetworkMode: 'none' },
    });
    expect(await recoverMine([newId])).toEqual([
      { name: old.name, oldId: old.id, newId, action: 'blocked', reason: 'name-taken' },
    ]);
    expect(await inspectOrUndefined(newId)).toBeDefined();
    expect(await inspectOrUndefined(old.id)).toBeDefined();
    await intruder.remove({ force: true });
    expect((await recoverMine([newId]))[0]?.action).toBe('undone');
    await expectOldIntact(old);
  });

  it('rejects with DSO_DOCKER_ABORTED when its signal is already aborted', async () => {
    const error = await failureOf(runtime.recoverReplacements({ signal: AbortSignal.abort() }));
    expect(error.code).toBe('DSO_DOCKER_ABORTED');
  });

  it('lets a replacement succeed after recovering an interrupted one', async () => {
    const old = await createOld();
    await simulate(old, 'old-renamed');
    await runtime.recoverReplacements({ stopTimeoutMs: 0 });
    const result = await runtime.replaceContainer(old.name, { env: { AFTER: '1' }, ...FAST });
    expect(result.oldId).toBe(old.id);
    expect((await docker.getContainer(result.newId).inspect()).Name).toBe(`/${old.name}`);
  });
});
