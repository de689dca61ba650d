import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openAuditFile } from './audit-file.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dso-audit-file-'));
  dirs.push(dir);
  return dir;
}

describe('openAuditFile', () => {
  it('appends 0600 in a folder it creates 0700', async () => {
    const path = join(tempDir(), 'state', 'audit.jsonl');
    const file = await openAuditFile(path);
    file.sink.write('one\n');
    await file.close();
    await file.close();
    expect(readFileSync(path, 'utf8')).toBe('one\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(path, '..')).mode & 0o777).toBe(0o700);
  });

  it('starts a new file after logrotate moved the old one, losing no line', async () => {
    const path = join(tempDir(), 'audit.jsonl');
    const file = await openAuditFile(path);
    for (let i = 0; i < 100; i += 1) file.sink.write(`before ${i}\n`);
    renameSync(path, `${path}.1`);
    file.sink.write('still old\n'); // the old file until the reopen
    await file.reopen();
    file.sink.write('after\n');
    await file.close();
    const old = readFileSync(`${path}.1`, 'utf8').split('\n').filter(Boolean);
    expect(old).toHaveLength(101);
    expect(old.at(-1)).toBe('still old');
    expect(readFileSync(path, 'utf8')).toBe('after\n');
  });

  it('keeps writing the previous file when the path cannot be opened again', async () => {
    const path = join(tempDir(), 'audit.jsonl');
    const file = await openAuditFile(path);
    renameSync(path, `${path}.1`);
    mkdirSync(path); // something that is not a file took the path
    await expect(file.reopen()).rejects.toMatchObject({ code: 'DSO_AGENT_AUDIT_UNAVAILABLE' });
    file.sink.write('kept\n');
    await file.close();
    expect(readFileSync(`${path}.1`, 'utf8')).toBe('kept\n');
  });

  it('refuses a path it cannot open, with the fix', async () => {
    const dir = tempDir();
    await expect(openAuditFile(dir)).rejects.toMatchObject({
      code: 'DSO_AGENT_AUDIT_UNAVAILABLE',
      message: expect.stringContaining('audit.enabled: false'),
    });
  });
});

describe('openAuditFile: rotation by size', () => {
  it('moves the file to .1, .2 … past maxFileBytes, keeps maxFiles and loses no line', async () => {
    const path = join(tempDir(), 'audit.jsonl');
    const file = await openAuditFile(path, { maxFileBytes: 100, maxFiles: 2 });
    const line = (i: number) => `${String(i).padStart(9, '0')}\n`; // 10 bytes
    for (let i = 0; i < 45; i += 1) file.sink.write(line(i));
    await file.close();
    const read = (p: string) => readFileSync(p, 'utf8').split('\n').filter(Boolean);
    // 45 lines of 10 bytes, 10 a file: the current holds the last 5, .1 and .2 the 20 before.
    expect(read(path)).toHaveLength(5);
    expect(read(`${path}.1`)).toEqual(Array.from({ length: 10 }, (_, i) => line(30 + i).trim()));
    expect(read(`${path}.2`)).toHaveLength(10);
    expect(existsSync(`${path}.3`)).toBe(false);
    expect(statSync(`${path}.1`).mode & 0o777).toBe(0o600);
  });

  it('counts what the file already held when it was opened', async () => {
    const path = join(tempDir(), 'audit.jsonl');
    writeFileSync(path, 'x'.repeat(95), { mode: 0o600 });
    const file = await openAuditFile(path, { maxFileBytes: 100, maxFiles: 1 });
    file.sink.write('0123456789\n');
    await file.close();
    expect(readFileSync(`${path}.1`, 'utf8')).toBe('x'.repeat(95));
    expect(readFileSync(path, 'utf8')).toBe('0123456789\n');
  });
});
