/**
 * @dso/docker-runtime: the only part of DSO that speaks to the Docker Engine. Container events,
 * list and inspect, and atomic secret-file injection into a container's tmpfs through one
 * `docker exec` with a tar on its stdin (never the archive API, never argv, never host disk).
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
 * for await (const event of runtime.events({ signal: controller.signal })) {
 *   console.log(event.type, event.id);
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
export type { NumericOwner } from './container-user.js';
export type { ExecRequest, ExecResult } from './control.js';
export { DEFAULT_DOCKER_HOST, type DockerEndpoint, parseDockerHost } from './docker-host.js';
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
} from './docker-runtime.js';
export {
  DOCKER_RUNTIME_ERROR_CODES,
  DockerRuntimeError,
  type DockerRuntimeErrorCode,
  isDockerRuntimeError,
} from './errors.js';
export { type ContainerEvent, MAX_EVENT_LINE_LENGTH } from './events.js';
export type { ReplaceRecovery, ReplaceRequest, ReplaceResult } from './replace.js';
export {
  checkFileName,
  MAX_FILES_PER_WRITE,
  MAX_WRITE_BYTES,
  type SecretFile,
  type WriteFilesRequest,
  type WriteFilesResult,
} from './write-request.js';
