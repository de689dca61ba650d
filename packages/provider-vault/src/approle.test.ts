import { randomBytes } from 'node:crypto';
import { isProviderError, type ProviderError, type SecretProvider } from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { VaultProviderConfigInput } from './config.js';
import { createCaptureLogger, serialiseError } from './test-support/capture-logger.js';
import { type FakeVault, startFakeVault } from './test-support/fake-vault.js';
import { createVaultProvider } from './vault-provider.js';

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    if (isProviderError(error)) return error;
    throw error;
  }
  throw new Error('expected the call to fail');
}

describe('vault provider with AppRole auth (against the fake, on a shared fake clock)', () => {
  let clock: number;
  const now = () => clock;
  let vault: FakeVault;
  let capture: ReturnType<typeof createCaptureLogger>;
  let canary: string;
  const open: SecretProvider[] = [];
  const logins = () => vault.requests.filter((r) => r.path === 'auth/approle/login').length;

  const provider = async (
    auth: Record<string, unknown>,
    extra: Partial<VaultProviderConfigInput> = {},
    env: Record<string, string> = {},
  ) => {
    const created = await createVaultProvider(
      { address: vault.address, auth: { method: 'approle', ...auth } as never, ...extra },
      { name: 'approle-vault', log: capture.log, env },
      { now },
    );
    open.push(created);
    return created;
  };

  beforeEach(async () => {
    clock = Date.parse('2030-01-01T00:00:00Z');
    vault = await startFakeVault({ now });
    capture = createCaptureLogger();
    canary = `canary-${randomBytes(8).toString('hex')}`;
    vault.write('app/db', { password: canary });
  });

  afterEach(async () => {
    for (const created of open.splice(0)) await created.close();
    await vault.close();
    expect(capture.text()).not.toContain(canary);
    expect(capture.text()).not.toMatch(/hvs\./);
  });

  it('logs in once and reuses the token for every call', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 3600 });
    const secrets = await provider({ roleId, secretId });
    await Promise.all([
      secrets.resolve({ path: 'app/db' }),
      secrets.resolve({ path: 'app/db' }),
      secrets.probe!({ path: 'app/db' }),
    ]);
    await secrets.list!();
    expect(logins()).toBe(1);
    expect(vault.stats.logins).toBe(1);
  });

  it('reads the secret ID from secretIdEnv', async () => {
    const { roleId, secretId } = vault.addAppRole();
    const secrets = await provider(
      { roleId, secretIdEnv: 'ROLE_SECRET' },
      {},
      {
        ROLE_SECRET: secretId as string,
      },
    );
    expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
  });

  it('logs in without a secret ID for a role that binds none', async () => {
    const { roleId } = vault.addAppRole({ bindSecretId: false });
    const secrets = await provider({ roleId });
    expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
  });

  it('uses the configured auth mount and namespace', async () => {
    vault.createNamespace('team-a');
    vault.write('app/db', { password: canary }, { namespace: 'team-a' });
    const { roleId, secretId } = vault.addAppRole({ mount: 'apps', namespace: 'team-a' });
    const secrets = await provider({ roleId, secretId, mount: 'apps' }, { namespace: 'team-a' });
    expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
    expect(vault.requests.find((r) => r.path === 'auth/apps/login')?.namespace).toBe('team-a');
  });

  it('renews the token after two thirds of its TTL instead of logging in again', async () => {
    const { roleId, secretId } = vault.addAppRole({
      tokenTtlSeconds: 60,
      tokenMaxTtlSeconds: 3600,
    });
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    clock += 30_000;
    await secrets.resolve({ path: 'app/db' });
    expect(vault.stats.renewals).toBe(0);
    clock += 11_000; // 41 s of 60: past two thirds
    await secrets.resolve({ path: 'app/db' });
    expect(vault.stats.renewals).toBe(1);
    expect(logins()).toBe(1);
    // The renewed lease runs from the renewal.
    clock += 50_000;
    await secrets.resolve({ path: 'app/db' });
    expect(vault.stats.renewals).toBe(2);
    expect(logins()).toBe(1);
  });

  it('renews a single-use secret ID’s token, so it keeps working past the first TTL', async () => {
    const { roleId, secretId } = vault.addAppRole({
      tokenTtlSeconds: 60,
      tokenMaxTtlSeconds: 600,
      secretIdNumUses: 1,
    });
    const secrets = await provider({ roleId, secretId });
    for (let i = 0; i < 5; i += 1) {
      await secrets.resolve({ path: 'app/db' });
      clock += 45_000;
    }
    expect(logins()).toBe(1);
    expect(vault.stats.renewals).toBeGreaterThanOrEqual(4);
  });

  it('logs in again when renewal would buy less than a third of a lifetime (near max TTL)', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 60, tokenMaxTtlSeconds: 100 });
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    clock += 45_000;
    await secrets.resolve({ path: 'app/db' }); // renewed: 55 s left of the max TTL
    expect(vault.stats.renewals).toBe(1);
    expect(logins()).toBe(1);
    clock += 40_000; // renewal could give only 15 s now
    await secrets.resolve({ path: 'app/db' });
    expect(vault.stats.renewals).toBe(2);
    expect(logins()).toBe(2);
    expect(capture.lines.some((line) => line.message.includes('near its max TTL'))).toBe(true);
  });

  it('logs in again when the token expired without being renewed in time', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 60 });
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    clock += 61_000; // past the TTL: the renewal is refused, a fresh login follows
    expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
    expect(logins()).toBe(2);
  });

  it('logs in again and retries when Vault refuses a token it revoked (403)', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 3600 });
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    expect(vault.revokeTokens((token) => token.roleName === 'dso')).toBe(1);
    const before = vault.requests.length;
    expect((await secrets.resolve({ path: 'app/db' })).version).toBe('1');
    expect(vault.requests.slice(before).map((r) => r.path)).toEqual([
      'secret/data/app/db',
      'auth/approle/login',
      'secret/data/app/db',
    ]);
  });

  it('rejects with UNAUTHORIZED when the retry after a fresh login is refused too', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 3600 });
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    const before = vault.requests.length;
    const refusing = vault.fault({ type: 'permission-denied' });
    const error = await failure(secrets.resolve({ path: 'app/db' }));
    refusing();
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('even after a fresh login');
    const sequence = vault.requests.slice(before).map((r) => r.path);
    expect(sequence).toEqual(['secret/data/app/db', 'auth/approle/login', 'secret/data/app/db']);
    expect(serialiseError(error)).not.toMatch(/hvs\./);
  });

  it('logs in again on refusal at most once per 30 s, so a denied path does not mint tokens', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 3600 });
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    vault.fault({ type: 'permission-denied' });
    for (let i = 0; i < 3; i += 1) {
      expect((await failure(secrets.resolve({ path: 'app/db' }))).code).toBe(
        'DSO_PROVIDER_UNAUTHORIZED',
      );
    }
    expect(logins()).toBe(2);
    clock += 31_000;
    expect((await failure(secrets.resolve({ path: 'app/db' }))).code).toBe(
      'DSO_PROVIDER_UNAUTHORIZED',
    );
    expect(logins()).toBe(3);
  });

  it('retries every call refused at once with the one fresh token', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 3600 });
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    vault.revokeTokens(() => true);
    const results = await Promise.all(
      Array.from({ length: 8 }, () => secrets.resolve({ path: 'app/db' })),
    );
    expect(results.every((result) => result.version === '1')).toBe(true);
    expect(logins()).toBe(2);
  });

  it('rejects with UNAUTHORIZED for a wrong secret ID, quoting Vault but not the ID', async () => {
    const { roleId } = vault.addAppRole();
    const wrong = `wrong-${canary}`;
    const secrets = await provider({ roleId, secretId: wrong });
    const error = await failure(secrets.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('HTTP 400: invalid role or secret ID');
    expect(serialiseError(error)).not.toContain(wrong);
  });

  it('rejects with UNAUTHORIZED once a single-use secret ID is spent and the token is gone', async () => {
    const { roleId, secretId } = vault.addAppRole({ tokenTtlSeconds: 60, secretIdNumUses: 1 });
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    clock += 120_000;
    const error = await failure(secrets.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('AppRole login');
  });

  it('rejects with INVALID_CONFIG when secretIdEnv is not set', async () => {
    const { roleId } = vault.addAppRole();
    const error = await failure(provider({ roleId, secretIdEnv: 'MISSING_SECRET_ID' }));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('auth.secretIdEnv names is not set');
    // The variable's name came from the configuration: it is not echoed.
    expect(error.message).not.toContain('MISSING_SECRET_ID');
  });

  it('lets a cancelled caller go while the login goes on for the others', async () => {
    const { roleId, secretId } = vault.addAppRole();
    const secrets = await provider({ roleId, secretId });
    const endSlow = vault.fault({ type: 'slow', delayMs: 300 });
    const controller = new AbortController();
    const cancelled = failure(secrets.resolve({ path: 'app/db' }, { signal: controller.signal }));
    const patient = secrets.resolve({ path: 'app/db' });
    setTimeout(() => controller.abort(), 20);
    expect((await cancelled).code).toBe('DSO_PROVIDER_TIMEOUT');
    endSlow();
    expect((await patient).version).toBe('1');
    expect(logins()).toBe(1);
  });

  it('revokes its token on close', async () => {
    const { roleId, secretId } = vault.addAppRole();
    const secrets = await provider({ roleId, secretId });
    await secrets.resolve({ path: 'app/db' });
    await secrets.close();
    open.splice(open.indexOf(secrets), 1);
    expect(vault.stats.revocations).toBe(1);
    expect(vault.requests.at(-1)).toMatchObject({ path: 'auth/token/revoke-self', hasToken: true });
  });
});
