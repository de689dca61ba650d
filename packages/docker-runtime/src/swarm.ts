import type { EngineContext } from './engine-context.js';
import { DockerRuntimeError } from './errors.js';

/**
 * The Swarm task a container runs, from the labels Swarm's executor puts on every task
 * container (`com.docker.swarm.task.id`, `…task.name`, `…service.id`, `…service.name`).
 */
export interface SwarmTask {
  /** The task's id. */
  taskId: string;
  /** `<service>.<slot>.<task id>` (replicated) or `<service>.<node id>.<task id>` (global). */
  taskName: string;
  serviceId: string;
  serviceName: string;
  /**
   * The slot the task fills: `<service>.<slot>` of its name (a node id for a global service).
   * The task Swarm starts in place of a stopped one has the same slot and a new task id.
   */
  slot: string;
}

/** The part of a service's spec that says what Swarm does when one of its tasks stops. */
export interface SwarmService {
  id: string;
  name: string;
  /**
   * Swarm's restart policy for the service's tasks (`docker service create --restart-*`).
   * `any` (Swarm's default) replaces a task that ended in any way; `on-failure` only one that
   * exited non-zero; `none` never.
   */
  restart: {
    condition: 'any' | 'on-failure' | 'none';
    /** How long Swarm waits before it starts the replacement. @default 5000 */
    delayMs: number;
    /** Replacements allowed within the policy's window; 0 is unlimited. @default 0 */
    maxAttempts: number;
  };
}

/** Swarm's default delay before a task's replacement starts (swarmkit's `defaultRestartDelay`). */
/** The label Swarm's executor puts on every task container: what makes a container a task. */
export const SWARM_TASK_ID_LABEL = 'com.docker.swarm.task.id';

export const SWARM_DEFAULT_RESTART_DELAY_MS = 5_000;

/**
 * The Swarm task a container runs, read from its labels; undefined when it is no task container
 * (or its labels are incomplete).
 *
 * @example
 * swarmTaskOf(container.labels)?.serviceName; // 'web'
 */
export function swarmTaskOf(labels: Readonly<Record<string, string>>): SwarmTask | undefined {
  const taskId = labels[SWARM_TASK_ID_LABEL];
  const taskName = labels['com.docker.swarm.task.name'];
  const serviceId = labels['com.docker.swarm.service.id'];
  const serviceName = labels['com.docker.swarm.service.name'];
  if (!taskId || !taskName || !serviceId || !serviceName) return undefined;
  // `web.1.<task id>`: a service name may hold dots, the task id never does.
  const suffix = `.${taskId}`;
  const slot = taskName.endsWith(suffix) ? taskName.slice(0, -suffix.length) : taskName;
  return { taskId, taskName, serviceId, serviceName, slot };
}

/**
 * A service's name and restart policy from the engine's `GET /services/{id}` answer. A spec
 * without a restart policy (or a field of it) gets Swarm's defaults.
 */
export function toSwarmService(raw: unknown): SwarmService {
  const answer = (raw ?? {}) as {
    ID?: unknown;
    Spec?: {
      Name?: unknown;
      TaskTemplate?: {
        RestartPolicy?: { Condition?: unknown; Delay?: unknown; MaxAttempts?: unknown };
      };
    };
  };
  const policy = answer.Spec?.TaskTemplate?.RestartPolicy ?? {};
  const condition =
    policy.Condition === 'none' || policy.Condition === 'on-failure' ? policy.Condition : 'any';
  // Delay is in nanoseconds.
  const delayMs =
    typeof policy.Delay === 'number' && policy.Delay >= 0
      ? Math.round(policy.Delay / 1_000_000)
      : SWARM_DEFAULT_RESTART_DELAY_MS;
  const maxAttempts =
    typeof policy.MaxAttempts === 'number' && policy.MaxAttempts > 0 ? policy.MaxAttempts : 0;
  return {
    id: String(answer.ID ?? ''),
    name: String(answer.Spec?.Name ?? ''),
    restart: { condition, delayMs, maxAttempts },
  };
}

const SERVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;

/**
 * Runs {@link DockerRuntime.inspectSwarmService}; see its contract there. Only a manager node
 * answers `GET /services/{id}`: a worker answers 503 ("This node is not a swarm manager"), and a
 * service removed meanwhile 404; both are `undefined`, the caller cannot tell the policy here.
 */
export async function inspectSwarmService(
  context: EngineContext,
  serviceId: string,
  options: { signal?: AbortSignal },
): Promise<SwarmService | undefined> {
  context.assertOpen('inspect a swarm service');
  if (typeof serviceId !== 'string' || !SERVICE_ID.test(serviceId)) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      'a service id is letters, digits and ._- (as the com.docker.swarm.service.id label holds it)',
      { field: 'serviceId' },
    );
  }
  try {
    const raw = await context.request(
      `inspect swarm service ${serviceId}`,
      options.signal,
      undefined,
      (signal) => context.docker.getService(serviceId).inspect({ abortSignal: signal }),
    );
    return toSwarmService(raw);
  } catch (error) {
    const status = (error as { details?: { statusCode?: unknown } }).details?.statusCode;
    if (status === 503 || status === 404) return undefined;
    throw error;
  }
}
