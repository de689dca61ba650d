import { describe, expect, it } from 'vitest';
import {
  interpretOwnerWriteExit,
  interpretWriteExit,
  ownerToWriteAs,
  WRITE_EXIT,
  WRITE_SCRIPT,
} from './write-script.js';

const base = { containerId: 'c0ffee', target: '/run/secrets', stdout: '', stderr: '' };

describe('interpretWriteExit', () => {
  it('is undefined for exit code 0', () => {
    expect(interpretWriteExit({ ...base, exitCode: 0 })).toBeUndefined();
  });

  it.each([
    [WRITE_EXIT.targetNotTmpfs, 'DSO_DOCKER_TARGET_NOT_TMPFS'],
    [WRITE_EXIT.noTar, 'DSO_DOCKER_NO_TAR'],
    [WRITE_EXIT.targetConflict, 'DSO_DOCKER_TARGET_CONFLICT'],
    [WRITE_EXIT.userUnresolved, 'DSO_DOCKER_USER_UNRESOLVED'],
    [WRITE_EXIT.busy, 'DSO_DOCKER_TARGET_BUSY'],
    [WRITE_EXIT.missingTool, 'DSO_DOCKER_MISSING_TOOL'],
    [WRITE_EXIT.tampered, 'DSO_DOCKER_TARGET_TAMPERED'],
    [WRITE_EXIT.targetReadOnly, 'DSO_DOCKER_TARGET_READ_ONLY'],
    [WRITE_EXIT.targetNotWritable, 'DSO_DOCKER_TARGET_NOT_WRITABLE'],
    [WRITE_EXIT.noCapChown, 'DSO_DOCKER_NO_CAP_CHOWN'],
    [WRITE_EXIT.stagingFailed, 'DSO_DOCKER_EXEC_FAILED'],
    [WRITE_EXIT.commitFailed, 'DSO_DOCKER_EXEC_FAILED'],
    [WRITE_EXIT.usage, 'DSO_DOCKER_EXEC_FAILED'],
    [1, 'DSO_DOCKER_EXEC_FAILED'],
    [137, 'DSO_DOCKER_EXEC_FAILED'],
    [126, 'DSO_DOCKER_NO_SHELL'],
    [127, 'DSO_DOCKER_NO_SHELL'],
  ])('maps exit code %i to %s with the exit code and container in details', (exitCode, code) => {
    const error = interpretWriteExit({ ...base, exitCode });
    expect(error?.code).toBe(code);
    expect(error?.details).toMatchObject({
      exitCode,
      containerId: 'c0ffee',
      target: '/run/secrets',
    });
  });

  it('says how to fix a target that is not a tmpfs', () => {
    expect(interpretWriteExit({ ...base, exitCode: WRITE_EXIT.targetNotTmpfs })?.message).toBe(
      '/run/secrets in container c0ffee is not a tmpfs: add --tmpfs /run/secrets (docker run) or a ' +
        'tmpfs mount (compose) so secret files stay in memory',
    );
  });

  it('names the stage and the script reason, and says the previous set is unchanged', () => {
    const error = interpretWriteExit({
      ...base,
      exitCode: WRITE_EXIT.stagingFailed,
      stderr: 'tar: write error: No space left on device\ndso: extracting the archive failed\n',
    });
    expect(error?.details.stage).toBe('staging');
    expect(error?.message).toContain('(extracting the archive failed)');
    expect(error?.message).toContain('previous set is unchanged');
  });

  it.each([
    [WRITE_EXIT.tampered, 'something in the container planted it', 'remove it'],
    [WRITE_EXIT.targetReadOnly, 'read-only', 'volume-driver=dso'],
    [WRITE_EXIT.targetNotWritable, 'CAP_DAC_OVERRIDE', 'volume-driver=dso'],
    [WRITE_EXIT.noCapChown, 'CAP_CHOWN', 'volume-driver=dso'],
  ])(
    'does not retry exit code %i, what the container lacks cannot pass on its own; it says %s and what works instead',
    (exitCode, what, fix) => {
      const error = interpretWriteExit({
        ...base,
        exitCode,
        stderr:
          'dso: /run/secrets/..lock is held by process 7, which is not a dso write: something in the container planted it\n',
      });
      expect(error?.retryable).toBe(false);
      expect(error?.message).toContain(what);
      expect(error?.message).toContain(fix);
    },
  );

  it('retries a busy target: a write the runtime gave up on may still be running', () => {
    expect(interpretWriteExit({ ...base, exitCode: WRITE_EXIT.busy })?.retryable).toBe(true);
  });

  it('names the planted lock in the tampering error', () => {
    const error = interpretWriteExit({
      ...base,
      exitCode: WRITE_EXIT.tampered,
      stderr:
        'dso: /run/secrets/..lock is not a lock dso made (a symlink or a file): something in the container planted it\n',
    });
    expect(error?.details.path).toBe('/run/secrets/..lock');
    expect(error?.message).toContain('/run/secrets/..lock is not a lock dso made (a symlink');
  });

  it('keeps at most 4 KiB of stderr in details', () => {
    const error = interpretWriteExit({ ...base, exitCode: 1, stderr: 'e'.repeat(10_000) });
    expect(String(error?.details.stderr).length).toBe(4096);
  });
});

describe('ownerToWriteAs', () => {
  it('reads the owner the script resolved when root had no CAP_CHOWN', () => {
    expect(ownerToWriteAs({ exitCode: WRITE_EXIT.noCapChown, stdout: 'owner=1000:1000\n' })).toBe(
      '1000:1000',
    );
  });

  it('reads it when root could not write the tmpfs for another owner (no CAP_DAC_OVERRIDE)', () => {
    expect(
      ownerToWriteAs({ exitCode: WRITE_EXIT.targetNotWritable, stdout: 'owner=1000:1000\n' }),
    ).toBe('1000:1000');
    expect(ownerToWriteAs({ exitCode: WRITE_EXIT.targetNotWritable, stdout: '' })).toBeUndefined();
  });

  it.each([
    ['another exit code', WRITE_EXIT.stagingFailed, 'owner=1000:1000\n'],
    ['no owner line', WRITE_EXIT.noCapChown, ''],
    ['a name, not numbers', WRITE_EXIT.noCapChown, 'owner=app:app\n'],
    ['an id out of range', WRITE_EXIT.noCapChown, 'owner=4294967296:0\n'],
    ['extra text on the line', WRITE_EXIT.noCapChown, 'owner=1000:1000 root\n'],
  ])('is undefined for %s', (_what, exitCode, stdout) => {
    expect(ownerToWriteAs({ exitCode, stdout })).toBeUndefined();
  });
});

describe('interpretOwnerWriteExit', () => {
  it('reports an owner that cannot write the target as the missing CAP_CHOWN, with both ways out', () => {
    const error = interpretOwnerWriteExit(
      {
        ...base,
        exitCode: WRITE_EXIT.targetNotWritable,
        stderr: 'dso: user 1000 cannot create entries in /run/secrets\n',
      },
      '1000:1000',
      WRITE_EXIT.noCapChown,
    );
    expect(error?.code).toBe('DSO_DOCKER_NO_CAP_CHOWN');
    expect(error?.retryable).toBe(false);
    expect(error?.details).toMatchObject({ writeAs: '1000:1000', exitCode: 91 });
    expect(error?.message).toContain('--cap-add CHOWN');
    expect(error?.message).toContain('--tmpfs /run/secrets:uid=1000');
  });

  it('reports neither root nor the owner writing the tmpfs as the missing CAP_DAC_OVERRIDE', () => {
    const error = interpretOwnerWriteExit(
      { ...base, exitCode: WRITE_EXIT.targetNotWritable },
      '1000:1000',
      WRITE_EXIT.targetNotWritable,
    );
    expect(error?.code).toBe('DSO_DOCKER_TARGET_NOT_WRITABLE');
    expect(error?.retryable).toBe(false);
    expect(error?.message).toContain('CAP_DAC_OVERRIDE');
    expect(error?.message).toContain('owner 1000:1000 cannot write it either');
    expect(error?.message).toContain('volume-driver=dso');
  });

  it('passes success and other failures through', () => {
    const first = WRITE_EXIT.noCapChown;
    expect(interpretOwnerWriteExit({ ...base, exitCode: 0 }, '1000:1000', first)).toBeUndefined();
    expect(
      interpretOwnerWriteExit({ ...base, exitCode: WRITE_EXIT.tampered }, '1000:1000', first)?.code,
    ).toBe('DSO_DOCKER_TARGET_TAMPERED');
  });
});

describe('WRITE_SCRIPT', () => {
  it('uses only exit codes from WRITE_EXIT besides 0', () => {
    const codes = new Set(
      [...WRITE_SCRIPT.matchAll(/(?:fail|unstage|exit) "?(\d+)/g)].map((match) => Number(match[1])),
    );
    const known = new Set<number>([0, ...Object.values(WRITE_EXIT)]);
    expect([...codes].filter((code) => !known.has(code))).toEqual([]);
  });

  it('interpolates nothing: every value reaches it as a positional argument', () => {
    // A JS template hole would put request data into the script text, and so into argv.
    expect(WRITE_SCRIPT).not.toMatch(/\$\{(?!fs:|owner%|owner#|pgid:|f##)/);
  });
});
