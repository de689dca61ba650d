/** Stable codes for everything a provider can fail with. */
export const PROVIDER_ERROR_CODES = [
  'DSO_PROVIDER_NOT_FOUND',
  'DSO_PROVIDER_UNAUTHORIZED',
  'DSO_PROVIDER_THROTTLED',
  'DSO_PROVIDER_UNAVAILABLE',
  'DSO_PROVIDER_INVALID_CONFIG',
  'DSO_PROVIDER_TIMEOUT',
  'DSO_PROVIDER_TOO_LARGE',
  'DSO_PROVIDER_INTERNAL',
] as const;

export type ProviderErrorCode = (typeof PROVIDER_ERROR_CODES)[number];

/** Codes for failures that may pass on their own; callers may retry these with backoff. */
const RETRYABLE: ReadonlySet<ProviderErrorCode> = new Set([
  'DSO_PROVIDER_THROTTLED',
  'DSO_PROVIDER_UNAVAILABLE',
  'DSO_PROVIDER_TIMEOUT',
]);

// A global symbol, so errors from a second copy of this package (a provider that bundles its
// own) are still recognised by isProviderError().
const PROVIDER_ERROR = Symbol.for('dso.provider-error');

export interface ProviderErrorOptions {
  /** The provider's name, as configured. */
  provider?: string;
  /** The secret's path (never its value). */
  path?: string;
  /** Overrides the code's default retryability. */
  retryable?: boolean;
  cause?: unknown;
}

/**
 * A provider failure with a stable code. Messages are built from references and ids, never from
 * secret values.
 *
 * @example
 * throw new ProviderError('DSO_PROVIDER_NOT_FOUND', 'no secret at app/db', { provider: 'local', path: 'app/db' });
 */
export class ProviderError extends Error {
  readonly code: ProviderErrorCode;
  readonly retryable: boolean;
  readonly provider: string | undefined;
  readonly path: string | undefined;

  constructor(code: ProviderErrorCode, message: string, options: ProviderErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'ProviderError';
    this.code = code;
    this.retryable = options.retryable ?? RETRYABLE.has(code);
    this.provider = options.provider;
    this.path = options.path;
    Object.defineProperty(this, PROVIDER_ERROR, { value: true });
  }
}

/** True for a {@link ProviderError} from any copy of this package. */
export function isProviderError(value: unknown): value is ProviderError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[PROVIDER_ERROR] === true
  );
}

/**
 * Normalises anything thrown inside a provider into a {@link ProviderError}, once, at the
 * boundary. An unknown error becomes `DSO_PROVIDER_INTERNAL`; its message is not copied, since
 * a backend's message may quote what it was given.
 */
export function toProviderError(error: unknown, provider: string): ProviderError {
  if (isProviderError(error)) return error;
  if (error instanceof Error && error.name === 'AbortError') {
    return new ProviderError('DSO_PROVIDER_TIMEOUT', `provider ${provider} call was aborted`, {
      provider,
      cause: error,
    });
  }
  return new ProviderError('DSO_PROVIDER_INTERNAL', `provider ${provider} failed`, {
    provider,
    cause: error,
  });
}
