import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { closestMatch, editDistance } from './suggest.js';

describe('editDistance', () => {
  it.each([
    ['', '', 0],
    ['', 'abc', 3],
    ['abc', '', 3],
    ['ttl', 'ttl', 0],
    ['tll', 'ttl', 1],
    ['backnd', 'backend', 1],
    ['kitten', 'sitting', 3],
    ['ca', 'abc', 3],
    ['maxentires', 'maxentries', 1],
  ])('from %j to %j is %d', (a, b, distance) => {
    expect(editDistance(a, b)).toBe(distance);
  });

  it('is symmetric, zero only for equal strings, and at most the longer length', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), fc.string({ maxLength: 12 }), (a, b) => {
        const distance = editDistance(a, b);
        expect(editDistance(b, a)).toBe(distance);
        expect(distance === 0).toBe(a === b);
        expect(distance).toBeLessThanOrEqual(Math.max(a.length, b.length));
        expect(distance).toBeGreaterThanOrEqual(Math.abs(a.length - b.length));
      }),
    );
  });
});

describe('closestMatch', () => {
  const cacheKeys = ['backend', 'ttlMs', 'maxEntries', 'maxBytes', 'staleIfErrorMs', 'redis'];

  it.each([
    ['tll', 'ttlMs'],
    ['ttl', 'ttlMs'],
    ['ttl_ms', 'ttlMs'],
    ['TTLMS', 'ttlMs'],
    ['max-entries', 'maxEntries'],
    ['maxEntires', 'maxEntries'],
    ['backnd', 'backend'],
    ['redsi', 'redis'],
  ])('suggests for %j: %j', (word, expected) => {
    expect(closestMatch(word, cacheKeys)).toBe(expected);
  });

  it.each(['colour', 'x', 'enabled', 'address'])('suggests nothing for %j', (word) => {
    expect(closestMatch(word, cacheKeys)).toBeUndefined();
  });

  it('prefers the nearest candidate', () => {
    expect(closestMatch('levl', ['label', 'level'])).toBe('level');
  });

  it('never suggests the word itself', () => {
    expect(closestMatch('redis', ['redis'])).toBeUndefined();
  });
});
