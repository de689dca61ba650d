import type { EngineContext } from './engine-context.js';
import { DockerRuntimeError } from './errors.js';

/** How {@link DockerRuntime.replaceContainer} recreates a container. */
export interface ReplaceRequest {
  /** Environment changes: a string sets the variable, `null` removes it. */
  env?: Record<string, string | null>;
  signal?: AbortSignal;
}

/** What a finished replacement did. */
export interface ReplaceResult {
  oldId: string;
  newId: string;
  name: string;
  durationMs: number;
}

/** What {@link DockerRuntime.recoverReplacements} did with one interrupted replacement. */
export interface ReplaceRecovery {
  name: string;
  oldId: string;
  newId: string;
  action: 'finished' | 'undone' | 'none';
}

export async function replaceContainer(
  _context: EngineContext,
  _id: string,
  _request: ReplaceRequest,
): Promise<ReplaceResult> {
  throw new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', 'replace: not implemented yet');
}

export async function recoverReplacements(
  _context: EngineContext,
  _options: { signal?: AbortSignal },
): Promise<ReplaceRecovery[]> {
  throw new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', 'recover: not implemented yet');
}
