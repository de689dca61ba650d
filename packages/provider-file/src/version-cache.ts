import type { BigIntStats } from 'node:fs';

/**
 * How long after its last change a file's metadata is trusted to identify its content, in ns.
 * Timestamps tick coarsely (a few ms on Linux, 1-2 s on FAT and some network filesystems), and
 * a freed inode number can be reused at once; so two writes within one tick can leave the same
 * inode, size and times on different content. A file hashed less than this long after its last
 * change is hashed again on the next probe (git's "racily clean" rule).
 */
export const RACY_WINDOW_NS = 3_000_000_000n;

/** The most entries a cache keeps; the oldest is dropped beyond it. */
export const MAX_VERSION_CACHE_ENTRIES = 1024;

interface Entry {
  identity: string;
  version: string;
}

/**
 * Remembers the version (content hash) of files by their metadata, so a probe of an unchanged
 * file costs a `stat` and no read. Only entries whose file had settled (see
 * {@link RACY_WINDOW_NS}) when it was hashed are kept.
 */
export class VersionCache {
  readonly #entries = new Map<string, Entry>();
  readonly #maxEntries: number;

  constructor(maxEntries = MAX_VERSION_CACHE_ENTRIES) {
    this.#maxEntries = maxEntries;
  }

  /** The cached version of the file at `realPath`, if its metadata still match. */
  get(realPath: string, stats: BigIntStats): string | undefined {
    const entry = this.#entries.get(realPath);
    if (entry === undefined) return undefined;
    if (entry.identity !== identityOf(stats)) {
      this.#entries.delete(realPath);
      return undefined;
    }
    return entry.version;
  }

  /**
   * Remembers `version` for the file whose metadata were `stats` before it was read, when the
   * file had not changed for {@link RACY_WINDOW_NS} at `readStartedNs` (wall clock, ns).
   */
  set(realPath: string, stats: BigIntStats, version: string, readStartedNs: bigint): void {
    const settled =
      readStartedNs - stats.mtimeNs >= RACY_WINDOW_NS &&
      readStartedNs - stats.ctimeNs >= RACY_WINDOW_NS;
    if (!settled) {
      this.#entries.delete(realPath);
      return;
    }
    this.#entries.delete(realPath);
    this.#entries.set(realPath, { identity: identityOf(stats), version });
    if (this.#entries.size > this.#maxEntries) {
      const oldest = this.#entries.keys().next().value;
      if (oldest !== undefined) this.#entries.delete(oldest);
    }
  }

  get size(): number {
    return this.#entries.size;
  }

  clear(): void {
    this.#entries.clear();
  }
}

function identityOf(stats: BigIntStats): string {
  return `${stats.dev}:${stats.ino}:${stats.size}:${stats.mtimeNs}:${stats.ctimeNs}`;
}

/** The wall clock in ns, comparable with file timestamps. */
export function nowNs(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}
