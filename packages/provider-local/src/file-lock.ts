import { randomBytes } from 'node:crypto';
import { type FileHandle, open, readFile, unlink } from 'node:fs/promises';
import { hostname } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import { errnoCode, VaultError } from './vault-error.js';

/** How long a writer waits for another process's lock on the vault, in ms. */
export const DEFAULT_LOCK_TIMEOUT_MS = 5_000;

const FIRST_RETRY_MS = 5;
const MAX_RETRY_MS = 100;

/** Options for {@link acquireFileLock}. */
export interface FileLockOptions {
  /** The vault the lock guards, for messages. */
  vaultPath: string;
  /** @default DEFAULT_LOCK_TIMEOUT_MS */
  timeoutMs?: number;
  signal?: AbortSignal;
}

interface LockOwner {
  pid: number;
  hostname: string;
  createdAt: string;
  token: string;
}

/** Releases a lock taken by {@link acquireFileLock}; idempotent. */
export type ReleaseLock = () => Promise<void>;

/**
 * Takes an exclusive lock by creating `lockPath` with O_EXCL, waiting with backoff while another
 * process holds it. A lock left by a crashed process is not broken automatically: two waiters
 * breaking the same stale lock at once could each delete the other's fresh one. Instead the
 * error names the holder and says when it is no longer running, so the operator can remove it
 * (as git does with `index.lock`).
 *
 * @throws VaultError DSO_VAULT_LOCKED when the lock is still held after `timeoutMs`;
 *   DSO_VAULT_IO when the lock file cannot be created
 */
export async function acquireFileLock(
  lockPath: string,
  options: FileLockOptions,
): Promise<ReleaseLock> {
  const { vaultPath, timeoutMs = DEFAULT_LOCK_TIMEOUT_MS, signal } = options;
  const owner: LockOwner = {
    pid: process.pid,
    hostname: hostname(),
    createdAt: new Date().toISOString(),
    token: randomBytes(8).toString('hex'),
  };
  const content = `${JSON.stringify(owner)}\n`;
  const deadline = Date.now() + timeoutMs;
  let retryMs = FIRST_RETRY_MS;

  for (;;) {
    signal?.throwIfAborted();
    const handle = await createExclusive(lockPath, vaultPath);
    if (handle !== undefined) {
      try {
        await handle.writeFile(content);
      } catch (error) {
        await handle.close();
        await unlink(lockPath).catch(() => {
          // Best effort: the error below already tells the operator what failed.
        });
        throw ioError(lockPath, vaultPath, error);
      }
      await handle.close();
      break;
    }
    if (Date.now() >= deadline) throw await lockedError(lockPath, vaultPath, timeoutMs);
    await delay(Math.min(retryMs, Math.max(1, deadline - Date.now())), undefined, { signal });
    retryMs = Math.min(retryMs * 2, MAX_RETRY_MS);
  }

  let released = false;
  return async () => {
    if (released) return;
    released = true;
    try {
      // Remove the lock only if it is still ours: an operator may have removed it by hand and
      // another process taken it since.
      const current = await readFile(lockPath, 'utf8');
      if (current === content) await unlink(lockPath);
    } catch {
      // ENOENT: already removed, released either way. Anything else would leave the lock in
      // place, and the next writer's DSO_VAULT_LOCKED names it and says how to remove it;
      // throwing here would hide the outcome of the write it guarded.
    }
  };
}

/** Creates the lock file, or returns undefined when another process holds it. */
async function createExclusive(
  lockPath: string,
  vaultPath: string,
): Promise<FileHandle | undefined> {
  try {
    return await open(lockPath, 'wx', 0o600);
  } catch (error) {
    if (errnoCode(error) === 'EEXIST') return undefined;
    throw ioError(lockPath, vaultPath, error);
  }
}

function ioError(lockPath: string, vaultPath: string, cause: unknown): VaultError {
  return new VaultError(
    'DSO_VAULT_IO',
    `cannot create lock file ${lockPath} for vault ${vaultPath} (${errnoCode(cause) ?? 'error'}); check that its directory is writable`,
    { vaultPath, cause },
  );
}

async function lockedError(
  lockPath: string,
  vaultPath: string,
  timeoutMs: number,
): Promise<VaultError> {
  const holder = await readOwner(lockPath);
  let who = 'another process';
  let hint = `if no other dso process is writing to the vault, remove ${lockPath}`;
  if (holder) {
    who = `pid ${holder.pid} on host ${holder.hostname} (since ${holder.createdAt})`;
    if (holder.hostname === hostname() && !isRunning(holder.pid)) {
      hint = `that process is no longer running: remove ${lockPath}`;
    }
  }
  return new VaultError(
    'DSO_VAULT_LOCKED',
    `vault ${vaultPath} is locked by ${who}; waited ${timeoutMs} ms; ${hint}`,
    { vaultPath },
  );
}

async function readOwner(lockPath: string): Promise<LockOwner | undefined> {
  try {
    const parsed: unknown = JSON.parse(await readFile(lockPath, 'utf8'));
    if (
      typeof parsed === 'object' &&
      parsed !== null &&
      typeof (parsed as LockOwner).pid === 'number' &&
      typeof (parsed as LockOwner).hostname === 'string' &&
      typeof (parsed as LockOwner).createdAt === 'string'
    ) {
      return parsed as LockOwner;
    }
  } catch {
    // Gone, half-written or not ours: the message then names no holder, which is still true.
  }
  return undefined;
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else.
    return errnoCode(error) === 'EPERM';
  }
}
