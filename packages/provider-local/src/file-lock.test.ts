import { spawnSync } from 'node:child_process';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { acquireFileLock } from './file-lock.js';
import { isVaultError, type VaultError } from './vault-error.js';

let dir: string;
let lockPath: string;
const vaultPath = '/srv/vault.dso';

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-lock-'));
  lockPath = join(dir, 'vault.dso.lock');
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function lockedError(): Promise<VaultError> {
  const error = await acquireFileLock(lockPath, { vaultPath, timeoutMs: 30 }).catch(
    (caught: unknown) => caught,
  );
  if (!isVaultError(error)) throw new Error('expected a VaultError');
  return error;
}

describe('acquireFileLock', () => {
  it('creates the lock file and removes it on release', async () => {
    const release = await acquireFileLock(lockPath, { vaultPath });
    expect(await readdir(dir)).toEqual(['vault.dso.lock']);
    await release();
    await release();
    expect(await readdir(dir)).toEqual([]);
  });

  it('waits for a holder that releases, then takes the lock', async () => {
    const first = await acquireFileLock(lockPath, { vaultPath });
    const second = acquireFileLock(lockPath, { vaultPath, timeoutMs: 5_000 });
    await first();
    const release = await second;
    expect(await readdir(dir)).toEqual(['vault.dso.lock']);
    await release();
  });

  it('gives up with DSO_VAULT_LOCKED naming a live holder', async () => {
    const release = await acquireFileLock(lockPath, { vaultPath });
    const error = await lockedError();
    expect(error.code).toBe('DSO_VAULT_LOCKED');
    expect(error.message).toContain(`pid ${process.pid}`);
    expect(error.message).toContain(lockPath);
    await release();
  });

  it('says when the holder is no longer running, and leaves its lock for the operator', async () => {
    const exited = spawnSync(process.execPath, ['-e', '']).pid;
    const stale = JSON.stringify({
      pid: exited,
      hostname: hostname(),
      createdAt: '2020-01-01T00:00:00.000Z',
      token: 'x',
    });
    await writeFile(lockPath, stale);
    const error = await lockedError();
    expect(error.code).toBe('DSO_VAULT_LOCKED');
    expect(error.message).toContain('no longer running');
    expect(await readdir(dir)).toEqual(['vault.dso.lock']);
  });

  it('does not remove a lock that is no longer its own', async () => {
    const release = await acquireFileLock(lockPath, { vaultPath });
    await writeFile(lockPath, 'someone else');
    await release();
    expect(await readdir(dir)).toEqual(['vault.dso.lock']);
  });

  it('stops waiting when aborted', async () => {
    const release = await acquireFileLock(lockPath, { vaultPath });
    const controller = new AbortController();
    const waiting = acquireFileLock(lockPath, {
      vaultPath,
      timeoutMs: 60_000,
      signal: controller.signal,
    });
    controller.abort();
    await expect(waiting).rejects.toMatchObject({ name: 'AbortError' });
    await release();
  });
});
