import { isProviderError, ProviderError, type ProviderErrorCode } from '@dso/provider-sdk';

/** The longest stretch of Vault's own error text quoted in a message. */
export const MAX_QUOTED_VAULT_ERROR_CHARS = 256;

/** Facts about a failed exchange with Vault, safe to log: no token, no value. */
export interface VaultErrorDetails {
  /** The HTTP status Vault answered with, when it answered. */
  status?: number;
  /** From `Retry-After` on a 429 or 503: how long Vault asked the caller to wait. */
  retryAfterMs?: number;
  /** What Vault said in `{"errors":[…]}`, joined and bounded to 256 characters. */
  vaultErrors?: string;
}

/**
 * A {@link ProviderError} with the facts of the Vault exchange that failed, in `details`.
 * `isProviderError()` recognises it; test for it by `code`.
 *
 * @example
 * try { await provider.resolve({ path: 'app/db' }); }
 * catch (error) { if (isVaultProviderError(error)) console.log(error.details.retryAfterMs); }
 */
export class VaultProviderError extends ProviderError {
  readonly details: VaultErrorDetails;

  constructor(
    code: ProviderErrorCode,
    message: string,
    options: { provider?: string; path?: string; cause?: unknown; retryable?: boolean },
    details: VaultErrorDetails = {},
  ) {
    super(code, message, options);
    this.details = Object.freeze({ ...details });
  }
}

/**
 * True for a {@link VaultProviderError}, from any copy of this package (it checks the shape).
 * Across the process boundary only code, message and retryable travel: `details` is there in
 * process only (the message carries the Retry-After too).
 *
 * @example
 * if (isVaultProviderError(error) && error.details.retryAfterMs !== undefined) await sleep(error.details.retryAfterMs);
 */
export function isVaultProviderError(value: unknown): value is VaultProviderError {
  return (
    isProviderError(value) &&
    typeof (value as { details?: unknown }).details === 'object' &&
    (value as { details?: unknown }).details !== null
  );
}

/** What a failed call was doing, for the message. */
export interface FailureContext {
  provider: string;
  /** A verb phrase: `read`, `list`, `AppRole login`. */
  operation: string;
  /** The API path after `/v1/`, e.g. `secret/data/app/db`. Names only. */
  apiPath: string;
  /** The secret's path, when the call was about one. */
  path?: string;
  /** A sentence telling the operator what to check on 401/403. */
  authHint: string;
}

/**
 * Vault's `{"errors":[…]}` joined with `; ` and cut at 256 characters. Vault's error strings
 * name paths and reasons, not stored data; they are quoted as they are, bounded, and not
 * otherwise processed.
 */
export function quoteVaultErrors(body: unknown): string | undefined {
  const errors = (body as { errors?: unknown } | undefined)?.errors;
  if (!Array.isArray(errors)) return undefined;
  const text = errors
    .filter((entry): entry is string => typeof entry === 'string' && entry.trim() !== '')
    .map((entry) => entry.trim())
    .join('; ');
  if (text === '') return undefined;
  return text.length > MAX_QUOTED_VAULT_ERROR_CHARS
    ? `${text.slice(0, MAX_QUOTED_VAULT_ERROR_CHARS - 1)}…`
    : text;
}

/**
 * `Retry-After` as milliseconds: delay-seconds or an HTTP date, bounded to a day; `undefined`
 * when absent or unreadable.
 */
export function parseRetryAfter(
  header: string | null,
  now: number = Date.now(),
): number | undefined {
  if (header === null || header.trim() === '') return undefined;
  const text = header.trim();
  let ms: number;
  if (/^\d+$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const at = Date.parse(text);
    if (Number.isNaN(at)) return undefined;
    ms = Math.max(0, at - now);
  }
  return Math.min(ms, 86_400_000);
}

/**
 * The error for a non-success HTTP status, by Vault's conventions: 404 nothing there, 401/403
 * refused, 429 rate limit (or a standby's health), 412 a performance standby behind, 500/502/503
 * failing or sealed, 504 a gateway that gave up.
 */
export function errorForStatus(
  status: number,
  body: unknown,
  retryAfterHeader: string | null,
  context: FailureContext,
): VaultProviderError {
  const vaultErrors = quoteVaultErrors(body);
  const said = vaultErrors === undefined ? '' : `: ${vaultErrors}`;
  const what = `${context.operation} of ${context.apiPath}`;
  const options = { provider: context.provider, path: context.path };
  const details: VaultErrorDetails = { status };
  if (vaultErrors !== undefined) details.vaultErrors = vaultErrors;
  const retryAfterMs = parseRetryAfter(retryAfterHeader);
  if (retryAfterMs !== undefined) details.retryAfterMs = retryAfterMs;
  const retryText =
    retryAfterMs === undefined ? 'retry later' : `retry after ${formatSeconds(retryAfterMs)}`;

  if (status === 404) {
    return new VaultProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `vault has nothing at ${context.apiPath} (HTTP 404${said})`,
      options,
      details,
    );
  }
  if (status === 401 || status === 403) {
    return new VaultProviderError(
      'DSO_PROVIDER_UNAUTHORIZED',
      `vault refused ${what} (HTTP ${status}${said}): ${context.authHint}`,
      options,
      details,
    );
  }
  if (status === 429) {
    return new VaultProviderError(
      'DSO_PROVIDER_THROTTLED',
      `vault is rate-limiting requests (HTTP 429 on ${what}${said}): ${retryText}, or raise the rate limit quota`,
      options,
      details,
    );
  }
  if (status === 412) {
    return new VaultProviderError(
      'DSO_PROVIDER_UNAVAILABLE',
      `vault's node has not caught up with the data for ${what} (HTTP 412${said}): ${retryText}`,
      options,
      details,
    );
  }
  if (status === 500 || status === 502 || status === 503) {
    return new VaultProviderError(
      'DSO_PROVIDER_UNAVAILABLE',
      `vault could not serve ${what} (HTTP ${status}${said}): it may be sealed, have no active node, or be failing; ${retryText}`,
      options,
      details,
    );
  }
  if (status === 504) {
    return new VaultProviderError(
      'DSO_PROVIDER_TIMEOUT',
      `a gateway in front of vault timed out on ${what} (HTTP 504${said}): retry later`,
      options,
      details,
    );
  }
  if (status >= 300 && status < 400) {
    return new VaultProviderError(
      'DSO_PROVIDER_UNAVAILABLE',
      `vault redirected ${what} (HTTP ${status}): point address at the active node or at a load balancer that forwards to it`,
      options,
      details,
    );
  }
  if (status === 405) {
    return new VaultProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `vault does not support ${what} (HTTP 405${said}): check that the mount is a KV version 2 mount`,
      options,
      details,
    );
  }
  return new VaultProviderError(
    'DSO_PROVIDER_INTERNAL',
    `vault answered ${what} with HTTP ${status}${said}`,
    options,
    details,
  );
}

// Error codes of Node and undici that mean "no answer in time" rather than "no answer".
const TIMEOUT_CODES = new Set([
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'ETIMEDOUT',
]);
// Certificate verification failures: the connection worked, the trust did not.
const TLS_VERIFY = /^(?:CERT_|UNABLE_TO_|DEPTH_ZERO_|SELF_SIGNED_|ERR_TLS_CERT_|HOSTNAME_MISMATCH)/;

/**
 * The error for an exchange that got no HTTP answer: refused, reset, TLS failure, undici's own
 * timeouts. The cause keeps only the low-level error's name, code and message (a socket address
 * or an OpenSSL reason), never request headers.
 */
export function errorForTransportFailure(
  error: unknown,
  context: Pick<FailureContext, 'provider' | 'operation' | 'apiPath' | 'path'>,
  address: string,
): VaultProviderError {
  const root = innermost(error);
  const code = typeof root.code === 'string' ? root.code : undefined;
  const cause = sanitizedCause(root, code);
  const options = { provider: context.provider, path: context.path, cause };
  const what = `${context.operation} of ${context.apiPath}`;
  if (code !== undefined && TIMEOUT_CODES.has(code)) {
    return new VaultProviderError(
      'DSO_PROVIDER_TIMEOUT',
      `vault at ${address} did not answer ${what} in time (${code}): check that it is reachable, or raise requestTimeoutMs`,
      options,
    );
  }
  if (code !== undefined && TLS_VERIFY.test(code)) {
    return new VaultProviderError(
      'DSO_PROVIDER_UNAVAILABLE',
      `vault at ${address} presented a certificate this provider does not trust (${code}): set tls.caFile to the CA that signed it, or tls.serverName to the name it was issued for`,
      options,
    );
  }
  return new VaultProviderError(
    'DSO_PROVIDER_UNAVAILABLE',
    `could not reach vault at ${address} for ${what}${code === undefined ? '' : ` (${code})`}: check the address and that vault is running`,
    options,
  );
}

function innermost(error: unknown): { name?: unknown; code?: unknown; message?: unknown } {
  let current: unknown = error;
  for (let depth = 0; depth < 8; depth += 1) {
    const next = (current as { cause?: unknown } | undefined)?.cause;
    if (typeof next !== 'object' || next === null) break;
    current = next;
  }
  return typeof current === 'object' && current !== null ? current : {};
}

function sanitizedCause(
  root: { name?: unknown; message?: unknown },
  code: string | undefined,
): Error {
  const message = typeof root.message === 'string' ? root.message.slice(0, 200) : 'unknown error';
  const cause = new Error(message);
  cause.name = typeof root.name === 'string' ? root.name : 'Error';
  if (code !== undefined) Object.defineProperty(cause, 'code', { value: code, enumerable: true });
  return cause;
}

function formatSeconds(ms: number): string {
  return `${Math.ceil(ms / 1000)} s`;
}
