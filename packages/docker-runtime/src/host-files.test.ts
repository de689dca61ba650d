import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import {
  chmodSync,
  chownSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  renameSync,
  rmSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type DockerRuntimeError, isDockerRuntimeError } from './errors.js';
import {
  createHostSecretDirs,
  createHostSecretDirsWithFaults,
  type HostSecretDirs,
  type HostWriteStep,
  TMPFS_MAGIC,
} from './host-files.js';

const isRoot = process.getuid?.() === 0;
/** As root (here and in CI) a tmpfs of our own, with a size we know; else a dir in /dev/shm. */
let base: string;
let mounted = false;
const CANARY = `CANARY-${randomUUID()}`;
const text = (value: string) => new TextEncoder().encode(value);
/** A foreign owner as root; as anyone else, the only owner chown allows. */
const owner = isRoot
  ? { uid: 1000, gid: 1000 }
  : { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
const processOwner = `${process.getuid?.()}:${process.getgid?.()}`;

beforeAll(() => {
  if (isRoot) {
    base = mkdtempSync(join(tmpdir(), 'dso-host-files-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=0755', 'tmpfs', base]);
    mounted = true;
  } else {
    base = mkdtempSync('/dev/shm/dso-host-files-');
  }
});

afterAll(() => {
  if (mounted) execFileSync('umount', [base]);
  rmSync(base, { recursive: true, force: true });
});

function freshDirs(): HostSecretDirs {
  return createHostSecretDirs({ root: join(base, randomUUID()) });
}

/** A new key's files, each holding the canary, so every error below can be checked for it. */
function canaryFiles(names: string[], tag = 'v1') {
  return names.map((name) => ({ name, content: text(`${CANARY}:${tag}:${name}`) }));
}

function failure(run: () => unknown): DockerRuntimeError {
  try {
    run();
  } catch (error) {
    if (!isDockerRuntimeError(error)) throw error;
    // No error may carry a secret value, in its message, its facts or its cause.
    const cause = (error as { cause?: unknown }).cause;
    expect(error.message).not.toContain(CANARY);
    expect(JSON.stringify(error.details)).not.toContain(CANARY);
    expect(String(cause ?? '')).not.toContain(CANARY);
    expect(String(error.stack)).not.toContain(CANARY);
    return error;
  }
  throw new Error('expected a DockerRuntimeError');
}

/** Every entry under `dir`, recursively: type, mode, owner, link target and bytes. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (path: string, prefix: string) => {
    for (const name of readdirSync(path).sort()) {
      const full = join(path, name);
      const stats = lstatSync(full);
      const meta = `${(stats.mode & 0o7777).toString(8)} ${stats.uid}:${stats.gid}`;
      if (stats.isSymbolicLink()) out[prefix + name] = `link ${readlinkSync(full)}`;
      else if (stats.isDirectory()) {
        out[prefix + name] = `dir ${meta}`;
        walk(full, `${prefix}${name}/`);
      } else
        out[prefix + name] =
          `file ${meta} ${readFileSync(full).toString('base64')} ino=${stats.ino}`;
    }
  };
  walk(dir, '');
  return out;
}

describe('createHostSecretDirs', () => {
  it('creates a missing root with mode 0700, owned by the agent, on a tmpfs', () => {
    const root = join(base, randomUUID(), 'nested');
    const dirs = createHostSecretDirs({ root: `${root}/` });
    expect(dirs.root).toBe(root);
    expect(lstatSync(root).mode & 0o777).toBe(0o700);
    expect(lstatSync(root).uid).toBe(process.geteuid?.());
    expect(dirs.keys()).toEqual([]);
  });

  it('refuses a root that is not on a tmpfs with DSO_DOCKER_HOST_PATH_NOT_TMPFS and the fix', () => {
    const parent = statfsSync(tmpdir()).type === TMPFS_MAGIC ? process.cwd() : tmpdir();
    const disk = mkdtempSync(join(parent, 'dso-not-tmpfs-'));
    try {
      expect(statfsSync(disk).type).not.toBe(TMPFS_MAGIC);
      const root = join(disk, 'secrets');
      const error = failure(() => createHostSecretDirs({ root }));
      expect(error.code).toBe('DSO_DOCKER_HOST_PATH_NOT_TMPFS');
      expect(error.message).toContain(`mount -t tmpfs -o mode=0700,size=16m tmpfs ${root}`);
      expect(error.message).toContain('/dev/shm');
      expect(readdirSync(root)).toEqual([]);
    } finally {
      rmSync(disk, { recursive: true, force: true });
    }
  });

  it.each([['relative/path'], [''], [42]])('rejects the root %j', (root) => {
    const error = failure(() => createHostSecretDirs({ root: root as string }));
    expect(error.code).toBe('DSO_DOCKER_INVALID_REQUEST');
    expect(error.details.field).toBe('root');
  });
});

describe('HostSecretDirs.write', () => {
  it('lays files out as the exec path does: version dir, ..data link, relative name links', () => {
    const dirs = freshDirs();
    const result = dirs.write('web-1', {
      files: [
        { name: 'db_password', content: text('p@ss word\n') },
        { name: '.env', content: text('A=1\n') },
        { name: 'tls.key', content: text('key') },
      ],
      owner,
    });
    const dir = join(dirs.root, 'web-1');
    expect(result).toMatchObject({ path: dir, files: 3, bytes: 17 });
    expect(result.generation).toMatch(/^\d+_[0-9a-f]{12}$/);
    expect(result.durationMs).toBeGreaterThan(0);
    const version = `..dso_${result.generation}`;
    const o = `${owner.uid}:${owner.gid}`;
    expect(snapshot(dir)).toEqual({
      '.env': 'link ..data/.env',
      '..data': `link ${version}`,
      [version]: `dir 555 ${processOwner}`,
      [`${version}/.env`]: expect.stringMatching(
        new RegExp(`^file 400 ${o} ${btoa('A=1\n')} ino=`),
      ),
      [`${version}/db_password`]: expect.stringMatching(
        new RegExp(`^file 400 ${o} ${btoa('p@ss word\n')} ino=`),
      ),
      [`${version}/tls.key`]: expect.stringMatching(new RegExp(`^file 400 ${o} ${btoa('key')} `)),
      db_password: 'link ..data/db_password',
      'tls.key': 'link ..data/tls.key',
    });
    expect(lstatSync(dir).mode & 0o7777).toBe(0o755);
    expect(readFileSync(join(dir, 'db_password'), 'utf8')).toBe('p@ss word\n');
  });

  it('sets the requested mode and owner on every file', () => {
    const dirs = freshDirs();
    const other = isRoot ? { uid: 1234, gid: 5678 } : owner;
    const { generation } = dirs.write('svc', {
      files: canaryFiles(['a', 'b']),
      mode: 0o440,
      owner: other,
    });
    for (const name of ['a', 'b']) {
      const stats = lstatSync(join(dirs.pathOf('svc'), `..dso_${generation}`, name));
      expect(stats.isFile()).toBe(true);
      expect(stats.mode & 0o7777).toBe(0o440);
      expect([stats.uid, stats.gid]).toEqual([other.uid, other.gid]);
    }
  });

  it('replaces the whole set: adds new names, removes dropped ones, keeps one version dir', () => {
    const dirs = freshDirs();
    dirs.write('k', { files: canaryFiles(['a', 'b']), owner });
    const second = dirs.write('k', {
      files: [
        { name: 'b', content: text('new-b') },
        { name: 'c', content: text('new-c') },
      ],
      owner,
    });
    const dir = dirs.pathOf('k');
    expect(readdirSync(dir).sort()).toEqual(['..data', `..dso_${second.generation}`, 'b', 'c']);
    expect(readFileSync(join(dir, 'b'), 'utf8')).toBe('new-b');
    expect(readFileSync(join(dir, 'c'), 'utf8')).toBe('new-c');
    expect(readlinkSync(join(dir, '..data'))).toBe(`..dso_${second.generation}`);
  });

  it('writes an empty set: every name goes, ..data points at an empty version dir', () => {
    const dirs = freshDirs();
    dirs.write('k', { files: canaryFiles(['a', 'b']), owner });
    const result = dirs.write('k', { files: [], owner });
    const dir = dirs.pathOf('k');
    expect(result).toMatchObject({ files: 0, bytes: 0 });
    expect(readdirSync(dir).sort()).toEqual(['..data', `..dso_${result.generation}`]);
    expect(readdirSync(join(dir, '..data'))).toEqual([]);
  });

  it('writes a large file byte for byte', () => {
    const dirs = freshDirs();
    const content = randomBytes(3 * 1024 * 1024 + 17);
    dirs.write('big', { files: [{ name: 'blob', content }], owner });
    expect(readFileSync(join(dirs.pathOf('big'), 'blob')).equals(content)).toBe(true);
  });

  it('removes what a crash left behind: stale version dirs, temporary links, dangling links', () => {
    const dirs = freshDirs();
    const dir = dirs.ensure('k');
    mkdirSync(join(dir, '..dso_1_stale'));
    writeFileSync(join(dir, '..dso_1_stale', 'a'), 'old');
    chmodSync(join(dir, '..dso_1_stale'), 0o555);
    symlinkSync('..dso_1_stale', join(dir, '..tmp_1_stale'));
    symlinkSync('..data/gone', join(dir, 'gone'));
    const result = dirs.write('k', { files: canaryFiles(['a']), owner });
    expect(readdirSync(dir).sort()).toEqual(['..data', `..dso_${result.generation}`, 'a']);
  });

  it('runs writes to one key one after another: the last wins, one version dir remains', async () => {
    const dirs = freshDirs();
    const results = await Promise.all(
      Array.from({ length: 20 }, async (_, index) => {
        await Promise.resolve();
        return dirs.write('k', {
          files: [
            { name: 'v', content: text(`version-${index}`) },
            { name: `only-${index}`, content: text('x') },
          ],
          owner,
        });
      }),
    );
    const dir = dirs.pathOf('k');
    expect(new Set(results.map((result) => result.generation)).size).toBe(20);
    expect(readFileSync(join(dir, 'v'), 'utf8')).toBe('version-19');
    expect(readdirSync(dir).sort()).toEqual([
      '..data',
      `..dso_${results[19]?.generation}`,
      'only-19',
      'v',
    ]);
  });

  it.each([[''], ['..'], ['.hidden'], ['-flag'], ['a/b'], ['a b'], ['x'.repeat(129)], [undefined]])(
    'rejects the key %j with DSO_DOCKER_INVALID_REQUEST and touches nothing',
    (key) => {
      const dirs = freshDirs();
      const error = failure(() => dirs.write(key as string, { files: canaryFiles(['a']), owner }));
      expect(error.code).toBe('DSO_DOCKER_INVALID_REQUEST');
      expect(error.details.field).toBe('key');
      expect(readdirSync(dirs.root)).toEqual([]);
    },
  );

  it('accepts a 128-character key and a full container id', () => {
    const dirs = freshDirs();
    const id = 'a'.repeat(64);
    dirs.write(id, { files: canaryFiles(['a']), owner });
    dirs.write('x'.repeat(128), { files: canaryFiles(['a']), owner });
    expect(dirs.keys()).toEqual([id, 'x'.repeat(128)]);
  });

  it.each([
    ['..data', 'starts with ".."'],
    ['..dso_1', 'starts with ".."'],
    ['a/b', 'may only hold'],
    ['', 'is empty'],
    ['.', 'is "."'],
  ])('rejects the file name %j before touching the key directory', (name, reason) => {
    const dirs = freshDirs();
    const error = failure(() =>
      dirs.write('k', { files: [{ name, content: text(CANARY) }], owner }),
    );
    expect(error.code).toBe('DSO_DOCKER_INVALID_REQUEST');
    expect(error.message).toContain(reason);
    expect(existsSync(dirs.pathOf('k'))).toBe(false);
  });

  it('rejects a duplicate name, a bad mode, and a missing or bad owner', () => {
    const dirs = freshDirs();
    const files = canaryFiles(['a']);
    const cases = [
      () => dirs.write('k', { files: [...files, ...files], owner }),
      () => dirs.write('k', { files, owner, mode: 0o4755 }),
      () => dirs.write('k', { files } as never),
      () => dirs.write('k', { files, owner: { uid: -1, gid: 0 } }),
      () => dirs.write('k', { files: 'a' as never, owner }),
    ];
    expect(cases.map((run) => failure(run).details.field)).toEqual([
      'files',
      'mode',
      'owner',
      'owner',
      'files',
    ]);
    expect(existsSync(dirs.pathOf('k'))).toBe(false);
  });

  it('refuses a name taken by a real file, a foreign link or a directory, changing nothing', () => {
    const dirs = freshDirs();
    dirs.write('k', { files: canaryFiles(['a']), owner });
    const dir = dirs.pathOf('k');
    writeFileSync(join(dir, 'b'), 'app-owned');
    symlinkSync('/etc/hostname', join(dir, 'c'));
    mkdirSync(join(dir, 'd'));
    const before = snapshot(dir);
    for (const name of ['b', 'c', 'd']) {
      const error = failure(() =>
        dirs.write('k', { files: canaryFiles(['a', name], 'v2'), owner }),
      );
      expect(error.code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
      expect(error.details).toMatchObject({ reason: 'conflict', name, path: join(dir, name) });
      expect(error.message).toContain(`${join(dir, name)} exists and is not a link written by DSO`);
      expect(snapshot(dir)).toEqual(before);
    }
  });

  it('refuses when ..data is not its own link', () => {
    const dirs = freshDirs();
    const dir = dirs.ensure('k');
    mkdirSync(join(dir, '..data'));
    const error = failure(() => dirs.write('k', { files: canaryFiles(['a']), owner }));
    expect(error.code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
    expect(error.details.name).toBe('..data');
    expect(readdirSync(dir)).toEqual(['..data']);
  });

  it('refuses a key directory that is a symlink and writes nothing through it', () => {
    const dirs = freshDirs();
    const elsewhere = mkdtempSync(join(base, 'elsewhere-'));
    symlinkSync(elsewhere, join(dirs.root, 'k'));
    const error = failure(() => dirs.write('k', { files: canaryFiles(['a']), owner }));
    expect(error.code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
    expect(error.message).toContain('is a symlink');
    expect(readdirSync(elsewhere)).toEqual([]);
    expect(failure(() => dirs.ensure('k')).code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
  });

  it.runIf(isRoot)('refuses a key directory where a disk file system is mounted', () => {
    const dirs = freshDirs();
    const dir = dirs.ensure('k');
    const parent = statfsSync(tmpdir()).type === TMPFS_MAGIC ? process.cwd() : tmpdir();
    const disk = mkdtempSync(join(parent, 'dso-disk-'));
    execFileSync('mount', ['--bind', disk, dir]);
    try {
      expect(statfsSync(dir).type).not.toBe(TMPFS_MAGIC);
      const error = failure(() => dirs.write('k', { files: canaryFiles(['a']), owner }));
      expect(error.code).toBe('DSO_DOCKER_HOST_PATH_NOT_TMPFS');
      expect(error.details.path).toBe(dir);
      expect(readdirSync(disk)).toEqual([]);
    } finally {
      execFileSync('umount', [dir]);
      rmSync(disk, { recursive: true, force: true });
    }
  });

  const steps: [HostWriteStep, string | undefined][] = [
    ['stage', undefined],
    ['file', 'b'],
    ['seal', undefined],
    ['link', 'new'],
    ['swap', undefined],
  ];
  it.each(steps)(
    'keeps the previous set byte-identical when the %s step fails',
    (failAt, failName) => {
      const root = join(base, randomUUID());
      let armed = false;
      const dirs = createHostSecretDirsWithFaults({ root }, (step, name) => {
        if (armed && step === failAt && (failName === undefined || name === failName)) {
          throw Object.assign(new Error(`EIO: i/o error, injected at ${step}`), { code: 'EIO' });
        }
      });
      dirs.write('k', { files: canaryFiles(['a', 'b', 'gone']), owner });
      const dir = dirs.pathOf('k');
      const before = snapshot(dir);
      armed = true;
      const error = failure(() =>
        dirs.write('k', { files: canaryFiles(['a', 'b', 'new', 'other'], 'v2'), owner }),
      );
      expect(error.code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
      expect(error.details).toMatchObject({ key: 'k', step: failAt, errno: 'EIO' });
      expect(error.message).toContain('the previous set is unchanged');
      expect(snapshot(dir)).toEqual(before);
      armed = false;
      const after = dirs.write('k', { files: canaryFiles(['a'], 'v3'), owner });
      expect(readdirSync(dir).sort()).toEqual(['..data', `..dso_${after.generation}`, 'a']);
    },
  );

  it.runIf(isRoot)('fails with DSO_DOCKER_HOST_PATH_FAILED when the tmpfs is full', () => {
    const small = mkdtempSync(join(tmpdir(), 'dso-small-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0755', 'tmpfs', small]);
    try {
      const dirs = createHostSecretDirs({ root: small });
      dirs.write('k', { files: canaryFiles(['a', 'b']), owner });
      const before = snapshot(dirs.pathOf('k'));
      const content = Buffer.alloc(400 * 1024, CANARY);
      const error = failure(() =>
        dirs.write('k', {
          files: ['a', 'b', 'c'].map((name) => ({ name, content })),
          owner,
        }),
      );
      expect(error.code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
      expect(error.details.errno).toBe('ENOSPC');
      expect(error.message).toContain('is full');
      expect(snapshot(dirs.pathOf('k'))).toEqual(before);
      // The staged bytes were freed: a set that fits is written.
      const ok = dirs.write('k', { files: [{ name: 'a', content }], owner });
      expect(ok.bytes).toBe(400 * 1024);
    } finally {
      execFileSync('umount', [small]);
      rmSync(small, { recursive: true, force: true });
    }
  });

  it.runIf(isRoot)('explains that chown needs root when the agent runs as another user', () => {
    const root = join(base, randomUUID());
    mkdirSync(root, { mode: 0o755 });
    chownSync(root, 1000, 1000);
    // Switch only the effective ids, synchronously, and always back: nothing else runs meanwhile.
    let error: DockerRuntimeError | undefined;
    let own: string | undefined;
    process.setegid?.(1000);
    process.seteuid?.(1000);
    try {
      const dirs = createHostSecretDirs({ root });
      dirs.write('k', { files: canaryFiles(['a'], 'v1'), owner: { uid: 1000, gid: 1000 } });
      const before = snapshot(dirs.pathOf('k'));
      error = failure(() =>
        dirs.write('k', { files: canaryFiles(['a'], 'v2'), owner: { uid: 0, gid: 0 } }),
      );
      own = JSON.stringify(snapshot(dirs.pathOf('k'))) === JSON.stringify(before) ? 'same' : 'no';
    } finally {
      process.seteuid?.(0);
      process.setegid?.(0);
    }
    expect(error?.code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
    expect(error?.details.errno).toBe('EPERM');
    expect(error?.message).toContain('needs root (or CAP_CHOWN)');
    expect(own).toBe('same');
  });
});

describe('HostSecretDirs against a racing writer: symlinks and renames are never followed', () => {
  /** A host folder outside the root with files and modes: what an attacker's links point at. */
  function plantVictim(): { path: string; state: () => Record<string, string> } {
    const path = mkdtempSync(join(base, 'victim-'));
    writeFileSync(join(path, 'keep'), 'victim data', { mode: 0o644 });
    mkdirSync(join(path, 'sub'), { mode: 0o750 });
    writeFileSync(join(path, 'sub', 'deep'), 'deep data', { mode: 0o600 });
    chmodSync(path, 0o751);
    const state = () => ({ '.': (lstatSync(path).mode & 0o7777).toString(8), ...snapshot(path) });
    return { path, state };
  }

  function versionDirs(dir: string): string[] {
    return readdirSync(dir).filter((name) => name.startsWith('..dso_'));
  }

  it('does not follow an older version directory swapped for a symlink after it was listed (the reported attack)', () => {
    const victim = plantVictim();
    const before = victim.state();
    const root = join(base, randomUUID());
    const dirs = createHostSecretDirsWithFaults({ root }, (step, name) => {
      // The racing container: the version directory the clean-up is about to remove becomes a
      // symlink to the victim, between the listing and the removal.
      if (step !== 'clean' || name === undefined) return;
      const path = join(dirs.pathOf('k'), name);
      rmSync(path, { recursive: true, force: true });
      symlinkSync(victim.path, path);
    });
    dirs.write('k', { files: canaryFiles(['a', 'b']), owner });
    const error = failure(() => dirs.write('k', { files: canaryFiles(['a'], 'v2'), owner }));
    expect(error.code).toBe('DSO_DOCKER_HOST_PATH_TAMPERED');
    expect(error.retryable).toBe(false);
    expect(error.details).toMatchObject({ key: 'k', live: true });
    expect(error.message).toContain('mounts it writable');
    expect(victim.state()).toEqual(before);
    // The planted link was removed as a link; the new set is live.
    const dir = dirs.pathOf('k');
    expect(versionDirs(dir)).toHaveLength(1);
    expect(readFileSync(join(dir, 'a'), 'utf8')).toBe(`${CANARY}:v2:a`);
  });

  it('refuses a folder with a symlink where a version directory belongs, before writing anything', () => {
    const victim = plantVictim();
    const before = victim.state();
    const dirs = freshDirs();
    dirs.write('k', { files: canaryFiles(['a']), owner });
    const dir = dirs.pathOf('k');
    symlinkSync(victim.path, join(dir, '..dso_1_planted'));
    const folderBefore = snapshot(dir);
    const error = failure(() => dirs.write('k', { files: canaryFiles(['a'], 'v2'), owner }));
    expect(error.code).toBe('DSO_DOCKER_HOST_PATH_TAMPERED');
    expect(error.details.name).toBe('..dso_1_planted');
    expect(snapshot(dir)).toEqual(folderBefore);
    expect(victim.state()).toEqual(before);
  });

  it('removes links planted inside an older version directory as links, and says so', () => {
    const victim = plantVictim();
    const before = victim.state();
    const dirs = freshDirs();
    dirs.write('k', { files: canaryFiles(['a']), owner });
    const dir = dirs.pathOf('k');
    const [old] = versionDirs(dir);
    const oldPath = join(dir, old as string);
    chmodSync(oldPath, 0o700);
    symlinkSync(victim.path, join(oldPath, 'to-dir'));
    symlinkSync(join(victim.path, 'keep'), join(oldPath, 'to-file'));
    mkdirSync(join(oldPath, 'nested'));
    symlinkSync(victim.path, join(oldPath, 'nested', 'to-dir'));
    chmodSync(oldPath, 0o555);
    const error = failure(() => dirs.write('k', { files: canaryFiles(['a'], 'v2'), owner }));
    expect(error.code).toBe('DSO_DOCKER_HOST_PATH_TAMPERED');
    expect(error.details.live).toBe(true);
    expect(existsSync(oldPath)).toBe(false);
    expect(victim.state()).toEqual(before);
  });

  it('writes into the version directory it made even when it is swapped for a symlink mid-write', () => {
    const victim = plantVictim();
    const before = victim.state();
    const root = join(base, randomUUID());
    let armed = false;
    let swapped = false;
    const dirs = createHostSecretDirsWithFaults({ root }, (step) => {
      if (step !== 'file' || !armed || swapped) return;
      swapped = true;
      const dir = dirs.pathOf('k');
      const [stage] = readdirSync(dir).filter(
        (name) => name.startsWith('..dso_') && (lstatSync(join(dir, name)).mode & 0o777) === 0o700,
      );
      renameSync(join(dir, stage as string), join(dir, '..moved'));
      symlinkSync(victim.path, join(dir, stage as string));
    });
    dirs.write('k', { files: canaryFiles(['a']), owner });
    armed = true;
    dirs.write('k', { files: canaryFiles(['keep', 'sub'], 'v2'), owner });
    expect(swapped).toBe(true);
    expect(victim.state()).toEqual(before);
    expect(readdirSync(join(dirs.pathOf('k'), '..moved')).sort()).toEqual(['keep', 'sub']);
  });

  it('writes into the key folder it opened even when it is renamed and replaced by a symlink mid-write', () => {
    const victim = plantVictim();
    const before = victim.state();
    const root = join(base, randomUUID());
    let swapped = false;
    const dirs = createHostSecretDirsWithFaults({ root }, (step) => {
      if (step !== 'link' || swapped) return;
      swapped = true;
      renameSync(dirs.pathOf('k'), join(root, 'moved'));
      symlinkSync(victim.path, dirs.pathOf('k'));
    });
    dirs.write('k', { files: canaryFiles(['keep', 'new']), owner });
    expect(victim.state()).toEqual(before);
    expect(
      readdirSync(join(root, 'moved'))
        .filter((name) => !name.startsWith('..dso_'))
        .sort(),
    ).toEqual(['..data', 'keep', 'new']);
    // The next write refuses the link in its place.
    expect(
      failure(() => dirs.write('k', { files: canaryFiles(['a']), owner })).details.reason,
    ).toBe('not-a-directory');
    expect(victim.state()).toEqual(before);
  });

  it('refuses a root replaced by a symlink or another directory since it was opened', () => {
    const victim = plantVictim();
    const before = victim.state();
    const dirs = freshDirs();
    dirs.write('k', { files: canaryFiles(['a']), owner });
    renameSync(dirs.root, `${dirs.root}-moved`);
    symlinkSync(victim.path, dirs.root);
    for (const run of [
      () => dirs.write('keep', { files: canaryFiles(['a']), owner }),
      () => dirs.remove('sub'),
      () => dirs.keys(),
      () => dirs.ensure('sub'),
    ]) {
      expect(failure(run).code).toBe('DSO_DOCKER_HOST_PATH_TAMPERED');
    }
    expect(victim.state()).toEqual(before);
  });

  it('removes a key folder whose version directory is a link to elsewhere without following it', () => {
    const victim = plantVictim();
    const before = victim.state();
    const dirs = freshDirs();
    dirs.write('k', { files: canaryFiles(['a']), owner });
    symlinkSync(victim.path, join(dirs.pathOf('k'), '..dso_1_planted'));
    dirs.remove('k');
    expect(existsSync(dirs.pathOf('k'))).toBe(false);
    expect(victim.state()).toEqual(before);
  });

  it('leaves no descriptor open, after successes and refusals alike', () => {
    const victim = plantVictim();
    const dirs = freshDirs();
    const open = () => readdirSync('/proc/self/fd').length;
    const before = open();
    for (let round = 0; round < 20; round += 1) {
      dirs.write('k', { files: canaryFiles(['a', 'b'], `v${round}`), owner });
      dirs.ensure('k');
      dirs.keys();
    }
    symlinkSync(victim.path, join(dirs.pathOf('k'), '..dso_1_planted'));
    symlinkSync(victim.path, join(dirs.root, 'linked'));
    for (let round = 0; round < 20; round += 1) {
      failure(() => dirs.write('k', { files: canaryFiles(['a']), owner }));
      failure(() => dirs.write('linked', { files: canaryFiles(['a']), owner }));
    }
    dirs.remove('k');
    dirs.remove('linked');
    expect(open()).toBe(before);
  });

  it('has nothing to list or remove once its root is gone', () => {
    const dirs = freshDirs();
    dirs.ensure('k');
    rmSync(dirs.root, { recursive: true });
    expect(dirs.keys()).toEqual([]);
    dirs.remove('k');
    expect(failure(() => dirs.ensure('k')).code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
  });

  it('makes an existing root 0700, so no other host user reaches a key folder', () => {
    const root = join(base, randomUUID());
    mkdirSync(root, { mode: 0o755 });
    chmodSync(root, 0o755);
    createHostSecretDirs({ root });
    expect(lstatSync(root).mode & 0o777).toBe(0o700);
  });

  it.runIf(isRoot)('refuses a root owned by another user, with the fix', () => {
    const root = join(base, randomUUID());
    mkdirSync(root, { mode: 0o700 });
    chownSync(root, 1000, 1000);
    const error = failure(() => createHostSecretDirs({ root }));
    expect(error.code).toBe('DSO_DOCKER_HOST_PATH_FAILED');
    expect(error.message).toContain(`chown 0:0 ${root}`);
  });
});

describe('HostSecretDirs paths, mounts, keys and remove', () => {
  it('gives the bind mount of a key, read-only, without creating anything', () => {
    const dirs = freshDirs();
    expect(dirs.mountFor('web-1', '/run/secrets/')).toEqual({
      type: 'bind',
      source: join(dirs.root, 'web-1'),
      target: '/run/secrets',
      readOnly: true,
    });
    expect(existsSync(dirs.pathOf('web-1'))).toBe(false);
    expect(failure(() => dirs.mountFor('web-1', 'run/secrets')).details.field).toBe('target');
    expect(failure(() => dirs.mountFor('../x', '/run/secrets')).details.field).toBe('key');
  });

  it('ensures an empty key directory, mode 0755, idempotently', () => {
    const dirs = freshDirs();
    const dir = dirs.ensure('k');
    expect(dirs.ensure('k')).toBe(dir);
    expect(lstatSync(dir).mode & 0o7777).toBe(0o755);
    expect(readdirSync(dir)).toEqual([]);
  });

  it('lists keys, removes one with its sealed version dirs, and removes idempotently', () => {
    const dirs = freshDirs();
    dirs.write('b', { files: canaryFiles(['x']), owner });
    dirs.write('a', { files: canaryFiles(['x']), owner });
    writeFileSync(join(dirs.root, 'stray-file'), '');
    mkdirSync(join(dirs.root, '.hidden'));
    expect(dirs.keys()).toEqual(['a', 'b']);
    dirs.remove('a');
    dirs.remove('a');
    expect(dirs.keys()).toEqual(['b']);
    expect(existsSync(dirs.pathOf('a'))).toBe(false);
  });

  it('removes a symlink in place of a key directory without following it', () => {
    const dirs = freshDirs();
    const elsewhere = mkdtempSync(join(base, 'elsewhere-'));
    writeFileSync(join(elsewhere, 'keep'), 'x');
    symlinkSync(elsewhere, join(dirs.root, 'k'));
    dirs.remove('k');
    expect(existsSync(join(dirs.root, 'k'))).toBe(false);
    expect(readdirSync(elsewhere)).toEqual(['keep']);
  });
});
