import { isProviderError, ProviderError, type ProviderErrorCode } from '@dso/provider-sdk';

/** What a failed call was doing, for messages that say what to fix. */
export interface AwsCallContext {
  /** The configured provider name. */
  provider: string;
  /** The Secrets Manager operation, e.g. `GetSecretValue`. */
  operation: string;
  /** The secret id (the reference's path), when the call was about one secret. */
  path?: string;
  /** `the endpoint https://…` or `eu-west-1`: where the requests went. */
  target: string;
  /** The configured per-attempt timeout. */
  requestTimeoutMs: number;
}

// Error names of the Secrets Manager API and of AWS's common authentication layer. The SDK
// reads them from `x-amzn-errortype` or the body's `__type`.
const UNAUTHORIZED_NAMES = new Set([
  'AccessDeniedException',
  'AccessDenied',
  'UnrecognizedClientException',
  'InvalidClientTokenId',
  'InvalidSignatureException',
  'SignatureDoesNotMatch',
  'IncompleteSignatureException',
  'MissingAuthenticationTokenException',
  'ExpiredTokenException',
  'ExpiredToken',
  'RequestExpired',
  'NotAuthorized',
]);
const THROTTLED_NAMES = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'Throttling',
  'ThrottledException',
  'RequestThrottled',
  'RequestThrottledException',
  'RequestLimitExceeded',
  'SlowDown',
]);
const UNAVAILABLE_NAMES = new Set([
  'InternalServiceError',
  'InternalServiceErrorException',
  'InternalFailure',
  'InternalError',
  'ServiceUnavailable',
  'ServiceUnavailableException',
  'BadGateway',
  'GatewayTimeout',
]);
const TIMEOUT_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException']);
// Socket-level failures: the endpoint could not be reached or dropped the connection.
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EADDRNOTAVAIL',
  'ERR_SOCKET_CONNECTION_TIMEOUT',
]);
const MAX_REASON_LENGTH = 200;

interface SdkErrorShape {
  name?: unknown;
  message?: unknown;
  code?: unknown;
  $fault?: unknown;
  $metadata?: { httpStatusCode?: unknown; requestId?: unknown; attempts?: unknown };
}

/**
 * Turns whatever the AWS SDK threw into a {@link ProviderError} with a stable code and a message
 * that says what to do. The SDK's error is not kept as `cause`: a deserialization error carries
 * the raw response body (`$responseBodyText`), which for GetSecretValue is the secret. The cause
 * is a summary instead: the error's name, HTTP status, request id and attempts.
 *
 * @example
 * try { await client.send(command, { abortSignal }); }
 * catch (error) { throw toAwsProviderError(error, { provider: 'aws', operation: 'GetSecretValue', path: 'prod/db', target: 'eu-west-1', requestTimeoutMs: 10_000 }); }
 */
export function toAwsProviderError(error: unknown, context: AwsCallContext): ProviderError {
  if (isProviderError(error)) return error;
  const shape: SdkErrorShape = typeof error === 'object' && error !== null ? error : {};
  const name = typeof shape.name === 'string' ? shape.name : 'Error';
  const status = numberOrUndefined(shape.$metadata?.httpStatusCode);
  const attempts = numberOrUndefined(shape.$metadata?.attempts);
  const code = typeof shape.code === 'string' ? shape.code : undefined;
  // Only a service's answer is quoted; a local error (a JSON parse of a response, say) can
  // quote what it was parsing.
  const reason =
    shape.$fault === 'client' || shape.$fault === 'server'
      ? serviceReason(shape.message)
      : undefined;
  const { provider, path, operation, target } = context;
  const secret = path === undefined ? 'the request' : `secret ${path}`;
  const tries = attempts !== undefined && attempts > 1 ? ` after ${attempts} attempts` : '';
  const cause = summarise(name, status, code, shape.$metadata?.requestId, attempts);
  const fail = (errorCode: ProviderErrorCode, message: string) =>
    new ProviderError(errorCode, message, { provider, path, cause });

  if (name === 'AbortError') {
    return fail('DSO_PROVIDER_TIMEOUT', `${operation} for ${secret} was aborted`);
  }
  if (name === 'CredentialsProviderError' || name === 'TokenProviderError') {
    // The chain's own message is left out: a failed credential_process reports its command
    // line and stderr, which may hold key material.
    return fail(
      'DSO_PROVIDER_UNAUTHORIZED',
      `no AWS credentials for provider ${provider}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ` +
        '(and AWS_SESSION_TOKEN) in its environment, name a profile (`profile` or AWS_PROFILE), or run ' +
        'with a web identity, container or instance role',
    );
  }
  if (name === 'ResourceNotFoundException') {
    return fail(
      'DSO_PROVIDER_NOT_FOUND',
      `${secret} not found in AWS Secrets Manager (${target})` +
        (reason === undefined ? '' : `: ${reason}`),
    );
  }
  if (name === 'InvalidRequestException') {
    // What the service says here is the useful part: "marked for deletion", "disabled KMS key".
    return fail(
      'DSO_PROVIDER_NOT_FOUND',
      `${secret} cannot be read now` +
        (reason === undefined ? '' : `: ${reason}`) +
        ' (a secret scheduled for deletion can be restored with `aws secretsmanager restore-secret`)',
    );
  }
  if (
    name === 'ValidationException' ||
    name === 'InvalidParameterException' ||
    name === 'InvalidParameterValueException'
  ) {
    return fail(
      'DSO_PROVIDER_NOT_FOUND',
      `${secret}: AWS Secrets Manager refused the secret id or version` +
        (reason === undefined ? '' : `: ${reason}`),
    );
  }
  if (name === 'DecryptionFailure') {
    return fail(
      'DSO_PROVIDER_UNAUTHORIZED',
      `KMS could not decrypt ${secret}: grant these credentials kms:Decrypt on the secret's KMS key, ` +
        'and check the key is enabled',
    );
  }
  if (UNAUTHORIZED_NAMES.has(name) || status === 401 || status === 403) {
    return fail('DSO_PROVIDER_UNAUTHORIZED', unauthorizedMessage(name, secret, operation, reason));
  }
  if (THROTTLED_NAMES.has(name) || status === 429) {
    return fail(
      'DSO_PROVIDER_THROTTLED',
      `AWS Secrets Manager throttled ${operation} for ${secret}${tries} (${name}): ` +
        'lower the polling rate, cache more, or raise `maxAttempts`',
    );
  }
  // Before the timeout check: the SDK renames a reset or broken connection TimeoutError (so
  // that it is retried), but the endpoint did answer the connect; it dropped the request.
  if ((code !== undefined && NETWORK_CODES.has(code)) || isTlsCode(code)) {
    return fail(
      'DSO_PROVIDER_UNAVAILABLE',
      `cannot reach AWS Secrets Manager (${target}) for ${operation}${tries} (${code}): ` +
        'check the endpoint, DNS, proxy and network path',
    );
  }
  if (TIMEOUT_NAMES.has(name) || code === 'ETIMEDOUT') {
    return fail(
      'DSO_PROVIDER_TIMEOUT',
      `AWS Secrets Manager (${target}) did not answer ${operation} for ${secret} within ` +
        `${context.requestTimeoutMs} ms${tries}: check the network path, or raise \`requestTimeoutMs\``,
    );
  }
  if (UNAVAILABLE_NAMES.has(name) || (status !== undefined && status >= 500)) {
    return fail(
      'DSO_PROVIDER_UNAVAILABLE',
      `AWS Secrets Manager (${target}) failed ${operation} for ${secret}${tries} ` +
        `(${name}${status === undefined ? '' : `, HTTP ${status}`}): it should pass; retry later`,
    );
  }
  return fail(
    'DSO_PROVIDER_INTERNAL',
    `AWS Secrets Manager ${operation} for ${secret} failed (${name}${status === undefined ? '' : `, HTTP ${status}`})` +
      (reason === undefined ? '' : `: ${reason}`),
  );
}

function unauthorizedMessage(
  name: string,
  secret: string,
  operation: string,
  reason: string | undefined,
): string {
  switch (name) {
    case 'AccessDeniedException':
    case 'AccessDenied':
    case 'NotAuthorized':
      return (
        `access denied to ${secret} (${operation}): grant these credentials ` +
        `secretsmanager:${operation} on it` +
        (operation === 'GetSecretValue' ? ' (and kms:Decrypt on its key, if customer-managed)' : '')
      );
    case 'ExpiredTokenException':
    case 'ExpiredToken':
    case 'RequestExpired':
      return 'the AWS session token has expired: refresh the credentials (AWS_SESSION_TOKEN, the profile, or the role session)';
    case 'InvalidSignatureException':
    case 'SignatureDoesNotMatch':
    case 'IncompleteSignatureException':
      return (
        `AWS rejected the request signature (${name}): check the secret access key and the host's clock` +
        (reason === undefined ? '' : ` (${reason})`)
      );
    case 'UnrecognizedClientException':
    case 'InvalidClientTokenId':
      return `AWS does not recognise the access key (${name}): check AWS_ACCESS_KEY_ID / the profile, and that the key is active`;
    default:
      return `AWS refused the credentials (${name}): check the access key, profile or role`;
  }
}

/** One line of the service's own message, bounded. It never holds a value: no request we send carries one. */
function serviceReason(message: unknown): string | undefined {
  if (typeof message !== 'string') return undefined;
  const line = message.replace(/\s+/g, ' ').trim();
  if (line === '' || line === 'UnknownError') return undefined;
  return line.length > MAX_REASON_LENGTH ? `${line.slice(0, MAX_REASON_LENGTH)}…` : line;
}

function summarise(
  name: string,
  status: number | undefined,
  code: string | undefined,
  requestId: unknown,
  attempts: number | undefined,
): Error {
  const parts = [name];
  if (code !== undefined) parts.push(code);
  if (status !== undefined) parts.push(`HTTP ${status}`);
  if (typeof requestId === 'string' && /^[A-Za-z0-9-]{1,128}$/.test(requestId)) {
    parts.push(`request ${requestId}`);
  }
  if (attempts !== undefined) parts.push(`${attempts} attempt${attempts === 1 ? '' : 's'}`);
  const summary = new Error(parts.join(', '));
  summary.name = name;
  return summary;
}

function isTlsCode(code: string | undefined): boolean {
  return (
    code !== undefined &&
    (code.startsWith('ERR_TLS_') ||
      code.startsWith('ERR_SSL_') ||
      code.includes('CERT') ||
      code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE')
  );
}

function numberOrUndefined(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}
