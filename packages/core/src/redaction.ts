import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
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

/**
 * Values of at least this many bytes are "large": instead of every encoded form, only an anchor
 * (the first characters of each form) goes into the matchers, and a candidate match is checked
 * against the value's forms computed on the fly. A form kept whole costs about 16 bytes a
 * character in the automaton, so a 700 KB value would otherwise hold some 150 MB.
 */
export const DEFAULT_REDACTION_LARGE_VALUE_BYTES = 1024;

/** The longest anchor of a large value's form, in characters. */
const MAX_ANCHOR_CHARS = 64;

/** Bytes of a large value encoded (or decoded) at a time when its forms are computed on the fly. */
const FORM_CHUNK_BYTES = 3 * 16_384;

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
  /**
   * Values of at least this many bytes (UTF-8) are matched by anchor and checked against the
   * value itself, costing about their own size; smaller ones are matched whole. Its third,
   * at most 64, is the anchor's length in characters. Lower it only to test the large path.
   * @default 1024 ({@link DEFAULT_REDACTION_LARGE_VALUE_BYTES})
   */
  largeValueBytes?: number;
}

/**
 * What holds a registered value in the redactor: {@link RedactionLease.release} when the holder
 * (a delivered container, a cache entry, a call in flight) no longer has the value.
 */
export interface RedactionLease {
  /** Gives the registration back; the value is forgotten when no lease holds it. Idempotent. */
  release(): void;
}

/** The redactor's own structures, for tests and metrics: never a value. */
export interface RedactorStats {
  /** Distinct values held. */
  values: number;
  /** Strings kept for matching: whole forms of small values and anchors of large ones. */
  forms: number;
  /** Their characters. */
  formChars: number;
  /** Bytes of large values kept (as Buffers, zeroed when released) to check candidates against. */
  heldBytes: number;
  /** Bytes of the matchers' typed arrays. */
  automatonBytes: number;
}

/**
 * Replaces known secret values in text with `[REDACTED]`.
 *
 * Lifetime: a value is kept while something holds it. {@link Redactor.register} returns a
 * lease, counted per distinct value; when the last lease is released the value is forgotten:
 * its forms leave the matchers (rebuilt at the next {@link Redactor.redact}) and the bytes kept
 * of a large value are zeroed. Strings cannot be zeroed: a small value's forms are strings until
 * the garbage collector reuses their memory, which is why large values keep only anchors.
 * A registration whose lease is never released lasts for the redactor's lifetime.
 */
export interface Redactor {
  /**
   * Registers a value: until its lease is released, {@link Redactor.redact} replaces it and its
   * encoded forms. A `Uint8Array` is copied; the caller may zero it afterwards. Values shorter
   * than `minLength` are ignored (their lease does nothing); registering a value again only
   * counts one more holder.
   */
  register(value: string | Uint8Array): RedactionLease;
  /** `text` with every occurrence of every registered form replaced by `[REDACTED]`. */
  redact(text: string): string;
  /** How many distinct values are registered. */
  readonly size: number;
  /** The sizes of what the redactor keeps, its matchers brought up to date first. */
  stats(): RedactorStats;
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
 * Aho–Corasick automata built lazily on the first `redact` after a change, so the cost of a
 * call grows with the text, not with the number of values. Where matches overlap, the whole
 * overlapping run becomes one `[REDACTED]`. A large value (`largeValueBytes`) costs about its
 * own size: its bytes, and a short anchor of each form in an automaton; where an anchor is
 * found, the form is computed chunk by chunk and compared with the text.
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
 * const lease = redactor.register('hunter2-s3cret');
 * redactor.redact('login hunter2-s3cret'); // 'login [REDACTED]'
 * redactor.redact('DB_PASSWORD=never-registered'); // 'DB_PASSWORD=[REDACTED]'
 * lease.release(); // nothing holds it any more: forgotten
 * @throws RangeError when `minLength` or `largeValueBytes` is not a positive integer
 * @throws TypeError when `patterns` names an unknown pattern
 */
export function createRedactor(options: RedactorOptions = {}): Redactor {
  const minLength = options.minLength ?? DEFAULT_REDACTION_MIN_LENGTH;
  if (!Number.isInteger(minLength) || minLength < 1) {
    throw new RangeError(`minLength must be a positive integer, got ${String(minLength)}`);
  }
  const largeValueBytes = options.largeValueBytes ?? DEFAULT_REDACTION_LARGE_VALUE_BYTES;
  if (!Number.isInteger(largeValueBytes) || largeValueBytes < 3) {
    throw new RangeError(
      `largeValueBytes must be an integer of at least 3, got ${String(largeValueBytes)}`,
    );
  }
  // Every form of a value of n bytes has at least n/3 characters (three UTF-8 bytes make one
  // UTF-16 code unit at most), so an anchor this long is a prefix of each.
  const anchorChars = Math.min(MAX_ANCHOR_CHARS, Math.floor(largeValueBytes / 3));
  const patternSet: PatternSet = compilePatterns(options.patterns ?? true);

  /** Each registered value by a digest of its bytes (never the bytes: a key outlives nothing). */
  const entries = new Map<string, Entry>();
  /** Every whole form of every small value, with how many values have it. */
  const known = new Map<string, number>();
  /** Anchors of large values' forms, and the forms they begin. */
  const anchors = new Map<string, Candidate[]>();
  let formChars = 0;
  let heldBytes = 0;
  /** Forms registered since the last build. */
  let pending: string[] = [];
  /** A form left `known` since the last build: the small-value matchers are rebuilt. */
  let stale = false;
  let anchorsChanged = false;
  let anchorAutomaton: Automaton | undefined;
  /**
   * The matchers, largest first. Rebuilding a single automaton after every register would cost
   * O(all forms) each time, quadratic when values arrive one by one between log lines. Instead,
   * like a binary counter, new forms become a small automaton, merged with the last one while
   * it is no larger: each form is rebuilt O(log n) times and a call scans at most
   * O(log n) automata. A release rebuilds them all once, at the next call.
   */
  let groups: Group[] = [];

  const NO_LEASE: RedactionLease = Object.freeze({ release() {} });

  function register(value: string | Uint8Array): RedactionLease {
    if (typeof value !== 'string' && !(value instanceof Uint8Array)) {
      throw new TypeError(`register() takes a string or a Uint8Array, got ${typeof value}`);
    }
    if (value.length < minLength) return NO_LEASE;
    // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool, so zeroing it
    // zeroes this copy of the value.
    const bytes =
      typeof value === 'string' ? ownCopy(Buffer.from(value, 'utf8'), true) : ownCopy(value, false);
    const key = createHash('sha256').update(bytes).digest('base64');
    let entry = entries.get(key);
    if (entry !== undefined) {
      bytes.fill(0);
      entry.holders += 1;
    } else if (bytes.byteLength >= largeValueBytes) {
      entry = addLarge(key, bytes, value);
    } else {
      entry = addSmall(key, bytes, value);
      bytes.fill(0);
    }
    const held = entry;
    let released = false;
    return {
      release() {
        if (released) return;
        released = true;
        held.holders -= 1;
        if (held.holders === 0) forget(held);
      },
    };
  }

  function addSmall(key: string, bytes: Buffer, value: string | Uint8Array): Entry {
    const text = typeof value === 'string' ? value : decodeUtf8(bytes);
    const forms = [...formsOf(bytes, text, minLength)];
    for (const form of forms) {
      const count = known.get(form) ?? 0;
      known.set(form, count + 1);
      if (count === 0) {
        pending.push(form);
        formChars += form.length;
      }
    }
    const entry: Entry = { key, holders: 1, forms, large: undefined };
    entries.set(key, entry);
    return entry;
  }

  function addLarge(key: string, bytes: Buffer, value: string | Uint8Array): Entry {
    // A string with a lone surrogate is not the UTF-8 it encodes to (that holds U+FFFD
    // instead): its text forms come from its own code units, kept as UTF-16.
    let text: Buffer | undefined;
    let textEncoding: 'utf8' | 'utf16le' = 'utf8';
    if (typeof value === 'string' && !isWellFormed(value)) {
      text = ownCopy(Buffer.from(value, 'utf16le'), true);
      textEncoding = 'utf16le';
    } else if (isUtf8(bytes)) {
      text = bytes;
    }
    const large: LargeValue = { bytes, text, textEncoding, candidates: [] };
    heldBytes += bytes.byteLength + (text !== undefined && text !== bytes ? text.byteLength : 0);
    for (const kind of formKinds(large)) {
      let anchor: string | undefined;
      try {
        anchor = firstChars(formChunks(large, kind), anchorChars);
      } catch {
        // No such form (a lone surrogate has no URL form): nothing to match.
        continue;
      }
      if (anchor === undefined) continue;
      const candidate: Candidate = {
        anchor,
        kind,
        value: large,
        minChars: minCharsOf(large, kind),
      };
      large.candidates.push(candidate);
      const list = anchors.get(anchor);
      if (list === undefined) {
        anchors.set(anchor, [candidate]);
        formChars += anchor.length;
      } else list.push(candidate);
    }
    anchorsChanged = true;
    const entry: Entry = { key, holders: 1, forms: [], large };
    entries.set(key, entry);
    return entry;
  }

  function forget(entry: Entry): void {
    entries.delete(entry.key);
    for (const form of entry.forms) {
      const count = known.get(form)!;
      if (count > 1) {
        known.set(form, count - 1);
        continue;
      }
      known.delete(form);
      formChars -= form.length;
      stale = true;
    }
    const large = entry.large;
    if (large === undefined) return;
    for (const candidate of large.candidates) {
      const list = anchors.get(candidate.anchor)!;
      const rest = list.filter((other) => other !== candidate);
      if (rest.length > 0) anchors.set(candidate.anchor, rest);
      else {
        anchors.delete(candidate.anchor);
        formChars -= candidate.anchor.length;
      }
    }
    heldBytes -= large.bytes.byteLength;
    if (large.text !== undefined && large.text !== large.bytes) {
      heldBytes -= large.text.byteLength;
      large.text.fill(0);
    }
    large.bytes.fill(0);
    large.candidates = [];
    anchorsChanged = true;
  }

  function build(): void {
    if (stale) {
      stale = false;
      groups = [];
      pending = [...known.keys()];
    }
    if (pending.length > 0) {
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
    if (anchorsChanged) {
      anchorsChanged = false;
      anchorAutomaton = anchors.size === 0 ? undefined : buildAutomaton([...anchors.keys()]);
    }
  }

  function redact(text: string): string {
    if (stale || pending.length > 0 || anchorsChanged) build();
    if (text.length === 0) return text;
    // longest[e]: the longest registered form that ends just before index e, or 0.
    let longest: Int32Array | undefined;
    for (const { automaton } of groups) {
      longest = scan(automaton, text, longest);
    }
    if (anchorAutomaton !== undefined) {
      const hits = scan(anchorAutomaton, text, undefined);
      if (hits !== undefined) longest = checkCandidates(text, hits, longest);
    }
    const found: number[] = [];
    findPatternRanges(text, patternSet, found);
    if (longest === undefined && found.length === 0) return text;
    return replace(text, longest, found);
  }

  /** Where an anchor ends, each form it begins compared with the text from there. */
  function checkCandidates(
    text: string,
    hits: Int32Array,
    found: Int32Array | undefined,
  ): Int32Array | undefined {
    let longest = found;
    for (let end = anchorChars; end < hits.length; end++) {
      if (hits[end] !== anchorChars) continue;
      const start = end - anchorChars;
      const candidates = anchors.get(text.slice(start, end));
      if (candidates === undefined) continue;
      for (const candidate of candidates) {
        // Most texts (a log line) are shorter than a large value's form: nothing to compute.
        if (text.length - start < candidate.minChars) continue;
        const length = matchLength(text, start, formChunks(candidate.value, candidate.kind));
        if (length <= 0) continue;
        longest ??= new Int32Array(text.length + 1);
        if (length > longest[start + length]!) longest[start + length] = length;
      }
    }
    return longest;
  }

  return {
    register,
    redact,
    get size() {
      return entries.size;
    },
    stats() {
      if (stale || pending.length > 0 || anchorsChanged) build();
      let automatonBytes = 0;
      for (const { automaton } of groups) automatonBytes += automatonSize(automaton);
      if (anchorAutomaton !== undefined) automatonBytes += automatonSize(anchorAutomaton);
      return {
        values: entries.size,
        forms: known.size + anchors.size,
        formChars,
        heldBytes,
        automatonBytes,
      };
    },
  };
}

/** One registered value: its holders, and what of it the matchers keep. */
interface Entry {
  key: string;
  holders: number;
  /** A small value's whole forms. */
  forms: string[];
  large: LargeValue | undefined;
}

/** A large value: its bytes, zeroed when forgotten, from which its forms are computed. */
interface LargeValue {
  bytes: Buffer;
  /** Its text as code units: `bytes` when valid UTF-8, UTF-16 for a string with a lone surrogate. */
  text: Buffer | undefined;
  textEncoding: 'utf8' | 'utf16le';
  candidates: Candidate[];
}

/** A large value's form, found by its anchor. */
interface Candidate {
  anchor: string;
  kind: FormKind;
  value: LargeValue;
  /** The fewest characters the form can have. */
  minChars: number;
}

/**
 * The fewest characters a form of `value` can have: exact for the byte encodings; for text, one
 * UTF-16 code unit per three UTF-8 bytes at best (escaping only adds).
 */
function minCharsOf(value: LargeValue, kind: FormKind): number {
  const n = value.bytes.byteLength;
  if (kind === 'hex') return 2 * n;
  if (kind === 'base64' || kind === 'base64url-padded') return paddedLength(n);
  if (kind === 'base64-unpadded' || kind === 'base64url') return unpaddedLength(n);
  if (kind.startsWith('shifted-')) return Math.max(0, unpaddedLength(n) - 2);
  return value.textEncoding === 'utf16le' ? value.text!.byteLength / 2 : Math.ceil(n / 3);
}

type FormKind =
  | 'text'
  | 'json'
  | 'json-twice'
  | 'url'
  | 'form'
  | 'base64'
  | 'base64-unpadded'
  | 'base64url'
  | 'base64url-padded'
  | 'hex'
  | `shifted-${0 | 1 | 2}-${'base64' | 'base64url'}`;

/** The forms of a large value: those {@link formsOf} gives a small one, as kinds. */
function formKinds(value: LargeValue): FormKind[] {
  const kinds: FormKind[] = [];
  if (value.text !== undefined) kinds.push('text', 'json', 'json-twice', 'url', 'form');
  kinds.push('base64', 'base64url', 'hex');
  // Only where they differ from the two above: padding exists when the length is not a
  // multiple of three.
  if (value.bytes.byteLength % 3 !== 0) kinds.push('base64-unpadded', 'base64url-padded');
  for (const shift of [0, 1, 2] as const) {
    kinds.push(`shifted-${shift}-base64`, `shifted-${shift}-base64url`);
  }
  return kinds;
}

/** One form of a large value, in pieces whose concatenation is the whole form. */
function* formChunks(value: LargeValue, kind: FormKind): Generator<string> {
  const { bytes } = value;
  const n = bytes.byteLength;
  switch (kind) {
    case 'text':
    case 'json':
    case 'json-twice':
    case 'url':
    case 'form': {
      const encode = TEXT_FORMS[kind];
      for (const piece of textChunks(value)) yield encode(piece);
      return;
    }
    case 'hex':
      for (let at = 0; at < n; at += FORM_CHUNK_BYTES) {
        yield bytes.toString('hex', at, Math.min(n, at + FORM_CHUNK_BYTES));
      }
      return;
    case 'base64':
      yield* window(base64Chunks(bytes, 0, 'base64'), 0, paddedLength(n));
      return;
    case 'base64-unpadded':
      yield* window(base64Chunks(bytes, 0, 'base64'), 0, unpaddedLength(n));
      return;
    case 'base64url':
      yield* window(base64Chunks(bytes, 0, 'base64url'), 0, unpaddedLength(n));
      return;
    case 'base64url-padded':
      yield* window(base64Chunks(bytes, 0, 'base64url'), 0, unpaddedLength(n));
      yield '='.repeat(paddedLength(n) - unpaddedLength(n));
      return;
    default: {
      // shifted-<shift>-<alphabet>: see shiftedBase64Forms, the same window over the base64 of
      // the value behind `shift` bytes of something else.
      const [, shiftText, alphabet] = kind.split('-') as [string, string, 'base64' | 'base64url'];
      const shift = Number(shiftText);
      const total = shift + n;
      const start = Math.ceil((8 * shift) / 6);
      const end = 4 * Math.floor(total / 3) + Math.floor((8 * (total % 3)) / 6);
      if (end - start < MIN_SHIFTED_FORM_LENGTH) return;
      yield* window(base64Chunks(bytes, shift, alphabet), start, end);
    }
  }
}

const TEXT_FORMS: Record<
  'text' | 'json' | 'json-twice' | 'url' | 'form',
  (text: string) => string
> = {
  text: (text) => text,
  json: (text) => JSON.stringify(text).slice(1, -1),
  'json-twice': (text) => JSON.stringify(JSON.stringify(text).slice(1, -1)).slice(1, -1),
  // Throws URIError on a lone surrogate: such a text has no URL form, and the comparison
  // that asked for it fails (see matchLength).
  url: (text) => encodeURIComponent(text),
  form: (text) => new URLSearchParams({ v: text }).toString().slice(2),
};

/** A large value's text in pieces, never splitting a surrogate pair (each form escapes per character). */
function* textChunks(value: LargeValue): Generator<string> {
  const source = value.text!;
  let carry = '';
  if (value.textEncoding === 'utf8') {
    const decoder = new TextDecoder('utf-8', { ignoreBOM: true });
    for (let at = 0; at < source.byteLength; at += FORM_CHUNK_BYTES) {
      const piece = source.subarray(at, Math.min(source.byteLength, at + FORM_CHUNK_BYTES));
      // stream: a character cut at the chunk's end waits for the next chunk.
      const text = decoder.decode(piece, { stream: at + FORM_CHUNK_BYTES < source.byteLength });
      if (text.length > 0) yield text;
    }
    return;
  }
  const unitsPerChunk = FORM_CHUNK_BYTES / 2;
  for (let at = 0; at < source.byteLength; at += 2 * unitsPerChunk) {
    let text =
      carry + source.toString('utf16le', at, Math.min(source.byteLength, at + 2 * unitsPerChunk));
    carry = '';
    const last = text.charCodeAt(text.length - 1);
    if (last >= 0xd800 && last <= 0xdbff && at + 2 * unitsPerChunk < source.byteLength) {
      carry = text.slice(-1);
      text = text.slice(0, -1);
    }
    if (text.length > 0) yield text;
  }
  if (carry.length > 0) yield carry;
}

/** The base64 (or base64url) of `shift` zero bytes followed by `bytes`, in pieces. */
function* base64Chunks(
  bytes: Buffer,
  shift: number,
  alphabet: 'base64' | 'base64url',
): Generator<string> {
  // Pieces of a multiple of three bytes encode to exactly the characters of the whole.
  const first = Math.min(bytes.byteLength, FORM_CHUNK_BYTES - shift);
  yield Buffer.concat([Buffer.alloc(shift), bytes.subarray(0, first)]).toString(alphabet);
  for (let at = first; at < bytes.byteLength; at += FORM_CHUNK_BYTES) {
    yield bytes.toString(alphabet, at, Math.min(bytes.byteLength, at + FORM_CHUNK_BYTES));
  }
}

/** Characters `start` to `end` of the concatenated pieces. */
function* window(pieces: Iterable<string>, start: number, end: number): Generator<string> {
  let at = 0;
  for (const piece of pieces) {
    const from = Math.max(0, start - at);
    const to = Math.min(piece.length, end - at);
    if (to > from) yield piece.slice(from, to);
    at += piece.length;
    if (at >= end) return;
  }
}

function paddedLength(n: number): number {
  return 4 * Math.ceil(n / 3);
}

function unpaddedLength(n: number): number {
  return 4 * Math.floor(n / 3) + (n % 3 === 0 ? 0 : (n % 3) + 1);
}

/** The first `count` characters of the pieces, or undefined when there are fewer. */
function firstChars(pieces: Iterable<string>, count: number): string | undefined {
  let result = '';
  for (const piece of pieces) {
    result += piece.slice(0, count - result.length);
    if (result.length === count) return result;
  }
  return undefined;
}

/** The length of the form if `text` holds all of it from `start`, else -1. */
function matchLength(text: string, start: number, pieces: Iterable<string>): number {
  let at = start;
  try {
    for (const piece of pieces) {
      if (!text.startsWith(piece, at)) return -1;
      at += piece.length;
    }
  } catch {
    // A form that does not exist for this value (no URL form for a lone surrogate) matches
    // nothing.
    return -1;
  }
  return at - start;
}

function automatonSize(automaton: Automaton): number {
  return (
    automaton.firstChild.byteLength +
    automaton.unit.byteLength +
    automaton.rootAscii.byteLength +
    automaton.fail.byteLength +
    automaton.output.byteLength
  );
}

/** A copy of `bytes` in memory of its own (see register), or `bytes` itself when already fresh. */
function ownCopy(bytes: Uint8Array, fresh: boolean): Buffer {
  if (fresh && bytes.byteLength > Buffer.poolSize >>> 1 && Buffer.isBuffer(bytes)) return bytes;
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength);
  copy.set(bytes);
  if (fresh) bytes.fill(0);
  return copy;
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

/** False when `text` holds a lone surrogate (String#isWellFormed, not in this project's lib yet). */
function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
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
