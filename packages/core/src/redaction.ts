import {
  compilePatterns,
  findPatternRanges,
  type PatternSet,
  type RedactionPatternId,
} from './redaction-patterns.js';

/** What every registered form of a value, and every credential a pattern finds, is replaced with. */
export const REDACTED = '[REDACTED]';

/**
 * The shortest value {@link createRedactor} registers by default, in characters (bytes for a
 * `Uint8Array`). Shorter values (`1`, `yes`, `true`) occur in ordinary text so often that
 * redacting them would shred every log line, while hiding very little: a value that short is
 * guessable anyway.
 */
export const DEFAULT_REDACTION_MIN_LENGTH = 4;

/**
 * Shifted base64 forms (a value inside a larger base64 blob, such as an HTTP Basic
 * `user:password` header) are registered only when at least this long: the shift leaves a
 * shorter run of characters that, below this length, turns up in unrelated base64 by chance.
 */
const MIN_SHIFTED_FORM_LENGTH = 8;

/** Options of {@link createRedactor}. */
export interface RedactorOptions {
  /**
   * Values shorter than this, in characters (bytes for a `Uint8Array`), are not registered.
   * @default 4 ({@link DEFAULT_REDACTION_MIN_LENGTH})
   */
  minLength?: number;
  /**
   * Which well-known credential formats (`REDACTION_PATTERNS`) are redacted as well,
   * registered or not: `true` for all, `false` for none, or a list of pattern ids.
   * @default true
   */
  patterns?: boolean | readonly RedactionPatternId[];
}

/**
 * Replaces known secret values in text with `[REDACTED]`.
 *
 * This is the one place in DSO where secret values are kept after use: each registered value,
 * and every encoded form of it, stays in memory as a string for the redactor's lifetime (strings
 * cannot be zeroed), so that no log line can carry it.
 */
export interface Redactor {
  /**
   * Registers a value: from now on {@link Redactor.redact} replaces it and its encoded forms.
   * A `Uint8Array` is copied into strings; the caller may zero it afterwards. Values shorter
   * than `minLength` are ignored; registering a value twice is harmless.
   */
  register(value: string | Uint8Array): void;
  /** `text` with every occurrence of every registered form replaced by `[REDACTED]`. */
  redact(text: string): string;
  /** How many distinct values are registered. */
  readonly size: number;
}

/**
 * Creates an exact-value redactor. Registering a value also registers the forms it takes when
 * printed, serialised or sent:
 *
 * - the text itself (for a `Uint8Array`, its UTF-8 decoding when it is valid UTF-8);
 * - JSON-escaped (as inside a JSON string), and escaped twice (JSON inside a JSON string);
 * - URL-encoded (`encodeURIComponent`) and form-encoded (`application/x-www-form-urlencoded`);
 * - base64 and base64url, with and without padding, and as it appears at each of the three
 *   byte alignments inside a longer base64 text (HTTP Basic credentials), when long enough;
 * - hex, lower case (as `Buffer#toString('hex')` and most tools print it).
 *
 * Matching is exact and case-sensitive. All forms are matched in one pass over the text by
 * Aho–Corasick automata built lazily on the first `redact` after a `register`, so the cost of a
 * call grows with the text, not with the number of values. Where matches overlap, the whole
 * overlapping run becomes one `[REDACTED]`.
 *
 * Unless `patterns` is `false`, well-known credential formats (`REDACTION_PATTERNS`:
 * private keys, cloud and forge tokens, JWTs, `password=` pairs, URL passwords) are redacted
 * too, registered or not. Values and patterns are both matched against the original text and
 * the union of what they find is replaced, so neither can hide a match from the other: a
 * pattern that replaced first could cut a registered value in two and leave its ends
 * unmatchable, and replacing values first could break up a token the patterns would know.
 *
 * @example
 * const redactor = createRedactor();
 * redactor.register('hunter2-s3cret');
 * redactor.redact('login hunter2-s3cret'); // 'login [REDACTED]'
 * redactor.redact('DB_PASSWORD=never-registered'); // 'DB_PASSWORD=[REDACTED]'
 * @throws RangeError when `minLength` is not a positive integer
 * @throws TypeError when `patterns` names an unknown pattern
 */
export function createRedactor(options: RedactorOptions = {}): Redactor {
  const minLength = options.minLength ?? DEFAULT_REDACTION_MIN_LENGTH;
  if (!Number.isInteger(minLength) || minLength < 1) {
    throw new RangeError(`minLength must be a positive integer, got ${String(minLength)}`);
  }
  const patternSet: PatternSet = compilePatterns(options.patterns ?? true);

  /** Base64 of each registered value's bytes: identifies a value, so `size` counts values. */
  const values = new Set<string>();
  /** Every form of every value, so a form shared by two values is matched once. */
  const known = new Set<string>();
  /** Forms registered since the last build. */
  let pending: string[] = [];
  /**
   * The matchers, largest first. Rebuilding a single automaton after every register would cost
   * O(all forms) each time, quadratic when values arrive one by one between log lines. Instead,
   * like a binary counter, new forms become a small automaton, merged with the last one while
   * it is no larger: each form is rebuilt O(log n) times and a call scans at most
   * O(log n) automata.
   */
  const groups: Group[] = [];

  function register(value: string | Uint8Array): void {
    if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
      throw new TypeError(`register() takes a string or a Uint8Array, got ${typeof value}`);
    }
    if (value.length < minLength) return;
    const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : Buffer.from(value);
    const text = typeof value === 'string' ? value : decodeUtf8(bytes);
    const key = bytes.toString('base64');
    if (values.has(key)) return;
    values.add(key);
    for (const form of formsOf(bytes, text, minLength)) {
      if (known.has(form)) continue;
      known.add(form);
      pending.push(form);
    }
  }

  function build(): void {
    let patterns = pending;
    let chars = sumLengths(patterns);
    pending = [];
    while (groups.length > 0 && groups[groups.length - 1]!.chars <= chars) {
      const last = groups.pop()!;
      patterns = last.patterns.concat(patterns);
      chars += last.chars;
    }
    groups.push({ patterns, chars, automaton: buildAutomaton(patterns) });
  }

  function redact(text: string): string {
    if (pending.length > 0) build();
    if (text.length === 0) return text;
    // longest[e]: the longest registered form that ends just before index e, or 0.
    let longest: Int32Array | undefined;
    for (const { automaton } of groups) {
      longest = scan(automaton, text, longest);
    }
    const found: number[] = [];
    findPatternRanges(text, patternSet, found);
    if (longest === undefined && found.length === 0) return text;
    return replace(text, longest, found);
  }

  return {
    register,
    redact,
    get size() {
      return values.size;
    },
  };
}

interface Group {
  patterns: string[];
  chars: number;
  automaton: Automaton;
}

/**
 * An Aho–Corasick automaton over UTF-16 code units, in flat typed arrays of about 14 bytes a
 * node, where a map entry or an object per node would take several times that and build far
 * slower. Nodes are numbered breadth-first, so the children of node `n` are the nodes
 * `firstChild[n]` to `firstChild[n + 1] - 1`, in code-unit order, found by binary search.
 */
interface Automaton {
  firstChild: Int32Array;
  /** The code unit on the edge into each node. */
  unit: Uint16Array;
  /** The root's children by ASCII code unit, -1 where none: most steps of a scan start there. */
  rootAscii: Int32Array;
  /** The node for the longest proper suffix of this node's string that is also in the trie. */
  fail: Int32Array;
  /** The longest pattern that ends at this node, itself or through its fail chain; 0 if none. */
  output: Int32Array;
}

function buildAutomaton(input: readonly string[]): Automaton {
  // Inserted in code-unit order, each pattern shares a prefix with the one before it and adds
  // nodes only for the rest: the trie is built with no lookups, numbered depth-first, and each
  // node's children are created in code-unit order.
  const patterns = [...input].sort();
  let count = 1;
  let maxLength = 0;
  let previous = '';
  for (const pattern of patterns) {
    count += pattern.length - commonPrefix(previous, pattern);
    if (pattern.length > maxLength) maxLength = pattern.length;
    previous = pattern;
  }
  const parentDf = new Int32Array(count);
  const unitDf = new Uint16Array(count);
  const depthDf = new Int32Array(count);
  const ownDf = new Int32Array(count);
  const path = new Int32Array(maxLength + 1);
  let created = 1;
  previous = '';
  for (const pattern of patterns) {
    const shared = commonPrefix(previous, pattern);
    let node = path[shared]!;
    for (let d = shared; d < pattern.length; d++) {
      const next = created++;
      parentDf[next] = node;
      unitDf[next] = pattern.charCodeAt(d);
      depthDf[next] = d + 1;
      path[d + 1] = next;
      node = next;
    }
    ownDf[node] = pattern.length;
    previous = pattern;
  }

  // Renumber breadth-first with a stable counting sort on depth. Within one depth, nodes keep
  // their depth-first order, so siblings end up adjacent and in code-unit order, parents come
  // in increasing order, and the fail-link pass below reads every array front to back.
  const byDepth = new Int32Array(maxLength + 2);
  for (let node = 0; node < count; node++) byDepth[depthDf[node]! + 1]!++;
  for (let d = 1; d < byDepth.length; d++) byDepth[d]! += byDepth[d - 1]!;
  const renumbered = new Int32Array(count);
  for (let node = 0; node < count; node++) renumbered[node] = byDepth[depthDf[node]!]!++;
  const parent = new Int32Array(count);
  const unit = new Uint16Array(count);
  const own = new Int32Array(count);
  for (let node = 0; node < count; node++) {
    const id = renumbered[node]!;
    parent[id] = renumbered[parentDf[node]!]!;
    unit[id] = unitDf[node]!;
    own[id] = ownDf[node]!;
  }

  const firstChild = new Int32Array(count + 1);
  for (let node = 1; node < count; node++) firstChild[parent[node]! + 1]!++;
  firstChild[0] = 1;
  for (let node = 0; node < count; node++) firstChild[node + 1]! += firstChild[node]!;
  const rootAscii = new Int32Array(128).fill(-1);
  for (let node = firstChild[0]!; node < firstChild[1]!; node++) {
    if (unit[node]! < 128) rootAscii[unit[node]!] = node;
  }
  const automaton: Automaton = {
    firstChild,
    unit,
    rootAscii,
    fail: new Int32Array(count),
    output: new Int32Array(count),
  };

  // A node's fail link points to a shallower node, finished earlier in breadth-first order.
  const { fail, output } = automaton;
  for (let node = 1; node < count; node++) {
    const from = parent[node]!;
    let link = 0;
    if (from !== 0) {
      let state = fail[from]!;
      for (;;) {
        const next = step(automaton, state, unit[node]!);
        if (next !== -1) {
          link = next;
          break;
        }
        if (state === 0) break;
        state = fail[state]!;
      }
    }
    fail[node] = link;
    output[node] = Math.max(own[node]!, output[link]!);
  }
  return automaton;
}

/** The child of `node` along `code`, or -1. */
function step(automaton: Automaton, node: number, code: number): number {
  if (node === 0 && code < 128) return automaton.rootAscii[code]!;
  const { unit } = automaton;
  let low = automaton.firstChild[node]!;
  let high = automaton.firstChild[node + 1]! - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const found = unit[middle]!;
    if (found < code) low = middle + 1;
    else if (found > code) high = middle - 1;
    else return middle;
  }
  return -1;
}

function scan(
  automaton: Automaton,
  text: string,
  found: Int32Array | undefined,
): Int32Array | undefined {
  const { fail, output } = automaton;
  let longest = found;
  let state = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    for (;;) {
      const next = step(automaton, state, code);
      if (next !== -1) {
        state = next;
        break;
      }
      if (state === 0) break;
      state = fail[state]!;
    }
    const length = output[state]!;
    if (length > 0) {
      longest ??= new Int32Array(text.length + 1);
      if (length > longest[i + 1]!) longest[i + 1] = length;
    }
  }
  return longest;
}

/**
 * `text` with every registered form `longest` records, and every `[start, end)` pair in
 * `found`, replaced: overlapping matches become one `[REDACTED]`, back-to-back ones stay two.
 */
function replace(text: string, longest: Int32Array | undefined, found: number[]): string {
  // Merge overlapping matches into runs. Runs are closed in order of their end, but a longer
  // match ending later can reach back over several earlier runs, hence a stack.
  const runStarts: number[] = [];
  const runEnds: number[] = [];
  if (longest !== undefined) {
    for (let end = 1; end < longest.length; end++) {
      const length = longest[end]!;
      if (length === 0) continue;
      let start = end - length;
      while (runEnds.length > 0 && start < runEnds[runEnds.length - 1]!) {
        start = Math.min(start, runStarts.pop()!);
        runEnds.pop();
      }
      runStarts.push(start);
      runEnds.push(end);
    }
  }
  if (found.length > 0) mergeRanges(runStarts, runEnds, found);
  let result = '';
  let copied = 0;
  for (let i = 0; i < runStarts.length; i++) {
    result += text.slice(copied, runStarts[i]) + REDACTED;
    copied = runEnds[i]!;
  }
  return result + text.slice(copied);
}

/** Merges the `[start, end)` pairs of `found` into the sorted, disjoint runs, in place. */
function mergeRanges(runStarts: number[], runEnds: number[], found: number[]): void {
  const starts = runStarts.slice();
  const ends = runEnds.slice();
  for (let i = 0; i < found.length; i += 2) {
    starts.push(found[i]!);
    ends.push(found[i + 1]!);
  }
  const order = Array.from(starts.keys()).sort((a, b) => starts[a]! - starts[b]!);
  runStarts.length = 0;
  runEnds.length = 0;
  for (const index of order) {
    const start = starts[index]!;
    const end = ends[index]!;
    const last = runEnds.length - 1;
    if (last >= 0 && start < runEnds[last]!) {
      if (end > runEnds[last]!) runEnds[last] = end;
    } else {
      runStarts.push(start);
      runEnds.push(end);
    }
  }
}

function formsOf(bytes: Buffer, text: string | undefined, minLength: number): Set<string> {
  const forms = new Set<string>();
  if (text !== undefined) {
    forms.add(text);
    const json = JSON.stringify(text).slice(1, -1);
    forms.add(json);
    forms.add(JSON.stringify(json).slice(1, -1));
    try {
      forms.add(encodeURIComponent(text));
    } catch {
      // encodeURIComponent throws URIError on a lone surrogate: such a text never reaches a
      // URL through it, so there is no URL form to register.
    }
    forms.add(new URLSearchParams({ v: text }).toString().slice(2));
  }
  const base64 = bytes.toString('base64');
  const base64url = bytes.toString('base64url');
  forms.add(base64);
  forms.add(base64.replace(/=+$/, ''));
  forms.add(base64url);
  forms.add(base64url + '='.repeat((4 - (base64url.length % 4)) % 4));
  forms.add(bytes.toString('hex'));
  for (const form of shiftedBase64Forms(bytes)) {
    if (form.length >= MIN_SHIFTED_FORM_LENGTH) forms.add(form);
  }
  for (const form of forms) {
    if (form.length < minLength) forms.delete(form);
  }
  return forms;
}

/**
 * The characters that encode `bytes` whatever surrounds them inside a longer base64 text, for
 * each of the three byte alignments it can start at, in both alphabets. A base64 character
 * carries 6 bits; those mixing the value's bits with a neighbour's are left out.
 */
function shiftedBase64Forms(bytes: Buffer): string[] {
  const forms: string[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const padded = Buffer.concat([Buffer.alloc(shift), bytes]);
    const whole = Math.floor(padded.length / 3);
    const rest = padded.length % 3;
    const start = Math.ceil((8 * shift) / 6);
    const end = 4 * whole + Math.floor((8 * rest) / 6);
    if (end <= start) continue;
    forms.push(padded.toString('base64').slice(start, end));
    forms.push(padded.toString('base64url').slice(start, end));
  }
  return forms;
}

const UTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The text of `bytes`, or undefined when they are not valid UTF-8 (then only encoded forms apply). */
function decodeUtf8(bytes: Buffer): string | undefined {
  try {
    return UTF8.decode(bytes);
  } catch {
    // Not UTF-8: binary data is printed only encoded (base64, hex), and those forms are kept.
    return undefined;
  }
}

function commonPrefix(a: string, b: string): number {
  const limit = Math.min(a.length, b.length);
  let i = 0;
  while (i < limit && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  return i;
}

function sumLengths(strings: readonly string[]): number {
  let total = 0;
  for (const string of strings) total += string.length;
  return total;
}
