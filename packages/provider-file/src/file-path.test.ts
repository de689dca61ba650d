import { isProviderError } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { isSegment, parseFilePath, parsePrefix } from './file-path.js';

describe('parseFilePath', () => {
  it('splits a root name from the segments under it', () => {
    expect(parseFilePath('certs/tls.key', 'files')).toEqual({
      root: 'certs',
      segments: ['tls.key'],
    });
    expect(parseFilePath('certs/a/b-c_d.e', 'files')).toEqual({
      root: 'certs',
      segments: ['a', 'b-c_d.e'],
    });
  });

  it('refuses .., ., empty segments, absolute paths, odd characters and a bare root', () => {
    for (const path of [
      'certs/..',
      'certs/./a',
      '/certs/a',
      'certs//a',
      'certs/a/',
      'certs/a b',
      'certs/a\\b',
      'certs/a\0',
      'certs',
      '',
    ]) {
      let caught: unknown;
      try {
        parseFilePath(path, 'files');
      } catch (error) {
        caught = error;
      }
      expect(isProviderError(caught) && caught.code, path).toBe('DSO_PROVIDER_NOT_FOUND');
    }
  });
});

describe('parsePrefix', () => {
  it('accepts nothing, a root, or deeper, with or without a trailing /', () => {
    expect(parsePrefix(undefined, 'files')).toEqual([]);
    expect(parsePrefix('', 'files')).toEqual([]);
    expect(parsePrefix('certs', 'files')).toEqual(['certs']);
    expect(parsePrefix('certs/a/', 'files')).toEqual(['certs', 'a']);
  });

  it('refuses .. and a lone /', () => {
    expect(() => parsePrefix('certs/..', 'files')).toThrow(/segment 2/);
    expect(() => parsePrefix('/', 'files')).toThrow(/only/);
  });
});

describe('isSegment', () => {
  it('accepts names of files and roots, not . or ..', () => {
    expect(isSegment('tls.key')).toBe(true);
    expect(isSegment('..data')).toBe(true);
    expect(isSegment('..')).toBe(false);
    expect(isSegment('.')).toBe(false);
    expect(isSegment('a/b')).toBe(false);
  });
});
