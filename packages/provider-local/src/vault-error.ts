/**
 * Stable codes for everything the local vault can fail with. Each error's message says what to
 * do; the README's error table lists the fixes.
 */
export const VAULT_ERROR_CODES = [
  'DSO_VAULT_NOT_FOUND',
  'DSO_VAULT_EXISTS',
  'DSO_VAULT_PERMISSIONS',
  'DSO_VAULT_WRONG_KEY',
  'DSO_VAULT_CORRUPT',
  'DSO_VAULT_TRUNCATED',
  'DSO_VAULT_UNSUPPORTED_VERSION',
  'DSO_VAULT_TOO_LARGE',
  'DSO_VAULT_LOCKED',
  'DSO_VAULT_IO',
  'DSO_VAULT_CLOSED',
  'DSO_VAULT_PATH_INVALID',
  'DSO_VAULT_SECRET_NOT_FOUND',
  'DSO_VAULT_KEY_MISSING',
  'DSO_VAULT_KEY_CONFLICT',
  'DSO_VAULT_KEY_PERMISSIONS',
  'DSO_VAULT_KEY_INVALID',
  'DSO_VAULT_KEY_EXISTS',
] as const;

/** One of {@link VAULT_ERROR_CODES}. */
export type VaultErrorCode = (typeof VAULT_ERROR_CODES)[number];

// A global symbol, so errors from a second copy of this package are still recognised by
// isVaultError().
const VAULT_ERROR = Symbol.for('dso.vault-error');

/** The facts a {@link VaultError} carries besides its code and message. None is ever a secret. */
export interface VaultErrorOptions {
  /** The error this one wraps; kept as the standard `error.cause`. */
  cause?: unknown;
  /** The vault file concerned. */
  vaultPath?: string;
  /** The secret's path inside the vault (never its value). */
  secretPath?: string;
  /** The secret version asked for. */
  version?: string;
  /** The key file concerned. */
  keyFile?: string;
}

/**
 * A vault failure with a stable code. Messages are built from file paths, secret paths and
 * versions, never from secret values or key material.
 *
 * @example
 * try { await vault.get('app/db'); } catch (error) {
 *   if (isVaultError(error) && error.code === 'DSO_VAULT_SECRET_NOT_FOUND') return undefined;
 *   throw error;
 * }
 */
export class VaultError extends Error {
  /** A stable code, `DSO_VAULT_<WHAT>`, that callers and tests branch on. */
  readonly code: VaultErrorCode;
  /** The vault file concerned, when there is one. */
  readonly vaultPath: string | undefined;
  /** The secret's path inside the vault, when one was asked for. */
  readonly secretPath: string | undefined;
  /** The secret version asked for, when one was. */
  readonly version: string | undefined;
  /** The key file concerned, when there is one. */
  readonly keyFile: string | undefined;

  /**
   * @param code a stable `DSO_VAULT_<WHAT>` code
   * @param message a short sentence that says what is wrong and what to do
   * @param options `cause`, plus the facts behind the failure
   */
  constructor(code: VaultErrorCode, message: string, options: VaultErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VaultError';
    this.code = code;
    this.vaultPath = options.vaultPath;
    this.secretPath = options.secretPath;
    this.version = options.version;
    this.keyFile = options.keyFile;
    Object.defineProperty(this, VAULT_ERROR, { value: true });
  }
}

/**
 * True for a {@link VaultError} from any copy of this package.
 *
 * @example
 * if (isVaultError(error) && error.code === 'DSO_VAULT_NOT_FOUND') console.error(error.message);
 */
export function isVaultError(value: unknown): value is VaultError {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[VAULT_ERROR] === true
  );
}

/** The `code` of a Node.js system error (`ENOENT`, `EEXIST`, …), if it is one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || isVaultError(error)) return undefined;
  // An aborted fs call rejects with code ABORT_ERR: a cancellation, not an I/O failure, so it
  // must reach the caller as the AbortError it is.
  if ((error as { name?: unknown }).name === 'AbortError') return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}
