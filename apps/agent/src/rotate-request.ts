import { DsoError, LABELS, type Logger, type ManagedSpec, parseManagedLabels } from '@dso/core';
import type { DockerRuntime } from '@dso/docker-runtime';
import type { DeliveryTrigger } from './agent-types.js';
import type { SecretResolver } from './secrets.js';
import type { VolumeDriver } from './volumes/volume-driver.js';

/** What a rotation on request needs from the agent. */
export interface RotateRequestContext {
  runtime: Pick<DockerRuntime, 'listContainers'>;
  secrets: Pick<SecretResolver, 'refresh'>;
  volumeDriver:
    | Pick<VolumeDriver, 'driverName' | 'consumers' | 'consumersOf' | 'references'>
    | undefined;
  defaultProvider: string;
  queue: { add(id: string, trigger: DeliveryTrigger): unknown };
  logger: Logger;
  signal: AbortSignal;
}

/**
 * `dso rotate [container]`: every secret the selected consumers use (containers with DSO
 * labels, and DSO volume mounts) is asked again past the cache (a provider that fails leaves
 * the cached value), then each consumer is checked: any that gets a new version is rotated by
 * its policy.
 *
 * @throws DsoError DSO_AGENT_CONTAINER_UNKNOWN when `containerId` names no managed container
 */
export async function requestRotation(
  context: RotateRequestContext,
  selector: { containerId?: string },
): Promise<{ containers: number; secrets: number }> {
  const { runtime, secrets, volumeDriver, defaultProvider, queue, logger, signal } = context;

  // Containers with DSO labels, and (with the volume driver) those that mount DSO volumes.
  const listed = await runtime.listContainers({
    ...(volumeDriver === undefined ? { label: `${LABELS.enable}=true` } : {}),
    signal,
  });
  const volumesOf = (container: (typeof listed)[number]) =>
    (container.volumes ?? [])
      .filter((volume) => volume.driver === volumeDriver?.driverName)
      .map((volume) => volume.name);
  const containers = listed.filter(
    (container) => container.labels[LABELS.enable] === 'true' || volumesOf(container).length > 0,
  );
  const wanted = selector.containerId;
  const selected = containers.filter(
    (container) =>
      wanted === undefined ||
      container.id === wanted ||
      (wanted.length >= 12 && container.id.startsWith(wanted)),
  );
  if (wanted !== undefined && selected.length === 0) {
    throw new DsoError(
      'DSO_AGENT_CONTAINER_UNKNOWN',
      `no running managed container has the id ${wanted}: see \`dso status\` for the ids (12 characters at least)`,
      { containerId: wanted },
    );
  }
  const volumeConsumers =
    volumeDriver === undefined
      ? []
      : wanted === undefined
        ? volumeDriver.consumers()
        : volumeDriver.consumersOf(selected.flatMap(volumesOf));
  // Past the cache: every secret these containers use (not pinned to a version) is asked
  // again, and the answer replaces the cached value (a failure keeps it).
  const specs = selected.flatMap((container) => {
    try {
      return [parseManagedLabels(container.labels)];
    } catch {
      return []; // invalid labels: reported by the container's delivery
    }
  });
  const volumeFiles = volumeDriver?.references(volumeConsumers) ?? [];
  const wantedSecrets = secretsOf(
    [...specs, { target: '', mode: 0, files: volumeFiles, env: [] }],
    defaultProvider,
  );
  await Promise.all(
    [...wantedSecrets.values()]
      .filter(({ pinned }) => !pinned)
      .map(({ provider, path }) => secrets.refresh(provider, path, signal)),
  );
  for (const container of selected) {
    if (container.labels[LABELS.enable] === 'true') queue.add(container.id, 'api');
  }
  for (const id of volumeConsumers) queue.add(id, 'api');
  logger.info(
    {
      containers: selected.length,
      volumes: volumeConsumers.length,
      secrets: wantedSecrets.size,
    },
    'rotation requested: secrets asked again',
  );
  return { containers: selected.length, secrets: wantedSecrets.size };
}

/**
 * Every secret the given containers use, by `provider:path`: pinned when every reference to
 * it names a version (asking again cannot change a pinned version).
 */
export function secretsOf(
  specs: ReadonlyArray<ManagedSpec | undefined>,
  defaultProvider: string,
): Map<string, { provider: string; path: string; pinned: boolean }> {
  const found = new Map<string, { provider: string; path: string; pinned: boolean }>();
  for (const spec of specs) {
    for (const { reference } of [...(spec?.files ?? []), ...(spec?.env ?? [])]) {
      const provider = reference.provider ?? defaultProvider;
      const key = `${provider}:${reference.path}`;
      const pinned = reference.version !== undefined && (found.get(key)?.pinned ?? true);
      found.set(key, { provider, path: reference.path, pinned });
    }
  }
  return found;
}
