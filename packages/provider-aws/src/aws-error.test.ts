import { ProviderError } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { type AwsCallContext, toAwsProviderError } from './aws-error.js';
import { canary, dump } from './test-support/helpers.js';

const context: AwsCallContext = {
  provider: 'prod-aws',
  operation: 'GetSecretValue',
  path: 'app/db',
  target: 'region eu-west-1',
  requestTimeoutMs: 10_000,
};

function sdkError(name: string, fields: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(`${name} happened`), { name, ...fields });
}

describe('toAwsProviderError', () => {
  it('passes a ProviderError through unchanged', () => {
    const error = new ProviderError('DSO_PROVIDER_NOT_FOUND', 'x');
    expect(toAwsProviderError(error, context)).toBe(error);
  });

  it('maps an abort to DSO_PROVIDER_TIMEOUT', () => {
    expect(toAwsProviderError(sdkError('AbortError'), context).code).toBe('DSO_PROVIDER_TIMEOUT');
  });

  it('maps a missing credential chain to DSO_PROVIDER_UNAUTHORIZED without its message', () => {
    const secret = canary();
    const error = toAwsProviderError(
      sdkError('CredentialsProviderError', {
        message: `Command failed: get-creds --token ${secret}`,
      }),
      context,
    );
    expect(error.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(error.message).toContain('AWS_ACCESS_KEY_ID');
    expect(dump(error)).not.toContain(secret);
  });

  it('maps the SDK request timeout (TimeoutError, ETIMEDOUT) to DSO_PROVIDER_TIMEOUT', () => {
    const error = toAwsProviderError(
      sdkError('TimeoutError', { code: 'ETIMEDOUT', $metadata: { attempts: 3 } }),
      context,
    );
    expect(error.code).toBe('DSO_PROVIDER_TIMEOUT');
    expect(error.message).toContain('10000 ms after 3 attempts');
    expect(error.retryable).toBe(true);
  });

  it('maps a reset connection (which the SDK names TimeoutError) to DSO_PROVIDER_UNAVAILABLE', () => {
    expect(toAwsProviderError(sdkError('TimeoutError', { code: 'ECONNRESET' }), context).code).toBe(
      'DSO_PROVIDER_UNAVAILABLE',
    );
  });

  it.each([
    'ECONNREFUSED',
    'ENOTFOUND',
    'EAI_AGAIN',
    'EHOSTUNREACH',
    'CERT_HAS_EXPIRED',
    'ERR_TLS_CERT_ALTNAME_INVALID',
  ])('maps the socket error %s to DSO_PROVIDER_UNAVAILABLE', (code) => {
    const error = toAwsProviderError(sdkError('Error', { code }), context);
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.message).toContain(code);
  });

  it('quotes only a service message, never a local one', () => {
    const secret = canary();
    const local = toAwsProviderError(
      Object.assign(new SyntaxError(`Unexpected token in JSON: "${secret}"`), {
        $metadata: { httpStatusCode: 200 },
      }),
      context,
    );
    expect(local.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(dump(local)).not.toContain(secret);
    const service = toAwsProviderError(
      sdkError('ResourceNotFoundException', {
        message: 'Secrets Manager cannot find it.',
        $fault: 'client',
      }),
      context,
    );
    expect(service.message).toContain('Secrets Manager cannot find it.');
  });

  it('keeps a summary as the cause, not the SDK error and its response', () => {
    const secret = canary();
    const error = toAwsProviderError(
      sdkError('InternalServiceError', {
        $fault: 'server',
        $metadata: { httpStatusCode: 500, requestId: 'req-1', attempts: 2 },
        $response: { body: secret },
        $responseBodyText: secret,
      }),
      context,
    );
    expect(error.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(error.cause).toBeInstanceOf(Error);
    expect((error.cause as Error).message).toBe(
      'InternalServiceError, HTTP 500, request req-1, 2 attempts',
    );
    expect(dump(error)).not.toContain(secret);
  });

  it('says which permission is missing on AccessDeniedException', () => {
    const error = toAwsProviderError(
      sdkError('AccessDeniedException', { $fault: 'client' }),
      context,
    );
    expect(error.message).toContain('secretsmanager:GetSecretValue');
    expect(error.message).toContain('kms:Decrypt');
    const list = toAwsProviderError(sdkError('AccessDeniedException', { $fault: 'client' }), {
      ...context,
      operation: 'ListSecrets',
      path: undefined,
    });
    expect(list.message).toContain('secretsmanager:ListSecrets');
  });

  it('carries the provider name and path', () => {
    const error = toAwsProviderError(
      sdkError('ResourceNotFoundException', { $fault: 'client' }),
      context,
    );
    expect(error).toMatchObject({
      provider: 'prod-aws',
      path: 'app/db',
      code: 'DSO_PROVIDER_NOT_FOUND',
      retryable: false,
    });
  });

  it('maps anything unknown to DSO_PROVIDER_INTERNAL', () => {
    expect(toAwsProviderError('a string', context).code).toBe('DSO_PROVIDER_INTERNAL');
    expect(
      toAwsProviderError(
        sdkError('LimitExceededException', {
          $fault: 'client',
          $metadata: { httpStatusCode: 400 },
        }),
        context,
      ).code,
    ).toBe('DSO_PROVIDER_INTERNAL');
  });
});
