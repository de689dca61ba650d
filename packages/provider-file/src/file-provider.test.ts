import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { link, mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { inspect } from 'node:util';
import {
  createProvider,
  isProviderError,
  type ProviderError,
  type SecretChange,
} from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { contentVersion, fsError } from './contained-file.js';
import { createFileProvider } from './file-provider.js';
import fileProvider from './index.js';

const CANARY = `canary-${randomBytes(8).toString('hex')}`;

let dir: string;
let certs: string;
let outside: string;
const cleanups: Array<() => Promise<void>> = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-file-provider-'));
  certs = join(dir, 'certs');
  outside = join(dir, 'outside');
  await mkdir(certs);
  await mkdir(outside);
  await writeFile(join(outside, 'shadow'), CANARY);
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  await rm(dir, { recursive: true, force: true });
});

function provider(options: { maxBytes?: number; watchPollIntervalMs?: number } = {}) {
  const created = createFileProvider({ name: 'files', roots: { certs }, ...options });
  cleanups.push(() => created.close());
  return created;
}

async function put(relative: string, content: string | Uint8Array): Promise<string> {
  const target = join(certs, relative);
  await mkdir(dirname(target), { recursive: true });
  const temp = join(dirname(target), `.tmp-${randomBytes(4).toString('hex')}`);
  await writeFile(temp, content);
  await rename(temp, target);
  return contentVersion(typeof content === 'string' ? Buffer.from(content) : content);
}

async function providerError(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isProviderError(error)) throw new Error(`expected a ProviderError, got ${inspect(error)}`);
  return error;
}

function expectNoCanary(error: unknown): void {
  expect(inspect(error, { depth: 10, showHidden: true })).not.toContain(CANARY);
}

describe('createFileProvider: reads', () => {
  it('serves a file under its root with a content-hash version', async () => {
    const version = await put('tls.key', 'key-material');
    const { value, version: resolved } = await provider().resolve({ path: 'certs/tls.key' });
    expect(value.revealText()).toBe('key-material');
    expect(resolved).toBe(version);
    expect(resolved).toMatch(/^[0-9a-f]{16}$/);
  });

  it('serves files in subdirectories, and binary content byte for byte', async () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, index) => index);
    await put('nested/deeper/blob', bytes);
    const { value } = await provider().resolve({ path: 'certs/nested/deeper/blob' });
    expect(Buffer.compare(value.reveal(), Buffer.from(bytes))).toBe(0);
  });

  it('serves only the current content: another version is NOT_FOUND', async () => {
    const first = await put('token', 'one');
    await put('token', 'two');
    const error = await providerError(provider().resolve({ path: 'certs/token', version: first }));
    expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(error.message).toContain('current content');
  });

  it('follows a symlink that stays inside its root (a Kubernetes-style ..data swap)', async () => {
    await mkdir(join(certs, '..2024_01'));
    await writeFile(join(certs, '..2024_01', 'tls.key'), 'first');
    await symlink('..2024_01', join(certs, '..data'));
    await symlink('..data/tls.key', join(certs, 'tls.key'));
    const files = provider();
    expect((await files.resolve({ path: 'certs/tls.key' })).value.revealText()).toBe('first');
    // Rotate: a new timestamped directory, then an atomic swap of ..data.
    await mkdir(join(certs, '..2024_02'));
    await writeFile(join(certs, '..2024_02', 'tls.key'), 'second');
    await symlink('..2024_02', join(certs, '..data_tmp'));
    await rename(join(certs, '..data_tmp'), join(certs, '..data'));
    expect((await files.resolve({ path: 'certs/tls.key' })).value.revealText()).toBe('second');
  });
});

describe('createFileProvider: nothing outside its roots', () => {
  it('refuses .., absolute paths, odd characters and empty segments before touching the filesystem', async () => {
    const files = provider();
    for (const path of [
      'certs/../outside/shadow',
      'certs/./tls.key',
      '/etc/shadow',
      'certs//tls.key',
      'certs/tls.key/',
      'certs\\..\\outside',
      'certs/a\0b',
      'certs/ space',
      'certs',
    ]) {
      const error = await providerError(files.resolve({ path }));
      expect(error.code, path).toBe('DSO_PROVIDER_NOT_FOUND');
      expectNoCanary(error);
    }
  });

  it('refuses a root it does not know, naming the configured roots', async () => {
    const error = await providerError(provider().resolve({ path: 'outside/shadow' }));
    expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(error.message).toContain('certs');
  });

  it('refuses a symlink whose target leaves the root, absolute or relative, at any depth', async () => {
    await symlink(join(outside, 'shadow'), join(certs, 'absolute'));
    await symlink('../outside/shadow', join(certs, 'relative'));
    await symlink(outside, join(certs, 'dirlink'));
    const files = provider();
    for (const path of ['certs/absolute', 'certs/relative', 'certs/dirlink/shadow']) {
      const error = await providerError(files.resolve({ path }));
      expect(error.code, path).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(error.message).toContain('outside root certs');
      expectNoCanary(error);
      expect((await providerError(files.probe!({ path }))).code).toBe('DSO_PROVIDER_NOT_FOUND');
    }
    expect(await files.list!()).toEqual([]);
  });

  it('serves a hard link inside the root (it is a file there), unlike a symlink out', async () => {
    // A hard link is a second name for the same file: whoever made it inside the root could
    // already write there. Documented, tested, so the behaviour is a decision.
    await link(join(outside, 'shadow'), join(certs, 'hard'));
    expect((await provider().resolve({ path: 'certs/hard' })).value.revealText()).toBe(CANARY);
  });

  it('refuses a directory, a FIFO and a symlink loop without hanging', async () => {
    await mkdir(join(certs, 'sub'));
    execFileSync('mkfifo', [join(certs, 'fifo')]);
    await symlink('loop', join(certs, 'loop'));
    const files = provider();
    for (const path of ['certs/sub', 'certs/fifo', 'certs/loop']) {
      const error = await providerError(files.resolve({ path }));
      expect(error.code, path).toBe('DSO_PROVIDER_NOT_FOUND');
    }
  });

  it('refuses a file larger than maxBytes with TOO_LARGE, in resolve and probe', async () => {
    await put('big', Buffer.alloc(2048, 1));
    const files = provider({ maxBytes: 1024 });
    for (const call of [
      () => files.resolve({ path: 'certs/big' }),
      () => files.probe!({ path: 'certs/big' }),
    ]) {
      const error = await providerError(call());
      expect(error).toMatchObject({ code: 'DSO_PROVIDER_TOO_LARGE', retryable: false });
      expect(error.message).toContain('maxBytes');
    }
    await put('small', Buffer.alloc(1024, 1));
    expect((await files.resolve({ path: 'certs/small' })).value.byteLength).toBe(1024);
  });

  it('refuses a 10 MiB file under the default limit without reading it', async () => {
    await put('huge', Buffer.alloc(10 * 1024 * 1024, 7));
    const error = await providerError(provider().resolve({ path: 'certs/huge' }));
    expect(error.code).toBe('DSO_PROVIDER_TOO_LARGE');
    expect(error.message).toContain('10485760');
  });

  it('reports a missing file as NOT_FOUND naming the path, and a missing root as UNAVAILABLE', async () => {
    const files = provider();
    const missing = await providerError(files.resolve({ path: 'certs/none' }));
    expect(missing).toMatchObject({ code: 'DSO_PROVIDER_NOT_FOUND', path: 'certs/none' });
    expect(missing.message).toContain('certs/none');
    await rename(certs, `${certs}.away`);
    const gone = await providerError(files.resolve({ path: 'certs/none' }));
    expect(gone).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE', retryable: true });
    expect(await files.health!()).toMatchObject({ ok: false });
    await rename(`${certs}.away`, certs);
    expect(await files.health!()).toMatchObject({ ok: true });
  });
});

describe('createFileProvider: probe', () => {
  it('returns the version resolve returns, and follows a rename-over write at once', async () => {
    const files = provider();
    await put('token', 'one');
    const resolved = await files.resolve({ path: 'certs/token' });
    expect(await files.probe!({ path: 'certs/token' })).toEqual({ version: resolved.version });
    const second = await put('token', 'two');
    expect(await files.probe!({ path: 'certs/token' })).toEqual({ version: second });
  });

  it('follows an in-place rewrite of the same size', async () => {
    const files = provider();
    await writeFile(join(certs, 'token'), 'aaaa');
    expect((await files.probe!({ path: 'certs/token' })).version).toBe(
      contentVersion(Buffer.from('aaaa')),
    );
    await writeFile(join(certs, 'token'), 'bbbb');
    expect((await files.probe!({ path: 'certs/token' })).version).toBe(
      contentVersion(Buffer.from('bbbb')),
    );
  });
});

describe('createFileProvider: list', () => {
  it('lists regular files under a prefix, segment by segment, skipping dot-files', async () => {
    await put('a/one', '1');
    await put('a/deep/two', '2');
    await put('ab', '3');
    await put('.hidden', 'h');
    await writeFile(join(certs, 'a', 'bad name'), 'x');
    const files = provider();
    expect(await files.list!()).toEqual(['certs/a/deep/two', 'certs/a/one', 'certs/ab']);
    expect(await files.list!('certs/a')).toEqual(['certs/a/deep/two', 'certs/a/one']);
    expect(await files.list!('certs/a/')).toEqual(['certs/a/deep/two', 'certs/a/one']);
    expect(await files.list!('certs/a/one')).toEqual(['certs/a/one']);
    expect(await files.list!('certs/nothing')).toEqual([]);
    expect(await files.list!('elsewhere')).toEqual([]);
    expect((await providerError(files.list!('certs/../outside'))).code).toBe(
      'DSO_PROVIDER_NOT_FOUND',
    );
  });
});

describe('createFileProvider: cancellation and close', () => {
  it('rejects an aborted call with an AbortError (the SDK maps it to TIMEOUT)', async () => {
    await put('token', 'one');
    const files = await createProvider(fileProvider, { roots: { certs } }, { name: 'files' });
    cleanups.push(() => files.close());
    const error = await providerError(
      files.resolve({ path: 'certs/token' }, { signal: AbortSignal.abort() }),
    );
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
  });

  it('rejects every call given an aborted signal with the AbortError, not an I/O failure', async () => {
    await put('a/token', 'one');
    const files = provider();
    const signal = AbortSignal.abort();
    for (const call of [
      () => files.resolve({ path: 'certs/a/token' }, { signal }),
      () => files.probe!({ path: 'certs/a/token' }, { signal }),
      () => files.list!('certs/a', { signal }),
      () => files.list!(undefined, { signal }),
    ]) {
      await expect(call()).rejects.toMatchObject({ name: 'AbortError' });
    }
  });

  it('refuses calls after close and ends its watches', async () => {
    await put('token', 'one');
    const files = provider();
    const seen: SecretChange[] = [];
    const controller = new AbortController();
    const consumed = (async () => {
      for await (const change of files.watch!(['certs/token'], { signal: controller.signal })) {
        seen.push(change);
      }
    })();
    await expect.poll(() => seen.length, { timeout: 5_000, interval: 10 }).toBeGreaterThan(0);
    await files.close();
    await consumed;
    expect((await providerError(files.resolve({ path: 'certs/token' }))).message).toContain(
      'closed',
    );
  });
});

describe('the file provider definition', () => {
  it('refuses a root that does not exist when created, naming the setting not its value', async () => {
    const missing = join(dir, 'missing-directory');
    const error = await providerError(
      createProvider(fileProvider, { roots: { certs: missing } }, { name: 'files' }),
    );
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('roots.certs');
    expect(error.message).not.toContain(missing);
  });

  it('refuses relative roots, bad root names, no roots and a silly maxBytes', async () => {
    for (const config of [
      { roots: { certs: 'relative' } },
      { roots: { '..': certs } },
      { roots: {} },
      { roots: { certs }, maxBytes: 0 },
      { roots: { certs }, maxBytes: 1024 * 1024 * 1024 },
    ]) {
      const error = await providerError(createProvider(fileProvider, config, { name: 'files' }));
      expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    }
  });

  it('declares list, watch, probe and health', () => {
    expect(fileProvider.capabilities).toEqual({
      list: true,
      watch: true,
      probe: true,
      health: true,
    });
  });
});

describe('fsError', () => {
  it('maps permission errors to UNAUTHORIZED, missing ones to NOT_FOUND, the rest to UNAVAILABLE', () => {
    // Tests run as root here, where chmod 000 does not stop a read: the mapping is tested directly.
    const root = { name: 'certs', dir: certs };
    const ref = { provider: 'files', path: 'certs/x' };
    const errno = (code: string) => Object.assign(new Error(`${code}: failed`), { code });
    expect(fsError(errno('EACCES'), ref, root, 'open').code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(fsError(errno('EPERM'), ref, root, 'open').code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(fsError(errno('ENOENT'), ref, root, 'open').code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(fsError(errno('ELOOP'), ref, root, 'open').code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(fsError(errno('EIO'), ref, root, 'open')).toMatchObject({
      code: 'DSO_PROVIDER_UNAVAILABLE',
      retryable: true,
    });
    expect(fsError(new TypeError('bug'), ref, root, 'open').code).toBe('DSO_PROVIDER_INTERNAL');
  });
});
