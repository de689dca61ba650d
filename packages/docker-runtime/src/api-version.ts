import { DockerRuntimeError } from './errors.js';

/** Oldest Engine API this package speaks: Docker Engine 20.10. */
export const MIN_DOCKER_API_VERSION = '1.41';
/**
 * Newest Engine API this package asks for. A newer engine is spoken to at this version (engines
 * keep serving older versions down to their own minimum).
 */
export const MAX_DOCKER_API_VERSION = '1.51';

/** Compares `major.minor` API versions: negative, zero or positive. */
export function compareApiVersions(a: string, b: string): number {
  const [aMajor = 0, aMinor = 0] = a.split('.').map(Number);
  const [bMajor = 0, bMinor = 0] = b.split('.').map(Number);
  return aMajor - bMajor || aMinor - bMinor;
}

/**
 * Picks the API version to speak, as the docker CLI does: the engine's own version capped at
 * {@link MAX_DOCKER_API_VERSION}, unless the engine no longer serves that old a version.
 *
 * @throws DockerRuntimeError DSO_DOCKER_API_TOO_OLD when the engine is older than API 1.41
 */
export function negotiateApiVersion(engine: {
  apiVersion: string;
  minApiVersion?: string | undefined;
  engineVersion: string;
  /** The engine as its dialect names it (`Podman 4.0.2`); `Docker Engine <version>` by default. */
  display?: string | undefined;
}): string {
  const name = engine.display ?? `Docker Engine ${engine.engineVersion}`;
  if (!/^\d+\.\d+$/.test(engine.apiVersion)) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_ENGINE_ERROR',
      `${name} reported an unreadable API version ${JSON.stringify(engine.apiVersion)}`,
      { apiVersion: engine.apiVersion, engineVersion: engine.engineVersion },
    );
  }
  if (compareApiVersions(engine.apiVersion, MIN_DOCKER_API_VERSION) < 0) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_API_TOO_OLD',
      `${name} speaks API ${engine.apiVersion}, DSO needs ${MIN_DOCKER_API_VERSION} or ` +
        'later: upgrade the engine to Docker 20.10 or newer (or Podman 4.3 or newer)',
      {
        apiVersion: engine.apiVersion,
        engineVersion: engine.engineVersion,
        minimum: MIN_DOCKER_API_VERSION,
      },
    );
  }
  if (compareApiVersions(engine.apiVersion, MAX_DOCKER_API_VERSION) <= 0) return engine.apiVersion;
  const engineMin = engine.minApiVersion;
  if (
    engineMin !== undefined &&
    /^\d+\.\d+$/.test(engineMin) &&
    compareApiVersions(engineMin, MAX_DOCKER_API_VERSION) > 0
  ) {
    return engineMin;
  }
  return MAX_DOCKER_API_VERSION;
}
