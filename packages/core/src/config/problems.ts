// Turns zod issues and YAML errors into problems an operator can act on: the key path, the line
// and column in the file (or the environment variable), and what to write instead. Values from
// the file are never quoted: a provider's settings may hold credentials.
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  type LineCounter,
  type YAMLError,
} from 'yaml';
import type * as z from 'zod';
import { DsoError } from '../errors.js';
import type { ConfigEnvOverride } from './env.js';
import { allowedKeysAt, listFields } from './fields.js';
import { describeValue } from './schema.js';
import { closestMatch } from './suggest.js';

/** One thing wrong with a configuration, as listed in `DSO_CONFIG_INVALID`'s `details.problems`. */
export type ConfigProblem = {
  /** The setting's key path, `cache.ttlMs` or `providers.vault.type`; empty for the whole file. */
  path: string;
  /** 1-based line in the file, when the problem has a place there. */
  line?: number;
  /** 1-based column in the file, when the problem has a place there. */
  column?: number;
  /** The environment variable the bad value came from, when it came from one. */
  env?: string;
  /** What is wrong and, where it can, what to write instead. Names keys, never quotes values. */
  message: string;
};

/** Most problems listed in one error; a file that is wrong everywhere needs no 500-line message. */
export const MAX_REPORTED_PROBLEMS = 50;
/** Longest key quoted in a message; a longer one is cut. */
const MAX_KEY_LENGTH = 64;

const EXPECTED: Readonly<Record<string, string>> = {
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  object: 'a mapping',
  record: 'a mapping',
  map: 'a mapping',
  array: 'a list',
};

// Our own words for the YAML parser's errors: some of its messages quote the offending source
// text (an escape sequence, a block header), which may be part of a credential.
const YAML_ERRORS: Readonly<Record<string, string>> = {
  ALIAS_PROPS: 'an alias cannot carry an anchor or a tag',
  BAD_ALIAS: 'an alias names an anchor that is not defined before it',
  BAD_COLLECTION_TYPE: 'a tag does not fit the collection it is on',
  BAD_DIRECTIVE: 'a %-directive is not valid',
  BAD_DQ_ESCAPE: 'a double-quoted string has an invalid escape sequence',
  BAD_INDENT: 'bad indentation',
  BAD_PROP_ORDER: 'an anchor or tag must come after the `?`, `:` or `-` indicator',
  BAD_SCALAR_START: 'a plain value cannot start with this character: quote it',
  BLOCK_AS_IMPLICIT_KEY: 'a block collection cannot be a key',
  BLOCK_IN_FLOW: 'a block collection cannot sit inside `[ ]` or `{ }`',
  DUPLICATE_KEY: 'a key appears twice in the same mapping',
  IMPOSSIBLE: 'the YAML parser failed',
  KEY_OVER_1024_CHARS: 'a key is longer than 1024 characters',
  MISSING_CHAR: 'a closing quote or bracket, a `,` or a `:` is missing',
  MULTILINE_IMPLICIT_KEY: 'a key must fit on one line',
  MULTIPLE_ANCHORS: 'a node has more than one anchor',
  MULTIPLE_DOCS: 'the file holds more than one YAML document (`---`): keep one',
  MULTIPLE_TAGS: 'a node has more than one tag',
  NON_STRING_KEY: 'a key must be a plain string',
  RESOURCE_EXHAUSTION: 'aliases expand to too much data',
  TAB_AS_INDENT: 'a tab indents a line: YAML indents with spaces',
  TAG_RESOLVE_FAILED: 'a tag is not known',
  UNEXPECTED_TOKEN: 'unexpected text',
};

/** `cache.ttlMs`, `providers["odd.name"]`, `list[2]`: keys as an operator would find them. */
export function formatPath(path: readonly PropertyKey[]): string {
  let text = '';
  for (const key of path) {
    if (typeof key === 'number') {
      text += `[${key}]`;
      continue;
    }
    const full = String(key);
    const name = full.length > MAX_KEY_LENGTH ? `${full.slice(0, MAX_KEY_LENGTH)}…` : full;
    if (/^[A-Za-z0-9_<>-]+$/.test(full)) text += text === '' ? name : `.${name}`;
    else text += `[${JSON.stringify(name)}]`;
  }
  return text;
}

/** Where things are in the parsed file. */
export type YamlLocator = {
  /**
   * The line and column of the key (`target: 'key'`) or the value at `path`; when the path
   * leaves the file (a missing key), of the deepest mapping it reached.
   */
  locate(
    path: readonly PropertyKey[],
    target: 'key' | 'value',
  ): { line: number; column: number } | undefined;
};

export function createYamlLocator(document: Document, lineCounter: LineCounter): YamlLocator {
  const position = (offset: number | undefined) => {
    if (offset === undefined) return undefined;
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  const start = (node: unknown): number | undefined => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return range?.[0];
  };
  return {
    locate(path, target) {
      let node: unknown = document.contents;
      // Where to point when the path leaves the file: the key of the deepest mapping reached.
      let parent = start(node);
      for (let index = 0; index < path.length; index++) {
        if (isAlias(node)) node = node.resolve(document);
        const key = path[index];
        if (isMap(node)) {
          const pair = node.items.find((item) => keyText(item.key) === String(key));
          if (pair === undefined) return position(parent);
          const keyStart = start(pair.key) ?? parent;
          if (index === path.length - 1 && target === 'key') return position(keyStart);
          node = pair.value;
          // `key:` with nothing after it: the key is the place to point at.
          if (node === null || (isScalar(node) && node.value === null)) return position(keyStart);
          parent = keyStart;
        } else if (isSeq(node) && typeof key === 'number' && node.items[key] !== undefined) {
          node = node.items[key];
          parent = start(node) ?? parent;
        } else {
          return position(parent);
        }
      }
      return position(start(node) ?? parent);
    },
  };
}

function keyText(key: unknown): string {
  return isScalar(key) ? String(key.value) : String(key);
}

/** A YAML syntax error as a problem, in our words, at its place. */
export function yamlErrorProblem(error: YAMLError, lineCounter: LineCounter): ConfigProblem {
  const { line, col } = lineCounter.linePos(error.pos[0]);
  const what = YAML_ERRORS[error.code] ?? 'invalid YAML';
  return { path: '', line, column: col, message: `YAML syntax: ${what}` };
}

/** What the problem reporter needs besides the issues. */
export type IssueContext = {
  schema: z.ZodType;
  /** The data that was validated: the file's, with the environment's overrides written in. */
  raw: unknown;
  locator: YamlLocator;
  /** Overrides applied: a problem at one of their paths belongs to the variable, not the file. */
  applied: readonly ConfigEnvOverride[];
};

/** Every problem zod's issues describe, with places. */
export function issueProblems(
  issues: readonly z.core.$ZodIssue[],
  context: IssueContext,
): ConfigProblem[] {
  return issues.flatMap((issue) => describeIssue(issue, context));
}

function describeIssue(issue: z.core.$ZodIssue, context: IssueContext): ConfigProblem[] {
  const path = issue.path;
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((key) =>
      place([...path, key], 'key', unknownKeyMessage(path, key, context.schema), context),
    );
  }
  const subject = `\`${formatPath(path)}\``;
  const value = valueAt(context.raw, path);
  switch (issue.code) {
    case 'invalid_type':
      return [
        place(
          path,
          'value',
          value === undefined
            ? `${subject} is required`
            : `${subject}: expected ${EXPECTED[issue.expected] ?? issue.expected}, got ${describeValue(value)}`,
          context,
        ),
      ];
    case 'invalid_value': {
      const options = issue.values.map((option) => String(option));
      // The suggestion names an allowed option, not the value written.
      const guess = typeof value === 'string' ? closestMatch(value, options) : undefined;
      // "got a string" tells nothing when strings are expected; "got a number" does.
      const sameKind = issue.values.some((option) => typeof option === typeof value);
      return [
        place(
          path,
          'value',
          `${subject}: expected ${options.length === 1 ? '' : 'one of '}${options.map((option) => `\`${option}\``).join(', ')}` +
            (sameKind ? '' : `, got ${describeValue(value)}`) +
            (guess === undefined ? '' : `; did you mean \`${guess}\`?`),
          context,
        ),
      ];
    }
    case 'too_small':
    case 'too_big':
      return [place(path, 'value', `${subject}: ${boundMessage(issue)}`, context)];
    case 'invalid_key':
      return [
        place(path, 'key', `${subject}: ${issue.issues[0]?.message ?? 'invalid key'}`, context),
      ];
    default:
      return [place(path, 'value', `${subject}: ${issue.message}`, context)];
  }
}

function boundMessage(issue: z.core.$ZodIssueTooSmall | z.core.$ZodIssueTooBig): string {
  const small = issue.code === 'too_small';
  const bound = Number(small ? issue.minimum : issue.maximum);
  if (issue.origin === 'string') {
    if (small && bound === 1) return 'must not be empty';
    return `must be ${small ? 'at least' : 'at most'} ${bound} characters long`;
  }
  if (issue.inclusive === false) return `must be ${small ? 'more' : 'less'} than ${bound}`;
  return `must be ${small ? 'at least' : 'at most'} ${bound}`;
}

function unknownKeyMessage(
  parentPath: readonly PropertyKey[],
  key: string,
  schema: z.ZodType,
): string {
  const text = `unknown key \`${formatPath([...parentPath, key])}\``;
  const allowed = allowedKeysAt(schema, parentPath) ?? [];
  const near = closestMatch(key, allowed);
  if (near !== undefined) return `${text}; did you mean \`${near}\`?`;
  if (parentPath.length === 2 && parentPath[0] === 'providers') {
    return `${text}; a provider's own settings go under \`${formatPath([...parentPath, 'config'])}\``;
  }
  // Right key, wrong place: `level` at the top means `log.level`.
  const elsewhere = listFields(schema).filter(
    (field) => closestMatch(key, [field.path.at(-1)!]) !== undefined || field.path.at(-1) === key,
  );
  if (elsewhere.length > 0 && elsewhere.length <= 3) {
    const names = elsewhere.map((field) => `\`${formatPath(field.path)}\``);
    return `${text}; did you mean ${names.join(' or ')}?`;
  }
  return `${text}; allowed here: ${allowed.map((name) => `\`${name}\``).join(', ')}`;
}

function place(
  path: readonly PropertyKey[],
  target: 'key' | 'value',
  message: string,
  context: IssueContext,
): ConfigProblem {
  const override = context.applied.find((candidate) =>
    candidate.path.every((key, index) => String(path[index]) === key),
  );
  if (override !== undefined && target === 'value') {
    return { path: formatPath(path), env: override.name, message };
  }
  const where = context.locator.locate(path, target);
  return where === undefined
    ? { path: formatPath(path), message }
    : { path: formatPath(path), line: where.line, column: where.column, message };
}

function valueAt(raw: unknown, path: readonly PropertyKey[]): unknown {
  let current = raw;
  for (const key of path) {
    if (typeof current !== 'object' || current === null) return undefined;
    current = (current as Record<PropertyKey, unknown>)[key];
  }
  return current;
}

/** Problems in the order an editor walks the file; the environment's last. */
export function sortProblems(problems: readonly ConfigProblem[]): ConfigProblem[] {
  return [...problems].sort(
    (a, b) =>
      Number(a.env !== undefined) - Number(b.env !== undefined) ||
      (a.line ?? 0) - (b.line ?? 0) ||
      (a.column ?? 0) - (b.column ?? 0),
  );
}

/** `dso.yaml:7:3: unknown key …`, or `DSO_LOG_LEVEL: …` for a value from the environment. */
export function formatProblem(file: string, problem: ConfigProblem): string {
  const where =
    problem.env ??
    (problem.line === undefined ? file : `${file}:${problem.line}:${problem.column ?? 1}`);
  return `${where}: ${problem.message}`;
}

/**
 * The one error an invalid configuration throws: every problem, one per line, in the message
 * and in `details.problems`.
 */
export function invalidConfigError(
  file: string,
  problems: readonly ConfigProblem[],
  cause?: unknown,
): DsoError {
  const sorted = sortProblems(problems);
  const shown = sorted.slice(0, MAX_REPORTED_PROBLEMS);
  const lines = shown.map((problem) => `  ${formatProblem(file, problem)}`);
  if (sorted.length > shown.length) lines.push(`  … and ${sorted.length - shown.length} more`);
  const count = sorted.length === 1 ? '1 problem' : `${sorted.length} problems`;
  return new DsoError(
    'DSO_CONFIG_INVALID',
    `invalid configuration in ${file} (${count}):\n${lines.join('\n')}`,
    cause === undefined ? { file, problems: shown } : { file, problems: shown, cause },
  );
}
