import type { BigIntStats } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { RACY_WINDOW_NS, VersionCache } from './version-cache.js';

const SECOND = 1_000_000_000n;
const NOW = 1_700_000_000n * SECOND;

function stats(overrides: Partial<Record<'ino' | 'size' | 'mtimeNs' | 'ctimeNs', bigint>> = {}) {
  return {
    dev: 1n,
    ino: 10n,
    size: 4n,
    mtimeNs: NOW - 60n * SECOND,
    ctimeNs: NOW - 60n * SECOND,
    ...overrides,
  } as unknown as BigIntStats;
}

describe('VersionCache', () => {
  it('answers for a settled file while its metadata are unchanged', () => {
    const cache = new VersionCache();
    cache.set('/r/a', stats(), 'v1', NOW);
    expect(cache.get('/r/a', stats())).toBe('v1');
  });

  it('forgets an entry when inode, size, mtime or ctime differ', () => {
    for (const changed of [
      { ino: 11n },
      { size: 5n },
      { mtimeNs: NOW - 59n * SECOND },
      { ctimeNs: NOW - 1n },
    ]) {
      const cache = new VersionCache();
      cache.set('/r/a', stats(), 'v1', NOW);
      expect(cache.get('/r/a', stats(changed))).toBeUndefined();
      expect(cache.size).toBe(0);
    }
  });

  it('does not trust a file changed within the racy window before it was read', () => {
    // Same inode, size and times could belong to other content written in the same tick.
    const cache = new VersionCache();
    const recent = stats({ mtimeNs: NOW - RACY_WINDOW_NS + 1n, ctimeNs: NOW - 60n * SECOND });
    cache.set('/r/a', recent, 'v1', NOW);
    expect(cache.get('/r/a', recent)).toBeUndefined();
    const recentCtime = stats({ ctimeNs: NOW - 1n });
    cache.set('/r/a', recentCtime, 'v1', NOW);
    expect(cache.get('/r/a', recentCtime)).toBeUndefined();
    const settled = stats({ mtimeNs: NOW - RACY_WINDOW_NS, ctimeNs: NOW - RACY_WINDOW_NS });
    cache.set('/r/a', settled, 'v1', NOW);
    expect(cache.get('/r/a', settled)).toBe('v1');
  });

  it('keeps at most its bound, dropping the oldest entry', () => {
    const cache = new VersionCache(2);
    cache.set('/r/a', stats(), 'a', NOW);
    cache.set('/r/b', stats(), 'b', NOW);
    cache.set('/r/c', stats(), 'c', NOW);
    expect(cache.size).toBe(2);
    expect(cache.get('/r/a', stats())).toBeUndefined();
    expect(cache.get('/r/c', stats())).toBe('c');
  });
});
