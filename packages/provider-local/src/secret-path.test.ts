import { describe, expect, it } from 'vitest';
import { assertSecretPath, isUnderPrefix, normalizePrefix } from './secret-path.js';
import { isVaultError } from './vault-error.js';

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return isVaultError(error) ? error.code : 'not a VaultError';
  }
  return undefined;
}

describe('assertSecretPath', () => {
  it.each(['app', 'app/db/password', 'a.b_c-d/E9', '...', '__proto__'])('accepts %s', (path) => {
    expect(codeOf(() => assertSecretPath(path))).toBeUndefined();
  });

  it.each([
    '',
    '/app',
    'app/',
    'app//db',
    'app/../etc',
    '..',
    './app',
    'app/db password',
    'app\\db',
    'app:db',
    'ünïcode',
    'a'.repeat(1025),
  ])('rejects %j with DSO_VAULT_PATH_INVALID', (path) => {
    expect(codeOf(() => assertSecretPath(path))).toBe('DSO_VAULT_PATH_INVALID');
  });

  it('says what is wrong and what a valid path looks like', () => {
    expect(() => assertSecretPath('app/../etc')).toThrow(/segment 2 of 3 is "\.\."/);
    expect(() => assertSecretPath('app/../etc')).toThrow(/app\/db\/password/);
  });

  it('rejects a non-string without echoing it', () => {
    expect(() => assertSecretPath(42 as unknown as string)).toThrow(/expected a string/);
  });
});

describe('normalizePrefix and isUnderPrefix', () => {
  it('accepts an empty prefix and one trailing slash', () => {
    expect(normalizePrefix(undefined)).toBe('');
    expect(normalizePrefix('')).toBe('');
    expect(normalizePrefix('app/')).toBe('app');
    expect(codeOf(() => normalizePrefix('app//'))).toBe('DSO_VAULT_PATH_INVALID');
    expect(codeOf(() => normalizePrefix('../'))).toBe('DSO_VAULT_PATH_INVALID');
  });

  it('matches by whole segments', () => {
    expect(isUnderPrefix('app/db', 'app')).toBe(true);
    expect(isUnderPrefix('app', 'app')).toBe(true);
    expect(isUnderPrefix('apple', 'app')).toBe(false);
    expect(isUnderPrefix('anything', '')).toBe(true);
  });
});
