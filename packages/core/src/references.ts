import { DsoError } from './errors.js';

/**
 * How a reference asks for its secret: `dso` as an environment variable's value, `dsofile` as a
 * file whose path becomes the variable's value.
 */
export type ReferenceScheme = 'dso' | 'dsofile';

/**
 * A parsed secret reference. Keys that the reference does not carry are absent, not
 * `undefined`, so two equal references deep-equal each other.
 */
export type SecretReference = {
  /** `dso`: deliver as an environment value; `dsofile`: deliver as a file. */
  scheme: ReferenceScheme;
  /** The configured provider to ask; absent means the default provider. */
  provider?: string;
  /** Slash-separated path in the provider's store, e.g. `app/db/password`. */
  path: string;
  /** A field of a JSON secret; dots select nested fields (`db.password`). */
  field?: string;
  /** A version the provider understands; absent means the current one. */
  version?: string;
};

/** The reference schemes, in the order the grammar lists them. */
export const REFERENCE_SCHEMES: readonly ReferenceScheme[] = ['dso', 'dsofile'];

/**
 * The longest reference accepted, in characters. References live in labels and environment
 * values; a bound keeps a malformed one from being carried around and echoed at any size.
 */
export const MAX_REFERENCE_LENGTH = 2048;

/** The grammar's shape, quoted in every parse error so the fix is in the message. */
const SHAPE =
  'dso://[provider:]path[#field][@version] or dsofile://[provider:]path[#field][@version]';

const PROVIDER = /^[a-z][a-z0-9-]{0,62}$/;
const SEGMENT = /^[A-Za-z0-9._-]+$/;
const FIELD_KEY = /^[A-Za-z0-9_-]+$/;
const VERSION = /^[A-Za-z0-9._-]+$/;
/** Something that looks like an attempt at a reference (`DSO://`, `dso:/`, `dsofile:`), so quoting it is safe. */
const SCHEME_LIKE = /^dso(?:file)?:/i;
/** Longest part of a bad reference quoted back in an error message. */
const QUOTE_LIMIT = 200;

/**
 * True when `text` starts with `dso://` or `dsofile://`, i.e. it is meant as a secret reference
 * (which {@link parseReference} may still reject). Anything else is a plain value.
 *
 * @example
 * isReference('dsofile://app/db/password'); // true
 * isReference('postgres://db:5432');        // false
 */
export function isReference(text: unknown): boolean {
  return typeof text === 'string' && (text.startsWith('dso://') || text.startsWith('dsofile://'));
}

/**
 * Parses a secret reference. This is the one parser of DSO's reference grammar:
 *
 * ```text
 * reference = scheme "://" [ provider ":" ] path [ "#" field ] [ "@" version ]
 * scheme    = "dso" | "dsofile"
 * provider  = [a-z][a-z0-9-]{0,62}
 * path      = segment *( "/" segment )      segment = [A-Za-z0-9._-]+, but not "." or ".."
 * field     = key *( "." key )              key     = [A-Za-z0-9_-]+
 * version   = [A-Za-z0-9._-]+
 * ```
 *
 * `dso://` asks for the secret as an environment variable's value, `dsofile://` as a file.
 * A field selects a value inside a JSON secret, dots selecting nested fields; a version pins
 * one version of the secret. No part is percent-decoded: what is written is what is meant.
 *
 * The error message quotes the reference (references are not secret), but text that does not
 * even begin like one (`dso:`/`dsofile:` in any case) is not quoted, since it may be a value
 * given where a reference was expected.
 *
 * @example
 * parseReference('dsofile://app/db/password');
 * // { scheme: 'dsofile', path: 'app/db/password' }
 * parseReference('dso://vault:app/db#password@3');
 * // { scheme: 'dso', provider: 'vault', path: 'app/db', field: 'password', version: '3' }
 * @throws DsoError DSO_REFERENCE_INVALID naming the part that is wrong
 */
export function parseReference(text: string): SecretReference {
  if (typeof text !== 'string') {
    throw invalid(undefined, `expected a string, got ${describeType(text)}`);
  }
  if (text.length > MAX_REFERENCE_LENGTH) {
    throw invalid(
      text,
      `it is ${text.length} characters long; the limit is ${MAX_REFERENCE_LENGTH}`,
    );
  }

  let scheme: ReferenceScheme;
  let rest: string;
  if (text.startsWith('dso://')) {
    scheme = 'dso';
    rest = text.slice('dso://'.length);
  } else if (text.startsWith('dsofile://')) {
    scheme = 'dsofile';
    rest = text.slice('dsofile://'.length);
  } else {
    throw invalid(
      text,
      SCHEME_LIKE.test(text)
        ? 'the scheme must be dso:// or dsofile:// (lowercase, two slashes)'
        : 'it does not start with dso:// or dsofile:// (the text is not shown: it may be a value)',
    );
  }

  // '@', '#' and ':' cannot occur inside a path, field or version, so each splits the text
  // unambiguously; more than one of any of them is an error, not a guess.
  let version: string | undefined;
  const at = rest.indexOf('@');
  if (at !== -1) {
    if (rest.indexOf('@', at + 1) !== -1) throw invalid(text, 'it has more than one "@"');
    version = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (version.includes('#')) {
      throw invalid(text, 'the "#field" part must come before the "@version" part');
    }
    if (version === '') throw invalid(text, 'the version after "@" is empty');
    if (!VERSION.test(version)) {
      throw invalid(
        text,
        `the version ${quote(version)} may hold only letters, digits, ".", "_" and "-"`,
      );
    }
  }

  let field: string | undefined;
  const hash = rest.indexOf('#');
  if (hash !== -1) {
    if (rest.indexOf('#', hash + 1) !== -1) throw invalid(text, 'it has more than one "#"');
    field = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
    if (field === '') throw invalid(text, 'the field after "#" is empty');
    if (!field.split('.').every((key) => FIELD_KEY.test(key))) {
      throw invalid(
        text,
        `the field ${quote(field)} must be keys of letters, digits, "_" and "-" joined by single dots`,
      );
    }
  }

  let provider: string | undefined;
  const colon = rest.indexOf(':');
  if (colon !== -1) {
    if (rest.indexOf(':', colon + 1) !== -1) throw invalid(text, 'it has more than one ":"');
    provider = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
    if (provider === '') throw invalid(text, 'the provider before ":" is empty');
    if (provider.includes('/')) {
      throw invalid(
        text,
        'a ":" may only separate the provider from the path, as in "vault:app/db"',
      );
    }
    if (!PROVIDER.test(provider)) {
      throw invalid(
        text,
        `the provider ${quote(provider)} must be a lowercase letter then up to 62 lowercase letters, digits or "-"`,
      );
    }
  }

  if (rest === '') throw invalid(text, 'the path is empty');
  const segments = rest.split('/');
  for (const [index, segment] of segments.entries()) {
    const where = `path segment ${index + 1} of ${segments.length}`;
    if (segment === '') {
      throw invalid(text, `${where} is empty (no leading, trailing or double "/")`);
    }
    if (segment === '.' || segment === '..') {
      throw invalid(text, `${where} is ${quote(segment)}, which is not allowed`);
    }
    if (!SEGMENT.test(segment)) {
      throw invalid(
        text,
        `${where} ${quote(segment)} may hold only letters, digits, ".", "_" and "-"`,
      );
    }
  }

  const reference: SecretReference = { scheme, path: rest };
  if (provider !== undefined) reference.provider = provider;
  if (field !== undefined) reference.field = field;
  if (version !== undefined) reference.version = version;
  return reference;
}

/**
 * Writes a reference back as text; the inverse of {@link parseReference}, so
 * `formatReference(parseReference(text)) === text` for every valid `text`.
 *
 * @example
 * formatReference({ scheme: 'dsofile', provider: 'vault', path: 'app/db', field: 'password' });
 * // 'dsofile://vault:app/db#password'
 * @throws DsoError DSO_REFERENCE_INVALID when a part does not fit the grammar (so the text would
 *   not parse back to the same reference)
 */
export function formatReference(reference: SecretReference): string {
  const text =
    `${reference.scheme}://` +
    (reference.provider === undefined ? '' : `${reference.provider}:`) +
    reference.path +
    (reference.field === undefined ? '' : `#${reference.field}`) +
    (reference.version === undefined ? '' : `@${reference.version}`);
  // Parsing what was written checks every part against the one grammar; comparing catches a
  // part that smuggles in a separator (a path holding ":" would come back as a provider).
  const parsed = parseReference(text);
  if (
    parsed.scheme !== reference.scheme ||
    parsed.provider !== reference.provider ||
    parsed.path !== reference.path ||
    parsed.field !== reference.field ||
    parsed.version !== reference.version
  ) {
    throw invalid(text, 'a part holds a separator (":", "#" or "@") that belongs to another part');
  }
  return text;
}

function invalid(text: string | undefined, problem: string): DsoError {
  if (text === undefined || !SCHEME_LIKE.test(text)) {
    return new DsoError(
      'DSO_REFERENCE_INVALID',
      `invalid secret reference: ${problem}; expected ${SHAPE}`,
    );
  }
  return new DsoError(
    'DSO_REFERENCE_INVALID',
    `invalid secret reference ${quote(text)}: ${problem}; expected ${SHAPE}`,
    { reference: truncate(text) },
  );
}

function quote(text: string): string {
  // JSON quoting escapes control characters, so a hostile reference cannot forge log lines.
  return JSON.stringify(truncate(text));
}

function truncate(text: string): string {
  return text.length > QUOTE_LIMIT ? `${text.slice(0, QUOTE_LIMIT)}…` : text;
}

function describeType(value: unknown): string {
  return value === null ? 'null' : typeof value;
}
