import { describe, expect, it } from 'vitest';
import { parseVolumeOptions, VOLUME_DEFAULT_MODE } from './labels.js';

const CANARY = 'canary-volume-option-77c1';

describe('parseVolumeOptions', () => {
  it('reads one file per option, sorted, with the default mode and owner', () => {
    const spec = parseVolumeOptions({
      token: 'dsofile://vault:app/cfg#token',
      db_password: 'dsofile://app/db',
    });
    expect(
      spec.files.map((file) => [file.name, file.reference.path, file.reference.provider]),
    ).toEqual([
      ['db_password', 'app/db', undefined],
      ['token', 'app/cfg', 'vault'],
    ]);
    expect(spec.mode).toBe(VOLUME_DEFAULT_MODE);
    expect(spec.owner).toEqual({ uid: 0, gid: 0 });
  });

  it('takes dso.mode and dso.owner', () => {
    const spec = parseVolumeOptions({ a: 'dsofile://x', 'dso.mode': '0440', 'dso.owner': '0:33' });
    expect(spec.mode).toBe(0o440);
    expect(spec.owner).toEqual({ uid: 0, gid: 33 });
  });

  it.each([
    [
      { a: CANARY },
      /volume option a does not hold a dsofile:\/\/ reference \(its value is not shown\)/,
    ],
    [
      { a: 'dso://app/db' },
      /volume option a holds a dso:\/\/ reference, but a file needs dsofile:\/\//,
    ],
    [{ '../x': 'dsofile://a' }, /volume option \.\.\/x names a file that/],
    [{ a: 'dsofile://a', 'dso.mode': '999' }, /volume option dso\.mode "999" is not an octal mode/],
    [
      { a: 'dsofile://a', 'dso.owner': 'www' },
      /volume option dso\.owner "www" is not <uid> or <uid>:<gid>/,
    ],
    [
      { a: 'dsofile://a', 'dso.rotate': 'signal' },
      /volume option dso\.rotate is not a DSO volume setting/,
    ],
    [
      { a: 'dsofile://a', 'dso.mdoe': '0440' },
      /volume option dso\.mdoe is not a DSO volume setting; did you mean dso\.mode\?/,
    ],
    [
      { a: 'dsofile://a', db: 'dsofile:/app/db' },
      /volume option db holds "dsofile:\/app\/db", which is not a dsofile:\/\/ reference; did you mean db=dsofile:\/\/app\/db\?/,
    ],
    [{}, /names no file/],
    [{ a: 7 }, /volume option a is not text/],
  ])('refuses %j with DSO_VOLUME_OPTION_INVALID naming the option', (options, message) => {
    let error: unknown;
    try {
      parseVolumeOptions(options as Record<string, unknown>);
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({
      code: 'DSO_VOLUME_OPTION_INVALID',
      message: expect.stringMatching(message),
    });
    expect(String((error as Error).message)).not.toContain(CANARY);
  });
});
