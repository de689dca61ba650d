import { randomBytes } from 'node:crypto';
import {
  CreateSecretCommand,
  PutSecretValueCommand,
  SecretsManagerClient,
} from '@aws-sdk/client-secrets-manager';
import {
  type FakeSecretsManager,
  type FakeSecretsManagerOptions,
  startFakeSecretsManager,
} from './fake-secrets-manager.js';

/** A store for tests: a fake Secrets Manager, and what a provider pointed at it needs. */
export interface AwsFixture {
  fake: FakeSecretsManager;
  /** Configuration of a provider pointed at the fake (region comes from `env`). */
  config: { endpoint: string; requestTimeoutMs: number; maxAttempts: number };
  /**
   * The provider's environment: the fake's key pair and region, and instance metadata
   * disabled, so the credential chain stops at the environment and never looks for a role.
   */
  env: Record<string, string>;
  /** Stores `value` at `path` as the new AWSCURRENT version through the SDK; returns its VersionId. */
  put(path: string, value: Uint8Array): Promise<string>;
  /** Backend failures the fake produces on demand; each returns a function that ends it. */
  faults: {
    DSO_PROVIDER_UNAUTHORIZED: () => Promise<() => Promise<void>>;
    DSO_PROVIDER_THROTTLED: () => Promise<() => Promise<void>>;
    DSO_PROVIDER_UNAVAILABLE: () => Promise<() => Promise<void>>;
  };
  close(): Promise<void>;
}

const STRICT_UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Starts a fake and returns the fixture around it. `put` goes through the real SDK
 * (CreateSecret for a new name, PutSecretValue after), storing text that is valid UTF-8 as
 * SecretString and anything else as SecretBinary, so both read paths are exercised.
 *
 * @example
 * const fixture = await createAwsFixture();
 * const version = await fixture.put('app/db', new TextEncoder().encode('s3cret'));
 * const provider = await createProvider(awsProvider, fixture.config, { env: fixture.env });
 */
export async function createAwsFixture(
  options: FakeSecretsManagerOptions = {},
): Promise<AwsFixture> {
  const fake = await startFakeSecretsManager(options);
  // The fixture writes with a key of its own, so the faults below (scoped to the provider's
  // key) never fail a put.
  const writerCredentials = {
    accessKeyId: `AKIAWRITER${randomBytes(5).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(30).toString('base64'),
  };
  fake.addCredentials(writerCredentials);
  const writer = new SecretsManagerClient({
    region: fake.region,
    endpoint: fake.endpoint,
    credentials: writerCredentials,
    maxAttempts: 1,
  });
  const created = new Set<string>();
  const { accessKeyId, secretAccessKey } = fake.credentials;
  const providerOnly = [accessKeyId];

  const put = async (path: string, value: Uint8Array): Promise<string> => {
    const payload = isUtf8(value)
      ? { SecretString: Buffer.from(value).toString('utf8') }
      : { SecretBinary: Uint8Array.from(value) };
    if (!created.has(path)) {
      const output = await writer.send(new CreateSecretCommand({ Name: path, ...payload }));
      created.add(path);
      return output.VersionId as string;
    }
    const output = await writer.send(new PutSecretValueCommand({ SecretId: path, ...payload }));
    return output.VersionId as string;
  };

  const fault = (start: () => () => void) => async () => {
    const end = start();
    return async () => end();
  };

  return {
    fake,
    config: { endpoint: fake.endpoint, requestTimeoutMs: 5_000, maxAttempts: 2 },
    env: {
      AWS_ACCESS_KEY_ID: accessKeyId,
      AWS_SECRET_ACCESS_KEY: secretAccessKey,
      AWS_REGION: fake.region,
      AWS_EC2_METADATA_DISABLED: 'true',
    },
    put,
    faults: {
      // The real path to UnrecognizedClientException: the provider's key stops being accepted.
      DSO_PROVIDER_UNAUTHORIZED: fault(() => {
        fake.revokeCredentials(accessKeyId);
        return () => fake.addCredentials({ accessKeyId, secretAccessKey });
      }),
      DSO_PROVIDER_THROTTLED: fault(() =>
        fake.inject({
          kind: 'error',
          errorType: 'ThrottlingException',
          status: 400,
          accessKeyIds: providerOnly,
        }),
      ),
      DSO_PROVIDER_UNAVAILABLE: fault(() =>
        fake.inject({
          kind: 'error',
          errorType: 'ServiceUnavailable',
          status: 503,
          accessKeyIds: providerOnly,
        }),
      ),
    },
    async close() {
      writer.destroy();
      await fake.close();
    },
  };
}

function isUtf8(bytes: Uint8Array): boolean {
  try {
    STRICT_UTF8.decode(bytes);
    return true;
  } catch {
    // Not valid UTF-8: stored as SecretBinary, which keeps every byte.
    return false;
  }
}
