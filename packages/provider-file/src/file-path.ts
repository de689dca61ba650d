import { ProviderError } from '@dso/provider-sdk';

/**
 * One segment of a secret path and of a root's name: the segment grammar of `dso://`
 * references, `[A-Za-z0-9._-]+`, but never `.` or `..`. Nothing else can name a file, so `..`,
 * absolute paths, backslashes, NUL bytes and empty segments are refused before the filesystem
 * is touched.
 */
const SEGMENT = /^[A-Za-z0-9._-]{1,255}$/;

/** The longest secret path accepted, in characters. */
export const MAX_FILE_PATH_LENGTH = 1024;

/** True for a valid path segment (also a valid root name). */
export function isSegment(value: string): boolean {
  return SEGMENT.test(value) && value !== '.' && value !== '..';
}

/** A secret path split into its root's name and the segments under that root. */
export interface ParsedFilePath {
  root: string;
  segments: string[];
}

/**
 * Splits `<root>/<relative path>` and checks every segment. The message names the part that is
 * wrong (a path is a reference, never a value).
 *
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND for a malformed path
 */
export function parseFilePath(path: string, provider: string): ParsedFilePath {
  const problem = describeProblem(path);
  if (problem !== undefined) {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `${JSON.stringify(path)} is not a file path this provider serves: ${problem}; write <root>/<file>, e.g. certs/tls.key, with segments of letters, digits, . _ -`,
      { provider, path },
    );
  }
  const [root = '', ...segments] = path.split('/');
  return { root, segments };
}

/**
 * Checks a `list()` prefix: empty, a root name, or a root name and segments, optionally with a
 * trailing `/`. Returns it split, without the trailing `/`.
 *
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND for a malformed prefix
 */
export function parsePrefix(prefix: string | undefined, provider: string): string[] {
  if (prefix === undefined || prefix === '') return [];
  const trimmed = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  const problem = trimmed === '' ? 'it is only "/"' : describeProblem(trimmed, true);
  if (problem !== undefined) {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `${JSON.stringify(prefix)} is not a prefix this provider can list: ${problem}`,
      { provider },
    );
  }
  return trimmed.split('/');
}

function describeProblem(path: unknown, isPrefix = false): string | undefined {
  if (typeof path !== 'string') return `expected a string, got ${typeof path}`;
  if (path === '') return 'it is empty';
  if (path.length > MAX_FILE_PATH_LENGTH) {
    return `it is ${path.length} characters long; the limit is ${MAX_FILE_PATH_LENGTH}`;
  }
  const segments = path.split('/');
  if (!isPrefix && segments.length < 2) return 'it names a root but no file under it';
  for (const [index, segment] of segments.entries()) {
    const where = `segment ${index + 1} of ${segments.length}`;
    if (segment === '') return `${where} is empty (no leading, trailing or double "/")`;
    if (segment === '.' || segment === '..') return `${where} is "${segment}"`;
    if (!SEGMENT.test(segment)) return `${where} has a character outside A-Z a-z 0-9 . _ -`;
  }
  return undefined;
}
