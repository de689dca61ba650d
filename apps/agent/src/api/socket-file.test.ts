import { chmod, lstat, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { createServer as createNetServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useApiTestServer } from './test-support/api-fixture.js';

let dir: string;
let socketPath: string;
let lines: string[];
const { start, call } = useApiTestServer((context) => {
  ({ dir, socketPath, lines } = context);
});

describe('startApiServer: the socket', () => {
  it('creates a missing directory 0755 and a socket whose mode is exactly socketMode', async () => {
    await start({ socketMode: 0o660 });
    const socket = await lstat(socketPath);
    expect(socket.isSocket()).toBe(true);
    expect(socket.mode & 0o7777).toBe(0o660);
    expect((await stat(join(dir, 'run'))).mode & 0o777).toBe(0o755);
    // Nothing left of the staging directory.
    expect(await readdir(join(dir, 'run'))).toEqual(['agent.sock']);
  });

  it('applies another mode exactly, and leaves an existing directory mode alone', async () => {
    const existing = join(dir, 'private');
    await mkdir(existing);
    await chmod(existing, 0o700);
    socketPath = join(existing, 'agent.sock');
    await start({ socketPath, socketMode: 0o600 });
    expect((await lstat(socketPath)).mode & 0o7777).toBe(0o600);
    expect((await stat(existing)).mode & 0o777).toBe(0o700);
  });

  it('gives the socket to a numeric group', async () => {
    const gid = process.getgid!();
    await start({ socketGroup: gid });
    expect((await lstat(socketPath)).gid).toBe(gid);
  });

  it.runIf(process.getuid?.() === 0)(
    'gives the socket to a group named in the group file (as root: any gid)',
    async () => {
      const groupFile = join(dir, 'group');
      await writeFile(groupFile, 'root:x:0:\ndso-test:x:4242:alice,bob\n');
      await start({ socketGroup: 'dso-test', groupFile });
      expect((await lstat(socketPath)).gid).toBe(4242);
    },
  );

  it('rejects an unknown group with DSO_AGENT_API_GROUP and leaves no socket', async () => {
    const groupFile = join(dir, 'group');
    await writeFile(groupFile, 'root:x:0:\n');
    await expect(start({ socketGroup: 'no-such-group', groupFile })).rejects.toMatchObject({
      code: 'DSO_AGENT_API_GROUP',
      message: expect.stringContaining('no-such-group'),
    });
    await expect(lstat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it.skipIf(process.getuid?.() === 0)(
    'rejects a group the agent is not in with DSO_AGENT_API_GROUP (not as root)',
    async () => {
      await expect(start({ socketGroup: 0 })).rejects.toMatchObject({
        code: 'DSO_AGENT_API_GROUP',
      });
      expect(await readdir(join(dir, 'run'))).toEqual([]);
    },
  );

  it('refuses a second server on the same path with DSO_AGENT_API_IN_USE; the first keeps serving', async () => {
    await start();
    const before = await lstat(socketPath);
    await expect(start()).rejects.toMatchObject({ code: 'DSO_AGENT_API_IN_USE' });
    const after = await lstat(socketPath);
    expect(after.ino).toBe(before.ino);
    expect((await call('GET', '/v1/health')).status).toBe(200);
    expect(await readdir(join(dir, 'run'))).toEqual(['agent.sock']);
  });

  it('replaces a stale socket file nothing listens on', async () => {
    // A socket file with no listener: bound elsewhere, renamed into place, then closed (node
    // unlinks only the name it bound).
    await mkdir(join(dir, 'run'));
    const bound = join(dir, 'old.sock');
    const old = createNetServer();
    await new Promise<void>((resolve) => old.listen(bound, resolve));
    await rename(bound, socketPath);
    await new Promise<void>((resolve) => old.close(() => resolve()));
    const stale = await lstat(socketPath);
    expect(stale.isSocket()).toBe(true);

    await start();
    expect((await lstat(socketPath)).ino).not.toBe(stale.ino);
    expect((await call('GET', '/v1/health')).json).toEqual({ ok: true });
    expect(lines.some((line) => line.includes('stale api socket removed'))).toBe(true);
  });

  it('refuses a path that is a regular file, and leaves it alone', async () => {
    await mkdir(join(dir, 'run'));
    await writeFile(socketPath, 'not a socket');
    await expect(start()).rejects.toMatchObject({ code: 'DSO_AGENT_API_PATH_TAKEN' });
    expect((await lstat(socketPath)).isFile()).toBe(true);
    expect(await readdir(join(dir, 'run'))).toEqual(['agent.sock']);
  });

  it('refuses a relative or overlong path with DSO_AGENT_API_SOCKET_PATH', async () => {
    await expect(start({ socketPath: 'run/agent.sock' })).rejects.toMatchObject({
      code: 'DSO_AGENT_API_SOCKET_PATH',
    });
    await expect(start({ socketPath: `/${'d'.repeat(100)}/a.sock` })).rejects.toMatchObject({
      code: 'DSO_AGENT_API_SOCKET_PATH',
    });
    // Short enough itself, but its staging path (`<dir>/.api-XXXXXX/s`) would not be.
    await expect(start({ socketPath: `/${'d'.repeat(94)}/a` })).rejects.toMatchObject({
      code: 'DSO_AGENT_API_SOCKET_PATH',
      message: expect.stringContaining('too deep'),
    });
  });

  it('close() removes the socket file, stops answering, and is idempotent', async () => {
    const server = await start();
    expect(server.path).toBe(socketPath);
    await Promise.all([server.close(), server.close()]);
    await server.close();
    await expect(lstat(socketPath)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(call('GET', '/v1/health')).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('close() leaves a file that is no longer its own', async () => {
    const server = await start();
    await rm(socketPath);
    await writeFile(socketPath, 'someone else');
    await server.close();
    expect((await lstat(socketPath)).isFile()).toBe(true);
  });
});
