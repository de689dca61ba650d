import { runProviderConformance } from '@dso/provider-conformance';
import { vaultProvider } from './index.js';
import { createVaultFixture } from './test-support/vault-fixture.js';

// The conformance suite, in process and across the process boundary, against the fake Vault
// on 127.0.0.1 (token auth, KV v2, base64 values under the key `value`).
runProviderConformance({
  name: 'vault',
  definition: vaultProvider,
  module: new URL('./index.ts', import.meta.url).pathname,
  fixture: () => createVaultFixture(),
});
