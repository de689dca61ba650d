import { describe, expect, it } from 'vitest';
import {
  DEFAULT_STOP_TIMEOUT_MS,
  type ExecRequest,
  execInContainer,
  MAX_EXEC_OUTPUT_BYTES,
  normaliseSignal,
  restartContainer,
  signalContainer,
  stopContainer,
  validateExecRequest,
} from './control.js';
import type { EngineContext } from './engine-context.js';
import { isDockerRuntimeError } from './errors.js';

function failureOf(run: () => unknown): { code: string; message: string; field?: unknown } {
  try {
    run();
  } catch (error) {
    if (!isDockerRuntimeError(error))
      return { code: `not a DockerRuntimeError: ${error}`, message: '' };
    return { code: error.code, message: error.message, field: error.details.field };
  }
  return { code: 'returned', message: '' };
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return isDockerRuntimeError(error) ? error.code : `not a DockerRuntimeError: ${error}`;
  }
  return 'resolved';
}

/** An engine context whose container calls are recorded; nothing reaches a socket. */
function fakeContext(requestTimeoutMs = 30_000, stopStatus?: number) {
  const calls: Array<{ method: string; id: string; options: Record<string, unknown> }> = [];
  const closed = new AbortController();
  const container = (id: string) => ({
    // `task…` is a Swarm task container, `gone…` fails to inspect (the engine times out).
    inspect: async (options: Record<string, unknown>) => {
      calls.push({ method: 'inspect', id, options });
      if (id.startsWith('gone'))
        throw Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
      return {
        Name: `/${id}`,
        Config: {
          Labels: id.startsWith('task')
            ? { 'com.docker.swarm.task.id': 'x7', 'com.docker.swarm.service.name': 'web' }
            : { 'dso.enable': 'true' },
        },
      };
    },
    kill: async (options: Record<string, unknown>) => {
      calls.push({ method: 'kill', id, options });
    },
    restart: async (options: Record<string, unknown>) => {
      calls.push({ method: 'restart', id, options });
    },
    stop: async (options: Record<string, unknown>) => {
      calls.push({ method: 'stop', id, options });
      if (stopStatus !== undefined) {
        throw Object.assign(new Error(`(HTTP code ${stopStatus}) stop`), {
          statusCode: stopStatus,
        });
      }
    },
    exec: async (options: Record<string, unknown>) => {
      calls.push({ method: 'exec', id, options });
      throw Object.assign(new Error('(HTTP code 409) container is not running'), {
        statusCode: 409,
      });
    },
  });
  const context = {
    docker: { getContainer: container },
    host: 'unix:///fake.sock',
    settings: { connectTimeoutMs: 5_000, requestTimeoutMs, writeTimeoutMs: 30_000 },
    closed: closed.signal,
    track: () => () => undefined,
    assertOpen: () => undefined,
    request: async (
      _operation: string,
      _caller: AbortSignal | undefined,
      _containerId: string | undefined,
      call: (signal: AbortSignal) => Promise<unknown>,
    ) => call(new AbortController().signal),
  } as unknown as EngineContext;
  return { context, calls };
}

describe('validateExecRequest', () => {
  it('fills in the defaults: the container user and directory, 64 KiB of output, the request timeout', () => {
    expect(validateExecRequest({ argv: ['true'] }, 1_234)).toEqual({
      argv: ['true'],
      user: undefined,
      env: [],
      workingDir: undefined,
      stdin: undefined,
      timeoutMs: 1_234,
      maxOutputBytes: MAX_EXEC_OUTPUT_BYTES,
    });
  });

  it('turns env into KEY=value entries and keeps stdin as given, not copied', () => {
    const stdin = new Uint8Array([1, 2, 3]);
    const valid = validateExecRequest(
      { argv: ['cat'], env: { A: '1', _b2: 'x=y' }, stdin, user: 'app:staff', workingDir: '/srv' },
      1_000,
    );
    expect(valid.env).toEqual(['A=1', '_b2=x=y']);
    expect(valid.stdin).toBe(stdin);
    expect(valid.user).toBe('app:staff');
    expect(valid.workingDir).toBe('/srv');
  });

  it.each<[string, Partial<ExecRequest> & Record<string, unknown>, string]>([
    ['an empty argv', { argv: [] }, 'argv'],
    ['argv that is not an array', { argv: 'ls' as unknown as string[] }, 'argv'],
    ['a non-string argument', { argv: ['ls', 3 as unknown as string] }, 'argv'],
    ['a NUL in an argument', { argv: ['ls', 'a\0b'] }, 'argv'],
    ['an empty command', { argv: [''] }, 'argv'],
    ['an argument over 64 KiB', { argv: ['echo', 'x'.repeat(64 * 1024 + 1)] }, 'argv'],
    ['argv over 256 KiB in all', { argv: ['echo', ...Array(5).fill('x'.repeat(60_000))] }, 'argv'],
    ['an env name with a dash', { env: { 'A-B': '1' } }, 'env'],
    ['an env name starting with a digit', { env: { '1A': '1' } }, 'env'],
    ['a NUL in an env value', { env: { A: 'x\0' } }, 'env'],
    ['a non-string env value', { env: { A: 1 as unknown as string } }, 'env'],
    ['env as an array', { env: ['A=1'] as unknown as Record<string, string> }, 'env'],
    ['an empty user', { user: '' }, 'user'],
    ['a user with a space', { user: 'a b' }, 'user'],
    ['a user with three parts', { user: '1:2:3' }, 'user'],
    ['a uid out of range', { user: '4294967295' }, 'user'],
    ['a relative workingDir', { workingDir: 'tmp' }, 'workingDir'],
    ['a zero timeout', { timeoutMs: 0 }, 'timeoutMs'],
    ['a NaN timeout', { timeoutMs: Number.NaN }, 'timeoutMs'],
    ['a timeout past what a timer can wait', { timeoutMs: 2 ** 31 }, 'timeoutMs'],
    ['a negative maxOutputBytes', { maxOutputBytes: -1 }, 'maxOutputBytes'],
    ['a fractional maxOutputBytes', { maxOutputBytes: 1.5 }, 'maxOutputBytes'],
    ['maxOutputBytes over 16 MiB', { maxOutputBytes: 16 * 1024 * 1024 + 1 }, 'maxOutputBytes'],
    ['stdin as a string', { stdin: 'secret' as unknown as Uint8Array }, 'stdin'],
    ['stdin over 64 MiB', { stdin: new Uint8Array(64 * 1024 * 1024 + 1) }, 'stdin'],
  ])('rejects %s with DSO_DOCKER_INVALID_REQUEST naming the field', (_name, patch, field) => {
    const failure = failureOf(() => validateExecRequest({ argv: ['true'], ...patch }, 1_000));
    expect(failure.code).toBe('DSO_DOCKER_INVALID_REQUEST');
    expect(failure.field).toBe(field);
  });

  it('accepts the edges: 0 and 16 MiB of output, uid:gid, names, 64 KiB arguments', () => {
    for (const request of [
      { argv: ['true'], maxOutputBytes: 0 },
      { argv: ['true'], maxOutputBytes: 16 * 1024 * 1024 },
      { argv: ['true'], user: '0:0' },
      { argv: ['true'], user: '1000' },
      { argv: ['true'], user: 'www-data:www-data' },
      { argv: ['true'], user: 'machine$' },
      { argv: ['echo', 'x'.repeat(64 * 1024)] },
      { argv: ['true'], stdin: new Uint8Array(0) },
    ]) {
      expect(() => validateExecRequest(request, 1_000)).not.toThrow();
    }
  });

  it("never puts an argument's or a value's content in its message", () => {
    const secret = 'hunter2-value-that-must-not-leak';
    for (const patch of [
      { argv: ['echo', `${secret}\0`] },
      { env: { TOKEN: `${secret}\0` } },
      { argv: ['echo', secret.repeat(3_000)] },
    ]) {
      const failure = failureOf(() => validateExecRequest({ argv: ['true'], ...patch }, 1_000));
      expect(failure.code).toBe('DSO_DOCKER_INVALID_REQUEST');
      expect(failure.message).not.toContain(secret);
    }
  });
});

describe('normaliseSignal', () => {
  it.each([
    ['SIGHUP', 'SIGHUP'],
    ['HUP', 'SIGHUP'],
    ['hup', 'SIGHUP'],
    ['sigusr1', 'SIGUSR1'],
    [' SIGTERM ', 'SIGTERM'],
    ['rtmin+3', 'SIGRTMIN+3'],
    ['SIGRTMAX-1', 'SIGRTMAX-1'],
    [1, '1'],
    [64, '64'],
    ['15', '15'],
  ])('reads %j as %s', (input, expected) => {
    expect(normaliseSignal(input)).toBe(expected);
  });

  it.each(['SIGFOO', 'SIG', '', 'KILL 9', 'SIGRTMIN+16', '65', '0', 0, 65, -1, 1.5, Number.NaN])(
    'rejects %j with DSO_DOCKER_INVALID_REQUEST listing examples',
    (input) => {
      const failure = failureOf(() => normaliseSignal(input));
      expect(failure.code).toBe('DSO_DOCKER_INVALID_REQUEST');
      expect(failure.message).toContain('SIGHUP');
      expect(failure.message).toContain('1 to 64');
    },
  );
});

describe('signalContainer', () => {
  it('sends the normalised name through the engine call', async () => {
    const { context, calls } = fakeContext();
    await signalContainer(context, 'app', 'usr1', {});
    expect(calls).toEqual([
      {
        method: 'kill',
        id: 'app',
        options: { signal: 'SIGUSR1', abortSignal: expect.any(AbortSignal) },
      },
    ]);
  });

  it('refuses a bad signal or id without calling the engine', async () => {
    const { context, calls } = fakeContext();
    expect(await codeOf(signalContainer(context, 'app', 'nope', {}))).toBe(
      'DSO_DOCKER_INVALID_REQUEST',
    );
    expect(await codeOf(signalContainer(context, '../images', 'HUP', {}))).toBe(
      'DSO_DOCKER_INVALID_REQUEST',
    );
    expect(calls).toEqual([]);
  });
});

describe('restartContainer', () => {
  it(`gives the engine the grace in whole seconds, ${DEFAULT_STOP_TIMEOUT_MS} ms by default`, async () => {
    const { context, calls } = fakeContext();
    await restartContainer(context, 'app', {});
    await restartContainer(context, 'app', { stopTimeoutMs: 0 });
    await restartContainer(context, 'app', { stopTimeoutMs: 1 });
    await restartContainer(context, 'app', { stopTimeoutMs: 2_500 });
    const restarts = calls.filter((call) => call.method === 'restart');
    expect(restarts.map((call) => call.options.t)).toEqual([10, 0, 1, 3]);
  });

  it('refuses a Swarm task before anything is stopped: stop it and let its service replace it', async () => {
    const { context, calls } = fakeContext();
    const error = await restartContainer(context, 'task1', {}).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(isDockerRuntimeError(error)).toBe(true);
    expect(error).toMatchObject({
      code: 'DSO_DOCKER_RESTART_REFUSED',
      retryable: false,
      details: { reason: 'swarm-task', containerId: 'task1', name: 'task1', taskId: 'x7' },
    });
    expect((error as Error).message).toContain(
      'is a Swarm task: stop it and let its service replace it',
    );
    expect(calls.map((call) => call.method)).toEqual(['inspect']);
  });

  it('restarts nothing when the container cannot be inspected', async () => {
    const { context, calls } = fakeContext();
    expect(await codeOf(restartContainer(context, 'gone1', {}))).toBe('DSO_DOCKER_UNREACHABLE');
    expect(calls.map((call) => call.method)).toEqual(['inspect']);
  });

  it.each([-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY])(
    'rejects stopTimeoutMs %s without calling the engine',
    async (stopTimeoutMs) => {
      const { context, calls } = fakeContext();
      expect(await codeOf(restartContainer(context, 'app', { stopTimeoutMs }))).toBe(
        'DSO_DOCKER_INVALID_REQUEST',
      );
      expect(calls).toEqual([]);
    },
  );
});

describe('stopContainer', () => {
  it('stops with the grace in whole seconds, 10 s by default', async () => {
    const { context, calls } = fakeContext();
    await stopContainer(context, 'app', {});
    await stopContainer(context, 'app', { stopTimeoutMs: 1_500 });
    expect(calls.map((call) => [call.method, call.options.t])).toEqual([
      ['stop', 10],
      ['stop', 2],
    ]);
  });

  it('takes a container that had stopped already (HTTP 304) as stopped', async () => {
    const { context } = fakeContext(30_000, 304);
    expect(await codeOf(stopContainer(context, 'app', {}))).toBe('resolved');
  });

  it('maps a missing container to DSO_DOCKER_CONTAINER_NOT_FOUND', async () => {
    const { context } = fakeContext(30_000, 404);
    expect(await codeOf(stopContainer(context, 'app', {}))).toBe('DSO_DOCKER_CONTAINER_NOT_FOUND');
  });

  it('rejects a negative grace without calling the engine', async () => {
    const { context, calls } = fakeContext();
    expect(await codeOf(stopContainer(context, 'app', { stopTimeoutMs: -1 }))).toBe(
      'DSO_DOCKER_INVALID_REQUEST',
    );
    expect(calls).toEqual([]);
  });
});

describe('execInContainer', () => {
  it('maps the engine refusing a stopped container to DSO_DOCKER_CONTAINER_NOT_RUNNING', async () => {
    const { context, calls } = fakeContext();
    const error = await execInContainer(context, 'app', { argv: ['true'] }).catch(
      (caught: unknown) => caught,
    );
    expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_CONTAINER_NOT_RUNNING');
    // Empty user and directory: the engine then uses the container's own.
    expect(calls[0]?.options).toMatchObject({ Cmd: ['true'], User: '', WorkingDir: '', Env: [] });
  });

  it('rejects with DSO_DOCKER_ABORTED before any engine call when the signal is aborted', async () => {
    const { context, calls } = fakeContext();
    expect(
      await codeOf(
        execInContainer(context, 'app', { argv: ['true'], signal: AbortSignal.abort() }),
      ),
    ).toBe('DSO_DOCKER_ABORTED');
    expect(calls).toEqual([]);
  });
});
