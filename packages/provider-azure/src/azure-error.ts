import { isProviderError, ProviderError, type ProviderErrorCode } from '@dso/provider-sdk';

/** The most characters of a service's or credential's message an error quotes. */
export const MAX_QUOTED_MESSAGE_CHARS = 300;

/**
 * What Key Vault or Entra ID answered, without the request or response objects (which hold the
 * bearer token and, for a 200, the value): the `cause` of the ProviderErrors this package
 * throws for a service answer.
 *
 * @example
 * try {
 *   await provider.resolve({ path: 'app/db' });
 * } catch (error) {
 *   if (isProviderError(error) && error.cause instanceof AzureServiceError) {
 *     log.warn('key vault refused', { status: error.cause.statusCode, requestId: error.cause.requestId });
 *   }
 * }
 */
export class AzureServiceError extends Error {
  /** HTTP status, when there was an answer. */
  readonly statusCode: number | undefined;
  /** The service's error code (`SecretNotFound`, `Forbidden`, `Throttled`) or a socket error code. */
  readonly serviceCode: string | undefined;
  /** The inner error code Key Vault adds (`AccessDenied`, `ForbiddenByRbac`, `SecretDisabled`). */
  readonly innerCode: string | undefined;
  /** `x-ms-request-id`, for Azure support. */
  readonly requestId: string | undefined;
  /** What `Retry-After` asked for. */
  readonly retryAfterMs: number | undefined;

  constructor(
    message: string,
    details: {
      statusCode?: number;
      serviceCode?: string;
      innerCode?: string;
      requestId?: string;
      retryAfterMs?: number;
    },
  ) {
    super(message);
    this.name = 'AzureServiceError';
    this.statusCode = details.statusCode;
    this.serviceCode = details.serviceCode;
    this.innerCode = details.innerCode;
    this.requestId = details.requestId;
    this.retryAfterMs = details.retryAfterMs;
  }
}

/**
 * Thrown by this package's pipeline policy when a 429 or 503 asks for a longer wait than
 * `maxRetryDelayMs`: the SDK's retry policy passes it through instead of sleeping.
 */
export class RetryAfterTooLongError extends Error {
  readonly statusCode: number;
  readonly retryAfterMs: number;
  readonly serviceCode: string | undefined;
  readonly requestId: string | undefined;

  constructor(statusCode: number, retryAfterMs: number, serviceCode?: string, requestId?: string) {
    super(`HTTP ${statusCode} asked to retry after ${retryAfterMs} ms`);
    this.name = 'RetryAfterTooLongError';
    this.statusCode = statusCode;
    this.retryAfterMs = retryAfterMs;
    this.serviceCode = serviceCode;
    this.requestId = requestId;
  }
}

/** What a failure is about, for its message. */
export interface FailureContext {
  provider: string;
  operation: 'resolve' | 'list' | 'health';
  /** The DSO path and the Key Vault name it maps to (resolve). */
  path?: string;
  secretName?: string;
  version?: string;
  /** `vaultUrl`'s host, e.g. `myvault.vault.azure.net`. */
  vaultHost: string;
  /** Which credential kind is configured, for hints. */
  credentialKind: string;
  /** The Entra ID authority the credential asks, e.g. `https://login.microsoftonline.com`. */
  authorityHost: string;
  requestTimeoutMs: number;
  /** The caller's signal: aborted means the caller gave up, not the server. */
  signal?: AbortSignal;
}

// Socket and TLS error codes Node reports when a certificate cannot be verified.
const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REVOKED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

interface RestErrorLike {
  name: string;
  message: string;
  statusCode?: number;
  code?: string;
  details?: { error?: { code?: unknown; message?: unknown; innerError?: { code?: unknown } } };
  response?: { headers?: { get(name: string): string | undefined } };
}

function isRestError(error: unknown): error is RestErrorLike {
  return error instanceof Error && error.name === 'RestError';
}

/**
 * A message from Azure fit to quote: one line, no bearer tokens or JWTs, at most
 * {@link MAX_QUOTED_MESSAGE_CHARS}. Azure's error messages carry names, ids and fixes, never a
 * secret's value (the requests that fail carry none); this guards against what a proxy or a
 * misbehaving server might echo.
 */
export function quoteAzureMessage(message: string): string {
  const cleaned = message
    .replace(/Bearer\s+\S+/gi, 'Bearer [REDACTED]')
    .replace(/eyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*/g, '[REDACTED]')
    .replace(/\s+/g, ' ')
    .trim();
  return cleaned.length > MAX_QUOTED_MESSAGE_CHARS
    ? `${cleaned.slice(0, MAX_QUOTED_MESSAGE_CHARS)}…`
    : cleaned;
}

/** Milliseconds a response's `retry-after-ms`, `x-ms-retry-after-ms` or `Retry-After` asks for. */
export function retryAfterMs(
  headers: { get(name: string): string | undefined } | undefined,
): number | undefined {
  if (headers === undefined) return undefined;
  for (const [name, factor] of [
    ['retry-after-ms', 1],
    ['x-ms-retry-after-ms', 1],
    ['retry-after', 1000],
  ] as const) {
    const raw = headers.get(name);
    if (raw === undefined || raw.trim() === '') continue;
    const seconds = Number(raw);
    if (Number.isFinite(seconds) && seconds >= 0) return Math.round(seconds * factor);
    if (name === 'retry-after') {
      const at = Date.parse(raw);
      if (Number.isFinite(at)) return Math.max(0, at - Date.now());
    }
  }
  return undefined;
}

function stringOr(value: unknown): string | undefined {
  return typeof value === 'string' && value !== '' ? value : undefined;
}

function what(context: FailureContext): string {
  if (context.operation === 'resolve') {
    const version = context.version === undefined ? '' : ` version ${context.version}`;
    return `reading ${context.path}${version} (Key Vault secret ${context.secretName}) from ${context.vaultHost}`;
  }
  if (context.operation === 'list') return `listing the secrets of ${context.vaultHost}`;
  return `checking ${context.vaultHost}`;
}

function make(
  code: ProviderErrorCode,
  message: string,
  context: FailureContext,
  cause: unknown,
): ProviderError {
  return new ProviderError(code, message, {
    provider: context.provider,
    ...(context.path === undefined ? {} : { path: context.path }),
    cause,
  });
}

/**
 * Turns whatever the Azure SDK threw into a {@link ProviderError}, once, at the provider's
 * boundary. The SDK's error objects are never kept as `cause` (their request holds the bearer
 * token); an {@link AzureServiceError} with the facts takes their place.
 */
export function toAzureProviderError(error: unknown, context: FailureContext): ProviderError {
  if (isProviderError(error)) return error;
  const { provider } = context;
  if (context.signal?.aborted) {
    return make(
      'DSO_PROVIDER_TIMEOUT',
      `provider ${provider}: ${what(context)} was aborted before Key Vault answered`,
      context,
      undefined,
    );
  }
  if (error instanceof RetryAfterTooLongError) {
    const seconds = Math.ceil(error.retryAfterMs / 1000);
    const cause = new AzureServiceError(error.message, {
      statusCode: error.statusCode,
      serviceCode: error.serviceCode,
      requestId: error.requestId,
      retryAfterMs: error.retryAfterMs,
    });
    return error.statusCode === 429
      ? make(
          'DSO_PROVIDER_THROTTLED',
          `provider ${provider}: Key Vault throttled ${what(context)} (429 ${error.serviceCode ?? ''}) and asked to retry after ${seconds} s: lower the request rate (DSO caches values; raise its cache TTL)`,
          context,
          cause,
        )
      : make(
          'DSO_PROVIDER_UNAVAILABLE',
          `provider ${provider}: Key Vault is unavailable for ${what(context)} (${error.statusCode} ${error.serviceCode ?? ''}) and asked to retry after ${seconds} s`,
          context,
          cause,
        );
  }
  if (isRestError(error)) return fromRestError(error, context);
  if (error instanceof Error) {
    if (error.name === 'AbortError') {
      return make(
        'DSO_PROVIDER_TIMEOUT',
        `provider ${provider}: ${what(context)} got no answer within requestTimeoutMs (${context.requestTimeoutMs} ms): check the network path to ${context.vaultHost}`,
        context,
        new AzureServiceError('request timed out', {}),
      );
    }
    const credential = fromCredentialError(error, context);
    if (credential !== undefined) return credential;
    if (error.message.includes('does not match the requested domain')) {
      return make(
        'DSO_PROVIDER_INVALID_CONFIG',
        `provider ${provider}: Key Vault at ${context.vaultHost} named an authentication resource that is not a parent domain of that host: use the vault's own URL (https://<name>.vault.azure.net/), or set disableChallengeResourceVerification when the host is an alias you trust`,
        context,
        new AzureServiceError(quoteAzureMessage(error.message), {}),
      );
    }
  }
  // Unknown: its message is not copied, since it may quote what the SDK was parsing.
  return make(
    'DSO_PROVIDER_INTERNAL',
    `provider ${provider}: ${what(context)} failed unexpectedly (${error instanceof Error ? error.name : typeof error})`,
    context,
    undefined,
  );
}

function fromRestError(error: RestErrorLike, context: FailureContext): ProviderError {
  const { provider } = context;
  const status = error.statusCode;
  const headers = error.response?.headers;
  const requestId = headers?.get('x-ms-request-id');
  if (status === undefined) {
    // No answer: a socket, TLS or parsing failure. Only the code is kept: a parse error's
    // message can quote the body it could not parse.
    const code = stringOr(error.code) ?? 'unknown';
    const cause = new AzureServiceError(`no answer (${code})`, { serviceCode: code });
    if (code === 'PARSE_ERROR') {
      return make(
        'DSO_PROVIDER_INTERNAL',
        `provider ${provider}: ${what(context)} got an answer that is not Key Vault's JSON: check that vaultUrl points at Key Vault and no proxy rewrites its answers`,
        context,
        cause,
      );
    }
    if (TLS_CODES.has(code)) {
      return make(
        'DSO_PROVIDER_INVALID_CONFIG',
        `provider ${provider}: the TLS certificate of ${context.vaultHost} could not be verified (${code}): if a private CA or an inspecting proxy signs it, name that CA in tls.caFile`,
        context,
        cause,
      );
    }
    return make(
      'DSO_PROVIDER_UNAVAILABLE',
      `provider ${provider}: cannot reach Key Vault at ${context.vaultHost} for ${what(context)} (${code}): check DNS, the network path and any firewall or private endpoint`,
      context,
      cause,
    );
  }
  if (error.code === 'PARSE_ERROR' || status < 400) {
    // An answer the SDK could not read (a 200 cut short, a proxy's page): its message quotes
    // the body, which may hold the value. Only the status is kept.
    return make(
      'DSO_PROVIDER_INTERNAL',
      `provider ${provider}: ${what(context)} got an answer that is not Key Vault's JSON (HTTP ${status}): check that vaultUrl points at Key Vault and no proxy rewrites its answers`,
      context,
      new AzureServiceError(`unreadable answer (HTTP ${status})`, {
        statusCode: status,
        serviceCode: 'PARSE_ERROR',
        requestId,
      }),
    );
  }
  const serviceCode = stringOr(error.details?.error?.code) ?? stringOr(error.code);
  const innerCode = stringOr(error.details?.error?.innerError?.code);
  const serviceMessage = quoteAzureMessage(
    stringOr(error.details?.error?.message) ?? error.message,
  );
  const wait = retryAfterMs(headers);
  const cause = new AzureServiceError(serviceMessage, {
    statusCode: status,
    serviceCode,
    innerCode,
    requestId,
    retryAfterMs: wait,
  });
  const answered = `${status}${serviceCode === undefined ? '' : ` ${serviceCode}`}${innerCode === undefined ? '' : `/${innerCode}`}`;
  if (status === 404) {
    const message =
      context.operation === 'resolve'
        ? context.version === undefined
          ? `provider ${provider}: no secret ${context.path} in Key Vault ${context.vaultHost} (looked for secret name ${context.secretName}): create it, or check the path`
          : `provider ${provider}: no version ${context.version} of secret ${context.path} in Key Vault ${context.vaultHost} (secret name ${context.secretName}): check the version id, or drop it to read the current one`
        : `provider ${provider}: Key Vault ${context.vaultHost} answered 404 for ${what(context)}: check vaultUrl`;
    return make('DSO_PROVIDER_NOT_FOUND', message, context, cause);
  }
  if (
    status === 403 &&
    (innerCode === 'SecretDisabled' || /disabled secret/i.test(serviceMessage))
  ) {
    return make(
      'DSO_PROVIDER_NOT_FOUND',
      `provider ${provider}: secret ${context.path}${context.version === undefined ? '' : ` version ${context.version}`} is disabled in Key Vault ${context.vaultHost}: enable it, or point at another version`,
      context,
      cause,
    );
  }
  if (status === 401 || status === 403) {
    const fix =
      status === 401
        ? 'Key Vault did not accept the access token: check that the credential belongs to the tenant of the vault'
        : 'grant this identity the secrets get and list permissions (access policy) or the Key Vault Secrets User role (Azure RBAC), and check the vault firewall';
    return make(
      'DSO_PROVIDER_UNAUTHORIZED',
      `provider ${provider}: Key Vault refused ${what(context)} (${answered}: ${serviceMessage}): ${fix}`,
      context,
      cause,
    );
  }
  if (status === 429) {
    const after = wait === undefined ? '' : ` and asked to retry after ${Math.ceil(wait / 1000)} s`;
    return make(
      'DSO_PROVIDER_THROTTLED',
      `provider ${provider}: Key Vault throttled ${what(context)} (${answered})${after}: lower the request rate (DSO caches values; raise its cache TTL)`,
      context,
      cause,
    );
  }
  if (status === 408 || status >= 500) {
    return make(
      'DSO_PROVIDER_UNAVAILABLE',
      `provider ${provider}: Key Vault could not serve ${what(context)} (${answered}); the SDK retried and gave up: try again later, and check https://status.azure.com`,
      context,
      cause,
    );
  }
  return make(
    'DSO_PROVIDER_INTERNAL',
    `provider ${provider}: Key Vault refused ${what(context)} (${answered}: ${serviceMessage})`,
    context,
    cause,
  );
}

function fromCredentialError(error: Error, context: FailureContext): ProviderError | undefined {
  const { provider } = context;
  const quoted = quoteAzureMessage(error.message);
  const cause = (details: ConstructorParameters<typeof AzureServiceError>[1] = {}) =>
    new AzureServiceError(quoted, details);
  if (error.message.includes('is not configured to acquire tokens for tenant')) {
    return make(
      'DSO_PROVIDER_UNAUTHORIZED',
      `provider ${provider}: Key Vault at ${context.vaultHost} belongs to another Entra ID tenant than the configured credential: use a credential of the vault's tenant`,
      context,
      cause(),
    );
  }
  const hint =
    context.credentialKind === 'default'
      ? 'set AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH, or AZURE_FEDERATED_TOKEN_FILE for workload identity) in the provider environment, or run where a managed identity is assigned'
      : context.credentialKind === 'clientSecret'
        ? 'check tenantId, clientId and the client secret in the variable clientSecretEnv names (it may have expired)'
        : 'check that a managed identity is assigned to this host (and clientId, for a user-assigned one)';
  switch (error.name) {
    case 'AuthenticationError': {
      // Raised by identity's own token client (managed identity, workload identity) with the
      // HTTP status and Entra ID's error body.
      const { statusCode, errorResponse } = error as Error & {
        statusCode?: number;
        errorResponse?: { error?: string; errorDescription?: string };
      };
      const oauthError = errorResponse?.error ?? 'unknown';
      // The first line of an Entra ID description holds the AADSTS code and its meaning.
      const description = quoteAzureMessage(
        (errorResponse?.errorDescription ?? '').split(/\r?\n/, 1)[0] ?? '',
      );
      const details = {
        ...(statusCode === undefined ? {} : { statusCode }),
        serviceCode: oauthError,
      };
      if (statusCode === 429) {
        return make(
          'DSO_PROVIDER_THROTTLED',
          `provider ${provider}: Entra ID throttled the token request (${oauthError}): lower the request rate`,
          context,
          new AzureServiceError(description, details),
        );
      }
      if (statusCode !== undefined && statusCode >= 500) {
        return make(
          'DSO_PROVIDER_UNAVAILABLE',
          `provider ${provider}: Entra ID could not issue a token (${statusCode} ${oauthError}): try again later`,
          context,
          new AzureServiceError(description, details),
        );
      }
      return make(
        'DSO_PROVIDER_UNAUTHORIZED',
        `provider ${provider}: Entra ID refused the token request (${statusCode ?? 'no status'} ${oauthError}: ${description}): ${hint}`,
        context,
        new AzureServiceError(description, details),
      );
    }
    case 'CredentialUnavailableError':
    case 'AuthenticationRequiredError':
    case 'AggregateAuthenticationError': {
      // MSAL's failures reach us as these, their status lost: its error code leads the message.
      if (/endpoints_resolution_error|network_error/.test(error.message)) {
        return make(
          'DSO_PROVIDER_UNAVAILABLE',
          `provider ${provider}: cannot reach the Entra ID authority ${context.authorityHost} for a token (${quoted}): check authorityHost, DNS and the network path`,
          context,
          cause(),
        );
      }
      if (
        /temporarily_unavailable|server_error|service_unavailable|AADSTS50196/i.test(error.message)
      ) {
        return make(
          'DSO_PROVIDER_UNAVAILABLE',
          `provider ${provider}: Entra ID could not issue a token (${quoted}); the Azure SDK waits for its Retry-After (60 s without one) before asking again`,
          context,
          cause(),
        );
      }
      if (/throttl/i.test(error.message)) {
        return make(
          'DSO_PROVIDER_THROTTLED',
          `provider ${provider}: token requests to Entra ID are throttled (${quoted}): lower the request rate`,
          context,
          cause(),
        );
      }
      return make(
        'DSO_PROVIDER_UNAUTHORIZED',
        `provider ${provider}: could not get a token for Key Vault (${error.name}: ${quoted}): ${hint}`,
        context,
        cause(),
      );
    }
    case 'ClientConfigurationError':
      return make(
        'DSO_PROVIDER_INVALID_CONFIG',
        `provider ${provider}: the Azure SDK refused the credential settings (${quoted}): check authorityHost and the credential ids`,
        context,
        cause(),
      );
    default:
      return undefined;
  }
}
