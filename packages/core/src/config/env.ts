import { API_SOCKET_ENV } from '../agent-api/contract.js';

/**
 * An environment variable that overrides one setting of `dso.yaml`, for the few settings that
 * differ from host to host. Its text goes through the same schema as the file's value, so
 * durations take `30s` as well as `30000`.
 */
export type ConfigEnvOverride = {
  /** The variable's name. */
  name: string;
  /** The setting it replaces, as keys from the root. */
  path: readonly string[];
  /** Turns the variable's text into the setting's value; the text itself when absent. */
  read?: (text: string) => unknown;
  /** How the reference describes the variable's value, when `read` changes it. */
  meaning?: string;
  /** Applied only when this holds of the settings so far (file and earlier overrides). */
  when?: (raw: Record<string, unknown>) => boolean;
};

/**
 * The environment overrides, applied after the file: a variable that is set and not empty wins
 * over the file's value. This table is the only list; the reference is rendered from it.
 *
 * @example
 * DSO_LOG_LEVEL=debug DOCKER_HOST=unix:///run/user/1000/docker.sock dso-agent
 */
export const CONFIG_ENV_OVERRIDES: readonly ConfigEnvOverride[] = Object.freeze([
  { name: 'DSO_LOG_LEVEL', path: ['log', 'level'] },
  { name: 'DSO_LOG_FORMAT', path: ['log', 'format'] },
  { name: 'DOCKER_HOST', path: ['docker', 'host'] },
  // As the docker CLI reads them: any non-empty DOCKER_TLS_VERIFY (even `0`) turns TLS on.
  {
    name: 'DOCKER_TLS_VERIFY',
    path: ['docker', 'tlsVerify'],
    read: () => true,
    meaning: 'any non-empty value turns it on, as for the docker CLI',
  },
  // Read only with TLS on, as the docker CLI does: alone it is ignored, not an error.
  {
    name: 'DOCKER_CERT_PATH',
    path: ['docker', 'tlsCertPath'],
    when: (raw) => isPlainObject(raw.docker) && raw.docker.tlsVerify === true,
    meaning: 'read only when `docker.tlsVerify` is on',
  },
  { name: API_SOCKET_ENV, path: ['api', 'socket'] },
  { name: 'DSO_METRICS_ADDRESS', path: ['metrics', 'address'] },
  { name: 'DSO_CACHE_BACKEND', path: ['cache', 'backend'] },
  { name: 'DSO_REDIS_URL', path: ['cache', 'redis', 'url'] },
  { name: 'DSO_SHUTDOWN_GRACE_MS', path: ['shutdownGraceMs'] },
  { name: 'DSO_VOLUME_DRIVER_NAME', path: ['volumes', 'driverName'] },
  // With DSO_VOLUME_DRIVER_NAME and DSO_API_SOCKET: what a second agent on the same host (one per
  // engine, or a test's) needs of its own, since the defaults under /run/dso are per host.
  { name: 'DSO_VOLUMES_ROOT', path: ['volumes', 'root'] },
  { name: 'DSO_HOST_PATH_ROOT', path: ['hostPath', 'root'] },
]);

/** The variable that overrides the setting at `path`, if one does. */
export function envOverrideFor(path: readonly string[]): ConfigEnvOverride | undefined {
  const key = path.join('.');
  return CONFIG_ENV_OVERRIDES.find((override) => override.path.join('.') === key);
}

/**
 * Writes every set override into `raw` (the file's data, a plain object) and returns those it
 * applied. An override whose parent in the file is not a mapping is skipped: the file's own
 * problem is reported there.
 */
export function applyEnvOverrides(
  raw: Record<string, unknown>,
  env: NodeJS.ProcessEnv,
): ConfigEnvOverride[] {
  const applied: ConfigEnvOverride[] = [];
  for (const override of CONFIG_ENV_OVERRIDES) {
    const text = env[override.name]?.trim();
    if (text === undefined || text === '') continue;
    if (override.when !== undefined && !override.when(raw)) continue;
    let parent: Record<string, unknown> | undefined = raw;
    for (const key of override.path.slice(0, -1)) {
      const next: unknown = parent[key];
      if (next === undefined || next === null) {
        const created: Record<string, unknown> = {};
        parent[key] = created;
        parent = created;
      } else if (isPlainObject(next)) {
        parent = next;
      } else {
        parent = undefined;
        break;
      }
    }
    if (parent === undefined) continue;
    parent[override.path.at(-1)!] = override.read ? override.read(text) : text;
    applied.push(override);
  }
  return applied;
}

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return (
    typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Date)
  );
}
