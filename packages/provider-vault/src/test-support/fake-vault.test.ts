import { fetch } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FakeVault, startFakeVault } from './fake-vault.js';

// biome-ignore lint/suspicious/noExplicitAny: the assertions walk Vault's JSON freely.
type Json = any;

// These pin down the Vault behaviours the fake claims to reproduce (README "Testing against a
// fake"), so a change to the fake that drifts from Vault's API fails here, not in a provider test.
describe('fake vault', () => {
  let clock: number;
  let vault: FakeVault;

  const call = async (
    method: string,
    path: string,
    options: { token?: string | null; namespace?: string; body?: unknown } = {},
  ) => {
    const headers: Record<string, string> = {};
    const token = options.token === undefined ? vault.rootToken : options.token;
    if (token !== null) headers['x-vault-token'] = token;
    if (options.namespace !== undefined) headers['x-vault-namespace'] = options.namespace;
    const response = await fetch(`${vault.address}/v1/${path}`, {
      method,
      headers,
      body: options.body === undefined ? undefined : JSON.stringify(options.body),
    });
    const text = await response.text();
    return {
      status: response.status,
      headers: response.headers,
      body: text === '' ? undefined : (JSON.parse(text) as Json),
    };
  };

  beforeEach(async () => {
    clock = Date.parse('2030-01-01T00:00:00Z');
    vault = await startFakeVault({ now: () => clock });
  });

  afterEach(async () => {
    await vault.close();
  });

  it('writes with POST data and reads versions back with KV v2 envelopes', async () => {
    const written = await call('POST', 'secret/data/app/db', { body: { data: { a: '1' } } });
    expect(written.status).toBe(200);
    expect(written.body?.data).toMatchObject({ version: 1, deletion_time: '', destroyed: false });
    await call('PUT', 'secret/data/app/db', { body: { data: { a: '2' } } });
    const current = await call('GET', 'secret/data/app/db');
    expect(current.status).toBe(200);
    expect(current.body).toMatchObject({
      data: { data: { a: '2' }, metadata: { version: 2, destroyed: false, deletion_time: '' } },
      lease_duration: 0,
      renewable: false,
    });
    const first = await call('GET', 'secret/data/app/db?version=1');
    expect(first.body?.data.data).toEqual({ a: '1' });
  });

  it('refuses a write without data, and a check-and-set mismatch, with 400', async () => {
    expect((await call('POST', 'secret/data/x', { body: {} })).body).toEqual({
      errors: ['no data provided'],
    });
    vault.write('x', { a: 1 });
    const cas = await call('POST', 'secret/data/x', {
      body: { data: { a: 2 }, options: { cas: 0 } },
    });
    expect(cas.status).toBe(400);
  });

  it('answers a missing path or version with 404 and an empty errors list', async () => {
    expect(await call('GET', 'secret/data/none')).toMatchObject({
      status: 404,
      body: { errors: [] },
    });
    vault.write('x', { a: 1 });
    expect(await call('GET', 'secret/data/x?version=5')).toMatchObject({
      status: 404,
      body: { errors: [] },
    });
  });

  it('answers a deleted or destroyed version with 404 and its metadata, data null', async () => {
    vault.write('x', { a: 1 });
    vault.write('x', { a: 2 });
    expect((await call('DELETE', 'secret/data/x')).status).toBe(204);
    const deleted = await call('GET', 'secret/data/x');
    expect(deleted.status).toBe(404);
    expect(deleted.body?.data.data).toBeNull();
    expect(deleted.body?.data.metadata.version).toBe(2);
    expect(deleted.body?.data.metadata.deletion_time).not.toBe('');
    expect((await call('POST', 'secret/undelete/x', { body: { versions: [2] } })).status).toBe(204);
    expect((await call('GET', 'secret/data/x')).status).toBe(200);
    expect((await call('PUT', 'secret/destroy/x', { body: { versions: [1] } })).status).toBe(204);
    const destroyed = await call('GET', 'secret/data/x?version=1');
    expect(destroyed.status).toBe(404);
    expect(destroyed.body?.data.metadata.destroyed).toBe(true);
  });

  it('keeps max_versions versions and drops the oldest', async () => {
    vault.mountKv('small', { maxVersions: 2 });
    for (const n of [1, 2, 3]) vault.write('x', { n }, { mount: 'small' });
    expect((await call('GET', 'small/data/x?version=1')).status).toBe(404);
    const metadata = await call('GET', 'small/metadata/x');
    expect(metadata.body?.data).toMatchObject({ current_version: 3, oldest_version: 2 });
    expect(Object.keys(metadata.body?.data.versions)).toEqual(['2', '3']);
  });

  it('lists a folder with the LIST verb and with GET ?list=true alike', async () => {
    for (const path of ['a/b', 'a/c/d', 'e']) vault.write(path, { v: 1 });
    const verb = await call('LIST', 'secret/metadata/');
    const query = await call('GET', 'secret/metadata?list=true');
    expect(verb.body?.data.keys).toEqual(['a/', 'e']);
    expect(query.body?.data.keys).toEqual(['a/', 'e']);
    expect((await call('LIST', 'secret/metadata/a')).body?.data.keys).toEqual(['b', 'c/']);
    expect(await call('LIST', 'secret/metadata/none/')).toMatchObject({
      status: 404,
      body: { errors: [] },
    });
  });

  it('ignores after/limit on LIST unless asked to paginate', async () => {
    for (const path of ['k1', 'k2', 'k3']) vault.write(path, { v: 1 });
    expect((await call('LIST', 'secret/metadata/?limit=1&after=k1')).body?.data.keys).toEqual([
      'k1',
      'k2',
      'k3',
    ]);
    const paging = await startFakeVault({ paginateLists: true });
    try {
      for (const path of ['k1', 'k2', 'k3']) paging.write(path, { v: 1 });
      const response = await fetch(`${paging.address}/v1/secret/metadata/?limit=1&after=k1`, {
        method: 'LIST',
        headers: { 'x-vault-token': paging.rootToken },
      });
      expect(((await response.json()) as { data: { keys: string[] } }).data.keys).toEqual(['k2']);
    } finally {
      await paging.close();
    }
  });

  it('refuses a missing, unknown or expired token with 403 permission denied', async () => {
    vault.write('x', { a: 1 });
    const denied = { status: 403, body: { errors: ['permission denied'] } };
    expect(await call('GET', 'secret/data/x', { token: null })).toMatchObject(denied);
    expect(await call('GET', 'secret/data/x', { token: 'hvs.unknown' })).toMatchObject(denied);
    const short = vault.createToken({ ttlSeconds: 10 });
    expect((await call('GET', 'secret/data/x', { token: short })).status).toBe(200);
    clock += 10_000;
    expect(await call('GET', 'secret/data/x', { token: short })).toMatchObject(denied);
    const narrow = vault.createToken({ allow: ['secret/data/other'] });
    expect(await call('GET', 'secret/data/x', { token: narrow })).toMatchObject(denied);
  });

  it('scopes data by X-Vault-Namespace and tokens to their namespace and its children', async () => {
    vault.createNamespace('team-a/dev');
    vault.write('x', { where: 'root' });
    vault.write('x', { where: 'dev' }, { namespace: 'team-a/dev' });
    expect(
      (await call('GET', 'secret/data/x', { namespace: 'team-a/dev' })).body?.data.data,
    ).toEqual({
      where: 'dev',
    });
    expect((await call('GET', 'secret/data/x', { namespace: 'team-a' })).status).toBe(404);
    const teamToken = vault.createToken({ namespace: 'team-a' });
    expect(
      (await call('GET', 'secret/data/x', { token: teamToken, namespace: 'team-a/dev' })).status,
    ).toBe(200);
    expect((await call('GET', 'secret/data/x', { token: teamToken })).status).toBe(403);
    expect((await call('GET', 'secret/data/x', { namespace: 'nowhere' })).status).toBe(404);
  });

  it('logs in with AppRole, issues a token with a TTL, renews it up to its max TTL, revokes it', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 60, tokenMaxTtlSeconds: 90 });
    const wrong = await call('POST', 'auth/approle/login', {
      token: null,
      body: { role_id: roleId, secret_id: 'nope' },
    });
    expect(wrong).toMatchObject({ status: 400, body: { errors: ['invalid role or secret ID'] } });
    const login = await call('POST', 'auth/approle/login', {
      token: null,
      body: { role_id: roleId, secret_id: secretId },
    });
    expect(login.status).toBe(200);
    expect(login.body?.auth).toMatchObject({
      lease_duration: 60,
      renewable: true,
      token_type: 'service',
    });
    const token = login.body?.auth.client_token as string;
    expect(token.startsWith('hvs.')).toBe(true);
    clock += 50_000;
    const renewed = await call('POST', 'auth/token/renew-self', { token, body: {} });
    expect(renewed.body?.auth.lease_duration).toBe(40); // capped by the 90 s max TTL
    clock += 40_000;
    expect((await call('GET', 'secret/metadata/x', { token })).status).toBe(403);
    const again = await call('POST', 'auth/approle/login', {
      token: null,
      body: { role_id: roleId, secret_id: secretId },
    });
    const second = again.body?.auth.client_token as string;
    expect((await call('POST', 'auth/token/revoke-self', { token: second })).status).toBe(204);
    expect((await call('GET', 'auth/token/lookup-self', { token: second })).status).toBe(403);
  });

  it('reports health: 200 active, 429 standby, 503 sealed, without a token', async () => {
    expect(await call('GET', 'sys/health', { token: null })).toMatchObject({
      status: 200,
      body: { initialized: true, sealed: false, standby: false },
    });
    const endStandby = vault.fault({ type: 'standby' });
    expect((await call('GET', 'sys/health', { token: null })).status).toBe(429);
    endStandby();
    vault.fault({ type: 'sealed' });
    expect(await call('GET', 'sys/health', { token: null })).toMatchObject({
      status: 503,
      body: { sealed: true },
    });
    expect(await call('GET', 'secret/data/x')).toMatchObject({
      status: 503,
      body: { errors: ['Vault is sealed'] },
    });
  });

  it('answers a rate limit with 429, Retry-After and the quota error', async () => {
    vault.fault({ type: 'rate-limited', retryAfterSeconds: 3 });
    const limited = await call('GET', 'secret/data/x');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('3');
    expect(limited.body?.errors[0]).toContain('rate limit quota exceeded');
  });

  it('answers an unmounted path with 404 no handler', async () => {
    const none = await call('GET', 'nomount/data/x');
    expect(none.status).toBe(404);
    expect(none.body?.errors[0]).toContain('no handler for route');
  });

  it('holds answers back with the slow fault', async () => {
    vault.fault({ type: 'slow', delayMs: 200 });
    const started = Date.now();
    await call('GET', 'sys/health', { token: null });
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
  });
});
