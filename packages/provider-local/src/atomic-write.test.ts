import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { writeFileAtomic } from './atomic-write.js';

let dir: string;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-atomic-'));
});

afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('writeFileAtomic', () => {
  it('writes the data with mode 0600 and leaves no temp file', async () => {
    const path = join(dir, 'vault.dso');
    await writeFileAtomic(path, Buffer.from('new'));
    expect(await readFile(path, 'utf8')).toBe('new');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    expect(await readdir(dir)).toEqual(['vault.dso']);
  });

  it('replaces an existing file and narrows its mode to 0600', async () => {
    const path = join(dir, 'vault.dso');
    await writeFile(path, 'old', { mode: 0o644 });
    await writeFileAtomic(path, Buffer.from('new'));
    expect(await readFile(path, 'utf8')).toBe('new');
    expect((await stat(path)).mode & 0o777).toBe(0o600);
  });

  it('refuses with EEXIST when not overwriting, leaving the file and no temp file', async () => {
    const path = join(dir, 'vault.key');
    await writeFile(path, 'old', { mode: 0o600 });
    await expect(
      writeFileAtomic(path, Buffer.from('new'), { overwrite: false }),
    ).rejects.toMatchObject({ code: 'EEXIST' });
    expect(await readFile(path, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['vault.key']);
  });

  it('removes the temp file when putting it in place fails', async () => {
    // A non-empty directory at the target makes the rename fail after the temp file is written.
    const path = join(dir, 'vault.dso');
    await mkdir(path);
    await writeFile(join(path, 'keep'), 'x');
    await expect(writeFileAtomic(path, Buffer.from('new'))).rejects.toMatchObject({
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
      writeFileAtomic(path, Buffer.from('new'), { signal: controller.signal }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    expect(await readFile(path, 'utf8')).toBe('old');
    expect(await readdir(dir)).toEqual(['vault.dso']);
  });
});
