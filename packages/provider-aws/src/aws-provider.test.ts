import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createProvider,
  isProviderError,
  type ProviderErrorCode,
  type SecretProvider,
} from '@dso/provider-sdk';
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { awsProvider } from './index.js';
import { type AwsFixture, createAwsFixture } from './test-support/aws-fixture.js';
import type { FakeFault } from './test-support/fake-secrets-manager.js';
import { canary, dump } from './test-support/helpers.js';
import { guardLoopback } from './test-support/loopback-guard.js';

const text = (value: string) => new TextEncoder().encode(value);
const JSON_TYPE = 'application/x-amz-json-1.1';

// Every test in this file runs under the guard: a connection to anything but 127.0.0.1 is
// refused and recorded, and the last hook fails the file if one was attempted where a test did
// not expect it.
const guard = guardLoopback();
let expectedRemote = 0;
afterAll(() => {
  guard.restore();
  expect(guard.attempts.filter((attempt) => !attempt.allowed)).toHaveLength(expectedRemote);
});

let fixture: AwsFixture;
const providers: SecretProvider[] = [];

beforeEach(async () => {
  // The agent's own environment must never feed the provider: give it other keys and a
  // region the fake refuses, and disable instance metadata in case a chain reaches it.
  vi.stubEnv('AWS_ACCESS_KEY_ID', 'AKIAPROCESSENVKEY000');
  vi.stubEnv('AWS_SECRET_ACCESS_KEY', 'process-env-secret');
  vi.stubEnv('AWS_REGION', 'ap-south-1');
  vi.stubEnv('AWS_EC2_METADATA_DISABLED', 'true');
  vi.stubEnv('AWS_PROFILE', '');
  fixture = await createAwsFixture();
});

afterEach(async () => {
  for (const provider of providers.splice(0)) await provider.close();
  await fixture.close();
  vi.unstubAllEnvs();
});

async function open(
  config: Record<string, unknown> = {},
  env: Record<string, string | undefined> = {},
): Promise<SecretProvider> {
  const provider = await createProvider(
    awsProvider,
    { ...fixture.config, ...config },
    { name: 'aws-test', env: { ...fixture.env, ...env } },
  );
  providers.push(provider);
  return provider;
}

async function failure(
  promise: Promise<unknown>,
): Promise<Error & { code: ProviderErrorCode; retryable: boolean }> {
  const error = await promise.then(
    () => {
      throw new Error('expected the call to fail');
    },
    (caught: unknown) => caught,
  );
  if (!isProviderError(error)) throw error;
  return error;
}

function operations(): string[] {
  return fixture.fake.requests.map((request) => request.operation);
}

describe('resolve', () => {
  it('reads a SecretString as its UTF-8 bytes and reports the VersionId', async () => {
    const value = `${canary()} ünïcödé`;
    const version = await fixture.put('app/db', text(value));
    const provider = await open();
    const resolved = await provider.resolve({ path: 'app/db' });
    expect(resolved.version).toBe(version);
    expect(resolved.value.revealText()).toBe(value);
    expect(`${resolved.value}`).toBe('[REDACTED]');
  });

  it('reads a SecretBinary byte for byte', async () => {
    const bytes = Uint8Array.from([0, 255, 1, 0xc3, 0x28, 0x80, 10]);
    const version = await fixture.put('app/blob', bytes);
    expect(fixture.fake.versions('app/blob')[0]?.binary).toBe(true);
    const resolved = await (await open()).resolve({ path: 'app/blob' });
    expect(resolved.version).toBe(version);
    expect([...resolved.value.reveal()]).toEqual([...bytes]);
  });

  it('reads a 64 KiB secret, the service maximum', async () => {
    const bytes = new Uint8Array(65_536).map((_, index) => (index * 7) % 256);
    await fixture.put('app/large', bytes);
    const resolved = await (await open()).resolve({ path: 'app/large' });
    expect(resolved.value.reveal().equals(Buffer.from(bytes))).toBe(true);
  });

  it('reads AWSPREVIOUS and old VersionIds after a put moves the stages', async () => {
    const first = await fixture.put('app/db', text('one'));
    const second = await fixture.put('app/db', text('two'));
    const third = await fixture.put('app/db', text('three'));
    const provider = await open();
    expect((await provider.resolve({ path: 'app/db' })).version).toBe(third);
    const previous = await provider.resolve({ path: 'app/db', version: 'AWSPREVIOUS' });
    expect(previous.version).toBe(second);
    expect(previous.value.revealText()).toBe('two');
    // `first` carries no stage any more; it stays readable by VersionId.
    expect(fixture.fake.versions('app/db')[0]).toMatchObject({ versionId: first, stages: [] });
    const old = await provider.resolve({ path: 'app/db', version: first });
    expect(old.value.revealText()).toBe('one');
    expect(old.version).toBe(first);
  });

  it('sends a uuid-shaped version as VersionId and anything else as VersionStage', async () => {
    const current = await fixture.put('app/db', text('current'));
    const pending = fixture.fake.putSecretValue('app/db', 'pending', {
      versionStages: ['AWSPENDING'],
    });
    fixture.fake.putSecretValue('app/db', 'blue', { versionStages: ['blue'] });
    const provider = await open();
    expect((await provider.resolve({ path: 'app/db', version: 'AWSPENDING' })).version).toBe(
      pending,
    );
    expect((await provider.resolve({ path: 'app/db', version: 'blue' })).value.revealText()).toBe(
      'blue',
    );
    expect(
      (await provider.resolve({ path: 'app/db', version: current.toUpperCase() }).catch((e) => e))
        .code,
    ).toBe('DSO_PROVIDER_NOT_FOUND');
    expect((await provider.resolve({ path: 'app/db' })).version).toBe(current);
  });

  it('tries a VersionId-shaped non-uuid as a stage first, then as a VersionId', async () => {
    await fixture.put('app/db', text('current'));
    const token = 'deploy-2024-01-31-build-000000000042';
    fixture.fake.putSecretValue('app/db', 'custom token', { versionId: token });
    const before = fixture.fake.requests.length;
    const resolved = await (await open()).resolve({ path: 'app/db', version: token });
    expect(resolved.version).toBe(token);
    expect(resolved.value.revealText()).toBe('custom token');
    expect(fixture.fake.requests.slice(before).map((r) => [r.operation, r.errorType])).toEqual([
      ['GetSecretValue', 'ResourceNotFoundException'],
      ['GetSecretValue', undefined],
    ]);
  });

  it('reads the configured versionStage when a reference names no version', async () => {
    await fixture.put('app/db', text('current'));
    const pending = fixture.fake.putSecretValue('app/db', 'pending', {
      versionStages: ['AWSPENDING'],
    });
    const provider = await open({ versionStage: 'AWSPENDING' });
    expect((await provider.resolve({ path: 'app/db' })).version).toBe(pending);
  });

  it('resolves a secret by its ARN', async () => {
    const { arn, versionId } = fixture.fake.createSecret('by/arn', 'value');
    expect((await (await open()).resolve({ path: arn })).version).toBe(versionId);
  });

  it('rejects with DSO_PROVIDER_NOT_FOUND for a missing secret, stage or VersionId', async () => {
    await fixture.put('app/db', text('x'));
    const provider = await open();
    const missing = await failure(provider.resolve({ path: 'app/nothing' }));
    expect(missing.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(missing.retryable).toBe(false);
    expect(missing.message).toContain('app/nothing');
    expect((await failure(provider.resolve({ path: 'app/db', version: 'AWSPENDING' }))).code).toBe(
      'DSO_PROVIDER_NOT_FOUND',
    );
    expect(
      (
        await failure(
          provider.resolve({ path: 'app/db', version: '00000000-0000-4000-8000-000000000000' }),
        )
      ).code,
    ).toBe('DSO_PROVIDER_NOT_FOUND');
  });

  it('rejects with DSO_PROVIDER_NOT_FOUND and the reason for a secret scheduled for deletion', async () => {
    await fixture.put('app/old', text('x'));
    fixture.fake.scheduleDeletion('app/old');
    const provider = await open();
    const error = await failure(provider.resolve({ path: 'app/old' }));
    expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(error.message).toContain('marked for deletion');
    expect(error.message).toContain('restore-secret');
    const probed = await failure(provider.probe?.({ path: 'app/old' }) as Promise<unknown>);
    expect(probed.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(probed.message).toContain('scheduled for deletion');
  });
});

describe('probe', () => {
  it('returns the VersionId carrying AWSCURRENT with one DescribeSecret and no value', async () => {
    await fixture.put('app/db', text('one'));
    const second = await fixture.put('app/db', text('two'));
    const provider = await open();
    const before = fixture.fake.requests.length;
    expect(await provider.probe?.({ path: 'app/db' })).toEqual({ version: second });
    expect(operations().slice(before)).toEqual(['DescribeSecret']);
    const third = await fixture.put('app/db', text('three'));
    expect(await provider.probe?.({ path: 'app/db' })).toEqual({ version: third });
  });

  it('returns the VersionId carrying a requested stage', async () => {
    const first = await fixture.put('app/db', text('one'));
    await fixture.put('app/db', text('two'));
    const provider = await open();
    expect(await provider.probe?.({ path: 'app/db', version: 'AWSPREVIOUS' })).toEqual({
      version: first,
    });
    const error = await failure(
      provider.probe?.({ path: 'app/db', version: 'AWSPENDING' }) as Promise<unknown>,
    );
    expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
    expect(error.message).toContain('stage AWSPENDING');
  });

  it('confirms a VersionId without a stage through ListSecretVersionIds', async () => {
    const first = await fixture.put('app/db', text('one'));
    await fixture.put('app/db', text('two'));
    await fixture.put('app/db', text('three'));
    const provider = await open();
    const before = fixture.fake.requests.length;
    expect(await provider.probe?.({ path: 'app/db', version: first })).toEqual({ version: first });
    expect(operations().slice(before)).toEqual(['DescribeSecret', 'ListSecretVersionIds']);
    const missing = await failure(
      provider.probe?.({
        path: 'app/db',
        version: '00000000-0000-4000-8000-000000000000',
      }) as Promise<unknown>,
    );
    expect(missing.code).toBe('DSO_PROVIDER_NOT_FOUND');
  });

  it('rejects with DSO_PROVIDER_NOT_FOUND for a missing secret', async () => {
    const error = await failure((await open()).probe?.({ path: 'nope' }) as Promise<unknown>);
    expect(error.code).toBe('DSO_PROVIDER_NOT_FOUND');
  });
});

describe('list', () => {
  it('pages through ListSecrets with NextToken, filtered by name prefix', async () => {
    await fixture.close();
    fixture = await createAwsFixture({ maxPageSize: 2 });
    for (const name of ['app/a', 'app/b', 'app/c', 'app/d', 'app/e', 'other/x']) {
      fixture.fake.createSecret(name, 'v');
    }
    const provider = await open();
    const before = fixture.fake.requests.length;
    expect(await provider.list?.('app')).toEqual(['app/a', 'app/b', 'app/c', 'app/d', 'app/e']);
    expect(operations().slice(before)).toEqual(['ListSecrets', 'ListSecrets', 'ListSecrets']);
    expect(await provider.list?.()).toHaveLength(6);
  });

  it('keeps paging through empty pages until NextToken is absent', async () => {
    await fixture.close();
    fixture = await createAwsFixture({ maxPageSize: 2, emptyPages: true });
    for (const name of ['s/1', 's/2', 's/3']) fixture.fake.createSecret(name, 'v');
    const provider = await open();
    const before = fixture.fake.requests.length;
    expect(await provider.list?.('s/')).toEqual(['s/1', 's/2', 's/3']);
    expect(operations().slice(before).length).toBe(4);
  });

  it('lists whole path segments: app/db holds app/db/x but not app/dbx', async () => {
    for (const name of ['app/db', 'app/db/user', 'app/dbx', 'App/db/upper']) {
      fixture.fake.createSecret(name, 'v');
    }
    const provider = await open();
    expect(await provider.list?.('app/db')).toEqual(['app/db', 'app/db/user']);
    expect(await provider.list?.('app/db/')).toEqual(['app/db', 'app/db/user']);
    expect(await provider.list?.('nothing/here')).toEqual([]);
  });

  it('leaves out secrets scheduled for deletion', async () => {
    fixture.fake.createSecret('keep/a', 'v');
    fixture.fake.createSecret('keep/b', 'v');
    fixture.fake.scheduleDeletion('keep/b');
    expect(await (await open()).list?.('keep')).toEqual(['keep/a']);
  });

  it('filters here a prefix the service filter cannot hold', async () => {
    fixture.fake.createSecret('plain/a', 'v');
    // `#` is not allowed in a ListSecrets filter value: the provider lists all and filters.
    expect(await (await open()).list?.('plain#')).toEqual([]);
    const listed = fixture.fake.requests.filter((r) => r.operation === 'ListSecrets');
    expect(listed.at(-1)?.errorType).toBeUndefined();
  });

  it('rejects with DSO_PROVIDER_UNAUTHORIZED when ListSecrets is denied', async () => {
    fixture.fake.inject({
      kind: 'error',
      errorType: 'AccessDeniedException',
      status: 400,
      operations: ['ListSecrets'],
    });
    const error = await failure((await open()).list?.('app') as Promise<unknown>);
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('secretsmanager:ListSecrets');
  });
});

describe('health', () => {
  it('is ok when the service answers', async () => {
    const health = await (await open()).health?.();
    expect(health?.ok).toBe(true);
    expect(operations().at(-1)).toBe('ListSecrets');
  });

  it('is ok, with a note, when credentials work but ListSecrets is not permitted', async () => {
    fixture.fake.inject({
      kind: 'error',
      errorType: 'AccessDeniedException',
      status: 400,
      operations: ['ListSecrets'],
    });
    const health = await (await open()).health?.();
    expect(health).toEqual({
      ok: true,
      detail: expect.stringContaining('ListSecrets not permitted'),
    });
  });

  it('is not ok when the key is refused or the service is down', async () => {
    const provider = await open({ maxAttempts: 1 });
    fixture.fake.revokeCredentials(fixture.fake.credentials.accessKeyId);
    const refused = await provider.health?.();
    expect(refused?.ok).toBe(false);
    expect(refused?.detail).toContain('DSO_PROVIDER_UNAUTHORIZED');
    fixture.fake.addCredentials(fixture.fake.credentials);
    fixture.fake.inject({ kind: 'error', errorType: 'ServiceUnavailable', status: 503 });
    const down = await provider.health?.();
    expect(down?.ok).toBe(false);
    expect(down?.detail).toContain('DSO_PROVIDER_UNAVAILABLE');
  });
});

describe('error mapping', () => {
  const cases: [string, FakeFault, ProviderErrorCode, string][] = [
    [
      'ResourceNotFoundException',
      { kind: 'error', errorType: 'ResourceNotFoundException', status: 400 },
      'DSO_PROVIDER_NOT_FOUND',
      'not found',
    ],
    [
      'InvalidRequestException',
      {
        kind: 'error',
        errorType: 'InvalidRequestException',
        status: 400,
        message: 'the KMS key is disabled',
      },
      'DSO_PROVIDER_NOT_FOUND',
      'the KMS key is disabled',
    ],
    [
      'ValidationException',
      { kind: 'error', errorType: 'ValidationException', status: 400 },
      'DSO_PROVIDER_NOT_FOUND',
      'refused the secret id',
    ],
    [
      'AccessDeniedException',
      { kind: 'error', errorType: 'AccessDeniedException', status: 400 },
      'DSO_PROVIDER_UNAUTHORIZED',
      'secretsmanager:GetSecretValue',
    ],
    [
      'UnrecognizedClientException',
      { kind: 'error', errorType: 'UnrecognizedClientException', status: 400 },
      'DSO_PROVIDER_UNAUTHORIZED',
      'does not recognise the access key',
    ],
    [
      'InvalidSignatureException',
      { kind: 'error', errorType: 'InvalidSignatureException', status: 400 },
      'DSO_PROVIDER_UNAUTHORIZED',
      'signature',
    ],
    [
      'ExpiredTokenException',
      { kind: 'error', errorType: 'ExpiredTokenException', status: 400 },
      'DSO_PROVIDER_UNAUTHORIZED',
      'expired',
    ],
    [
      'DecryptionFailure',
      { kind: 'error', errorType: 'DecryptionFailure', status: 400 },
      'DSO_PROVIDER_UNAUTHORIZED',
      'kms:Decrypt',
    ],
    [
      'an unnamed 403',
      { kind: 'error', errorType: 'Forbidden', status: 403 },
      'DSO_PROVIDER_UNAUTHORIZED',
      'refused the credentials',
    ],
    [
      'ThrottlingException',
      { kind: 'error', errorType: 'ThrottlingException', status: 400 },
      'DSO_PROVIDER_THROTTLED',
      'throttled',
    ],
    [
      'TooManyRequestsException (429)',
      { kind: 'error', errorType: 'TooManyRequestsException', status: 429 },
      'DSO_PROVIDER_THROTTLED',
      'throttled',
    ],
    [
      'an unnamed 429',
      { kind: 'error', errorType: 'Unknown', status: 429, header: false },
      'DSO_PROVIDER_THROTTLED',
      'throttled',
    ],
    [
      'InternalServiceError (500)',
      { kind: 'error', errorType: 'InternalServiceError', status: 500 },
      'DSO_PROVIDER_UNAVAILABLE',
      'HTTP 500',
    ],
    [
      'ServiceUnavailable (503)',
      { kind: 'error', errorType: 'ServiceUnavailable', status: 503 },
      'DSO_PROVIDER_UNAVAILABLE',
      'HTTP 503',
    ],
    [
      'a proxy 502 page',
      { kind: 'raw', status: 502, body: '<html><h1>502 Bad Gateway</h1></html>' },
      'DSO_PROVIDER_UNAVAILABLE',
      'HTTP 502',
    ],
    ['a dropped connection', { kind: 'reset' }, 'DSO_PROVIDER_UNAVAILABLE', 'cannot reach'],
  ];

  it.each(cases)('maps %s to %s', async (_, fault, code, words) => {
    const secret = canary();
    await fixture.put('app/db', text(secret));
    fixture.fake.inject({ ...fault, operations: ['GetSecretValue'] });
    const error = await failure((await open({ maxAttempts: 1 })).resolve({ path: 'app/db' }));
    expect(error.code).toBe(code);
    expect(error.retryable).toBe(
      ['DSO_PROVIDER_THROTTLED', 'DSO_PROVIDER_UNAVAILABLE', 'DSO_PROVIDER_TIMEOUT'].includes(code),
    );
    expect(error.message).toContain(words);
    expect((error as { provider?: string }).provider).toBe('aws-test');
    expect(dump(error)).not.toContain(secret);
  });

  it('rejects with DSO_PROVIDER_UNAUTHORIZED when the fake does not know the key', async () => {
    await fixture.put('app/db', text('x'));
    const provider = await open();
    fixture.fake.revokeCredentials(fixture.fake.credentials.accessKeyId);
    const error = await failure(provider.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(fixture.fake.requests.at(-1)?.errorType).toBe('UnrecognizedClientException');
  });

  it('rejects with DSO_PROVIDER_UNAUTHORIZED when the secret key is wrong (the signature is checked)', async () => {
    await fixture.put('app/db', text('x'));
    const provider = await open(
      { maxAttempts: 1 },
      { AWS_SECRET_ACCESS_KEY: 'not-the-secret-key' },
    );
    const error = await failure(provider.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('InvalidSignatureException');
    expect(dump(error)).not.toContain('not-the-secret-key');
  });

  it('keeps a secret out of the error when a 200 response cannot be parsed', async () => {
    const secret = canary();
    fixture.fake.inject({
      kind: 'raw',
      status: 200,
      contentType: JSON_TYPE,
      body: `{"ARN":"arn:x","Name":"app/db","SecretString":"${secret}","VersionId":`,
      operations: ['GetSecretValue'],
    });
    const error = await failure((await open({ maxAttempts: 1 })).resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(dump(error)).not.toContain(secret);
  });

  it('retries throttling with backoff and succeeds within maxAttempts', async () => {
    const version = await fixture.put('app/db', text('x'));
    fixture.fake.inject({ kind: 'error', errorType: 'ThrottlingException', status: 400, times: 2 });
    const provider = await open({ maxAttempts: 3 });
    const before = fixture.fake.requests.length;
    expect((await provider.resolve({ path: 'app/db' })).version).toBe(version);
    expect(fixture.fake.requests.slice(before).map((r) => r.status)).toEqual([400, 400, 200]);
  });

  it('makes exactly maxAttempts attempts and says how many', async () => {
    await fixture.put('app/db', text('x'));
    fixture.fake.inject({ kind: 'error', errorType: 'InternalServiceError', status: 500 });
    const provider = await open({ maxAttempts: 2 });
    const before = fixture.fake.requests.length;
    const error = await failure(provider.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.message).toContain('after 2 attempts');
    expect(fixture.fake.requests.length - before).toBe(2);
  });

  it('rejects with DSO_PROVIDER_TIMEOUT when an attempt outlasts requestTimeoutMs', async () => {
    await fixture.put('app/db', text('x'));
    fixture.fake.inject({ kind: 'delay', delayMs: 8_000, operations: ['GetSecretValue'] });
    const provider = await open({ requestTimeoutMs: 200, maxAttempts: 1 });
    const started = Date.now();
    const error = await failure(provider.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
    expect(error.message).toContain('200 ms');
    // Far below the fake's 8 s delay (bounds stay loose: test machines are shared).
    expect(Date.now() - started).toBeLessThan(4_000);
  });
});

describe('cancellation', () => {
  it('returns promptly when the signal aborts mid-request, and drops the connection', async () => {
    await fixture.put('app/db', text('x'));
    fixture.fake.inject({ kind: 'delay', delayMs: 8_000, operations: ['GetSecretValue'] });
    const provider = await open();
    const controller = new AbortController();
    const pending = provider.resolve({ path: 'app/db' }, { signal: controller.signal });
    await expect
      .poll(() => fixture.fake.requests.some((r) => r.operation === 'GetSecretValue'), {
        timeout: 5_000,
        message: 'the request',
      })
      .toBe(true);
    const started = Date.now();
    controller.abort();
    const error = await failure(pending);
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
    // The SDK aborted the HTTP request: the fake sees its client go away.
    await expect
      .poll(
        () =>
          fixture.fake.requests.some((r) => r.operation === 'GetSecretValue' && r.status === -1),
        { timeout: 5_000, message: 'the fake to see the connection close' },
      )
      .toBe(true);
  });

  it('returns promptly when aborted while the SDK waits to retry', async () => {
    await fixture.put('app/db', text('x'));
    fixture.fake.inject({ kind: 'error', errorType: 'ThrottlingException', status: 400 });
    const provider = await open({ maxAttempts: 10 });
    const controller = new AbortController();
    const before = fixture.fake.requests.length;
    const pending = provider.probe?.(
      { path: 'app/db' },
      { signal: controller.signal },
    ) as Promise<unknown>;
    await expect
      .poll(() => fixture.fake.requests.length, { timeout: 5_000, message: 'the first attempt' })
      .toBeGreaterThan(before);
    const started = Date.now();
    controller.abort();
    const error = await failure(pending);
    // Nine more throttled attempts would sleep for seconds between them.
    expect(Date.now() - started).toBeLessThan(2_000);
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
  });

  it('sends nothing for an already aborted signal', async () => {
    const provider = await open();
    const before = fixture.fake.requests.length;
    const error = await failure(
      provider.list?.('app', { signal: AbortSignal.abort() }) as Promise<unknown>,
    );
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
    expect(fixture.fake.requests.length).toBe(before);
  });
});

describe('credentials and region', () => {
  it("signs with the provider environment's key, not the process's", async () => {
    await fixture.put('app/db', text('x'));
    await (await open()).resolve({ path: 'app/db' });
    const mine = fixture.fake.requests.filter((r) => r.operation === 'GetSecretValue');
    expect(mine.map((r) => r.accessKeyId)).toEqual([fixture.fake.credentials.accessKeyId]);
    expect(mine.map((r) => r.region)).toEqual([fixture.fake.region]);
    expect(fixture.fake.requests.every((r) => r.remoteAddress === '127.0.0.1')).toBe(true);
  });

  it('sends AWS_SESSION_TOKEN from the provider environment', async () => {
    const key = {
      accessKeyId: 'ASIASESSIONKEY000001',
      secretAccessKey: 'session-secret',
      sessionToken: 'session-token-1',
    };
    fixture.fake.addCredentials(key);
    fixture.fake.createSecret('app/db', 'x');
    const env = { AWS_ACCESS_KEY_ID: key.accessKeyId, AWS_SECRET_ACCESS_KEY: key.secretAccessKey };
    const without = await failure((await open({}, env)).resolve({ path: 'app/db' }));
    expect(without.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    const withToken = await open({}, { ...env, AWS_SESSION_TOKEN: key.sessionToken });
    await withToken.resolve({ path: 'app/db' });
    expect(fixture.fake.requests.at(-1)).toMatchObject({
      accessKeyId: key.accessKeyId,
      sessionToken: true,
      status: 200,
    });
  });

  it('reads a profile from the shared credentials file named in the provider environment', async () => {
    const home = await mkdtemp(join(tmpdir(), 'dso-aws-'));
    try {
      const key = { accessKeyId: 'AKIAPROFILEKEY000001', secretAccessKey: 'profile-secret' };
      fixture.fake.addCredentials(key);
      fixture.fake.createSecret('app/db', 'x');
      const file = join(home, 'credentials');
      await writeFile(
        file,
        `[default]\naws_access_key_id = AKIAWRONGDEFAULT0001\naws_secret_access_key = nope\n\n[reader]\naws_access_key_id = ${key.accessKeyId}\naws_secret_access_key = ${key.secretAccessKey}\n`,
        { mode: 0o600 },
      );
      const env = { AWS_SHARED_CREDENTIALS_FILE: file, AWS_CONFIG_FILE: join(home, 'config') };
      // `profile` in the configuration wins over the environment's keys, as in the SDK.
      await (await open({ profile: 'reader' }, env)).resolve({ path: 'app/db' });
      expect(fixture.fake.requests.at(-1)).toMatchObject({
        accessKeyId: key.accessKeyId,
        status: 200,
      });
      // So does AWS_PROFILE in the provider's environment.
      await (await open({}, { ...env, AWS_PROFILE: 'reader' })).resolve({ path: 'app/db' });
      expect(fixture.fake.requests.at(-1)).toMatchObject({
        accessKeyId: key.accessKeyId,
        status: 200,
      });
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('rejects with DSO_PROVIDER_UNAUTHORIZED when no credentials are found, contacting no metadata endpoint', async () => {
    const home = await mkdtemp(join(tmpdir(), 'dso-aws-'));
    try {
      const attemptsBefore = guard.attempts.length;
      const provider = await open(
        {},
        {
          AWS_ACCESS_KEY_ID: undefined,
          AWS_SECRET_ACCESS_KEY: undefined,
          HOME: home,
          AWS_SHARED_CREDENTIALS_FILE: join(home, 'none'),
          AWS_CONFIG_FILE: join(home, 'none'),
        },
      );
      const before = fixture.fake.requests.length;
      const error = await failure(provider.resolve({ path: 'app/db' }));
      expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
      expect(error.message).toContain('no AWS credentials');
      expect(fixture.fake.requests.length).toBe(before);
      expect(guard.attempts.slice(attemptsBefore).filter((a) => !a.allowed)).toEqual([]);
    } finally {
      await rm(home, { recursive: true, force: true });
    }
  });

  it('refuses half a key pair at create', async () => {
    const error = await failure(open({}, { AWS_SECRET_ACCESS_KEY: undefined }));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('AWS_SECRET_ACCESS_KEY');
  });

  it('takes the region from AWS_REGION in the provider environment, and the configuration over it', async () => {
    fixture.fake.createSecret('app/db', 'x');
    await (await open()).resolve({ path: 'app/db' });
    // The fake refuses a request scoped to another region, as the service's endpoint does.
    const error = await failure(
      (await open({ region: 'eu-west-1', maxAttempts: 1 })).resolve({ path: 'app/db' }),
    );
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(fixture.fake.requests.at(-1)).toMatchObject({
      region: 'eu-west-1',
      errorType: 'InvalidSignatureException',
    });
  });

  it('refuses a provider with no region, even when the process has AWS_REGION', async () => {
    const error = await failure(open({}, { AWS_REGION: undefined }));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('AWS_REGION');
  });

  it("sends requests to the region's endpoint when none is configured (refused here by the guard)", async () => {
    const provider = await createProvider(
      awsProvider,
      { region: 'eu-west-1', maxAttempts: 1 },
      { name: 'aws-test', env: fixture.env },
    );
    providers.push(provider);
    const attemptsBefore = guard.attempts.length;
    const error = await failure(provider.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(guard.attempts.slice(attemptsBefore)).toEqual([
      { host: 'secretsmanager.eu-west-1.amazonaws.com', port: 443, allowed: false },
    ]);
    expectedRemote += 1;
  });

  it('uses the FIPS endpoint when AWS_USE_FIPS_ENDPOINT is set in the provider environment', async () => {
    const provider = await createProvider(
      awsProvider,
      { region: 'us-east-2', maxAttempts: 1 },
      { name: 'aws-test', env: { ...fixture.env, AWS_USE_FIPS_ENDPOINT: 'true' } },
    );
    providers.push(provider);
    const attemptsBefore = guard.attempts.length;
    await failure(provider.probe?.({ path: 'app/db' }) as Promise<unknown>);
    expect(guard.attempts.slice(attemptsBefore).map((a) => a.host)).toEqual([
      'secretsmanager-fips.us-east-2.amazonaws.com',
    ]);
    expectedRemote += 1;
  });
});

describe('lifecycle', () => {
  it('refuses calls after close, and close twice is harmless', async () => {
    const provider = await open();
    await provider.close();
    await provider.close();
    const error = await failure(provider.resolve({ path: 'app/db' }));
    expect(error.code).toBe('DSO_PROVIDER_INTERNAL');
  });

  it('declares list, probe and health, and no watch', () => {
    expect(awsProvider.capabilities).toEqual({
      list: true,
      watch: false,
      probe: true,
      health: true,
    });
    expect(awsProvider.type).toBe('aws');
  });
});
