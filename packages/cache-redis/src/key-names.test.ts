import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deriveCacheKeys } from './crypto.js';
import { createKeyNamer, escapeGlob, indexPrefixesOf, isIndexedPrefix } from './key-names.js';

describe('indexPrefixesOf and isIndexedPrefix', () => {
  it('indexes a conventional key under its provider and its path', () => {
    expect(indexPrefixesOf('vault:app/db@3')).toEqual(['vault:', 'vault:app/db@']);
    expect(indexPrefixesOf('vault:app/db@')).toEqual(['vault:', 'vault:app/db@']);
    expect(indexPrefixesOf('vault:app:db@1@2')).toEqual(['vault:', 'vault:app:db@']);
    expect(indexPrefixesOf('vault:no-version')).toEqual(['vault:']);
    expect(indexPrefixesOf('plain')).toEqual([]);
  });

  it('recognises exactly the prefixes cacheKeyPrefix builds', () => {
    expect(isIndexedPrefix('vault:')).toBe(true);
    expect(isIndexedPrefix('vault:app/db@')).toBe(true);
    for (const other of ['', 'k', 'vault', 'vault:app', 'vault:app/db@1', 'vault:a:']) {
      expect(isIndexedPrefix(other)).toBe(false);
    }
  });

  it('makes an index hold exactly the keys that start with its prefix', () => {
    // Small alphabets, so that ':' and '@' land everywhere.
    const text = fc.string({ unit: fc.constantFrom('a', 'b', ':', '@'), maxLength: 8 });
    fc.assert(
      fc.property(text, text, (key, prefix) => {
        fc.pre(isIndexedPrefix(prefix));
        expect(indexPrefixesOf(key).includes(prefix)).toBe(key.startsWith(prefix));
      }),
      { numRuns: 2_000 },
    );
  });
});

describe('createKeyNamer', () => {
  const namer = createKeyNamer('dso:', deriveCacheKeys(randomBytes(32)));

  it('names an entry, its lease and its indexes without revealing the key', () => {
    const names = namer.names('vault:team/secret-path@3');
    expect(names.entry).toMatch(/^dso:e:[A-Za-z0-9_-]{43}$/);
    expect(names.lease).toBe(`dso:lease:${names.id}`);
    expect(names.indexes).toEqual([
      'dso:all',
      namer.index('vault:'),
      namer.index('vault:team/secret-path@'),
    ]);
    for (const name of [names.entry, names.lease, ...names.indexes]) {
      expect(name).not.toMatch(/vault|team|secret|path/);
    }
    expect(namer.leaseOfEntry(names.entry)).toBe(names.lease);
  });

  it('gives every version of one path the same path index', () => {
    expect(namer.names('vault:app/db@1').indexes).toEqual(namer.names('vault:app/db@').indexes);
    expect(namer.names('vault:app/db@1').entry).not.toBe(namer.names('vault:app/db@').entry);
  });

  it('owns only the names it writes under its own prefix', () => {
    const names = namer.names('vault:app/db@');
    for (const name of [names.entry, names.lease, ...names.indexes]) {
      expect(namer.owns(name)).toBe(true);
    }
    const nested = createKeyNamer('dso:x:', deriveCacheKeys(randomBytes(32))).names('k');
    for (const name of ['dso:other', 'dso:e:short', 'other:all', nested.entry, 'dso:x:all']) {
      expect(namer.owns(name)).toBe(false);
    }
  });
});

describe('escapeGlob', () => {
  it('escapes the characters SCAN MATCH treats as patterns', () => {
    expect(escapeGlob('a*b?c[d]e\\f:')).toBe('a\\*b\\?c\\[d\\]e\\\\f:');
  });
});
