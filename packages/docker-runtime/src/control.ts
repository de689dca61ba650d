import { assertContainerId } from './container-id.js';
import { Deadline } from './deadline.js';
import type { EngineContext } from './engine-context.js';
import { toEngineError } from './engine-errors.js';
import { DockerRuntimeError } from './errors.js';
import { runExec } from './exec.js';
import { SWARM_TASK_ID_LABEL } from './swarm.js';

/**
 * Default of {@link ExecRequest.maxOutputBytes}: bytes of the tail of stdout, and of stderr,
 * kept; the rest is counted, not kept. Also what `writeFiles` keeps of its own exec.
 */
export const MAX_EXEC_OUTPUT_BYTES = 64 * 1024;
/** The largest {@link ExecRequest.maxOutputBytes} a request may ask for. */
export const MAX_EXEC_OUTPUT_LIMIT_BYTES = 16 * 1024 * 1024;
/** The largest {@link ExecRequest.stdin}. */
export const MAX_EXEC_STDIN_BYTES = 64 * 1024 * 1024;
/** The largest single argument of {@link ExecRequest.argv} or `KEY=value` entry of its env. */
export const MAX_EXEC_ARG_BYTES = 64 * 1024;
/** The largest {@link ExecRequest.argv} and env together. */
export const MAX_EXEC_COMMAND_BYTES = 256 * 1024;
/** Default grace of {@link DockerRuntime.restartContainer} and `stopContainer` before SIGKILL. */
export const DEFAULT_STOP_TIMEOUT_MS = 10_000;

/** The longest a Node timer can wait; a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A command to run in a container with {@link DockerRuntime.exec}. The engine keeps `argv`,
 * `env`, `user` and `workingDir` with the exec and publishes `argv` in its events and exec
 * inspect: only `stdin` may carry a secret value.
 */
export interface ExecRequest {
  /**
   * The command and its arguments, run directly (no shell unless you name one). Stored by the
   * engine and published in its `exec_create`/`exec_start` events to every events subscriber:
   * never a secret value. At most 64 KiB an argument, 256 KiB with env; no NUL.
   */
  argv: string[];
  /**
   * `uid[:gid]`, `name[:group]` or a mix, as `docker exec --user` takes it; `0:0` for root.
   * @default the container's own user (`Config.User`; root when that is empty)
   */
  user?: string;
  /**
   * Variables added to the container's environment for this command. Kept by the engine with
   * the exec and readable in the process's `/proc/<pid>/environ`: never a secret value. Keys
   * `[A-Za-z_][A-Za-z0-9_]*`, no NUL.
   */
  env?: Record<string, string>;
  /**
   * An absolute directory to run in.
   * @default the container's working directory
   */
  workingDir?: string;
  /**
   * Bytes written to the command's stdin, after which stdin is closed (the command sees EOF).
   * The only channel for a secret value; at most 64 MiB. Not modified: zero it yourself when
   * done. A command that exits without reading it all is not an error.
   */
  stdin?: Uint8Array;
  /**
   * Bound on the whole call. When it passes the call rejects with DSO_DOCKER_TIMEOUT, but the
   * process inside may keep running: the Engine API cannot kill an exec.
   * @default the runtime's requestTimeoutMs
   */
  timeoutMs?: number;
  /**
   * Bytes of the tail of stdout, and of stderr, kept (each); 0 keeps none. Bytes beyond are
   * counted in `stdoutBytes`/`stderrBytes` and set `truncated`. At most 16 MiB.
   * @default MAX_EXEC_OUTPUT_BYTES (64 KiB)
   */
  maxOutputBytes?: number;
  /** Aborts the call (DSO_DOCKER_ABORTED); the process inside may keep running. */
  signal?: AbortSignal;
}

/** What {@link DockerRuntime.exec} returns: the exit code and the bounded tail of the output. */
export interface ExecResult {
  /** The command's exit code; 126/127 when it could not be run (not executable, not found). */
  exitCode: number;
  /** The last `maxOutputBytes` of stdout, decoded as UTF-8 (a cut may split a character). */
  stdout: string;
  /** The last `maxOutputBytes` of stderr, decoded as UTF-8. */
  stderr: string;
  /** Bytes written to stdout in all, kept or not. */
  stdoutBytes: number;
  /** Bytes written to stderr in all, kept or not. */
  stderrBytes: number;
  /** True when either stream wrote more than `maxOutputBytes` and its head was dropped. */
  truncated: boolean;
  /** Wall time of the whole call, exec create to exit code. */
  durationMs: number;
}

/** Runs {@link DockerRuntime.exec}; see its contract there. */
export async function execInContainer(
  context: EngineContext,
  id: string,
  request: ExecRequest,
): Promise<ExecResult> {
  const startedAt = performance.now();
  context.assertOpen('exec in container');
  assertContainerId(id);
  const valid = validateExecRequest(request, context.settings.requestTimeoutMs);
  const deadline = new Deadline(
    { caller: request.signal, closed: context.closed },
    valid.timeoutMs,
  );
  try {
    const outcome = await runExec(
      context,
      id,
      {
        argv: valid.argv,
        // Empty means the container's own user and directory: the engine fills them in from
        // the container's config, as `docker exec` without -u / -w does.
        user: valid.user ?? '',
        env: valid.env,
        workingDir: valid.workingDir ?? '',
        stdin: valid.stdin,
        maxOutputBytes: valid.maxOutputBytes,
      },
      deadline,
    );
    return {
      ...outcome,
      truncated:
        outcome.stdoutBytes > valid.maxOutputBytes || outcome.stderrBytes > valid.maxOutputBytes,
      durationMs: Math.round((performance.now() - startedAt) * 100) / 100,
    };
  } catch (error) {
    throw toEngineError(error, {
      operation: `exec in container ${id}`,
      endpoint: context.host,
      containerId: id,
      dialect: context.dialect,
      deadlineCause: deadline.cause,
      timeoutMs: valid.timeoutMs,
    });
  } finally {
    deadline.dispose();
  }
}

/** Runs {@link DockerRuntime.sendSignal}; see its contract there. */
export async function signalContainer(
  context: EngineContext,
  id: string,
  unixSignal: string | number,
  options: { signal?: AbortSignal },
): Promise<void> {
  context.assertOpen('send a signal');
  assertContainerId(id);
  const name = normaliseSignal(unixSignal);
  await context.request(`send ${name} to container ${id}`, options.signal, id, (signal) =>
    context.docker.getContainer(id).kill({ signal: name, abortSignal: signal }),
  );
}

/**
 * Runs {@link DockerRuntime.restartContainer}; see its contract there. A Swarm task is refused
 * before anything is stopped: restarted in place it would run on beside the task Swarm starts
 * for the one it saw end (an orphan until `docker service rm`).
 */
export function restartContainer(
  context: EngineContext,
  id: string,
  options: { stopTimeoutMs?: number; signal?: AbortSignal },
): Promise<void> {
  return withGrace(context, 'restart container', id, options, async (t, abortSignal) => {
    const container = context.docker.getContainer(id);
    const info = await container.inspect({ abortSignal });
    const labels = (info.Config?.Labels ?? {}) as Record<string, string>;
    if (labels[SWARM_TASK_ID_LABEL] !== undefined) {
      const name = (info.Name ?? id).replace(/^\//, '');
      throw new DockerRuntimeError(
        'DSO_DOCKER_RESTART_REFUSED',
        `container ${name} is a Swarm task: stop it and let its service replace it (a task restarted in place runs on beside the task Swarm starts for it)`,
        { reason: 'swarm-task', containerId: id, name, taskId: labels[SWARM_TASK_ID_LABEL] },
      );
    }
    await container.restart({ t, abortSignal });
  });
}

/** Runs {@link DockerRuntime.stopContainer}; see its contract there. */
export function stopContainer(
  context: EngineContext,
  id: string,
  options: { stopTimeoutMs?: number; signal?: AbortSignal },
): Promise<void> {
  return withGrace(context, 'stop container', id, options, async (t, abortSignal) => {
    try {
      await context.docker.getContainer(id).stop({ t, abortSignal });
    } catch (error) {
      // 304: it had stopped already, which is what was asked.
      if ((error as { statusCode?: unknown } | null)?.statusCode !== 304) throw error;
    }
  });
}

/**
 * One stop or restart: the grace in whole seconds for the engine, and a bound of that grace
 * plus the usual request timeout (the engine answers only once the container has stopped).
 */
async function withGrace(
  context: EngineContext,
  operation: string,
  id: string,
  options: { stopTimeoutMs?: number; signal?: AbortSignal },
  call: (seconds: number, abortSignal: AbortSignal) => Promise<unknown>,
): Promise<void> {
  context.assertOpen(operation);
  assertContainerId(id);
  const stopTimeoutMs = options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  if (!Number.isSafeInteger(stopTimeoutMs) || stopTimeoutMs < 0) {
    throw invalid('stopTimeoutMs must be an integer number of ms, 0 or more', 'stopTimeoutMs');
  }
  const seconds = Math.ceil(stopTimeoutMs / 1_000);
  const timeoutMs = Math.min(MAX_TIMER_MS, seconds * 1_000 + context.settings.requestTimeoutMs);
  const deadline = new Deadline({ caller: options.signal, closed: context.closed }, timeoutMs);
  try {
    await call(seconds, deadline.signal);
  } catch (error) {
    throw toEngineError(error, {
      operation: `${operation} ${id}`,
      endpoint: context.host,
      containerId: id,
      dialect: context.dialect,
      deadlineCause: deadline.cause,
      timeoutMs,
    });
  } finally {
    deadline.dispose();
  }
}

/** An exec request checked and filled in with defaults. */
export interface ValidatedExecRequest {
  argv: string[];
  user: string | undefined;
  /** `KEY=value` entries. */
  env: string[];
  workingDir: string | undefined;
  stdin: Uint8Array | undefined;
  timeoutMs: number;
  maxOutputBytes: number;
}

const ENV_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** One side of `user[:group]`: a numeric id or a name as useradd and groupadd allow it. */
const USER_PART = /^(?:\d{1,10}|[A-Za-z_][A-Za-z0-9_.-]{0,255}\$?)$/;
const MAX_ID = 4_294_967_294;
const MAX_PATH_BYTES = 4_096;

/**
 * Checks an exec request and fills in its defaults. Messages name the field and the rule,
 * never an argument's or a value's content.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST naming the field
 */
export function validateExecRequest(
  request: ExecRequest,
  defaultTimeoutMs: number,
): ValidatedExecRequest {
  if (typeof request !== 'object' || request === null) {
    throw invalid('the exec request must be an object', 'request');
  }
  const { argv } = request;
  if (!Array.isArray(argv) || argv.length === 0) {
    throw invalid('argv must be a non-empty array of strings', 'argv');
  }
  let commandBytes = 0;
  argv.forEach((arg: unknown, index) => {
    if (typeof arg !== 'string') throw invalid(`argv[${index}] must be a string`, 'argv');
    if (arg.includes('\0')) throw invalid(`argv[${index}] contains a NUL byte`, 'argv');
    const bytes = Buffer.byteLength(arg);
    if (bytes > MAX_EXEC_ARG_BYTES) {
      throw invalid(`argv[${index}] is longer than ${MAX_EXEC_ARG_BYTES} bytes`, 'argv');
    }
    commandBytes += bytes + 1;
  });
  if (argv[0] === '') throw invalid('argv[0] (the command) must not be empty', 'argv');

  const env: string[] = [];
  if (request.env !== undefined) {
    if (typeof request.env !== 'object' || request.env === null || Array.isArray(request.env)) {
      throw invalid('env must be an object of names to string values', 'env');
    }
    for (const [key, value] of Object.entries(request.env)) {
      if (!ENV_KEY.test(key)) {
        throw invalid(
          `env name ${JSON.stringify(key.slice(0, 64))} must match [A-Za-z_][A-Za-z0-9_]*`,
          'env',
        );
      }
      if (typeof value !== 'string') throw invalid(`env ${key} must be a string`, 'env');
      if (value.includes('\0')) throw invalid(`env ${key} contains a NUL byte`, 'env');
      const entry = `${key}=${value}`;
      const bytes = Buffer.byteLength(entry);
      if (bytes > MAX_EXEC_ARG_BYTES) {
        throw invalid(`env ${key} is longer than ${MAX_EXEC_ARG_BYTES} bytes`, 'env');
      }
      commandBytes += bytes + 1;
      env.push(entry);
    }
  }
  if (commandBytes > MAX_EXEC_COMMAND_BYTES) {
    throw invalid(
      `argv and env together are longer than ${MAX_EXEC_COMMAND_BYTES} bytes: pass data on stdin`,
      'argv',
    );
  }

  const { user } = request;
  if (user !== undefined) {
    const parts = typeof user === 'string' ? user.split(':') : [];
    const valid =
      parts.length >= 1 &&
      parts.length <= 2 &&
      parts.every(
        (part) => USER_PART.test(part) && (!/^\d+$/.test(part) || Number(part) <= MAX_ID),
      );
    if (!valid) {
      throw invalid(
        'user must be uid[:gid] or name[:group] as `docker exec --user` takes it (0:0 for root); ' +
          "omit it for the container's own user",
        'user',
      );
    }
  }

  const { workingDir } = request;
  if (
    workingDir !== undefined &&
    (typeof workingDir !== 'string' ||
      !workingDir.startsWith('/') ||
      workingDir.includes('\0') ||
      Buffer.byteLength(workingDir) > MAX_PATH_BYTES)
  ) {
    throw invalid('workingDir must be an absolute path without NUL', 'workingDir');
  }

  const { stdin } = request;
  if (stdin !== undefined) {
    if (!(stdin instanceof Uint8Array)) throw invalid('stdin must be a Uint8Array', 'stdin');
    if (stdin.byteLength > MAX_EXEC_STDIN_BYTES) {
      throw invalid(`stdin is larger than ${MAX_EXEC_STDIN_BYTES} bytes`, 'stdin');
    }
  }

  const timeoutMs = request.timeoutMs ?? defaultTimeoutMs;
  if (typeof timeoutMs !== 'number' || !(timeoutMs > 0) || timeoutMs > MAX_TIMER_MS) {
    throw invalid(
      `timeoutMs must be a positive number of ms, at most ${MAX_TIMER_MS}`,
      'timeoutMs',
    );
  }

  const maxOutputBytes = request.maxOutputBytes ?? MAX_EXEC_OUTPUT_BYTES;
  if (
    !Number.isSafeInteger(maxOutputBytes) ||
    maxOutputBytes < 0 ||
    maxOutputBytes > MAX_EXEC_OUTPUT_LIMIT_BYTES
  ) {
    throw invalid(
      `maxOutputBytes must be an integer from 0 to ${MAX_EXEC_OUTPUT_LIMIT_BYTES}`,
      'maxOutputBytes',
    );
  }

  return {
    argv: [...argv],
    user,
    env,
    workingDir,
    stdin,
    timeoutMs,
    maxOutputBytes,
  };
}

/** Linux signal names the engine knows, without `SIG`; real-time ones are added below. */
const SIGNAL_NAMES = new Set([
  'ABRT',
  'ALRM',
  'BUS',
  'CHLD',
  'CLD',
  'CONT',
  'FPE',
  'HUP',
  'ILL',
  'INT',
  'IO',
  'IOT',
  'KILL',
  'PIPE',
  'POLL',
  'PROF',
  'PWR',
  'QUIT',
  'SEGV',
  'STKFLT',
  'STOP',
  'SYS',
  'TERM',
  'TRAP',
  'TSTP',
  'TTIN',
  'TTOU',
  'URG',
  'USR1',
  'USR2',
  'VTALRM',
  'WINCH',
  'XCPU',
  'XFSZ',
  'RTMIN',
  'RTMAX',
]);
for (let offset = 1; offset <= 15; offset += 1) SIGNAL_NAMES.add(`RTMIN+${offset}`);
for (let offset = 1; offset <= 14; offset += 1) SIGNAL_NAMES.add(`RTMAX-${offset}`);

/** The highest signal number on Linux (SIGRTMAX). */
const MAX_SIGNAL_NUMBER = 64;

/**
 * A signal as the engine takes it: a name (`hup`, `SIGHUP`, `RTMIN+3`) becomes `SIGHUP`; a
 * number from 1 to 64 (or its digits) becomes its digits.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for anything else
 */
export function normaliseSignal(value: string | number): string {
  if (typeof value === 'number') {
    if (Number.isInteger(value) && value >= 1 && value <= MAX_SIGNAL_NUMBER) return String(value);
  } else if (typeof value === 'string') {
    const text = value.trim().toUpperCase();
    if (/^\d{1,2}$/.test(text)) {
      const number = Number(text);
      if (number >= 1 && number <= MAX_SIGNAL_NUMBER) return String(number);
    } else {
      const name = text.startsWith('SIG') ? text.slice(3) : text;
      if (SIGNAL_NAMES.has(name)) return `SIG${name}`;
    }
  }
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 32)) : String(value);
  throw invalid(
    `unknown signal ${shown}: use a name such as SIGHUP, SIGTERM, SIGUSR1 or RTMIN+1 (the SIG ` +
      'prefix and case are optional), or a number from 1 to 64',
    'signal',
  );
}

// The same rule as the runtime's own calls: an id or a name, nothing that could change the
// request's path (`/containers/{id}/...`).
function invalid(message: string, field: string): DockerRuntimeError {
  return new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', message, { field });
}
