import { DockerRuntimeError } from './errors.js';

/** A container id (full or a prefix) or name, as the engine accepts it in a URL path. */
const CONTAINER_REF = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/;

/**
 * Checks a container id or name before it goes into an engine URL, for every operation alike.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST (`details.field: 'id'`) for anything else
 */
export function assertContainerId(id: unknown): asserts id is string {
  if (typeof id !== 'string' || !CONTAINER_REF.test(id)) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      `container id ${JSON.stringify(String(id).slice(0, 80))} is not a container id or name`,
      { field: 'id' },
    );
  }
}
