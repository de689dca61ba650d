import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  createPrivateFile,
  isPrivateFileError,
  PrivateFileError,
  readPrivateFile,
  writePrivateFile,
} from './private-file.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-private-file-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** The PrivateFileError `promise` rejects with. */
async function refusal(promise: Promise<unknown>): Promise<PrivateFileError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isPrivateFileError(error)) throw new Error(`expected a PrivateFileError, got ${error}`);
  return error;
}

describe('readPrivateFile', () => {
  it('reads a 0600 regular file, following a symlink to it', async () => {
    const path = join(dir, 'key');
    await writeFile(path, 'secret', { mode: 0o600 });
    expect((await readPrivateFile(path, { maxBytes: 16 })).toString()).toBe('secret');
    const link = join(dir, 'link');
    await symlink(path, link);
    expect((await readPrivateFile(link, { maxBytes: 16 })).toString()).toBe('secret');
  });

  it('refuses a missing file as missing, with its errno', async () => {
    const error = await refusal(readPrivateFile(join(dir, 'absent'), { maxBytes: 16 }));
    expect(error).toMatchObject({ problem: 'missing', errno: 'ENOENT', path: join(dir, 'absent') });
  });

  it('refuses a file it cannot open as io, with its errno', async () => {
    // A symlink loop: open fails with ELOOP whoever runs the test (root reads a 0000 file).
    const path = join(dir, 'loop');
    await symlink(path, path);
    const error = await refusal(readPrivateFile(path, { maxBytes: 16 }));
    expect(error).toMatchObject({ problem: 'io', errno: 'ELOOP' });
  });

  it('refuses a directory as not-file', async () => {
    const path = join(dir, 'sub');
    await mkdir(path, { mode: 0o700 });
    expect((await refusal(readPrivateFile(path, { maxBytes: 16 }))).problem).toBe('not-file');
  });

  it('refuses a file group or others may read or write, with its mode', async () => {
    const path = join(dir, 'key');
    await writeFile(path, 'secret', { mode: 0o600 });
    for (const mode of [0o640, 0o604, 0o620, 0o602]) {
      await chmod(path, mode);
      expect(await refusal(readPrivateFile(path, { maxBytes: 16 }))).toMatchObject({
        problem: 'permissions',
        mode,
      });
    }
  });

  it('refuses a file over maxBytes as too-large, with its size, and takes one at the limit', async () => {
    const path = join(dir, 'key');
    await writeFile(path, 'x'.repeat(17), { mode: 0o600 });
    expect(await refusal(readPrivateFile(path, { maxBytes: 16 }))).toMatchObject({
      problem: 'too-large',
      size: 17,
    });
    await writeFile(path, 'x'.repeat(16));
    expect(await readPrivateFile(path, { maxBytes: 16 })).toHaveLength(16);
  });

  it('rejects with the reason when the signal has aborted', async () => {
    const path = join(dir, 'key');
    await writeFile(path, 'secret', { mode: 0o600 });
    await expect(
      readPrivateFile(path, { maxBytes: 16, signal: AbortSignal.abort(new Error('stop')) }),
    ).rejects.toThrow('stop');
  });
});

describe('createPrivateFile', () => {
  it('creates the file with mode 0600 and leaves no temp file', async () => {
    const path = join(dir, 'new.key');
    await createPrivateFile(path, Buffer.from('key'));
    expect(await readFile(path, 'utf8')).toBe('key');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['new.key']);
  });

  it('refuses as exists when anything is there, a dangling symlink too, leaving it alone', async () => {
    const path = join(dir, 'old.key');
    await writeFile(path, 'old', { mode: 0o600 });
    expect((await refusal(createPrivateFile(path, Buffer.from('new')))).problem).toBe('exists');
    expect(await readFile(path, 'utf8')).toBe('old');
    const dangling = join(dir, 'dangling.key');
    await symlink(join(dir, 'nowhere'), dangling);
    expect((await refusal(createPrivateFile(dangling, Buffer.from('new')))).problem).toBe('exists');
    expect((await readdir(dir)).sort()).toEqual(['dangling.key', 'old.key']);
  });

  it('refuses as io, with the errno, when the directory does not exist', async () => {
    const error = await refusal(createPrivateFile(join(dir, 'no', 'such.key'), Buffer.from('k')));
    expect(error).toMatchObject({ problem: 'io', errno: 'ENOENT' });
  });

  it('rejects with the reason, creating nothing, when the signal has aborted', async () => {
    const path = join(dir, 'new.key');
    await expect(
      createPrivateFile(path, Buffer.from('k'), { signal: AbortSignal.abort(new Error('stop')) }),
    ).rejects.toThrow('stop');
    expect(await readdir(dir)).toEqual([]);
  });
});

describe('writePrivateFile', () => {
  it('writes the data with mode 0600 and leaves no temp file', async () => {
    const path = join(dir, 'vault.dso');
    await writePrivateFile(path, Buffer.from('new'));
    expect(await readFile(path, 'utf8')).toBe('new');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['vault.dso']);
  });

  it('replaces an existing file and narrows its mode to 0600', async () => {
    const path = join(dir, 'vault.dso');
    await writeFile(path, 'old', { mode: 0o644 });
    await writePrivateFile(path, Buffer.from('new'));
    expect(await readFile(path, 'utf8')).toBe('new');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('refuses with EEXIST when not overwriting, leaving the file and no temp file', async () => {
    const path = join(dir, 'vault.key');
    await writeFile(path, 'old', { mode: 0o600 });
    await expect(
      writePrivateFile(path, Buffer.from('new'), { overwrite: false }),
    ).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await readFile(path, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['vault.key']);
  });

  it('removes the temp file when putting it in place fails', async () => {
    // A non-empty directory at the target makes the rename fail after the temp file is written.
    const path = join(dir, 'vault.dso');
    await mkdir(path);
    await writeFile(join(path, 'keep'), 'x');
    await expect(writePrivateFile(path, Buffer.from('new'))).rejects.toMatchObject({
      code: expect.stringMatching(/^E/),
    });
    expect(await readdir(dir)).toEqual(['vault.dso']);
  });

  it('does not touch the target when aborted', async () => {
    const path = join(dir, 'vault.dso');
    await writeFile(path, 'old', { mode: 0o600 });
    const controller = new AbortController();
    controller.abort();
    await expect(
      writePrivateFile(path, Buffer.from('new'), { signal: controller.signal }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(await readFile(path, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['vault.dso']);
  });
});

describe('isPrivateFileError', () => {
  it('recognises the error by its brand, not its class', () => {
    const error = new PrivateFileError('exists', '/k');
    expect(isPrivateFileError(error)).toBe(true);
    expect(isPrivateFileError(Object.assign(new Error('x'), { problem: 'exists' }))).toBe(false);
    expect(isPrivateFileError(undefined)).toBe(false);
  });
});
