import {
  type Clock,
  DsoError,
  errorCode,
  isRetryable,
  type Logger,
  type ManagedSpec,
  parseRotationLabels,
  parseVolumeOptions,
  type Redactor,
  type VolumeSpec,
} from '@dso/core';
import { type DockerRuntime, MAX_FILES_PER_WRITE } from '@dso/docker-runtime';
import type { ContainerStatus, DeliveryTrigger } from '../agent-types.js';
import type { Consumption } from '../consumption.js';
import { digestOf, IN_PLACE, type OutsideSlot } from '../delivery.js';
import type { AgentMetrics } from '../observability.js';
import type { Outcomes } from '../outcomes.js';
import type { Rotations } from '../rotation.js';
import {
  failedReference,
  failureCode,
  type ResolvedFile,
  type SecretResolver,
} from '../secrets.js';
import type { VolumeFolders } from './folders.js';
import { mountFailure } from './mount-failure.js';
import {
  createRegistrySaver,
  isMountId,
  isVolumeName,
  loadVolumeRegistry,
  mountKey,
  type VolumeMountRecord,
  type VolumeRegistryState,
} from './registry.js';

/**
 * What the delivery queue, status and events call a DSO volume mount:
 * `volume:<volume name>:<mount id>` (neither holds a `:`).
 */
export const VOLUME_CONSUMER_PREFIX = 'volume:';

/** Whether a queue key names a volume mount rather than a container. */
export function isVolumeConsumer(id: string): boolean {
  return id.startsWith(VOLUME_CONSUMER_PREFIX);
}

/** What the engine's `VolumeDriver.Get` and `List` answer for one volume. */
export interface VolumeInfo {
  Name: string;
  Mountpoint: string;
  Status: Record<string, never>;
}

/** What the volume driver needs from the agent. */
export interface VolumeDriverContext {
  driverName: string;
  folders: VolumeFolders;
  registry: VolumeRegistryState;
  /** Where the registry is kept across restarts (no value in it); absent: memory only. */
  statePath?: string | undefined;
  mountTimeoutMs: number;
  secrets: SecretResolver;
  consumption: Pick<Consumption, 'record'>;
  rotations: Pick<Rotations, 'start'>;
  runtime: Pick<DockerRuntime, 'listContainers'>;
  /** The last action per consumer (a mount's is dropped at its last Unmount). */
  statuses: Map<string, ContainerStatus>;
  /** Status, events and audit of each mount's outcome. */
  outcomes: Outcomes;
  /** Failure reasons told to the engine (and so to `docker run`) go through it first. */
  redactor: Pick<Redactor, 'redact'>;
  logger: Logger;
  metrics?: AgentMetrics | undefined;
  clock: Clock;
  /** Aborted when the agent stops. */
  stopping: AbortSignal;
}

/**
 * The agent as a Docker volume driver: volumes whose options are references, a folder per
 * mount written before the engine starts the container, rewritten (then the container's
 * rotation policy run) when a version changes.
 */
export interface VolumeDriver {
  readonly driverName: string;
  /** @throws DsoError DSO_VOLUME_OPTION_INVALID naming the option; DSO_VOLUME_NAME_INVALID */
  create(name: string, options: Record<string, unknown>): Promise<void>;
  remove(name: string): Promise<void>;
  get(name: string): VolumeInfo | undefined;
  list(): VolumeInfo[];
  path(name: string): string;
  /**
   * Resolves every file of the volume, writes the set, and answers the folder the engine mounts
   * into the container: the container never starts without its files.
   * @throws DsoError DSO_VOLUME_MOUNT_FAILED naming the reference and its code
   */
  mount(name: string, id: string): Promise<string>;
  /** Removes the mount's files at once. */
  unmount(name: string, id: string): Promise<void>;
  /**
   * The queue's worker for a `volume:<name>:<mount id>` key: rewrites when a version changed.
   * Its secrets are resolved `outside` the queue's slot, as a container's are.
   */
  deliver(
    consumerId: string,
    trigger: DeliveryTrigger,
    signal: AbortSignal,
    attempt: number,
    outside?: OutsideSlot,
  ): Promise<void>;
  /** Every mount's queue key, for reconciliation. */
  consumers(): string[];
  /** The queue keys of the mounts of these volumes. */
  consumersOf(volumes: readonly string[]): string[];
  /** Every secret the volumes use, by `provider:path` (for `dso rotate`). */
  references(consumerIds: readonly string[]): VolumeSpec['files'];
  /**
   * At start: reads what the previous agent kept (volumes, mounts, digests), and checks the
   * read-only view of every mount (made again when missing).
   */
  recover(): Promise<void>;
  /**
   * Removes the folders of mounts the agent no longer knows (an unmount that raced a rewrite,
   * state lost with the agent): no secret outlives its mount. Never throws.
   */
  sweep(): Promise<void>;
}

/**
 * @example
 * const driver = createVolumeDriver({ driverName: 'dso', folders, registry, … });
 * const mountpoint = await driver.mount(volumeName, mountId);
 */
export function createVolumeDriver(context: VolumeDriverContext): VolumeDriver {
  const { folders, registry, secrets, logger, metrics, clock, statuses } = context;
  const saver = createRegistrySaver(context.statePath, registry, logger);
  const now = () => Math.floor(clock.now());
  const consumerOf = (mount: VolumeMountRecord) =>
    `${VOLUME_CONSUMER_PREFIX}${mount.volume}:${mount.id}`;
  /** The mount a consumer id (`volume:<name>:<mount id>`) names. */
  const mountOf = (consumerId: string) => {
    const [volume = '', id = ''] = consumerId.slice(VOLUME_CONSUMER_PREFIX.length).split(':');
    return registry.mounts.get(mountKey(volume, id));
  };

  function specOf(volume: string): VolumeSpec {
    const known = registry.volumes.get(volume);
    if (known === undefined) {
      throw new DsoError(
        'DSO_VOLUME_UNKNOWN',
        `volume ${volume} is not known to this agent's driver (created while its state was lost?): remove it and create it again with its options`,
        { volume },
      );
    }
    return parseVolumeOptions(known.options);
  }

  /**
   * Resolves a mount's files and writes them when they differ from what its folder holds
   * (always for `force`). Resolves with the digest before and after, and the secrets written.
   */
  async function write(
    mount: VolumeMountRecord,
    force: boolean,
    signal: AbortSignal,
    outside: OutsideSlot = IN_PLACE,
  ): Promise<{ before: string | undefined; after: string; resolved: ResolvedFile[] }> {
    const spec = specOf(mount.volume);
    const started = performance.now();
    const resolved = await outside(() => secrets.resolveFiles(spec.files, signal));
    try {
      const after = digestOf({ target: '', mode: spec.mode, owner: spec.owner }, resolved, '');
      const before = mount.digest;
      // Unmounted while its secrets were resolved: nothing to write (the folder is gone).
      const current = force || registry.mounts.get(mount.key) === mount;
      if (current && (force || before !== after)) {
        signal.throwIfAborted();
        folders.write(mount.key, {
          files: resolved.map(({ name, content }) => ({ name, content })),
          mode: spec.mode,
          owner: spec.owner,
        });
        mount.digest = after;
        void saver.save();
        const durationMs = Math.round((performance.now() - started) * 100) / 100;
        metrics?.injection('volume', 'ok', durationMs);
        context.outcomes.written(resolved, { volume: mount.volume }, durationMs);
      }
      // The mount's folder holds these values now (and no longer its previous ones).
      if (current)
        secrets.hold(
          consumerOf(mount),
          resolved.map((file) => file.content),
        );
      context.consumption.record(
        consumerOf(mount),
        spec.files.flatMap((file, index) => {
          const got = resolved[index];
          return file.reference.version || got === undefined
            ? []
            : [{ provider: got.provider, path: file.reference.path, version: got.version }];
        }),
      );
      return { before, after, resolved };
    } catch (error) {
      for (const file of resolved) file.content.fill(0);
      throw error;
    }
  }

  /** Tells status, subscribers and the audit trail what happened to a mount. */
  function report(
    mount: VolumeMountRecord,
    trigger: DeliveryTrigger,
    outcome: { files: readonly ResolvedFile[]; changed: boolean } | { error: unknown },
  ): void {
    const id = consumerOf(mount);
    if ('error' in outcome) {
      // A mount the engine never got has no status: `docker run` said why, events and the
      // audit trail keep it.
      context.outcomes.failed(
        id,
        trigger,
        outcome.error,
        { volume: mount.volume },
        { status: registry.mounts.get(mount.key) === mount },
      );
    } else if (outcome.changed) {
      context.outcomes.delivered(id, trigger, outcome.files, 'volume');
    } else {
      context.outcomes.upToDate(id, trigger);
    }
  }

  /**
   * Runs the rotation policy of the containers that mount a volume whose files just changed:
   * their `dso.rotate*` labels, else the configured default. The engine reports a plugin
   * volume's mount without its mount point, so consumers are found by the volume's name (one
   * container for an anonymous volume; each of them for a shared one, told once each: a
   * rotation already running for a container is not started twice).
   */
  async function rotateConsumer(
    mount: VolumeMountRecord,
    resolved: readonly ResolvedFile[],
    signal: AbortSignal,
  ): Promise<void> {
    const running = await context.runtime.listContainers({ signal });
    for (const container of running) {
      const volume = (container.volumes ?? []).find(
        (each) => each.driver === context.driverName && each.name === mount.volume,
      );
      if (volume === undefined) continue;
      let rotation: ManagedSpec['rotation'];
      try {
        rotation = parseRotationLabels(container.labels);
      } catch (error) {
        logger.warn(
          { err: error, code: errorCode(error), containerId: container.id.slice(0, 12) },
          'rotation labels invalid: the volume files were rewritten, the container not told',
        );
        continue;
      }
      const spec: ManagedSpec = {
        target: volume.target,
        mode: 0o444,
        files: [],
        env: [],
        ...(rotation === undefined ? {} : { rotation }),
      };
      context.rotations.start(container.id, spec, resolved, false, undefined);
    }
  }

  function mountsOfVolume(name: string): VolumeMountRecord[] {
    return [...registry.mounts.values()].filter((mount) => mount.volume === name);
  }

  function info(name: string): VolumeInfo {
    const first = mountsOfVolume(name)[0];
    return {
      Name: name,
      Mountpoint: first === undefined ? '' : folders.mountpointOf(first.key),
      Status: {},
    };
  }

  const driver: VolumeDriver = {
    driverName: context.driverName,
    async create(name, options) {
      if (!isVolumeName(name)) {
        throw new DsoError(
          'DSO_VOLUME_NAME_INVALID',
          'the volume name must be 1-255 of A-Z a-z 0-9 _ . - (starting with a letter or digit)',
          {},
        );
      }
      // Refused here, naming the option, rather than at Mount.
      const spec = parseVolumeOptions(options);
      if (spec.files.length > MAX_FILES_PER_WRITE) {
        throw new DsoError(
          'DSO_VOLUME_OPTION_INVALID',
          `volume ${name} names ${spec.files.length} files; one volume holds at most ${MAX_FILES_PER_WRITE}: split them across volumes`,
          { volume: name },
        );
      }
      registry.volumes.set(name, {
        options: Object.fromEntries(
          Object.entries(options).map(([key, value]) => [key, String(value)]),
        ),
        createdAt: now(),
      });
      await saver.save();
      logger.info({ volume: name }, 'volume created');
    },
    async remove(name) {
      for (const mount of mountsOfVolume(name)) await driver.unmount(name, mount.id);
      registry.volumes.delete(name);
      await saver.save();
      logger.info({ volume: name }, 'volume removed');
    },
    get: (name) => (registry.volumes.has(name) ? info(name) : undefined),
    list: () => [...registry.volumes.keys()].map(info),
    path: (name) => info(name).Mountpoint,
    async mount(name, id) {
      if (!isMountId(id)) {
        throw new DsoError(
          'DSO_VOLUME_MOUNT_FAILED',
          `volume ${name}: the engine gave no usable mount id`,
          {
            volume: name,
          },
        );
      }
      // By volume and id: Podman gives every mount of every volume one and the same id.
      const key = mountKey(name, id);
      const known = registry.mounts.get(key);
      const mount: VolumeMountRecord = known ?? { id, volume: name, key, refs: 0 };
      // Below the engine's own plugin timeout: the engine must hear a clear failure.
      const deadline = new AbortController();
      const timer = clock.setTimeout(
        () =>
          deadline.abort(
            new DsoError(
              'DSO_VOLUME_MOUNT_TIMEOUT',
              `volume ${name}: its secrets were not ready within volumes.mountTimeoutMs (${context.mountTimeoutMs} ms)`,
              { volume: name, retryable: true },
            ),
          ),
        context.mountTimeoutMs,
      );
      const signal = AbortSignal.any([deadline.signal, context.stopping]);
      try {
        // Mounted again while mounted (`docker cp`, a second start of the same mount): the
        // files stay, rewritten only if a version moved or they are missing (a host reboot).
        const again = known !== undefined && folders.keys().includes(known.key);
        const { resolved } = await write(mount, !again, signal);
        for (const file of resolved) file.content.fill(0);
        const mountpoint = await folders.publish(mount.key);
        mount.refs += 1;
        registry.mounts.set(key, mount);
        await saver.save();
        if (!again) report(mount, 'started', { files: resolved, changed: true });
        logger.info(
          { volume: name, mountId: id.slice(0, 12), files: resolved.length, mounts: mount.refs },
          'volume mounted',
        );
        return mountpoint;
      } catch (caught) {
        const error = signal.aborted && deadline.signal.aborted ? deadline.signal.reason : caught;
        report(mount, 'started', { error });
        if (!registry.mounts.has(key)) await folders.remove(mount.key).catch(() => {});
        const reference = failedReference(error);
        const code = failureCode(error);
        logger.warn(
          { err: error, code, volume: name, mountId: id.slice(0, 12), reference },
          'volume not mounted: the container does not start',
        );
        throw new DsoError(
          'DSO_VOLUME_MOUNT_FAILED',
          mountFailure(name, error, reference, code, context.redactor),
          {
            volume: name,
            code,
            ...(reference === undefined ? {} : { reference }),
          },
        );
      } finally {
        clock.clearTimeout(timer);
      }
    },
    async unmount(name, id) {
      const mount = registry.mounts.get(mountKey(name, id));
      if (mount === undefined) return;
      mount.refs -= 1;
      if (mount.refs > 0) {
        await saver.save();
        logger.info(
          { volume: name, mountId: id.slice(0, 12), mounts: mount.refs },
          'volume mount released; its files stay for the remaining mounts',
        );
        return;
      }
      await folders.remove(mount.key);
      registry.mounts.delete(mount.key);
      context.consumption.record(consumerOf(mount), undefined);
      secrets.letGo(consumerOf(mount));
      statuses.delete(consumerOf(mount));
      await saver.save();
      logger.info({ volume: name, mountId: id.slice(0, 12) }, 'volume unmounted: files removed');
    },
    async deliver(consumerId, trigger, signal, _attempt, outside) {
      const mount = mountOf(consumerId);
      if (mount === undefined) return;
      try {
        const { before, after, resolved } = await write(mount, false, signal, outside);
        try {
          report(mount, trigger, { files: resolved, changed: before !== after });
          // New versions under a running container: its policy tells it.
          if (before !== undefined && before !== after)
            await rotateConsumer(mount, resolved, signal);
        } finally {
          for (const file of resolved) file.content.fill(0);
        }
      } catch (error) {
        if (signal.aborted) return;
        report(mount, trigger, { error });
        logger.warn(
          { err: error, code: errorCode(error), volume: mount.volume, trigger },
          'volume files not rewritten; the previous ones stay',
        );
        if (isRetryable(error)) throw error;
      }
    },
    consumers: () => [...registry.mounts.values()].map(consumerOf),
    consumersOf(volumes) {
      return [...registry.mounts.values()]
        .filter((mount) => volumes.includes(mount.volume))
        .map(consumerOf);
    },
    references(consumerIds) {
      return consumerIds.flatMap((consumerId) => {
        const mount = mountOf(consumerId);
        if (mount === undefined) return [];
        try {
          return specOf(mount.volume).files;
        } catch {
          return []; // an unknown volume: reported by its delivery
        }
      });
    },
    async sweep() {
      const known = new Set([...registry.mounts.values()].map((mount) => mount.key));
      let removed = 0;
      try {
        for (const key of folders.keys()) {
          if (known.has(key)) continue;
          await folders.remove(key);
          removed += 1;
        }
      } catch (error) {
        logger.warn({ err: error, code: errorCode(error) }, 'could not clean the volume folders');
      }
      if (removed > 0)
        logger.info({ folders: removed }, 'folders of unknown volume mounts removed');
    },
    async recover() {
      if (context.statePath !== undefined) {
        const path = context.statePath;
        const kept = await loadVolumeRegistry(path, (problem, error) =>
          logger.warn(
            { err: error, path, problem },
            'volume state ignored: volumes are created again on use',
          ),
        );
        for (const [name, volume] of kept.volumes) registry.volumes.set(name, volume);
        for (const [key, mount] of kept.mounts) registry.mounts.set(key, mount);
      }
      await driver.sweep();
      for (const mount of registry.mounts.values()) {
        try {
          await folders.publish(mount.key);
        } catch (error) {
          logger.warn(
            { err: error, code: errorCode(error), volume: mount.volume },
            'could not restore a volume folder; its container gets its files at its next start',
          );
        }
      }
    },
  };
  return driver;
}
