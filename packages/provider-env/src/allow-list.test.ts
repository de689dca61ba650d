import { describe, expect, it } from 'vitest';
import { allowedEnvironment, compileAllowList, isReserved } from './allow-list.js';

describe('compileAllowList', () => {
  it('allows exact names and names under a PREFIX* pattern', () => {
    const list = compileAllowList(['DB_PASSWORD', 'APP_*']);
    expect(list.allows('DB_PASSWORD')).toBe(true);
    expect(list.allows('APP_')).toBe(true);
    expect(list.allows('APP_TOKEN')).toBe(true);
    expect(list.allows('DB_PASSWORD_OLD')).toBe(false);
    expect(list.allows('APPX')).toBe(false);
    expect(list.allows('HOME')).toBe(false);
  });

  it('keeps reserved variables out of patterns, but not out of exact entries', () => {
    const list = compileAllowList(['D*', 'V*', 'AWS_SECRET_ACCESS_KEY']);
    expect(list.allows('DSO_VAULT_PASSPHRASE')).toBe(false);
    expect(list.allows('DSO_VAULT_KEY_FILE')).toBe(false);
    expect(list.allows('VAULT_TOKEN')).toBe(false);
    expect(list.allows('DB_PASSWORD')).toBe(true);
    expect(list.allows('AWS_SECRET_ACCESS_KEY')).toBe(true);
    expect(isReserved('AZURE_CLIENT_SECRET')).toBe(true);
  });

  it('refuses a bare *, a * not at the end, and names with other characters', () => {
    for (const entry of ['*', 'A*B', 'A B', 'A=B', '.A', '']) {
      expect(() => compileAllowList([entry]), entry).toThrow(TypeError);
    }
  });
});

describe('allowedEnvironment', () => {
  it('selects the allowed variables: what a host gives the provider’s child', () => {
    expect(
      allowedEnvironment(['APP_*', 'DB_PASSWORD'], {
        APP_TOKEN: 't',
        DB_PASSWORD: 'p',
        DSO_VAULT_PASSPHRASE: 'v',
        HOME: '/root',
        APP_UNSET: undefined,
      }),
    ).toEqual({ APP_TOKEN: 't', DB_PASSWORD: 'p' });
  });
});
