import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import {
  createProvider,
  isProviderError,
  type ProviderError,
  type SecretProvider,
  selectField,
} from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VaultProviderConfigInput } from './config.js';
import { vaultProvider } from './definition.js';
import { createCaptureLogger, serialiseError } from './test-support/capture-logger.js';
import { type FakeVault, startFakeVault } from './test-support/fake-vault.js';
import { isVaultProviderError } from './vault-error.js';
import { createVaultProvider, LIST_PAGE_SIZE } from './vault-provider.js';

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    if (isProviderError(error)) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

describe('vault provider (token auth, against the fake)', () => {
  let vault: FakeVault;
  let token: string;
  let canary: string;
  let capture: ReturnType<typeof createCaptureLogger>;
  const open: SecretProvider[] = [];

  const provider = async (config: Partial<VaultProviderConfigInput> = {}) => {
    const created = await createVaultProvider(
      { address: vault.address, ...config },
      { name: 'test-vault', log: capture.log, env: { VAULT_TOKEN: token } },
    );
    open.push(created);
    return created;
  };

  beforeEach(async () => {
    vault = await startFakeVault();
    token = vault.createToken();
    canary = `canary-${randomBytes(8).toString('hex')}`;
    capture = createCaptureLogger();
  });

  afterEach(async () => {
    for (const created of open.splice(0)) await created.close();
    await vault.close();
    // Nothing any test did may have logged the token or the canary.
    expect(capture.text()).not.toContain(token);
    expect(capture.text()).not.toContain(canary);
  });

  describe('resolve', () => {
    it('returns the whole data object as JSON with sorted keys, and its version', async () => {
      vault.write('app/db', { user: 'app', password: canary, nested: { b: 2, a: 1 } });
      const secrets = await provider();
      const { value, version } = await secrets.resolve({ path: 'app/db' });
      expect(version).toBe('1');
      expect(value.revealText()).toBe(
        `{"nested":{"a":1,"b":2},"password":"${canary}","user":"app"}`,
      );
      expect(`${value}`).toBe('[REDACTED]');
      // `#field` is the SDK's job: it works on this JSON.
      expect(selectField(value, 'password').revealText()).toBe(canary);
      expect(selectField(value, 'nested.b').revealText()).toBe('2');
    });

    it('sends the token, X-Vault-Request and no namespace header by default', async () => {
      vault.write('app/db', { password: canary });
      const secrets = await provider();
      await secrets.resolve({ path: 'app/db' });
      const seen = vault.requests.at(-1);
      expect(seen).toMatchObject({
        method: 'GET',
        path: 'secret/data/app/db',
        hasToken: true,
        vaultRequestHeader: true,
        namespace: undefined,
      });
    });

    it('reads a given version with ?version=N and reports that version', async () => {
      vault.write('app/db', { password: 'one' });
      vault.write('app/db', { password: canary });
      const secrets = await provider();
      const old = await secrets.resolve({ path: 'app/db', version: '1' });
      expect(old).toMatchObject({ version: '1' });
      expect(old.value.revealText()).toBe('{"password":"one"}');
      expect(vault.requests.at(-1)?.query).toBe('version=1');
      const current = await secrets.resolve({ path: 'app/db' });
      expect(current.version).toBe('2');
    });

    it('serves one key with valueKey: its text, and #field selects inside it', async () => {
      vault.write('app/tls', { cert: 'PEM', config: '{"port":5432}', count: 3 });
      const text = await provider({ valueKey: 'cert' });
      expect((await text.resolve({ path: 'app/tls' })).value.revealText()).toBe('PEM');
      const json = await provider({ valueKey: 'config' });
      const { value } = await json.resolve({ path: 'app/tls' });
      expect(selectField(value, 'port').revealText()).toBe('5432');
      const number = await provider({ valueKey: 'count' });
      expect((await number.resolve({ path: 'app/tls' })).value.revealText()).toBe('3');
    });

    it('decodes a base64 key with valueEncoding: base64, binary included', async () => {
      const bytes = randomBytes(4096);
      vault.write('bin/blob', { value: bytes.toString('base64') });
      const secrets = await provider({ valueKey: 'value', valueEncoding: 'base64' });
      const { value } = await secrets.resolve({ path: 'bin/blob' });
      expect(Buffer.compare(value.reveal(), bytes)).toBe(0);
    });

    it('rejects with NOT_FOUND, without the value, when valueKey is missing or not base64', async () => {
      vault.write('app/db', { password: canary });
      const missing = await provider({ valueKey: 'value' });
      const error = await failure(missing.resolve({ path: 'app/db' }));
      expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(error.message).toContain('has no key "value"');
      const notBase64 = await provider({ valueKey: 'password', valueEncoding: 'base64' });
      const second = await failure(notBase64.resolve({ path: 'app/db' }));
      expect(second.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(second.message).toContain('not base64');
      expect(serialiseError(error) + serialiseError(second)).not.toContain(canary);
    });

    it('rejects with NOT_FOUND for a path, or a version, that does not exist', async () => {
      vault.write('app/db', { password: canary });
      const secrets = await provider();
      const missing = await failure(secrets.resolve({ path: 'app/nothing' }));
      expect(missing.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(missing.message).toContain('no secret at app/nothing in mount secret');
      expect(missing.retryable).toBe(false);
      const noVersion = await failure(secrets.resolve({ path: 'app/db', version: '7' }));
      expect(noVersion.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(noVersion.message).toContain('has no version 7');
    });

    it('rejects with NOT_FOUND for a malformed version or path without asking Vault', async () => {
      const secrets = await provider();
      const before = vault.requests.length;
      for (const version of ['0', '-1', 'latest', '1.5']) {
        const error = await failure(secrets.resolve({ path: 'app/db', version }));
        expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
        expect(error.message).toContain('positive integers');
      }
      for (const path of ['app//db', 'app/../db', '/app', 'app/', 'a\u0000b']) {
        expect((await failure(secrets.resolve({ path }))).code).toBe('DSO_PROVIDER_NOT_FOUND');
      }
      expect(vault.requests.length).toBe(before);
    });

    it('percent-encodes path segments', async () => {
      vault.write('app/db password', { password: canary });
      const secrets = await provider();
      expect((await secrets.resolve({ path: 'app/db password' })).version).toBe('1');
    });

    it('says a version was deleted, and how to undelete it', async () => {
      vault.write('app/db', { password: 'one' });
      vault.write('app/db', { password: canary });
      vault.deleteVersions('app/db', [2]);
      const secrets = await provider();
      const current = await failure(secrets.resolve({ path: 'app/db' }));
      expect(current.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(current.message).toMatch(
        /version 2 of secret app\/db in mount secret was deleted at \S+: undelete it/,
      );
      const asked = await failure(secrets.resolve({ path: 'app/db', version: '2' }));
      expect(asked.message).toContain('was deleted');
      expect((await secrets.resolve({ path: 'app/db', version: '1' })).version).toBe('1');
      expect(serialiseError(current)).not.toContain(canary);
    });

    it('says a version was destroyed', async () => {
      vault.write('app/db', { password: canary });
      vault.destroyVersions('app/db', [1]);
      const secrets = await provider();
      const error = await failure(secrets.resolve({ path: 'app/db', version: '1' }));
      expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(error.message).toContain('was destroyed: its data is gone');
    });

    it('uses the configured mount', async () => {
      vault.mountKv('kv/prod');
      vault.write('app/db', { password: canary }, { mount: 'kv/prod' });
      const secrets = await provider({ mount: 'kv/prod' });
      expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
      expect(vault.requests.at(-1)?.path).toBe('kv/prod/data/app/db');
    });
  });

  describe('namespaces', () => {
    it('sends X-Vault-Namespace and reads that namespace only', async () => {
      vault.createNamespace('team-a');
      vault.write('app/db', { password: 'root' });
      vault.write('app/db', { password: canary }, { namespace: 'team-a' });
      vault.write('app/db', { password: 'second' }, { namespace: 'team-a' });
      const secrets = await provider({ namespace: 'team-a' });
      const { value, version } = await secrets.resolve({ path: 'app/db', version: '1' });
      expect(value.revealText()).toBe(`{"password":"${canary}"}`);
      expect(version).toBe('1');
      expect(vault.requests.at(-1)?.namespace).toBe('team-a');
      const missing = await failure(secrets.resolve({ path: 'app/other' }));
      expect(missing.message).toContain('mount secret of namespace team-a');
    });

    it('refuses a token of another namespace with UNAUTHORIZED', async () => {
      vault.createNamespace('team-a');
      vault.createNamespace('team-b');
      vault.write('app/db', { password: canary }, { namespace: 'team-b' });
      token = vault.createToken({ namespace: 'team-a' });
      const secrets = await provider({ namespace: 'team-b' });
      const error = await failure(secrets.resolve({ path: 'app/db' }));
      expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    });

    it('lets a parent namespace token read a child namespace', async () => {
      vault.createNamespace('team-a/dev');
      vault.write('app/db', { password: canary }, { namespace: 'team-a/dev' });
      token = vault.createToken({ namespace: 'team-a' });
      const secrets = await provider({ namespace: 'team-a/dev' });
      expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
    });
  });

  describe('probe', () => {
    it('returns the current version from metadata, without reading the value', async () => {
      vault.write('app/db', { password: 'one' });
      vault.write('app/db', { password: canary });
      const secrets = await provider();
      expect(await secrets.probe?.({ path: 'app/db' })).toEqual({ version: '2' });
      expect(vault.requests.at(-1)).toMatchObject({
        method: 'GET',
        path: 'secret/metadata/app/db',
      });
      expect(vault.requests.some((request) => request.path.startsWith('secret/data/'))).toBe(false);
      expect(await secrets.probe?.({ path: 'app/db', version: '1' })).toEqual({ version: '1' });
    });

    it('rejects with NOT_FOUND for a missing secret, version, or a deleted current version', async () => {
      vault.write('app/db', { password: canary });
      const secrets = await provider();
      expect((await failure(secrets.probe!({ path: 'app/none' }))).code).toBe(
        'DSO_PROVIDER_NOT_FOUND',
      );
      expect((await failure(secrets.probe!({ path: 'app/db', version: '9' }))).message).toContain(
        'has no version 9',
      );
      vault.deleteVersions('app/db', [1]);
      const deleted = await failure(secrets.probe!({ path: 'app/db' }));
      expect(deleted.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(deleted.message).toContain('was deleted');
      vault.destroyVersions('app/db', [1]);
      expect((await failure(secrets.probe!({ path: 'app/db' }))).message).toContain('destroyed');
    });
  });

  describe('list', () => {
    beforeEach(() => {
      for (const path of ['app/db', 'app/api/key', 'app/api/cert', 'apple', 'other/x/y/z', 'top']) {
        vault.write(path, { v: canary });
      }
    });

    it('lists every path, recursing into folders', async () => {
      const secrets = await provider();
      expect(await secrets.list?.()).toEqual([
        'app/api/cert',
        'app/api/key',
        'app/db',
        'apple',
        'other/x/y/z',
        'top',
      ]);
      expect(vault.requests.filter((r) => r.method === 'LIST').map((r) => r.path)).toContain(
        'secret/metadata/',
      );
    });

    it('lists under a prefix, by string prefix like every provider', async () => {
      const secrets = await provider();
      expect(await secrets.list?.('app/')).toEqual(['app/api/cert', 'app/api/key', 'app/db']);
      expect(await secrets.list?.('app')).toEqual([
        'app/api/cert',
        'app/api/key',
        'app/db',
        'apple',
      ]);
      expect(await secrets.list?.('app/a')).toEqual(['app/api/cert', 'app/api/key']);
      expect(await secrets.list?.('nothing/')).toEqual([]);
    });

    it('keeps a secret that has only deleted versions, as Vault lists it', async () => {
      vault.deleteVersions('top', [1]);
      const secrets = await provider();
      expect(await secrets.list?.('t')).toEqual(['top']);
    });

    it('follows pages when Vault paginates, and stops when it ignores after/limit', async () => {
      const many = Array.from(
        { length: LIST_PAGE_SIZE * 2 + 17 },
        (_, i) => `bulk/k${String(i).padStart(5, '0')}`,
      );
      for (const path of many) vault.write(path, { v: '1' });
      const ignoring = await provider();
      expect(await ignoring.list?.('bulk/')).toEqual(many);
      const ignoredLists = vault.requests.filter(
        (r) => r.method === 'LIST' && r.path === 'secret/metadata/bulk/',
      );
      // One full-size page, then one asking for more that brings nothing new.
      expect(ignoredLists.length).toBe(1);

      await vault.close();
      vault = await startFakeVault({ paginateLists: true });
      token = vault.createToken();
      for (const path of many) vault.write(path, { v: '1' });
      const paging = await provider();
      expect(await paging.list?.('bulk/')).toEqual(many);
      const pages = vault.requests.filter((r) => r.method === 'LIST');
      expect(pages.map((r) => new URLSearchParams(r.query).get('after'))).toEqual([
        null,
        `k${String(LIST_PAGE_SIZE - 1).padStart(5, '0')}`,
        `k${String(LIST_PAGE_SIZE * 2 - 1).padStart(5, '0')}`,
      ]);
    });

    it('refuses with TOO_LARGE beyond maxListPaths', async () => {
      const secrets = await provider({ maxListPaths: 3 });
      const error = await failure(secrets.list!());
      expect(error.code).toBe('DSO_PROVIDER_TOO_LARGE');
      expect(error.message).toContain('maxListPaths (3)');
    });

    it('rejects with UNAUTHORIZED when the token may not list', async () => {
      token = vault.createToken({ allow: ['secret/data/*'] });
      const secrets = await provider();
      expect((await failure(secrets.list!())).code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    });
  });

  describe('errors', () => {
    beforeEach(() => {
      vault.write('app/db', { password: canary });
    });

    it('maps 403 to UNAUTHORIZED with Vault’s words and what to check', async () => {
      const end = vault.fault({ type: 'permission-denied' });
      const secrets = await provider();
      const error = await failure(secrets.resolve({ path: 'app/db' }));
      expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain('HTTP 403: permission denied');
      expect(error.message).toContain('from environment variable VAULT_TOKEN');
      expect(isVaultProviderError(error) && error.details.status).toBe(403);
      end();
      expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
    });

    it('maps an unknown or revoked token to UNAUTHORIZED, and never quotes it', async () => {
      const secrets = await provider();
      vault.revokeToken(token);
      const error = await failure(secrets.resolve({ path: 'app/db' }));
      expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
      expect(serialiseError(error)).not.toContain(token);
    });

    it('maps 429 to THROTTLED with Retry-After in details and the message', async () => {
      vault.fault({ type: 'rate-limited', retryAfterSeconds: 7 });
      const secrets = await provider();
      const error = await failure(secrets.resolve({ path: 'app/db' }));
      expect(error.code).toBe('DSO_PROVIDER_THROTTLED');
      expect(error.retryable).toBe(true);
      expect(error.message).toContain('retry after 7 s');
      expect(error.message).toContain('rate limit quota exceeded');
      expect(isVaultProviderError(error) && error.details).toMatchObject({
        status: 429,
        retryAfterMs: 7000,
      });
    });

    it('maps 503 sealed and 500 to UNAVAILABLE', async () => {
      const secrets = await provider();
      const endSealed = vault.fault({ type: 'sealed' });
      const sealed = await failure(secrets.resolve({ path: 'app/db' }));
      expect(sealed.code).toBe('DSO_PROVIDER_UNAVAILABLE');
      expect(sealed.retryable).toBe(true);
      expect(sealed.message).toContain('HTTP 503: Vault is sealed');
      endSealed();
      vault.fault({ type: 'internal-error' });
      const internal = await failure(secrets.resolve({ path: 'app/db' }));
      expect(internal.code).toBe('DSO_PROVIDER_UNAVAILABLE');
      expect(internal.message).toContain('HTTP 500');
    });

    it('maps a slow answer to TIMEOUT after requestTimeoutMs', async () => {
      vault.fault({ type: 'slow', delayMs: 2_000 });
      const secrets = await provider({ requestTimeoutMs: 200 });
      const started = Date.now();
      const error = await failure(secrets.resolve({ path: 'app/db' }));
      expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
      expect(error.message).toContain('within 200 ms');
      expect(Date.now() - started).toBeLessThan(1_500);
    });

    it('honours the caller’s AbortSignal promptly', async () => {
      vault.fault({ type: 'slow', delayMs: 5_000 });
      const secrets = await provider();
      const controller = new AbortController();
      const started = Date.now();
      const pending = failure(secrets.resolve({ path: 'app/db' }, { signal: controller.signal }));
      setTimeout(() => controller.abort(), 50);
      const error = await pending;
      expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
      expect(error.message).toContain('cancelled by the caller');
      expect(Date.now() - started).toBeLessThan(1_000);
      const aborted = AbortSignal.abort();
      expect((await failure(secrets.list!('', { signal: aborted }))).code).toBe(
        'DSO_PROVIDER_TIMEOUT',
      );
    });

    it('maps a refused connection to UNAVAILABLE', async () => {
      const port = await closedPort();
      const secrets = await provider({ address: `http://127.0.0.1:${port}` });
      const error = await failure(secrets.resolve({ path: 'app/db' }));
      expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
      expect(error.message).toContain('ECONNREFUSED');
    });

    it('refuses an answer over maxResponseBytes with TOO_LARGE', async () => {
      vault.write('big/blob', { value: 'x'.repeat(64 * 1024) + canary });
      const secrets = await provider({ maxResponseBytes: 16 * 1024 });
      const error = await failure(secrets.resolve({ path: 'big/blob' }));
      expect(error.code).toBe('DSO_PROVIDER_TOO_LARGE');
      expect(serialiseError(error)).not.toContain(canary);
      // The provider stays usable.
      expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
    });

    it('never puts the canary or the token in an error, through every error path', async () => {
      const secrets = await provider({ valueKey: 'password', valueEncoding: 'base64' });
      const errors: unknown[] = [];
      const attempt = async (run: () => Promise<unknown>) => {
        try {
          await run();
        } catch (error) {
          errors.push(error);
        }
      };
      await attempt(() => secrets.resolve({ path: 'app/db' }));
      for (const fault of [
        { type: 'permission-denied' },
        { type: 'rate-limited' },
        { type: 'sealed' },
        { type: 'internal-error' },
      ] as const) {
        const end = vault.fault(fault);
        await attempt(() => secrets.resolve({ path: 'app/db' }));
        await attempt(() => secrets.list!(''));
        await attempt(() => secrets.probe!({ path: 'app/db' }));
        end();
      }
      expect(errors.length).toBe(13);
      for (const error of errors) {
        expect(serialiseError(error)).not.toContain(canary);
        expect(serialiseError(error)).not.toContain(token);
      }
    });
  });

  describe('health', () => {
    it('reports active, standby and sealed from sys/health, without a token', async () => {
      const secrets = await provider();
      expect(await secrets.health?.()).toEqual({ ok: true, detail: 'active, vault 1.17.0+fake' });
      expect(vault.requests.at(-1)).toMatchObject({ path: 'sys/health', hasToken: false });
      const endStandby = vault.fault({ type: 'standby' });
      expect(await secrets.health?.()).toMatchObject({
        ok: true,
        detail: expect.stringContaining('standby'),
      });
      endStandby();
      vault.fault({ type: 'sealed' });
      expect(await secrets.health?.()).toMatchObject({
        ok: false,
        detail: expect.stringContaining('sealed'),
      });
    });

    it('reports an unreachable vault as not ok', async () => {
      const port = await closedPort();
      const secrets = await provider({ address: `http://127.0.0.1:${port}` });
      const health = await secrets.health!();
      expect(health.ok).toBe(false);
      expect(health.detail).toContain('ECONNREFUSED');
    });
  });

  describe('configuration', () => {
    it('rejects with INVALID_CONFIG when the token variable is not set', async () => {
      const error = await failure(
        createVaultProvider({ address: vault.address }, { name: 'x', env: {} }),
      );
      expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
      expect(error.message).toContain('auth.tokenEnv (default VAULT_TOKEN)');
    });

    it('reads the token from tokenEnv, or takes it from the configuration', async () => {
      vault.write('app/db', { password: canary });
      const fromEnv = await createVaultProvider(
        { address: vault.address, auth: { method: 'token', tokenEnv: 'MY_TOKEN' } },
        { env: { MY_TOKEN: token } },
      );
      open.push(fromEnv);
      expect((await fromEnv.resolve({ path: 'app/db' })).version).toBe('1');
      const inline = await createVaultProvider(
        { address: vault.address, auth: { token } },
        { env: {} },
      );
      open.push(inline);
      expect((await inline.resolve({ path: 'app/db' })).version).toBe('1');
    });

    it('works through createProvider, with the SDK’s guards', async () => {
      vault.write('app/db', { password: canary });
      const guarded = await createProvider(
        vaultProvider,
        { address: vault.address },
        { name: 'prod-vault', env: { VAULT_TOKEN: token }, log: capture.log },
      );
      expect(guarded.capabilities).toEqual({ list: true, watch: false, probe: true, health: true });
      expect((await guarded.resolve({ path: 'app/db' })).version).toBe('1');
      await guarded.close();
      const closed = await failure(guarded.resolve({ path: 'app/db' }));
      expect(closed.message).toContain('closed');
    });

    it('refuses calls after close', async () => {
      const secrets = await provider();
      await secrets.close();
      expect((await failure(secrets.resolve({ path: 'app/db' }))).code).toBe(
        'DSO_PROVIDER_INTERNAL',
      );
    });
  });
});

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  if (address === null || typeof address === 'string') throw new Error('no port');
  return address.port;
}
