import { describe, expect, it } from 'vitest';
import {
  awsConfigSchema,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  endpointProblem,
  resolveAwsOptions,
} from './config.js';

describe('awsConfigSchema', () => {
  it('applies the defaults', () => {
    expect(awsConfigSchema.parse({})).toEqual({
      versionStage: 'AWSCURRENT',
      requestTimeoutMs: DEFAULT_REQUEST_TIMEOUT_MS,
      maxAttempts: DEFAULT_MAX_ATTEMPTS,
    });
  });

  it('accepts every kind of region name', () => {
    for (const region of [
      'us-east-1',
      'eu-central-2',
      'us-gov-west-1',
      'cn-northwest-1',
      'ap-southeast-5',
      'il-central-1',
    ]) {
      expect(awsConfigSchema.safeParse({ region }).success).toBe(true);
    }
  });

  it.each([
    [{ regoin: 'us-east-1' }, 'an unknown key'],
    [{ region: 'US-EAST-1' }, 'an upper-case region'],
    [{ region: 'moon' }, 'a word that is not a region'],
    [{ endpoint: 'http://secretsmanager.example.com' }, 'plain http to another host'],
    [{ endpoint: 'https://user:pass@vpce.example.com' }, 'user info in the endpoint'],
    [{ endpoint: 'https://vpce.example.com/?x=1' }, 'a query in the endpoint'],
    [{ endpoint: 'ftp://vpce.example.com' }, 'another scheme'],
    [{ endpoint: 'not a url' }, 'something that is not a URL'],
    [{ profile: 'has space' }, 'a profile name with a space'],
    [{ versionStage: '' }, 'an empty stage'],
    [{ maxAttempts: 0 }, 'no attempts'],
    [{ maxAttempts: 1.5 }, 'a fractional attempt count'],
    [{ requestTimeoutMs: 10 }, 'a request timeout under 100 ms'],
  ] as [unknown, string][])('refuses %j (%s)', (config) => {
    expect(awsConfigSchema.safeParse(config).success).toBe(false);
  });

  it('never quotes a refused value in its messages', () => {
    const result = awsConfigSchema.safeParse({
      endpoint: 'https://user:canary-pass@x.example.com',
    });
    expect(result.success).toBe(false);
    expect(JSON.stringify(result.error?.issues.map((issue) => issue.message))).not.toContain(
      'canary-pass',
    );
  });
});

describe('endpointProblem', () => {
  it('allows https anywhere and http only on the loopback interface', () => {
    expect(
      endpointProblem('https://vpce-0123.secretsmanager.eu-west-1.vpce.amazonaws.com'),
    ).toBeUndefined();
    expect(endpointProblem('http://127.0.0.1:4566')).toBeUndefined();
    expect(endpointProblem('http://localhost:4566')).toBeUndefined();
    expect(endpointProblem('http://[::1]:4566')).toBeUndefined();
    expect(endpointProblem('http://10.0.0.1:4566')).toContain('only for 127.0.0.1 or localhost');
  });
});

describe('resolveAwsOptions', () => {
  const config = awsConfigSchema.parse({});

  it('takes the region from AWS_REGION of the given environment', () => {
    expect(resolveAwsOptions(config, { AWS_REGION: 'eu-west-3' }, 'aws').region).toBe('eu-west-3');
  });

  it('prefers the configured region', () => {
    const configured = awsConfigSchema.parse({ region: 'eu-north-1' });
    expect(resolveAwsOptions(configured, { AWS_REGION: 'eu-west-3' }, 'aws').region).toBe(
      'eu-north-1',
    );
  });

  it('refuses with DSO_PROVIDER_INVALID_CONFIG when there is no region, naming what to set', () => {
    expect(() => resolveAwsOptions(config, {}, 'prod')).toThrowError(
      expect.objectContaining({
        code: 'DSO_PROVIDER_INVALID_CONFIG',
        message: expect.stringContaining('AWS_REGION'),
      }),
    );
  });

  it('refuses a malformed AWS_REGION or AWS_PROFILE', () => {
    expect(() => resolveAwsOptions(config, { AWS_REGION: 'nowhere' }, 'aws')).toThrowError(
      expect.objectContaining({ code: 'DSO_PROVIDER_INVALID_CONFIG' }),
    );
    expect(() =>
      resolveAwsOptions(config, { AWS_REGION: 'us-east-1', AWS_PROFILE: 'a b' }, 'aws'),
    ).toThrowError(expect.objectContaining({ code: 'DSO_PROVIDER_INVALID_CONFIG' }));
  });

  it('takes the profile from the configuration, else AWS_PROFILE', () => {
    const env = { AWS_REGION: 'us-east-1', AWS_PROFILE: 'from-env' };
    expect(resolveAwsOptions(config, env, 'aws').profile).toBe('from-env');
    expect(
      resolveAwsOptions(awsConfigSchema.parse({ profile: 'configured' }), env, 'aws').profile,
    ).toBe('configured');
    expect(
      resolveAwsOptions(config, { AWS_REGION: 'us-east-1', AWS_PROFILE: '' }, 'aws').profile,
    ).toBeUndefined();
  });
});
