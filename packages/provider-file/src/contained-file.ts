import { createHash } from 'node:crypto';
import { type BigIntStats, constants } from 'node:fs';
import { type FileHandle, open, readlink, realpath } from 'node:fs/promises';
import { join, sep } from 'node:path';
import { ProviderError, type ProviderErrorCode } from '@dso/provider-sdk';

/** What a call needs to know about the root a path lies under. */
export interface RootRef {
  /** The root's name, as configured (the first segment of a secret path). */
  name: string;
  /** The configured directory (absolute). */
  dir: string;
}

/** Facts for error messages and fields: never a value. */
export interface FileRef {
  provider: string;
  /** The secret path asked for, `<root>/<relative>`. */
  path: string;
}

/** An open regular file inside its root, and what `fstat` said about it. */
export interface ContainedFile {
  handle: FileHandle;
  /** The file's real path (symlinks resolved), inside the root's real path. */
  realPath: string;
  /** From `fstat` on the handle, before anything was read. */
  stats: BigIntStats;
}

// O_NONBLOCK: opening a FIFO someone left in the root must not hang the call (it is refused
// right after, by fstat). O_NOFOLLOW: the last component of the real path must not have become
// a symlink since it was resolved.
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

const READ_CHUNK_BYTES = 64 * 1024;

/**
 * A version from content: the first 16 hex digits of its SHA-256.
 *
 * @example
 * contentVersion(Buffer.from('s3cret')); // '1ec1c26b50d5d3c5'
 */
export function contentVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/** The root's real path (symlinks resolved), checked to be a directory. */
export async function realRoot(root: RootRef, ref: FileRef): Promise<string> {
  try {
    return await realpath(root.dir);
  } catch (error) {
    throw new ProviderError(
      'DSO_PROVIDER_UNAVAILABLE',
      `root ${root.name} (${root.dir}) cannot be resolved (${errnoCode(error) ?? 'error'}); create or mount it, or fix roots.${root.name}`,
      { provider: ref.provider, path: ref.path, cause: error },
    );
  }
}

/** True when `candidate` is `root` or lies under it. */
export function isInside(candidate: string, root: string): boolean {
  const base = root.endsWith(sep) ? root : `${root}${sep}`;
  return candidate === root || candidate.startsWith(base);
}

/** Where a secret path leads: the root's real path and the file's, checked to lie inside it. */
export interface Located {
  rootReal: string;
  realPath: string;
}

/**
 * Resolves `<root>/<segments>` with `realpath` and checks that the result lies inside the
 * root's real path (and is not the root itself).
 *
 * @throws ProviderError as {@link openContained}
 */
export async function locate(
  root: RootRef,
  segments: readonly string[],
  ref: FileRef,
  signal?: AbortSignal,
): Promise<Located> {
  signal?.throwIfAborted();
  const rootReal = await realRoot(root, ref);
  let realPath: string;
  try {
    realPath = await realpath(join(rootReal, ...segments));
  } catch (error) {
    throw fsError(error, ref, root, 'resolve');
  }
  if (!isInside(realPath, rootReal) || realPath === rootReal) {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `${ref.path} resolves outside root ${root.name} through a symlink; only files inside the root are served`,
      { provider: ref.provider, path: ref.path },
    );
  }
  return { rootReal, realPath };
}

/** The error for a path that leads to a directory, FIFO, socket or device. */
export function notRegular(ref: FileRef): ProviderError {
  return new ProviderError(
    'DSO_PROVIDER_NOT_FOUND',
    `${ref.path} is not a regular file; only regular files are served`,
    { provider: ref.provider, path: ref.path },
  );
}

/** The error for a file larger than the configured limit. */
export function tooLarge(ref: FileRef, size: string, maxBytes: number): ProviderError {
  return new ProviderError(
    'DSO_PROVIDER_TOO_LARGE',
    `${ref.path} is ${size} bytes; this provider serves at most ${maxBytes} (raise maxBytes to serve it)`,
    { provider: ref.provider, path: ref.path },
  );
}

/**
 * Opens `<root>/<segments>` for reading, only if it is a regular file whose real path lies
 * inside the root's real path: symlinks inside the root are followed (a Kubernetes-style
 * `..data` swap works), a symlink whose target leaves the root is refused, and so is anything
 * that is not a regular file. The check is made on the path, then again on the open file
 * descriptor (`/proc/self/fd`), so a directory swapped for a symlink between the two is caught.
 * The caller closes the handle.
 *
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND (missing, outside the root, not a regular file),
 *   DSO_PROVIDER_UNAUTHORIZED (permission denied), DSO_PROVIDER_UNAVAILABLE (the root or the
 *   filesystem failing)
 */
export async function openContained(
  root: RootRef,
  segments: readonly string[],
  ref: FileRef,
  signal?: AbortSignal,
): Promise<ContainedFile> {
  const { rootReal, realPath } = await locate(root, segments, ref, signal);
  signal?.throwIfAborted();
  let handle: FileHandle;
  try {
    handle = await open(realPath, OPEN_FLAGS);
  } catch (error) {
    throw fsError(error, ref, root, 'open');
  }
  try {
    await checkDescriptor(handle, rootReal, root, ref);
    const stats = await handle.stat({ bigint: true });
    if (!stats.isFile()) throw notRegular(ref);
    return { handle, realPath, stats };
  } catch (error) {
    await handle.close();
    throw error;
  }
}

/**
 * Reads an open file whole, refusing one larger than `maxBytes` (checked before reading, and
 * again while reading, since a file may grow in between). Stops at the signal. Every buffer it
 * used besides the one it returns is zeroed.
 *
 * @throws ProviderError DSO_PROVIDER_TOO_LARGE; DSO_PROVIDER_UNAVAILABLE for a read error
 */
export async function readBounded(
  file: ContainedFile,
  maxBytes: number,
  ref: FileRef,
  signal?: AbortSignal,
): Promise<Buffer> {
  if (file.stats.size > BigInt(maxBytes)) throw tooLarge(ref, String(file.stats.size), maxBytes);
  const chunks: Buffer[] = [];
  let length = 0;
  try {
    for (;;) {
      signal?.throwIfAborted();
      // One byte past the limit is enough to know a file grew beyond it.
      const chunk = Buffer.alloc(Math.min(READ_CHUNK_BYTES, maxBytes + 1 - length));
      chunks.push(chunk);
      const { bytesRead } = await file.handle.read(chunk, 0, chunk.length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (bytesRead < chunk.length) chunks[chunks.length - 1] = chunk.subarray(0, bytesRead);
      if (length > maxBytes) throw tooLarge(ref, `more than ${maxBytes}`, maxBytes);
    }
    return Buffer.concat(chunks, length);
  } catch (error) {
    throw wrapRead(error, ref);
  } finally {
    for (const chunk of chunks) chunk.fill(0);
  }
}

function wrapRead(error: unknown, ref: FileRef): unknown {
  if (errnoCode(error) === undefined) return error;
  return new ProviderError(
    'DSO_PROVIDER_UNAVAILABLE',
    `cannot read ${ref.path} (${errnoCode(error)}); check the filesystem it is on`,
    { provider: ref.provider, path: ref.path, cause: error },
  );
}

// Linux names an open descriptor's file in /proc/self/fd. Elsewhere (no /proc) the path check
// made before opening stands alone, and the window it leaves needs write access to the root.
async function checkDescriptor(
  handle: FileHandle,
  rootReal: string,
  root: RootRef,
  ref: FileRef,
): Promise<void> {
  let opened: string;
  try {
    opened = await readlink(`/proc/self/fd/${handle.fd}`);
  } catch {
    // No /proc: nothing more to learn; the realpath check above already held.
    return;
  }
  // A file replaced (renamed over) after it was opened reads as "<path> (deleted)": still the
  // file that was inside the root when it was opened.
  const DELETED = ' (deleted)';
  if (opened.endsWith(DELETED)) opened = opened.slice(0, -DELETED.length);
  if (!isInside(opened, rootReal)) {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `${ref.path} moved outside root ${root.name} while it was being opened; only files inside the root are served`,
      { provider: ref.provider, path: ref.path },
    );
  }
}

const ERRNO_CODES: Record<string, ProviderErrorCode> = {
  ENOENT: 'DSO_PROVIDER_NOT_FOUND',
  ENOTDIR: 'DSO_PROVIDER_NOT_FOUND',
  ELOOP: 'DSO_PROVIDER_NOT_FOUND',
  ENAMETOOLONG: 'DSO_PROVIDER_NOT_FOUND',
  EACCES: 'DSO_PROVIDER_UNAUTHORIZED',
  EPERM: 'DSO_PROVIDER_UNAUTHORIZED',
};

/** A filesystem error met while reaching a file, as the provider contract sees it. */
export function fsError(
  error: unknown,
  ref: FileRef,
  root: RootRef,
  operation: string,
): ProviderError {
  const errno = errnoCode(error);
  if (errno === undefined) {
    if (error instanceof ProviderError) return error;
    return new ProviderError('DSO_PROVIDER_INTERNAL', `cannot ${operation} ${ref.path}`, {
      provider: ref.provider,
      path: ref.path,
      cause: error,
    });
  }
  const code = ERRNO_CODES[errno] ?? 'DSO_PROVIDER_UNAVAILABLE';
  const facts = { provider: ref.provider, path: ref.path, cause: error };
  switch (code) {
    case 'DSO_PROVIDER_NOT_FOUND':
      return new ProviderError(
        code,
        errno === 'ELOOP'
          ? `${ref.path} is a symlink loop or a symlink where none may be (${errno}); point it at a file inside root ${root.name}`
          : `no file at ${ref.path} under root ${root.name} (${errno})`,
        facts,
      );
    case 'DSO_PROVIDER_UNAUTHORIZED':
      return new ProviderError(
        code,
        `the agent may not ${operation} ${ref.path} under root ${root.name} (${errno}); let the agent's user read it (and search its directories)`,
        facts,
      );
    default:
      return new ProviderError(
        code,
        `cannot ${operation} ${ref.path} under root ${root.name} (${errno}); check the filesystem it is on`,
        facts,
      );
  }
}

/** The `code` of a Node.js system error, such as `ENOENT`. */
export function errnoCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code) ? code : undefined;
}
