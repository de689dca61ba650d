import type { EngineContext } from './engine-context.js';
import { DockerRuntimeError } from './errors.js';

/** A command to run in a container with {@link DockerRuntime.exec}. */
export interface ExecRequest {
  /** The command and its arguments. Published to every events subscriber: never a secret. */
  argv: string[];
  /** `uid[:gid]` or a user name. @default the container's user */
  user?: string;
  /** Added environment (stored by the engine, visible in exec inspect): never a secret. */
  env?: Record<string, string>;
  /** @default the container's working directory */
  workingDir?: string;
  /** Bytes written to the command's stdin, then stdin is closed. The only place for a secret. */
  stdin?: Uint8Array;
  /** @default the runtime's requestTimeoutMs */
  timeoutMs?: number;
  /** Tail of stdout and of stderr kept, each. @default MAX_EXEC_OUTPUT_BYTES */
  maxOutputBytes?: number;
  signal?: AbortSignal;
}

/** What {@link DockerRuntime.exec} returns: the exit code and the bounded tail of the output. */
export interface ExecResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Bytes written to stdout in all, kept or not. */
  stdoutBytes: number;
  stderrBytes: number;
  /** True when either stream wrote more than `maxOutputBytes` and its head was dropped. */
  truncated: boolean;
  durationMs: number;
}

export async function execInContainer(
  _context: EngineContext,
  _id: string,
  _request: ExecRequest,
): Promise<ExecResult> {
  throw new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', 'exec: not implemented yet');
}

export async function signalContainer(
  _context: EngineContext,
  _id: string,
  _unixSignal: string | number,
  _options: { signal?: AbortSignal },
): Promise<void> {
  throw new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', 'sendSignal: not implemented yet');
}

export async function restartContainer(
  _context: EngineContext,
  _id: string,
  _options: { stopTimeoutMs?: number; signal?: AbortSignal },
): Promise<void> {
  throw new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', 'restart: not implemented yet');
}
