import diagnostics from 'node:diagnostics_channel';
import { createProvider, isProviderError } from '@dso/provider-sdk';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { azureProvider } from './index.js';
import { type AzureFixture, startAzureFixture } from './test-support/azure-fixture.js';

// The managedIdentity credential through the real SDK, against the fake's App Service style
// identity endpoint. The Azure SDK finds a managed identity endpoint in process.env (not in the
// provider's environment), so this file, which runs in its own worker, sets IDENTITY_ENDPOINT
// and IDENTITY_HEADER there and restores them afterwards.

const USER_ASSIGNED = '11111111-2222-3333-4444-555555555555';
const contacted: string[] = [];
const onRequest = (message: unknown) => {
  contacted.push(String((message as { request: { host?: string } }).request.host));
};
diagnostics.subscribe('http.client.request.start', onRequest);

let fixture: AzureFixture;
const saved = { endpoint: process.env.IDENTITY_ENDPOINT, header: process.env.IDENTITY_HEADER };

beforeAll(async () => {
  fixture = await startAzureFixture({ managedIdentity: { clientId: USER_ASSIGNED } });
  process.env.IDENTITY_ENDPOINT = fixture.fake.managedIdentityEndpoint;
  process.env.IDENTITY_HEADER = fixture.fake.managedIdentityHeader;
}, 30_000);

afterAll(async () => {
  for (const [key, value] of [
    ['IDENTITY_ENDPOINT', saved.endpoint],
    ['IDENTITY_HEADER', saved.header],
  ] as const) {
    if (value === undefined) delete process.env[key];
    else process.env[key] = value;
  }
  await fixture?.close();
  diagnostics.unsubscribe('http.client.request.start', onRequest);
  expect(new Set(contacted.map((host) => host.replace(/:\d+$/, '')))).toEqual(
    new Set(['127.0.0.1']),
  );
});

it('gets a token from the system-assigned managed identity and reads the secret', async () => {
  await fixture.put('mi/system', Buffer.from('from-managed-identity'));
  const provider = await createProvider(
    azureProvider,
    { ...fixture.config, credential: { kind: 'managedIdentity' } },
    { name: 'az-mi', env: {} },
  );
  try {
    const mark = fixture.fake.requests.length;
    expect((await provider.resolve({ path: 'mi/system' })).value.revealText()).toBe(
      'from-managed-identity',
    );
    const identity = fixture.fake.requests
      .slice(mark)
      .filter((request) => request.kind === 'managed-identity');
    expect(identity).toHaveLength(1);
    expect(identity[0]?.query).toMatchObject({ resource: 'https://vault.azure.net' });
    expect(identity[0]?.query.client_id).toBeUndefined();
  } finally {
    await provider.close();
  }
});

it('asks for the user-assigned identity named by clientId', async () => {
  await fixture.put('mi/user', Buffer.from('user-assigned'));
  const provider = await createProvider(
    azureProvider,
    { ...fixture.config, credential: { kind: 'managedIdentity', clientId: USER_ASSIGNED } },
    { name: 'az-mi', env: {} },
  );
  try {
    const mark = fixture.fake.requests.length;
    expect((await provider.resolve({ path: 'mi/user' })).value.revealText()).toBe('user-assigned');
    const identity = fixture.fake.requests
      .slice(mark)
      .find((request) => request.kind === 'managed-identity');
    expect(identity?.query.client_id).toBe(USER_ASSIGNED);
  } finally {
    await provider.close();
  }
});

it('maps an identity the host does not have to DSO_PROVIDER_UNAUTHORIZED', async () => {
  const provider = await createProvider(
    azureProvider,
    {
      ...fixture.config,
      credential: { kind: 'managedIdentity', clientId: '99999999-9999-9999-9999-999999999999' },
      maxRetries: 0,
    },
    { name: 'az-mi', env: {} },
  );
  try {
    const error = await provider.resolve({ path: 'mi/user' }).then(
      () => undefined,
      (caught: unknown) => caught,
    );
    expect(isProviderError(error)).toBe(true);
    expect((error as { code: string }).code).toBe('DSO_PROVIDER_UNAUTHORIZED');
  } finally {
    await provider.close();
  }
});
