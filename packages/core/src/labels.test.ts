import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDsoError } from './errors.js';
import {
  DEFAULT_FILE_MODE,
  DEFAULT_SECRETS_DIR,
  LABELS,
  MAX_FILE_NAME_LENGTH,
  type ManagedSpec,
  parseManagedLabels,
  toManagedLabels,
} from './labels.js';

const ENABLED = { 'dso.enable': 'true' };

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Calls `run`, expects a DSO_LABEL_INVALID DsoError about `label` and returns the error. */
function rejection(label: string, run: () => unknown) {
  try {
    run();
  } catch (error) {
    if (!isDsoError(error)) throw error;
    expect(error.code).toBe('DSO_LABEL_INVALID');
    expect(error.details.label).toBe(label);
    // Plain keys are written as they are, others quoted.
    expect(error.message).toMatch(
      new RegExp(`^label (${escapeRegExp(label)}|${escapeRegExp(JSON.stringify(label))}) `),
    );
    return error;
  }
  throw new Error('expected DSO_LABEL_INVALID, but nothing was thrown');
}

describe('LABELS', () => {
  it('names the label keys of the contract', () => {
    expect(LABELS).toEqual({
      enable: 'dso.enable',
      target: 'dso.target',
      mode: 'dso.mode',
      owner: 'dso.owner',
      filePrefix: 'dso.file.',
      envPrefix: 'dso.env.',
      envVersionPrefix: 'dso.env-version.',
      rotate: 'dso.rotate',
      rotateSignal: 'dso.rotate.signal',
      rotateHook: 'dso.rotate.hook',
      rotateEscalate: 'dso.rotate.escalate',
    });
    expect(DEFAULT_SECRETS_DIR).toBe('/run/secrets');
    expect(DEFAULT_FILE_MODE).toBe(0o400);
  });
});

describe('parseManagedLabels', () => {
  it.each([
    ['no labels', undefined],
    ['null labels', null],
    ['empty labels', {}],
    ['dso.enable=false', { 'dso.enable': 'false' }],
    ['dso.enable=TRUE', { 'dso.enable': 'TRUE' }],
    ['dso.enable=1', { 'dso.enable': '1' }],
    ['dso.enable with spaces', { 'dso.enable': ' true' }],
    ['file labels without dso.enable', { 'dso.file.x': 'dsofile://app/x' }],
  ])('treats a container with %s as not managed', (_, labels) => {
    expect(parseManagedLabels(labels)).toBeUndefined();
  });

  it('does not look at the other labels of a container that is not managed', () => {
    expect(
      parseManagedLabels({ 'dso.enable': 'no', 'dso.mode': 'bad', 'dso.file.': 'x' }),
    ).toBeUndefined();
  });

  it('gives a managed container with no other labels the defaults and no files', () => {
    expect(parseManagedLabels(ENABLED)).toStrictEqual({
      target: '/run/secrets',
      mode: 0o400,
      files: [],
      env: [],
    });
  });

  it('reads every label of the contract', () => {
    expect(
      parseManagedLabels({
        ...ENABLED,
        'dso.target': '/var/run/app-secrets',
        'dso.mode': '0440',
        'dso.owner': '1000:2000',
        'dso.file.db_password': 'dsofile://vault:app/db#password@3',
        'dso.env.API_TOKEN': 'dso://app/token',
        'com.example.other': 'ignored',
      }),
    ).toStrictEqual({
      target: '/var/run/app-secrets',
      mode: 0o440,
      owner: { uid: 1000, gid: 2000 },
      files: [
        {
          name: 'db_password',
          reference: {
            scheme: 'dsofile',
            provider: 'vault',
            path: 'app/db',
            field: 'password',
            version: '3',
          },
        },
      ],
      env: [{ name: 'API_TOKEN', reference: { scheme: 'dso', path: 'app/token' } }],
    });
  });

  it('sorts files by name, in code-unit order', () => {
    const spec = parseManagedLabels({
      ...ENABLED,
      'dso.file.b': 'dsofile://b',
      'dso.file.a.pem': 'dsofile://a',
      'dso.file.B': 'dsofile://B',
      'dso.file._x': 'dsofile://x',
      'dso.file.a': 'dsofile://a2',
    });
    expect(spec?.files.map((file) => file.name)).toEqual(['B', '_x', 'a', 'a.pem', 'b']);
  });

  it('ignores dso.* labels it does not know, so newer labels do not break it', () => {
    expect(
      parseManagedLabels({ ...ENABLED, 'dso.rotation': 'restart', 'dso.files': 'x' }),
    ).toStrictEqual({
      target: DEFAULT_SECRETS_DIR,
      mode: DEFAULT_FILE_MODE,
      files: [],
      env: [],
    });
  });

  describe('dso.env.*', () => {
    it('sorts variables by name and writes them back', () => {
      const spec = parseManagedLabels({
        ...ENABLED,
        'dso.env.b': 'dso://x',
        'dso.env.A_1': 'dso://vault:y#f@2',
        'dso.env-version.b': 'v7',
      });
      expect(spec?.env[1]?.createdVersion).toBe('v7');
      expect(spec?.env.map((variable) => variable.name)).toEqual(['A_1', 'b']);
      expect(parseManagedLabels(toManagedLabels(spec!))).toStrictEqual(spec);
    });

    it.each([
      ['dso.env.1X', 'dso://x', 'does not name an environment variable'],
      ['dso.env.A-B', 'dso://x', 'does not name an environment variable'],
      ['dso.env.A', 'dsofile://x', 'needs dso://'],
      ['dso.env.A', 'hunter2-canary', 'its value is not shown'],
    ])('refuses %s=%s', (key, value, message) => {
      let caught: unknown;
      try {
        parseManagedLabels({ ...ENABLED, [key]: value });
      } catch (error) {
        caught = error;
      }
      expect((caught as { code?: string }).code).toBe('DSO_LABEL_INVALID');
      expect((caught as Error).message).toContain(message);
      expect((caught as Error).message).not.toContain('hunter2-canary');
    });
  });

  describe('dso.rotate.escalate', () => {
    it('reads a heavier policy', () => {
      expect(
        parseManagedLabels({
          ...ENABLED,
          'dso.rotate': 'signal',
          'dso.rotate.escalate': 'replace',
        })?.rotation,
      ).toEqual({ policy: 'signal', escalateTo: 'replace' });
    });

    it.each([
      [{ 'dso.rotate.escalate': 'restart' }, 'has no effect without dso.rotate'],
      [{ 'dso.rotate': 'restart', 'dso.rotate.escalate': 'signal' }, 'heavier than restart'],
      [{ 'dso.rotate': 'replace', 'dso.rotate.escalate': 'replace' }, 'there is none'],
      [{ 'dso.rotate': 'files', 'dso.rotate.escalate': 'reboot' }, 'heavier than files'],
    ])('refuses %j', (labels, message) => {
      expect(() => parseManagedLabels({ ...ENABLED, ...labels })).toThrow(message);
    });
  });

  describe('dso.target', () => {
    it.each(['/run/secrets', '/s', '/var/lib/my-app/secrets', '/a/.hidden/b...c'])(
      'accepts %j',
      (target) => {
        expect(parseManagedLabels({ ...ENABLED, 'dso.target': target })?.target).toBe(target);
      },
    );

    it.each([
      ['', 'is empty'],
      ['run/secrets', 'is not an absolute path'],
      ['./secrets', 'is not an absolute path'],
      ['/', 'is the root directory'],
      ['/run/../etc', 'holds ".."'],
      ['/..', 'holds ".."'],
      ['/run/./secrets', 'is not normalised'],
      ['//run/secrets', 'is not normalised'],
      ['/run//secrets', 'is not normalised'],
      ['/run/secrets/', 'is not normalised'],
      ['/run/secrets\n', 'holds a control character'],
      ['/run/\u0000', 'holds a control character'],
      [`/${'a'.repeat(1024)}`, 'is longer than 1024 characters'],
      ['/var/lib/my app/secrets', 'holds characters other than'],
    ])('rejects %j saying it %s', (target, problem) => {
      const error = rejection('dso.target', () =>
        parseManagedLabels({ ...ENABLED, 'dso.target': target }),
      );
      expect(error.message).toContain(problem);
      expect(error.message).toContain('dso.target=');
    });

    it('suggests the normalised form of a path that is not normalised', () => {
      const error = rejection('dso.target', () =>
        parseManagedLabels({ ...ENABLED, 'dso.target': '/run//secrets/./app/' }),
      );
      expect(error.message).toContain('write it as dso.target=/run/secrets/app');
    });
  });

  describe('dso.mode', () => {
    it.each([
      ['0400', 0o400],
      ['400', 0o400],
      ['0o400', 0o400],
      ['0o0400', 0o400],
      ['0440', 0o440],
      ['0777', 0o777],
      ['0', 0],
      ['0000', 0],
      ['644', 0o644],
    ])('reads %j as %o', (mode, expected) => {
      expect(parseManagedLabels({ ...ENABLED, 'dso.mode': mode })?.mode).toBe(expected);
    });

    it.each([
      ['4755', 'sets setuid, setgid or sticky bits'],
      ['2400', 'sets setuid, setgid or sticky bits'],
      ['1777', 'sets setuid, setgid or sticky bits'],
      ['0o1000', 'sets setuid, setgid or sticky bits'],
      ['', 'is not an octal mode'],
      ['8', 'is not an octal mode'],
      ['0489', 'is not an octal mode'],
      ['0x1ff', 'is not an octal mode'],
      ['00400', 'is not an octal mode'],
      ['r--------', 'is not an octal mode'],
      [' 0400', 'is not an octal mode'],
      ['-400', 'is not an octal mode'],
    ])('rejects %j saying it %s', (mode, problem) => {
      const error = rejection('dso.mode', () =>
        parseManagedLabels({ ...ENABLED, 'dso.mode': mode }),
      );
      expect(error.message).toContain(problem);
      expect(error.message).toContain('e.g. dso.mode=0400');
    });
  });

  describe('dso.owner', () => {
    it.each([
      ['1000:2000', { uid: 1000, gid: 2000 }],
      ['0:0', { uid: 0, gid: 0 }],
      ['2147483647:2147483647', { uid: 2_147_483_647, gid: 2_147_483_647 }],
    ])('reads %j', (owner, expected) => {
      expect(parseManagedLabels({ ...ENABLED, 'dso.owner': owner })?.owner).toStrictEqual(expected);
    });

    it('uses the uid as the gid when no gid is given', () => {
      expect(parseManagedLabels({ ...ENABLED, 'dso.owner': '1000' })?.owner).toStrictEqual({
        uid: 1000,
        gid: 1000,
      });
    });

    it('leaves the owner out when the label is absent', () => {
      expect(parseManagedLabels(ENABLED)).not.toHaveProperty('owner');
    });

    it.each([
      ['root', 'is not <uid> or <uid>:<gid>'],
      ['app:app', 'is not <uid> or <uid>:<gid>'],
      ['1000:', 'is not <uid> or <uid>:<gid>'],
      [':1000', 'is not <uid> or <uid>:<gid>'],
      ['-1', 'is not <uid> or <uid>:<gid>'],
      ['1.5', 'is not <uid> or <uid>:<gid>'],
      ['', 'is not <uid> or <uid>:<gid>'],
      ['1000:1000:1000', 'is not <uid> or <uid>:<gid>'],
      ['2147483648', 'has an id above 2147483647'],
      ['0:9999999999', 'has an id above 2147483647'],
    ])('rejects %j saying it %s', (owner, problem) => {
      const error = rejection('dso.owner', () =>
        parseManagedLabels({ ...ENABLED, 'dso.owner': owner }),
      );
      expect(error.message).toContain(problem);
      expect(error.message).toContain('dso.owner=1000:1000');
    });
  });

  describe('dso.file.<name>', () => {
    it('accepts a name of MAX_FILE_NAME_LENGTH (100) characters', () => {
      const name = 'n'.repeat(MAX_FILE_NAME_LENGTH);
      const spec = parseManagedLabels({ ...ENABLED, [`dso.file.${name}`]: 'dsofile://x' });
      expect(spec?.files[0]?.name).toBe(name);
    });

    it.each([
      ['dso.file.', 'has no file name after the prefix'],
      ['dso.file..', 'names a file that is "."'],
      ['dso.file...', 'names a file that starts with ".." (reserved for dso)'],
      ['dso.file...data', 'names a file that starts with ".." (reserved for dso)'],
      ['dso.file.a/b', 'names a file that may only hold A-Z a-z 0-9 . _ -'],
      ['dso.file.a b', 'names a file that may only hold A-Z a-z 0-9 . _ -'],
      [`dso.file.${'n'.repeat(101)}`, 'names a file that is longer than 100 characters'],
    ])('rejects the key %j saying it %s', (key, problem) => {
      const labels = { ...ENABLED, [key]: 'dsofile://app/x' };
      const error = rejection(key, () => parseManagedLabels(labels));
      expect(error.message).toContain(problem);
    });

    it('quotes a label key that holds control characters', () => {
      const key = 'dso.file.a\nb';
      try {
        parseManagedLabels({ ...ENABLED, [key]: 'dsofile://x' });
        expect.unreachable();
      } catch (error) {
        expect(isDsoError(error) && error.message).toContain(
          'label "dso.file.a\\nb" names a file that',
        );
      }
    });

    it('rejects a dso:// reference and suggests the dsofile:// one', () => {
      const error = rejection('dso.file.pw', () =>
        parseManagedLabels({ ...ENABLED, 'dso.file.pw': 'dso://vault:app/db#pw' }),
      );
      expect(error.message).toContain('holds a dso:// reference, but a file needs dsofile://');
      expect(error.message).toContain('write dso.file.pw=dsofile://vault:app/db#pw');
    });

    it('rejects an invalid reference, says why and keeps the reference error as the cause', () => {
      const error = rejection('dso.file.pw', () =>
        parseManagedLabels({ ...ENABLED, 'dso.file.pw': 'dsofile://app//db' }),
      );
      expect(error.message).toContain('"dsofile://app//db"');
      expect(error.message).toContain('path segment 2 of 3 is empty');
      expect(isDsoError(error.cause) && error.cause.code).toBe('DSO_REFERENCE_INVALID');
    });

    it('does not show a value that is not a reference, since it may be the secret itself', () => {
      const canary = 'canary-9d2c-s3cret-value';
      const error = rejection('dso.file.pw', () =>
        parseManagedLabels({ ...ENABLED, 'dso.file.pw': canary }),
      );
      expect(error.message).not.toContain(canary);
      expect(JSON.stringify(error.details)).not.toContain(canary);
      expect(error.message).toContain('does not hold a dsofile:// reference');
      expect(error.message).toContain('dso.file.pw=dsofile://app/db/password');
    });
  });
});

describe('toManagedLabels', () => {
  it('writes every label of the spec, defaults included', () => {
    expect(
      toManagedLabels({
        target: '/run/secrets',
        mode: 0o400,
        owner: { uid: 1000, gid: 1000 },
        files: [
          {
            name: 'db_password',
            reference: { scheme: 'dsofile', path: 'app/db', field: 'password' },
          },
          {
            name: 'tls.key',
            reference: { scheme: 'dsofile', provider: 'vault', path: 'tls', version: '2' },
          },
        ],
      }),
    ).toStrictEqual({
      'dso.enable': 'true',
      'dso.target': '/run/secrets',
      'dso.mode': '0400',
      'dso.owner': '1000:1000',
      'dso.file.db_password': 'dsofile://app/db#password',
      'dso.file.tls.key': 'dsofile://vault:tls@2',
    });
  });

  it('writes modes as four octal digits and leaves out an absent owner', () => {
    const labels = toManagedLabels({ target: '/s', mode: 0o40, files: [] });
    expect(labels).toStrictEqual({ 'dso.enable': 'true', 'dso.target': '/s', 'dso.mode': '0040' });
  });

  it('rejects two files with one name', () => {
    const reference = { scheme: 'dsofile' as const, path: 'x' };
    const error = rejection('dso.file.a', () =>
      toManagedLabels({
        target: '/s',
        mode: 0o400,
        files: [
          { name: 'a', reference },
          { name: 'a', reference },
        ],
      }),
    );
    expect(error.message).toContain('two files are named "a"');
  });

  it.each<[string, string, Partial<ManagedSpec>]>([
    ['a relative target', 'dso.target', { target: 'run' }],
    ['a setuid mode', 'dso.mode', { mode: 0o4755 }],
    ['a negative mode', 'dso.mode', { mode: -1 }],
    ['a fractional mode', 'dso.mode', { mode: 1.5 }],
    ['a negative uid', 'dso.owner', { owner: { uid: -1, gid: 0 } }],
    ['a fractional gid', 'dso.owner', { owner: { uid: 0, gid: 0.5 } }],
    [
      'a file name with a slash',
      'dso.file.a/b',
      { files: [{ name: 'a/b', reference: { scheme: 'dsofile', path: 'x' } }] },
    ],
    [
      'a dso:// reference',
      'dso.file.a',
      { files: [{ name: 'a', reference: { scheme: 'dso', path: 'x' } }] },
    ],
    [
      'an invalid reference',
      'dso.file.a',
      { files: [{ name: 'a', reference: { scheme: 'dsofile', path: 'a:b' } }] },
    ],
  ])('rejects %s', (_, label, change) => {
    rejection(label, () => toManagedLabels({ target: '/s', mode: 0o400, files: [], ...change }));
  });

  it('writes labels that read back as the same spec, by property', () => {
    const segment = fc
      .stringMatching(/^[A-Za-z0-9._-]{1,8}$/)
      .filter((s) => s !== '.' && s !== '..');
    const spec = fc.record(
      {
        target: fc.array(segment, { minLength: 1, maxLength: 4 }).map((s) => `/${s.join('/')}`),
        mode: fc.integer({ min: 0, max: 0o777 }),
        owner: fc
          .record({
            uid: fc.integer({ min: 0, max: 2_147_483_647 }),
            gid: fc.integer({ min: 0, max: 2_147_483_647 }),
          })
          .map((owner) => ({ ...owner })),
        files: fc
          .uniqueArray(
            fc.record({
              name: fc
                .stringMatching(/^[A-Za-z0-9._-]{1,20}$/)
                .filter((s) => s !== '.' && !s.startsWith('..')),
              path: fc.array(segment, { minLength: 1, maxLength: 3 }).map((s) => s.join('/')),
            }),
            { selector: (file) => file.name, maxLength: 6 },
          )
          .map((files) =>
            files
              .map((file) => ({
                name: file.name,
                reference: { scheme: 'dsofile' as const, path: file.path },
              }))
              .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)),
          ),
      },
      { requiredKeys: ['target', 'mode', 'files'] },
    );
    fc.assert(
      fc.property(spec, (generated) => {
        const expected: ManagedSpec = { ...generated, env: [] };
        expect(parseManagedLabels(toManagedLabels(expected))).toStrictEqual(expected);
      }),
      { numRuns: 300 },
    );
  });
});

describe('rotation labels', () => {
  const base = { 'dso.enable': 'true', 'dso.file.db': 'dsofile://app/db' };
  it('reads a policy, its signal and its hook, and writes them back', () => {
    expect(
      parseManagedLabels({ ...base, 'dso.rotate': 'signal', 'dso.rotate.signal': 'HUP' })?.rotation,
    ).toEqual({
      policy: 'signal',
      signal: 'SIGHUP',
    });
    const hooked = parseManagedLabels({
      ...base,
      'dso.rotate': 'hook',
      'dso.rotate.hook': '["/app/reload","--quiet"]',
    });
    expect(hooked?.rotation).toEqual({ policy: 'hook', hook: ['/app/reload', '--quiet'] });
    expect(parseManagedLabels(toManagedLabels(hooked as ManagedSpec))).toEqual(hooked);
    expect(parseManagedLabels(base)?.rotation).toBeUndefined();
  });

  it.each([
    [{ 'dso.rotate': 'reboot' }, /must be one of files, signal, hook, restart/],
    [{ 'dso.rotate.signal': 'HUP' }, /has no effect without dso.rotate/],
    [{ 'dso.rotate': 'files', 'dso.rotate.signal': 'HUP' }, /only with dso.rotate=signal/],
    [{ 'dso.rotate': 'signal', 'dso.rotate.signal': 'hup; rm' }, /not a signal name/],
    [{ 'dso.rotate': 'hook' }, /is required with dso.rotate=hook/],
    [{ 'dso.rotate': 'hook', 'dso.rotate.hook': '/app/reload' }, /JSON list/],
    [{ 'dso.rotate': 'restart', 'dso.rotate.hook': '["x"]' }, /only with dso.rotate=hook/],
  ])('refuses %j', (labels, message) => {
    expect(() => parseManagedLabels({ ...base, ...labels })).toThrow(message);
  });
});
