import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WAIT_FOR_SECRETS_EXIT_CODE, waitForSecretsCommand } from './wait-for-secrets.js';

const run = promisify(execFile);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-wait-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('waitForSecretsCommand', () => {
  it('runs the command once ..data exists, with its arguments intact', async () => {
    const target = join(dir, 'ready');
    await mkdir(join(target, '..dso_1'), { recursive: true });
    await symlink('..dso_1', join(target, '..data'));
    const [command, ...args] = waitForSecretsCommand(target, ['echo', 'a b', '$HOME', "it's"]);
    const { stdout } = await run(command as string, args);
    expect(stdout).toBe("a b $HOME it's\n");
  });

  it('waits for ..data to appear', async () => {
    const target = join(dir, 'later');
    await mkdir(target);
    const [command, ...args] = waitForSecretsCommand(target, ['echo', 'started']);
    const started = Date.now();
    const pending = run(command as string, args);
    setTimeout(() => void symlink('.', join(target, '..data')), 300);
    expect((await pending).stdout).toBe('started\n');
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
  });

  it('exits 70 with a message instead of starting without its files', async () => {
    const [command, ...args] = waitForSecretsCommand(join(dir, 'never'), ['echo', 'no'], {
      timeoutMs: 200,
    });
    const failure = await run(command as string, args).catch((error: unknown) => error);
    expect(failure).toMatchObject({ code: WAIT_FOR_SECRETS_EXIT_CODE });
    expect((failure as { stderr: string }).stderr).toContain('did not arrive');
    expect((failure as { stdout: string }).stdout).toBe('');
  });

  it('interpolates neither the target nor the command into the script', () => {
    const argv = waitForSecretsCommand('/run/secrets', ['x;rm -rf /']);
    expect(argv[2]).not.toContain('/run/secrets');
    expect(argv[2]).not.toContain('rm -rf');
    expect(argv.slice(3)).toEqual(['/run/secrets', 'x;rm -rf /']);
  });

  it.each([
    ['relative', 'run/secrets', ['x'], {}],
    ['no command', '/run/secrets', [], {}],
    ['a tiny timeout', '/run/secrets', ['x'], { timeoutMs: 1 }],
  ])('refuses %s', (_what, target, command, options) => {
    expect(() => waitForSecretsCommand(target, command, options)).toThrow(
      expect.objectContaining({ code: 'DSO_WAIT_INVALID' }),
    );
  });
});
