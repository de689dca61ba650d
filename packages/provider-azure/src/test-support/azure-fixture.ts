import { Agent } from 'node:https';
import { createSecureContext, rootCertificates } from 'node:tls';
import { ClientSecretCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import type { AzureProviderConfigInput } from '../config.js';
import { encodeSecretValue } from '../secret-encoding.js';
import { secretNameForPath } from '../secret-name.js';
import {
  type FakeKeyVault,
  type FakeKeyVaultOptions,
  startFakeKeyVault,
} from './fake-key-vault.js';
import { createTestCertificates, type TestCertificates } from './test-ca.js';

/** The variable the fixture's configuration reads the client secret from. */
export const FIXTURE_SECRET_ENV = 'DSO_TEST_AZURE_CLIENT_SECRET';

/**
 * The conformance suite stores values up to 64 KiB; Key Vault's limit is 25 KB. The fixture
 * lifts the fake's limit so the suite's large-value checks run (a gap the README names).
 */
export const FIXTURE_MAX_VALUE_BYTES = 256 * 1024;

/** A fake Key Vault, a provider configuration pointed at it, and a real SDK client to fill it. */
export interface AzureFixture {
  fake: FakeKeyVault;
  certificates: TestCertificates;
  /** Configuration of the provider: client secret credential, the fake's CA, fast retries. */
  config: AzureProviderConfigInput;
  /** The provider's environment: the client secret, under {@link FIXTURE_SECRET_ENV}. */
  env: Record<string, string>;
  /** Stores `value` at `path` through the real SDK (PUT /secrets/{name}); returns the version. */
  put(path: string, value: Uint8Array): Promise<string>;
  close(): Promise<void>;
}

/**
 * Starts a fake Key Vault with a fresh CA and returns what a test needs to point the provider
 * at it. `put` goes through `@azure/keyvault-secrets` itself, so the fixture also exercises the
 * fake's PUT and its challenge flow.
 *
 * @throws Error when openssl is missing or a path cannot name a Key Vault secret (from `put`)
 */
export async function startAzureFixture(
  options: Partial<Omit<FakeKeyVaultOptions, 'tls'>> = {},
): Promise<AzureFixture> {
  const certificates = await createTestCertificates();
  let fake: FakeKeyVault;
  try {
    fake = await startFakeKeyVault({
      maxValueBytes: FIXTURE_MAX_VALUE_BYTES,
      ...options,
      tls: { key: certificates.serverKeyPem, cert: certificates.serverCertPem },
    });
  } catch (error) {
    await certificates.remove();
    throw error;
  }
  const agent = new Agent({
    keepAlive: true,
    secureContext: createSecureContext({ ca: [...rootCertificates, certificates.caPem] }),
  });
  const writer = new SecretClient(
    fake.vaultUrl,
    new ClientSecretCredential(fake.tenantId, fake.clientId, fake.clientSecret, {
      authorityHost: fake.authorityHost,
      disableInstanceDiscovery: true,
      agent,
    }),
    { agent, disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } },
  );
  const config: AzureProviderConfigInput = {
    vaultUrl: fake.vaultUrl,
    credential: {
      kind: 'clientSecret',
      tenantId: fake.tenantId,
      clientId: fake.clientId,
      clientSecretEnv: FIXTURE_SECRET_ENV,
    },
    authorityHost: fake.authorityHost,
    tls: { caFile: certificates.caFile },
    disableChallengeResourceVerification: true,
    // Fast backoff, so a 503 fault is retried and reported well within a test's time.
    retryDelayMs: 20,
    maxRetryDelayMs: 1_000,
  };
  return {
    fake,
    certificates,
    config,
    env: { [FIXTURE_SECRET_ENV]: fake.clientSecret },
    async put(path, value) {
      const mapped = secretNameForPath(path);
      if (!mapped.ok)
        throw new Error(`path ${path} cannot name a Key Vault secret: ${mapped.reason}`);
      const encoded = encodeSecretValue(value);
      const stored = await writer.setSecret(
        mapped.name,
        encoded.value,
        encoded.contentType === undefined ? {} : { contentType: encoded.contentType },
      );
      if (stored.properties.version === undefined) throw new Error('the fake returned no version');
      return stored.properties.version;
    },
    async close() {
      agent.destroy();
      try {
        await fake.close();
      } finally {
        await certificates.remove();
      }
    },
  };
}
