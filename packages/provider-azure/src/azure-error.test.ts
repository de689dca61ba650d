import { describe, expect, it } from 'vitest';
import {
  AzureServiceError,
  type FailureContext,
  MAX_QUOTED_MESSAGE_CHARS,
  quoteAzureMessage,
  RetryAfterTooLongError,
  retryAfterMs,
  toAzureProviderError,
} from './azure-error.js';

const context: FailureContext = {
  provider: 'az',
  operation: 'resolve',
  path: 'app/db',
  secretName: 'app--db',
  vaultHost: 'myvault.vault.azure.net',
  credentialKind: 'clientSecret',
  authorityHost: 'https://login.microsoftonline.com',
  requestTimeoutMs: 10_000,
};

function headers(values: Record<string, string>) {
  return { get: (name: string) => values[name.toLowerCase()] };
}

/** What the Azure SDK throws for an HTTP answer: a RestError with the parsed error body. */
function restError(
  status: number,
  code: string,
  message: string,
  extra: Record<string, unknown> = {},
) {
  return Object.assign(new Error(message), {
    name: 'RestError',
    statusCode: status,
    code,
    details: { error: { code, message, ...extra } },
    response: { headers: headers({ 'x-ms-request-id': 'req-1' }) },
  });
}

describe('toAzureProviderError', () => {
  it.each([
    [
      restError(404, 'SecretNotFound', 'A secret with (name/id) app--db was not found'),
      'DSO_PROVIDER_NOT_FOUND',
    ],
    [
      restError(403, 'Forbidden', 'Operation get is not allowed on a disabled secret.', {
        innerError: { code: 'SecretDisabled' },
      }),
      'DSO_PROVIDER_NOT_FOUND',
    ],
    [
      restError(403, 'Forbidden', 'no get permission', { innerError: { code: 'AccessDenied' } }),
      'DSO_PROVIDER_UNAUTHORIZED',
    ],
    [restError(401, 'Unauthorized', 'AKV10032: Invalid issuer.'), 'DSO_PROVIDER_UNAUTHORIZED'],
    [restError(429, 'Throttled', 'too many requests'), 'DSO_PROVIDER_THROTTLED'],
    [restError(503, 'ServiceUnavailable', 'unavailable'), 'DSO_PROVIDER_UNAVAILABLE'],
    [restError(408, 'RequestTimeout', 'timeout'), 'DSO_PROVIDER_UNAVAILABLE'],
    [restError(400, 'BadParameter', 'bad'), 'DSO_PROVIDER_INTERNAL'],
  ] as const)('maps %s to %s', (error, code) => {
    const mapped = toAzureProviderError(error, context);
    expect(mapped.code).toBe(code);
    expect(mapped.provider).toBe('az');
    expect(mapped.path).toBe('app/db');
    expect(mapped.cause).toBeInstanceOf(AzureServiceError);
    expect((mapped.cause as AzureServiceError).requestId).toBe('req-1');
  });

  it('keeps neither the request nor the response of the SDK error (the bearer token is in them)', () => {
    const error = Object.assign(restError(403, 'Forbidden', 'denied'), {
      request: { headers: { authorization: 'Bearer very-secret-token' } },
    });
    const mapped = toAzureProviderError(error, context);
    expect(JSON.stringify(mapped, Object.getOwnPropertyNames(mapped))).not.toContain(
      'very-secret-token',
    );
    expect(Object.keys(mapped.cause as object)).not.toContain('request');
  });

  it('maps socket failures to UNAVAILABLE and certificate failures to INVALID_CONFIG, by code only', () => {
    const socket = Object.assign(new Error('connect ECONNREFUSED 10.0.0.1:443'), {
      name: 'RestError',
      code: 'ECONNREFUSED',
    });
    expect(toAzureProviderError(socket, context).code).toBe('DSO_PROVIDER_UNAVAILABLE');
    const tls = Object.assign(new Error('self-signed certificate in certificate chain'), {
      name: 'RestError',
      code: 'SELF_SIGNED_CERT_IN_CHAIN',
    });
    expect(toAzureProviderError(tls, context).code).toBe('DSO_PROVIDER_INVALID_CONFIG');
  });

  it('never quotes a body the SDK could not parse, whatever the status', () => {
    for (const statusCode of [undefined, 200]) {
      const error = Object.assign(
        new Error(
          'Error "SyntaxError" occurred while parsing the response body - {"value":"canary-1234567890',
        ),
        { name: 'RestError', code: 'PARSE_ERROR', statusCode },
      );
      const mapped = toAzureProviderError(error, context);
      expect(mapped.code).toBe('DSO_PROVIDER_INTERNAL');
      expect(JSON.stringify(mapped, Object.getOwnPropertyNames(mapped))).not.toContain('canary');
      expect(String((mapped.cause as Error).message)).not.toContain('canary');
    }
  });

  it('turns a Retry-After past the cap into THROTTLED (429) or UNAVAILABLE (503) with the wait', () => {
    const throttled = toAzureProviderError(
      new RetryAfterTooLongError(429, 12_000, 'Throttled'),
      context,
    );
    expect(throttled.code).toBe('DSO_PROVIDER_THROTTLED');
    expect(throttled.message).toContain('retry after 12 s');
    const unavailable = toAzureProviderError(new RetryAfterTooLongError(503, 60_000), context);
    expect(unavailable.code).toBe('DSO_PROVIDER_UNAVAILABLE');
  });

  it('reports an aborted caller as TIMEOUT, and an AbortError of its own as a request timeout', () => {
    const aborted = toAzureProviderError(new Error('x'), {
      ...context,
      signal: AbortSignal.abort(),
    });
    expect(aborted.code).toBe('DSO_PROVIDER_TIMEOUT');
    expect(aborted.message).toContain('aborted');
    const abortError = Object.assign(new Error('The operation was aborted.'), {
      name: 'AbortError',
    });
    const timedOut = toAzureProviderError(abortError, context);
    expect(timedOut.code).toBe('DSO_PROVIDER_TIMEOUT');
    expect(timedOut.message).toContain('requestTimeoutMs (10000 ms)');
  });

  it.each([
    [
      'AuthenticationRequiredError',
      'invalid_client: AADSTS7000215: Invalid client secret provided.',
      'DSO_PROVIDER_UNAUTHORIZED',
    ],
    [
      'AuthenticationRequiredError',
      'network_error: See https://aka.ms/msal.js.errors#network_error',
      'DSO_PROVIDER_UNAVAILABLE',
    ],
    [
      'CredentialUnavailableError',
      'endpoints_resolution_error: See https://aka.ms/msal.js.errors',
      'DSO_PROVIDER_UNAVAILABLE',
    ],
    [
      'AuthenticationRequiredError',
      '50196: AADSTS50196: The server is temporarily unavailable.',
      'DSO_PROVIDER_UNAVAILABLE',
    ],
    [
      'CredentialUnavailableError',
      'ManagedIdentityCredential: no managed identity endpoint found',
      'DSO_PROVIDER_UNAUTHORIZED',
    ],
    [
      'CredentialUnavailableError',
      'The current credential is not configured to acquire tokens for tenant x',
      'DSO_PROVIDER_UNAUTHORIZED',
    ],
    [
      'ClientConfigurationError',
      'url_parse_error: URL could not be parsed',
      'DSO_PROVIDER_INVALID_CONFIG',
    ],
  ])('maps a %s (%s) to %s', (name, message, code) => {
    const error = Object.assign(new Error(message), { name });
    expect(toAzureProviderError(error, context).code).toBe(code);
  });

  it('maps an AuthenticationError by its HTTP status', () => {
    const auth = (statusCode: number) =>
      Object.assign(new Error('x'), {
        name: 'AuthenticationError',
        statusCode,
        errorResponse: {
          error: 'invalid_client',
          errorDescription: 'AADSTS7000215: Invalid client secret.\nTrace ID: 1',
        },
      });
    const refused = toAzureProviderError(auth(401), context);
    expect(refused.code).toBe('DSO_PROVIDER_UNAUTHORIZED');
    expect(refused.message).toContain('AADSTS7000215');
    expect(refused.message).not.toContain('Trace ID');
    expect(toAzureProviderError(auth(429), context).code).toBe('DSO_PROVIDER_THROTTLED');
    expect(toAzureProviderError(auth(503), context).code).toBe('DSO_PROVIDER_UNAVAILABLE');
  });

  it('maps anything else to INTERNAL without copying its message', () => {
    const mapped = toAzureProviderError(new TypeError('value was canary-abc'), context);
    expect(mapped.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(mapped.message).not.toContain('canary');
    expect(mapped.cause).toBeUndefined();
  });
});

describe('quoteAzureMessage', () => {
  it('removes bearer tokens and JWTs, folds whitespace, and bounds the length', () => {
    const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.c2lnbmF0dXJl';
    const quoted = quoteAzureMessage(
      `Authorization: Bearer abc.def.ghi\r\n token ${jwt} ${'x'.repeat(400)}`,
    );
    expect(quoted).not.toContain('abc.def.ghi');
    expect(quoted).not.toContain(jwt);
    expect(quoted).not.toMatch(/[\r\n]/);
    expect(quoted.length).toBeLessThanOrEqual(MAX_QUOTED_MESSAGE_CHARS + 1);
  });
});

describe('retryAfterMs', () => {
  it('reads retry-after-ms, x-ms-retry-after-ms, then Retry-After in seconds or as a date', () => {
    expect(retryAfterMs(headers({ 'retry-after-ms': '250', 'retry-after': '9' }))).toBe(250);
    expect(retryAfterMs(headers({ 'x-ms-retry-after-ms': '40' }))).toBe(40);
    expect(retryAfterMs(headers({ 'retry-after': '3' }))).toBe(3_000);
    const at = new Date(Date.now() + 10_000).toUTCString();
    const fromDate = retryAfterMs(headers({ 'retry-after': at }));
    expect(fromDate).toBeGreaterThan(8_000);
    expect(fromDate).toBeLessThanOrEqual(10_000);
    expect(retryAfterMs(headers({ 'retry-after': 'soon' }))).toBeUndefined();
    expect(retryAfterMs(undefined)).toBeUndefined();
  });
});
