import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';
import {
  createProvider,
  isProviderError,
  type ProviderError,
  type SecretProvider,
} from '@dso/provider-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import { createEnvProvider, valueVersion } from './env-provider.js';
import envProvider, { provider as namedExport } from './index.js';

const CANARY = `canary-${randomBytes(8).toString('hex')}`;
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function open(
  config: unknown,
  env: Record<string, string | undefined>,
): Promise<SecretProvider> {
  const created = await createProvider(envProvider, config, { name: 'env-test', env });
  cleanups.push(() => created.close());
  return created;
}

async function providerError(promise: Promise<unknown>): Promise<ProviderError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  );
  if (!isProviderError(error)) throw new Error(`expected a ProviderError, got ${inspect(error)}`);
  return error;
}

const ENV = {
  DB_PASSWORD: CANARY,
  APP_TOKEN: 'app-token',
  APP_EMPTY: '',
  DSO_VAULT_PASSPHRASE: 'vault-passphrase',
  AWS_SECRET_ACCESS_KEY: 'aws-secret',
  HOME: '/root',
  'svc/db-password': 'slashed',
};

describe('the env provider', () => {
  it('is exported as default and as provider, type env, with list and probe', () => {
    expect(namedExport).toBe(envProvider);
    expect(envProvider.type).toBe('env');
    expect(envProvider.capabilities).toEqual({
      list: true,
      watch: false,
      probe: true,
      health: false,
    });
  });

  it('serves an allowed variable with a version that is 16 hex digits of its SHA-256', async () => {
    const env = await open({ allow: ['DB_PASSWORD'] }, ENV);
    const { value, version } = await env.resolve({ path: 'DB_PASSWORD' });
    expect(value.revealText()).toBe(CANARY);
    expect(version).toBe(valueVersion(Buffer.from(CANARY)));
    expect(version).toMatch(/^[0-9a-f]{16}$/);
    expect(await env.probe!({ path: 'DB_PASSWORD' })).toEqual({ version });
  });

  it('serves names with / and - as they are', async () => {
    const env = await open({ allow: ['svc/*'] }, ENV);
    expect((await env.resolve({ path: 'svc/db-password' })).value.revealText()).toBe('slashed');
  });

  it('answers a name it may not serve the same way whether or not it is set, naming the allow setting', async () => {
    const env = await open({ allow: ['DB_PASSWORD'] }, ENV);
    const set = await providerError(env.resolve({ path: 'HOME' }));
    const unset = await providerError(env.resolve({ path: 'NOT_SET_ANYWHERE' }));
    expect(set.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(unset.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(set.message.replace('HOME', 'X')).toBe(unset.message.replace('NOT_SET_ANYWHERE', 'X'));
    expect(set.message).toContain('providers.env-test.allow');
    expect((await providerError(env.probe!({ path: 'HOME' }))).code).toBe('DSO_PROVIDER_NOT_FOUND');
  });

  it('reports an allowed variable that is not set as NOT_FOUND, saying to set it and restart', async () => {
    const env = await open({ allow: ['APP_*'] }, ENV);
    const error = await providerError(env.resolve({ path: 'APP_MISSING' }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_NOT_FOUND', path: 'APP_MISSING' });
    expect(error.message).toContain('restart');
  });

  it('serves a variable set to the empty string as zero bytes', async () => {
    const env = await open({ allow: ['APP_*'] }, ENV);
    expect((await env.resolve({ path: 'APP_EMPTY' })).value.byteLength).toBe(0);
  });

  it('never lets a pattern reach the agent’s own credentials; an exact entry does', async () => {
    const patterns = await open({ allow: ['DSO_*', 'AWS_*', 'APP_*'] }, ENV);
    for (const path of ['DSO_VAULT_PASSPHRASE', 'AWS_SECRET_ACCESS_KEY']) {
      expect((await providerError(patterns.resolve({ path }))).code).toBe('DSO_PROVIDER_NOT_FOUND');
    }
    expect(await patterns.list!()).toEqual(['APP_EMPTY', 'APP_TOKEN']);
    const exact = await open({ allow: ['DSO_VAULT_PASSPHRASE'] }, ENV);
    expect((await exact.resolve({ path: 'DSO_VAULT_PASSPHRASE' })).value.revealText()).toBe(
      'vault-passphrase',
    );
  });

  it('lists only allowed variables that are set, under a prefix', async () => {
    const env = await open({ allow: ['APP_*', 'DB_PASSWORD', 'UNSET'] }, ENV);
    expect(await env.list!()).toEqual(['APP_EMPTY', 'APP_TOKEN', 'DB_PASSWORD']);
    expect(await env.list!('APP_T')).toEqual(['APP_TOKEN']);
    expect(await env.list!('HOME')).toEqual([]);
  });

  it('serves only the current value: another version is NOT_FOUND', async () => {
    const env = await open({ allow: ['APP_TOKEN'] }, ENV);
    const error = await providerError(
      env.resolve({ path: 'APP_TOKEN', version: valueVersion(Buffer.from('older')) }),
    );
    expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(error.message).toContain('current value');
  });

  it('decodes base64 values with encoding: base64, byte for byte', async () => {
    const bytes = Uint8Array.from({ length: 256 }, (_, index) => index);
    const encoded = Buffer.from(bytes).toString('base64');
    const env = await open(
      { allow: ['BLOB', 'URLSAFE', 'BROKEN'], encoding: 'base64' },
      {
        BLOB: encoded,
        URLSAFE: Buffer.from(bytes).toString('base64url'),
        BROKEN: `${CANARY}!`,
      },
    );
    const { value, version } = await env.resolve({ path: 'BLOB' });
    expect(Buffer.compare(value.reveal(), Buffer.from(bytes))).toBe(0);
    expect(version).toBe(valueVersion(bytes));
    expect((await env.resolve({ path: 'URLSAFE' })).value.reveal()).toEqual(Buffer.from(bytes));
    const error = await providerError(env.resolve({ path: 'BROKEN' }));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(inspect(error, { depth: 10, showHidden: true })).not.toContain(CANARY);
  });

  it('reads the environment it was given at every call (a host may pass a live one)', async () => {
    const live: Record<string, string | undefined> = { APP_TOKEN: 'one' };
    const env = await open({ allow: ['APP_*'] }, live);
    const first = await env.probe!({ path: 'APP_TOKEN' });
    live.APP_TOKEN = 'two';
    const second = await env.probe!({ path: 'APP_TOKEN' });
    expect(second.version).not.toBe(first.version);
    expect(second.version).toBe(valueVersion(Buffer.from('two')));
  });

  it('refuses calls after close, and aborted calls', async () => {
    const env = createEnvProvider({ allow: ['APP_TOKEN'], env: ENV });
    await expect(
      env.resolve({ path: 'APP_TOKEN' }, { signal: AbortSignal.abort() }),
    ).rejects.toMatchObject({ name: 'AbortError' });
    await env.close();
    await expect(env.resolve({ path: 'APP_TOKEN' })).rejects.toMatchObject({
      code: 'DSO_PROVIDER_INTERNAL',
    });
  });

  it('refuses a configuration with no entries, a bare *, a * inside, or unknown keys', async () => {
    for (const config of [
      {},
      { allow: [] },
      { allow: ['*'] },
      { allow: ['APP_*_X'] },
      { allow: ['-LEADING'] },
      { allow: ['A'], encoding: 'hex' },
      { allow: ['A'], values: { A: CANARY } },
    ]) {
      const error = await providerError(
        createProvider(envProvider, config, { name: 'env-test', env: {} }),
      );
      expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
      expect(error.message).not.toContain(CANARY);
    }
  });
});
