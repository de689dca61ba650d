import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
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
