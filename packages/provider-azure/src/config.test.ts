import { describe, expect, it } from 'vitest';
import {
  azureConfigSchema,
  DEFAULT_MAX_RETRIES,
  DEFAULT_MAX_RETRY_DELAY_MS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_RETRY_DELAY_MS,
} from './config.js';

const vaultUrl = 'https://myvault.vault.azure.net/';

describe('azureConfigSchema', () => {
  it('fills in the defaults: the default credential, bounded retries and timeouts', () => {
    expect(azureConfigSchema.parse({ vaultUrl })).toEqual({
      vaultUrl,
      credential: { kind: 'default' },
      tls: {},
      requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
      maxRetries: DEFAULT_MAX_RETRIES,
      retryDelayMs: DEFAULT_RETRY_DELAY_MS,
      maxRetryDelayMs: DEFAULT_MAX_RETRY_DELAY_MS,
      disableChallengeResourceVerification: false,
    });
  });

  it('keeps the worst case of one call inside the host 30 s deadline by default', () => {
    // Timeouts are not retried by the SDK; backoff adds at most maxRetries × maxRetryDelayMs.
    expect(
      DEFAULT_REQUEST_TIMEOUT_MS + DEFAULT_MAX_RETRIES * DEFAULT_MAX_RETRY_DELAY_MS,
    ).toBeLessThan(30_000);
  });

  it.each([
    { kind: 'default' },
    { kind: 'managedIdentity' },
    { kind: 'managedIdentity', clientId: '00000000-0000-0000-0000-000000000001' },
    {
      kind: 'clientSecret',
      tenantId: 'contoso.onmicrosoft.com',
      clientId: '00000000-0000-0000-0000-000000000001',
      clientSecretEnv: 'AZURE_CLIENT_SECRET',
    },
  ])('accepts the credential %j', (credential) => {
    expect(azureConfigSchema.parse({ vaultUrl, credential }).credential).toEqual(credential);
  });

  it.each([
    ['an http vault', { vaultUrl: 'http://myvault.vault.azure.net/' }],
    ['a vault URL with a path', { vaultUrl: 'https://myvault.vault.azure.net/secrets' }],
    ['a vault URL with credentials', { vaultUrl: 'https://user:pw@myvault.vault.azure.net/' }],
    ['a vault URL with a query', { vaultUrl: 'https://myvault.vault.azure.net/?x=1' }],
    ['no vault URL', {}],
    ['an unknown key', { vaultUrl, retries: 3 }],
    ['an unknown credential kind', { vaultUrl, credential: { kind: 'azureCli' } }],
    [
      'a key the credential kind does not take',
      { vaultUrl, credential: { kind: 'default', clientId: 'x' } },
    ],
    [
      'a client secret in the configuration',
      {
        vaultUrl,
        credential: { kind: 'clientSecret', tenantId: 't', clientId: 'c', clientSecret: 's' },
      },
    ],
    [
      'a clientSecretEnv that is not a variable name',
      {
        vaultUrl,
        credential: { kind: 'clientSecret', tenantId: 't', clientId: 'c', clientSecretEnv: 'A-B' },
      },
    ],
    ['an http authority', { vaultUrl, authorityHost: 'http://login.example/' }],
    ['a zero timeout', { vaultUrl, requestTimeoutMs: 0 }],
    ['too many retries', { vaultUrl, maxRetries: 11 }],
    ['an unknown API version', { vaultUrl, serviceVersion: '2016-10-01' }],
    ['an unknown tls key', { vaultUrl, tls: { insecure: true } }],
  ])('refuses %s', (_, config) => {
    expect(azureConfigSchema.safeParse(config).success).toBe(false);
  });

  it('names the setting, not its value, when it refuses one', () => {
    const result = azureConfigSchema.safeParse({ vaultUrl: 'http://secret-host.example/' });
    expect(result.success).toBe(false);
    const text = JSON.stringify(result.error?.issues);
    expect(text).toContain('vaultUrl');
    expect(text).not.toContain('secret-host');
  });
});
