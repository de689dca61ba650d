import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { onAbort } from '@dso/async';
import type { SecretChange } from '@dso/provider-sdk';

/** One watched path and the directories whose events may mean it changed. */
export interface WatchTarget {
  /** The secret path, as reported in changes. */
  path: string;
  /** The directory the file's name is in (not resolved: an editor's rename lands here). */
  directory: string;
  /** Its root's directory (a Kubernetes-style `..data` swap lands here). */
  root: string;
}

/** Options of {@link watchFiles}. */
export interface WatchFilesOptions {
  targets: readonly WatchTarget[];
  /** The current version of target `index`; rejects when it has none (missing, refused). */
  version(index: number): Promise<string>;
  /** How often every target is re-checked besides filesystem events, in ms. */
  pollIntervalMs: number;
  signal: AbortSignal;
}

/**
 * Watches files through their directories, so writes made by renaming a new file over the old
 * one (atomic writers, most editors) are seen: the file's own inode would be replaced, its
 * directory's is not. Any event in a watched directory, and a periodic re-check, makes it
 * re-read each target's version (cheap: a `stat` while the file is unchanged); a version that
 * differs from the last one reported is yielded. The first step reports each existing target's
 * current version, so a change made while the watch was being set up is never lost (the caller
 * compares versions). A directory that is missing, or goes away, is watched again on the next
 * re-check. Ends without an error when `signal` aborts.
 */
export async function* watchFiles(options: WatchFilesOptions): AsyncGenerator<SecretChange> {
  const { targets, signal, pollIntervalMs } = options;
  if (signal.aborted) return;
  const directories = [...new Set(targets.flatMap((target) => [target.directory, target.root]))];
  const watchers = new Map<string, FSWatcher>();
  const reported = new Map<number, string | undefined>();
  let dirty = true;
  let wake: (() => void) | undefined;
  const poke = () => {
    dirty = true;
    wake?.();
  };

  const establish = () => {
    for (const directory of directories) {
      if (watchers.has(directory)) continue;
      let watcher: FSWatcher;
      try {
        watcher = fsWatch(directory, { persistent: false }, poke);
      } catch {
        // Missing (or not yet mounted): the periodic re-check tries again and checks targets.
        continue;
      }
      watcher.on('error', () => {
        // The directory went away (or the watch broke): forget it, re-check now, and watch it
        // again on a later pass once it exists.
        watcher.close();
        if (watchers.get(directory) === watcher) watchers.delete(directory);
        poke();
      });
      watchers.set(directory, watcher);
    }
  };

  const timer = setInterval(() => {
    establish();
    poke();
  }, pollIntervalMs);
  timer.unref();
  const stopWaking = onAbort(signal, () => wake?.());
  try {
    establish();
    while (!signal.aborted) {
      if (!dirty) {
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = undefined;
        continue;
      }
      dirty = false;
      for (const [index, target] of targets.entries()) {
        if (signal.aborted) return;
        let version: string | undefined;
        try {
          version = await options.version(index);
        } catch {
          // Missing, refused or unreadable right now: nothing to report. The version is
          // forgotten, so the file coming back is reported even with its old content.
          version = undefined;
        }
        if (signal.aborted) return;
        if (version !== undefined && version !== reported.get(index)) {
          reported.set(index, version);
          yield { path: target.path, version };
        } else if (version === undefined) {
          reported.delete(index);
        }
      }
    }
  } finally {
    clearInterval(timer);
    stopWaking();
    for (const watcher of watchers.values()) watcher.close();
    watchers.clear();
  }
}
