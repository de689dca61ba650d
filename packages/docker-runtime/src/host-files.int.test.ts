import { randomUUID } from 'node:crypto';
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDockerRuntime, type DockerRuntime } from './docker-runtime.js';
import { isDockerRuntimeError } from './errors.js';
import { createHostSecretDirs, type HostSecretDirs, type HostSecretMount } from './host-files.js';
import {
  createContainerPool,
  createMountingContainer,
  docker,
  ensureTestImage,
  eventsSince,
  logsOf,
  runToExit,
  waitFor,
} from './test-support/engine.js';

// /dev/shm is a tmpfs that exists before the engine started, so the engine's mount namespace
// sees it too (a tmpfs mounted by the test later might not propagate to it).
const ROOT = `/dev/shm/dso-host-int-${randomUUID()}`;
const pool = createContainerPool();
const startedAt = new Date(Date.now() - 1_000);
const text = (value: string) => new TextEncoder().encode(value);
const ROOT_OWNER = { uid: 0, gid: 0 };
const APP = { uid: 1000, gid: 1000 };
let dirs: HostSecretDirs;
let runtime: DockerRuntime;

beforeAll(async () => {
  await ensureTestImage();
  dirs = createHostSecretDirs({ root: ROOT });
  runtime = await createDockerRuntime();
});
afterEach(async () => {
  await pool.removeAll();
});
afterAll(async () => {
  await pool.removeAll();
  await runtime?.close();
  rmSync(ROOT, { recursive: true, force: true });
});

/** The engine's form of our mount type. */
function engineMount(mount: HostSecretMount) {
  return { Type: mount.type, Source: mount.source, Target: mount.target, ReadOnly: mount.readOnly };
}

function newKey(): string {
  return `t-${randomUUID()}`;
}

describe('the host path, through a real container', () => {
  it('a container reads its files through a read-only bind mount and cannot change them', async () => {
    const key = newKey();
    dirs.write(key, {
      files: [
        { name: 'db_password', content: text('p@ss word') },
        { name: 'api_key', content: text('k-123') },
      ],
      owner: ROOT_OWNER,
    });
    const id = await createMountingContainer(pool.runId, {
      cmd: [
        'sh',
        '-c',
        'cd /run/secrets && echo "$(cat db_password)|$(cat api_key)"; ' +
          'stat -L -c "%n %a %u:%g" db_password api_key; ' +
          'for p in db_password ..data/api_key new; do ' +
          '  (echo x > "$p") 2>/dev/null && echo "wrote $p" || echo "refused $p"; done; ' +
          'rm -f api_key 2>/dev/null && echo "removed" || echo "refused rm"',
      ],
      mounts: [engineMount(dirs.mountFor(key, '/run/secrets'))],
    });
    const { exitCode, stdout } = await runToExit(id);
    expect(exitCode).toBe(0);
    expect(stdout).toBe(
      [
        'p@ss word|k-123',
        'db_password 400 0:0',
        'api_key 400 0:0',
        'refused db_password',
        'refused ..data/api_key',
        'refused new',
        'refused rm',
        '',
      ].join('\n'),
    );
  });

  it('a non-root container user reads its own 0400 files, not root-owned ones, and writes none', async () => {
    const mine = newKey();
    const roots = newKey();
    dirs.write(mine, { files: [{ name: 'token', content: text('for-app') }], owner: APP });
    dirs.write(roots, { files: [{ name: 'token', content: text('for-root') }], owner: ROOT_OWNER });
    const id = await createMountingContainer(pool.runId, {
      user: '1000:1000',
      cmd: [
        'sh',
        '-c',
        'id -u; cat /run/secrets/token; echo; ' +
          'cat /run/other/token 2>/dev/null && echo "read other" || echo "refused other"; ' +
          '(echo x > /run/secrets/token) 2>/dev/null && echo wrote || echo "refused write"; ' +
          'chmod 600 /run/secrets/token 2>/dev/null && echo chmodded || echo "refused chmod"',
      ],
      mounts: [
        engineMount(dirs.mountFor(mine, '/run/secrets')),
        engineMount(dirs.mountFor(roots, '/run/other')),
      ],
    });
    const { exitCode, stdout } = await runToExit(id);
    expect(exitCode).toBe(0);
    expect(stdout).toBe('1000\nfor-app\nrefused other\nrefused write\nrefused chmod\n');
  });

  it('writes for a created container with its resolved user, before its application starts', async () => {
    const key = newKey();
    // The engine refuses a bind mount whose source is missing: the directory comes first.
    dirs.ensure(key);
    const id = await createMountingContainer(pool.runId, {
      user: 'app',
      cmd: ['sh', '-c', 'id -u; cat /run/secrets/x'],
      mounts: [engineMount(dirs.mountFor(key, '/run/secrets'))],
    });
    const owner = await runtime.resolveUser(id);
    expect(owner).toEqual(APP);
    dirs.write(key, { files: [{ name: 'x', content: text('ready') }], owner });
    const { exitCode, stdout, stderr } = await runToExit(id);
    expect({ exitCode, stdout, stderr }).toEqual({
      exitCode: 0,
      stdout: '1000\nready',
      stderr: '',
    });
  });

  it('files exist before the application starts, every time (20 containers)', async () => {
    const key = newKey();
    const mounts = [engineMount(dirs.mountFor(key, '/run/secrets'))];
    for (let run = 0; run < 20; run += 1) {
      dirs.write(key, { files: [{ name: 'x', content: text(`run-${run}`) }], owner: APP });
      const id = await createMountingContainer(pool.runId, {
        user: '1000:1000',
        cmd: ['cat', '/run/secrets/x'],
        mounts,
      });
      const { exitCode, stdout, stderr } = await runToExit(id);
      expect({ run, exitCode, stdout, stderr }).toEqual({
        run,
        exitCode: 0,
        stdout: `run-${run}`,
        stderr: '',
      });
    }
  });

  it('a reader never sees a mix of generations in a set read through ..data (200 swaps)', async () => {
    const key = newKey();
    const names = Array.from({ length: 10 }, (_, index) => `f${index}`);
    const setOf = (generation: number, extra: string[] = []) => ({
      files: [...names, ...extra].map((name) => ({
        name,
        content: text(`g${generation}.${name};`),
      })),
      owner: APP,
    });
    dirs.write(key, setOf(0));
    const all = names.join(' ');
    // Each round reads the ten files twice: once by name (each name resolves ..data on its own
    // open), and once after `cd ..data` (resolved once for the whole round).
    const id = await createMountingContainer(pool.runId, {
      user: '1000:1000',
      cmd: [
        'sh',
        '-c',
        'cd /run/secrets || exit 1; ' +
          'while [ ! -e stop ]; do ' +
          `  echo "L $(cat ${all} 2>&1)"; ` +
          `  echo "D $(cd ..data 2>&1 && cat ${all} 2>&1)"; ` +
          'done; echo END',
      ],
      mounts: [engineMount(dirs.mountFor(key, '/run/secrets'))],
    });
    await docker.getContainer(id).start();
    await waitFor('the reader to start reading', async () =>
      (await logsOf(id)).stdout.includes('\nD ') ? true : undefined,
    );
    for (let generation = 1; generation <= 200; generation += 1) {
      dirs.write(key, setOf(generation));
      // Pacing, not a wait for a condition: it spreads the swaps over the reader's rounds. No
      // assertion is about a moment: the reader was seen reading before the first swap, and
      // what it read is judged from its whole log once it has stopped.
      await delay(2);
    }
    dirs.write(key, setOf(201, ['stop']));
    const { StatusCode } = (await docker.getContainer(id).wait()) as { StatusCode: number };
    expect(StatusCode).toBe(0);
    const { stdout } = await logsOf(id);
    const lines = stdout.split('\n');
    // Each file, however it was reached, is always whole.
    expect(stdout).not.toMatch(/g\d+\.(?!f\d;)/);
    expect(lines.at(-2)).toBe('END');

    const token = /^g(\d+)\.(f\d);$/;
    const parse = (payload: string) => {
      const parts = payload.match(/[^;]*;/g) ?? [];
      const rest = payload.slice(parts.join('').length);
      const generations = new Set<string>();
      let whole = rest === '' && parts.length === names.length;
      parts.forEach((part, index) => {
        const match = token.exec(part);
        if (match === null || match[2] !== names[index]) whole = false;
        else generations.add(match[1] as string);
      });
      return { whole, generations };
    };
    const stats = { D: { whole: 0, broken: 0, mixed: 0 }, L: { whole: 0, broken: 0, mixed: 0 } };
    const seen = new Set<string>();
    for (const line of lines) {
      const kind = line.slice(0, 2);
      if (kind !== 'D ' && kind !== 'L ') continue;
      const round = parse(line.slice(2));
      const counts = stats[kind === 'D ' ? 'D' : 'L'];
      if (!round.whole) counts.broken += 1;
      else if (round.generations.size > 1) counts.mixed += 1;
      else counts.whole += 1;
      if (kind === 'D ' && round.whole)
        for (const generation of round.generations) seen.add(generation);
    }
    // Facts for the report (the test's output), not assertions: reads by name may straddle a
    // swap, and a round that resolved ..data just before a swap can find its directory removed.
    console.info('host path reader rounds', JSON.stringify(stats), 'generations seen', seen.size);
    expect(stats.D.mixed).toBe(0);
    expect(stats.D.whole).toBeGreaterThan(50);
    // The reader really ran across the swaps, so the check above could have failed.
    expect(seen.size).toBeGreaterThan(10);
  });

  it('a container with a writable mount of the folder, racing symlinks to a victim, reaches nothing outside it (200 writes)', async () => {
    const key = newKey();
    // On the same tmpfs as the root: no device check stands between them, only O_NOFOLLOW.
    const victim = `/dev/shm/dso-host-int-victim-${randomUUID()}`;
    mkdirSync(join(victim, 'sub'), { recursive: true });
    writeFileSync(join(victim, 'keep'), 'victim data', { mode: 0o644 });
    writeFileSync(join(victim, 'sub', 'deep'), 'deep data', { mode: 0o600 });
    chmodSync(victim, 0o751);
    const state = () =>
      [victim, join(victim, 'keep'), join(victim, 'sub'), join(victim, 'sub', 'deep')].map(
        (path) => {
          const stats = lstatSync(path);
          const content = stats.isFile() ? readFileSync(path, 'utf8') : '';
          return `${path} ${(stats.mode & 0o7777).toString(8)} ${stats.uid} ${content}`;
        },
      );
    const before = state();
    try {
      const folder = dirs.pathOf(key);
      const setOf = (generation: number) => ({
        files: ['keep', 'sub', 'a'].map((name) => ({ name, content: text(`g${generation}`) })),
        owner: APP,
      });
      dirs.write(key, setOf(0));
      // The reported attack: root in a container with the folder writable turns every version
      // directory (and temporary link) into a symlink to the victim, as fast as it can.
      const id = await createMountingContainer(pool.runId, {
        cmd: [
          'sh',
          '-c',
          `while true; do for d in /x/..dso_* /x/..tmp_*; do [ -L "$d" ] || { rm -rf "$d"; ln -s ${victim} "$d"; }; done; done`,
        ],
        mounts: [{ Type: 'bind', Source: folder, Target: '/x', ReadOnly: false }],
      });
      await docker.getContainer(id).start();
      const outcomes: Record<string, number> = {};
      for (let generation = 1; generation <= 200; generation += 1) {
        let outcome = 'ok';
        try {
          dirs.write(key, setOf(generation));
        } catch (error) {
          if (!isDockerRuntimeError(error)) throw error;
          outcome = error.code;
          // The operator's clean-up, so that later writes race again: the planted links go.
          // The attacker keeps renaming entries meanwhile: one listed may be gone already.
          for (const name of readdirSync(folder)) {
            const entry = lstatSync(join(folder, name), { throwIfNoEntry: false });
            if (name.startsWith('..') && entry?.isSymbolicLink()) {
              rmSync(join(folder, name), { force: true });
            }
          }
        }
        outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
        // Pacing, not a wait: it lets the attacker run between writes.
        await delay(1);
      }
      console.info('host path writes against a racing writable binder', JSON.stringify(outcomes));
      expect(state()).toEqual(before);
      // Every failure was a refusal with a code, and the race really ran.
      expect(
        Object.keys(outcomes).filter(
          (code) =>
            !['ok', 'DSO_DOCKER_HOST_PATH_TAMPERED', 'DSO_DOCKER_HOST_PATH_FAILED'].includes(code),
        ),
      ).toEqual([]);
      expect(outcomes.DSO_DOCKER_HOST_PATH_TAMPERED ?? 0).toBeGreaterThan(0);
    } finally {
      rmSync(victim, { recursive: true, force: true });
    }
  });

  it('ran no exec in any container of this file', async () => {
    const actions = await eventsSince(pool.runId, startedAt);
    expect(actions).toContain('start');
    // Docker: exec_create, exec_start, exec_die; Podman: exec, exec_died.
    expect(actions.filter((action) => /^exec($|_)/.test(action))).toEqual([]);
  });
});
