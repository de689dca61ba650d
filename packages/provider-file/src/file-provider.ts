import { constants } from 'node:fs';
import { access, type FileHandle, opendir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type CallOptions,
  isProviderError,
  ProviderError,
  type ProviderHealth,
  type ResolvedSecret,
  type SecretChange,
  type SecretProvider,
  type SecretRequest,
  SecretValue,
  type SecretVersion,
} from '@dso/provider-sdk';
import {
  contentVersion,
  errnoCode,
  type FileRef,
  fsError,
  isInside,
  locate,
  notRegular,
  openContained,
  type RootRef,
  readBounded,
  realRoot,
  tooLarge,
} from './contained-file.js';
import { isSegment, parseFilePath, parsePrefix } from './file-path.js';
import { watchFiles } from './file-watch.js';
import { nowNs, VersionCache } from './version-cache.js';

/** The largest file served by default, in bytes (1 MiB). */
export const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;
/** How often `watch` re-checks its files besides filesystem events, by default, in ms. */
export const DEFAULT_WATCH_POLL_INTERVAL_MS = 5_000;
/** The most paths one `list()` returns before it asks for a narrower prefix. */
export const MAX_LIST_ENTRIES = 10_000;
/** How deep `list()` descends below a root. */
export const MAX_LIST_DEPTH = 32;

/** Options of {@link createFileProvider}. */
export interface FileProviderOptions {
  /** The provider's configured name. @default 'file' */
  name?: string;
  /**
   * The directories it may read, by name: a secret path is `<name>/<path under it>`.
   * Directories must be absolute.
   */
  roots: Readonly<Record<string, string>>;
  /** The largest file served, in bytes. @default DEFAULT_MAX_FILE_BYTES */
  maxBytes?: number;
  /** How often `watch` re-checks besides filesystem events, in ms. @default DEFAULT_WATCH_POLL_INTERVAL_MS */
  watchPollIntervalMs?: number;
}

interface Target {
  root: RootRef;
  segments: string[];
  ref: FileRef;
}

/**
 * Serves regular files under configured directories ("roots"), and nothing else: a secret path
 * is `<root>/<relative path>`; `..`, absolute paths and odd characters are refused before the
 * filesystem is touched; symlinks are followed only while they stay inside the root (checked
 * on the real path, then on the open descriptor); FIFOs, devices and directories are refused;
 * files larger than `maxBytes` are refused with TOO_LARGE. The version of a file is the first
 * 16 hex digits of its content's SHA-256, so any change of content is a new version and only
 * the current one is served. Capabilities: list, probe (a `stat` while the file is unchanged),
 * watch (filesystem events plus a periodic re-check), health.
 *
 * @example
 * const provider = createFileProvider({ roots: { certs: '/etc/dso/certs' } });
 * const { value, version } = await provider.resolve({ path: 'certs/tls.key' });
 * @throws TypeError for options that are not as documented (the definition's schema checks a
 *   configuration before this is called)
 * @throws ProviderError from calls: DSO_PROVIDER_NOT_FOUND (malformed path, unknown root,
 *   missing file, outside its root, not a regular file, another version than the current);
 *   DSO_PROVIDER_TOO_LARGE; DSO_PROVIDER_UNAUTHORIZED (permission denied);
 *   DSO_PROVIDER_UNAVAILABLE (a root missing, I/O errors)
 */
export function createFileProvider(options: FileProviderOptions): SecretProvider & AsyncDisposable {
  const {
    name = 'file',
    maxBytes = DEFAULT_MAX_FILE_BYTES,
    watchPollIntervalMs = DEFAULT_WATCH_POLL_INTERVAL_MS,
  } = options;
  const roots = new Map<string, RootRef>();
  for (const [rootName, dir] of Object.entries(options.roots ?? {})) {
    if (!isSegment(rootName))
      throw new TypeError(`root name ${JSON.stringify(rootName)} is invalid`);
    if (typeof dir !== 'string' || !dir.startsWith('/')) {
      throw new TypeError(`root ${rootName} must be an absolute directory`);
    }
    roots.set(rootName, { name: rootName, dir });
  }
  if (roots.size === 0) throw new TypeError('createFileProvider needs at least one root');
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 1) {
    throw new TypeError('maxBytes must be a positive integer');
  }
  const cache = new VersionCache();
  const controllers = new Set<AbortController>();
  let closed = false;

  const target = (path: string): Target => {
    const parsed = parseFilePath(path, name);
    const root = roots.get(parsed.root);
    if (root === undefined) {
      throw new ProviderError(
        'DSO_PROVIDER_NOT_FOUND',
        `${path} names no configured root: its first segment must be one of ${[...roots.keys()].join(', ')} (roots in this provider's configuration)`,
        { provider: name, path },
      );
    }
    return { root, segments: parsed.segments, ref: { provider: name, path } };
  };

  /** Reads a file whole; remembers its version for later probes. */
  const read = async (
    { root, segments, ref }: Target,
    signal: AbortSignal | undefined,
  ): Promise<{ content: Buffer; version: string }> => {
    const started = nowNs();
    const file = await openContained(root, segments, ref, signal);
    let content: Buffer;
    try {
      content = await readBounded(file, maxBytes, ref, signal);
    } finally {
      await closeQuietly(file.handle);
    }
    const version = contentVersion(content);
    cache.set(file.realPath, file.stats, version, started);
    return { content, version };
  };

  const currentVersion = async (where: Target, signal?: AbortSignal): Promise<string> => {
    const { realPath } = await locate(where.root, where.segments, where.ref, signal);
    let stats: Awaited<ReturnType<typeof statBig>>;
    try {
      stats = await statBig(realPath);
    } catch (error) {
      throw fsError(error, where.ref, where.root, 'stat');
    }
    if (!stats.isFile()) throw notRegular(where.ref);
    if (stats.size > BigInt(maxBytes)) throw tooLarge(where.ref, String(stats.size), maxBytes);
    const cached = cache.get(realPath, stats);
    if (cached !== undefined) return cached;
    const { content, version } = await read(where, signal);
    content.fill(0);
    return version;
  };

  const provider: SecretProvider & AsyncDisposable = {
    name,
    capabilities: { list: true, watch: true, probe: true, health: true },

    async resolve(request: SecretRequest, callOptions: CallOptions = {}): Promise<ResolvedSecret> {
      assertOpen();
      const where = target(request.path);
      const { content, version } = await read(where, callOptions.signal);
      try {
        if (request.version !== undefined && request.version !== version) {
          throw new ProviderError(
            'DSO_PROVIDER_NOT_FOUND',
            `${request.path} is at version ${version}, not ${JSON.stringify(request.version)}: a file keeps only its current content`,
            { provider: name, path: request.path },
          );
        }
        return { value: SecretValue.fromBytes(content), version };
      } finally {
        content.fill(0);
      }
    },

    async probe(request: SecretRequest, callOptions: CallOptions = {}): Promise<SecretVersion> {
      assertOpen();
      return { version: await currentVersion(target(request.path), callOptions.signal) };
    },

    async list(prefix?: string, callOptions: CallOptions = {}): Promise<string[]> {
      assertOpen();
      const wanted = parsePrefix(prefix, name);
      const [rootName, ...under] = wanted;
      const selected =
        rootName === undefined ? [...roots.values()] : [roots.get(rootName)].filter(isDefined);
      const found: string[] = [];
      for (const root of selected) {
        await listRoot(root, under, found, name, callOptions.signal);
      }
      return found.sort();
    },

    watch(paths: readonly string[], watchOptions: { signal: AbortSignal }) {
      assertOpen();
      const targets = paths.map(target);
      // close() ends every watch, whatever its caller's signal does.
      const controller = new AbortController();
      controllers.add(controller);
      const signal = AbortSignal.any([watchOptions.signal, controller.signal]);
      const changes = watchFiles({
        targets: targets.map((where) => ({
          path: where.ref.path,
          directory: join(where.root.dir, ...where.segments.slice(0, -1)),
          root: where.root.dir,
        })),
        version: (index) => currentVersion(targets[index]!, signal),
        pollIntervalMs: watchPollIntervalMs,
        signal,
      });
      return (async function* (): AsyncGenerator<SecretChange> {
        try {
          yield* changes;
        } finally {
          controllers.delete(controller);
        }
      })();
    },

    async health(callOptions: CallOptions = {}): Promise<ProviderHealth> {
      assertOpen();
      const problems: string[] = [];
      for (const root of roots.values()) {
        callOptions.signal?.throwIfAborted();
        try {
          const real = await realRoot(root, { provider: name, path: root.name });
          if (!(await stat(real)).isDirectory())
            problems.push(`root ${root.name} is not a directory`);
          else await access(real, constants.R_OK | constants.X_OK);
        } catch (error) {
          problems.push(
            `root ${root.name} (${root.dir}) is not readable (${errnoCode(error) ?? 'unresolvable'})`,
          );
        }
      }
      return problems.length === 0
        ? { ok: true, detail: `${roots.size} root(s) readable` }
        : { ok: false, detail: problems.join('; ') };
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const controller of controllers) controller.abort();
      controllers.clear();
      cache.clear();
    },

    [Symbol.asyncDispose]() {
      return provider.close();
    },
  };

  function assertOpen(): void {
    if (closed) {
      throw new ProviderError('DSO_PROVIDER_INTERNAL', `provider ${name} was closed`, {
        provider: name,
      });
    }
  }

  return provider;
}

function statBig(path: string) {
  return stat(path, { bigint: true });
}

async function closeQuietly(handle: FileHandle): Promise<void> {
  try {
    await handle.close();
  } catch {
    // A close error on a read-only descriptor loses nothing: the content was already read.
  }
}

function isAbortError(error: unknown): boolean {
  return (error as { name?: unknown } | null)?.name === 'AbortError';
}

function isNotFound(error: unknown): boolean {
  const errno = errnoCode(error);
  if (errno !== undefined) return errno === 'ENOENT' || errno === 'ENOTDIR' || errno === 'ELOOP';
  return isProviderError(error) && error.code === 'DSO_PROVIDER_NOT_FOUND';
}

function isDefined<T>(value: T | undefined): value is T {
  return value !== undefined;
}

/**
 * Adds to `found` the regular files under `<root>/<under>` (or `<root>/<under>` itself when it
 * is one), as secret paths. Skips names starting with `.` (atomic writers' temporary files,
 * Kubernetes' `..data`) and names outside the path grammar (no path could name them), and does
 * not descend into symlinked directories (no cycles); a symlinked file is listed when its
 * target is a regular file inside the root.
 */
async function listRoot(
  root: RootRef,
  under: readonly string[],
  found: string[],
  provider: string,
  signal: AbortSignal | undefined,
): Promise<void> {
  const prefixPath = [root.name, ...under].join('/');
  const ref = { provider, path: prefixPath };
  const rootReal = await realRoot(root, ref);
  const add = (path: string) => {
    if (found.length >= MAX_LIST_ENTRIES) {
      throw new ProviderError(
        'DSO_PROVIDER_TOO_LARGE',
        `more than ${MAX_LIST_ENTRIES} files under ${prefixPath}: list a narrower prefix`,
        { provider },
      );
    }
    found.push(path);
  };
  let start = rootReal;
  if (under.length > 0) {
    try {
      const { realPath } = await locate(root, under, ref, signal);
      const startStats = await stat(realPath);
      if (startStats.isFile()) {
        add(prefixPath);
        return;
      }
      if (!startStats.isDirectory()) return;
      start = realPath;
    } catch (error) {
      if (isAbortError(error)) throw error;
      // Nothing (servable) under this prefix: an empty list, as for any other missing prefix.
      if (isNotFound(error)) return;
      throw isProviderError(error) ? error : fsError(error, ref, root, 'list');
    }
  }
  const walk = async (directory: string, segments: string[], depth: number): Promise<void> => {
    if (depth > MAX_LIST_DEPTH) return;
    signal?.throwIfAborted();
    let entries: Awaited<ReturnType<typeof opendir>>;
    try {
      entries = await opendir(directory);
    } catch (error) {
      if (errnoCode(error) === 'ENOENT' || errnoCode(error) === 'ENOTDIR') return;
      throw fsError(error, ref, root, 'list');
    }
    const children: Array<{ name: string; kind: 'file' | 'dir' | 'link' }> = [];
    for await (const entry of entries) {
      if (entry.name.startsWith('.') || !isSegment(entry.name)) continue;
      if (entry.isFile()) children.push({ name: entry.name, kind: 'file' });
      else if (entry.isDirectory()) children.push({ name: entry.name, kind: 'dir' });
      else if (entry.isSymbolicLink()) children.push({ name: entry.name, kind: 'link' });
    }
    for (const child of children) {
      const childSegments = [...segments, child.name];
      const secretPath = [root.name, ...childSegments].join('/');
      if (child.kind === 'file') add(secretPath);
      else if (child.kind === 'dir') {
        await walk(join(directory, child.name), childSegments, depth + 1);
      } else {
        try {
          const { realPath } = await locate(root, childSegments, { provider, path: secretPath });
          if (isInside(realPath, rootReal) && (await stat(realPath)).isFile()) add(secretPath);
        } catch {
          // A dangling or escaping symlink is not a file this provider serves: not listed.
        }
      }
    }
  };
  await walk(start, [...under], 0);
}
