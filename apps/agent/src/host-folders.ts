import { lstatSync, realpathSync } from 'node:fs';
import { join, normalize } from 'node:path';
import { DsoError, errorCode, LABELS, type Logger } from '@dso/core';
import {
  type ContainerDetails,
  type ContainerSummary,
  type DockerRuntime,
  type HostSecretDirs,
  REPLACE_LABELS,
} from '@dso/docker-runtime';
import { createFreshShared } from './fresh-shared.js';

/** What the host folders part needs from the agent. */
export interface HostFoldersContext {
  /** The host tmpfs folders; absent: the host path is off and every method is a no-op. */
  hostDirs?: HostSecretDirs | undefined;
  runtime: Pick<DockerRuntime, 'listContainers' | 'inspectContainer'>;
  logger: Logger;
  /** How old (since its last change) a folder no container binds must be before it is removed. */
  minAgeMs: number;
}

/**
 * The host path's folders: which container writes into which folder, emptied when the
 * container stops, removed when it is gone.
 */
export interface HostFolders {
  /** Whether the host path is on. */
  readonly enabled: boolean;
  /**
   * The key of the folder `<root>/<key>` a container bind-mounts at `target`, or undefined
   * (exec path). Looks at every container of the engine that binds the folder (any state, any
   * labels): asked at every delivery, a writable binder that appeared since stops the next one.
   * @throws DsoError DSO_AGENT_HOST_PATH_WRITABLE when that bind mount is writable, or when any
   *   container mounts the folder (or a folder above or inside it) writable; the container is named
   * @throws DsoError DSO_AGENT_HOST_PATH_SHARED when another running container owns the folder
   *   (bound it first, or was delivered to through it): the owner is named
   */
  keyOf(
    details: ContainerDetails,
    target: string,
    signal: AbortSignal,
  ): Promise<string | undefined>;
  /**
   * The containers delivered to through a folder that a container which just started (any
   * container, with DSO labels or not) binds: their next delivery judges it (refused when it
   * can write the folder, or shares it). Empty when the host path is off or serves nobody.
   * Never throws: a container gone meanwhile reaches nothing.
   */
  ownersReachedBy(containerId: string, signal: AbortSignal): Promise<string[]>;
  /** Remembers that `containerId` is delivered to through `key` (to empty it when it stops). */
  remember(containerId: string, key: string): void;
  /** Writes a container's files into its folder (atomically: the runtime's host files) and remembers it. */
  write(
    containerId: string,
    key: string,
    request: Parameters<HostSecretDirs['write']>[1],
  ): { files: number; bytes: number };
  /**
   * Empties a container's folder when it stops (kept, empty, for its next start) or removes it
   * when it is destroyed, unless another container shares it.
   */
  clear(containerId: string, destroyed: boolean): void;
  /**
   * Removes the folders no container binds any more (removed while the agent was down, or a
   * destroy event lost), once unchanged for `minAgeMs`: a container being created may be about
   * to bind a new one. Never throws.
   */
  sweep(signal: AbortSignal): Promise<void>;
}

/**
 * @example
 * const folders = createHostFolders({ hostDirs, runtime, logger, minAgeMs: 60_000 });
 * const key = folders.keyOf(details, spec.target);
 */
export function createHostFolders(context: HostFoldersContext): HostFolders {
  const { hostDirs, runtime, logger, minAgeMs } = context;
  /** Containers delivered to by the host path, with their folder's key. */
  const keys = new Map<string, string>();
  // Every check needs the engine's whole list as it is once the check began: concurrent checks
  // share one list that began after each of them asked (about two lists for a burst of
  // deliveries, not one each), so a binder created before a check started is still seen by it.
  // The sources are resolved once per list too (a syscall or more each: with 10,000 containers
  // that, not the inspect, was most of a delivery's cost), after every sharer asked.
  const listBinds = createFreshShared(async (signal) =>
    bindsOfAll(await runtime.listContainers({ all: true, signal })),
  );

  /** Every container (any state, any labels) with a bind mount that reaches `folder`. */
  async function bindersOf(folder: string, signal: AbortSignal): Promise<Binder[]> {
    const binders: Binder[] = [];
    for (const bind of await listBinds(signal)) {
      const { above, within } = reaches(bind.real, folder);
      if (!above && !within) continue;
      binders.push({
        id: bind.container.id,
        name: bind.container.name,
        source: bind.source,
        writable: bind.writable,
        sharing: within,
        running: RUNNING_STATES.has(bind.container.state),
        createdAt: bind.container.createdAt ?? 0,
      });
    }
    return binders;
  }

  return {
    enabled: hostDirs !== undefined,
    async keyOf(details, target, signal) {
      if (hostDirs === undefined) return undefined;
      const bind = details.binds.find((mount) => mount.target === target);
      if (bind === undefined) return undefined;
      const prefix = `${hostDirs.root}/`;
      if (!bind.source.startsWith(prefix)) return undefined;
      const key = bind.source.slice(prefix.length);
      if (!isHostKey(hostDirs, key)) return undefined;
      if (!bind.readOnly) {
        // Writable, root in the container could swap the folder's entries under the agent's
        // writes (and so steer them): refused, with the fix.
        throw new DsoError(
          'DSO_AGENT_HOST_PATH_WRITABLE',
          `container ${nameOf(details)} mounts its secrets folder ${bind.source} writable: mount it read-only (--mount type=bind,source=${bind.source},target=${target},readonly)`,
          { containerId: details.id, folder: bind.source, writer: details.id },
        );
      }
      const folder = hostDirs.pathOf(key);
      const binders = await bindersOf(join(resolved(hostDirs.root), key), signal);
      // Any container (this one included, by another bind) that can write the folder, a folder
      // above it or one inside it (running or not: a stopped one starts at will) could plant
      // links under the agent's writes. They reach nothing outside (the runtime never follows
      // one), but the folder is no longer the agent's alone: no delivery through it until that
      // container is gone.
      const writer = binders.find((binder) => binder.writable);
      if (writer !== undefined) {
        throw new DsoError(
          'DSO_AGENT_HOST_PATH_WRITABLE',
          `container ${writer.name} (${writer.id.slice(0, 12)}) can write the secrets folder ${folder} (it mounts ${writer.source} writable): remove it, or make that mount read-only, then run \`dso reconcile\`; until then no secret of container ${nameOf(details)} is written there`,
          { containerId: details.id, folder, writer: writer.id, writerName: writer.name },
        );
      }
      // One folder, one owner: the running container delivered to through it, else the first
      // created. Its blue-green replacement (dso.replace.of) takes the folder over.
      const running = binders.filter(
        (binder) => binder.sharing && binder.running && binder.id !== details.id,
      );
      if (running.length > 0) {
        const self = binders.find((binder) => binder.id === details.id);
        const contenders = [
          ...running,
          {
            id: details.id,
            name: details.name,
            createdAt: self?.createdAt ?? Number.POSITIVE_INFINITY,
          },
        ];
        const known = contenders.find((binder) => keys.get(binder.id) === key);
        const owner =
          known ??
          contenders.reduce((first, binder) =>
            binder.createdAt < first.createdAt ||
            (binder.createdAt === first.createdAt && binder.id < first.id)
              ? binder
              : first,
          );
        if (owner.id !== details.id && details.labels[REPLACE_LABELS.of] !== owner.id) {
          throw new DsoError(
            'DSO_AGENT_HOST_PATH_SHARED',
            `container ${nameOf(details)} binds the secrets folder ${folder}, which belongs to container ${owner.name} (${owner.id.slice(0, 12)}): a folder holds one container's secrets. Give each container its own folder (${hostDirs.root}/<container name>), then recreate this one`,
            { containerId: details.id, folder, owner: owner.id, ownerName: owner.name },
          );
        }
      }
      return key;
    },
    async ownersReachedBy(containerId, signal) {
      if (hostDirs === undefined || keys.size === 0) return [];
      let binds: ContainerDetails['binds'];
      try {
        binds = (await runtime.inspectContainer(containerId, { signal })).binds;
      } catch (error) {
        logger.debug(
          { err: error, code: errorCode(error), containerId: containerId.slice(0, 12) },
          'could not inspect a started container for the host folders it binds',
        );
        return [];
      }
      const root = resolved(hostDirs.root);
      // Each source resolved once (a realpath walks the file system), not once per folder:
      // with a fleet on the host path `keys` holds thousands and this runs at every start.
      const sources = binds.map((bind) => resolved(bind.source));
      if (sources.length === 0) return [];
      const owners: string[] = [];
      for (const [owner, key] of keys) {
        if (owner === containerId) continue;
        const folder = join(root, key);
        if (sources.some((source) => reachesAny(reaches(source, folder)))) owners.push(owner);
      }
      return owners;
    },
    remember(containerId, key) {
      keys.set(containerId, key);
    },
    write(containerId, key, request) {
      if (hostDirs === undefined) throw new TypeError('the host path is off: no folder to write');
      const result = hostDirs.write(key, request);
      keys.set(containerId, key);
      return result;
    },
    clear(containerId, destroyed) {
      const key = keys.get(containerId);
      if (key === undefined || hostDirs === undefined) return;
      if (destroyed) keys.delete(containerId);
      // Another container sharing the folder keeps it.
      for (const [other, otherKey] of keys) if (other !== containerId && otherKey === key) return;
      try {
        hostDirs.remove(key);
        // A stopped container keeps an empty folder (its bind mount needs it to start again,
        // and without `..data` its wait holds the application until the files are back).
        if (!destroyed) hostDirs.ensure(key);
      } catch (error) {
        logger.warn(
          { err: error, code: errorCode(error) },
          'could not clear a host secrets folder',
        );
      }
    },
    async sweep(signal) {
      if (hostDirs === undefined) return;
      try {
        const all = await runtime.listContainers({
          label: `${LABELS.enable}=true`,
          all: true,
          signal,
        });
        const used = new Set<string>();
        const prefix = `${hostDirs.root}/`;
        for (const container of all) {
          for (const bind of container.binds ?? []) {
            if (bind.source.startsWith(prefix)) used.add(bind.source.slice(prefix.length));
          }
        }
        let removed = 0;
        for (const key of hostDirs.keys()) {
          if (used.has(key)) continue;
          const changedAt = lstatSync(hostDirs.pathOf(key), { throwIfNoEntry: false })?.ctimeMs;
          // Wall-clock time, as the file system's ctime is (not the agent's injected clock).
          // Whole ms, as Date.now(): a folder made in this very millisecond is 0 ms old, not less.
          const ageMs = Date.now() - Math.floor(changedAt ?? Number.POSITIVE_INFINITY);
          if (!(ageMs >= minAgeMs)) continue;
          hostDirs.remove(key);
          removed += 1;
        }
        if (removed > 0) {
          logger.info({ folders: removed }, 'host folders of removed containers deleted');
        }
      } catch (error) {
        if (signal.aborted) return;
        logger.warn(
          { err: error, code: errorCode(error) },
          'could not clean the host path folders',
        );
      }
    },
  };
}

/** A container that binds a host folder reaching a key's folder. */
interface Binder {
  id: string;
  name: string;
  /** The bind's source. */
  source: string;
  /** It can write the folder: a writable bind of it, of a folder above it, or of one inside it. */
  writable: boolean;
  /** It sees the folder's files: a bind of the folder or of a folder inside it. */
  sharing: boolean;
  running: boolean;
  createdAt: number;
}

/** States in which a container's processes can read its mounts. */
const RUNNING_STATES = new Set(['running', 'paused', 'restarting']);

/** A bind mount of a listed container, its source resolved. */
interface ListedBind {
  container: ContainerSummary;
  source: string;
  /** `source` with the host's symlinks resolved. */
  real: string;
  writable: boolean;
}

function bindsOfAll(containers: ContainerSummary[]): ListedBind[] {
  const binds: ListedBind[] = [];
  for (const container of containers) {
    for (const bind of container.binds ?? []) {
      binds.push({
        container,
        source: bind.source,
        real: resolved(bind.source),
        writable: bind.readOnly !== true,
      });
    }
  }
  return binds;
}

/** Whether `folder` is `real` (a resolved source), inside it, or holds it. */
function reaches(real: string, folder: string): { above: boolean; within: boolean } {
  return {
    above: real === folder || folder.startsWith(`${real === '/' ? '' : real}/`),
    within: real === folder || real.startsWith(`${folder}/`),
  };
}

function reachesAny(reach: { above: boolean; within: boolean }): boolean {
  return reach.above || reach.within;
}

/** A bind's source with the host's symlinks resolved (`/var/run` is `/run`), else as given. */
function resolved(source: string): string {
  try {
    // The libc's realpath: half the CPU of node's own walk, run for every bind of every list.
    return realpathSync.native(source);
  } catch {
    // Missing (the engine creates it) or unreadable: compared as the engine reports it.
    return normalize(source);
  }
}

function nameOf(details: Pick<ContainerDetails, 'id' | 'name'>): string {
  return details.name === '' ? details.id.slice(0, 12) : details.name;
}

/** Whether `key` names a key folder, by the runtime's own rule (`pathOf` refuses any other). */
function isHostKey(dirs: HostSecretDirs, key: string): boolean {
  try {
    dirs.pathOf(key);
    return true;
  } catch {
    return false;
  }
}
