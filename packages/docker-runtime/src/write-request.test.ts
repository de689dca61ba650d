import { describe, expect, it } from 'vitest';
import { isDockerRuntimeError } from './errors.js';
import { checkFileName, MAX_FILES_PER_WRITE, validateWriteRequest } from './write-request.js';

const bytes = (text: string) => new TextEncoder().encode(text);

function failure(run: () => unknown): { code: string; message: string; field: unknown } {
  try {
    run();
  } catch (error) {
    if (!isDockerRuntimeError(error)) throw error;
    return { code: error.code, message: error.message, field: error.details.field };
  }
  throw new Error('expected a DockerRuntimeError');
}

describe('checkFileName', () => {
  it.each(['db_password', 'a', '.env', 'tls.crt', 'A-Z_0.9', 'x'.repeat(100)])(
    'accepts %s',
    (name) => {
      expect(checkFileName(name)).toBeUndefined();
    },
  );

  it.each([
    ['', 'is empty'],
    ['.', 'is "."'],
    ['..', 'starts with ".."'],
    ['..data', 'starts with ".."'],
    ['..dso_1', 'starts with ".."'],
    ['a/b', 'may only hold'],
    ['a b', 'may only hold'],
    ['a\nb', 'may only hold'],
    ['$(id)', 'may only hold'],
    ['ü', 'may only hold'],
    ['x'.repeat(101), 'longer than 100'],
  ])('rejects %j', (name, reason) => {
    expect(checkFileName(name)).toContain(reason);
  });
});

describe('validateWriteRequest', () => {
  const file = { name: 'a', content: bytes('value') };

  it('defaults mode to 0o400, counts bytes and normalises a trailing slash', () => {
    const valid = validateWriteRequest({
      target: '/run/secrets/',
      files: [file, { name: 'b', content: bytes('xy') }],
    });
    expect(valid).toMatchObject({
      target: '/run/secrets',
      mode: 0o400,
      bytes: 7,
      owner: undefined,
    });
  });

  it.each(['', '0', 'app', '1000:1000', 'app:staff', 'www-data', 'svc.user:grp_1'])(
    'accepts containerUser %j',
    (containerUser) => {
      expect(
        validateWriteRequest({ target: '/run/secrets', files: [file], containerUser })
          .containerUser,
      ).toBe(containerUser);
    },
  );

  it.each([':1', 'a:', 'a b', 'a;id', '$(id)', 'a:b:c', 'x'.repeat(300)])(
    'rejects containerUser %j',
    (containerUser) => {
      expect(
        failure(() =>
          validateWriteRequest({ target: '/run/secrets', files: [file], containerUser }),
        ),
      ).toMatchObject({ code: 'DSO_DOCKER_INVALID_REQUEST', field: 'containerUser' });
    },
  );

  it('accepts an empty set (it removes every file written before)', () => {
    expect(validateWriteRequest({ target: '/run/secrets', files: [] }).bytes).toBe(0);
  });

  it.each([
    'run/secrets',
    '/',
    '/run/../etc',
    '/run/./secrets',
    '/run//secrets',
    '/run/sec rets',
    '',
  ])('rejects target %j with DSO_DOCKER_INVALID_REQUEST', (target) => {
    expect(failure(() => validateWriteRequest({ target, files: [file] }))).toMatchObject({
      code: 'DSO_DOCKER_INVALID_REQUEST',
      field: 'target',
    });
  });

  it('rejects duplicate names', () => {
    expect(
      failure(() => validateWriteRequest({ target: '/run/secrets', files: [file, file] })),
    ).toMatchObject({ field: 'files', message: 'file name a appears twice' });
  });

  it('rejects a reserved name without quoting the content', () => {
    const result = failure(() =>
      validateWriteRequest({
        target: '/run/secrets',
        files: [{ name: '..data', content: bytes('canary-value') }],
      }),
    );
    expect(result.field).toBe('files');
    expect(result.message).not.toContain('canary-value');
  });

  it('rejects content that is not a Uint8Array', () => {
    expect(
      failure(() =>
        validateWriteRequest({
          target: '/run/secrets',
          files: [{ name: 'a', content: 'text' as unknown as Uint8Array }],
        }),
      ).field,
    ).toBe('files');
  });

  it('rejects too many files', () => {
    const files = Array.from({ length: MAX_FILES_PER_WRITE + 1 }, (_, index) => ({
      name: `f${index}`,
      content: bytes(''),
    }));
    expect(failure(() => validateWriteRequest({ target: '/run/secrets', files })).field).toBe(
      'files',
    );
  });

  it.each([-1, 0o1000, 0o4755, 1.5, Number.NaN])('rejects mode %s', (mode) => {
    expect(
      failure(() => validateWriteRequest({ target: '/run/secrets', files: [file], mode })).field,
    ).toBe('mode');
  });

  it.each([
    { uid: -1, gid: 0 },
    { uid: 0, gid: 1.5 },
    { uid: 2 ** 31, gid: 0 },
  ])('rejects owner %j', (owner) => {
    expect(
      failure(() => validateWriteRequest({ target: '/run/secrets', files: [file], owner })).field,
    ).toBe('owner');
  });
});
