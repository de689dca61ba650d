import { DsoError, type SecretReference } from '@dso/core';

// ---------------------------------------------------------------------------------------------
// `api.resolveAllow`: which `dso://` references a caller of `POST /v1/resolve` (that is, `dso up`)
// may have the agent resolve. The grammar of a pattern:
//
//   pattern  = "dso://" [ provider ":" ] path [ "#" field ]
//   provider = glob over [a-z0-9-]                  e.g. vault, team-*, *
//   path     = segment *( "/" segment )             segment = "**" | glob over [A-Za-z0-9._-]
//   field    = key *( "." key )                     key     = "**" | glob over [A-Za-z0-9_-]
//
// - `*` matches any run of characters (none included) inside one path segment, field key or
//   provider name; it never crosses a "/" or a ".". `**` is a whole segment (or key) and matches
//   zero or more whole segments: `dso://app/**` matches `dso://app`, `dso://app/db` and
//   `dso://app/db/password`; `dso://app/**/password` matches `dso://app/password` too.
// - The provider is always compared explicitly. A reference without one means the agent's
//   default provider, and so does a pattern without one: with `defaultProvider: local`,
//   `dso://app/*` and `dso://local:app/*` are the same pattern, and both match `dso://app/db` and
//   `dso://local:app/db`, and neither matches `dso://vault:app/db`. `dso://*:app/*` matches
//   `app/<one segment>` in every configured provider.
// - A pattern without `#field` matches the reference with any field or none (a field is a part
//   of the same secret). With one, the reference must name a field it matches.
// - A version is not part of a pattern: a pattern allows every version of what it matches.
// - Matching is on the parsed reference, part by part, never on text: nothing in a reference
//   can smuggle a separator past it (the one parser forbids `*`, `:`, `#`, `@` inside a part).
// ---------------------------------------------------------------------------------------------

/** The longest pattern accepted, in characters (the config schema's bound). */
export const MAX_RESOLVE_ALLOW_PATTERN_LENGTH = 512;

/** A compiled `api.resolveAllow`: {@link compileResolveAllow}. */
export interface ResolveAllow {
  /** The patterns as configured. */
  readonly patterns: readonly string[];
  /** True when no pattern is configured: then nothing is allowed. */
  readonly empty: boolean;
  /** Whether some pattern matches `reference` (always false for a `dsofile` reference). */
  allows(reference: SecretReference): boolean;
}

interface CompiledPattern {
  provider: RegExp;
  path: Array<RegExp | typeof GLOBSTAR>;
  field?: Array<RegExp | typeof GLOBSTAR>;
}

const GLOBSTAR = Symbol('**');
const PREFIX = 'dso://';
const PROVIDER_GLOB = /^[a-z0-9*-]{1,63}$/;
const SEGMENT_GLOB = /^[A-Za-z0-9._*-]+$/;
const KEY_GLOB = /^[A-Za-z0-9_*-]+$/;

/**
 * Compiles the patterns of `api.resolveAllow` (grammar in this module's comment).
 *
 * @example
 * const allow = compileResolveAllow(['dso://app/**', 'dso://vault:team/*#password'], 'local');
 * allow.allows(parseReference('dso://app/db/password'));        // true (local is the default)
 * allow.allows(parseReference('dso://vault:team/db#password')); // true
 * allow.allows(parseReference('dso://vault:team/db'));          // false: the pattern names a field
 * @param defaultProvider the provider a reference or pattern without one means
 * @throws DsoError DSO_AGENT_RESOLVE_ALLOW_INVALID naming the pattern, what is wrong and the fix
 */
export function compileResolveAllow(
  patterns: readonly string[],
  defaultProvider: string,
): ResolveAllow {
  const compiled = patterns.map((pattern) => compilePattern(pattern, defaultProvider));
  return {
    patterns: [...patterns],
    empty: compiled.length === 0,
    allows(reference) {
      if (reference.scheme !== 'dso') return false;
      const provider = reference.provider ?? defaultProvider;
      const path = reference.path.split('/');
      const field = reference.field?.split('.');
      return compiled.some(
        (pattern) =>
          pattern.provider.test(provider) &&
          matchParts(pattern.path, path) &&
          (pattern.field === undefined ||
            (field !== undefined && matchParts(pattern.field, field))),
      );
    },
  };
}

function compilePattern(pattern: string, defaultProvider: string): CompiledPattern {
  if (typeof pattern !== 'string' || pattern.length === 0) {
    throw invalid(String(pattern), 'is empty');
  }
  if (pattern.length > MAX_RESOLVE_ALLOW_PATTERN_LENGTH) {
    throw invalid(pattern, `is longer than ${MAX_RESOLVE_ALLOW_PATTERN_LENGTH} characters`);
  }
  if (!pattern.startsWith(PREFIX)) {
    throw invalid(
      pattern,
      pattern.startsWith('dsofile://')
        ? 'is a dsofile:// pattern: the agent delivers files itself, only dso:// references are resolved for callers'
        : 'does not start with dso://',
    );
  }
  let rest = pattern.slice(PREFIX.length);
  if (rest.includes('@')) {
    throw invalid(pattern, 'names a version: a pattern allows every version of what it matches');
  }
  let field: CompiledPattern['field'];
  const hash = rest.indexOf('#');
  if (hash !== -1) {
    const text = rest.slice(hash + 1);
    rest = rest.slice(0, hash);
    if (text.includes('#')) throw invalid(pattern, 'has more than one "#"');
    field = compileParts(pattern, text, '.', KEY_GLOB, 'field key', 'A-Z a-z 0-9 _ - *');
  }
  let provider = defaultProvider;
  const colon = rest.indexOf(':');
  if (colon !== -1) {
    provider = rest.slice(0, colon);
    rest = rest.slice(colon + 1);
    if (rest.includes(':')) throw invalid(pattern, 'has more than one ":"');
    if (!PROVIDER_GLOB.test(provider)) {
      throw invalid(
        pattern,
        `names the provider ${JSON.stringify(provider)}: write a provider name of a-z 0-9 - (or * for any) before the ":"`,
      );
    }
  }
  return {
    provider: globToRegExp(provider),
    path: compileParts(pattern, rest, '/', SEGMENT_GLOB, 'path segment', 'A-Z a-z 0-9 . _ - *'),
    ...(field === undefined ? {} : { field }),
  };
}

function compileParts(
  pattern: string,
  text: string,
  separator: string,
  allowed: RegExp,
  what: string,
  characters: string,
): Array<RegExp | typeof GLOBSTAR> {
  if (text === '')
    throw invalid(pattern, `has an empty ${what === 'field key' ? 'field' : 'path'}`);
  const parts = text.split(separator);
  return parts.map((part, index) => {
    const where = `${what} ${index + 1} of ${parts.length}`;
    if (part === '')
      throw invalid(
        pattern,
        `has an empty ${where} (no leading, trailing or double "${separator}")`,
      );
    if (part === '**') return GLOBSTAR;
    if (part.includes('**')) {
      throw invalid(
        pattern,
        `has "**" inside ${where}: "**" must be a whole ${what} (use "*" within one)`,
      );
    }
    if (!allowed.test(part))
      throw invalid(
        pattern,
        `has ${where} ${JSON.stringify(part)}, which may hold only ${characters}`,
      );
    if (part === '.' || part === '..')
      throw invalid(pattern, `has ${where} ${JSON.stringify(part)}, which is not allowed`);
    return globToRegExp(part);
  });
}

/** `*` → any run of characters; everything else literal (only `.` and `-` need escaping here). */
function globToRegExp(glob: string): RegExp {
  const body = glob
    .split('*')
    .map((literal) => literal.replace(/[.-]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`);
}

/** Whether `parts` match `globs`, `**` standing for zero or more whole parts. */
function matchParts(
  globs: ReadonlyArray<RegExp | typeof GLOBSTAR>,
  parts: readonly string[],
): boolean {
  // reachable[j]: globs[0..i) can match parts[0..j). One row at a time: O(globs × parts).
  let reachable: boolean[] = Array.from({ length: parts.length + 1 }, (_, j) => j === 0);
  for (const glob of globs) {
    const next: boolean[] = new Array<boolean>(parts.length + 1).fill(false);
    for (let j = 0; j <= parts.length; j += 1) {
      if (glob === GLOBSTAR) {
        // Zero parts, or one more part after a position already reachable by this globstar.
        next[j] = reachable[j] === true || (j > 0 && next[j - 1] === true);
      } else if (j > 0) {
        next[j] = reachable[j - 1] === true && glob.test(parts[j - 1] as string);
      }
    }
    reachable = next;
  }
  return reachable[parts.length] === true;
}

function invalid(pattern: string, problem: string): DsoError {
  const shown = JSON.stringify(pattern.length > 200 ? `${pattern.slice(0, 200)}…` : pattern);
  return new DsoError(
    'DSO_AGENT_RESOLVE_ALLOW_INVALID',
    `api.resolveAllow pattern ${shown} ${problem}; write patterns such as dso://app/*, dso://app/** or dso://vault:team/db#password`,
    { pattern: pattern.slice(0, 200) },
  );
}
