import { randomBytes } from 'node:crypto';
import { type FileHandle, link, lstat, open, rename, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

// Key files (the local vault's, the Redis cache's) and the vault file itself are read and made
// the same way: checks on the open handle, never on the path, and a file that appears whole,
// with mode 0600, or not at all. Each caller words its own errors from a problem kind.

/**
 * What was wrong with a private file: `missing` (it does not exist), `not-file` (not a regular
 * file), `permissions` (group or others may read or write it), `too-large` (over the caller's
 * limit), `exists` (refused to replace it), `io` (the filesystem failed; see `errno`).
 */
export type PrivateFileProblem =
  | 'missing'
  | 'not-file'
  | 'permissions'
  | 'too-large'
  | 'exists'
  | 'io';

const PRIVATE_FILE_ERROR = Symbol.for('dso.private-file-error');

/**
 * Why {@link readPrivateFile} or {@link createPrivateFile} refused or failed. Its message is
 * plain; callers map `problem` to their own codes and words, with the facts here.
 */
export class PrivateFileError extends Error {
  /** What was wrong. */
  readonly problem: PrivateFileProblem;
  /** The file, as the caller named it. */
  readonly path: string;
  /** The file's permission bits (`mode & 0o777`), for `permissions`. */
  readonly mode: number | undefined;
  /** The file's size in bytes, for `too-large`. */
  readonly size: number | undefined;
  /** The system error's code (`ENOENT`, `EACCES`, …), for `missing`, `exists` and `io`. */
  readonly errno: string | undefined;

  constructor(
    problem: PrivateFileProblem,
    path: string,
    facts: { mode?: number; size?: number; cause?: unknown } = {},
  ) {
    super(`private file ${path}: ${problem}`, { cause: facts.cause });
    this.name = 'PrivateFileError';
    this.problem = problem;
    this.path = path;
    this.mode = facts.mode;
    this.size = facts.size;
    this.errno = errnoOf(facts.cause);
    Object.defineProperty(this, PRIVATE_FILE_ERROR, { value: true });
  }
}

/**
 * Whether `value` is a {@link PrivateFileError}, from this copy of the SDK or another.
 *
 * @example
 * if (isPrivateFileError(error) && error.problem === 'missing') return undefined;
 */
export function isPrivateFileError(value: unknown): value is PrivateFileError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[PRIVATE_FILE_ERROR] === true
  );
}

/** Options of {@link readPrivateFile}. */
export interface ReadPrivateFileOptions {
  /** The largest file accepted, in bytes. */
  maxBytes: number;
  signal?: AbortSignal | undefined;
}

/**
 * Reads a file that only its owner may read: it must be a regular file (symlinks are followed),
 * with no group or other permission bits, and no larger than `maxBytes`. The checks are made on
 * the open handle, so what is checked is what is read. The bytes are the caller's: zero them
 * (`fill(0)`) once used when they are secret.
 *
 * @example
 * const bytes = await readPrivateFile(path, { maxBytes: 4096, signal });
 * try {
 *   return SecretValue.fromBytes(bytes);
 * } finally {
 *   bytes.fill(0);
 * }
 * @throws PrivateFileError `missing`, `io` (cannot open it), `not-file`, `permissions` or
 *   `too-large`; the fs error when it cannot be stat-ed or read; the signal's reason when aborted
 */
export async function readPrivateFile(
  path: string,
  options: ReadPrivateFileOptions,
): Promise<Buffer> {
  const { maxBytes, signal } = options;
  signal?.throwIfAborted();
  let handle: FileHandle;
  try {
    handle = await open(path, 'r');
  } catch (error) {
    const problem = errnoOf(error) === 'ENOENT' ? 'missing' : 'io';
    throw new PrivateFileError(problem, path, { cause: error });
  }
  try {
    const stats = await handle.stat();
    if (!stats.isFile()) throw new PrivateFileError('not-file', path);
    if ((stats.mode & 0o077) !== 0) {
      throw new PrivateFileError('permissions', path, { mode: stats.mode & 0o777 });
    }
    if (stats.size > maxBytes) throw new PrivateFileError('too-large', path, { size: stats.size });
    return await handle.readFile({ signal });
  } finally {
    await handle.close();
  }
}

/** Options of {@link writePrivateFile}. */
export interface WritePrivateFileOptions {
  /**
   * Replace an existing file. When false, an existing file is left alone and the call rejects
   * with `EEXIST`.
   * @default true
   */
  overwrite?: boolean;
  signal?: AbortSignal | undefined;
}

/**
 * Writes `data` to `path` with mode 0600 so that readers see either the old file or the whole
 * new one, even across a crash: write a temp file in the same directory (`.<name>.<random>.tmp`,
 * created exclusively, its mode set explicitly so the umask cannot change it), fsync it, rename
 * it over `path` (or hard-link it into place when not overwriting, which fails atomically if
 * `path` exists), then fsync the directory so the rename itself is durable. On any failure the
 * temp file is removed and `path` is untouched.
 *
 * @example
 * await writePrivateFile('/var/lib/dso/vault.dso', sealed, { signal });
 * @throws the underlying fs error (`EEXIST` when `overwrite` is false and `path` exists), or the
 *   signal's reason when aborted before the file is put in place
 */
export async function writePrivateFile(
  path: string,
  data: Uint8Array,
  options: WritePrivateFileOptions = {},
): Promise<void> {
  const { overwrite = true, signal } = options;
  signal?.throwIfAborted();
  const directory = dirname(path);
  const temp = join(directory, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);

  const handle = await open(temp, 'wx', 0o600);
  try {
    try {
      await handle.chmod(0o600);
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

/**
 * Creates `path` holding `data`, mode 0600, as {@link writePrivateFile} does, and never replaces
 * an existing file (a key that encrypted anything must not be overwritten).
 *
 * @example
 * await createPrivateFile('/var/lib/dso/vault.key', text, { signal });
 * @throws PrivateFileError `exists` when anything is at `path`, `io` when it cannot be written;
 *   the signal's reason when aborted before the file is put in place
 */
export async function createPrivateFile(
  path: string,
  data: Uint8Array,
  options: { signal?: AbortSignal | undefined } = {},
): Promise<void> {
  options.signal?.throwIfAborted();
  // Checked first only for a clearer error when the directory is not writable either: the
  // exclusive link is what guarantees nothing is replaced.
  if (await pathExists(path)) throw new PrivateFileError('exists', path);
  try {
    await writePrivateFile(path, data, { overwrite: false, signal: options.signal });
  } catch (error) {
    const errno = errnoOf(error);
    if (errno === undefined) throw error;
    throw new PrivateFileError(errno === 'EEXIST' ? 'exists' : 'io', path, { cause: error });
  }
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
async function syncDirectory(directory: string): Promise<void> {
  const handle = await open(directory, 'r');
  try {
    await handle.sync();
  } catch (error) {
    // Some filesystems refuse fsync on a directory (EINVAL, EISDIR on a few network mounts).
    // The data itself was fsynced; only the rename's durability is best-effort there.
    const code = errnoOf(error);
    if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'ENOTSUP') throw error;
  } finally {
    await handle.close();
  }
}

/** Whether anything is at `path` (a symlink counts, dangling or not). */
async function pathExists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    // Missing or not stat-able: the create that follows reports the real problem.
    return false;
  }
}

/** The `code` of a Node.js system error (`ENOENT`, …); undefined for an abort or anything else. */
function errnoOf(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  // An aborted fs call rejects with code ABORT_ERR: a cancellation, not an I/O failure.
  if ((error as { name?: unknown }).name === 'AbortError') return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && !code.startsWith('DSO_') ? code : undefined;
}
