import { describe, expect, it } from 'vitest';
import { errnoCode, isVaultError, VaultError } from './vault-error.js';

describe('VaultError', () => {
  it('carries its code, cause and facts', () => {
    const cause = new Error('EIO');
    const error = new VaultError('DSO_VAULT_IO', 'cannot read', {
      cause,
      vaultPath: '/v.dso',
      secretPath: 'app/db',
      version: '2',
    });
    expect(error).toBeInstanceOf(Error);
    expect(error.name).toBe('VaultError');
    expect(error.code).toBe('DSO_VAULT_IO');
    expect(error.cause).toBe(cause);
    expect([error.vaultPath, error.secretPath, error.version]).toEqual(['/v.dso', 'app/db', '2']);
    expect('cause' in new VaultError('DSO_VAULT_IO', 'x')).toBe(false);
  });

  it('is recognised by isVaultError across copies, by its global brand', () => {
    const foreign = Object.assign(new Error('x'), { code: 'DSO_VAULT_CORRUPT' });
    Object.defineProperty(foreign, Symbol.for('dso.vault-error'), { value: true });
    expect(isVaultError(foreign)).toBe(true);
    expect(isVaultError(new VaultError('DSO_VAULT_CORRUPT', 'x'))).toBe(true);
    expect(isVaultError(new Error('x'))).toBe(false);
    expect(isVaultError(undefined)).toBe(false);
  });

  it('reads errno codes from system errors only', () => {
    expect(errnoCode(Object.assign(new Error('x'), { code: 'ENOENT' }))).toBe('ENOENT');
    expect(errnoCode(new VaultError('DSO_VAULT_IO', 'x'))).toBeUndefined();
    expect(errnoCode(new DOMException('aborted', 'AbortError'))).toBeUndefined();
    // What an aborted fs call (readFile with a signal) rejects with.
    const aborted = Object.assign(new Error('aborted'), { name: 'AbortError', code: 'ABORT_ERR' });
    expect(errnoCode(aborted)).toBeUndefined();
  });
});
