import { describe, expect, it } from 'vitest';
import {
  type AwsCredentialProvider,
  createCredentialChain,
  type SdkDefaultProviderFactory,
} from './credentials.js';

function recordingFactory() {
  const inits: Record<string, unknown>[] = [];
  const factory: SdkDefaultProviderFactory = (init) => {
    inits.push(init);
    const provider: AwsCredentialProvider = async () => ({
      accessKeyId: 'AKIAFROMCHAIN',
      secretAccessKey: 'chain',
    });
    return provider;
  };
  return { inits, factory };
}

const base = { region: 'eu-west-1', provider: 'aws' };

describe('createCredentialChain', () => {
  it('uses the static keys of the given environment, with session token and expiration', async () => {
    const { inits, factory } = recordingFactory();
    const chain = createCredentialChain({
      ...base,
      profile: undefined,
      env: {
        AWS_ACCESS_KEY_ID: 'AKIAENV',
        AWS_SECRET_ACCESS_KEY: 'secret',
        AWS_SESSION_TOKEN: 'token',
        AWS_CREDENTIAL_EXPIRATION: '2030-01-01T00:00:00Z',
      },
      sdkDefaultProvider: () => factory,
    });
    expect(chain.source).toBe('environment');
    expect(await chain.provider()).toEqual({
      accessKeyId: 'AKIAENV',
      secretAccessKey: 'secret',
      sessionToken: 'token',
      expiration: new Date('2030-01-01T00:00:00Z'),
    });
    expect(inits).toEqual([]);
  });

  it("hands the SDK's chain what it would read from the environment, from this one", async () => {
    const { inits, factory } = recordingFactory();
    const chain = createCredentialChain({
      ...base,
      profile: undefined,
      env: {
        HOME: '/home/dso',
        AWS_WEB_IDENTITY_TOKEN_FILE: '/var/run/token',
        AWS_ROLE_ARN: 'arn:aws:iam::123456789012:role/reader',
        AWS_ROLE_SESSION_NAME: 'dso',
      },
      sdkDefaultProvider: () => factory,
    });
    expect(chain.source).toBe('default-chain');
    expect(await chain.provider()).toMatchObject({ accessKeyId: 'AKIAFROMCHAIN' });
    await chain.provider();
    expect(inits).toHaveLength(1);
    expect(inits[0]).toMatchObject({
      profile: 'default',
      filepath: '/home/dso/.aws/credentials',
      configFilepath: '/home/dso/.aws/config',
      webIdentityTokenFile: '/var/run/token',
      roleArn: 'arn:aws:iam::123456789012:role/reader',
      roleSessionName: 'dso',
      parentClientConfig: { region: 'eu-west-1' },
    });
  });

  it('passes empty web identity inputs so the SDK does not fall back to process.env', async () => {
    const { inits, factory } = recordingFactory();
    const chain = createCredentialChain({
      ...base,
      profile: 'reader',
      env: {
        AWS_SHARED_CREDENTIALS_FILE: '/etc/dso/aws-credentials',
        AWS_CONFIG_FILE: '/etc/dso/aws-config',
      },
      sdkDefaultProvider: () => factory,
    });
    await chain.provider();
    expect(inits[0]).toMatchObject({
      profile: 'reader',
      filepath: '/etc/dso/aws-credentials',
      configFilepath: '/etc/dso/aws-config',
      webIdentityTokenFile: '',
      roleArn: '',
    });
  });

  it('lets a selected profile win over static keys, as the SDK does', async () => {
    const { inits, factory } = recordingFactory();
    const chain = createCredentialChain({
      ...base,
      profile: 'reader',
      env: { AWS_ACCESS_KEY_ID: 'AKIAENV', AWS_SECRET_ACCESS_KEY: 'secret' },
      sdkDefaultProvider: () => factory,
    });
    expect(chain.source).toBe('profile');
    expect(await chain.provider()).toMatchObject({ accessKeyId: 'AKIAFROMCHAIN' });
    expect(inits[0]).toMatchObject({ profile: 'reader' });
  });

  it('refuses half a key pair or a malformed expiration with DSO_PROVIDER_INVALID_CONFIG', () => {
    const sdkDefaultProvider = () => recordingFactory().factory;
    expect(() =>
      createCredentialChain({
        ...base,
        profile: undefined,
        env: { AWS_ACCESS_KEY_ID: 'AKIAENV' },
        sdkDefaultProvider,
      }),
    ).toThrowError(
      expect.objectContaining({
        code: 'DSO_PROVIDER_INVALID_CONFIG',
        message: expect.stringContaining('AWS_SECRET_ACCESS_KEY'),
      }),
    );
    expect(() =>
      createCredentialChain({
        ...base,
        profile: undefined,
        env: {
          AWS_ACCESS_KEY_ID: 'AKIAENV',
          AWS_SECRET_ACCESS_KEY: 's',
          AWS_CREDENTIAL_EXPIRATION: 'soon',
        },
        sdkDefaultProvider,
      }),
    ).toThrowError(expect.objectContaining({ code: 'DSO_PROVIDER_INVALID_CONFIG' }));
  });
});
