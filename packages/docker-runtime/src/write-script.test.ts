import { describe, expect, it } from 'vitest';
import { interpretWriteExit, WRITE_EXIT, WRITE_SCRIPT } from './write-script.js';

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

  it('keeps at most 4 KiB of stderr in details', () => {
    const error = interpretWriteExit({ ...base, exitCode: 1, stderr: 'e'.repeat(10_000) });
    expect(String(error?.details.stderr).length).toBe(4096);
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
