import { randomBytes } from 'node:crypto';
import { link, lstat, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { errnoCode } from './vault-error.js';

/** Options for {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * The file's mode, set explicitly so the umask cannot widen or narrow it.
   * @default 0o600
   */
  mode?: number;
  /**
   * Replace an existing file. When false, an existing file is left alone and the call rejects
   * with `EEXIST`.
   * @default true
   */
  overwrite?: boolean;
  signal?: AbortSignal;
}

/**
 * Writes `data` to `path` so that readers see either the old file or the whole new one, even
 * across a crash: write a temp file in the same directory (`.<name>.<random>.tmp`, created
 * exclusively with `mode`), fsync it, rename it over `path` (or hard-link it into place when not
 * overwriting, which fails atomically if `path` exists), then fsync the directory so the rename
 * itself is durable. On any failure the temp file is removed and `path` is untouched.
 *
 * @throws the underlying fs error (`EEXIST` when `overwrite` is false and `path` exists), or the
 *   signal's reason when aborted before the file is put in place
 */
export async function writeFileAtomic(
  path: string,
  data: Uint8Array,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const { mode = 0o600, overwrite = true, signal } = options;
  signal?.throwIfAborted();
  const directory = dirname(path);
  const temp = join(directory, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);

  const handle = await open(temp, 'wx', mode);
  try {
    try {
      await handle.chmod(mode);
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    signal?.throwIfAborted();
    if (overwrite) {
      await rename(temp, path);
    } else {
      await link(temp, path);
      await removeQuietly(temp);
    }
  } catch (error) {
    await removeQuietly(temp);
    throw error;
  }
  await syncDirectory(directory);
}

async function removeQuietly(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch {
    // ENOENT: already renamed into place, nothing to clean up. Anything else: the caller's own
    // error (or success) is what matters, and a leftover temp file has the same mode as the target.
  }
}

/** fsyncs a directory so a rename or link inside it survives a crash. */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some filesystems refuse fsync on a directory (EINVAL, EISDIR on a few network mounts).
    // The data itself was fsynced; only the rename's durability is best-effort there.
    const code = errnoCode(error);
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'ENOTSUP') throw error;
  } finally {
    await handle.close();
  }
}

/**
 * Whether anything exists at `path` (a symlink counts, dangling or not). Used before an
 * exclusive create only to give a clearer error: the create itself is what guarantees no file is
 * replaced, and it reports any other problem (a path that cannot even be stat-ed reads as absent).
 */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    // Missing or not stat-able: the step that follows reports the real problem.
    return false;
  }
}
