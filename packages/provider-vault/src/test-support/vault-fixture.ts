import type { ConformanceFixture } from '@dso/provider-conformance';
import { fetch } from 'undici';
import { type FakeVault, startFakeVault } from './fake-vault.js';

/**
 * The conformance fixture: a fresh fake Vault, a token in the provider's environment, and a
 * configuration that serves the base64 key `value` of each secret, so binary values round-trip.
 * `put` writes through the fake's HTTP API (`POST /v1/secret/data/<path>`), as a person with
 * the Vault CLI would.
 *
 * @example
 * runProviderConformance({ name: 'vault', definition, module, fixture: () => createVaultFixture() });
 */
export async function createVaultFixture(): Promise<ConformanceFixture & { fake: FakeVault }> {
  const fake = await startFakeVault();
  const token = fake.createToken();
  const config = {
    address: fake.address,
    valueKey: 'value',
    valueEncoding: 'base64',
    requestTimeoutMs: 3_000,
  };
  const fault = (start: () => () => void) => async () => {
    const end = start();
    return async () => end();
  };
  return {
    fake,
    config,
    env: { VAULT_TOKEN: token },
    async put(path, value) {
      const response = await fetch(`${fake.address}/v1/secret/data/${path}`, {
        method: 'POST',
        headers: { 'x-vault-token': fake.rootToken, 'content-type': 'application/json' },
        body: JSON.stringify({ data: { value: Buffer.from(value).toString('base64') } }),
      });
      const body = (await response.json()) as { data?: { version?: number } };
      if (response.status !== 200 || typeof body.data?.version !== 'number') {
        throw new Error(`fake vault refused the write (HTTP ${response.status})`);
      }
      return String(body.data.version);
    },
    history: true,
    // One of each kind, not every refusal the schema knows (config.test.ts has those): across
    // the process boundary each one starts a child, all at once, within the suite's deadline.
    invalidConfigs: [
      // Not a URL.
      { address: 'not-a-url-s3ntinel' },
      // A misspelt key.
      { ...config, mountPath: 'kv-s3ntinel' },
      // An AppRole secret ID variable that is not set in the provider's environment.
      {
        ...config,
        auth: { method: 'approle', roleId: 'role-s3ntinel', secretIdEnv: 'UNSET_S3NTINEL_ID' },
      },
      // A CA file that does not exist (over https, so the schema lets it through to the read).
      { address: 'https://127.0.0.1:1', tls: { caFile: '/nonexistent/dso-s3ntinel-ca.pem' } },
    ],
    faults: {
      // The token lost its policy: 403 permission denied on every request.
      DSO_PROVIDER_UNAUTHORIZED: fault(() => fake.fault({ type: 'permission-denied' })),
      // A rate limit quota: 429 with Retry-After.
      DSO_PROVIDER_THROTTLED: fault(() =>
        fake.fault({ type: 'rate-limited', retryAfterSeconds: 1 }),
      ),
      // Sealed: 503 on every request, sys/health reports sealed.
      DSO_PROVIDER_UNAVAILABLE: fault(() => fake.fault({ type: 'sealed' })),
    },
    close: () => fake.close(),
  };
}
