import type { DeadlineCause } from './deadline.js';
import { DOCKER_DIALECT, type EngineDialect } from './engine-dialect.js';
import { DockerRuntimeError, isDockerRuntimeError } from './errors.js';

/** Socket error codes that mean nothing (usable) answers at the endpoint. */
const UNREACHABLE_CODES = new Set([
  'ENOENT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOTSOCK',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const PERMISSION_CODES = new Set(['EACCES', 'EPERM']);

/** What was being done when an engine call failed, for the error's message and facts. */
export interface EngineCallContext {
  /** A short phrase: `inspect container`, `list containers`, `start exec`. */
  operation: string;
  /** The endpoint as the user wrote it: `unix:///var/run/docker.sock`. */
  endpoint: string;
  /** What fired the call's deadline, if anything did. */
  deadlineCause?: DeadlineCause | undefined;
  /** The call's timeout in ms, for the message. */
  timeoutMs?: number | undefined;
  containerId?: string | undefined;
  /**
   * The engine's dialect, which reads its error texts (Podman answers 500 `container state
   * improper` where Docker answers 409). Docker's rules when absent: before the engine is known.
   */
  dialect?: EngineDialect | undefined;
}

/**
 * How to fix an unreachable engine: said in every DSO_DOCKER_UNREACHABLE message.
 */
export const UNREACHABLE_FIX =
  'start the engine (`sudo bash tools/services.sh up` in the DSO workspace, or your system ' +
  "service), or set DOCKER_HOST / the runtime's host option to where it listens";

/**
 * Normalises anything an engine call threw into a {@link DockerRuntimeError}, once, at the
 * boundary. An engine's own message is kept as the cause; it quotes ids and paths, and this
 * package never sends a secret value anywhere the engine would echo it.
 */
export function toEngineError(error: unknown, context: EngineCallContext): DockerRuntimeError {
  if (isDockerRuntimeError(error)) return error;
  const facts = {
    operation: context.operation,
    endpoint: context.endpoint,
    ...(context.containerId === undefined ? {} : { containerId: context.containerId }),
    cause: error,
  };
  switch (context.deadlineCause) {
    case 'caller':
      return new DockerRuntimeError(
        'DSO_DOCKER_ABORTED',
        `${context.operation} was aborted`,
        facts,
      );
    case 'closed':
      return new DockerRuntimeError(
        'DSO_DOCKER_CLOSED',
        `${context.operation} stopped: the docker runtime was closed`,
        facts,
      );
    case 'timeout':
      return new DockerRuntimeError(
        'DSO_DOCKER_TIMEOUT',
        `${context.operation} took longer than ${context.timeoutMs ?? '?'} ms at ${context.endpoint}`,
        { ...facts, timeoutMs: context.timeoutMs },
      );
    default:
      break;
  }
  const code = errorCode(error);
  if (code !== undefined && PERMISSION_CODES.has(code)) {
    return new DockerRuntimeError(
      'DSO_DOCKER_PERMISSION_DENIED',
      `permission denied on the Docker Engine at ${context.endpoint}: run as a user in the docker ` +
        'group (or root), or point DOCKER_HOST at a socket this user may open',
      { ...facts, errno: code },
    );
  }
  if (code !== undefined && UNREACHABLE_CODES.has(code)) {
    return new DockerRuntimeError(
      'DSO_DOCKER_UNREACHABLE',
      `cannot reach the Docker Engine at ${context.endpoint} (${code}): ${UNREACHABLE_FIX}`,
      { ...facts, errno: code },
    );
  }
  const status = statusCode(error);
  const engineMessage = engineMessageOf(error);
  const failure = (context.dialect ?? DOCKER_DIALECT).classifyFailure({
    statusCode: status,
    message: engineMessage,
    cause: engineCauseOf(error),
  });
  if (failure === 'container-not-found' && context.containerId !== undefined) {
    return new DockerRuntimeError(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
      `container ${context.containerId} does not exist`,
      { ...facts, statusCode: status },
    );
  }
  if (failure === 'container-not-running' && context.containerId !== undefined) {
    return new DockerRuntimeError(
      'DSO_DOCKER_CONTAINER_NOT_RUNNING',
      `container ${context.containerId} is not running (or is paused): start it first`,
      { ...facts, statusCode: status },
    );
  }
  if (failure === 'user-unresolved') {
    // The engine's words name the user or group (never a value): `unable to find user app: …`.
    return new DockerRuntimeError(
      'DSO_DOCKER_USER_UNRESOLVED',
      `${context.operation} failed: ${engineMessage ?? 'the user does not resolve'} in ` +
        `${context.containerId === undefined ? 'the container' : `container ${context.containerId}`}` +
        ': use a numeric uid:gid, or a user (and group) named in its /etc/passwd (and /etc/group)',
      { ...facts, ...(status === undefined ? {} : { statusCode: status }) },
    );
  }
  return new DockerRuntimeError(
    'DSO_DOCKER_ENGINE_ERROR',
    `the engine (${context.dialect?.display ?? 'Docker'}) failed to ${context.operation}` +
      (status === undefined ? '' : ` (HTTP ${status})`) +
      (engineMessage === undefined ? '' : `: ${engineMessage}`),
    { ...facts, ...(status === undefined ? {} : { statusCode: status }) },
  );
}

function errorCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function statusCode(error: unknown): number | undefined {
  const status = (error as { statusCode?: unknown } | null)?.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/**
 * The engine's JSON `message`, bounded; dockerode keeps the parsed body on `json`. A hijacked
 * call (exec start) keeps no body: docker-modem puts its text in the error's own message,
 * `(HTTP code 500) <reason> - <body> `.
 */
function engineMessageOf(error: unknown): string | undefined {
  const fromBody = bodyField(error, 'message');
  if (fromBody !== undefined) return fromBody;
  const message = (error as { message?: unknown } | null)?.message;
  if (typeof message !== 'string' || statusCode(error) === undefined) return undefined;
  const body = /^\(HTTP code \d+\) [\s\S]*? - ([\s\S]*)$/.exec(message)?.[1]?.trim();
  return body === undefined || body === '' ? undefined : body.slice(0, 512);
}

/** Podman's JSON `cause` (the underlying error's own words), bounded. */
function engineCauseOf(error: unknown): string | undefined {
  return bodyField(error, 'cause');
}

function bodyField(error: unknown, field: 'message' | 'cause'): string | undefined {
  const json = (error as { json?: unknown } | null)?.json;
  const value =
    typeof json === 'object' && json !== null
      ? (json as Record<string, unknown>)[field]
      : undefined;
  return typeof value === 'string' ? value.slice(0, 512) : undefined;
}
