import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DsoError } from '@dso/core';
import {
  createHostSecretDirs,
  type HostSecretDirs,
  type HostWriteRequest,
  TMPFS_MAGIC,
} from '@dso/docker-runtime';

const run = promisify(execFile);

/** How long one `mount` may take. */
const MOUNT_COMMAND_TIMEOUT_MS = 10_000;

/** What {@link createVolumeFolders} needs. */
export interface VolumeFoldersOptions {
  /** `volumes.root`: absolute. */
  root: string;
  /** The size of the tmpfs mounted at `root` when it is not on one already. */
  tmpfsSize: number;
  /** Runs `mount` (tests give their own). @default execFile of the system's command */
  command?: (file: 'mount', args: string[]) => Promise<void>;
  /** Reads the mount table. @default /proc/self/mountinfo */
  mountTable?: () => string;
}

/**
 * The folders of DSO volumes:
 *
 *   <root>/data/<key>     a mount's files (the host path's layout: versioned folder, `..data`
 *                         swapped by rename, names as links), written only by the agent
 *   <root>/view           a read-only bind mount of `<root>/data`, made once at start
 *   <root>/view/<key>     what the engine mounts into the container: the same folder, read-only.
 *                         Docker refuses `readonly` on anonymous volumes, so without the view a
 *                         container could plant links in its own folder and steer the agent's
 *                         next write; through it (without CAP_SYS_ADMIN) it cannot change a thing.
 *
 * `<root>` is mode 0700 and on a tmpfs (mounted by the agent when it is not): nothing reaches a
 * disk, and no other host user can read a file.
 */
export interface VolumeFolders {
  readonly root: string;
  /** Writes a mount's whole set of files, all-or-nothing. */
  write(key: string, request: HostWriteRequest): { files: number; bytes: number };
  /** Makes sure the key's folder exists; returns its read-only view's path, for the engine. */
  publish(key: string): Promise<string>;
  /** The path the engine was (or will be) given for a key. */
  mountpointOf(key: string): string;
  /** The key of a mount point this root gave out, or undefined. */
  keyOf(mountpoint: string): string | undefined;
  /** Removes the key's files. Idempotent. */
  remove(key: string): Promise<void>;
  /** Keys that have files. */
  keys(): string[];
}

/**
 * Prepares `root` (a private tmpfs when it is not on one) and returns its folders.
 *
 * @throws DsoError DSO_VOLUME_ROOT_UNAVAILABLE when the root cannot be made a private tmpfs (not
 *   root, no `mount`): the agent then serves no volume, and says so
 */
export async function createVolumeFolders(options: VolumeFoldersOptions): Promise<VolumeFolders> {
  const root = options.root;
  const command =
    options.command ??
    (async (file: 'mount', args: string[]) => {
      await run(file, args, { timeout: MOUNT_COMMAND_TIMEOUT_MS });
    });
  const mountTable = options.mountTable ?? (() => readFileSync('/proc/self/mountinfo', 'utf8'));
  try {
    mkdirSync(root, { recursive: true, mode: 0o700 });
    if (statfsSync(root).type !== TMPFS_MAGIC) {
      await command('mount', [
        '-t',
        'tmpfs',
        '-o',
        `size=${options.tmpfsSize},mode=0700,nosuid,nodev,noexec`,
        'tmpfs',
        root,
      ]);
    }
    chmodSync(root, 0o700);
  } catch (error) {
    throw unavailable(root, error);
  }
  const dirs: HostSecretDirs = createHostSecretDirs({ root: join(root, 'data') });
  chmodSync(join(root, 'data'), 0o755);
  const view = join(root, 'view');
  /** Whether `path` is a mount point now. */
  const isMounted = (path: string): boolean =>
    mountTable()
      .split('\n')
      .some((line) => line.split(' ')[4] === path);
  try {
    if (!isMounted(view)) {
      mkdirSync(view, { recursive: true, mode: 0o755 });
      // One command at start, none per Mount: bind, then remount read-only (util-linux does
      // both for `--bind -o ro`). Every folder under it is seen read-only through it.
      await command('mount', ['--bind', '-o', 'ro,nosuid,nodev,noexec', dirs.root, view]);
    }
  } catch (error) {
    throw unavailable(root, error);
  }
  const viewOf = (key: string) => join(view, dirs.pathOf(key).slice(dirs.root.length + 1));

  return {
    root,
    write: (key, request) => dirs.write(key, request),
    async publish(key) {
      dirs.ensure(key);
      return viewOf(key);
    },
    mountpointOf: viewOf,
    keyOf(mountpoint) {
      const prefix = `${view}/`;
      if (!mountpoint.startsWith(prefix)) return undefined;
      const key = mountpoint.slice(prefix.length);
      try {
        dirs.pathOf(key);
        return key;
      } catch {
        return undefined; // not a key this root would give out
      }
    },
    async remove(key) {
      dirs.remove(key);
    },
    keys: () => dirs.keys(),
  };
}

function unavailable(root: string, error: unknown): DsoError {
  return new DsoError(
    'DSO_VOLUME_ROOT_UNAVAILABLE',
    `volumes.root ${root} could not be made a private tmpfs with a read-only view (${(error as Error).message}): run the agent as root, or mount a tmpfs there yourself (mount -t tmpfs -o size=64m,mode=0700 tmpfs ${root})`,
    { cause: error, root },
  );
}
