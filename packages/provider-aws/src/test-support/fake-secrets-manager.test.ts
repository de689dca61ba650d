import {
  CreateSecretCommand,
  DeleteSecretCommand,
  DescribeSecretCommand,
  GetSecretValueCommand,
  ListSecretsCommand,
  ListSecretVersionIdsCommand,
  PutSecretValueCommand,
  RestoreSecretCommand,
  SecretsManagerClient,
  UpdateSecretVersionStageCommand,
} from '@aws-sdk/client-secrets-manager';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FakeSecretsManager, startFakeSecretsManager } from './fake-secrets-manager.js';
import { formatAmzDate } from './sigv4.js';

let fake: FakeSecretsManager;
let client: SecretsManagerClient;

beforeEach(async () => {
  fake = await startFakeSecretsManager();
  client = new SecretsManagerClient({
    region: fake.region,
    endpoint: fake.endpoint,
    credentials: fake.credentials,
    maxAttempts: 1,
  });
});

afterEach(async () => {
  client.destroy();
  await fake.close();
});

async function raw(
  target: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
) {
  const response = await fetch(fake.endpoint, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.1',
      ...(target === undefined ? {} : { 'x-amz-target': `secretsmanager.${target}` }),
      ...headers,
    },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    headers: response.headers,
    body: (await response.json()) as Record<string, unknown>,
  };
}

const rejection = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: Error) => error,
  );

describe('protocol', () => {
  it('listens on 127.0.0.1 only', () => {
    expect(new URL(fake.endpoint).hostname).toBe('127.0.0.1');
  });

  it('refuses an unsigned request with the service error shape', async () => {
    const response = await raw('GetSecretValue', { SecretId: 'x' });
    expect(response.status).toBe(400);
    expect(response.headers.get('x-amzn-errortype')).toBe('MissingAuthenticationTokenException');
    expect(response.headers.get('x-amzn-requestid')).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.headers.get('content-type')).toBe('application/x-amz-json-1.1');
    expect(response.body).toEqual({
      __type: 'MissingAuthenticationTokenException',
      message: 'Missing Authentication Token',
    });
  });

  it('refuses a forged signature for a known key', async () => {
    const date = formatAmzDate(Date.now());
    const response = await raw(
      'GetSecretValue',
      { SecretId: 'x' },
      {
        'x-amz-date': date,
        authorization: `AWS4-HMAC-SHA256 Credential=${fake.credentials.accessKeyId}/${date.slice(0, 8)}/${fake.region}/secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`,
      },
    );
    expect(response.body.__type).toBe('InvalidSignatureException');
  });

  it('refuses a signature older than five minutes', async () => {
    const date = formatAmzDate(Date.now() - 10 * 60_000);
    const response = await raw(
      'GetSecretValue',
      { SecretId: 'x' },
      {
        'x-amz-date': date,
        authorization: `AWS4-HMAC-SHA256 Credential=${fake.credentials.accessKeyId}/${date.slice(0, 8)}/${fake.region}/secretsmanager/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`,
      },
    );
    expect(response.body).toMatchObject({
      __type: 'InvalidSignatureException',
      message: expect.stringContaining('Signature expired'),
    });
  });

  it('verifies what the real SDK signs, and names the key in its record', async () => {
    await client.send(new CreateSecretCommand({ Name: 'a', SecretString: 'v' }));
    expect(fake.requests.at(-1)).toMatchObject({
      operation: 'CreateSecret',
      accessKeyId: fake.credentials.accessKeyId,
      region: fake.region,
      status: 200,
    });
    const wrong = new SecretsManagerClient({
      region: fake.region,
      endpoint: fake.endpoint,
      credentials: { ...fake.credentials, secretAccessKey: 'wrong' },
      maxAttempts: 1,
    });
    expect((await rejection(wrong.send(new GetSecretValueCommand({ SecretId: 'a' }))))?.name).toBe(
      'InvalidSignatureException',
    );
    wrong.destroy();
  });

  it('answers 404 UnknownOperationException off the service path', async () => {
    const response = await fetch(`${fake.endpoint}/other`, { method: 'POST', body: '{}' });
    expect(response.status).toBe(404);
    expect(((await response.json()) as { __type: string }).__type).toBe(
      'UnknownOperationException',
    );
  });

  it('lets the SDK correct its clock from the Date header after a skew error', async () => {
    await fake.close();
    fake = await startFakeSecretsManager({ clockOffsetMs: 20 * 60_000 });
    const skewed = new SecretsManagerClient({
      region: fake.region,
      endpoint: fake.endpoint,
      credentials: fake.credentials,
      maxAttempts: 2,
    });
    fake.createSecret('a', 'v');
    expect((await skewed.send(new GetSecretValueCommand({ SecretId: 'a' }))).SecretString).toBe(
      'v',
    );
    expect(fake.requests.map((r) => r.errorType)).toEqual(['InvalidSignatureException', undefined]);
    skewed.destroy();
  });
});

describe('versions and stages', () => {
  it('moves AWSCURRENT to a new version and AWSPREVIOUS to the old current one', async () => {
    const created = await client.send(new CreateSecretCommand({ Name: 'db', SecretString: 'one' }));
    const second = await client.send(
      new PutSecretValueCommand({ SecretId: 'db', SecretString: 'two' }),
    );
    const third = await client.send(
      new PutSecretValueCommand({ SecretId: 'db', SecretString: 'three' }),
    );
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'db' }));
    expect(described.VersionIdsToStages).toEqual({
      [second.VersionId as string]: ['AWSPREVIOUS'],
      [third.VersionId as string]: ['AWSCURRENT'],
    });
    // The first version lost its stages: listed only with IncludeDeprecated, still readable.
    const all = await client.send(
      new ListSecretVersionIdsCommand({ SecretId: 'db', IncludeDeprecated: true }),
    );
    expect(all.Versions?.map((v) => v.VersionId)).toContain(created.VersionId);
    const labelled = await client.send(new ListSecretVersionIdsCommand({ SecretId: 'db' }));
    expect(labelled.Versions?.map((v) => v.VersionId)).not.toContain(created.VersionId);
    const old = await client.send(
      new GetSecretValueCommand({ SecretId: 'db', VersionId: created.VersionId }),
    );
    expect(old).toMatchObject({ SecretString: 'one', VersionStages: [] });
  });

  it('puts a version under AWSPENDING without touching AWSCURRENT, then promotes it', async () => {
    const created = await client.send(new CreateSecretCommand({ Name: 'db', SecretString: 'one' }));
    const pending = await client.send(
      new PutSecretValueCommand({
        SecretId: 'db',
        SecretString: 'two',
        VersionStages: ['AWSPENDING'],
      }),
    );
    expect((await client.send(new GetSecretValueCommand({ SecretId: 'db' }))).SecretString).toBe(
      'one',
    );
    await client.send(
      new UpdateSecretVersionStageCommand({
        SecretId: 'db',
        VersionStage: 'AWSCURRENT',
        MoveToVersionId: pending.VersionId,
        RemoveFromVersionId: created.VersionId,
      }),
    );
    const described = await client.send(new DescribeSecretCommand({ SecretId: 'db' }));
    expect(described.VersionIdsToStages?.[pending.VersionId as string]).toEqual([
      'AWSPENDING',
      'AWSCURRENT',
    ]);
    expect(described.VersionIdsToStages?.[created.VersionId as string]).toEqual(['AWSPREVIOUS']);
  });

  it('refuses to move a stage without naming the version that holds it', async () => {
    await client.send(new CreateSecretCommand({ Name: 'db', SecretString: 'one' }));
    const next = await client.send(
      new PutSecretValueCommand({ SecretId: 'db', SecretString: 'x', VersionStages: ['blue'] }),
    );
    const error = await rejection(
      client.send(
        new UpdateSecretVersionStageCommand({
          SecretId: 'db',
          VersionStage: 'AWSCURRENT',
          MoveToVersionId: next.VersionId,
        }),
      ),
    );
    expect(error?.name).toBe('InvalidParameterException');
  });

  it('treats a repeated ClientRequestToken as idempotent, and refuses it with another value', async () => {
    await client.send(new CreateSecretCommand({ Name: 'db', SecretString: 'one' }));
    const token = '11111111-2222-4333-8444-555555555555';
    await client.send(
      new PutSecretValueCommand({ SecretId: 'db', SecretString: 'two', ClientRequestToken: token }),
    );
    const again = await client.send(
      new PutSecretValueCommand({ SecretId: 'db', SecretString: 'two', ClientRequestToken: token }),
    );
    expect(again.VersionId).toBe(token);
    const error = await rejection(
      client.send(
        new PutSecretValueCommand({
          SecretId: 'db',
          SecretString: 'other',
          ClientRequestToken: token,
        }),
      ),
    );
    expect(error?.name).toBe('ResourceExistsException');
  });

  it('stores SecretBinary bytes and returns them as bytes', async () => {
    await client.send(
      new CreateSecretCommand({ Name: 'bin', SecretBinary: Uint8Array.from([0, 1, 255]) }),
    );
    const got = await client.send(new GetSecretValueCommand({ SecretId: 'bin' }));
    expect(got.SecretString).toBeUndefined();
    expect([...(got.SecretBinary ?? [])]).toEqual([0, 1, 255]);
  });

  it('refuses a value over 65536 bytes and an out-of-range VersionId', async () => {
    const big = await rejection(
      client.send(new CreateSecretCommand({ Name: 'big', SecretString: 'x'.repeat(65_537) })),
    );
    expect(big?.name).toBe('ValidationException');
    await client.send(new CreateSecretCommand({ Name: 'db', SecretString: 'x' }));
    const short = await rejection(
      client.send(new GetSecretValueCommand({ SecretId: 'db', VersionId: 'short' })),
    );
    expect(short?.name).toBe('ValidationException');
  });

  it('names what it cannot find, as the service does', async () => {
    await client.send(new CreateSecretCommand({ Name: 'db', SecretString: 'x' }));
    expect(
      (await rejection(client.send(new GetSecretValueCommand({ SecretId: 'nope' }))))?.message,
    ).toBe("Secrets Manager can't find the specified secret.");
    expect(
      (
        await rejection(
          client.send(new GetSecretValueCommand({ SecretId: 'db', VersionStage: 'AWSPENDING' })),
        )
      )?.message,
    ).toBe("Secrets Manager can't find the specified secret value for staging label: AWSPENDING");
  });
});

describe('deletion', () => {
  it('refuses reads of a secret scheduled for deletion until it is restored', async () => {
    await client.send(new CreateSecretCommand({ Name: 'db', SecretString: 'x' }));
    await client.send(new DeleteSecretCommand({ SecretId: 'db', RecoveryWindowInDays: 7 }));
    const error = await rejection(client.send(new GetSecretValueCommand({ SecretId: 'db' })));
    expect(error?.name).toBe('InvalidRequestException');
    expect(
      (await client.send(new DescribeSecretCommand({ SecretId: 'db' }))).DeletedDate,
    ).toBeInstanceOf(Date);
    expect((await client.send(new ListSecretsCommand({}))).SecretList).toEqual([]);
    expect(
      (await client.send(new ListSecretsCommand({ IncludePlannedDeletion: true }))).SecretList,
    ).toHaveLength(1);
    await client.send(new RestoreSecretCommand({ SecretId: 'db' }));
    expect((await client.send(new GetSecretValueCommand({ SecretId: 'db' }))).SecretString).toBe(
      'x',
    );
  });

  it('deletes at once with ForceDeleteWithoutRecovery', async () => {
    await client.send(new CreateSecretCommand({ Name: 'db', SecretString: 'x' }));
    await client.send(
      new DeleteSecretCommand({ SecretId: 'db', ForceDeleteWithoutRecovery: true }),
    );
    expect(
      (await rejection(client.send(new DescribeSecretCommand({ SecretId: 'db' }))))?.name,
    ).toBe('ResourceNotFoundException');
  });
});

describe('ListSecrets', () => {
  it('pages with NextToken and refuses a token it did not issue', async () => {
    for (const name of ['a/1', 'a/2', 'a/3']) fake.createSecret(name, 'v');
    const first = await client.send(new ListSecretsCommand({ MaxResults: 2 }));
    expect(first.SecretList?.map((s) => s.Name)).toEqual(['a/1', 'a/2']);
    const second = await client.send(
      new ListSecretsCommand({ MaxResults: 2, NextToken: first.NextToken }),
    );
    expect(second.SecretList?.map((s) => s.Name)).toEqual(['a/3']);
    expect(second.NextToken).toBeUndefined();
    expect(
      (await rejection(client.send(new ListSecretsCommand({ NextToken: 'bogus' }))))?.name,
    ).toBe('InvalidNextTokenException');
    expect((await rejection(client.send(new ListSecretsCommand({ MaxResults: 101 }))))?.name).toBe(
      'ValidationException',
    );
  });

  it('filters names by case-sensitive prefix, with negation', async () => {
    for (const name of ['app/db', 'app/cache', 'App/other', 'ops/x']) fake.createSecret(name, 'v');
    const named = await client.send(
      new ListSecretsCommand({ Filters: [{ Key: 'name', Values: ['app/'] }] }),
    );
    expect(named.SecretList?.map((s) => s.Name)).toEqual(['app/db', 'app/cache']);
    const negated = await client.send(
      new ListSecretsCommand({ Filters: [{ Key: 'name', Values: ['!app/'] }] }),
    );
    expect(negated.SecretList?.map((s) => s.Name)).toEqual(['App/other', 'ops/x']);
    const invalid = await rejection(
      client.send(new ListSecretsCommand({ Filters: [{ Key: 'name', Values: ['a#b'] }] })),
    );
    expect(invalid?.name).toBe('ValidationException');
  });
});

describe('faults', () => {
  it('injects an error for chosen operations, a number of times', async () => {
    fake.createSecret('db', 'x');
    fake.inject({
      kind: 'error',
      errorType: 'ThrottlingException',
      status: 400,
      operations: ['GetSecretValue'],
      times: 1,
    });
    const error = await rejection(client.send(new GetSecretValueCommand({ SecretId: 'db' })));
    expect(error).toMatchObject({ name: 'ThrottlingException', message: 'Rate exceeded' });
    expect((await client.send(new GetSecretValueCommand({ SecretId: 'db' }))).SecretString).toBe(
      'x',
    );
  });

  it('ends a fault when its function is called', async () => {
    fake.createSecret('db', 'x');
    const end = fake.inject({ kind: 'error', errorType: 'ServiceUnavailable', status: 503 });
    const error = await rejection(client.send(new DescribeSecretCommand({ SecretId: 'db' })));
    expect(error).toMatchObject({ name: 'ServiceUnavailable', $metadata: { httpStatusCode: 503 } });
    end();
    await client.send(new DescribeSecretCommand({ SecretId: 'db' }));
  });

  it('stops accepting a revoked key', async () => {
    fake.revokeCredentials(fake.credentials.accessKeyId);
    expect((await rejection(client.send(new ListSecretsCommand({}))))?.name).toBe(
      'UnrecognizedClientException',
    );
  });
});
