import { checkSecretFileName, MAX_OWNER_ID } from '@dso/core';
import { DockerRuntimeError } from './errors.js';

/** One secret file: a plain name inside the target directory and its bytes. */
export interface SecretFile {
  /** `[A-Za-z0-9._-]{1,100}`, not `.`, not starting with `..` (reserved for dso's own entries). */
  name: string;
  /** The file's bytes. Not copied more than once and not kept; the caller owns (and may zero) it. */
  content: Uint8Array;
}

/** What {@link DockerRuntime.writeFiles} writes, where, and how. */
export interface WriteFilesRequest {
  /**
   * An absolute directory inside the container that is a tmpfs mount point
   * (`--tmpfs /run/secrets`, or a compose `tmpfs:` entry). Characters `[A-Za-z0-9._-/]`.
   */
  target: string;
  /** The whole set: names in the target that a previous call wrote and this one omits are removed. */
  files: SecretFile[];
  /**
   * Permission bits of every file.
   * @default 0o400
   */
  mode?: number;
  /**
   * Owner of every file.
   * @default the container's user (`Config.User`), resolved inside the container: numeric
   * `uid[:gid]` as given, a name through its `/etc/passwd` and `/etc/group`; `''` is root.
   */
  owner?: { uid: number; gid: number };
  /**
   * The container's `Config.User` as {@link DockerRuntime.inspectContainer} reported it
   * (`details.user`), for a caller that has just inspected the container. With it, or with
   * `owner`, writeFiles skips its own inspect (one engine round trip, ~5 ms, less); a container
   * that stopped meanwhile still fails cleanly with DSO_DOCKER_CONTAINER_NOT_RUNNING.
   */
  containerUser?: string;
  /**
   * Deadline for the whole call in ms.
   * @default the runtime's `writeTimeoutMs` (30 000)
   */
  timeoutMs?: number;
  /** Aborts the call; the set in the container is then either the old or the new one, never a mix. */
  signal?: AbortSignal;
}

/** What a successful {@link DockerRuntime.writeFiles} did. */
export interface WriteFilesResult {
  /** Files written. */
  files: number;
  /** Sum of the files' sizes in bytes. */
  bytes: number;
  /** Wall time of the call in ms, from validation to the exec's exit code. */
  durationMs: number;
  /** The version directory now live: `<target>/..dso_<generation>`, linked as `<target>/..data`. */
  generation: string;
}

/** Files in one call at most: their names travel as exec arguments. */
export const MAX_FILES_PER_WRITE = 1_000;
/** Sum of file sizes in one call at most: the tar is built in memory. */
export const MAX_WRITE_BYTES = 64 * 1024 * 1024;

/** Permission bits a file may get (no setuid, setgid or sticky bits). */
const MAX_MODE = 0o777;
const MAX_ID = MAX_OWNER_ID;
const TARGET_PATTERN = /^\/[A-Za-z0-9._\-/]+$/;
/** `Config.User` forms: empty, a uid or name, optionally `:` a gid or group name. */
const USER_PATTERN =
  /^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,255}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,255})?)?$/;

/** A request after validation: target normalised, totals counted. */
export interface ValidatedWriteRequest {
  target: string;
  files: SecretFile[];
  mode: number;
  owner: { uid: number; gid: number } | undefined;
  containerUser: string | undefined;
  bytes: number;
}

/**
 * Checks a file name with the label contract's rule (`@dso/core`'s `checkSecretFileName`), so a
 * name the labels accept is a name the runtime writes. Returns why it is invalid, or undefined.
 */
export const checkFileName = checkSecretFileName;

/**
 * Validates a {@link WriteFilesRequest} before anything reaches the engine. Messages quote names
 * and paths, never contents.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST naming the field at fault
 */
export function validateWriteRequest(request: WriteFilesRequest): ValidatedWriteRequest {
  const target = normaliseTarget(request.target);
  if (!Array.isArray(request.files)) throw invalid('files', 'files must be an array');
  if (request.files.length > MAX_FILES_PER_WRITE) {
    throw invalid('files', `at most ${MAX_FILES_PER_WRITE} files per call`);
  }
  const seen = new Set<string>();
  let bytes = 0;
  for (const file of request.files) {
    const reason = checkFileName(file?.name);
    if (reason !== undefined) {
      throw invalid('files', `file name ${JSON.stringify(file?.name)} ${reason}`);
    }
    if (seen.has(file.name)) throw invalid('files', `file name ${file.name} appears twice`);
    seen.add(file.name);
    if (!(file.content instanceof Uint8Array)) {
      throw invalid('files', `content of ${file.name} must be a Uint8Array`);
    }
    bytes += file.content.byteLength;
  }
  if (bytes > MAX_WRITE_BYTES) throw invalid('files', `at most ${MAX_WRITE_BYTES} bytes per call`);
  const mode = request.mode ?? 0o400;
  if (!Number.isInteger(mode) || mode < 0 || mode > MAX_MODE) {
    throw invalid('mode', 'mode must be an integer from 0 to 0o777');
  }
  const owner = request.owner;
  if (owner !== undefined && !(isId(owner.uid) && isId(owner.gid))) {
    throw invalid('owner', 'owner.uid and owner.gid must be integers from 0 to 2^31-1');
  }
  const containerUser = request.containerUser;
  if (
    containerUser !== undefined &&
    (typeof containerUser !== 'string' || !USER_PATTERN.test(containerUser))
  ) {
    throw invalid(
      'containerUser',
      'containerUser must be a user as the engine takes it: "", uid, name, uid:gid or name:group',
    );
  }
  return { target, files: request.files, mode, owner, containerUser, bytes };
}

function normaliseTarget(value: unknown): string {
  if (typeof value !== 'string') throw invalid('target', 'target must be a string');
  const target = value.length > 1 ? value.replace(/\/+$/, '') : value;
  if (!TARGET_PATTERN.test(target) || target.length > 1024) {
    throw invalid(
      'target',
      `target ${JSON.stringify(value)} must be an absolute path of A-Z a-z 0-9 . _ - /`,
    );
  }
  const segments = target.split('/').slice(1);
  if (segments.some((segment) => segment === '' || segment === '.' || segment === '..')) {
    throw invalid('target', `target ${JSON.stringify(value)} must be a normalised absolute path`);
  }
  return target;
}

function isId(value: unknown): boolean {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0 && value <= MAX_ID;
}

function invalid(field: string, message: string): DockerRuntimeError {
  return new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', message, { field });
}
