// A global symbol, so errors thrown by a second copy of @dso/core (a plugin that bundles its
// own, two versions side by side in node_modules) are still recognised by isDsoError().
const DSO_ERROR = Symbol.for('dso.error');

/**
 * What a {@link DsoError} is built with: an optional cause and any number of facts. Facts are
 * ids, references, counts and names that help an operator act, never secret values.
 */
export interface DsoErrorOptions {
  /** The error this one wraps; kept as the standard `error.cause`. */
  cause?: unknown;
  /**
   * Whether the same operation may succeed if tried again later (an engine or provider that
   * was unavailable, a timeout); kept as {@link DsoError.retryable}, not in `details`.
   * @default false
   */
  retryable?: boolean;
  /** Any other fact, kept on {@link DsoError.details}. */
  [fact: string]: unknown;
}

/**
 * An operational failure with a stable code of the form `DSO_<AREA>_<WHAT>`, a message that says
 * what went wrong and what to do, and the facts behind it in {@link DsoError.details}.
 *
 * Messages and facts are built from references, ids and names, never from secret values.
 * Other packages subclass it and set `name`; test for it with {@link isDsoError} or `code`,
 * not `instanceof`, since a second copy of this package has its own class.
 *
 * @example
 * class DockerRuntimeError extends DsoError {
 *   override name = 'DockerRuntimeError';
 * }
 * throw new DockerRuntimeError('DSO_DOCKER_EXEC_FAILED', 'exec exited non-zero', {
 *   cause: error, containerId, exitCode,
 * });
 */
export class DsoError extends Error {
  /** A stable code, `DSO_<AREA>_<WHAT>`, that callers and tests branch on. */
  readonly code: string;
  /** Every option except `cause` and `retryable`: the facts behind the failure. Empty when none were given. */
  readonly details: Readonly<Record<string, unknown>>;
  /**
   * Whether trying the same operation again later may succeed. The error says so, so that
   * callers keep no lists of codes: see {@link isRetryable}.
   */
  readonly retryable: boolean;

  /**
   * @param code a stable `DSO_<AREA>_<WHAT>` code
   * @param message a short sentence that says what is wrong and, where it can, what to do
   * @param options `cause`, plus facts kept on `details`
   */
  constructor(code: string, message: string, options: DsoErrorOptions = {}) {
    const { cause, retryable, ...details } = options;
    super(message, 'cause' in options ? { cause } : undefined);
    this.name = 'DsoError';
    this.code = code;
    this.details = Object.freeze(details);
    this.retryable = retryable === true;
    Object.defineProperty(this, DSO_ERROR, { value: true });
  }
}

/**
 * True for a {@link DsoError} or a subclass of it, from any copy of this package.
 *
 * @example
 * try { parseReference(text); } catch (error) {
 *   if (isDsoError(error) && error.code === 'DSO_REFERENCE_INVALID') report(error.message);
 *   else throw error;
 * }
 */
export function isDsoError(value: unknown): value is DsoError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[DSO_ERROR] === true
  );
}

/**
 * The stable `DSO_*` code of any error DSO's packages throw (`DsoError` and its subclasses,
 * `ProviderError`, `VaultError`, from any copy of their package), or undefined for anything
 * else. For logs and exit paths that only need the code.
 *
 * @example
 * logger.warn({ err: error, code: errorCode(error) }, 'secrets not delivered');
 */
export function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('DSO_') ? code : undefined;
}

/**
 * Whether an operation that failed with `error` is worth trying again: true when the error, or
 * one of the errors it wraps (`cause`, five deep), says `retryable: true` (a {@link DsoError}
 * built so, a retryable `ProviderError`, a `DockerRuntimeError` whose code means the engine may
 * answer later). The errors decide; callers keep no lists of codes.
 *
 * @example
 * } catch (error) {
 *   if (isRetryable(error)) queue.retryLater(id);
 *   else report(error);
 * }
 */
export function isRetryable(error: unknown): boolean {
  let current = error;
  for (let depth = 0; depth < 6 && typeof current === 'object' && current !== null; depth += 1) {
    if ((current as { retryable?: unknown }).retryable === true) return true;
    current = (current as { cause?: unknown }).cause;
  }
  return false;
}
