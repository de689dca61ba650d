import { isProviderError } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { checkVersion, encodeFolder, encodeSecretPath, splitListPrefix } from './secret-path.js';

const code = (run: () => unknown) => {
  try {
    run();
  } catch (error) {
    return isProviderError(error) ? error.code : 'not a ProviderError';
  }
  return 'no error';
};

describe('secret paths', () => {
  it('percent-encodes each segment', () => {
    expect(encodeSecretPath('app/db', 'v')).toBe('app/db');
    expect(encodeSecretPath('app/db password?#', 'v')).toBe('app/db%20password%3F%23');
  });

  it('refuses empty segments, dot segments and control characters as NOT_FOUND', () => {
    for (const path of ['', '/a', 'a/', 'a//b', 'a/./b', 'a/../b', '..', 'a\nb', 'a\u007fb']) {
      expect(code(() => encodeSecretPath(path, 'v'))).toBe('DSO_PROVIDER_NOT_FOUND');
    }
  });

  it('splits a list prefix into the folder to start from', () => {
    expect(splitListPrefix('', 'v')).toEqual({ folder: '' });
    expect(splitListPrefix('app', 'v')).toEqual({ folder: '' });
    expect(splitListPrefix('app/', 'v')).toEqual({ folder: 'app/' });
    expect(splitListPrefix('app/d', 'v')).toEqual({ folder: 'app/' });
    expect(code(() => splitListPrefix('a//b', 'v'))).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(code(() => splitListPrefix('../x', 'v'))).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(encodeFolder('a b/', 'v')).toBe('a%20b/');
    expect(encodeFolder('', 'v')).toBe('');
  });

  it('accepts positive integer versions only', () => {
    expect(checkVersion('12', 'p', 'v')).toBe('12');
    for (const version of ['0', '01', '-1', '1.0', 'latest', '', '99999999999999999']) {
      expect(code(() => checkVersion(version, 'p', 'v'))).toBe('DSO_PROVIDER_NOT_FOUND');
    }
  });
});
