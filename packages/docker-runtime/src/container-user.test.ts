import { Readable } from 'node:stream';
import type Docker from 'dockerode';
import { pack } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import {
  lookupGroup,
  lookupPasswd,
  MAX_USER_DATABASE_BYTES,
  parseUserSpec,
  readArchiveEntry,
  readBounded,
  resolveContainerUser,
  resolveUserSpec,
  userDatabasesNeeded,
} from './container-user.js';
import type { EngineContext } from './engine-context.js';
import { DOCKER_DIALECT } from './engine-dialect.js';
import { toEngineError } from './engine-errors.js';
import { type DockerRuntimeError, isDockerRuntimeError } from './errors.js';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  '# a comment:x:5:5',
  'broken line',
  'weird:x:notanumber:1',
  'app:x:1000:1000:app:/home/app:/bin/sh',
  'twin:x:1000:2000::/:/bin/sh',
  'svc:x:1001:1002\r',
  '',
].join('\n');
const GROUP = ['root:x:0:', 'app:x:1000:', 'staff:x:50:app', 'svc:x:1002:\r', ''].join('\n');
const BOTH = { passwd: PASSWD, group: GROUP };

function failure(run: () => unknown): DockerRuntimeError {
  try {
    run();
  } catch (error) {
    if (isDockerRuntimeError(error)) return error;
    throw error;
  }
  throw new Error('expected a DockerRuntimeError');
}

async function rejection(promise: Promise<unknown>): Promise<DockerRuntimeError> {
  try {
    await promise;
  } catch (error) {
    if (isDockerRuntimeError(error)) return error;
    throw error;
  }
  throw new Error('expected a DockerRuntimeError');
}

async function tarOf(
  entries: {
    name: string;
    type?: 'file' | 'symlink' | 'directory';
    body?: string;
    link?: string;
  }[],
): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const chunk of archive) chunks.push(chunk as Buffer);
  })();
  for (const entry of entries) {
    if (entry.type === 'symlink')
      archive.entry({ name: entry.name, type: 'symlink', linkname: entry.link ?? '' });
    else if (entry.type === 'directory') archive.entry({ name: entry.name, type: 'directory' });
    else archive.entry({ name: entry.name }, entry.body ?? '');
  }
  archive.finalize();
  await done;
  return Buffer.concat(chunks);
}

describe('parseUserSpec and userDatabasesNeeded', () => {
  it.each([
    ['', '', undefined],
    ['app', 'app', undefined],
    ['1000', '1000', undefined],
    ['app:staff', 'app', 'staff'],
    ['1000:50', '1000', '50'],
    [':50', '', '50'],
    ['app:', 'app', undefined],
    ['a:b:c', 'a', 'b:c'],
  ])('splits %j into user %j and group %j', (spec, user, group) => {
    expect(parseUserSpec(spec)).toEqual({ user, group });
  });

  it.each([
    ['', false, false],
    ['1000:1000', false, false],
    [':0', false, false],
    ['1000', true, false],
    ['app', true, false],
    ['app:50', true, false],
    ['app:staff', true, true],
    ['1000:staff', false, true],
  ])('for %j reads passwd=%s group=%s', (spec, passwd, group) => {
    expect(userDatabasesNeeded(spec)).toEqual({ passwd, group });
  });
});

describe('lookupPasswd and lookupGroup', () => {
  it('finds a user by name or by uid, first entry first, skipping comments and bad lines', () => {
    expect(lookupPasswd(PASSWD, 'app')).toEqual({ uid: 1000, gid: 1000 });
    expect(lookupPasswd(PASSWD, 'twin')).toEqual({ uid: 1000, gid: 2000 });
    expect(lookupPasswd(PASSWD, '1000')).toEqual({ uid: 1000, gid: 1000 });
    expect(lookupPasswd(PASSWD, '01000')).toEqual({ uid: 1000, gid: 1000 });
    expect(lookupPasswd(PASSWD, 'svc')).toEqual({ uid: 1001, gid: 1002 });
    expect(lookupPasswd(PASSWD, '# a comment')).toBeUndefined();
    expect(lookupPasswd(PASSWD, 'weird')).toBeUndefined();
    expect(lookupPasswd(PASSWD, 'broken line')).toBeUndefined();
    expect(lookupPasswd(PASSWD, 'nobody')).toBeUndefined();
    expect(lookupPasswd('', 'root')).toBeUndefined();
  });

  it('finds a group by name only', () => {
    expect(lookupGroup(GROUP, 'staff')).toBe(50);
    expect(lookupGroup(GROUP, 'svc')).toBe(1002);
    expect(lookupGroup(GROUP, '50')).toBeUndefined();
    expect(lookupGroup(GROUP, 'wheel')).toBeUndefined();
  });
});

describe('resolveUserSpec', () => {
  it.each([
    ['', { uid: 0, gid: 0 }],
    ['0', { uid: 0, gid: 0 }],
    ['root', { uid: 0, gid: 0 }],
    ['1000', { uid: 1000, gid: 1000 }],
    ['4321', { uid: 4321, gid: 0 }],
    ['1000:1000', { uid: 1000, gid: 1000 }],
    ['1000:7', { uid: 1000, gid: 7 }],
    ['app', { uid: 1000, gid: 1000 }],
    ['app:app', { uid: 1000, gid: 1000 }],
    ['app:staff', { uid: 1000, gid: 50 }],
    ['app:0', { uid: 1000, gid: 0 }],
    ['1000:staff', { uid: 1000, gid: 50 }],
    [':staff', { uid: 0, gid: 50 }],
    [':', { uid: 0, gid: 0 }],
    ['svc', { uid: 1001, gid: 1002 }],
    ['2147483647:2147483647', { uid: 2147483647, gid: 2147483647 }],
  ])('resolves %j like the engine', (spec, owner) => {
    expect(resolveUserSpec(spec, BOTH, 'c1')).toEqual(owner);
  });

  it('resolves numeric users without any user database', () => {
    const none = { passwd: undefined, group: undefined };
    expect(resolveUserSpec('', none, 'c1')).toEqual({ uid: 0, gid: 0 });
    expect(resolveUserSpec('1000', none, 'c1')).toEqual({ uid: 1000, gid: 0 });
    expect(resolveUserSpec('1000:1000', none, 'c1')).toEqual({ uid: 1000, gid: 1000 });
  });

  it.each([
    ['nobody', BOTH, 'user nobody is not in its /etc/passwd'],
    ['app:wheel', BOTH, 'group wheel is not in its /etc/group'],
    ['app', { passwd: undefined, group: undefined }, 'it has no /etc/passwd'],
    ['1000:staff', { passwd: PASSWD, group: undefined }, 'it has no /etc/group'],
    ['2147483648', BOTH, 'uid 2147483648 is larger than 2147483647'],
    ['0:99999999999', BOTH, 'gid 99999999999 is larger'],
  ])(
    'throws DSO_DOCKER_USER_UNRESOLVED for %j, naming it and the container',
    (spec, dbs, reason) => {
      const error = failure(() => resolveUserSpec(spec, dbs, 'web-1'));
      expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
      expect(error.message).toContain(`user ${JSON.stringify(spec)} of container web-1`);
      expect(error.message).toContain(reason);
      expect(error.message).toContain('numeric uid:gid');
      expect(error.details).toMatchObject({ containerId: 'web-1', user: spec });
    },
  );
});

describe('readArchiveEntry and readBounded', () => {
  it('reads a file, a symlink, and refuses other types and oversized files', async () => {
    expect(await readArchiveEntry(await tarOf([{ name: 'passwd', body: PASSWD }]), 1024)).toEqual({
      kind: 'file',
      text: PASSWD,
    });
    expect(
      await readArchiveEntry(
        await tarOf([{ name: 'passwd', type: 'symlink', link: '../usr/etc/passwd' }]),
        1024,
      ),
    ).toEqual({ kind: 'symlink', target: '../usr/etc/passwd' });
    expect(
      await readArchiveEntry(await tarOf([{ name: 'passwd', type: 'directory' }]), 1024),
    ).toEqual({ kind: 'other', type: 'directory' });
    expect(
      await readArchiveEntry(await tarOf([{ name: 'passwd', body: 'x'.repeat(1025) }]), 1024),
    ).toEqual({ kind: 'too-large' });
    expect(await readArchiveEntry(await tarOf([]), 1024)).toEqual({
      kind: 'other',
      type: 'empty archive',
    });
  });

  it('stops reading a stream as soon as it passes the limit', async () => {
    let pulled = 0;
    let finished = false;
    async function* chunks() {
      try {
        for (let index = 0; index < 100; index += 1) {
          pulled += 1;
          yield new Uint8Array(100);
        }
      } finally {
        finished = true;
      }
    }
    expect(await readBounded(chunks(), 250)).toBeUndefined();
    expect(pulled).toBe(3);
    expect(finished).toBe(true);
    expect((await readBounded(chunks(), 100_000))?.byteLength).toBe(10_000);
  });
});

/** A context whose engine serves `files` (path → tar entry) through a fake archive GET. */
function fakeContext(
  user: string,
  files: Record<string, { body?: string; link?: string; stream?: () => Readable }>,
) {
  const reads: string[] = [];
  const streams: Readable[] = [];
  let tracked = 0;
  const docker = {
    getContainer: (id: string) => ({
      inspect: async () => {
        if (id === 'gone') throw Object.assign(new Error('no such container'), { statusCode: 404 });
        return { Id: `full-${id}`, Config: { User: user } };
      },
      getArchive: async ({ path }: { path: string }) => {
        reads.push(`${id} ${path}`);
        const file = files[path];
        if (file === undefined) {
          throw Object.assign(
            new Error(`(HTTP code 404) no such container - Could not find the file ${path}`),
            { statusCode: 404 },
          );
        }
        const stream =
          file.stream?.() ??
          Readable.from([
            await tarOf([
              file.link === undefined
                ? { name: 'f', body: file.body ?? '' }
                : { name: 'f', type: 'symlink', link: file.link },
            ]),
          ]);
        streams.push(stream);
        return stream;
      },
    }),
  } as unknown as Docker;
  const context: EngineContext = {
    docker,
    dialect: { ...DOCKER_DIALECT, display: 'Docker fake' },
    host: 'unix:///fake.sock',
    settings: { connectTimeoutMs: 1000, requestTimeoutMs: 1000, writeTimeoutMs: 1000 },
    closed: new AbortController().signal,
    replacing: new Set(),
    track: () => {
      tracked += 1;
      return () => {
        tracked -= 1;
      };
    },
    assertOpen: () => {},
    request: async (operation, _caller, containerId, call) => {
      try {
        return await call(new AbortController().signal);
      } catch (error) {
        throw toEngineError(error, { operation, endpoint: 'unix:///fake.sock', containerId });
      }
    },
  };
  return { context, reads, streams, tracked: () => tracked };
}

describe('resolveContainerUser', () => {
  it('reads no file for "" and uid:gid, and only passwd for a name', async () => {
    for (const [user, owner] of [
      ['', { uid: 0, gid: 0 }],
      ['5:6', { uid: 5, gid: 6 }],
    ] as const) {
      const fake = fakeContext(user, {});
      expect(await resolveContainerUser(fake.context, 'c1', {})).toEqual(owner);
      expect(fake.reads).toEqual([]);
    }
    const fake = fakeContext('app', { '/etc/passwd': { body: PASSWD } });
    expect(await resolveContainerUser(fake.context, 'c1', {})).toEqual({ uid: 1000, gid: 1000 });
    expect(fake.reads).toEqual(['full-c1 /etc/passwd']);
    expect(fake.tracked()).toBe(0);
    expect(fake.streams.every((stream) => stream.destroyed)).toBe(true);
  });

  it('follows symlinks to the user databases inside the container', async () => {
    const fake = fakeContext('app:staff', {
      '/etc/passwd': { link: '../usr/lib/passwd' },
      '/usr/lib/passwd': { body: PASSWD },
      '/etc/group': { link: '/usr/lib/group' },
      '/usr/lib/group': { body: GROUP },
    });
    expect(await resolveContainerUser(fake.context, 'c1', {})).toEqual({ uid: 1000, gid: 50 });
    expect(fake.reads).toEqual([
      'full-c1 /etc/passwd',
      'full-c1 /usr/lib/passwd',
      'full-c1 /etc/group',
      'full-c1 /usr/lib/group',
    ]);
  });

  it('treats a missing /etc/passwd as no entries: numeric users resolve, names do not', async () => {
    expect(await resolveContainerUser(fakeContext('1000', {}).context, 'c1', {})).toEqual({
      uid: 1000,
      gid: 0,
    });
    const error = await rejection(resolveContainerUser(fakeContext('app', {}).context, 'c1', {}));
    expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    expect(error.message).toContain('no /etc/passwd');
  });

  it('refuses a symlink loop and an oversized file, destroying the streams', async () => {
    const loop = fakeContext('app', {
      '/etc/passwd': { link: 'passwd2' },
      '/etc/passwd2': { link: 'passwd' },
    });
    const looped = await rejection(resolveContainerUser(loop.context, 'c1', {}));
    expect(looped.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    expect(looped.message).toContain('more than 8 symlinks');

    const huge = fakeContext('app', {
      '/etc/passwd': {
        // An endless stream: only the bound ends the read.
        stream: () =>
          Readable.from(
            (function* () {
              for (;;) yield Buffer.alloc(64 * 1024, 0x23);
            })(),
          ),
      },
    });
    const tooLarge = await rejection(resolveContainerUser(huge.context, 'c1', {}));
    expect(tooLarge.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    expect(tooLarge.message).toContain(`larger than ${MAX_USER_DATABASE_BYTES} bytes`);
    expect(huge.streams[0]?.destroyed).toBe(true);
    expect(huge.tracked()).toBe(0);
  });

  it('rejects a bad id and maps a missing container', async () => {
    const fake = fakeContext('', {});
    const bad = await rejection(resolveContainerUser(fake.context, '../etc', {}));
    expect(bad.code).toBe('DSO_DOCKER_INVALID_REQUEST');
    const gone = await rejection(resolveContainerUser(fake.context, 'gone', {}));
    expect(gone.code).toBe('DSO_DOCKER_CONTAINER_NOT_FOUND');
  });
});
