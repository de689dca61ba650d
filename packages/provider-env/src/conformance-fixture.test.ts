import { randomBytes } from 'node:crypto';
import {
  createProcessProvider,
  createProvider,
  isProviderError,
  type SecretProvider,
} from '@dso/provider-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import envProvider from './index.js';
import { environmentFixture } from './test-support/conformance-fixture.js';

const MODULE = new URL('./index.ts', import.meta.url).pathname;
const cleanups: Array<() => Promise<void>> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** What the conformance suite stores: text, every byte value, empty, and 64 KiB. */
function samples(): Array<[string, Uint8Array]> {
  const run = randomBytes(4).toString('hex');
  return [
    [`dso-conformance/${run}/text`, Buffer.from(`pässwörd ✓ canary-${run} 🔑`)],
    [`dso-conformance/${run}/binary`, Uint8Array.from({ length: 256 }, (_, index) => index)],
    [`dso-conformance/${run}/empty`, new Uint8Array(0)],
    [`dso-conformance/${run}/large`, randomBytes(64 * 1024)],
  ];
}

async function check(provider: SecretProvider, stored: Array<[string, Uint8Array, string]>) {
  for (const [path, bytes, version] of stored) {
    const resolved = await provider.resolve({ path });
    expect(Buffer.compare(resolved.value.reveal(), Buffer.from(bytes)), path).toBe(0);
    expect(resolved.version).toBe(version);
    expect(await provider.probe!({ path })).toEqual({ version });
  }
  const prefix = stored[0]![0].split('/').slice(0, 2).join('/');
  expect(await provider.list!(`${prefix}/`)).toEqual(stored.map(([path]) => path).sort());
  const refused = await provider.resolve({ path: 'HOME' }).catch((error: unknown) => error);
  expect(isProviderError(refused) && refused.code).toBe('DSO_PROVIDER_NOT_FOUND');
}

describe('the env conformance fixture, with a provider created after its puts', () => {
  it('round-trips text, binary, empty and 64 KiB values in process', async () => {
    const fixture = await environmentFixture();
    cleanups.push(() => fixture.close());
    const stored = await Promise.all(
      samples().map(
        async ([path, bytes]) =>
          [path, bytes, await fixture.put(path, bytes)] as [string, Uint8Array, string],
      ),
    );
    const provider = await createProvider(envProvider, fixture.config, {
      name: 'env-under-test',
      env: { ...fixture.env },
    });
    cleanups.push(() => provider.close());
    await check(provider, stored);
  });

  it('round-trips the same values across the process boundary, the child holding only its env', async () => {
    const fixture = await environmentFixture();
    cleanups.push(() => fixture.close());
    const stored = await Promise.all(
      samples().map(
        async ([path, bytes]) =>
          [path, bytes, await fixture.put(path, bytes)] as [string, Uint8Array, string],
      ),
    );
    const provider = await createProcessProvider({
      name: 'env-under-test',
      module: MODULE,
      config: fixture.config,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...fixture.env },
      execArgv: ['--conditions=@dso/source', '--import', 'tsx'],
    });
    cleanups.push(() => provider.close());
    await check(provider, stored);
  }, 30_000);

  it('refuses its invalid configurations', async () => {
    const fixture = await environmentFixture();
    for (const config of fixture.invalidConfigs) {
      const error = await createProvider(envProvider, config).catch((caught: unknown) => caught);
      expect(isProviderError(error) && error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    }
  });
});
