import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  isSecretVersionId,
  MAX_SECRET_NAME_LENGTH,
  pathForSecretName,
  secretNameForPath,
} from './secret-name.js';

describe('secretNameForPath', () => {
  it.each([
    ['db-password', 'db-password'],
    ['app/db/password', 'app--db--password'],
    ['App/DB', 'App--DB'],
    ['dso-conformance/abc123/text-xyz/value', 'dso-conformance--abc123--text-xyz--value'],
    ['a/-b', 'a---b'],
  ])('maps %s to the Key Vault name %s', (path, name) => {
    expect(secretNameForPath(path)).toEqual({ ok: true, name });
  });

  it.each([
    ['app/db_password', '"_"'],
    ['app.db', '"."'],
    ['a b', '" "'],
    ['ü', '"ü"'],
    ['a--b', 'reads back as the path a/b'],
    ['a-/b', 'reads back as the path a/-b'],
    ['x'.repeat(MAX_SECRET_NAME_LENGTH + 1), 'the limit is 127'],
    [`${'x'.repeat(63)}/${'y'.repeat(63)}`, 'is 128 characters long'],
    ['', 'the limit is 127'],
  ])('refuses %s, saying why', (path, reason) => {
    const result = secretNameForPath(path);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toContain(reason);
  });

  it('never maps two accepted paths to one name, and every accepted path reads back', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9/-]{1,40}$/), (path) => {
        const result = secretNameForPath(path);
        if (result.ok) {
          expect(result.name).toMatch(/^[0-9a-zA-Z-]{1,127}$/);
          expect(pathForSecretName(result.name)).toBe(path);
        }
      }),
    );
  });

  it('gives every Key Vault name a path that maps back to it', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9-]{1,127}$/), (name) => {
        expect(secretNameForPath(pathForSecretName(name))).toEqual({ ok: true, name });
      }),
    );
  });
});

describe('isSecretVersionId', () => {
  it('accepts 32 hex characters in either case and nothing else', () => {
    expect(isSecretVersionId('0123456789abcdef0123456789ABCDEF')).toBe(true);
    for (const version of ['1', 'latest', 'g'.repeat(32), 'a'.repeat(31), 'a'.repeat(33), '../x']) {
      expect(isSecretVersionId(version)).toBe(false);
    }
  });
});
