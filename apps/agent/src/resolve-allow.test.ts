import { parseReference } from '@dso/core';
import { describe, expect, it } from 'vitest';
import { compileResolveAllow, MAX_RESOLVE_ALLOW_PATTERN_LENGTH } from './resolve-allow.js';

function allows(patterns: string[], reference: string, defaultProvider = 'local'): boolean {
  return compileResolveAllow(patterns, defaultProvider).allows(parseReference(reference));
}

describe('compileResolveAllow: matching', () => {
  it('allows nothing without a pattern, and says it is empty', () => {
    const allow = compileResolveAllow([], 'local');
    expect(allow.empty).toBe(true);
    expect(allow.allows(parseReference('dso://app/db'))).toBe(false);
    expect(compileResolveAllow(['dso://app/db'], 'local').empty).toBe(false);
  });

  it('matches an exact path, and only it', () => {
    expect(allows(['dso://app/db'], 'dso://app/db')).toBe(true);
    expect(allows(['dso://app/db'], 'dso://app/db2')).toBe(false);
    expect(allows(['dso://app/db'], 'dso://app')).toBe(false);
    expect(allows(['dso://app/db'], 'dso://app/db/password')).toBe(false);
  });

  it('"*" matches within one path segment, never across "/"', () => {
    expect(allows(['dso://app/*'], 'dso://app/db')).toBe(true);
    expect(allows(['dso://app/*'], 'dso://app/db/password')).toBe(false);
    expect(allows(['dso://app/*'], 'dso://app')).toBe(false);
    expect(allows(['dso://app/db-*'], 'dso://app/db-main')).toBe(true);
    expect(allows(['dso://app/db-*'], 'dso://app/db-')).toBe(true);
    expect(allows(['dso://app/db-*'], 'dso://app/dbx')).toBe(false);
    expect(allows(['dso://*/password'], 'dso://team/password')).toBe(true);
    expect(allows(['dso://*/password'], 'dso://a/b/password')).toBe(false);
  });

  it('treats "." and "-" in a pattern literally', () => {
    expect(allows(['dso://app/db.key'], 'dso://app/db.key')).toBe(true);
    expect(allows(['dso://app/db.key'], 'dso://app/dbxkey')).toBe(false);
  });

  it('"**" matches zero or more whole segments', () => {
    expect(allows(['dso://app/**'], 'dso://app')).toBe(true);
    expect(allows(['dso://app/**'], 'dso://app/db')).toBe(true);
    expect(allows(['dso://app/**'], 'dso://app/db/password')).toBe(true);
    expect(allows(['dso://app/**'], 'dso://apps/db')).toBe(false);
    expect(allows(['dso://app/**/password'], 'dso://app/password')).toBe(true);
    expect(allows(['dso://app/**/password'], 'dso://app/a/b/password')).toBe(true);
    expect(allows(['dso://app/**/password'], 'dso://app/a/b/passwords')).toBe(false);
    expect(allows(['dso://**'], 'dso://anything/at/all')).toBe(true);
    expect(allows(['dso://**/**/x'], 'dso://x')).toBe(true);
  });

  it('makes the default provider explicit on both sides', () => {
    // A pattern without a provider means the default one, like a reference without one.
    expect(allows(['dso://app/*'], 'dso://app/db')).toBe(true);
    expect(allows(['dso://app/*'], 'dso://local:app/db')).toBe(true);
    expect(allows(['dso://local:app/*'], 'dso://app/db')).toBe(true);
    expect(allows(['dso://app/*'], 'dso://vault:app/db')).toBe(false);
    expect(allows(['dso://vault:app/*'], 'dso://app/db')).toBe(false);
    expect(allows(['dso://vault:app/*'], 'dso://vault:app/db')).toBe(true);
    // With another default, the same pattern means another provider.
    expect(allows(['dso://app/*'], 'dso://vault:app/db', 'vault')).toBe(true);
    expect(allows(['dso://app/*'], 'dso://local:app/db', 'vault')).toBe(false);
  });

  it('globs the provider name within itself', () => {
    expect(allows(['dso://*:app/db'], 'dso://vault:app/db')).toBe(true);
    expect(allows(['dso://*:app/db'], 'dso://app/db')).toBe(true);
    expect(allows(['dso://team-*:db'], 'dso://team-a:db')).toBe(true);
    expect(allows(['dso://team-*:db'], 'dso://other:db')).toBe(false);
  });

  it('matches any field or none without "#", and only matching fields with it', () => {
    expect(allows(['dso://app/db'], 'dso://app/db#password')).toBe(true);
    expect(allows(['dso://app/db#password'], 'dso://app/db#password')).toBe(true);
    expect(allows(['dso://app/db#password'], 'dso://app/db')).toBe(false);
    expect(allows(['dso://app/db#password'], 'dso://app/db#user')).toBe(false);
    expect(allows(['dso://app/db#creds.*'], 'dso://app/db#creds.password')).toBe(true);
    expect(allows(['dso://app/db#creds.*'], 'dso://app/db#creds.a.b')).toBe(false);
    expect(allows(['dso://app/db#creds.**'], 'dso://app/db#creds.a.b')).toBe(true);
  });

  it('allows every version of what it matches', () => {
    expect(allows(['dso://app/db'], 'dso://app/db@3')).toBe(true);
    expect(allows(['dso://app/*'], 'dso://vault:app/db#password@7', 'vault')).toBe(true);
  });

  it('never allows a dsofile:// reference', () => {
    expect(allows(['dso://**'], 'dsofile://app/db')).toBe(false);
  });

  it('allows when any one pattern matches', () => {
    const patterns = ['dso://vault:team/*', 'dso://app/db'];
    expect(allows(patterns, 'dso://app/db')).toBe(true);
    expect(allows(patterns, 'dso://vault:team/x')).toBe(true);
    expect(allows(patterns, 'dso://app/other')).toBe(false);
  });

  it('matches a long path against many globstars without blowing up (one row of states per glob)', () => {
    const path = Array.from({ length: 400 }, (_, i) => `s${i}`).join('/');
    const pattern = `dso://${Array.from({ length: 40 }, () => '**').join('/')}/nope`;
    // Backtracking would take ages here and hit the test timeout; the table answers at once.
    expect(allows([pattern], `dso://${path}`)).toBe(false);
    expect(allows([pattern], `dso://${path}/nope`)).toBe(true);
  });
});

describe('compileResolveAllow: bad patterns', () => {
  const cases: Array<[string, string]> = [
    ['', 'is empty'],
    ['app/*', 'does not start with dso://'],
    ['DSO://app', 'does not start with dso://'],
    ['dsofile://app/*', 'the agent delivers files itself'],
    ['dso://app/db@3', 'names a version'],
    ['dso://', 'has an empty path'],
    ['dso://app//db', 'has an empty path segment 2 of 3'],
    ['dso://app/', 'has an empty path segment 2 of 2'],
    ['dso://app/a**', '"**" must be a whole path segment'],
    ['dso://app/d b', 'may hold only A-Z a-z 0-9 . _ - *'],
    ['dso://app/..', 'which is not allowed'],
    ['dso://Vault:app', 'names the provider "Vault"'],
    ['dso://:app', 'names the provider ""'],
    ['dso://a:b:c', 'has more than one ":"'],
    ['dso://app#', 'has an empty field'],
    ['dso://app#a#b', 'has more than one "#"'],
    ['dso://app#a..b', 'has an empty field key 2 of 3'],
    ['dso://app#a/b', 'may hold only A-Z a-z 0-9 _ - *'],
  ];
  it.each(cases)('rejects %j with DSO_AGENT_RESOLVE_ALLOW_INVALID: %s', (pattern, problem) => {
    expect(() => compileResolveAllow([pattern], 'local')).toThrow(
      expect.objectContaining({
        code: 'DSO_AGENT_RESOLVE_ALLOW_INVALID',
        message: expect.stringContaining(problem),
      }),
    );
  });

  it('names the pattern and shows how to write one', () => {
    expect(() => compileResolveAllow(['dso://ok', 'dso://app/a**'], 'local')).toThrow(
      'api.resolveAllow pattern "dso://app/a**" has "**" inside path segment 2 of 2: "**" must be a whole path segment (use "*" within one); write patterns such as dso://app/*, dso://app/** or dso://vault:team/db#password',
    );
  });

  it('rejects a pattern over the length limit', () => {
    const long = `dso://${'a'.repeat(MAX_RESOLVE_ALLOW_PATTERN_LENGTH)}`;
    expect(() => compileResolveAllow([long], 'local')).toThrow(
      expect.objectContaining({ message: expect.stringContaining('is longer than 512') }),
    );
  });
});
