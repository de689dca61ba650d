import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { connect } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import { DsoError, type Logger, MAX_SOCKET_PATH_BYTES } from '@dso/core';

// ---------------------------------------------------------------------------------------------
// The API's socket file. Its permissions are the API's whole access control, so the socket is
// never reachable with other permissions than `socketMode` and `socketGroup`: it is bound inside
// a fresh 0700 directory beside its final path, given its mode and group there, then hard-linked
// into place (a link fails when the name exists, so an agent already serving the path is never
// replaced), and the staging directory removed. A socket file nothing answers on (left by a
// crash) is removed first; one something answers on is refused.
// ---------------------------------------------------------------------------------------------

/** How long start-up waits for an answer on an existing socket before calling it in use. */
export const API_PROBE_TIMEOUT_MS = 1_000;
/** The default place the group name of `api.socketGroup` is looked up. */
export const DEFAULT_GROUP_FILE = '/etc/group';

// The staged socket's path is `<dir>/.api-XXXXXX/s`: this many bytes after the directory.
const STAGED_SUFFIX_BYTES = '/.api-XXXXXX/s'.length;

/** Options of {@link placeSocket}. */
export interface PlaceSocketOptions {
  /** The socket's final, absolute path (checked by {@link checkSocketPath}). */
  socketPath: string;
  /** Its permission bits. */
  socketMode: number;
  /** Its group's gid (from {@link resolveGroup}), and the group as configured, for messages. */
  gid?: number;
  group?: string | number;
  /** Binds the server to `path` (the staged name). */
  listen(path: string): Promise<void>;
  /** Stops the server again when the socket cannot be placed. */
  stop(): Promise<void>;
  logger: Logger;
}

/** A socket placed at its final path. */
export interface PlacedSocket {
  /** Removes the socket file if it is still this one (same inode): never another agent's. */
  remove(): Promise<void>;
}

/**
 * Binds a server to a socket at `socketPath` with exactly `socketMode` and `gid`, as described
 * above. Its directory is created 0755 if missing.
 *
 * @throws DsoError DSO_AGENT_API_IN_USE when something answers on the socket (another agent)
 * @throws DsoError DSO_AGENT_API_GROUP when the agent may not give the socket to the group
 * @throws DsoError DSO_AGENT_API_PATH_TAKEN when the path exists and is not a socket
 * @throws DsoError DSO_AGENT_API_LISTEN_FAILED when the directory or socket cannot be created
 */
export async function placeSocket(options: PlaceSocketOptions): Promise<PlacedSocket> {
  const { socketPath, socketMode, gid, logger } = options;
  const directory = dirname(socketPath);
  // Created 0755 (less under a stricter umask) when missing; an existing one is left as it is.
  await mkdir(directory, { recursive: true, mode: 0o755 }).catch((error: unknown) => {
    throw listenFailed(socketPath, `cannot create its directory ${directory}`, error);
  });

  // Why a staging directory rather than `listen` then `chmod`: between the two the socket would
  // exist with the umask's permissions, and a umask of 0 makes it world-writable. Changing the
  // process umask around `listen` would also change it for file writes running meanwhile on
  // libuv's threads. Inside a fresh 0700 directory nobody else can reach the socket whatever its
  // mode, and the link below publishes it with its final mode and group already set.
  const staging = await mkdtemp(join(directory, '.api-')).catch((error: unknown) => {
    throw listenFailed(socketPath, `cannot create a staging directory in ${directory}`, error);
  });
  const staged = join(staging, 's');
  let identity: FileIdentity;
  try {
    await options.listen(staged).catch((error: unknown) => {
      throw listenFailed(socketPath, 'cannot listen', error);
    });
    await chmod(staged, socketMode).catch((error: unknown) => {
      throw listenFailed(socketPath, 'cannot set the socket mode', error);
    });
    if (gid !== undefined) {
      await chown(staged, -1, gid).catch((error: unknown) => {
        throw new DsoError(
          'DSO_AGENT_API_GROUP',
          `cannot give the API socket to group ${String(options.group)} (gid ${gid}): the agent must run as root or be a member of that group`,
          { cause: error, group: options.group, gid },
        );
      });
    }
    identity = identityOf(await lstat(staged));
    await publish(staged, socketPath, logger);
  } catch (error) {
    await options.stop();
    throw error;
  } finally {
    // Removes the staged name only: a published socket lives on under its final name.
    await rm(staging, { recursive: true, force: true }).catch((error: unknown) => {
      logger.warn({ err: error, directory: staging }, 'could not remove the api staging directory');
    });
  }
  return { remove: () => removeIfOurs(socketPath, identity, logger) };
}

interface FileIdentity {
  dev: number;
  ino: number;
}

function identityOf(stats: { dev: number; ino: number }): FileIdentity {
  return { dev: stats.dev, ino: stats.ino };
}

/**
 * Checks `api.socket`: absolute, and short enough for a unix socket, its staged name included.
 * @throws DsoError DSO_AGENT_API_SOCKET_PATH when the path is relative or too long
 */
export function checkSocketPath(path: string): void {
  if (typeof path !== 'string' || !isAbsolute(path)) {
    throw new DsoError(
      'DSO_AGENT_API_SOCKET_PATH',
      `api.socket must be an absolute path, got ${JSON.stringify(path)}`,
      { socket: path },
    );
  }
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new DsoError(
      'DSO_AGENT_API_SOCKET_PATH',
      `api.socket ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the limit of a unix socket path`,
      { socket: path },
    );
  }
  if (Buffer.byteLength(dirname(path)) + STAGED_SUFFIX_BYTES > MAX_SOCKET_PATH_BYTES) {
    throw new DsoError(
      'DSO_AGENT_API_SOCKET_PATH',
      `api.socket ${path} is in a directory too deep to stage the socket safely (its path must be at most ${MAX_SOCKET_PATH_BYTES - STAGED_SUFFIX_BYTES} bytes): choose a shorter path`,
      { socket: path },
    );
  }
}

/**
 * A gid from a number, a numeric string, or a name in the group file.
 * @throws DsoError DSO_AGENT_API_GROUP when it is no gid or the group file does not name it
 */
export async function resolveGroup(group: string | number, groupFile: string): Promise<number> {
  if (typeof group === 'number' || /^\d+$/.test(group)) {
    const gid = Number(group);
    if (!Number.isSafeInteger(gid) || gid < 0 || gid > 4_294_967_294) {
      throw new DsoError('DSO_AGENT_API_GROUP', `api.socketGroup ${String(group)} is not a gid`, {
        group,
      });
    }
    return gid;
  }
  let text: string;
  try {
    text = await readFile(groupFile, 'utf8');
  } catch (error) {
    throw new DsoError(
      'DSO_AGENT_API_GROUP',
      `cannot read ${groupFile} to find group "${group}": give api.socketGroup as a numeric gid`,
      { cause: error, group },
    );
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  // Only the group file: a group from LDAP or another NSS source is given by its gid.
  throw new DsoError(
    'DSO_AGENT_API_GROUP',
    `group "${group}" (api.socketGroup) is not in ${groupFile}: create it (groupadd ${group}) or give its numeric gid`,
    { group },
  );
}

/**
 * Gives the staged socket its final name. `link` fails when the name exists, so of two agents
 * starting at once exactly one gets it; a name nothing answers on is removed and tried once more.
 */
async function publish(staged: string, target: string, logger: Logger): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await link(staged, target);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw listenFailed(target, 'cannot place the socket', error);
      }
      // Cleared once already and taken again meanwhile: another agent won the race.
      if (attempt > 0) throw inUse(target, 'another agent took it while this one started');
    }
    await removeStale(target, logger);
  }
}

/** Removes the socket at `path` when nothing answers on it; refuses anything else. */
async function removeStale(path: string, logger: Logger): Promise<void> {
  let before: Awaited<ReturnType<typeof lstat>>;
  try {
    before = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw listenFailed(path, 'cannot inspect the existing file', error);
  }
  if (!before.isSocket()) {
    throw new DsoError(
      'DSO_AGENT_API_PATH_TAKEN',
      `${path} exists and is not a socket: move it away or set api.socket to another path`,
      { socket: path },
    );
  }
  const answer = await probe(path);
  if (answer === 'gone') return;
  if (answer === 'alive') throw inUse(path, 'an agent answers on it');
  if (answer === 'denied') {
    throw inUse(path, 'this agent may not connect to it to check whether another agent answers');
  }
  // Nothing listens: left behind by an agent that did not stop cleanly. Removed only if it is
  // still the file that was probed.
  const now = await lstat(path).catch(() => undefined);
  if (now === undefined || now.dev !== before.dev || now.ino !== before.ino) return;
  await unlink(path).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw listenFailed(path, 'cannot remove the stale socket', error);
    }
  });
  logger.info({ socket: path }, 'stale api socket removed');
}

/** Whether something accepts connections on the socket at `path`. */
function probe(path: string): Promise<'alive' | 'dead' | 'gone' | 'denied'> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    const finish = (answer: 'alive' | 'dead' | 'gone' | 'denied') => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    // No answer in time (a full backlog, a stuck process) still means something holds it.
    const timer = setTimeout(() => finish('alive'), API_PROBE_TIMEOUT_MS);
    socket.once('connect', () => finish('alive'));
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') finish('dead');
      else if (error.code === 'ENOENT') finish('gone');
      else if (error.code === 'EACCES' || error.code === 'EPERM') finish('denied');
      // EAGAIN (backlog full) and anything unknown: assume a listener rather than steal it.
      else finish('alive');
    });
  });
}

async function removeIfOurs(path: string, identity: FileIdentity, logger: Logger): Promise<void> {
  try {
    const now = await lstat(path);
    if (now.dev !== identity.dev || now.ino !== identity.ino) return; // another agent's now
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    logger.warn({ err: error, socket: path }, 'could not remove the api socket');
  }
}

function inUse(path: string, why: string): DsoError {
  return new DsoError(
    'DSO_AGENT_API_IN_USE',
    `the API socket ${path} is in use (${why}): stop the other agent, or set api.socket to another path`,
    { socket: path },
  );
}

function listenFailed(path: string, what: string, cause: unknown): DsoError {
  const reason = (cause as NodeJS.ErrnoException | undefined)?.code ?? String(cause);
  return new DsoError(
    'DSO_AGENT_API_LISTEN_FAILED',
    `${what} for the API socket ${path} (${reason}): check the directory's permissions or set api.socket`,
    { cause, socket: path },
  );
}
