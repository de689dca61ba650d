import type { ConformanceFixture } from '@dso/provider-conformance';
import { valueVersion } from '../env-provider.js';

/**
 * The conformance fixture of the `env` provider: the environment a provider will be given.
 * Values are stored base64-encoded and the provider is configured with `encoding: base64`,
 * since the suite stores binary values (NUL included) and an environment cannot hold a NUL.
 *
 * An environment is fixed when a process starts, and the host hands the provider a copy of it:
 * a `put` is seen only by a provider created after it. The conformance suite, as it stands,
 * shares one provider per half and stores values after creating it, so it cannot run against
 * this store until it can be told so (a fixture flag under which it opens a fresh provider
 * where it would reuse the shared one). This fixture is what `src/conformance.test.ts` will
 * pass to `runProviderConformance` then; until then, `src/env-provider.test.ts` uses it with
 * a fresh provider after every put, in process and across the process boundary.
 */
export async function environmentFixture(): Promise<ConformanceFixture> {
  const env: Record<string, string> = {};
  return {
    config: { allow: ['dso-conformance/*'], encoding: 'base64' },
    env,
    async put(path, value) {
      env[path] = Buffer.from(value).toString('base64');
      return valueVersion(value);
    },
    history: false,
    // An environment is fixed when the provider (its process) starts.
    snapshot: true,
    // Three, each a different kind of mistake: every one costs a child process in the suite's
    // second half. The unit tests refuse more.
    invalidConfigs: [{ allow: [] }, { allow: ['*'] }, { allow: ['DB_PASSWORD'], encoding: 'hex' }],
    async close() {},
  };
}
