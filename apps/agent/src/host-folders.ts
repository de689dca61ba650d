import { statSync } from 'node:fs';
import { DsoError, errorCode, LABELS, type Logger } from '@dso/core';
import type { ContainerDetails, DockerRuntime, HostSecretDirs } from '@dso/docker-runtime';

/** What the host folders part needs from the agent. */
export interface HostFoldersContext {
  /** The host tmpfs folders; absent: the host path is off and every method is a no-op. */
  hostDirs?: HostSecretDirs | undefined;
  runtime: Pick<DockerRuntime, 'listContainers'>;
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
   * (exec path).
   * @throws DsoError DSO_AGENT_HOST_PATH_WRITABLE when that bind mount is writable
   */
  keyOf(details: ContainerDetails, target: string): string | undefined;
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

  return {
    enabled: hostDirs !== undefined,
    keyOf(details, target) {
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
          `container ${details.id.slice(0, 12)} mounts its secrets folder ${bind.source} writable: mount it read-only (--mount type=bind,source=${bind.source},target=${target},readonly)`,
          { containerId: details.id },
        );
      }
      return key;
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
          const changedAt = statSync(hostDirs.pathOf(key), { throwIfNoEntry: false })?.ctimeMs;
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

/** Whether `key` names a key folder, by the runtime's own rule (`pathOf` refuses any other). */
function isHostKey(dirs: HostSecretDirs, key: string): boolean {
  try {
    dirs.pathOf(key);
    return true;
  } catch {
    return false;
  }
}
