import { runProviderConformance } from '@dso/provider-conformance';
import { azureProvider } from './index.js';
import { startAzureFixture } from './test-support/azure-fixture.js';

// The conformance suite, in process and across the process boundary, against the fake Key
// Vault on 127.0.0.1 through the real Azure SDK.
runProviderConformance({
  name: 'azure',
  definition: azureProvider,
  module: new URL('./index.ts', import.meta.url).pathname,
  fixture: async () => {
    const fixture = await startAzureFixture();
    const { fake, config } = fixture;
    const fault = (start: () => () => void) => async () => {
      const end = start();
      return async () => end();
    };
    return {
      config,
      env: fixture.env,
      put: (path, value) => fixture.put(path, value),
      history: true,
      invalidConfigs: [
        // Not https.
        { ...config, vaultUrl: 'http://plaintext-vault.example/' },
        // A misspelt key.
        { ...config, requestTimeoutMS: 5_000 },
        // A credential of an unknown kind.
        { ...config, credential: { kind: 'interactiveBrowser' } },
        // (An unset clientSecretEnv variable is refused too, tested in azure-provider.test.ts:
        // its message names the setting clientSecretEnv, which the suite's substring check
        // would take for a quote of this configuration's credential kind, clientSecret.)
        // A CA file that does not exist.
        { ...config, tls: { caFile: '/nonexistent/dso-test-ca.pem' } },
      ],
      faults: {
        // Access removed: 403 Forbidden with inner error AccessDenied.
        DSO_PROVIDER_UNAUTHORIZED: fault(() => fake.fault({ kind: 'status', status: 403 })),
        // Throttled with a Retry-After longer than maxRetryDelayMs: reported at once.
        DSO_PROVIDER_THROTTLED: fault(() =>
          fake.fault({ kind: 'status', status: 429, retryAfterSeconds: 30 }),
        ),
        // 503 without Retry-After: the SDK retries (maxRetries 2, fast backoff), then gives up.
        DSO_PROVIDER_UNAVAILABLE: fault(() => fake.fault({ kind: 'status', status: 503 })),
      },
      close: () => fixture.close(),
    };
  },
});
