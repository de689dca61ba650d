/**
 * A directory held open by its file descriptor, and every operation on its entries made through
 * that descriptor: the `openat`/`unlinkat` family, which Node lacks, done the Linux way through
 * `/proc/self/fd/<fd>/<name>`. The kernel resolves `/proc/self/fd/<fd>` to the very directory the
 * descriptor holds (wherever it has been renamed to since), then looks up `<name>` in it;
 * `unlink`, `rmdir`, `rename`, `symlink`, `mkdir`, `lstat` and `readlink` never follow that last
 * component, and every directory or file is opened with `O_NOFOLLOW`. So no path a container can
 * change (by renaming a directory, or swapping an entry for a symlink) can steer an operation
 * outside the directory that was opened: a symlink where a directory was expected is refused
 * (`ELOOP`/`ENOTDIR`) or removed as a link, never followed; a directory on another device (a
 * mount planted in the way) is refused (`EXDEV`).
 *
 * Synchronous, like the host path it serves (a tmpfs never blocks). Linux only (`/proc`).
 */
import {
  closeSync,
  constants,
  type Dirent,
  fchmodSync,
  fchownSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  renameSync,
  rmdirSync,
  type Stats,
  symlinkSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';

const DIR_FLAGS = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;
const NEW_FILE_FLAGS =
  constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;
/** How deep {@link SafeDir.removeTree} descends: DSO's folders are two levels deep. */
const MAX_REMOVE_DEPTH = 8;

/** What {@link SafeDir.removeTree} met besides real directories and regular files. */
export interface RemoveReport {
  /** Symlinks and other non-regular entries removed (as themselves, never followed). */
  unexpected: number;
}

/**
 * An open directory. Entry names are single path components (no `/`, not `.` or `..`); a bad
 * one is a programmer error (`TypeError`). Failures are Node's errno errors (`code`: `ENOENT`,
 * `EEXIST`, `ELOOP` or `ENOTDIR` for a symlink or file where a directory was expected, `EXDEV`
 * for a directory on another device). Close it when done.
 *
 * @example
 * const dir = SafeDir.open('/run/dso/containers');
 * try {
 *   const key = dir.openDir('web-1'); // ELOOP if web-1 is a symlink
 *   try { key.unlink('..tmp_1'); } finally { key.close(); }
 * } finally { dir.close(); }
 */
export class SafeDir {
  /** The descriptor. */
  readonly fd: number;
  /** The path it was opened by: for messages only, never used to reach it again. */
  readonly path: string;
  /** Its device and inode, as fstat(2) gave them when it was opened. */
  readonly dev: number;
  readonly ino: number;
  readonly uid: number;
  readonly mode: number;
  #closed = false;

  private constructor(fd: number, path: string, stats: Stats) {
    this.fd = fd;
    this.path = path;
    this.dev = stats.dev;
    this.ino = stats.ino;
    this.uid = stats.uid;
    this.mode = stats.mode & 0o7777;
  }

  /**
   * Opens a directory by an absolute path whose last component must not be a symlink (the
   * components above it are the operator's, and followed). With `expect`, refuses (`EXDEV`) a
   * directory that is not that one.
   */
  static open(path: string, expect?: { dev: number; ino: number }): SafeDir {
    const fd = openSync(path, DIR_FLAGS);
    const dir = SafeDir.#adopt(fd, path);
    if (expect !== undefined && (dir.dev !== expect.dev || dir.ino !== expect.ino)) {
      dir.close();
      throw errnoError('EXDEV', `${path} is not the directory opened before`);
    }
    return dir;
  }

  static #adopt(fd: number, path: string): SafeDir {
    try {
      const stats = fstatSync(fd);
      if (!stats.isDirectory()) throw errnoError('ENOTDIR', `${path} is not a directory`);
      return new SafeDir(fd, path, stats);
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }

  /** The path through the descriptor that reaches this directory itself (for statfs). */
  get procPath(): string {
    return `/proc/self/fd/${this.fd}`;
  }

  /** The path through the descriptor to one entry; the kernel never follows its last component. */
  entry(name: string): string {
    this.#assertOpen();
    return `${this.procPath}/${checkName(name)}`;
  }

  /** A path for messages: the directory's path and the entry's name. */
  display(name: string): string {
    return join(this.path, name);
  }

  /** Its entries, with their types as the directory lists them. */
  list(): Dirent[] {
    this.#assertOpen();
    return readdirSync(this.procPath, { withFileTypes: true });
  }

  /** The entry itself (a symlink is described, not followed), or undefined when missing. */
  lstat(name: string): Stats | undefined {
    return lstatSync(this.entry(name), { throwIfNoEntry: false });
  }

  /** A symlink's target, or undefined when the entry is missing or not a symlink. */
  readlink(name: string): string | undefined {
    try {
      return readlinkSync(this.entry(name));
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ENOENT' || code === 'EINVAL') return undefined; // missing, or not a link
      throw error;
    }
  }

  /** Creates a directory entry (`EEXIST` when the name is taken, by anything, a link included). */
  mkdir(name: string, mode: number): void {
    mkdirSync(this.entry(name), mode);
  }

  /**
   * Opens a child directory without following a symlink (`ELOOP`/`ENOTDIR`), on this
   * directory's device only (`EXDEV`) unless `anyDevice` (a mount point the operator made): the
   * child, wherever it is renamed to afterwards.
   */
  openDir(name: string, options: { anyDevice?: boolean } = {}): SafeDir {
    const path = this.display(name);
    const fd = openSync(this.entry(name), DIR_FLAGS);
    const child = SafeDir.#adopt(fd, path);
    if (options.anyDevice !== true && child.dev !== this.dev) {
      child.close();
      throw errnoError('EXDEV', `${path} is on another device than ${this.path}`);
    }
    return child;
  }

  /**
   * Creates a new regular file (`O_CREAT | O_EXCL | O_NOFOLLOW`: never an existing file, never
   * through a link), writes `content`, then sets its owner and exact mode through the descriptor.
   */
  createFile(
    name: string,
    content: Uint8Array,
    mode: number,
    owner?: { uid: number; gid: number },
  ): void {
    const fd = openSync(this.entry(name), NEW_FILE_FLAGS, 0o600);
    try {
      let offset = 0;
      while (offset < content.byteLength) {
        offset += writeSync(fd, content, offset, content.byteLength - offset);
      }
      if (owner !== undefined) fchownSync(fd, owner.uid, owner.gid);
      // After chown, which may clear mode bits; and exact, whatever the umask.
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  }

  /** Creates a symlink entry `name` whose content is `target` (`EEXIST` when taken). */
  symlink(target: string, name: string): void {
    symlinkSync(target, this.entry(name));
  }

  /** Renames an entry within this directory (rename(2): atomic, replaces `to`, follows neither). */
  rename(from: string, to: string): void {
    renameSync(this.entry(from), this.entry(to));
  }

  /** Removes a non-directory entry (a symlink is removed as itself). */
  unlink(name: string): void {
    unlinkSync(this.entry(name));
  }

  /** Removes an empty directory entry (`ENOTDIR` for a symlink: never followed). */
  rmdir(name: string): void {
    rmdirSync(this.entry(name));
  }

  /** Sets this directory's mode through its descriptor. */
  chmod(mode: number): void {
    this.#assertOpen();
    fchmodSync(this.fd, mode);
  }

  /** Sets this directory's owner through its descriptor. */
  chown(uid: number, gid: number): void {
    this.#assertOpen();
    fchownSync(this.fd, uid, gid);
  }

  /**
   * Removes an entry whatever it is: a directory with everything in it (each level opened
   * `O_NOFOLLOW` on this device, made writable through its descriptor, emptied through it), or
   * a file or symlink (removed as itself, never followed). Missing: nothing to do. Reports how
   * many entries were neither real directories nor regular files (tampering, in DSO's folders).
   *
   * @throws Error `ELOOP` when the tree is deeper than {@link MAX_REMOVE_DEPTH}
   */
  removeTree(name: string, report: RemoveReport = { unexpected: 0 }, depth = 0): RemoveReport {
    let child: SafeDir;
    try {
      child = this.openDir(name);
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ENOENT') return report;
      if (code !== 'ELOOP' && code !== 'ENOTDIR' && code !== 'EXDEV') throw error;
      // Not a directory of ours: a file, a link, or another device's directory seen through a
      // link. Remove the entry itself; unlink(2) never follows it.
      const stats = this.lstat(name);
      if (stats === undefined) return report;
      if (!stats.isFile()) report.unexpected += 1;
      if (stats.isDirectory()) throw error; // a real mount point: not ours to empty
      unlinkQuietly(this, name);
      return report;
    }
    try {
      if (depth >= MAX_REMOVE_DEPTH) {
        throw errnoError('ELOOP', `${child.path} is nested deeper than DSO writes`);
      }
      // Sealed 0555: without CAP_DAC_OVERRIDE even its owner must open it before emptying it.
      if ((child.mode & 0o700) !== 0o700) child.chmod(0o700);
      for (const entry of child.list()) child.removeTree(entry.name, report, depth + 1);
    } finally {
      child.close();
    }
    try {
      this.rmdir(name);
    } catch (error) {
      const code = errnoOf(error);
      if (code === 'ENOENT') return report;
      // Swapped for a link after it was emptied: remove the link, as a link.
      if (code !== 'ENOTDIR') throw error;
      report.unexpected += 1;
      unlinkQuietly(this, name);
    }
    return report;
  }

  /** Closes the descriptor. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeSync(this.fd);
  }

  [Symbol.dispose](): void {
    this.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new TypeError(`${this.path} was closed`);
  }
}

function unlinkQuietly(dir: SafeDir, name: string): void {
  try {
    dir.unlink(name);
  } catch (error) {
    // Gone meanwhile: nothing left to remove.
    if (errnoOf(error) !== 'ENOENT') throw error;
  }
}

function checkName(name: string): string {
  if (
    typeof name !== 'string' ||
    name === '' ||
    name === '.' ||
    name === '..' ||
    name.includes('/') ||
    name.includes('\0')
  ) {
    throw new TypeError(`${JSON.stringify(name)} is not a single path component`);
  }
  return name;
}

/** An Error shaped like Node's errno errors, for a refusal the kernel did not make itself. */
function errnoError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

export function errnoOf(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}
