/**
 * A variable name this provider can serve: letters, digits, `_`, and also `.`, `/` and `-`
 * (which POSIX shells refuse but an environment can hold, e.g. set by `docker run -e`), not
 * starting with `.`, `/` or `-`. At most {@link MAX_VARIABLE_NAME_LENGTH} characters.
 */
export const VARIABLE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_./-]*$/;

/** The longest variable name served, in characters. */
export const MAX_VARIABLE_NAME_LENGTH = 256;

/** An allow-list entry: a variable name, or a non-empty prefix followed by one `*`. */
export const ALLOW_ENTRY = /^[A-Za-z0-9_][A-Za-z0-9_./-]*\*?$/;

/**
 * Variables a `*` pattern never matches, because the agent or its providers read their own
 * credentials from them: the vault passphrase and key file (and every other `DSO_` setting),
 * and the credentials of the built-in cloud providers. Naming one exactly in `allow` still
 * serves it: that is a decision, not an accident of a pattern.
 */
export const RESERVED_VARIABLES: readonly string[] = Object.freeze([
  'AWS_ACCESS_KEY_ID',
  'AWS_SECRET_ACCESS_KEY',
  'AWS_SESSION_TOKEN',
  'AZURE_CLIENT_CERTIFICATE_PASSWORD',
  'AZURE_CLIENT_SECRET',
  'VAULT_SECRET_ID',
  'VAULT_TOKEN',
]);

/** Every variable starting with this is reserved from patterns (the agent's own settings). */
export const RESERVED_PREFIX = 'DSO_';

const RESERVED = new Set(RESERVED_VARIABLES);

/**
 * True for a name a `*` pattern must not match.
 *
 * @example
 * isReserved('DSO_VAULT_PASSPHRASE'); // true
 * isReserved('APP_TOKEN');            // false
 */
export function isReserved(name: string): boolean {
  return name.startsWith(RESERVED_PREFIX) || RESERVED.has(name);
}

/**
 * True for a name this provider can serve at all (see {@link VARIABLE_NAME}).
 *
 * @example
 * isVariableName('svc/db-password'); // true
 * isVariableName('A=B');             // false
 */
export function isVariableName(name: string): boolean {
  return name.length <= MAX_VARIABLE_NAME_LENGTH && VARIABLE_NAME.test(name);
}

/** A compiled allow-list: exact names, and prefixes from `PREFIX*` entries. */
export interface AllowList {
  /** True when `name` may be served. */
  allows(name: string): boolean;
}

/**
 * Compiles `allow` entries: `DB_PASSWORD` allows that variable; `APP_*` allows every variable
 * whose name starts with `APP_`, except the reserved ones (see {@link isReserved}).
 *
 * @example
 * const list = compileAllowList(['DB_PASSWORD', 'APP_*']);
 * list.allows('APP_TOKEN');            // true
 * list.allows('DSO_VAULT_PASSPHRASE'); // false
 * @throws TypeError for an entry that is not a name or a `PREFIX*` pattern (the definition's
 *   schema refuses those first)
 */
export function compileAllowList(entries: readonly string[]): AllowList {
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const entry of entries) {
    if (!ALLOW_ENTRY.test(entry) || entry.length > MAX_VARIABLE_NAME_LENGTH) {
      throw new TypeError('an allow entry must be a variable name or a prefix followed by *');
    }
    if (entry.endsWith('*')) prefixes.push(entry.slice(0, -1));
    else exact.add(entry);
  }
  return {
    allows(name) {
      if (exact.has(name)) return true;
      if (!isVariableName(name) || isReserved(name)) return false;
      return prefixes.some((prefix) => name.startsWith(prefix));
    },
  };
}

/**
 * The part of `env` an allow-list lets through: what a host should give an `env` provider's
 * child process as its environment, so the child holds nothing it may not serve.
 *
 * @example
 * createProcessProvider({ name: 'env', module: '@dso/provider-env', config,
 *   env: { ...allowedEnvironment(config.allow, process.env) } });
 */
export function allowedEnvironment(
  allow: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Record<string, string> {
  const list = compileAllowList(allow);
  const selected: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (value !== undefined && list.allows(name)) selected[name] = value;
  }
  return selected;
}
