import { execFile, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createDockerRuntime, type DockerRuntime } from './docker-runtime.js';
import { isDockerRuntimeError } from './errors.js';
import {
  createContainerPool,
  docker,
  ensureTestImage,
  execIn,
  shIn,
  TEST_IMAGE,
  TEST_LABEL,
  testEngineFacts,
  waitFor,
} from './test-support/engine.js';
import type { SecretFile } from './write-request.js';
import { WRITE_SCRIPT } from './write-script.js';

const run = promisify(execFile);
const pool = createContainerPool();
const engine = await testEngineFacts();
/**
 * Where the engine keeps what it knows of containers, searched for values: its data root (from
 * its info) and, for Docker, containerd's; for Podman, its run-time state too (runroot
 * /run/containers, tmp dir /run/libpod with its event log).
 */
const ENGINE_STATE_ROOTS = [
  engine.dataRoot,
  ...(engine.kind === 'podman'
    ? ['/var/lib/containers', '/run/containers', '/run/libpod']
    : ['/var/lib/containerd']),
].filter((root, index, all) => root !== '' && all.indexOf(root) === index && existsSync(root));
/**
 * `--tmpfs` options for a 0700 tmpfs owned by the container's user 1000:1000. Podman 4.3's
 * tmpfs refuses `uid=`; its `U` gives the tmpfs to the container's user.
 */
const OWNERS_TMPFS =
  engine.kind === 'podman' ? 'size=1m,mode=0700,U' : 'size=1m,uid=1000,mode=0700';
const SECRETS = { '/run/secrets': 'size=1m' };
const text = (value: string) => new TextEncoder().encode(value);
let runtime: DockerRuntime;

beforeAll(async () => {
  await ensureTestImage();
  runtime = await createDockerRuntime();
});
afterEach(async () => {
  await pool.removeAll();
});
afterAll(async () => {
  await pool.removeAll();
  await runtime?.close();
});

async function failureOf(promise: Promise<unknown>) {
  try {
    await promise;
  } catch (error) {
    if (isDockerRuntimeError(error)) return error;
    throw error;
  }
  throw new Error('expected writeFiles to fail');
}

/** `name mode uid:gid -> link` for every entry of the target, in order, plus the ..data link. */
async function listing(id: string, target = '/run/secrets'): Promise<string> {
  return shIn(
    id,
    `cd ${target} && for f in * .[!.]*; do [ -e "$f" ] || [ -L "$f" ] || continue; ` +
      'echo "$f $(stat -L -c "%a %u:%g" "$f") -> $(readlink "$f")"; done',
  );
}

/** The version directories and temporary links present in the target. */
async function dsoEntries(id: string, target = '/run/secrets'): Promise<string[]> {
  const out = await shIn(
    id,
    `cd ${target} && for f in ..?*; do [ -e "$f" ] || [ -L "$f" ] && echo "$f"; done; true`,
  );
  return out.split('\n').filter(Boolean).sort();
}

async function read(id: string, path: string, user = '0'): Promise<Buffer> {
  return (await execIn(id, ['cat', path], { user })).stdout;
}

describe('writeFiles', () => {
  it('writes one file as root into a tmpfs, mode 400, as a symlink into ..data', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    const result = await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'db_password', content: text('p@ss word\n') }],
    });
    expect(result).toMatchObject({ files: 1, bytes: 10 });
    expect(result.generation).toMatch(/^\d+_[0-9a-f]{12}$/);
    expect(result.durationMs).toBeGreaterThan(0);
    expect((await read(id, '/run/secrets/db_password')).toString()).toBe('p@ss word\n');
    expect(await listing(id)).toBe('db_password 400 0:0 -> ..data/db_password\n');
    expect(await dsoEntries(id)).toEqual(['..data', `..dso_${result.generation}`]);
    expect((await shIn(id, 'readlink /run/secrets/..data')).trim()).toBe(
      `..dso_${result.generation}`,
    );
  });

  it('writes ten binary files for a container running as 1000:1000, owned by it', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, user: '1000:1000' });
    const files: SecretFile[] = Array.from({ length: 10 }, (_, index) => ({
      name: `secret_${index}.bin`,
      content: randomBytes(100 + index * 37),
    }));
    const result = await runtime.writeFiles(id, { target: '/run/secrets', files });
    expect(result).toMatchObject({
      files: 10,
      bytes: files.reduce((sum, file) => sum + file.content.byteLength, 0),
    });
    const paths = files.map((file) => `/run/secrets/${file.name}`);
    // Read as the container's own user: the owner can read its files.
    const all = (await execIn(id, ['cat', ...paths], { user: '1000:1000' })).stdout;
    expect(all.equals(Buffer.concat(files.map((file) => file.content)))).toBe(true);
    expect(await listing(id)).toBe(
      files.map((file) => `${file.name} 400 1000:1000 -> ..data/${file.name}\n`).join(''),
    );
  });

  it("resolves a user name through the container's /etc/passwd; other users cannot read", async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, user: 'app' });
    await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'a', content: text('x') }],
    });
    expect(await listing(id)).toBe('a 400 1000:1000 -> ..data/a\n');
    expect((await read(id, '/run/secrets/a', 'app')).toString()).toBe('x');
    await expect(read(id, '/run/secrets/a', '2000:2000')).rejects.toThrow(/Permission denied/);
  });

  it('skips its own inspect when given the containerUser, with the same result', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, user: 'app' });
    const { user } = await runtime.inspectContainer(id);
    await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'a', content: text('x') }],
      containerUser: user,
    });
    expect(await listing(id)).toBe('a 400 1000:1000 -> ..data/a\n');
  });

  it('applies an explicit owner and mode', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'tls.key', content: text('k') }],
      mode: 0o440,
      owner: { uid: 1234, gid: 5678 },
    });
    expect(await listing(id)).toBe('tls.key 440 1234:5678 -> ..data/tls.key\n');
  });

  it('replaces the whole set: changed contents, new names added, dropped names removed', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, user: '1000:1000' });
    await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [
        { name: 'a', content: text('a1') },
        { name: 'b', content: text('b1') },
      ],
    });
    // A file of the application's own in the same directory is left alone.
    await shIn(id, 'echo mine > /run/secrets/app-owned');
    const second = await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [
        { name: 'b', content: text('b2') },
        { name: 'c', content: text('c2') },
      ],
    });
    expect(await listing(id)).toBe(
      'app-owned 644 0:0 -> \nb 400 1000:1000 -> ..data/b\nc 400 1000:1000 -> ..data/c\n',
    );
    expect((await read(id, '/run/secrets/b')).toString()).toBe('b2');
    expect((await read(id, '/run/secrets/c')).toString()).toBe('c2');
    expect(await dsoEntries(id)).toEqual(['..data', `..dso_${second.generation}`]);

    await runtime.writeFiles(id, { target: '/run/secrets', files: [] });
    expect(await listing(id)).toBe('app-owned 644 0:0 -> \n');
  });

  it('fails with DSO_DOCKER_TARGET_NOT_TMPFS and writes nothing when the target is not a tmpfs', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    const error = await failureOf(
      runtime.writeFiles(id, { target: '/tmp', files: [{ name: 'a', content: text('x') }] }),
    );
    expect(error.code).toBe('DSO_DOCKER_TARGET_NOT_TMPFS');
    expect(error.message).toBe(
      `/tmp in container ${id} is not a tmpfs: add --tmpfs /tmp (docker run) or a tmpfs mount ` +
        '(compose) so secret files stay in memory',
    );
    expect(await shIn(id, 'ls -A /tmp')).toBe('');
    // A directory inside a tmpfs is not the mount point either.
    await shIn(id, 'mkdir /run/secrets/sub');
    expect(
      (
        await failureOf(
          runtime.writeFiles(id, {
            target: '/run/secrets/sub',
            files: [{ name: 'a', content: text('x') }],
          }),
        )
      ).code,
    ).toBe('DSO_DOCKER_TARGET_NOT_TMPFS');
    expect((await failureOf(runtime.writeFiles(id, { target: '/missing', files: [] }))).code).toBe(
      'DSO_DOCKER_TARGET_NOT_TMPFS',
    );
  });

  it('works on a read-only root filesystem with a tmpfs target', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, readonlyRootfs: true, user: '1000:1000' });
    await expect(shIn(id, 'touch /root/x')).rejects.toThrow(/Read-only file system/);
    await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'a', content: text('ro') }],
    });
    expect((await read(id, '/run/secrets/a', '1000')).toString()).toBe('ro');
  });

  it('works as root without any capability (cap-drop ALL) and still removes old generations', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, capDrop: ['ALL'] });
    await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'a', content: text('1') }],
    });
    const second = await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'a', content: text('2') }],
    });
    expect((await read(id, '/run/secrets/a')).toString()).toBe('2');
    expect(await dsoEntries(id)).toEqual(['..data', `..dso_${second.generation}`]);
  });

  it('keeps the previous set intact and leaves no staging directory when the tmpfs fills mid-way', async () => {
    const { id } = await pool.create({ tmpfs: { '/run/secrets': 'size=64k' } });
    const first = await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [
        { name: 'a', content: text('old-a') },
        { name: 'b', content: text('old-b') },
      ],
    });
    const before = await listing(id);
    // The first file fits, the second does not: tar fails after writing part of the set.
    const error = await failureOf(
      runtime.writeFiles(id, {
        target: '/run/secrets',
        files: [
          { name: 'a', content: text('new-a') },
          { name: 'big', content: new Uint8Array(256 * 1024).fill(7) },
          { name: 'c', content: text('new-c') },
        ],
      }),
    );
    expect(error.code).toBe('DSO_DOCKER_EXEC_FAILED');
    expect(error.details).toMatchObject({ stage: 'staging', exitCode: 84 });
    expect(error.message).toContain('previous set is unchanged');
    expect(String(error.details.stderr)).toMatch(/No space left on device/);
    expect(await listing(id)).toBe(before);
    expect((await read(id, '/run/secrets/a')).toString()).toBe('old-a');
    expect((await read(id, '/run/secrets/b')).toString()).toBe('old-b');
    expect(await dsoEntries(id)).toEqual(['..data', `..dso_${first.generation}`]);
  });

  it('lets a reader inside see all old or all new files while 10-file writes succeed and fail halfway', async () => {
    const { id } = await pool.create({ tmpfs: { '/run/secrets': 'size=128k' } });
    const names = Array.from({ length: 10 }, (_, index) => `f${index}`);
    const set = (tag: string, big?: number) =>
      names.map((name, index) => ({
        name,
        // In a failing set the sixth file does not fit: the write breaks halfway through.
        content:
          big !== undefined && index === big
            ? new Uint8Array(256 * 1024).fill(65)
            : text(`${tag}:${name}`),
      }));
    await runtime.writeFiles(id, { target: '/run/secrets', files: set('g0') });
    // A reader inside the container: each round reads all ten through ..data resolved once
    // and records which generations it saw (one line per round, the tags sorted uniquely).
    const reader = execIn(id, [
      'sh',
      '-c',
      'end=$(( $(date +%s) + 60 )); : > /tmp/rounds; ' +
        'while [ ! -e /tmp/stop ] && [ "$(date +%s)" -lt "$end" ]; do ' +
        '(cd /run/secrets/..data 2>/dev/null && cat f0 f1 f2 f3 f4 f5 f6 f7 f8 f9 2>/dev/null) | ' +
        "tr ':' '\\n' | grep '^g' | sort -u | tr '\\n' ' ' >> /tmp/rounds; echo >> /tmp/rounds; done",
    ]);
    let failed = 0;
    for (let round = 1; round <= 20; round += 1) {
      // Every other write breaks at the sixth file (tmpfs full) and must change nothing.
      const breaks = round % 2 === 0;
      try {
        await runtime.writeFiles(id, {
          target: '/run/secrets',
          files: set(`g${round}`, breaks ? 5 : undefined),
        });
        expect(breaks).toBe(false);
      } catch (error) {
        expect(breaks).toBe(true);
        expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_EXEC_FAILED');
        failed += 1;
      }
    }
    await shIn(id, 'touch /tmp/stop');
    await reader;
    const rounds = (await shIn(id, 'cat /tmp/rounds'))
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => line !== '');
    expect(failed).toBe(10);
    expect(rounds.length).toBeGreaterThan(20);
    // Every complete round saw exactly one generation, and never one from a failed write.
    const seen = new Set<string>();
    for (const round of rounds) {
      const tags = round.split(' ');
      expect(tags).toHaveLength(1);
      seen.add(tags[0] as string);
    }
    for (const tag of seen) expect(Number(tag.slice(1)) % 2 === 0 && tag !== 'g0').toBe(false);
    expect((await read(id, '/run/secrets/f9')).toString()).toBe('g19:f9');
  });

  it('refuses a name that is a symlink dso did not write, and leaves it alone', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'a', content: text('old-a') }],
    });
    await shIn(id, 'ln -s /etc/hostname /run/secrets/b');
    const error = await failureOf(
      runtime.writeFiles(id, {
        target: '/run/secrets',
        files: [
          { name: 'a', content: text('new-a') },
          { name: 'b', content: text('new-b') },
        ],
      }),
    );
    expect(error.code).toBe('DSO_DOCKER_TARGET_CONFLICT');
    expect(error.message).toContain('/run/secrets/b is a symlink dso did not write');
    expect((await shIn(id, 'readlink /run/secrets/b')).trim()).toBe('/etc/hostname');
    expect((await read(id, '/run/secrets/a')).toString()).toBe('old-a');
  });

  it('refuses with DSO_DOCKER_TARGET_CONFLICT when a name is a real directory, keeping the old set', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    const first = await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'a', content: text('old-a') }],
    });
    await shIn(id, 'mkdir /run/secrets/b');
    const error = await failureOf(
      runtime.writeFiles(id, {
        target: '/run/secrets',
        files: [
          { name: 'a', content: text('new-a') },
          { name: 'b', content: text('new-b') },
        ],
      }),
    );
    expect(error.code).toBe('DSO_DOCKER_TARGET_CONFLICT');
    expect(error.message).toContain('/run/secrets/b exists and is not a symlink');
    expect((await read(id, '/run/secrets/a')).toString()).toBe('old-a');
    expect(await dsoEntries(id)).toEqual(['..data', `..dso_${first.generation}`]);
  });

  it('runs concurrent writes to one container one after another', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    const results = await Promise.all(
      Array.from({ length: 5 }, (_, index) =>
        runtime.writeFiles(id, {
          target: '/run/secrets',
          files: [{ name: 'v', content: text(`version-${index}`) }],
        }),
      ),
    );
    const last = results.at(-1);
    expect((await read(id, '/run/secrets/v')).toString()).toBe('version-4');
    expect(await dsoEntries(id)).toEqual(['..data', `..dso_${last?.generation}`]);
  });

  it('throws DSO_DOCKER_USER_UNRESOLVED when the user name is not in /etc/passwd', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, user: 'app' });
    await shIn(id, "sed -i '/^app:/d' /etc/passwd");
    const error = await failureOf(
      runtime.writeFiles(id, {
        target: '/run/secrets',
        files: [{ name: 'a', content: text('x') }],
      }),
    );
    expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    expect(error.message).toContain('user app is not in /etc/passwd');
    expect(await dsoEntries(id)).toEqual([]);
  });

  it('throws DSO_DOCKER_NO_SHELL when the image has no sh', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    await shIn(id, 'rm /bin/sh');
    const error = await failureOf(
      runtime.writeFiles(id, {
        target: '/run/secrets',
        files: [{ name: 'a', content: text('x') }],
      }),
    );
    expect(error.code).toBe('DSO_DOCKER_NO_SHELL');
    expect(error.message).toContain('needs sh and tar');
  });

  it('throws DSO_DOCKER_CONTAINER_NOT_RUNNING and DSO_DOCKER_CONTAINER_NOT_FOUND', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, start: false });
    const request = { target: '/run/secrets', files: [{ name: 'a', content: text('x') }] };
    expect((await failureOf(runtime.writeFiles(id, request))).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_RUNNING',
    );
    expect((await failureOf(runtime.writeFiles(`dso-test-${randomUUID()}`, request))).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
    // Without the inspect (owner or containerUser given), the exec says the same.
    const trusted = { ...request, containerUser: '' };
    expect((await failureOf(runtime.writeFiles(id, trusted))).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_RUNNING',
    );
    expect((await failureOf(runtime.writeFiles(`dso-test-${randomUUID()}`, trusted))).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
  });

  it('validates before reaching the engine and honours an aborted signal', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    expect(
      (
        await failureOf(
          runtime.writeFiles(id, {
            target: '/run/secrets',
            files: [{ name: '..data', content: text('x') }],
          }),
        )
      ).code,
    ).toBe('DSO_DOCKER_INVALID_REQUEST');
    expect(
      (
        await failureOf(
          runtime.writeFiles(id, {
            target: '/run/secrets',
            files: [{ name: 'a', content: text('x') }],
            signal: AbortSignal.abort(),
          }),
        )
      ).code,
    ).toBe('DSO_DOCKER_ABORTED');
    expect(await dsoEntries(id)).toEqual([]);
  });

  it("never puts a value in argv, env, events, inspect, diff, logs or anywhere in the engine's state", async () => {
    const canary = `dso-canary-${randomUUID()}`;
    const control = `dso-control-${randomUUID()}`;
    const since = Math.floor(Date.now() / 1000) - 1;
    const { id } = await pool.create({ tmpfs: SECRETS, user: '1000:1000' });
    // Positive control: a value written to the writable layer IS found by the same search.
    await shIn(id, `echo ${control} > /root/control`);
    await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [
        { name: 'canary', content: text(canary) },
        { name: 'other', content: text('x') },
      ],
    });
    expect((await read(id, '/run/secrets/canary')).toString()).toBe(canary);

    const container = docker.getContainer(id);
    const info = await container.inspect();
    expect(JSON.stringify(info)).not.toContain(canary);

    // exec_create / exec_start events carry the full command line to every subscriber.
    const eventStream = await docker.getEvents({
      since,
      until: Math.floor(Date.now() / 1000) + 1,
      filters: { container: [id] },
    });
    let events = '';
    for await (const chunk of eventStream as AsyncIterable<Buffer>) events += chunk.toString();
    expect(events).toContain(engine.kind === 'podman' ? '"Action":"exec"' : 'exec_create');
    expect(events).not.toContain(canary);

    if (engine.kind === 'docker') {
      // The exec we ran is recorded with its command line: it holds the script, never the value.
      const execIds = events
        .split('\n')
        .filter((line) => line.includes('exec_create') && line.includes('dso-write'))
        .map(
          (line) =>
            (JSON.parse(line) as { Actor: { Attributes: { execID: string } } }).Actor.Attributes
              .execID,
        );
      expect(execIds).toHaveLength(1);
      const exec = await docker.getExec(execIds[0] ?? '').inspect();
      expect(exec.ProcessConfig.user).toBe('0:0');
      expect(exec.ProcessConfig.arguments).toContain('/run/secrets');
      expect(JSON.stringify(exec)).not.toContain(canary);
    } else {
      // Podman's exec events name no exec and carry no command line.
      expect(events).not.toContain('dso-write');
      expect(events).not.toContain('execID');
    }

    const changes: Array<{ Path: string; Kind: number }> = (await container.changes()) ?? [];
    expect(changes.map((change) => change.Path)).toContain('/root/control');
    // The engine adds the mount point itself to the writable layer; nothing below it lands there.
    expect(changes.filter((change) => change.Path.startsWith('/run/secrets/'))).toEqual([]);
    expect(JSON.stringify(changes)).not.toContain(canary);

    const logs = await container.logs({ stdout: true, stderr: true });
    expect(logs.toString()).not.toContain(canary);

    const roots = ENGINE_STATE_ROOTS;
    expect(roots).toContain(engine.dataRoot);
    const grep = async (needle: string) =>
      run('grep', ['-r', '-l', '--binary-files=text', '-F', needle, ...roots]).then(
        (found) => found.stdout,
        (error: { code?: number; stdout?: string }) => {
          // grep exits 1 when nothing matches, 2 on an error (unreadable path).
          if (error.code === 1) return '';
          throw error;
        },
      );
    const upperDir = (info.GraphDriver.Data as unknown as { UpperDir: string }).UpperDir;
    expect(await grep(control)).toContain(upperDir);
    expect(await grep(canary)).toBe('');
  });
});

describe('writeFiles on hardened containers', () => {
  const one = [{ name: 'a', content: text('canary-hardened') }];

  it('writes as the owner when --cap-drop ALL leaves root no CAP_CHOWN, on a read-only root too', async () => {
    const { id } = await pool.create({
      tmpfs: SECRETS,
      capDrop: ['ALL'],
      user: '1000:1000',
      readonlyRootfs: true,
    });
    const first = await runtime.writeFiles(id, { target: '/run/secrets', files: one });
    expect(await listing(id)).toBe('a 400 1000:1000 -> ..data/a\n');
    expect((await read(id, '/run/secrets/a', '1000:1000')).toString()).toBe('canary-hardened');
    const second = await runtime.writeFiles(id, {
      target: '/run/secrets',
      files: [{ name: 'a', content: text('2') }],
    });
    expect((await read(id, '/run/secrets/a', '1000:1000')).toString()).toBe('2');
    expect(await dsoEntries(id)).toEqual(['..data', `..dso_${second.generation}`]);
    expect(first.generation).not.toBe(second.generation);
    // A name resolves the same way: the owner is what the container's /etc/passwd says.
    const named = await pool.create({ tmpfs: SECRETS, capDrop: ['ALL'], user: 'app' });
    await runtime.writeFiles(named.id, { target: '/run/secrets', files: one });
    expect(await listing(named.id)).toBe('a 400 1000:1000 -> ..data/a\n');
  });

  it('writes as the owner into a tmpfs only the owner may write (owned by 1000, mode 0700)', async () => {
    const { id } = await pool.create({
      tmpfs: { '/run/secrets': OWNERS_TMPFS },
      capDrop: ['ALL'],
      user: '1000:1000',
    });
    await runtime.writeFiles(id, { target: '/run/secrets', files: one });
    expect((await read(id, '/run/secrets/a', '1000:1000')).toString()).toBe('canary-hardened');
  });

  it('fails with DSO_DOCKER_TARGET_NOT_WRITABLE, not retryable, when root lacks CAP_DAC_OVERRIDE for the tmpfs', async () => {
    const { id } = await pool.create({
      tmpfs: { '/run/secrets': OWNERS_TMPFS },
      capDrop: ['ALL'],
      user: '1000:1000',
    });
    // Root's own files need no chown: root writes, and may not enter the owner's tmpfs.
    const error = await failureOf(
      runtime.writeFiles(id, { target: '/run/secrets', files: one, owner: { uid: 0, gid: 0 } }),
    );
    expect(error.code).toBe('DSO_DOCKER_TARGET_NOT_WRITABLE');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('CAP_DAC_OVERRIDE');
    expect(error.message).toContain('volume-driver=dso');
    expect(error.message).toContain('user 0 cannot create entries in /run/secrets');
    expect(error.message).not.toContain('canary');
    expect(await dsoEntries(id)).toEqual([]);
  });

  it('fails with DSO_DOCKER_NO_CAP_CHOWN, not retryable, when neither root may chown nor the owner write', async () => {
    const { id } = await pool.create({
      tmpfs: { '/run/secrets': 'size=1m,mode=0755' },
      capDrop: ['ALL'],
      user: '1000:1000',
    });
    const error = await failureOf(runtime.writeFiles(id, { target: '/run/secrets', files: one }));
    expect(error.code).toBe('DSO_DOCKER_NO_CAP_CHOWN');
    expect(error.retryable).toBe(false);
    expect(error.details).toMatchObject({ writeAs: '1000:1000' });
    expect(error.message).toContain('no CAP_CHOWN');
    expect(error.message).toContain('--cap-add CHOWN');
    expect(error.message).toContain('volume-driver=dso');
    expect(await dsoEntries(id)).toEqual([]);
  });

  it('gives files away with CAP_CHOWN alone (no CAP_FOWNER, no CAP_DAC_OVERRIDE)', async () => {
    // The pool has no cap-add: a container of its run, removed with the rest by its label.
    const container = await docker.createContainer({
      name: `dso-test-${randomUUID()}`,
      Image: TEST_IMAGE,
      Cmd: ['sleep', '3600'],
      User: '1000:1000',
      Labels: { [TEST_LABEL]: pool.runId },
      HostConfig: {
        NetworkMode: 'none',
        Tmpfs: { '/run/secrets': 'size=1m,mode=0755' },
        CapDrop: ['ALL'],
        CapAdd: ['CHOWN'],
      },
    });
    await container.start();
    await runtime.writeFiles(container.id, { target: '/run/secrets', files: one, mode: 0o440 });
    expect(await listing(container.id)).toBe('a 440 1000:1000 -> ..data/a\n');
  });

  it('writes as the owner into its own tmpfs when root has CAP_CHOWN but no CAP_DAC_OVERRIDE, and says so when the owner cannot either', async () => {
    const create = async (tmpfs: string) => {
      const container = await docker.createContainer({
        name: `dso-test-${randomUUID()}`,
        Image: TEST_IMAGE,
        Cmd: ['sleep', '3600'],
        User: '1000:1000',
        Labels: { [TEST_LABEL]: pool.runId },
        HostConfig: {
          NetworkMode: 'none',
          Tmpfs: { '/run/secrets': tmpfs },
          CapDrop: ['ALL'],
          CapAdd: ['CHOWN'],
        },
      });
      await container.start();
      return container.id;
    };
    const owners = await create(OWNERS_TMPFS);
    await runtime.writeFiles(owners, { target: '/run/secrets', files: one });
    // Root there cannot enter the owner's 0700 tmpfs either: read as the owner.
    expect((await read(owners, '/run/secrets/a', '1000:1000')).toString()).toBe('canary-hardened');
    expect((await shIn(owners, 'stat -L -c "%a %u:%g" /run/secrets/a', '1000:1000')).trim()).toBe(
      '400 1000:1000',
    );

    // Another user's: Podman's tmpfs takes no uid=, so there root (it has CAP_CHOWN) gives it.
    const others = await create(
      engine.kind === 'podman' ? 'size=1m,mode=0700' : 'size=1m,uid=2000,mode=0700',
    );
    if (engine.kind === 'podman') await shIn(others, 'chown 2000 /run/secrets');
    expect((await shIn(others, 'stat -c "%a %u" /run/secrets')).trim()).toBe('700 2000');
    const error = await failureOf(
      runtime.writeFiles(others, { target: '/run/secrets', files: one }),
    );
    expect(error.code).toBe('DSO_DOCKER_TARGET_NOT_WRITABLE');
    expect(error.retryable).toBe(false);
    expect(error.details).toMatchObject({ writeAs: '1000:1000' });
    expect(error.message).toContain('owner 1000:1000 cannot write it either');
  });

  it('fails with DSO_DOCKER_TARGET_READ_ONLY, not retryable, when the tmpfs is mounted :ro', async () => {
    const { id } = await pool.create({ tmpfs: { '/run/secrets': 'ro,size=1m' } });
    const error = await failureOf(runtime.writeFiles(id, { target: '/run/secrets', files: one }));
    expect(error.code).toBe('DSO_DOCKER_TARGET_READ_ONLY');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('read-only');
    expect(error.message).toContain('volume-driver=dso');
  });
});

describe('the target lock', () => {
  const one = [{ name: 'a', content: text('canary-lock') }];

  /** Starts the write script by hand, as a write the runtime gave up on: it holds the lock. */
  function startHeldWrite(id: string) {
    const child = spawn(
      'docker',
      [
        'exec',
        '-i',
        '-u',
        '0:0',
        id,
        'sh',
        '-c',
        WRITE_SCRIPT,
        'dso-write',
        '/run/secrets',
        `held_${randomUUID().slice(0, 8)}`,
        '400',
        '0:0',
        'held',
      ],
      { stdio: ['pipe', 'ignore', 'ignore'] },
    );
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    return {
      /** Ends its stdin: tar sees an empty archive, the script fails and releases the lock. */
      async release() {
        child.stdin.end();
        return exited;
      },
      kill() {
        child.kill('SIGKILL');
      },
    };
  }

  async function lockHolder(id: string): Promise<string | undefined> {
    const pid = (await shIn(id, 'cat /run/secrets/..lock/pid 2>/dev/null; true')).trim();
    return pid === '' ? undefined : pid;
  }

  it('takes over a lock whose writer is gone', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    await shIn(id, 'mkdir /run/secrets/..lock && echo "999999 1_dead" > /run/secrets/..lock/pid');
    await runtime.writeFiles(id, { target: '/run/secrets', files: one });
    expect((await read(id, '/run/secrets/a')).toString()).toBe('canary-lock');
    expect(await dsoEntries(id)).not.toContain('..lock');
  });

  it('waits for a write still running, then writes; reports DSO_DOCKER_TARGET_BUSY (retryable) after 10 s', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS });
    const held = startHeldWrite(id);
    try {
      await waitFor('the held write to take the lock', () => lockHolder(id));
      const waiting = runtime.writeFiles(id, { target: '/run/secrets', files: one });
      await held.release();
      await waiting;
      expect((await read(id, '/run/secrets/a')).toString()).toBe('canary-lock');

      const busy = startHeldWrite(id);
      try {
        await waitFor('the second held write to take the lock', () => lockHolder(id));
        const error = await failureOf(
          runtime.writeFiles(id, {
            target: '/run/secrets',
            files: [{ name: 'a', content: text('two') }],
          }),
        );
        expect(error.code).toBe('DSO_DOCKER_TARGET_BUSY');
        expect(error.retryable).toBe(true);
        expect((await read(id, '/run/secrets/a')).toString()).toBe('canary-lock');
      } finally {
        busy.kill();
      }
    } finally {
      held.kill();
    }
  }, 60_000);

  it('reports a stale lock root may not remove (another user planted it, no CAP_DAC_OVERRIDE) as DSO_DOCKER_TARGET_TAMPERED at once', async () => {
    const { id } = await pool.create({ tmpfs: SECRETS, capDrop: ['ALL'], user: '1000:1000' });
    await shIn(
      id,
      'mkdir /run/secrets/..lock && echo "999999 1_dead" > /run/secrets/..lock/pid',
      '1000:1000',
    );
    const startedAt = performance.now();
    const error = await failureOf(
      runtime.writeFiles(id, { target: '/run/secrets', files: one, owner: { uid: 0, gid: 0 } }),
    );
    expect(error.code).toBe('DSO_DOCKER_TARGET_TAMPERED');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('cannot be removed');
    // Before, the script took the lock over again and again until the exec's deadline (30 s).
    expect(performance.now() - startedAt).toBeLessThan(5_000);
  }, 60_000);

  it.each([
    [
      'a live process of the container',
      'mkdir /run/secrets/..lock && (sleep 300 & echo "$! 1_x" > /run/secrets/..lock/pid) >/dev/null 2>&1',
      'is held by process',
    ],
    [
      'pid 1',
      'mkdir /run/secrets/..lock && echo "1 1_x" > /run/secrets/..lock/pid',
      'is held by process 1',
    ],
    [
      'a symlink to a directory',
      'mkdir -p /tmp/l && echo 1 > /tmp/l/pid && ln -s /tmp/l /run/secrets/..lock',
      'a symlink or a file',
    ],
    ['a dangling symlink', 'ln -s /nowhere /run/secrets/..lock', 'a symlink or a file'],
    ['a regular file', 'echo 1 > /run/secrets/..lock', 'a symlink or a file'],
    [
      'a directory whose pid is a fifo',
      'mkdir /run/secrets/..lock && mkfifo /run/secrets/..lock/pid',
      'is not a file dso wrote',
    ],
    [
      'a directory whose pid is a symlink',
      'mkdir /run/secrets/..lock && ln -s /proc/1/stat /run/secrets/..lock/pid',
      'is not a file dso wrote',
    ],
    [
      'a directory naming no process',
      'mkdir /run/secrets/..lock && echo nope > /run/secrets/..lock/pid',
      'names no process',
    ],
    ['an empty directory', 'mkdir /run/secrets/..lock', 'holds no writer'],
  ])(
    'reports a lock planted as %s as DSO_DOCKER_TARGET_TAMPERED at once, not retryable, changing nothing',
    async (_what, plant, reason) => {
      const { id } = await pool.create({ tmpfs: SECRETS });
      const first = await runtime.writeFiles(id, { target: '/run/secrets', files: one });
      await shIn(id, plant);
      const startedAt = performance.now();
      const error = await failureOf(
        runtime.writeFiles(id, {
          target: '/run/secrets',
          files: [{ name: 'a', content: text('2') }],
        }),
      );
      const elapsedMs = performance.now() - startedAt;
      expect(error.code).toBe('DSO_DOCKER_TARGET_TAMPERED');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain('/run/secrets/..lock');
      expect(error.message).toContain(reason);
      expect(error.details).toMatchObject({ path: '/run/secrets/..lock' });
      // A busy lock holds a write 10 s; a planted one is seen at once (an empty one after 1 s).
      expect(elapsedMs).toBeLessThan(5_000);
      expect((await read(id, '/run/secrets/a')).toString()).toBe('canary-lock');
      expect(await dsoEntries(id)).toEqual(['..data', `..dso_${first.generation}`, '..lock']);
    },
    30_000,
  );
});
