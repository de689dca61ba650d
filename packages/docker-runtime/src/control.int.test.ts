import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDockerRuntime, type DockerRuntime } from './docker-runtime.js';
import { isDockerRuntimeError } from './errors.js';
import {
  createCommandContainer,
  createContainerPool,
  docker,
  ensureTestImage,
  shIn,
  testEngineFacts,
  waitFor,
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

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return isDockerRuntimeError(error) ? error.code : `not a DockerRuntimeError: ${error}`;
  }
  return 'resolved';
}

/**
 * The engine's events for one container between `since` and now: the raw JSON lines (to search
 * for a value anywhere) and each event's action (`exec_create: sh -c …`).
 */
async function eventsOf(id: string, since: Date): Promise<{ raw: string; actions: string[] }> {
  const stream = (await docker.getEvents({
    since: Math.floor(since.getTime() / 1000),
    until: Math.ceil(Date.now() / 1000) + 1,
    filters: { type: ['container'], container: [id] },
  })) as unknown as AsyncIterable<Buffer>;
  let raw = '';
  for await (const chunk of stream) raw += chunk.toString();
  const actions = raw
    .split('\n')
    .filter(Boolean)
    .map((line) => String((JSON.parse(line) as { Action?: unknown }).Action));
  return { raw, actions };
}

async function startedAt(id: string): Promise<string> {
  return (await docker.getContainer(id).inspect()).State.StartedAt;
}

describe('exec', () => {
  it('returns a non-zero exit code as a result, with stdout and stderr kept apart', async () => {
    const { id } = await pool.create();
    const result = await runtime.exec(id, {
      argv: ['sh', '-c', 'echo to-out; echo to-err >&2; exit 3'],
    });
    expect(result).toMatchObject({
      exitCode: 3,
      stdout: 'to-out\n',
      stderr: 'to-err\n',
      stdoutBytes: 7,
      stderrBytes: 7,
      truncated: false,
    });
    expect(result.durationMs).toBeGreaterThan(0);
  });

  it('reports 126 or 127 for a command that cannot be run, without throwing', async () => {
    const { id } = await pool.create();
    const result = await runtime.exec(id, { argv: ['/no/such/command'] });
    expect([126, 127]).toContain(result.exitCode);
  });

  it('keeps the tail of a large output up to maxOutputBytes and counts the rest', async () => {
    const { id } = await pool.create();
    const bounded = await runtime.exec(id, {
      argv: ['sh', '-c', 'yes | head -c 1000000; echo done >&2'],
      maxOutputBytes: 1_000,
    });
    expect(bounded.exitCode).toBe(0);
    expect(bounded.stdoutBytes).toBe(1_000_000);
    expect(bounded.stdout).toBe('y\n'.repeat(500));
    expect(bounded.stderr).toBe('done\n');
    expect(bounded.truncated).toBe(true);

    const byDefault = await runtime.exec(id, { argv: ['sh', '-c', 'yes | head -c 1000000'] });
    expect(Buffer.byteLength(byDefault.stdout)).toBe(64 * 1024);
    expect(byDefault.truncated).toBe(true);

    const none = await runtime.exec(id, { argv: ['echo', 'hello'], maxOutputBytes: 0 });
    expect(none).toMatchObject({ stdout: '', stdoutBytes: 6, truncated: true });
  });

  it('passes stdin through, and the value shows in neither the exec record nor the events', async () => {
    const { id } = await pool.create();
    const since = new Date(Date.now() - 1_000);
    const canary = `dso-canary-${randomUUID()}`;
    const stdin = new TextEncoder().encode(canary);
    const script = 'cat > /tmp/got; while [ ! -f /tmp/release ]; do sleep 0.05; done; cat /tmp/got';
    const running = runtime.exec(id, { argv: ['sh', '-c', script], stdin, env: { MODE: 'test' } });

    // While it waits, the engine holds the exec's record: read it as `docker exec` inspect would.
    const execId = await waitFor('the exec to be listed', async () => {
      const ids = (await docker.getContainer(id).inspect()).ExecIDs ?? [];
      return ids[0];
    });
    await waitFor('stdin to be read', async () =>
      (await shIn(id, 'cat /tmp/got 2>/dev/null; true')) === canary ? true : undefined,
    );
    const record = JSON.stringify(await docker.getExec(execId).inspect());
    expect(record).toContain('cat > /tmp/got');
    expect(record).not.toContain(canary);

    await shIn(id, 'touch /tmp/release');
    const result = await running;
    expect(result).toMatchObject({ exitCode: 0, stdout: canary });
    // The caller's buffer is theirs: left as it was.
    expect(new TextDecoder().decode(stdin)).toBe(canary);

    // Docker publishes argv to every events subscriber (Podman's `exec` event carries none);
    // stdin is in no event on either.
    const events = await eventsOf(id, since);
    const { kind } = await testEngineFacts();
    expect(events.actions).toContain(kind === 'podman' ? 'exec' : `exec_create: sh -c ${script}`);
    expect(events.raw).not.toContain(canary);
  });

  it("writes a large stdin whole and closes it, leaving the caller's buffer as it was", async () => {
    const { id } = await pool.create();
    const stdin = randomBytes(8 * 1024 * 1024);
    const digest = createHash('sha256').update(stdin).digest('hex');
    const result = await runtime.exec(id, { argv: ['sha256sum'], stdin });
    expect(result.exitCode).toBe(0);
    expect(result.stdout.split(' ')[0]).toBe(digest);
    expect(createHash('sha256').update(stdin).digest('hex')).toBe(digest);
  });

  it("runs as the container's user by default, and as the user asked for otherwise", async () => {
    const asRoot = await pool.create();
    const as1000 = await pool.create({ user: '1000:1000' });
    const idOf = async (id: string, user?: string) =>
      (await runtime.exec(id, { argv: ['id', '-u'], ...(user === undefined ? {} : { user }) }))
        .stdout;
    expect(await idOf(asRoot.id)).toBe('0\n');
    expect(await idOf(asRoot.id, '1000:1000')).toBe('1000\n');
    expect(await idOf(as1000.id)).toBe('1000\n');
    expect(await idOf(as1000.id, '0:0')).toBe('0\n');
  });

  it('reports a user the container does not know: exit 126 on Docker, DSO_DOCKER_USER_UNRESOLVED on Podman', async () => {
    const { id } = await pool.create();
    const { kind } = await testEngineFacts();
    const asUnknown = runtime.exec(id, { argv: ['true'], user: 'nosuchuser' });
    if (kind === 'docker') {
      // Docker starts the exec and prints runc's words; the exit code is the result.
      const result = await asUnknown;
      expect(result.exitCode).toBe(126);
      expect(result.stdout + result.stderr).toContain('unable to find user nosuchuser');
      return;
    }
    // Podman refuses the exec's start with HTTP 500 and the same words.
    await expect(asUnknown).rejects.toMatchObject({
      code: 'DSO_DOCKER_USER_UNRESOLVED',
      retryable: false,
      message: expect.stringContaining('unable to find user nosuchuser'),
    });
    await expect(runtime.exec(id, { argv: ['true'], user: '0:nosuchgroup' })).rejects.toMatchObject(
      {
        code: 'DSO_DOCKER_USER_UNRESOLVED',
        message: expect.stringContaining('unable to find group nosuchgroup'),
      },
    );
  });

  it('sets env and workingDir for the command', async () => {
    const { id } = await pool.create();
    const result = await runtime.exec(id, {
      argv: ['sh', '-c', 'pwd; echo "$GREETING"'],
      env: { GREETING: 'hello there' },
      workingDir: '/tmp',
    });
    expect(result.stdout).toBe('/tmp\nhello there\n');
  });

  it('rejects with DSO_DOCKER_TIMEOUT at timeoutMs, leaving the process running', async () => {
    const { id } = await pool.create();
    const started = performance.now();
    const error = await runtime
      .exec(id, { argv: ['sleep', '47'], timeoutMs: 300 })
      .catch((caught: unknown) => caught);
    expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_TIMEOUT');
    expect((error as Error).message).toContain(`exec in container ${id}`);
    expect(performance.now() - started).toBeLessThan(5_000);
    // The Engine API cannot kill an exec: the documented hazard, checked.
    expect(await shIn(id, 'ps | grep -c "[s]leep 47" || true')).toBe('1\n');
  });

  it('rejects with DSO_DOCKER_ABORTED when its signal aborts', async () => {
    const { id } = await pool.create();
    const controller = new AbortController();
    const running = codeOf(runtime.exec(id, { argv: ['sleep', '30'], signal: controller.signal }));
    setTimeout(() => controller.abort(), 100);
    expect(await running).toBe('DSO_DOCKER_ABORTED');
    expect(await codeOf(runtime.exec(id, { argv: ['true'], signal: AbortSignal.abort() }))).toBe(
      'DSO_DOCKER_ABORTED',
    );
  });

  it('rejects with DSO_DOCKER_CONTAINER_NOT_RUNNING or _NOT_FOUND', async () => {
    const created = await pool.create({ start: false });
    expect(await codeOf(runtime.exec(created.id, { argv: ['true'] }))).toBe(
      'DSO_DOCKER_CONTAINER_NOT_RUNNING',
    );
    expect(await codeOf(runtime.exec(`dso-test-missing-${randomUUID()}`, { argv: ['true'] }))).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
  });

  it('rejects a bad request with DSO_DOCKER_INVALID_REQUEST before reaching the engine', async () => {
    const { id } = await pool.create();
    const since = new Date(Date.now() - 1_000);
    expect(await codeOf(runtime.exec(id, { argv: [] }))).toBe('DSO_DOCKER_INVALID_REQUEST');
    expect(await codeOf(runtime.exec(id, { argv: ['true'], user: 'a b' }))).toBe(
      'DSO_DOCKER_INVALID_REQUEST',
    );
    const { actions } = await eventsOf(id, since);
    expect(actions).toContain('start');
    expect(actions.filter((action) => action.startsWith('exec_'))).toEqual([]);
  });
});

describe('sendSignal', () => {
  const trapping = [
    'sh',
    '-c',
    'trap "echo got-hup >> /tmp/signals" HUP; trap "echo got-usr1 >> /tmp/signals" USR1; ' +
      'touch /tmp/ready; while :; do sleep 0.1; done',
  ];

  it('delivers a signal by name in any form, and by number', async () => {
    const { id } = await createCommandContainer(pool, trapping);
    // PID 1 ignores a signal it has no handler for: wait until the traps are set.
    await waitFor('the traps', async () =>
      (await shIn(id, 'test -f /tmp/ready && echo y; true')) === 'y\n' ? true : undefined,
    );
    await runtime.sendSignal(id, 'hup');
    await waitFor('the HUP trap', async () =>
      (await shIn(id, 'cat /tmp/signals 2>/dev/null; true')).includes('got-hup') ? true : undefined,
    );
    await runtime.sendSignal(id, 10); // SIGUSR1 on Linux x86 and arm
    await waitFor('the USR1 trap', async () =>
      (await shIn(id, 'cat /tmp/signals 2>/dev/null; true')).includes('got-usr1')
        ? true
        : undefined,
    );
    expect(await shIn(id, 'cat /tmp/signals 2>/dev/null; true')).toBe('got-hup\ngot-usr1\n');
  });

  it('rejects an unknown signal with DSO_DOCKER_INVALID_REQUEST listing examples', async () => {
    const { id } = await pool.create();
    const error = await runtime.sendSignal(id, 'SIGFOO').catch((caught: unknown) => caught);
    expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_INVALID_REQUEST');
    expect((error as Error).message).toContain('SIGHUP');
    expect(await codeOf(runtime.sendSignal(id, 0))).toBe('DSO_DOCKER_INVALID_REQUEST');
  });

  it('rejects with DSO_DOCKER_CONTAINER_NOT_RUNNING for a stopped container, _NOT_FOUND for none', async () => {
    const { id } = await pool.create();
    await docker.getContainer(id).stop({ t: 0 });
    expect(await codeOf(runtime.sendSignal(id, 'SIGHUP'))).toBe('DSO_DOCKER_CONTAINER_NOT_RUNNING');
    expect(await codeOf(runtime.sendSignal(`dso-test-missing-${randomUUID()}`, 'HUP'))).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
  });
});

describe('restartContainer', () => {
  it('stops and starts a running container: a new StartedAt, running again', async () => {
    const { id } = await pool.create();
    const before = await startedAt(id);
    await runtime.restartContainer(id, { stopTimeoutMs: 0 });
    const info = await docker.getContainer(id).inspect();
    expect(info.State.Running).toBe(true);
    expect(info.State.StartedAt).not.toBe(before);
    // A restart asked for by hand is not one of the engine's policy restarts.
    expect(info.RestartCount).toBe(0);
  });

  it('waits the stop grace, rounded up to a second, for a process that ignores SIGTERM', async () => {
    // `sleep` as PID 1 has no SIGTERM handler, so only the SIGKILL after the grace stops it.
    const { id } = await pool.create();
    const started = performance.now();
    await runtime.restartContainer(id, { stopTimeoutMs: 1 });
    expect(performance.now() - started).toBeGreaterThanOrEqual(900);
    expect((await docker.getContainer(id).inspect()).State.Running).toBe(true);
  });

  it('starts a stopped container', async () => {
    const { id } = await pool.create({ start: false });
    await runtime.restartContainer(id, { stopTimeoutMs: 0 });
    expect((await docker.getContainer(id).inspect()).State.Running).toBe(true);
  });

  it('rejects with DSO_DOCKER_CONTAINER_NOT_FOUND, and a bad stopTimeoutMs as invalid', async () => {
    expect(await codeOf(runtime.restartContainer(`dso-test-missing-${randomUUID()}`))).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
    const { id } = await pool.create();
    expect(await codeOf(runtime.restartContainer(id, { stopTimeoutMs: -1 }))).toBe(
      'DSO_DOCKER_INVALID_REQUEST',
    );
    expect(await codeOf(runtime.restartContainer(id, { stopTimeoutMs: 1.5 }))).toBe(
      'DSO_DOCKER_INVALID_REQUEST',
    );
  });

  it('rejects with DSO_DOCKER_ABORTED when its signal aborts', async () => {
    const { id } = await pool.create();
    expect(
      await codeOf(runtime.restartContainer(id, { stopTimeoutMs: 0, signal: AbortSignal.abort() })),
    ).toBe('DSO_DOCKER_ABORTED');
  });
});

describe('after close', () => {
  it('refuses exec, sendSignal and restartContainer with DSO_DOCKER_CLOSED', async () => {
    const own = await createDockerRuntime();
    await own.close();
    expect(await codeOf(own.exec('x', { argv: ['true'] }))).toBe('DSO_DOCKER_CLOSED');
    expect(await codeOf(own.sendSignal('x', 'HUP'))).toBe('DSO_DOCKER_CLOSED');
    expect(await codeOf(own.restartContainer('x'))).toBe('DSO_DOCKER_CLOSED');
  });
});
