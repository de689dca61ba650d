import { Agent, request } from 'node:https';
import { createSecureContext, rootCertificates } from 'node:tls';
import { ClientSecretCredential } from '@azure/identity';
import { SecretClient } from '@azure/keyvault-secrets';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeKeyVault, KEY_VAULT_RESOURCE, startFakeKeyVault } from './fake-key-vault.js';
import { createTestCertificates, type TestCertificates } from './test-ca.js';

// The fake itself, spoken to with raw HTTPS (status codes, headers and bodies as the service
// sends them) and through the real SDK (paging, attributes).

let certificates: TestCertificates;
let fake: FakeKeyVault;
let agent: Agent;
let client: SecretClient;

beforeAll(async () => {
  certificates = await createTestCertificates();
  fake = await startFakeKeyVault({
    tls: { key: certificates.serverKeyPem, cert: certificates.serverCertPem },
    pageSize: 2,
  });
  agent = new Agent({
    keepAlive: true,
    secureContext: createSecureContext({ ca: [...rootCertificates, certificates.caPem] }),
  });
  client = new SecretClient(
    fake.vaultUrl,
    new ClientSecretCredential(fake.tenantId, fake.clientId, fake.clientSecret, {
      authorityHost: fake.authorityHost,
      disableInstanceDiscovery: true,
      agent,
    }),
    { agent, disableChallengeResourceVerification: true, retryOptions: { maxRetries: 0 } },
  );
}, 30_000);

afterAll(async () => {
  agent?.destroy();
  await fake?.close();
  await certificates?.remove();
});

interface RawAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
}

function raw(
  method: string,
  path: string,
  options: { token?: string; form?: Record<string, string>; json?: unknown } = {},
): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const body =
      options.form !== undefined
        ? new URLSearchParams(options.form).toString()
        : options.json !== undefined
          ? JSON.stringify(options.json)
          : undefined;
    const req = request(
      new URL(path, fake.vaultUrl),
      {
        method,
        agent,
        headers: {
          ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
          ...(options.form !== undefined
            ? { 'content-type': 'application/x-www-form-urlencoded' }
            : {}),
          ...(options.json !== undefined ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: text === '' ? {} : JSON.parse(text),
          });
        });
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

async function token(): Promise<string> {
  const answer = await raw('POST', `/${fake.tenantId}/oauth2/v2.0/token`, {
    form: {
      grant_type: 'client_credentials',
      client_id: fake.clientId,
      client_secret: fake.clientSecret,
      scope: `${KEY_VAULT_RESOURCE}/.default`,
    },
  });
  expect(answer.status).toBe(200);
  return answer.body.access_token as string;
}

describe('authentication', () => {
  it('challenges a request without a token with the authority and the Key Vault resource', async () => {
    const answer = await raw('GET', '/secrets/anything?api-version=7.6');
    expect(answer.status).toBe(401);
    expect(answer.headers['www-authenticate']).toBe(
      `Bearer authorization="${fake.authorityHost}/${fake.tenantId}", resource="https://vault.azure.net"`,
    );
    expect(answer.body).toEqual({
      error: {
        code: 'Unauthorized',
        message: 'AKV10000: Request is missing a Bearer or PoP token.',
      },
    });
  });

  it('issues a bearer token for client credentials, and refuses a wrong secret or tenant as Entra ID does', async () => {
    const issued = await raw('POST', `/${fake.tenantId}/oauth2/v2.0/token`, {
      form: {
        grant_type: 'client_credentials',
        client_id: fake.clientId,
        client_secret: fake.clientSecret,
        scope: 'https://vault.azure.net/.default',
      },
    });
    expect(issued.body).toMatchObject({ token_type: 'Bearer', expires_in: 3599 });
    const wrongSecret = await raw('POST', `/${fake.tenantId}/oauth2/v2.0/token`, {
      form: {
        grant_type: 'client_credentials',
        client_id: fake.clientId,
        client_secret: 'x',
        scope: 'https://vault.azure.net/.default',
      },
    });
    expect(wrongSecret.status).toBe(401);
    expect(wrongSecret.body).toMatchObject({ error: 'invalid_client', error_codes: [7000215] });
    const wrongTenant = await raw('POST', '/other-tenant/oauth2/v2.0/token', {
      form: {
        grant_type: 'client_credentials',
        client_id: fake.clientId,
        client_secret: fake.clientSecret,
      },
    });
    expect(wrongTenant.status).toBe(400);
    expect(wrongTenant.body).toMatchObject({ error: 'invalid_request', error_codes: [90002] });
  });

  it('publishes an OpenID configuration whose token endpoint is its own', async () => {
    const answer = await raw('GET', `/${fake.tenantId}/v2.0/.well-known/openid-configuration`);
    expect(answer.body.token_endpoint).toBe(
      `${fake.authorityHost}/${fake.tenantId}/oauth2/v2.0/token`,
    );
  });

  it('refuses a token once revoked', async () => {
    const bearer = await token();
    fake.setSecret('revocable', 'v');
    expect((await raw('GET', '/secrets/revocable?api-version=7.6', { token: bearer })).status).toBe(
      200,
    );
    fake.revokeTokens();
    expect((await raw('GET', '/secrets/revocable?api-version=7.6', { token: bearer })).status).toBe(
      401,
    );
  });
});

describe('secrets API', () => {
  it('requires a known api-version', async () => {
    const bearer = await token();
    expect((await raw('GET', '/secrets/x', { token: bearer })).body).toMatchObject({
      error: { code: 'BadParameter' },
    });
    const unknown = await raw('GET', '/secrets/x?api-version=2016-10-01', { token: bearer });
    expect(unknown.status).toBe(400);
  });

  it('answers a secret bundle with its id, attributes in seconds, and a 404 SecretNotFound body', async () => {
    const bearer = await token();
    const stored = fake.setSecret('bundle', 'v', {
      contentType: 'text/plain',
      tags: { team: 'a' },
    });
    const answer = await raw('GET', `/secrets/BUNDLE/${stored.version}?api-version=7.6`, {
      token: bearer,
    });
    expect(answer.status).toBe(200);
    expect(answer.body).toMatchObject({
      value: 'v',
      contentType: 'text/plain',
      id: `${fake.authorityHost}/secrets/bundle/${stored.version}`,
      tags: { team: 'a' },
      attributes: {
        enabled: true,
        created: stored.created,
        updated: stored.updated,
        recoveryLevel: 'Recoverable+Purgeable',
      },
    });
    expect(Number.isInteger((answer.body.attributes as { created: number }).created)).toBe(true);
    const missing = await raw('GET', '/secrets/nope?api-version=7.6', { token: bearer });
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({ error: { code: 'SecretNotFound' } });
    const badName = await raw('GET', '/secrets/bad_name?api-version=7.6', { token: bearer });
    expect(badName.status).toBe(400);
  });

  it('refuses a disabled version with 403 SecretDisabled and serves an expired one (exp is informational)', async () => {
    const bearer = await token();
    fake.setSecret('off', 'v', { enabled: false });
    const disabled = await raw('GET', '/secrets/off?api-version=7.6', { token: bearer });
    expect(disabled.status).toBe(403);
    expect(disabled.body).toEqual({
      error: {
        code: 'Forbidden',
        message: 'Operation get is not allowed on a disabled secret.',
        innererror: { code: 'SecretDisabled' },
      },
    });
    fake.setSecret('old', 'v', { expiresOn: new Date(Date.now() - 1_000) });
    expect((await raw('GET', '/secrets/old?api-version=7.6', { token: bearer })).status).toBe(200);
  });

  it('pages secrets and versions with nextLink, and bounds maxresults to 1..25', async () => {
    for (let index = 0; index < 3; index += 1) await client.setSecret('paged', `v${index}`);
    const versions = [];
    for await (const properties of client.listPropertiesOfSecretVersions('paged'))
      versions.push(properties.version);
    expect(new Set(versions)).toEqual(
      new Set(fake.versions('paged').map((entry) => entry.version)),
    );
    const bearer = await token();
    const first = await raw('GET', '/secrets/paged/versions?api-version=7.6', { token: bearer });
    expect((first.body.value as unknown[]).length).toBe(2);
    expect(first.body.nextLink).toMatch(
      /^https:\/\/127\.0\.0\.1:\d+\/secrets\/paged\/versions\?api-version=7\.6&\$skiptoken=/,
    );
    expect(
      (await raw('GET', '/secrets?api-version=7.6&maxresults=26', { token: bearer })).status,
    ).toBe(400);
    const names = [];
    for await (const properties of client.listPropertiesOfSecrets()) names.push(properties.name);
    expect(names).toContain('paged');
  });

  it('updates attributes with PATCH, as updateSecretProperties sends it', async () => {
    const stored = await client.setSecret('patched', 'v');
    const updated = await client.updateSecretProperties('patched', stored.properties.version!, {
      enabled: false,
    });
    expect(updated.enabled).toBe(false);
    expect(fake.versions('patched')[0]?.enabled).toBe(false);
  });
});

describe('faults', () => {
  it('skips, counts, and sends Retry-After with a 429', async () => {
    const bearer = await token();
    fake.setSecret('faulty', 'v');
    const end = fake.fault({
      kind: 'status',
      status: 429,
      retryAfterSeconds: 7,
      skip: 1,
      count: 1,
    });
    try {
      expect((await raw('GET', '/secrets/faulty?api-version=7.6', { token: bearer })).status).toBe(
        200,
      );
      const throttled = await raw('GET', '/secrets/faulty?api-version=7.6', { token: bearer });
      expect(throttled.status).toBe(429);
      expect(throttled.headers['retry-after']).toBe('7');
      expect(throttled.body).toMatchObject({ error: { code: 'Throttled' } });
      expect((await raw('GET', '/secrets/faulty?api-version=7.6', { token: bearer })).status).toBe(
        200,
      );
    } finally {
      end();
    }
  });

  it('leaves an unauthenticated request to the challenge during a vault fault', async () => {
    const end = fake.fault({ kind: 'status', status: 503 });
    try {
      expect((await raw('GET', '/secrets/faulty?api-version=7.6')).status).toBe(401);
    } finally {
      end();
    }
  });
});
