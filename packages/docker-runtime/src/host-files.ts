/**
 * The host path: a container's (or a service's) secret files in a directory on a host tmpfs,
 * bind-mounted read-only into the container. No exec, shell or tar runs in the container, and
 * the files exist before its application starts. The layout and the swap are those of the exec
 * path's script (write-script.ts), the Kubernetes atomic_writer pattern:
 *
 *   <root>/<key>/..dso_<generation>/<name>   regular files: the content, `mode`, `owner`
 *   <root>/<key>/..data -> ..dso_<generation>   the commit point, swapped with rename(2)
 *   <root>/<key>/<name> -> ..data/<name>         what the application opens
 *
 * Every link is relative, so it resolves inside the container through the bind mount.
 *
 * Everything here is synchronous on purpose. A tmpfs keeps its pages in memory and never waits
 * for a device, so each of these system calls returns in microseconds; going through libuv's
 * thread pool would cost more per call than the call itself (the bench target is ten files in
 * under 2 ms), and would compete with DNS and crypto for its four threads. Being synchronous
 * also serialises every write to a key within the process for free: two writes can never
 * interleave. Nothing is fsynced: there is no disk behind a tmpfs.
 */
import { randomBytes } from 'node:crypto';
import { type Dirent, mkdirSync, statfsSync } from 'node:fs';
import { isAbsolute, join, normalize } from 'node:path';
import { DockerRuntimeError } from './errors.js';
import { errnoOf, SafeDir } from './safe-dir.js';
import { type SecretFile, validateWriteRequest } from './write-request.js';

/**
 * Where {@link createHostSecretDirs} keeps key directories unless told otherwise. `/run` is a
 * tmpfs on most systemd hosts; where it is not, mount one here or choose a root under
 * `/dev/shm`.
 */
export const DEFAULT_HOST_SECRETS_ROOT = '/run/dso/containers';

/** `f_type` of a tmpfs in statfs(2) (`TMPFS_MAGIC` in linux/magic.h). */
export const TMPFS_MAGIC = 0x01021994;

/** A key: a container id or name, or a compose service name. */
const KEY_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const VERSION_PREFIX = '..dso_';
const TMP_PREFIX = '..tmp_';
const DATA_LINK = '..data';
/** What the container's files are linked through; the first segment of each name's link. */
const DATA_PREFIX = `${DATA_LINK}/`;
/** The root: only its owner (root) may reach a key's folder from the host. */
const ROOT_MODE = 0o700;
const KEY_DIR_MODE = 0o755;
const STAGING_MODE = 0o700;
/** A filled version directory: anyone may traverse it, nobody may change it. */
const SEALED_MODE = 0o555;

/** Options of {@link createHostSecretDirs}. */
export interface HostSecretDirsOptions {
  /**
   * The directory that holds one directory per key. It must be on a tmpfs; it is created
   * (mode 0755) when missing, then checked.
   * @default DEFAULT_HOST_SECRETS_ROOT (`/run/dso/containers`)
   */
  root?: string;
}

/** What {@link HostSecretDirs.write} writes. */
export interface HostWriteRequest {
  /**
   * The whole set: names a previous write left in the key's directory and this set omits are
   * removed. Each name is checked like the exec path's (`checkFileName`). The contents are
   * written straight from these buffers and not kept; the caller owns (and may zero) them.
   */
  files: SecretFile[];
  /**
   * Permission bits of every file.
   * @default 0o400
   */
  mode?: number;
  /**
   * Numeric owner of every file: the container's user as the container sees it. Resolve it with
   * {@link DockerRuntime.resolveUser} (works on a created, not yet started container).
   */
  owner: { uid: number; gid: number };
}

/** What a successful {@link HostSecretDirs.write} did. */
export interface HostWriteResult {
  /** The key's directory on the host: what is bind-mounted. */
  path: string;
  /** Files written. */
  files: number;
  /** Sum of the files' sizes in bytes. */
  bytes: number;
  /** Wall time of the call in ms, from validation to the end of clean-up. */
  durationMs: number;
  /** The version directory now live: `<path>/..dso_<generation>`, linked as `<path>/..data`. */
  generation: string;
}

/**
 * A read-only bind mount of a key's directory, in DSO's own terms. For the engine's API it is
 * `{ Type: 'bind', Source: source, Target: target, ReadOnly: true }`; on the command line,
 * `--mount type=bind,source=<source>,target=<target>,readonly`.
 */
export interface HostSecretMount {
  type: 'bind';
  /** The key's directory on the host. */
  source: string;
  /** Where the container sees the files, e.g. `/run/secrets`. */
  target: string;
  readOnly: true;
}

/**
 * Secret files kept in host tmpfs directories, one per key (a container or a service), for
 * bind-mounting read-only into containers. One process should own a root: writes are
 * serialised within a process, not across processes. Holds no open files or timers, so there is
 * nothing to close.
 */
export interface HostSecretDirs {
  /** The root directory, absolute and normalised. */
  readonly root: string;

  /**
   * The absolute host path of a key's directory: the bind mount's source.
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST when `key` is not
   *   `[A-Za-z0-9][A-Za-z0-9_.-]{0,127}`
   * @example
   * dirs.pathOf('web-1'); // '/run/dso/containers/web-1'
   */
  pathOf(key: string): string;

  /**
   * The read-only bind mount that puts a key's files at `target` in a container. Pure: it
   * creates nothing; the engine refuses a bind mount whose source is missing, so call
   * {@link ensure} or {@link write} before creating the container.
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a bad key, or a `target` that is
   *   not a normalised absolute path of `A-Z a-z 0-9 . _ - /`
   * @example
   * const mount = dirs.mountFor('web-1', '/run/secrets');
   * // HostConfig.Mounts: [{ Type: 'bind', Source: mount.source, Target: mount.target, ReadOnly: true }]
   */
  mountFor(key: string, target: string): HostSecretMount;

  /**
   * Creates a key's directory (mode 0755, empty) when missing and checks it is a real
   * directory on a tmpfs; returns its path. Idempotent. Call it before creating a container
   * whose bind mount needs the directory, when its files are written only after creation (to
   * learn the container's user with {@link DockerRuntime.resolveUser}).
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a bad key
   * @throws DockerRuntimeError DSO_DOCKER_HOST_PATH_NOT_TMPFS when the directory is not on a tmpfs
   * @throws DockerRuntimeError DSO_DOCKER_HOST_PATH_FAILED when it is a symlink or not a
   *   directory, or cannot be created
   * @example
   * dirs.ensure('web-1');
   */
  ensure(key: string): string;

  /**
   * Replaces the whole set of a key's files, all-or-nothing: stages a new version directory,
   * links every name to `..data/<name>`, then swaps `..data` with a rename(2) (the commit
   * point) and removes what the previous sets left behind. A reader opening `<name>` gets the
   * old file or the new one, whole; a reader that resolves `..data` once (`cd ..data`) sees
   * one complete set. A failure before the swap removes what it staged and leaves the previous
   * set exactly as it was. Synchronous: a tmpfs never blocks on I/O.
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a bad key, file name, mode or
   *   owner (nothing is touched)
   * @throws DockerRuntimeError DSO_DOCKER_HOST_PATH_NOT_TMPFS when the key's directory is not on
   *   a tmpfs (nothing is written)
   * @throws DockerRuntimeError DSO_DOCKER_HOST_PATH_FAILED when a name is taken by something
   *   DSO did not write, when the owner cannot be set (not root), when the tmpfs is full, or
   *   on any other file-system failure; the previous set is then unchanged
   * @example
   * const owner = await runtime.resolveUser(containerId); // created, not yet started
   * dirs.write('web-1', { files: [{ name: 'db_password', content: bytes }], owner });
   * await docker.getContainer(containerId).start();
   */
  write(key: string, request: HostWriteRequest): HostWriteResult;

  /**
   * Removes a key's directory and everything in it. Idempotent. A container that still has it
   * bind-mounted then sees an empty directory: remove the container first.
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a bad key
   * @throws DockerRuntimeError DSO_DOCKER_HOST_PATH_FAILED when it cannot be removed
   * @example
   * dirs.remove('web-1');
   */
  remove(key: string): void;

  /**
   * The keys that have a directory under the root, sorted: what to reconcile against the
   * containers that exist.
   *
   * @throws DockerRuntimeError DSO_DOCKER_HOST_PATH_FAILED when the root cannot be read
   * @example
   * for (const key of dirs.keys()) if (!alive.has(key)) dirs.remove(key);
   */
  keys(): string[];
}

/**
 * Opens (creating it when missing) a root of host secret directories and checks it is on a
 * tmpfs, so a secret never lands on a disk.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST when `root` is not an absolute path
 * @throws DockerRuntimeError DSO_DOCKER_HOST_PATH_NOT_TMPFS when the root is not on a tmpfs; the
 *   message says how to mount one
 * @throws DockerRuntimeError DSO_DOCKER_HOST_PATH_FAILED when the root cannot be created or is
 *   not a directory
 * @example
 * const dirs = createHostSecretDirs({ root: '/run/dso/containers' });
 * dirs.ensure('web-1');
 * // docker run --mount type=bind,source=/run/dso/containers/web-1,target=/run/secrets,readonly ...
 */
export function createHostSecretDirs(options: HostSecretDirsOptions = {}): HostSecretDirs {
  return new HostSecretDirStore(normaliseRoot(options.root ?? DEFAULT_HOST_SECRETS_ROOT), noFault);
}

/**
 * A step of {@link HostSecretDirs.write}, for fault injection: those before the commit point,
 * and `clean` (before an older version directory is removed, after the swap; `name` is its name).
 */
export type HostWriteStep = 'stage' | 'file' | 'seal' | 'link' | 'swap' | 'clean';

/**
 * Like {@link createHostSecretDirs}, with `fault` called before each step of a write up to the
 * swap, and before each removal of an older version directory after it; what it throws before
 * the swap acts as that step failing, and what it does to the folder plays a racing writer. Tests only (not exported by the package): it
 * proves that a failure anywhere before the commit point leaves the previous set as it was.
 * @internal
 */
export function createHostSecretDirsWithFaults(
  options: HostSecretDirsOptions,
  fault: (step: HostWriteStep, name?: string) => void,
): HostSecretDirs {
  return new HostSecretDirStore(normaliseRoot(options.root ?? DEFAULT_HOST_SECRETS_ROOT), fault);
}

function noFault(): void {}

class HostSecretDirStore implements HostSecretDirs {
  readonly root: string;
  readonly #fault: (step: HostWriteStep, name?: string) => void;
  /** The root's identity when it was opened: a root replaced since (a rename, a mount) is refused. */
  readonly #rootId: { dev: number; ino: number };

  constructor(root: string, fault: (step: HostWriteStep, name?: string) => void) {
    this.root = root;
    this.#fault = fault;
    let dir: SafeDir;
    try {
      mkdirSync(root, { recursive: true, mode: ROOT_MODE });
      dir = SafeDir.open(root);
    } catch (error) {
      const errno = errnoOf(error);
      if (errno === 'ELOOP' || errno === 'ENOTDIR') {
        throw failed(`${root} is a symlink or not a directory: choose another root`, {
          path: root,
          errno,
        });
      }
      throw fsFailure(error, 'open the root', root, undefined);
    }
    try {
      const euid = process.geteuid?.();
      if (euid !== undefined && dir.uid !== euid) {
        throw failed(
          `${root} is owned by uid ${dir.uid}, not by the agent's user (uid ${euid}), who could ` +
            `change what the agent writes there: \`chown ${euid}:0 ${root}\`, or choose another root`,
          { path: root, uid: dir.uid },
        );
      }
      // Exact, whatever the umask or an older agent gave it: only its owner may reach a key's
      // folder from the host. A container reads its folder through its bind mount, which does
      // not traverse the root.
      if (dir.mode !== ROOT_MODE) dir.chmod(ROOT_MODE);
      assertTmpfs(dir.procPath, root, root);
      this.#rootId = { dev: dir.dev, ino: dir.ino };
    } catch (error) {
      if (error instanceof DockerRuntimeError) throw error;
      throw fsFailure(error, 'open the root', root, undefined);
    } finally {
      dir.close();
    }
  }

  pathOf(key: string): string {
    return join(this.root, checkKey(key));
  }

  mountFor(key: string, target: string): HostSecretMount {
    const source = this.pathOf(key);
    // The exec path's target rule, reused: an absolute, normalised path of safe characters.
    const checked = validateWriteRequest({ target, files: [] }).target;
    return { type: 'bind', source, target: checked, readOnly: true };
  }

  ensure(key: string): string {
    const path = this.pathOf(key);
    this.#openKey(key).close();
    return path;
  }

  write(key: string, request: HostWriteRequest): HostWriteResult {
    const startedAt = performance.now();
    const valid = validateHostRequest(request);
    const owner = valid.owner;
    const dir = this.#openKey(key);
    try {
      return this.#write(dir, key, valid, owner, startedAt);
    } finally {
      dir.close();
    }
  }

  #write(
    dir: SafeDir,
    key: string,
    valid: ValidHostRequest,
    owner: { uid: number; gid: number },
    startedAt: number,
  ): HostWriteResult {
    let entries: Dirent[];
    try {
      entries = dir.list();
    } catch (error) {
      throw fsFailure(error, 'read', dir.path, key);
    }
    const names = new Set(valid.files.map((file) => file.name));
    const linked = checkNames(dir, key, entries, names);

    const generation = `${Date.now()}_${randomBytes(6).toString('hex')}`;
    const version = `${VERSION_PREFIX}${generation}`;
    const tmp = `${TMP_PREFIX}${generation}`;
    const created: string[] = [];
    let step = 'stage';
    let name = version;
    let staged = false;
    let stage: SafeDir | undefined;
    try {
      this.#fault('stage');
      dir.mkdir(version, STAGING_MODE);
      staged = true;
      stage = dir.openDir(version);
      step = 'file';
      for (const file of valid.files) {
        name = join(version, file.name);
        this.#fault('file', file.name);
        // O_EXCL | O_NOFOLLOW: the staging directory is new, so anything there is not ours.
        stage.createFile(file.name, file.content, valid.mode, owner);
      }
      step = 'seal';
      name = version;
      this.#fault('seal');
      stage.chmod(SEALED_MODE);
      // Names new to the set dangle until the swap, exactly as if they did not exist yet.
      step = 'link';
      for (const linkName of names) {
        if (linked.has(linkName)) continue;
        name = linkName;
        this.#fault('link', linkName);
        dir.symlink(`${DATA_PREFIX}${linkName}`, linkName);
        created.push(linkName);
      }
      // The commit point: rename(2) replaces ..data atomically, so a path resolved through it
      // reaches the old version directory or the new one, never neither.
      step = 'swap';
      name = DATA_LINK;
      this.#fault('swap');
      dir.symlink(version, tmp);
      dir.rename(tmp, DATA_LINK);
    } catch (error) {
      stage?.close();
      stage = undefined;
      undo(dir, created, tmp, staged ? version : undefined);
      if (error instanceof DockerRuntimeError) throw error;
      throw fsFailure(error, step, dir.display(name), key, owner);
    } finally {
      stage?.close();
    }
    const unexpected = cleanUp(dir, entries, names, version, this.#fault);
    if (unexpected.length > 0) {
      throw tampered(
        `${dir.path} held ${unexpected.join(', ')}, which DSO did not write (a link or a ` +
          'non-regular file where DSO keeps its versions): removed as such, nothing followed, ' +
          'and the new set is live. Something with write access to the folder changed it: ' +
          'remove every container that mounts it writable',
        { key, path: dir.path, entries: unexpected, live: true },
      );
    }
    return {
      path: dir.path,
      files: valid.files.length,
      bytes: valid.bytes,
      durationMs: Math.round((performance.now() - startedAt) * 100) / 100,
      generation,
    };
  }

  remove(key: string): void {
    const path = this.pathOf(key);
    let root: SafeDir;
    try {
      root = this.#openRoot();
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return; // no root, so no folder: nothing to remove
      throw error;
    }
    try {
      // A directory is emptied through descriptors; a symlink someone put in its place is
      // removed as a link, never followed.
      root.removeTree(key);
    } catch (error) {
      throw fsFailure(error, 'remove', path, key);
    } finally {
      root.close();
    }
  }

  keys(): string[] {
    let root: SafeDir;
    try {
      root = this.#openRoot();
    } catch (error) {
      if (errnoOf(error) === 'ENOENT') return [];
      throw error;
    }
    let entries: Dirent[];
    try {
      entries = root.list();
    } catch (error) {
      throw fsFailure(error, 'list', this.root, undefined);
    } finally {
      root.close();
    }
    return entries
      .filter((entry) => entry.isDirectory() && KEY_PATTERN.test(entry.name))
      .map((entry) => entry.name)
      .sort();
  }

  /** Opens the root, refusing a directory that is not the one this store opened at first. */
  #openRoot(): SafeDir {
    try {
      return SafeDir.open(this.root, this.#rootId);
    } catch (error) {
      const errno = errnoOf(error);
      if (errno === 'ENOENT') throw error;
      if (errno === 'ELOOP' || errno === 'ENOTDIR' || errno === 'EXDEV') {
        throw tampered(
          `${this.root} is no longer the directory DSO opened at start (replaced by a link, ` +
            'another directory or a mount): nothing is written there. Restore it, or restart ' +
            'the agent to open the new one',
          { path: this.root, errno },
        );
      }
      throw fsFailure(error, 'open the root', this.root, undefined);
    }
  }

  /**
   * Opens a key's folder through the root's descriptor, creating it when missing: a real
   * directory (never through a symlink), on the root's tmpfs.
   */
  #openKey(key: string): SafeDir {
    const path = this.pathOf(key);
    let root: SafeDir;
    try {
      root = this.#openRoot();
    } catch (error) {
      if (error instanceof DockerRuntimeError) throw error;
      throw fsFailure(error, 'prepare', path, key);
    }
    let dir: SafeDir | undefined;
    try {
      let made = false;
      try {
        root.mkdir(key, KEY_DIR_MODE);
        made = true;
      } catch (error) {
        // There already (or created meanwhile by someone else): judged by opening it below.
        if (errnoOf(error) !== 'EEXIST') throw error;
      }
      // A mount point is allowed here (the operator's own tmpfs): the tmpfs check below judges it.
      dir = root.openDir(key, { anyDevice: true });
      if (made && dir.mode !== KEY_DIR_MODE) dir.chmod(KEY_DIR_MODE);
    } catch (error) {
      dir?.close();
      const errno = errnoOf(error);
      if (errno === 'ELOOP' || errno === 'ENOTDIR' || errno === 'EXDEV') {
        const what = root.lstat(key)?.isSymbolicLink() ? 'a symlink' : 'not a directory';
        throw failed(
          `${path} is ${what}: remove it; DSO writes only into a real directory it created`,
          { key, path, reason: 'not-a-directory', errno },
        );
      }
      throw fsFailure(error, 'prepare', path, key);
    } finally {
      root.close();
    }
    try {
      // The key's directory itself, not only the root: something else may be mounted there.
      assertTmpfs(dir.procPath, path, this.root);
    } catch (error) {
      dir.close();
      throw error;
    }
    return dir;
  }
}

/**
 * Refuses a set whose names (or `..data`) are taken by anything but DSO's own links, and a
 * folder whose DSO entries are not what DSO wrote, before anything is written. Returns the names
 * already linked to `..data/<name>`.
 */
function checkNames(dir: SafeDir, key: string, entries: Dirent[], names: Set<string>): Set<string> {
  const linked = new Set<string>();
  for (const entry of entries) {
    const path = dir.display(entry.name);
    if (entry.name.startsWith(VERSION_PREFIX) && !entry.isDirectory()) {
      throw tampered(
        `${path} is not a directory, where DSO keeps a version directory: something with write ` +
          'access to the folder planted it. Nothing was written. Remove every container that ' +
          `mounts ${dir.path} writable, then remove ${path}`,
        { key, path, name: entry.name },
      );
    }
    const isData = entry.name === DATA_LINK;
    if (!isData && !names.has(entry.name)) continue;
    let ours = false;
    if (entry.isSymbolicLink()) {
      let link: string | undefined;
      try {
        link = dir.readlink(entry.name);
      } catch (error) {
        throw fsFailure(error, 'read', path, key);
      }
      ours =
        link !== undefined &&
        (isData
          ? link.startsWith(VERSION_PREFIX) && !link.includes('/')
          : link === `${DATA_PREFIX}${entry.name}`);
    }
    if (!ours) {
      throw failed(
        `${path} exists and is not a link written by DSO: remove it` +
          (isData ? '' : ' or choose another file name'),
        { key, path, name: entry.name, reason: 'conflict' },
      );
    }
    if (!isData) linked.add(entry.name);
  }
  return linked;
}

/** Removes what a failed write created before the swap. The previous set was never touched. */
function undo(dir: SafeDir, links: string[], tmp: string, stage: string | undefined): void {
  for (const link of links) removeQuietly(dir, link);
  removeQuietly(dir, tmp);
  if (stage !== undefined) removeVersionDir(dir, stage);
}

/**
 * After the swap: removes the links of names the new set dropped, older version directories and
 * stale temporary links (a crash can leave both). A failure here leaves the new set live and
 * correct, so it is not the caller's failure; the next write tries again. Returns the entries
 * found that DSO never writes (links or special files where its versions are): tampering.
 */
function cleanUp(
  dir: SafeDir,
  entries: Dirent[],
  names: Set<string>,
  live: string,
  fault: (step: HostWriteStep, name?: string) => void,
): string[] {
  const unexpected: string[] = [];
  for (const entry of entries) {
    if (entry.name.startsWith(VERSION_PREFIX)) {
      if (entry.name === live) continue;
      fault('clean', entry.name);
      // Listed as a directory a moment ago; it may be a link to anywhere by now. Removed
      // through descriptors, a link as a link: nothing outside the folder is reached.
      if (removeVersionDir(dir, entry.name) > 0) unexpected.push(entry.name);
    } else if (entry.name.startsWith(TMP_PREFIX)) {
      if (entry.isSymbolicLink()) removeQuietly(dir, entry.name);
    } else if (
      !entry.name.startsWith('..') &&
      !names.has(entry.name) &&
      entry.isSymbolicLink() &&
      readlinkQuietly(dir, entry.name) === `${DATA_PREFIX}${entry.name}`
    ) {
      removeQuietly(dir, entry.name);
    }
  }
  return unexpected;
}

/**
 * Removes a version directory through descriptors (each level opened O_NOFOLLOW, a link
 * removed as a link). Returns how many entries were not what DSO writes there.
 */
function removeVersionDir(dir: SafeDir, name: string): number {
  try {
    return dir.removeTree(name).unexpected;
  } catch {
    // Left for the next write's clean-up, which removes every version directory but the live one.
    return 0;
  }
}

function removeQuietly(dir: SafeDir, name: string): void {
  try {
    dir.unlink(name);
  } catch {
    // Already gone, or left for the next write's clean-up: nothing that is live depends on it.
  }
}

function readlinkQuietly(dir: SafeDir, name: string): string | undefined {
  try {
    return dir.readlink(name);
  } catch {
    // Gone meanwhile: then it is not a link to remove.
    return undefined;
  }
}

interface ValidHostRequest {
  files: SecretFile[];
  mode: number;
  owner: { uid: number; gid: number };
  bytes: number;
}

function validateHostRequest(request: HostWriteRequest): ValidHostRequest {
  if (request?.owner === undefined || request.owner === null) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      "owner is required: the container's user as numeric uid and gid (runtime.resolveUser)",
      { field: 'owner' },
    );
  }
  // The exec path's rules for names, sizes, mode and owner, reused. It also checks a container
  // target, which the host path does not have: a fixed valid one stands in.
  const valid = validateWriteRequest({
    target: '/run/secrets',
    files: request.files,
    mode: request.mode,
    owner: request.owner,
  });
  return {
    files: valid.files,
    mode: valid.mode,
    owner: request.owner,
    bytes: valid.bytes,
  };
}

function checkKey(key: unknown): string {
  if (typeof key !== 'string' || !KEY_PATTERN.test(key)) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      `key ${JSON.stringify(key)} must be a container id or name, or a service name: ` +
        'A-Z a-z 0-9 then up to 127 of A-Z a-z 0-9 _ . -',
      { field: 'key' },
    );
  }
  return key;
}

function normaliseRoot(root: unknown): string {
  if (typeof root !== 'string' || !isAbsolute(root) || root.includes('\0')) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      `root ${JSON.stringify(root)} must be an absolute path`,
      { field: 'root' },
    );
  }
  const normal = normalize(root);
  return normal.length > 1 ? normal.replace(/\/+$/, '') : normal;
}

/** Checks that `path` (a descriptor's /proc path, or a plain one) is on a tmpfs; `display` names it. */
function assertTmpfs(path: string, display: string, root: string): void {
  let type: number;
  try {
    type = statfsSync(path).type;
  } catch (error) {
    throw fsFailure(error, 'check the file system of', display, undefined);
  }
  if (type !== TMPFS_MAGIC) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_HOST_PATH_NOT_TMPFS',
      `${display} is not on a tmpfs (file system type 0x${type.toString(16)}), so secret files ` +
        `would reach a disk: mount one with \`mount -t tmpfs -o mode=0700,size=16m tmpfs ${root}\` ` +
        'or choose a root under /dev/shm',
      { path: display, root, fsType: type },
    );
  }
}

function failed(message: string, facts: Record<string, unknown>): DockerRuntimeError {
  return new DockerRuntimeError('DSO_DOCKER_HOST_PATH_FAILED', message, facts);
}

/**
 * Something other than DSO changed a folder DSO writes (a link or a file planted where DSO keeps
 * a directory, a directory swapped between two operations): never followed, refused, and not
 * retryable, since it will not pass by itself.
 */
function tampered(message: string, facts: Record<string, unknown>): DockerRuntimeError {
  return new DockerRuntimeError('DSO_DOCKER_HOST_PATH_TAMPERED', message, facts);
}

/**
 * A file-system failure as DSO_DOCKER_HOST_PATH_FAILED. Node's own message names the system
 * call and the path only, never a file's content, so it is kept as the cause.
 */
function fsFailure(
  error: unknown,
  step: string,
  path: string,
  key: string | undefined,
  owner?: { uid: number; gid: number },
): DockerRuntimeError {
  const errno = errnoOf(error);
  const facts = { key, path, step, errno, cause: error };
  const kept = WRITE_STEPS.has(step) ? '; the previous set is unchanged' : '';
  if (errno === 'ELOOP' || errno === 'EXDEV' || errno === 'ENOTDIR') {
    return tampered(
      `${path} was replaced while DSO worked in it (a link, a file or a mount where DSO had ` +
        `made a directory): nothing was followed${kept}. Something with write access to the ` +
        'folder changed it: remove every container that mounts it writable',
      facts,
    );
  }
  if (step === 'file' && owner !== undefined && errno === 'EPERM') {
    return failed(
      `cannot make secret files of ${key} owned by ${owner.uid}:${owner.gid}: changing a file's ` +
        'owner needs root (or CAP_CHOWN); run the agent as root, or as the container user ' +
        `${owner.uid}:${owner.gid}${kept}`,
      facts,
    );
  }
  if (errno === 'ENOSPC') {
    return failed(
      `the tmpfs holding ${path} is full: remount it larger ` +
        `(\`mount -o remount,size=64m <its mount point>\`)${kept}`,
      facts,
    );
  }
  return failed(
    `cannot ${describeStep(step)} ${path}${errno === undefined ? '' : ` (${errno})`}${kept}`,
    facts,
  );
}

/** The steps of a write before its commit point: failing in one leaves the previous set. */
const WRITE_STEPS = new Set(['prepare', 'read', 'stage', 'file', 'seal', 'link', 'swap']);

function describeStep(step: string): string {
  switch (step) {
    case 'stage':
      return 'create the version directory';
    case 'file':
      return 'write the secret file';
    case 'seal':
      return 'seal the version directory';
    case 'link':
      return 'link';
    case 'swap':
      return 'swap';
    default:
      return step;
  }
}
