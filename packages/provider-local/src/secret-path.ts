import { VaultError } from './vault-error.js';

/** The longest secret path the vault accepts, in characters. */
export const MAX_SECRET_PATH_LENGTH = 1024;

// The same segment grammar as `dso://` references in @dso/core, so every path a reference can
// name can be stored, and nothing else.
const SEGMENT = /^[A-Za-z0-9._-]+$/;

/**
 * Checks a secret path against `segment *( "/" segment )`, where a segment is
 * `[A-Za-z0-9._-]+` but not `.` or `..`. Paths are references, not secrets, so the message
 * quotes the path.
 *
 * @example
 * assertSecretPath('app/db/password'); // ok
 * assertSecretPath('app/../etc');      // throws DSO_VAULT_PATH_INVALID
 * @throws VaultError DSO_VAULT_PATH_INVALID naming the part that is wrong
 */
export function assertSecretPath(path: string): void {
  const problem = describeProblem(path, false);
  if (problem !== undefined) throw invalidPath(path, problem);
}

/**
 * Checks a `list()` prefix: empty, or a secret path, optionally with one trailing `/`.
 * Returns the prefix without the trailing `/`.
 *
 * @throws VaultError DSO_VAULT_PATH_INVALID naming the part that is wrong
 */
export function normalizePrefix(prefix: string | undefined): string {
  if (prefix === undefined || prefix === '') return '';
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const problem = describeProblem(trimmed, true);
  if (problem !== undefined) throw invalidPath(prefix, problem);
  return trimmed;
}

/** True when `path` is `prefix` itself or lies under it, segment by segment. */
export function isUnderPrefix(path: string, prefix: string): boolean {
  return prefix === '' || path === prefix || path.startsWith(`${prefix}/`);
}

function describeProblem(path: unknown, isPrefix: boolean): string | undefined {
  if (typeof path !== 'string') return `expected a string, got ${typeof path}`;
  if (path === '') return 'it is empty';
  if (path.length > MAX_SECRET_PATH_LENGTH) {
    return `it is ${path.length} characters long; the limit is ${MAX_SECRET_PATH_LENGTH}`;
  }
  const segments = path.split('/');
  for (const [index, segment] of segments.entries()) {
    const where = `segment ${index + 1} of ${segments.length}`;
    if (segment === '') {
      return isPrefix
        ? `${where} is empty (no leading or double "/")`
        : `${where} is empty (no leading, trailing or double "/")`;
    }
    if (segment === '.' || segment === '..')
      return `${where} is "${segment}", which is not allowed`;
    if (!SEGMENT.test(segment)) {
      return `${where} may hold only letters, digits, ".", "_" and "-"`;
    }
  }
  return undefined;
}

function invalidPath(path: unknown, problem: string): VaultError {
  // Quote only strings of sane length: anything else is described, not echoed.
  const shown =
    typeof path === 'string' && path.length <= MAX_SECRET_PATH_LENGTH
      ? JSON.stringify(path)
      : 'the secret path';
  return new VaultError(
    'DSO_VAULT_PATH_INVALID',
    `${shown} is not a valid secret path: ${problem}; use segments of letters, digits, ".", "_" and "-" separated by "/", e.g. app/db/password`,
    typeof path === 'string' ? { secretPath: path } : {},
  );
}
