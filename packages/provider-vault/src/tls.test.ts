import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isProviderError, type ProviderError, type SecretProvider } from '@dso/provider-sdk';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { VaultProviderConfigInput } from './config.js';
import { createCaptureLogger } from './test-support/capture-logger.js';
import { type FakeVault, startFakeVault } from './test-support/fake-vault.js';
import { createTestPki, type TestPki } from './test-support/test-pki.js';
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

describe('vault provider over HTTPS (against the fake)', () => {
  let pki: TestPki;
  let namedPki: TestPki;
  let dir: string;
  const running: FakeVault[] = [];
  const open: SecretProvider[] = [];

  beforeAll(async () => {
    [pki, namedPki] = await Promise.all([
      createTestPki(),
      createTestPki({ dnsNames: ['vault.test'], ips: [] }),
    ]);
    dir = await mkdtemp(join(tmpdir(), 'dso-vault-tls-test-'));
  }, 30_000);

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  afterEach(async () => {
    for (const created of open.splice(0)) await created.close();
    for (const vault of running.splice(0)) await vault.close();
  });

  const start = async (
    material: TestPki,
    options: { clientCa?: boolean; require?: boolean } = {},
  ) => {
    const vault = await startFakeVault({
      tls: {
        key: material.serverKeyPem,
        cert: material.serverCertPem,
        ...(options.clientCa ? { clientCa: material.caPem } : {}),
        requireClientCertificate: options.require ?? false,
      },
    });
    running.push(vault);
    vault.write('app/db', { password: 'tls-test' });
    return vault;
  };

  const provider = async (
    vault: FakeVault,
    config: Partial<VaultProviderConfigInput>,
    log = createCaptureLogger().log,
  ) => {
    const created = await createVaultProvider(
      { address: vault.address, auth: { token: vault.rootToken }, ...config },
      { name: 'tls-vault', log, env: {} },
    );
    open.push(created);
    return created;
  };

  it('trusts a custom CA given as PEM or as a file', async () => {
    const vault = await start(pki);
    expect(vault.address.startsWith('https://127.0.0.1:')).toBe(true);
    const fromPem = await provider(vault, { tls: { caPem: pki.caPem } });
    expect((await fromPem.resolve({ path: 'app/db' })).version).toBe('1');
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, pki.caPem);
    const fromFile = await provider(vault, { tls: { caFile } });
    expect((await fromFile.resolve({ path: 'app/db' })).version).toBe('1');
  });

  it('refuses a certificate from a CA it was not given, with UNAVAILABLE and the fix', async () => {
    const vault = await start(pki);
    const untrusted = await provider(vault, { tls: { caPem: pki.otherCaPem } });
    const error = await failure(untrusted.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.message).toContain('does not trust');
    expect(error.message).toContain('tls.caFile');
    const systemOnly = await provider(vault, {});
    expect((await failure(systemOnly.resolve({ path: 'app/db' }))).message).toContain(
      'does not trust',
    );
    expect(vault.requests.length).toBe(0);
  });

  it('checks the certificate against tls.serverName when the address names another host', async () => {
    const vault = await start(namedPki);
    const byAddress = await provider(vault, { tls: { caPem: namedPki.caPem } });
    const error = await failure(byAddress.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.message).toContain('ERR_TLS_CERT_ALTNAME_INVALID');
    const byName = await provider(vault, {
      tls: { caPem: namedPki.caPem, serverName: 'vault.test' },
    });
    expect((await byName.resolve({ path: 'app/db' })).version).toBe('1');
  });

  it('presents a client certificate for TLS client authentication', async () => {
    const vault = await start(pki, { clientCa: true, require: true });
    const without = await provider(vault, { tls: { caPem: pki.caPem } });
    expect((await failure(without.resolve({ path: 'app/db' }))).code).toBe(
      'DSO_PROVIDER_UNAVAILABLE',
    );
    expect(vault.requests.length).toBe(0);
    const certFile = join(dir, 'client.pem');
    const keyFile = join(dir, 'client.key');
    await writeFile(certFile, pki.clientCertPem);
    await writeFile(keyFile, pki.clientKeyPem, { mode: 0o600 });
    const withCert = await provider(vault, { tls: { caPem: pki.caPem, certFile, keyFile } });
    expect((await withCert.resolve({ path: 'app/db' })).version).toBe('1');
    expect(vault.requests.at(-1)?.clientCertificateCn).toBe('dso-test-client');
  });

  it('skips verification only with tlsSkipVerify: true, and warns loudly', async () => {
    const vault = await start(pki);
    const capture = createCaptureLogger();
    const insecure = await provider(vault, { tlsSkipVerify: true }, capture.log);
    expect((await insecure.resolve({ path: 'app/db' })).version).toBe('1');
    const warning = capture.lines.find((line) => line.level === 'warn');
    expect(warning?.message).toContain('VAULT TLS VERIFICATION IS OFF');
    expect(capture.text()).not.toContain(vault.rootToken);
  });

  it('rejects unusable TLS material with INVALID_CONFIG, quoting neither key nor certificate', async () => {
    const vault = await start(pki);
    const badKey = await failure(
      provider(vault, { tls: { certPem: pki.clientCertPem, keyPem: pki.serverKeyPem } }),
    );
    expect(badKey.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(badKey.message).not.toContain('PRIVATE KEY');
    const notPem = await failure(provider(vault, { tls: { caPem: 'not a certificate' } }));
    expect(notPem.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    const missing = await failure(provider(vault, { tls: { caFile: join(dir, 'absent.pem') } }));
    expect(missing.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(missing.message).toContain('ENOENT');
  });
});
