import { DsoError, type DsoErrorOptions } from '@dso/core';

/** Every code a {@link DockerRuntimeError} can carry. */
export const DOCKER_RUNTIME_ERROR_CODES = [
  'DSO_DOCKER_UNREACHABLE',
  'DSO_DOCKER_PERMISSION_DENIED',
  'DSO_DOCKER_API_TOO_OLD',
  'DSO_DOCKER_INVALID_HOST',
  'DSO_DOCKER_INSECURE_HOST',
  'DSO_DOCKER_TIMEOUT',
  'DSO_DOCKER_ABORTED',
  'DSO_DOCKER_CLOSED',
  'DSO_DOCKER_ENGINE_ERROR',
  'DSO_DOCKER_EVENTS_LOST',
  'DSO_DOCKER_CONTAINER_NOT_FOUND',
  'DSO_DOCKER_CONTAINER_NOT_RUNNING',
  'DSO_DOCKER_INVALID_REQUEST',
  'DSO_DOCKER_TARGET_NOT_TMPFS',
  'DSO_DOCKER_TARGET_CONFLICT',
  'DSO_DOCKER_USER_UNRESOLVED',
  'DSO_DOCKER_NO_SHELL',
  'DSO_DOCKER_NO_TAR',
  'DSO_DOCKER_MISSING_TOOL',
  'DSO_DOCKER_EXEC_FAILED',
  'DSO_DOCKER_TARGET_BUSY',
  'DSO_DOCKER_TARGET_TAMPERED',
  'DSO_DOCKER_TARGET_READ_ONLY',
  'DSO_DOCKER_TARGET_NOT_WRITABLE',
  'DSO_DOCKER_NO_CAP_CHOWN',
  'DSO_DOCKER_RECONNECT_FAILED',
  'DSO_DOCKER_TLS_INVALID',
  'DSO_DOCKER_HOST_PATH_NOT_TMPFS',
  'DSO_DOCKER_HOST_PATH_FAILED',
  'DSO_DOCKER_HOST_PATH_TAMPERED',
  'DSO_DOCKER_REPLACE_FAILED',
  'DSO_DOCKER_RESTART_REFUSED',
] as const;

/**
 * The codes that may pass on their own (the engine timed out, could not be reached, answered
 * with a server error, or another writer held the target for a moment): a
 * {@link DockerRuntimeError} with one of them is `retryable`. Anything else (a missing
 * container, no shell in the image, a target that is no tmpfs, a capability the container
 * dropped, a lock something in the container planted) waits for a change.
 */
export const RETRYABLE_DOCKER_CODES: ReadonlySet<string> = new Set([
  'DSO_DOCKER_TIMEOUT',
  'DSO_DOCKER_UNREACHABLE',
  'DSO_DOCKER_ENGINE_ERROR',
  'DSO_DOCKER_TARGET_BUSY',
]);

/** A stable `DSO_DOCKER_*` code; see the errors table in the README for causes and fixes. */
export type DockerRuntimeErrorCode = (typeof DOCKER_RUNTIME_ERROR_CODES)[number];

// A global symbol, so errors from a second copy of this package are still recognised.
const DOCKER_RUNTIME_ERROR = Symbol.for('dso.docker-runtime-error');

/**
 * A failure talking to the Docker Engine, with a stable `DSO_DOCKER_*` code, a message that says
 * what to do, and facts (container id, exit code, status code) in `details`. Messages and details
 * never hold a secret value: they are built from ids, paths and file names only.
 *
 * @example
 * try { await runtime.writeFiles(id, request); } catch (error) {
 *   if (isDockerRuntimeError(error) && error.code === 'DSO_DOCKER_TARGET_NOT_TMPFS') warn(error.message);
 *   else throw error;
 * }
 */
export class DockerRuntimeError extends DsoError {
  declare readonly code: DockerRuntimeErrorCode;

  /**
   * @param code a `DSO_DOCKER_*` code
   * @param message what went wrong and what to do, never a secret value
   * @param options `cause`, `retryable` (by default whether the code is one of
   *   {@link RETRYABLE_DOCKER_CODES}), plus facts kept on `details`
   */
  constructor(code: DockerRuntimeErrorCode, message: string, options: DsoErrorOptions = {}) {
    super(code, message, { retryable: RETRYABLE_DOCKER_CODES.has(code), ...options });
    this.name = 'DockerRuntimeError';
    Object.defineProperty(this, DOCKER_RUNTIME_ERROR, { value: true });
  }
}

/**
 * True for a {@link DockerRuntimeError} from any copy of this package. `isDsoError` from
 * `@dso/core` is true for it as well.
 *
 * @example
 * if (isDockerRuntimeError(error) && error.code === 'DSO_DOCKER_UNREACHABLE') retryLater();
 */
export function isDockerRuntimeError(value: unknown): value is DockerRuntimeError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[DOCKER_RUNTIME_ERROR] === true
  );
}
