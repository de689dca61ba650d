import type { Duplex } from 'node:stream';
import { backoffDelay, onAbort, sleep } from '@dso/async';
import type Docker from 'dockerode';
import type { Deadline } from './deadline.js';
import { DockerStreamDemuxer, TailBuffer } from './demux.js';
import type { EngineContext } from './engine-context.js';

/** What one exec did: its exit code and the bounded tail of its output. */
export interface ExecOutcome {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Bytes the process wrote to stdout, kept or not. */
  stdoutBytes: number;
  /** Bytes the process wrote to stderr, kept or not. */
  stderrBytes: number;
}

/** How {@link runExec} runs a command. Nothing here may hold a secret value but `stdin`. */
export interface ExecSpec {
  argv: string[];
  /** `uid[:gid]` or a name; `0:0` for root. */
  user: string;
  /** `KEY=value` entries added to the container's environment (visible in exec inspect). */
  env: string[];
  workingDir: string;
  /** Written to the process's stdin, then stdin is half-closed. The caller zeroes it. */
  stdin?: Uint8Array | undefined;
  /** Bytes of the tail kept of stdout and of stderr each. */
  maxOutputBytes: number;
}

/**
 * Runs one exec in a container: create, start hijacked, write stdin (if any), half-close,
 * collect the bounded output until the engine closes the stream, then read the exit code. The
 * socket is destroyed on every path: a leaked hijacked socket keeps the exec's connection open.
 * Errors are the engine's raw ones: the caller maps them with its own operation name.
 */
export async function runExec(
  context: EngineContext,
  containerId: string,
  spec: ExecSpec,
  deadline: Deadline,
): Promise<ExecOutcome> {
  const container = context.docker.getContainer(containerId);
  deadline.signal.throwIfAborted();
  const exec = await container.exec({
    Cmd: spec.argv,
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    User: spec.user,
    Env: spec.env,
    WorkingDir: spec.workingDir,
    Privileged: false,
    abortSignal: deadline.signal,
  });
  deadline.signal.throwIfAborted();
  const socket = (await exec.start({
    hijack: true,
    stdin: true,
    Detach: false,
    Tty: false,
    abortSignal: deadline.signal,
  })) as Duplex;
  const untrack = context.track(socket);
  const stdout = new TailBuffer(spec.maxOutputBytes);
  const stderr = new TailBuffer(spec.maxOutputBytes);
  const demuxer = new DockerStreamDemuxer(stdout, stderr);
  let stopDestroying = () => {};
  try {
    await new Promise<void>((resolve) => {
      socket.on('data', (chunk: Buffer) => demuxer.push(chunk));
      // The process may exit before reading all of stdin: the write then fails with EPIPE or
      // ECONNRESET. Nothing is lost: the exit code says what happened.
      socket.on('error', () => resolve());
      socket.once('end', () => resolve());
      socket.once('close', () => resolve());
      stopDestroying = onAbort(deadline.signal, () => socket.destroy());
      if (deadline.signal.aborted) return;
      if (spec.stdin !== undefined && spec.stdin.byteLength > 0) socket.write(spec.stdin);
      // Half-close: the process sees EOF on stdin; the engine keeps sending output until exit.
      socket.end();
    });
  } finally {
    stopDestroying();
    socket.destroy();
    untrack();
  }
  deadline.signal.throwIfAborted();
  const exitCode = await exitCodeOf(exec, deadline);
  return {
    exitCode,
    stdout: stdout.toString(),
    stderr: stderr.toString(),
    stdoutBytes: stdout.total,
    stderrBytes: stderr.total,
  };
}

/** The exec's exit code; the engine may record it a moment after the stream closes. */
async function exitCodeOf(exec: Docker.Exec, deadline: Deadline): Promise<number> {
  for (let attempt = 1; ; attempt += 1) {
    const info = await exec.inspect({ abortSignal: deadline.signal });
    if (!info.Running && typeof info.ExitCode === 'number') return info.ExitCode;
    await sleep(backoffDelay(attempt, { baseMs: 5, maxMs: 100, jitter: 'none' }), {
      signal: deadline.signal,
    });
  }
}
