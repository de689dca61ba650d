import type { EngineContext } from './engine-context.js';
import { DockerRuntimeError } from './errors.js';

/** A numeric owner. */
export interface NumericOwner {
  uid: number;
  gid: number;
}

export async function resolveContainerUser(
  _context: EngineContext,
  _id: string,
  _options: { signal?: AbortSignal },
): Promise<NumericOwner> {
  throw new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', 'resolveUser: not implemented yet');
}
