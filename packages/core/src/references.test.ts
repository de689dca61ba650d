import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDsoError } from './errors.js';
import {
  formatReference,
  isReference,
  MAX_REFERENCE_LENGTH,
  parseReference,
  type SecretReference,
} from './references.js';

const SHAPE = 'dso://[provider:]path[#field][@version]';

/** Calls `run`, expects a DSO_REFERENCE_INVALID DsoError and returns its message. */
function rejection(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(isDsoError(error)).toBe(true);
    expect((error as { code: string }).code).toBe('DSO_REFERENCE_INVALID');
    return (error as Error).message;
  }
  throw new Error('expected DSO_REFERENCE_INVALID, but nothing was thrown');
}

describe('parseReference', () => {
  it.each<[string, SecretReference]>([
    ['dsofile://app/db/password', { scheme: 'dsofile', path: 'app/db/password' }],
    ['dso://app', { scheme: 'dso', path: 'app' }],
    [
      'dso://vault:app/db#password@3',
      { scheme: 'dso', provider: 'vault', path: 'app/db', field: 'password', version: '3' },
    ],
    [
      'dso://app/db#db.credentials.password',
      { scheme: 'dso', path: 'app/db', field: 'db.credentials.password' },
    ],
    ['dsofile://app/db@v1.2-rc_3', { scheme: 'dsofile', path: 'app/db', version: 'v1.2-rc_3' }],
    [
      'dsofile://aws-sm:prod/.hidden/..x/a_b-c.d',
      { scheme: 'dsofile', provider: 'aws-sm', path: 'prod/.hidden/..x/a_b-c.d' },
    ],
    [`dso://${'p'.repeat(63)}:x`, { scheme: 'dso', provider: 'p'.repeat(63), path: 'x' }],
  ])('parses %s', (text, expected) => {
    expect(parseReference(text)).toStrictEqual(expected);
  });

  it('leaves out the parts a reference does not carry, rather than setting them to undefined', () => {
    expect(Object.keys(parseReference('dso://app/db'))).toEqual(['scheme', 'path']);
  });

  it.each([
    ['dso:/app', 'the scheme must be dso:// or dsofile://'],
    ['DSO://app', 'the scheme must be dso:// or dsofile://'],
    ['dsofile:app', 'the scheme must be dso:// or dsofile://'],
    ['dso://', 'the path is empty'],
    ['dso://vault:', 'the path is empty'],
    ['dso://#field', 'the path is empty'],
    ['dso:///app', 'path segment 1 of 2 is empty'],
    ['dso://app/', 'path segment 2 of 2 is empty'],
    ['dso://app//db', 'path segment 2 of 3 is empty'],
    ['dso://app/./db', 'path segment 2 of 3 is ".", which is not allowed'],
    ['dso://app/../db', 'path segment 2 of 3 is "..", which is not allowed'],
    ['dso://..', 'path segment 1 of 1 is "..", which is not allowed'],
    ['dso://app/d b', 'path segment 2 of 2 "d b" may hold only letters'],
    ['dso://app/d%20b', 'path segment 2 of 2 "d%20b" may hold only letters'],
    ['dso://app/dé', 'may hold only letters'],
    ['dso://:app', 'the provider before ":" is empty'],
    ['dso://Vault:app', 'the provider "Vault" must be a lowercase letter'],
    ['dso://1vault:app', 'the provider "1vault" must be a lowercase letter'],
    [`dso://${'p'.repeat(64)}:app`, 'must be a lowercase letter then up to 62'],
    ['dso://a:b:c', 'more than one ":"'],
    ['dso://app/db:x', 'a ":" may only separate the provider from the path'],
    ['dso://app#', 'the field after "#" is empty'],
    ['dso://app#a#b', 'more than one "#"'],
    ['dso://app#a..b', 'the field "a..b" must be keys'],
    ['dso://app#.a', 'the field ".a" must be keys'],
    ['dso://app#a.', 'the field "a." must be keys'],
    ['dso://app#a/b', 'the field "a/b" must be keys'],
    ['dso://app@', 'the version after "@" is empty'],
    ['dso://app@1@2', 'more than one "@"'],
    ['dso://app@1#field', 'the "#field" part must come before the "@version" part'],
    ['dso://app@v 1', 'the version "v 1" may hold only letters'],
  ])('rejects %s saying %s', (text, problem) => {
    const message = rejection(() => parseReference(text));
    expect(message).toContain(problem);
    expect(message).toContain(JSON.stringify(text));
    expect(message).toContain(SHAPE);
  });

  it('keeps the reference in the error details', () => {
    try {
      parseReference('dso://app//db');
      expect.unreachable();
    } catch (error) {
      expect(isDsoError(error) && error.details).toEqual({ reference: 'dso://app//db' });
    }
  });

  it('does not quote text that does not even begin like a reference, since it may be a value', () => {
    const canary = 'canary-4e1b-hunter2';
    const message = rejection(() => parseReference(canary));
    expect(message).not.toContain(canary);
    expect(message).toContain('does not start with dso:// or dsofile://');
    expect(message).toContain(SHAPE);
  });

  it('escapes control characters when it quotes a reference', () => {
    const message = rejection(() => parseReference('dso://app\n{"level":60}'));
    expect(message).not.toContain('\n');
    expect(message).toContain('\\n');
  });

  it('rejects a reference longer than the limit and quotes only its start', () => {
    const text = `dso://${'a'.repeat(MAX_REFERENCE_LENGTH)}`;
    const message = rejection(() => parseReference(text));
    expect(message).toContain(`the limit is ${MAX_REFERENCE_LENGTH}`);
    expect(message.length).toBeLessThan(600);
  });

  it('accepts a reference exactly at the limit', () => {
    const text = `dso://${'a'.repeat(MAX_REFERENCE_LENGTH - 'dso://'.length)}`;
    expect(parseReference(text).path).toHaveLength(MAX_REFERENCE_LENGTH - 6);
  });

  it.each([[undefined], [null], [42], [{ path: 'app' }]])('rejects the non-string %j', (value) => {
    const message = rejection(() => parseReference(value as unknown as string));
    expect(message).toContain('expected a string');
  });
});

describe('isReference', () => {
  it.each([
    ['dso://app', true],
    ['dsofile://app', true],
    ['dso://', true],
    ['DSO://app', false],
    ['dso:/app', false],
    [' dso://app', false],
    ['postgres://db:5432', false],
    ['', false],
  ])('says %j is a reference: %s', (text, expected) => {
    expect(isReference(text)).toBe(expected);
  });

  it('says a non-string is not a reference', () => {
    expect(isReference(undefined)).toBe(false);
    expect(isReference(42)).toBe(false);
  });
});

describe('formatReference', () => {
  it('writes every part in grammar order', () => {
    expect(
      formatReference({
        scheme: 'dsofile',
        provider: 'vault',
        path: 'app/db',
        field: 'a.b',
        version: '7',
      }),
    ).toBe('dsofile://vault:app/db#a.b@7');
    expect(formatReference({ scheme: 'dso', path: 'app' })).toBe('dso://app');
  });

  it.each<[string, SecretReference]>([
    ['a path that holds the provider separator', { scheme: 'dso', path: 'vault:app' }],
    ['a path that holds a field', { scheme: 'dso', path: 'app#field' }],
    ['a field that holds a version', { scheme: 'dso', path: 'app', field: 'f@1' }],
  ])('rejects %s instead of writing text that parses differently', (_, reference) => {
    rejection(() => formatReference(reference));
  });

  it.each<[string, SecretReference]>([
    ['an unknown scheme', { scheme: 'http' as 'dso', path: 'app' }],
    ['an empty provider', { scheme: 'dso', provider: '', path: 'app' }],
    ['an uppercase provider', { scheme: 'dso', provider: 'Vault', path: 'app' }],
    ['an empty path', { scheme: 'dso', path: '' }],
    ['a ".." segment', { scheme: 'dso', path: 'app/../x' }],
    ['an empty field', { scheme: 'dso', path: 'app', field: '' }],
    ['an empty version', { scheme: 'dso', path: 'app', version: '' }],
  ])('rejects %s', (_, reference) => {
    rejection(() => formatReference(reference));
  });
});

const segment = fc.stringMatching(/^[A-Za-z0-9._-]{1,12}$/).filter((s) => s !== '.' && s !== '..');
const parts = fc
  .record(
    {
      scheme: fc.constantFrom('dso' as const, 'dsofile' as const),
      provider: fc.stringMatching(/^[a-z][a-z0-9-]{0,62}$/),
      path: fc.array(segment, { minLength: 1, maxLength: 5 }).map((s) => s.join('/')),
      field: fc
        .array(fc.stringMatching(/^[A-Za-z0-9_-]{1,8}$/), { minLength: 1, maxLength: 3 })
        .map((keys) => keys.join('.')),
      version: fc.stringMatching(/^[A-Za-z0-9._-]{1,10}$/),
    },
    { requiredKeys: ['scheme', 'path'] },
    // fast-check builds records without a prototype; parseReference returns plain objects.
  )
  .map((reference): SecretReference => ({ ...reference }));

describe('the reference grammar, by property', () => {
  it('parses every valid reference into its parts and writes it back unchanged', () => {
    fc.assert(
      fc.property(parts, (reference) => {
        // The text is assembled here, independently of formatReference.
        const text = `${reference.scheme}://${reference.provider === undefined ? '' : `${reference.provider}:`}${reference.path}${reference.field === undefined ? '' : `#${reference.field}`}${reference.version === undefined ? '' : `@${reference.version}`}`;
        const parsed = parseReference(text);
        expect(parsed).toStrictEqual(reference);
        expect(formatReference(parsed)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });

  it('reads back every reference it writes', () => {
    fc.assert(
      fc.property(parts, (reference) => {
        expect(parseReference(formatReference(reference))).toStrictEqual(reference);
      }),
      { numRuns: 500 },
    );
  });

  it('either parses arbitrary text into a reference that writes back unchanged, or rejects it with DSO_REFERENCE_INVALID', () => {
    const text = fc.oneof(
      fc.string({ unit: fc.constantFrom(...'dsofile:/#@.-_aZ9 \\%é'.split('')), maxLength: 30 }),
      fc
        .tuple(fc.constantFrom('dso://', 'dsofile://'), fc.string({ maxLength: 30 }))
        .map(([scheme, rest]) => scheme + rest),
    );
    fc.assert(
      fc.property(text, (input) => {
        let parsed: SecretReference;
        try {
          parsed = parseReference(input);
        } catch (error) {
          expect(isDsoError(error) && error.code).toBe('DSO_REFERENCE_INVALID');
          return;
        }
        expect(formatReference(parsed)).toBe(input);
      }),
      { numRuns: 2000 },
    );
  });
});
