/**
 * @dso/docker-runtime: the only part of DSO that speaks to the Docker Engine. Container events
 * that survive reconnects and engine restarts (resume, de-duplication, resync), list and
 * inspect, atomic secret-file injection into a container's tmpfs through one `docker exec` with
 * a tar on its stdin (never the archive API, never argv, never host disk) or into a host tmpfs
 * bind-mounted read-only, exec with bounded output, signals, restart, and clone-and-replace.
 *
 * @example
 * import { createDockerRuntime } from '@dso/docker-runtime';
 *
 * await using runtime = await createDockerRuntime(); // DOCKER_HOST, else /var/run/docker.sock
 * const [container] = await runtime.listContainers({ label: 'dso.enable=true' });
 * if (container) {
 *   await runtime.writeFiles(container.id, {
 *     target: '/run/secrets', // a tmpfs: docker run --tmpfs /run/secrets
 *     files: [{ name: 'db_password', content: new TextEncoder().encode('s3cr3t') }],
 *   });
 * }
 * const controller = new AbortController();
 * for await (const item of runtime.events({ signal: controller.signal })) {
 *   if (item.type === 'resync') console.log('events may have been missed: list and compare');
 *   else console.log(item.type, item.id);
 * }
 *
 * @packageDocumentation
 */

export {
  compareApiVersions,
  MAX_DOCKER_API_VERSION,
  MIN_DOCKER_API_VERSION,
  negotiateApiVersion,
} from './api-version.js';
export { MAX_USER_DATABASE_BYTES, type NumericOwner } from './container-user.js';
export {
  DEFAULT_STOP_TIMEOUT_MS,
  type ExecRequest,
  type ExecResult,
  MAX_EXEC_ARG_BYTES,
  MAX_EXEC_COMMAND_BYTES,
  MAX_EXEC_OUTPUT_LIMIT_BYTES,
  MAX_EXEC_STDIN_BYTES,
  normaliseSignal,
} from './control.js';
export {
  DEFAULT_DOCKER_HOST,
  DEFAULT_DOCKER_TLS_HOST,
  type DockerEndpoint,
  parseDockerHost,
} from './docker-host.js';
export {
  type ContainerDetails,
  type ContainerSummary,
  createDockerRuntime,
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_WRITE_TIMEOUT_MS,
  type DockerRuntime,
  type DockerRuntimeOptions,
  type EventsOptions,
  type ListContainersOptions,
  MAX_EXEC_OUTPUT_BYTES,
  type VolumeMount,
} from './docker-runtime.js';
export {
  detectEngineDialect,
  type EngineDialect,
  type EngineKind,
  type EngineVersionReply,
} from './engine-dialect.js';
export {
  DOCKER_RUNTIME_ERROR_CODES,
  DockerRuntimeError,
  type DockerRuntimeErrorCode,
  isDockerRuntimeError,
  RETRYABLE_DOCKER_CODES,
} from './errors.js';
export {
  DEFAULT_EVENTS_MAX_RECONNECTS,
  DEFAULT_EVENTS_RECONNECT_BASE_DELAY_MS,
  DEFAULT_EVENTS_RECONNECT_MAX_DELAY_MS,
  type EventsReconnecting,
  type EventsReconnectOptions,
} from './event-stream.js';
export {
  type ContainerEvent,
  type ContainerHealth,
  type EventsResync,
  MAX_EVENT_LINE_LENGTH,
  type RuntimeEvent,
} from './events.js';
export {
  createHostSecretDirs,
  DEFAULT_HOST_SECRETS_ROOT,
  type HostSecretDirs,
  type HostSecretDirsOptions,
  type HostSecretMount,
  type HostWriteRequest,
  type HostWriteResult,
  TMPFS_MAGIC,
} from './host-files.js';
export {
  DEFAULT_REPLACE_HEALTH_TIMEOUT_MS,
  DEFAULT_REPLACE_HOOK_TIMEOUT_MS,
  DEFAULT_REPLACE_LOG_TAIL_BYTES,
  DEFAULT_REPLACE_RUNNING_FOR_MS,
  DEFAULT_REPLACE_STOP_TIMEOUT_MS,
  REPLACE_LABELS,
  type RecoverReplacementsOptions,
  type ReplaceFailureReason,
  type ReplaceHealthOptions,
  type ReplaceRecovery,
  type ReplaceRequest,
  type ReplaceResult,
  type ReplaceStage,
} from './replace.js';
export { type RemoveReport, SafeDir } from './safe-dir.js';
export {
  SWARM_DEFAULT_RESTART_DELAY_MS,
  type SwarmService,
  type SwarmTask,
  swarmTaskOf,
} from './swarm.js';
export {
  checkFileName,
  MAX_FILES_PER_WRITE,
  MAX_WRITE_BYTES,
  type SecretFile,
  type WriteFilesRequest,
  type WriteFilesResult,
} from './write-request.js';
