/**
 * A container's user (`Config.User`) as a numeric uid and gid, resolved against the container's
 * own /etc/passwd and /etc/group the way the engine resolves it at start. The files are read with
 * the engine's archive GET, which works on a created container that never started: the host path
 * needs the owner before the container's application exists.
 */
import { posix } from 'node:path';
import type { Readable } from 'node:stream';
import { onAbort } from '@dso/async';
import { MAX_OWNER_ID } from '@dso/core';
import { extract as tarExtract } from 'tar-stream';
import { assertContainerId } from './container-id.js';
import type { EngineContext } from './engine-context.js';
import { DockerRuntimeError } from './errors.js';

/** A numeric owner. */
export interface NumericOwner {
  uid: number;
  gid: number;
}

/** Most bytes of /etc/passwd or /etc/group read from a container; a larger file is refused. */
export const MAX_USER_DATABASE_BYTES = 1024 * 1024;
/** Room for the tar headers (and any PAX records) around the one file in an archive GET. */
const TAR_OVERHEAD_BYTES = 64 * 1024;
/** Symlinks followed from /etc/passwd or /etc/group to the real file (the engine returns links). */
const MAX_SYMLINK_HOPS = 8;
const NUMERIC = /^[0-9]+$/;

/** `Config.User` split at its first colon. */
export interface UserSpec {
  /** A name or a numeric uid; `''` when the spec is empty or starts with `:` (root). */
  user: string;
  /** A name or a numeric gid; undefined when the spec has none (the user's own group then). */
  group: string | undefined;
}

/** Splits `user`, `user:group`, `uid:gid`... An empty group (`app:`) counts as none. */
export function parseUserSpec(spec: string): UserSpec {
  const colon = spec.indexOf(':');
  if (colon === -1) return { user: spec, group: undefined };
  const group = spec.slice(colon + 1);
  return { user: spec.slice(0, colon), group: group === '' ? undefined : group };
}

/** Which of the container's files resolving `spec` needs: none for `''` and for `uid:gid`. */
export function userDatabasesNeeded(spec: string): { passwd: boolean; group: boolean } {
  if (spec === '') return { passwd: false, group: false };
  const { user, group } = parseUserSpec(spec);
  const numericUser = user === '' || NUMERIC.test(user);
  return {
    // A name needs its entry; a bare uid needs its entry's primary group.
    passwd: !numericUser || group === undefined,
    group: group !== undefined && !NUMERIC.test(group),
  };
}

/**
 * The first /etc/passwd entry for `user`: by name, or by uid when `user` is numeric (as the exec
 * path's script does). Comments, blank and malformed lines are skipped.
 */
export function lookupPasswd(passwd: string, user: string): NumericOwner | undefined {
  const byUid = NUMERIC.test(user);
  for (const fields of records(passwd, 4)) {
    const [name, , uid, gid] = fields as [string, string, string, string];
    if (!(NUMERIC.test(uid) && NUMERIC.test(gid))) continue;
    if (byUid ? Number(uid) === Number(user) : name === user) {
      return { uid: Number(uid), gid: Number(gid) };
    }
  }
  return undefined;
}

/** The gid of the first /etc/group entry named `group`. */
export function lookupGroup(groups: string, group: string): number | undefined {
  for (const fields of records(groups, 3)) {
    const [name, , gid] = fields as [string, string, string];
    if (name === group && NUMERIC.test(gid)) return Number(gid);
  }
  return undefined;
}

/** The container's user databases, as far as they were read: undefined when missing or not read. */
export interface UserDatabases {
  passwd: string | undefined;
  group: string | undefined;
}

/**
 * Resolves a `Config.User` spec with the engine's rules: `''` is 0:0; a numeric uid takes its
 * primary group from /etc/passwd (0 when it has no entry); `uid:gid` is taken as is; a name must
 * be in /etc/passwd; a group name must be in /etc/group; an empty user before `:` is root.
 *
 * @throws DockerRuntimeError DSO_DOCKER_USER_UNRESOLVED naming the user (or group) and the
 *   container, when a name has no entry or an id is out of range
 */
export function resolveUserSpec(
  spec: string,
  databases: UserDatabases,
  containerId: string,
): NumericOwner {
  if (spec === '') return { uid: 0, gid: 0 };
  const { user: given, group } = parseUserSpec(spec);
  const user = given === '' ? '0' : given;
  const unresolved = (reason: string) =>
    new DockerRuntimeError(
      'DSO_DOCKER_USER_UNRESOLVED',
      `cannot resolve the user ${JSON.stringify(spec)} of container ${containerId}: ${reason}; ` +
        'run the container as a numeric uid:gid, or pass the owner explicitly',
      { containerId, user: spec },
    );
  const id = (value: string, what: string) => {
    const number = Number(value);
    if (number > MAX_OWNER_ID) throw unresolved(`${what} ${value} is larger than ${MAX_OWNER_ID}`);
    return number;
  };

  const entry = databases.passwd === undefined ? undefined : lookupPasswd(databases.passwd, user);
  let uid: number;
  if (NUMERIC.test(user)) {
    uid = id(user, 'uid');
  } else if (entry !== undefined) {
    uid = entry.uid;
  } else {
    throw unresolved(
      databases.passwd === undefined
        ? `it has no /etc/passwd, so only numeric users resolve`
        : `user ${user} is not in its /etc/passwd`,
    );
  }

  let gid: number;
  if (group === undefined) {
    gid = entry?.gid ?? 0;
  } else if (NUMERIC.test(group)) {
    gid = id(group, 'gid');
  } else {
    const found = databases.group === undefined ? undefined : lookupGroup(databases.group, group);
    if (found === undefined) {
      throw unresolved(
        databases.group === undefined
          ? `it has no /etc/group, so only numeric groups resolve`
          : `group ${group} is not in its /etc/group`,
      );
    }
    gid = found;
  }
  if (uid > MAX_OWNER_ID || gid > MAX_OWNER_ID) {
    throw unresolved(`its id ${uid}:${gid} is larger than ${MAX_OWNER_ID}`);
  }
  return { uid, gid };
}

/** One entry of an archive GET: the file's text, or where a symlink points. */
export type ArchiveEntry =
  | { kind: 'file'; text: string }
  | { kind: 'symlink'; target: string }
  | { kind: 'other'; type: string }
  | { kind: 'too-large' };

/**
 * Reads the first entry of a tar held in memory (what the archive GET of one path returns).
 * A file larger than `maxBytes` is not read.
 */
export async function readArchiveEntry(
  archive: Uint8Array,
  maxBytes: number,
): Promise<ArchiveEntry> {
  const extract = tarExtract();
  extract.end(archive);
  try {
    for await (const entry of extract) {
      const { type, size, linkname } = entry.header;
      if (type === 'symlink') return { kind: 'symlink', target: linkname };
      if (type !== 'file' && type !== 'contiguous-file') return { kind: 'other', type };
      if (size > maxBytes) return { kind: 'too-large' };
      const parts: Buffer[] = [];
      for await (const chunk of entry) parts.push(chunk as Buffer);
      return { kind: 'file', text: Buffer.concat(parts).toString('utf8') };
    }
    return { kind: 'other', type: 'empty archive' };
  } finally {
    extract.destroy();
  }
}

/**
 * Reads a stream into one buffer, or returns undefined as soon as it passes `limitBytes` (the
 * caller then destroys the stream).
 */
export async function readBounded(
  stream: AsyncIterable<Uint8Array>,
  limitBytes: number,
): Promise<Buffer | undefined> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of stream) {
    total += chunk.byteLength;
    if (total > limitBytes) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/**
 * The container's user as numeric ids: inspects it for `Config.User`, then reads only the user
 * databases that spec needs from the container's own file system (archive GET, never PUT; a
 * symlinked /etc/passwd is followed), bounded to {@link MAX_USER_DATABASE_BYTES} each. Works on
 * created, running and stopped containers. Without /etc/passwd only numeric users resolve.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST when `id` is not a container id or name
 * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND when the container does not exist
 * @throws DockerRuntimeError DSO_DOCKER_USER_UNRESOLVED naming the user and the container when a
 *   name is not in its /etc/passwd (or group in /etc/group), or a file is unusable
 * @throws DockerRuntimeError DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED, DSO_DOCKER_CLOSED,
 *   DSO_DOCKER_UNREACHABLE, DSO_DOCKER_ENGINE_ERROR
 */
export async function resolveContainerUser(
  context: EngineContext,
  id: string,
  options: { signal?: AbortSignal } = {},
): Promise<NumericOwner> {
  context.assertOpen('resolve the user of a container');
  assertContainerId(id);
  const info = await context.request('inspect container', options.signal, id, (signal) =>
    context.docker.getContainer(id).inspect({ abortSignal: signal }),
  );
  const spec = info.Config?.User ?? '';
  const needed = userDatabasesNeeded(spec);
  const read = (path: string) => readContainerFile(context, id, info.Id, path, options.signal);
  const databases: UserDatabases = {
    passwd: needed.passwd ? await read('/etc/passwd') : undefined,
    group: needed.group ? await read('/etc/group') : undefined,
  };
  return resolveUserSpec(spec, databases, id);
}

/** A file of the container as text, following symlinks; undefined when it does not exist. */
async function readContainerFile(
  context: EngineContext,
  given: string,
  fullId: string,
  path: string,
  caller: AbortSignal | undefined,
): Promise<string | undefined> {
  const unusable = (reason: string) =>
    new DockerRuntimeError(
      'DSO_DOCKER_USER_UNRESOLVED',
      `cannot read ${path} of container ${given}: ${reason}; run the container as a numeric ` +
        'uid:gid, or pass the owner explicitly',
      { containerId: given, path },
    );
  let current = path;
  for (let hop = 0; hop <= MAX_SYMLINK_HOPS; hop += 1) {
    const entry = await context.request(`read ${current} of container`, caller, given, (signal) =>
      fetchArchiveEntry(context, fullId, current, signal),
    );
    if (entry === undefined) return undefined;
    switch (entry.kind) {
      case 'file':
        return entry.text;
      case 'too-large':
        throw unusable(`it is larger than ${MAX_USER_DATABASE_BYTES} bytes`);
      case 'other':
        throw unusable(`it is not a regular file (${entry.type})`);
      case 'symlink':
        // The engine resolves the path inside the container's root, so an absolute target is
        // the container's, not the host's.
        current = posix.resolve(posix.dirname(current), entry.target);
        break;
    }
  }
  throw unusable(`it is a chain of more than ${MAX_SYMLINK_HOPS} symlinks`);
}

/**
 * One archive GET of `path`: the tar is read whole (bounded) and its first entry parsed. The
 * response stream is destroyed on every path, and on the runtime's close.
 */
async function fetchArchiveEntry(
  context: EngineContext,
  containerId: string,
  path: string,
  signal: AbortSignal,
): Promise<ArchiveEntry | undefined> {
  let stream: Readable;
  try {
    stream = (await context.docker
      .getContainer(containerId)
      .getArchive({ path, abortSignal: signal } as { path: string })) as Readable;
  } catch (error) {
    if (isMissingPath(error)) return undefined;
    throw error;
  }
  const untrack = context.track(stream);
  const stopDestroying = onAbort(signal, () => stream.destroy(signal.reason));
  try {
    const archive = await readBounded(stream, MAX_USER_DATABASE_BYTES + TAR_OVERHEAD_BYTES);
    if (archive === undefined) return { kind: 'too-large' };
    return await readArchiveEntry(archive, MAX_USER_DATABASE_BYTES);
  } finally {
    stopDestroying();
    untrack();
    stream.destroy();
  }
}

/**
 * A 404 from the archive API for a path the container lacks ("Could not find the file ..."). The
 * same status means a missing container, which the engine words "No such container: <id>"
 * (dockerode prefixes both with its own "no such container -", without the colon). The
 * container was inspected just before, so any other 404 is the path.
 */
function isMissingPath(error: unknown): boolean {
  const { statusCode, message } = (error ?? {}) as { statusCode?: unknown; message?: unknown };
  return statusCode === 404 && !/no such container:/i.test(String(message ?? ''));
}

/** Colon-separated records of a user database with at least `minFields` fields. */
function* records(text: string, minFields: number): Generator<string[]> {
  for (const raw of text.split('\n')) {
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line === '' || line.startsWith('#')) continue;
    const fields = line.split(':');
    if (fields.length >= minFields) yield fields;
  }
}
