import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDockerRuntime, type DockerRuntime } from './docker-runtime.js';
import { type DockerRuntimeError, isDockerRuntimeError } from './errors.js';
import {
  createContainerPool,
  docker,
  ensureTestImage,
  eventsSince,
  shIn,
  testEngineFacts,
} from './test-support/engine.js';

const pool = createContainerPool();
let runtime: DockerRuntime;

beforeAll(async () => {
  await ensureTestImage();
  runtime = await createDockerRuntime();
});
afterEach(async () => {
  await pool.removeAll();
});
afterAll(async () => {
  await pool.removeAll();
  await runtime?.close();
});

async function rejection(promise: Promise<unknown>): Promise<DockerRuntimeError> {
  try {
    await promise;
  } catch (error) {
    if (isDockerRuntimeError(error)) return error;
    throw error;
  }
  throw new Error('expected a DockerRuntimeError');
}

describe('resolveUser', () => {
  // The test image: root 0:0 and app 1000:1000 in /etc/passwd, groups root 0 and app 1000.
  it.each([
    ['', { uid: 0, gid: 0 }],
    ['0', { uid: 0, gid: 0 }],
    ['root', { uid: 0, gid: 0 }],
    ['1000', { uid: 1000, gid: 1000 }],
    ['4321', { uid: 4321, gid: 0 }],
    ['1000:1000', { uid: 1000, gid: 1000 }],
    ['1234:5678', { uid: 1234, gid: 5678 }],
    ['app', { uid: 1000, gid: 1000 }],
    ['app:app', { uid: 1000, gid: 1000 }],
    ['app:root', { uid: 1000, gid: 0 }],
    ['4321:app', { uid: 4321, gid: 1000 }],
  ])(
    'resolves %j as the engine does, on a created container that never started',
    async (user, owner) => {
      const { id } = await pool.create({ user, start: false });
      expect(await runtime.resolveUser(id)).toEqual(owner);
      expect((await docker.getContainer(id).inspect()).State.Status).toBe('created');
    },
  );

  it('agrees with the uid and gid the engine gives the running process', async () => {
    for (const user of ['', '1000', 'app', 'app:root', '4321:app']) {
      const { id } = await pool.create({ user });
      const [uid, gid] = (await shIn(id, 'echo "$(id -u) $(id -g)"', user)).trim().split(' ');
      expect(await runtime.resolveUser(id)).toEqual({ uid: Number(uid), gid: Number(gid) });
    }
  });

  it('resolves by container name as well as by id', async () => {
    const { name } = await pool.create({ user: 'app', start: false });
    expect(await runtime.resolveUser(name)).toEqual({ uid: 1000, gid: 1000 });
  });

  it('throws DSO_DOCKER_USER_UNRESOLVED naming an unknown user, or group, and the container', async () => {
    const { kind } = await testEngineFacts();
    const { id } = await pool.create({ user: 'nosuchuser', start: false });
    const error = await rejection(runtime.resolveUser(id));
    expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    expect(error.message).toContain(`container ${id}`);
    const grouped = await pool.create({ user: 'app:nosuchgroup', start: false });
    const groupError = await rejection(runtime.resolveUser(grouped.id));
    expect(groupError.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    if (kind === 'podman') {
      // Podman's archive GET resolves the container's user before it reads anything, and
      // refuses in its own words: the runtime never sees the files.
      expect(error.message).toContain('unknown user error looking up user "nosuchuser"');
      expect(groupError.message).toContain('unknown group error looking up group "nosuchgroup"');
      return;
    }
    expect(error.message).toContain('user nosuchuser is not in its /etc/passwd');
    expect(groupError.message).toContain('group nosuchgroup is not in its /etc/group');
  });

  it('without /etc/passwd resolves numeric users only', async () => {
    const numeric = await pool.create({ user: '1000' });
    const named = await pool.create({ user: 'app' });
    for (const { id } of [numeric, named]) await shIn(id, 'rm /etc/passwd');
    expect(await runtime.resolveUser(numeric.id)).toEqual({ uid: 1000, gid: 0 });
    const error = await rejection(runtime.resolveUser(named.id));
    expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    expect(error.message).toContain('it has no /etc/passwd');
  });

  it('follows a symlinked /etc/passwd and /etc/group inside the container', async () => {
    // Started as app (1000:1000); the databases then move behind symlinks and app's entries
    // change, so only a resolver that followed the links finds 2001:2003.
    const { id } = await pool.create({ user: 'app:app' });
    await shIn(
      id,
      'mkdir -p /usr/lib/db && ' +
        'echo "app:x:2001:2002::/:/bin/sh" > /usr/lib/db/passwd && ' +
        'echo "app:x:2003:" > /usr/lib/db/group && ' +
        'ln -sf ../usr/lib/db/passwd /etc/passwd && ln -sf /usr/lib/db/group /etc/group',
    );
    expect(await runtime.resolveUser(id)).toEqual({ uid: 2001, gid: 2003 });
  });

  it('refuses an /etc/passwd larger than 1 MiB', async () => {
    const { id } = await pool.create({ user: 'app' });
    await shIn(id, "head -c 1100000 /dev/zero | tr '\\0' '#' >> /etc/passwd");
    const error = await rejection(runtime.resolveUser(id));
    expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    expect(error.message).toContain('larger than 1048576 bytes');
  });

  it('throws DSO_DOCKER_CONTAINER_NOT_FOUND, DSO_DOCKER_INVALID_REQUEST, DSO_DOCKER_ABORTED', async () => {
    expect((await rejection(runtime.resolveUser(`dso-test-${randomUUID()}`))).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
    expect((await rejection(runtime.resolveUser('../x'))).code).toBe('DSO_DOCKER_INVALID_REQUEST');
    const { id } = await pool.create({ user: 'app', start: false });
    expect((await rejection(runtime.resolveUser(id, { signal: AbortSignal.abort() }))).code).toBe(
      'DSO_DOCKER_ABORTED',
    );
  });

  it('only reads: the archive API was never asked to write, and no exec ran for it', async () => {
    // A pool of its own: the earlier tests' execs carry the shared pool's label.
    const own = createContainerPool();
    const startedAt = new Date(Date.now() - 1_000);
    let changes: unknown;
    try {
      const { id } = await own.create({ user: 'app:app', start: false });
      await runtime.resolveUser(id);
      // Nothing written into its file system (a PUT of the archive would show here).
      // dockerode hands the body over unparsed here: `null` when nothing changed.
      changes = JSON.parse(String(await docker.getContainer(id).changes()));
    } finally {
      await own.removeAll();
    }
    expect(changes ?? []).toEqual([]);
    const actions = await eventsSince(own.runId, startedAt);
    expect(actions).toContain('create');
    // Docker's exec events are `exec_create: …`, Podman's `exec`.
    expect(
      actions.filter((action) => action === 'extract-to-dir' || action.startsWith('exec')),
    ).toEqual([]);
    if ((await testEngineFacts()).kind === 'docker') {
      // Docker reports a GET of the archive as `archive-path`, a PUT as `extract-to-dir`
      // (Podman reports neither).
      expect(actions.filter((action) => action === 'archive-path').length).toBeGreaterThan(0);
    }
  });
});
