import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { SecretChange } from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { contentVersion } from './contained-file.js';
import { createFileProvider } from './file-provider.js';

// Long enough that a change seen within the test's deadline came from a filesystem event, not
// from the periodic re-check (unless a test sets it short on purpose).
const NO_POLL_MS = 600_000;

let dir: string;
let root: string;
const cleanups: Array<() => Promise<void> | void> = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-file-watch-'));
  root = join(dir, 'root');
  await mkdir(root);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function atomicWrite(relative: string, content: string): Promise<string> {
  const target = join(root, relative);
  await mkdir(dirname(target), { recursive: true });
  const temp = join(dirname(target), `.${randomBytes(4).toString('hex')}.swp`);
  await writeFile(temp, content);
  await rename(temp, target);
  return contentVersion(Buffer.from(content));
}

/** Starts a watch and records what it yields, until the test ends. */
function watch(paths: string[], watchPollIntervalMs = NO_POLL_MS) {
  const files = createFileProvider({ name: 'files', roots: { root }, watchPollIntervalMs });
  const controller = new AbortController();
  const changes: SecretChange[] = [];
  let failure: unknown;
  const done = (async () => {
    try {
      for await (const change of files.watch!(paths, { signal: controller.signal })) {
        changes.push(change);
      }
    } catch (error) {
      failure = error;
    }
  })();
  cleanups.push(async () => {
    controller.abort();
    await done;
    await files.close();
  });
  const seen = (path: string, version: string) =>
    changes.some((change) => change.path === path && change.version === version);
  return {
    changes,
    controller,
    done,
    failure: () => failure,
    /** Waits until the watch has reported `version` of `path`. */
    async until(path: string, version: string, ms = 5_000) {
      await vi.waitFor(
        () => {
          if (seen(path, version)) return;
          throw new Error(`no change ${path}@${version}; saw ${JSON.stringify(changes)}`);
        },
        { timeout: ms, interval: 10 },
      );
    },
  };
}

describe('watch', () => {
  it('first reports the current version of each watched file that exists', async () => {
    const version = await atomicWrite('tls.key', 'one');
    const watcher = watch(['root/tls.key', 'root/absent']);
    await watcher.until('root/tls.key', version);
    expect(watcher.changes).toEqual([{ path: 'root/tls.key', version }]);
  });

  it('reports a rename-over write (atomic writers, editors) from a filesystem event', async () => {
    await atomicWrite('tls.key', 'one');
    const watcher = watch(['root/tls.key']);
    await watcher.until('root/tls.key', contentVersion(Buffer.from('one')));
    const second = await atomicWrite('tls.key', 'two');
    await watcher.until('root/tls.key', second);
  });

  it('reports an in-place write, and a file created after the watch began', async () => {
    const ready = await atomicWrite('ready', 'r');
    const watcher = watch(['root/new', 'root/sub/later', 'root/ready']);
    // The first pass reports a file that exists, and starts once the directories are watched.
    await watcher.until('root/ready', ready);
    await writeFile(join(root, 'new'), 'created');
    await watcher.until('root/new', contentVersion(Buffer.from('created')));
    await writeFile(join(root, 'new'), 'rewritten');
    await watcher.until('root/new', contentVersion(Buffer.from('rewritten')));
  });

  it('reports a file in a directory created after the watch began, at the next re-check', async () => {
    const ready = await atomicWrite('ready', 'r');
    const watcher = watch(['root/sub/later', 'root/ready'], 100);
    // The first pass reports a file that exists, and starts once the directories are watched.
    await watcher.until('root/ready', ready);
    const version = await atomicWrite('sub/later', 'late');
    await watcher.until('root/sub/later', version);
  });

  it('reports a Kubernetes-style ..data swap in the root', async () => {
    await mkdir(join(root, '..v1'));
    await writeFile(join(root, '..v1', 'token'), 'one');
    await symlink('..v1', join(root, '..data'));
    await symlink('..data/token', join(root, 'token'));
    const watcher = watch(['root/token']);
    await watcher.until('root/token', contentVersion(Buffer.from('one')));
    await mkdir(join(root, '..v2'));
    await writeFile(join(root, '..v2', 'token'), 'two');
    await symlink('..v2', join(root, '..data_tmp'));
    await rename(join(root, '..data_tmp'), join(root, '..data'));
    await watcher.until('root/token', contentVersion(Buffer.from('two')));
  });

  it('reports nothing for files it was not asked to watch', async () => {
    const version = await atomicWrite('watched', 'w');
    const watcher = watch(['root/watched']);
    await watcher.until('root/watched', version);
    await atomicWrite('other', 'o1');
    await atomicWrite('other', 'o2');
    const next = await atomicWrite('watched', 'w2');
    await watcher.until('root/watched', next);
    expect(watcher.changes.every((change) => change.path === 'root/watched')).toBe(true);
  });

  it('survives its directory going away and coming back', async () => {
    await atomicWrite('sub/token', 'one');
    const watcher = watch(['root/sub/token', 'root/marker'], 100);
    await watcher.until('root/sub/token', contentVersion(Buffer.from('one')));
    await rm(join(root, 'sub'), { recursive: true });
    // Each pass checks the targets in order, sub/token before the marker, and reports a version
    // once. The pass that reports the marker's first version read the marker after the removal;
    // the pass that reports its second one started after that, so it found sub/token missing.
    await watcher.until('root/marker', await atomicWrite('marker', 'gone'));
    await watcher.until('root/marker', await atomicWrite('marker', 'still gone'));
    const version = await atomicWrite('sub/token', 'two');
    await watcher.until('root/sub/token', version);
  });

  it('ends without an error within 1 s when its signal aborts', async () => {
    await atomicWrite('tls.key', 'one');
    const watcher = watch(['root/tls.key']);
    await watcher.until('root/tls.key', contentVersion(Buffer.from('one')));
    const started = Date.now();
    watcher.controller.abort();
    await watcher.done;
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(watcher.failure()).toBeUndefined();
  });

  it('refuses a malformed or unknown path when the watch starts', () => {
    const files = createFileProvider({ name: 'files', roots: { root } });
    cleanups.push(() => files.close());
    const signal = new AbortController().signal;
    expect(() => files.watch!(['root/../x'], { signal })).toThrow(/segment/);
    expect(() => files.watch!(['elsewhere/x'], { signal })).toThrow(/no configured root/);
  });
});
