import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { errnoOf, SafeDir } from './safe-dir.js';

let base: string;
/** A folder outside every SafeDir of a test: what an attacker's links point at. */
let victim: string;

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), 'dso-safe-dir-'));
  victim = join(base, 'victim');
  mkdirSync(join(victim, 'sub'), { recursive: true });
  writeFileSync(join(victim, 'keep'), 'victim data', { mode: 0o644 });
  writeFileSync(join(victim, 'sub', 'deep'), 'deep data', { mode: 0o600 });
  chmodSync(victim, 0o751);
});

afterEach(() => {
  rmSync(base, { recursive: true, force: true });
});

/** The victim's entries, modes and contents: what no operation may change. */
function victimState(): string[] {
  const out: string[] = [];
  const walk = (path: string) => {
    const stats = lstatSync(path);
    out.push(`${path} ${(stats.mode & 0o7777).toString(8)}`);
    if (stats.isDirectory()) for (const name of readdirSync(path).sort()) walk(join(path, name));
    else out.push(readFileSync(path, 'utf8'));
  };
  walk(victim);
  return out;
}

function errno(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return errnoOf(error);
  }
  throw new Error('expected a failure');
}

function folder(): string {
  const path = join(base, 'folder');
  mkdirSync(path);
  return path;
}

describe('SafeDir', () => {
  it('refuses to open a symlink, at the top and as a child (ELOOP or ENOTDIR), and a file (ENOTDIR)', () => {
    const path = folder();
    symlinkSync(victim, join(base, 'link'));
    writeFileSync(join(path, 'file'), 'x');
    symlinkSync(victim, join(path, 'child'));
    expect(['ELOOP', 'ENOTDIR']).toContain(errno(() => SafeDir.open(join(base, 'link'))));
    const dir = SafeDir.open(path);
    try {
      expect(['ELOOP', 'ENOTDIR']).toContain(errno(() => dir.openDir('child')));
      expect(errno(() => dir.openDir('file'))).toBe('ENOTDIR');
    } finally {
      dir.close();
    }
  });

  it('refuses a directory that is not the one opened before (EXDEV)', () => {
    const path = folder();
    const first = SafeDir.open(path);
    first.close();
    renameSync(path, join(base, 'moved'));
    mkdirSync(path);
    expect(errno(() => SafeDir.open(path, { dev: first.dev, ino: first.ino }))).toBe('EXDEV');
    SafeDir.open(join(base, 'moved'), { dev: first.dev, ino: first.ino }).close();
  });

  it('keeps acting on the directory it opened after it is renamed and replaced by a symlink', () => {
    const path = folder();
    const before = victimState();
    const dir = SafeDir.open(path);
    try {
      renameSync(path, join(base, 'moved'));
      symlinkSync(victim, path);
      dir.createFile('new', new TextEncoder().encode('x'), 0o400);
      dir.symlink('..data/new', 'link');
      dir.mkdir('..dso_1', 0o700);
      dir.rename('link', 'renamed');
      dir.unlink('renamed');
      dir.chmod(0o700);
      expect(readdirSync(join(base, 'moved')).sort()).toEqual(['..dso_1', 'new']);
      expect(statSync(join(base, 'moved')).mode & 0o777).toBe(0o700);
    } finally {
      dir.close();
    }
    expect(victimState()).toEqual(before);
  });

  it('never creates a file through a planted symlink (EEXIST) or writes into an existing file', () => {
    const path = folder();
    symlinkSync(join(victim, 'keep'), join(path, 'a'));
    symlinkSync(join(victim, 'absent'), join(path, 'b'));
    writeFileSync(join(path, 'c'), 'theirs');
    const before = victimState();
    const dir = SafeDir.open(path);
    try {
      for (const name of ['a', 'b', 'c']) {
        expect(errno(() => dir.createFile(name, new TextEncoder().encode('x'), 0o400))).toBe(
          'EEXIST',
        );
      }
      expect(errno(() => dir.mkdir('a', 0o700))).toBe('EEXIST');
      expect(errno(() => dir.symlink('x', 'a'))).toBe('EEXIST');
    } finally {
      dir.close();
    }
    expect(victimState()).toEqual(before);
    expect(existsSync(join(victim, 'absent'))).toBe(false);
    expect(readFileSync(join(path, 'c'), 'utf8')).toBe('theirs');
  });

  it('removes a tree with links planted at every level as links, never following one', () => {
    const path = folder();
    const before = victimState();
    mkdirSync(join(path, 'tree', 'a', 'b'), { recursive: true });
    writeFileSync(join(path, 'tree', 'a', 'file'), 'ours');
    symlinkSync(victim, join(path, 'tree', 'to-dir'));
    symlinkSync(join(victim, 'keep'), join(path, 'tree', 'a', 'to-file'));
    symlinkSync(victim, join(path, 'tree', 'a', 'b', 'to-dir'));
    // Sealed like DSO's version directories: removed through its descriptor, made writable.
    chmodSync(join(path, 'tree', 'a'), 0o555);
    symlinkSync(victim, join(path, 'top-link'));
    const dir = SafeDir.open(path);
    try {
      expect(dir.removeTree('tree')).toEqual({ unexpected: 3 });
      expect(dir.removeTree('top-link')).toEqual({ unexpected: 1 });
      expect(dir.removeTree('missing')).toEqual({ unexpected: 0 });
    } finally {
      dir.close();
    }
    expect(readdirSync(path)).toEqual([]);
    expect(victimState()).toEqual(before);
  });

  it('refuses a tree nested deeper than DSO writes, removing nothing outside', () => {
    const path = folder();
    mkdirSync(join(path, 't', '1', '2', '3', '4', '5', '6', '7', '8', '9'), { recursive: true });
    const dir = SafeDir.open(path);
    try {
      expect(errno(() => dir.removeTree('t'))).toBe('ELOOP');
    } finally {
      dir.close();
    }
  });

  it('lists, stats and reads links of its own entries only, without following them', () => {
    const path = folder();
    symlinkSync(victim, join(path, 'link'));
    writeFileSync(join(path, 'file'), 'x');
    const dir = SafeDir.open(path);
    try {
      expect(
        dir
          .list()
          .map((entry) => `${entry.name}:${entry.isSymbolicLink()}`)
          .sort(),
      ).toEqual(['file:false', 'link:true']);
      expect(dir.lstat('link')?.isSymbolicLink()).toBe(true);
      expect(dir.lstat('missing')).toBeUndefined();
      expect(dir.readlink('link')).toBe(victim);
      expect(dir.readlink('file')).toBeUndefined();
    } finally {
      dir.close();
    }
  });

  it.each([[''], ['.'], ['..'], ['a/b'], ['a\0b']])('rejects the entry name %j', (name) => {
    const dir = SafeDir.open(folder());
    try {
      expect(() => dir.unlink(name)).toThrow(TypeError);
    } finally {
      dir.close();
    }
  });

  it('refuses any use after close', () => {
    const dir = SafeDir.open(folder());
    dir.close();
    dir.close();
    expect(() => dir.list()).toThrow(TypeError);
  });
});
