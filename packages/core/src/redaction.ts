import { isUtf8 } from 'node:buffer';
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
 * The anchor of a form: its first this many characters (all of it when shorter), whose hash is
 * looked up at every position of a text. Short, so that few forms are shorter (each shorter
 * length present costs one more pass over the text); shapes shared by many values' beginnings
 * (`-----BEGIN`, `ghp_`) are told apart by the check below before any form is computed.
 */
const ANCHOR_CHARS = 8;

/**
 * Where an anchor is found, a hash of the form's first this many characters (all of it when
 * shorter) is compared with the text's before the form itself is computed and compared.
 */
const CHECK_CHARS = 64;

/** Bytes of a value encoded (or decoded) at a time when its forms are computed. */
const FORM_CHUNK_BYTES = 3 * 16_384;

/** The fewest slots of the anchor table; it doubles above half full and halves below 1/8. */
const MIN_TABLE_SLOTS = 256;

/** The fewest form records the table keeps room for. */
const MIN_RECORDS = 16;

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
  /** Distinct forms of those values, each known by the hash of its anchor. */
  forms: number;
  /** Bytes of the values kept (zeroed when released), from which forms are computed on a hit. */
  heldBytes: number;
  /** Bytes of the anchor table and the forms' records (typed arrays). */
  tableBytes: number;
}

/**
 * Replaces known secret values in text with `[REDACTED]`.
 *
 * Lifetime: a value is kept while something holds it. {@link Redactor.register} returns a
 * lease, counted per distinct value; when the last lease is released the value is forgotten:
 * its forms leave the anchor table and the bytes kept of it are zeroed. The redactor keeps a
 * value only as bytes (and 32-bit hashes of its forms' beginnings), never as strings: a form is
 * computed as a string only for a moment, when its anchor is found in a text.
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
  /** The sizes of what the redactor keeps. */
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
 * Matching is exact and case-sensitive. The redactor keeps each value's bytes and, per form, a
 * 32-bit hash of its first 8 characters (its anchor) in one open-addressing table. `redact`
 * rolls a hash over every 8-character window of the text (one more pass per shorter form
 * length, which only values under 8 characters have) and looks each up; where an anchor is
 * found, a hash of up to the form's first 64 characters is compared, and only then is the form
 * computed from the value's bytes (chunk by chunk for a large value) and compared with the
 * text. So a call costs one pass over the text whatever the number of values, a value costs
 * its own bytes and a few hundred bytes more (under 1 KB in all for a 44-character token), and
 * registering or releasing one changes the table in place: nothing is rebuilt. Where matches overlap, the whole overlapping run becomes
 * one `[REDACTED]`.
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
 * @throws RangeError when `minLength` is not a positive integer
 * @throws TypeError when `patterns` names an unknown pattern
 */
export function createRedactor(options: RedactorOptions = {}): Redactor {
  const minLength = options.minLength ?? DEFAULT_REDACTION_MIN_LENGTH;
  if (!Number.isInteger(minLength) || minLength < 1) {
    throw new RangeError(`minLength must be a positive integer, got ${String(minLength)}`);
  }
  const patternSet: PatternSet = compilePatterns(options.patterns ?? true);

  /** Each held value by its id; an id is reused once its value is forgotten. */
  const values: Array<HeldValue | undefined> = [];
  const freeIds: number[] = [];
  let valueCount = 0;
  let heldBytes = 0;
  const table = new AnchorTable();

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
    const candidate: HeldValue = { id: -1, bytes, text, textEncoding, holders: 1, forms: [] };
    let held = find(candidate);
    if (held !== undefined) {
      held.holders += 1;
      zero(candidate);
    } else {
      held = add(candidate);
    }
    return new Lease(held, forget);
  }

  /** The held value equal to `value`, found through its hex form (every value has one). */
  function find(value: HeldValue): HeldValue | undefined {
    const anchor = anchorOf(value, 'hex');
    if (anchor === undefined) return undefined;
    let found: HeldValue | undefined;
    table.forEach(anchor.key, (ref) => {
      const other = values[ref >>> KIND_BITS]!;
      if (KINDS[ref & KIND_MASK] !== 'hex' || !sameValue(other, value)) return true;
      found = other;
      return false;
    });
    return found;
  }

  function add(value: HeldValue): HeldValue {
    const id = freeIds.pop() ?? values.length;
    value.id = id;
    values[id] = value;
    valueCount += 1;
    heldBytes += heldBytesOf(value);
    const kept: Array<{ kind: FormKind; start: string }> = [];
    for (const kind of formKinds(value)) {
      const anchor = anchorOf(value, kind);
      if (anchor === undefined) continue;
      // Forms of one value are often equal (the text and its JSON when nothing needs escaping):
      // one of them is enough. A start shorter than CHECK_CHARS is the whole form; longer
      // forms are compared whole only for a value of one chunk. Comparing a large value's
      // forms would cost passes over all of it (its duplicates cost a record each instead,
      // and their check runs only where their anchor is).
      const { start } = anchor;
      const same = kept.find(
        (other) =>
          other.start === start &&
          (start.length < CHECK_CHARS ||
            (value.bytes.byteLength <= FORM_CHUNK_BYTES &&
              byteFormLength(value, other.kind) === byteFormLength(value, kind) &&
              sameForm(value, other.kind, kind))),
      );
      if (same !== undefined) continue;
      kept.push({ kind, start });
      value.forms.push(table.add(anchor.key, (id << KIND_BITS) | KIND_INDEX[kind], anchor));
    }
    // Without the room pushing left for more: it is kept as long as the value.
    value.forms = value.forms.slice();
    return value;
  }

  /**
   * The anchor of one form of `value` (its first characters: a secret's, held for the moment
   * of registering), or undefined when it has no such form this long.
   */
  function anchorOf(value: HeldValue, kind: FormKind): (Anchor & { start: string }) | undefined {
    let start: string | undefined;
    try {
      start = firstChars(formChunks(value, kind), CHECK_CHARS);
    } catch {
      // No such form (a lone surrogate has no URL form): nothing to match.
      return undefined;
    }
    /** Whether the form has at least `count` characters (asked only when minLength > CHECK_CHARS). */
    const formReaches = (count: number): boolean => {
      let length = 0;
      for (const piece of formChunks(value, kind)) {
        length += piece.length;
        if (length >= count) return true;
      }
      return false;
    };
    if (start.length < minLength && (start.length < CHECK_CHARS || !formReaches(minLength))) {
      return undefined;
    }
    const window = Math.min(ANCHOR_CHARS, start.length);
    return {
      key: anchorKey(hashOf(start, 0, window), window),
      window,
      check: hashOf(start, 0, start.length),
      checkChars: start.length,
      start,
    };
  }

  function forget(value: HeldValue): void {
    for (const form of value.forms) table.remove(form);
    values[value.id] = undefined;
    freeIds.push(value.id);
    valueCount -= 1;
    heldBytes -= heldBytesOf(value);
    zero(value);
    value.forms = [];
    const moved = table.compact();
    if (moved === undefined) return;
    for (const held of values) {
      if (held !== undefined) held.forms = held.forms.map((form) => moved[form]!);
    }
  }

  function redact(text: string): string {
    if (text.length === 0) return text;
    let longest: Int32Array | undefined;
    if (table.size > 0) {
      for (const window of table.windows()) {
        longest = scan(text, window, longest);
      }
    }
    const found: number[] = [];
    findPatternRanges(text, patternSet, found);
    if (longest === undefined && found.length === 0) return text;
    return replace(text, longest, found);
  }

  /**
   * One pass of a rolling hash over every `window`-character run of `text`; where it is a
   * known anchor, each form it begins is checked. `longest[e]` is the longest form found that
   * ends just before index `e`, or 0.
   */
  function scan(
    text: string,
    window: number,
    found: Int32Array | undefined,
  ): Int32Array | undefined {
    const n = text.length;
    if (n < window) return found;
    let longest = found;
    const top = HASH_POWERS[window - 1]!;
    let hash = 0;
    for (let i = 0; i < window; i++) hash = (Math.imul(hash, HASH_BASE) + text.charCodeAt(i)) | 0;
    for (let start = 0; ; start++) {
      const head = table.head(anchorKey(hash, window));
      if (head !== 0) longest = check(text, start, window, head, longest);
      const next = start + window;
      if (next >= n) break;
      hash =
        (Math.imul((hash - Math.imul(text.charCodeAt(start), top)) | 0, HASH_BASE) +
          text.charCodeAt(next)) |
        0;
    }
    return longest;
  }

  /** The forms in the chain from `head` whose anchor window is `window`, compared at `start`. */
  function check(
    text: string,
    start: number,
    window: number,
    head: number,
    found: Int32Array | undefined,
  ): Int32Array | undefined {
    let longest = found;
    for (let form = head; form !== 0; form = table.next[form]!) {
      const checkChars = table.checkChars[form]!;
      if (Math.min(ANCHOR_CHARS, checkChars) !== window) continue;
      if (start + checkChars > text.length) continue;
      if (hashOf(text, start, start + checkChars) !== table.check[form]) continue;
      const ref = table.ref[form]!;
      const value = values[ref >>> KIND_BITS]!;
      const kind = KINDS[ref & KIND_MASK]!;
      // Most texts (a log line) are shorter than a large value's form: nothing to compute.
      if (text.length - start < minCharsOf(value, kind)) continue;
      const length = matchLength(text, start, formChunks(value, kind));
      if (length <= 0) continue;
      longest ??= new Int32Array(text.length + 1);
      if (length > longest[start + length]!) longest[start + length] = length;
    }
    return longest;
  }

  return {
    register,
    redact,
    get size() {
      return valueCount;
    },
    stats() {
      return { values: valueCount, forms: table.size, heldBytes, tableBytes: table.bytes() };
    },
  };
}

/**
 * A lease: two fields, where a closure per lease would hold a context too (a delivered
 * container holds one lease per file, for as long as it runs).
 */
class Lease implements RedactionLease {
  #value: HeldValue | undefined;
  readonly #forget: (value: HeldValue) => void;

  constructor(value: HeldValue, forget: (value: HeldValue) => void) {
    this.#value = value;
    this.#forget = forget;
  }

  /**
   * A function made at each read, so `lease.release` passed on alone (`onDispose(lease.release)`)
   * still releases this lease: a method would lose its `this`, and binding one per lease would
   * hold a closure for the lease's whole life.
   */
  get release(): () => void {
    return () => this.#release();
  }

  #release(): void {
    const value = this.#value;
    if (value === undefined) return;
    this.#value = undefined;
    value.holders -= 1;
    if (value.holders === 0) this.#forget(value);
  }
}

/** One held value: its bytes, zeroed when forgotten, from which its forms are computed. */
interface HeldValue {
  id: number;
  bytes: Buffer;
  /** Its text as code units: `bytes` when valid UTF-8, UTF-16 for a string with a lone surrogate. */
  text: Buffer | undefined;
  textEncoding: 'utf8' | 'utf16le';
  holders: number;
  /** Its forms' records in the anchor table. */
  forms: number[];
}

function heldBytesOf(value: HeldValue): number {
  const { bytes, text } = value;
  return bytes.byteLength + (text !== undefined && text !== bytes ? text.byteLength : 0);
}

function zero(value: HeldValue): void {
  value.bytes.fill(0);
  if (value.text !== undefined && value.text !== value.bytes) value.text.fill(0);
}

function sameValue(a: HeldValue, b: HeldValue): boolean {
  if (!a.bytes.equals(b.bytes) || a.textEncoding !== b.textEncoding) return false;
  if (a.textEncoding === 'utf8') return true;
  return a.text!.equals(b.text!);
}

/** Two forms of one value compared chunk by chunk (their pieces need not line up). */
function sameForm(value: HeldValue, a: FormKind, b: FormKind): boolean {
  const left = formChunks(value, a)[Symbol.iterator]();
  const right = formChunks(value, b)[Symbol.iterator]();
  let x = '';
  let y = '';
  for (;;) {
    if (x.length === 0) {
      const piece = left.next();
      if (!piece.done) {
        x = piece.value;
        continue;
      }
    }
    if (y.length === 0) {
      const piece = right.next();
      if (!piece.done) {
        y = piece.value;
        continue;
      }
    }
    if (x.length === 0 || y.length === 0) return x.length === 0 && y.length === 0;
    const length = Math.min(x.length, y.length);
    if (x.slice(0, length) !== y.slice(0, length)) return false;
    x = x.slice(length);
    y = y.slice(length);
  }
}

/** Where a form is looked up: the hash of its anchor, and the hash of its first characters. */
interface Anchor {
  /** The anchor's hash, mixed with its window (see {@link anchorKey}). */
  key: number;
  /** The anchor's length: {@link ANCHOR_CHARS}, or the whole form when shorter. */
  window: number;
  /** The hash of the form's first `checkChars` characters. */
  check: number;
  /** {@link CHECK_CHARS}, or the whole form when shorter. */
  checkChars: number;
}

// A polynomial hash over UTF-16 code units, modulo 2^32, rolled one code unit at a time.
const HASH_BASE = 0x01000193;
const HASH_POWERS = Int32Array.from({ length: CHECK_CHARS + 1 }, (_, n) => {
  let power = 1;
  for (let i = 0; i < n; i++) power = Math.imul(power, HASH_BASE);
  return power;
});

/** The hash of `text` from `start` to `end`, as {@link createRedactor}'s scan rolls it. */
function hashOf(text: string, start: number, end: number): number {
  let hash = 0;
  for (let i = start; i < end; i++) hash = (Math.imul(hash, HASH_BASE) + text.charCodeAt(i)) | 0;
  return hash;
}

/** The table's key for an anchor: its hash mixed with its length, so windows do not collide. */
function anchorKey(hash: number, window: number): number {
  return (hash ^ Math.imul(window, 0x5bd1e995)) | 0;
}

/**
 * Every form of every held value, by the hash of its anchor: an open-addressing table of
 * distinct keys (linear probing, deletion by backward shift), each slot the head of a chain of
 * form records in flat typed arrays. No strings and no object per form, and a register or a
 * release changes it in place: there is nothing to rebuild. Form record 0 is unused (0 ends a
 * chain and marks an empty slot).
 */
class AnchorTable {
  /** Distinct forms held. */
  size = 0;
  private keys = new Int32Array(MIN_TABLE_SLOTS);
  /** The first form record of each slot's chain, 0 for an empty slot. */
  private heads = new Int32Array(MIN_TABLE_SLOTS);
  private used = 0;
  private shift = 32 - Math.log2(MIN_TABLE_SLOTS);
  /** Per form record: the next in its chain (or the next free record), its value and kind. */
  next = new Int32Array(MIN_RECORDS);
  ref = new Int32Array(MIN_RECORDS);
  key = new Int32Array(MIN_RECORDS);
  check = new Int32Array(MIN_RECORDS);
  checkChars = new Uint8Array(MIN_RECORDS);
  private freeRecord = 0;
  private records = 1;
  /** How many forms have each anchor window (1 to {@link ANCHOR_CHARS}). */
  private perWindow = new Int32Array(ANCHOR_CHARS + 1);
  private windowList: number[] = [];

  /** The anchor windows some form has: one pass over a text each. */
  windows(): readonly number[] {
    return this.windowList;
  }

  /** The first form record whose anchor has this key, or 0. */
  head(key: number): number {
    const { keys, heads } = this;
    const mask = keys.length - 1;
    for (let slot = Math.imul(key, 0x9e3779b1) >>> this.shift; ; slot = (slot + 1) & mask) {
      const head = heads[slot]!;
      if (head === 0 || keys[slot] === key) return head;
    }
  }

  /** Calls `visit` with the ref of each form whose anchor has this key, until it returns false. */
  forEach(key: number, visit: (ref: number) => boolean): void {
    for (let form = this.head(key); form !== 0; form = this.next[form]!) {
      if (!visit(this.ref[form]!)) return;
    }
  }

  /** Adds a form; returns its record, for {@link AnchorTable.remove}. */
  add(key: number, ref: number, anchor: Anchor): number {
    if (2 * (this.used + 1) > this.keys.length) this.resize(2 * this.keys.length);
    let form = this.freeRecord;
    if (form !== 0) this.freeRecord = this.next[form]!;
    else {
      if (this.records === this.next.length) this.growRecords();
      form = this.records++;
    }
    this.ref[form] = ref;
    this.key[form] = key;
    this.check[form] = anchor.check;
    this.checkChars[form] = anchor.checkChars;
    const slot = this.slotOf(key);
    if (this.heads[slot] === 0) {
      this.keys[slot] = key;
      this.used += 1;
    }
    this.next[form] = this.heads[slot]!;
    this.heads[slot] = form;
    this.size += 1;
    if (this.perWindow[anchor.window]!++ === 0) this.listWindows();
    return form;
  }

  remove(form: number): void {
    const key = this.key[form]!;
    const slot = this.slotOf(key);
    if (this.heads[slot] === form) this.heads[slot] = this.next[form]!;
    else {
      let before = this.heads[slot]!;
      while (this.next[before] !== form) before = this.next[before]!;
      this.next[before] = this.next[form]!;
    }
    if (this.heads[slot] === 0) this.vacate(slot);
    const window = Math.min(ANCHOR_CHARS, this.checkChars[form]!);
    if (--this.perWindow[window]! === 0) this.listWindows();
    this.ref[form] = 0;
    this.key[form] = 0;
    this.check[form] = 0;
    this.checkChars[form] = 0;
    this.next[form] = this.freeRecord;
    this.freeRecord = form;
    this.size -= 1;
    if (this.size === 0) this.reset();
    else if (8 * this.used < this.keys.length && this.keys.length > MIN_TABLE_SLOTS) {
      this.resize(this.keys.length / 2);
    }
  }

  /**
   * Packs the form records when at most a quarter of them is in use (after many releases), so
   * the table shrinks back with what is held. Returns where each record went (0: freed), or
   * undefined when nothing moved.
   */
  compact(): Int32Array | undefined {
    const capacity = this.next.length;
    if (capacity <= MIN_RECORDS || 4 * (this.size + 1) > capacity) return undefined;
    let target = MIN_RECORDS;
    while (target < this.size + 1) target *= 2;
    const moved = new Int32Array(capacity);
    let to = 1;
    for (let form = 1; form < this.records; form++) {
      // A record in use has a check of at least one character.
      if (this.checkChars[form] !== 0) moved[form] = to++;
    }
    const next = new Int32Array(target);
    const ref = new Int32Array(target);
    const key = new Int32Array(target);
    const check = new Int32Array(target);
    const checkChars = new Uint8Array(target);
    for (let form = 1; form < this.records; form++) {
      const at = moved[form]!;
      if (at === 0) continue;
      next[at] = moved[this.next[form]!]!;
      ref[at] = this.ref[form]!;
      key[at] = this.key[form]!;
      check[at] = this.check[form]!;
      checkChars[at] = this.checkChars[form]!;
    }
    for (let slot = 0; slot < this.heads.length; slot++) {
      if (this.heads[slot] !== 0) this.heads[slot] = moved[this.heads[slot]!]!;
    }
    Object.assign(this, { next, ref, key, check, checkChars });
    this.records = to;
    this.freeRecord = 0;
    return moved;
  }

  bytes(): number {
    return (
      this.keys.byteLength +
      this.heads.byteLength +
      this.next.byteLength +
      this.ref.byteLength +
      this.key.byteLength +
      this.check.byteLength +
      this.checkChars.byteLength
    );
  }

  /** The slot holding `key`, or the empty slot where it belongs. */
  private slotOf(key: number): number {
    const { keys, heads } = this;
    const mask = keys.length - 1;
    for (let slot = Math.imul(key, 0x9e3779b1) >>> this.shift; ; slot = (slot + 1) & mask) {
      if (heads[slot] === 0 || keys[slot] === key) return slot;
    }
  }

  /** Empties a slot, moving back the entries after it that could not sit in their own. */
  private vacate(hole: number): void {
    const { keys, heads } = this;
    const mask = keys.length - 1;
    this.used -= 1;
    let empty = hole;
    for (let slot = (empty + 1) & mask; heads[slot] !== 0; slot = (slot + 1) & mask) {
      const home = Math.imul(keys[slot]!, 0x9e3779b1) >>> this.shift;
      // The entry stays when its home lies cyclically in (empty, slot].
      const stays = empty < slot ? empty < home && home <= slot : empty < home || home <= slot;
      if (stays) continue;
      keys[empty] = keys[slot]!;
      heads[empty] = heads[slot]!;
      empty = slot;
    }
    keys[empty] = 0;
    heads[empty] = 0;
  }

  private resize(slots: number): void {
    const oldKeys = this.keys;
    const oldHeads = this.heads;
    this.keys = new Int32Array(slots);
    this.heads = new Int32Array(slots);
    this.shift = 32 - Math.log2(slots);
    for (let slot = 0; slot < oldKeys.length; slot++) {
      if (oldHeads[slot] === 0) continue;
      const to = this.slotOf(oldKeys[slot]!);
      this.keys[to] = oldKeys[slot]!;
      this.heads[to] = oldHeads[slot]!;
    }
  }

  private growRecords(): void {
    const grow = <T extends Int32Array | Uint8Array>(array: T): T => {
      const bigger = new (array.constructor as new (length: number) => T)(2 * array.length);
      bigger.set(array);
      return bigger;
    };
    this.next = grow(this.next);
    this.ref = grow(this.ref);
    this.key = grow(this.key);
    this.check = grow(this.check);
    this.checkChars = grow(this.checkChars);
  }

  /** Back to an empty table of the fewest slots (every form released). */
  private reset(): void {
    this.keys = new Int32Array(MIN_TABLE_SLOTS);
    this.heads = new Int32Array(MIN_TABLE_SLOTS);
    this.shift = 32 - Math.log2(MIN_TABLE_SLOTS);
    this.used = 0;
    this.next = new Int32Array(MIN_RECORDS);
    this.ref = new Int32Array(MIN_RECORDS);
    this.key = new Int32Array(MIN_RECORDS);
    this.check = new Int32Array(MIN_RECORDS);
    this.checkChars = new Uint8Array(MIN_RECORDS);
    this.freeRecord = 0;
    this.records = 1;
  }

  private listWindows(): void {
    this.windowList = [];
    for (let window = ANCHOR_CHARS; window >= 1; window--) {
      if (this.perWindow[window]! > 0) this.windowList.push(window);
    }
  }
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

/** Every kind, by the index a form record keeps in its low {@link KIND_BITS} bits. */
const KINDS: readonly FormKind[] = [
  'hex',
  'text',
  'json',
  'json-twice',
  'url',
  'form',
  'base64',
  'base64-unpadded',
  'base64url',
  'base64url-padded',
  'shifted-0-base64',
  'shifted-0-base64url',
  'shifted-1-base64',
  'shifted-1-base64url',
  'shifted-2-base64',
  'shifted-2-base64url',
];
const KIND_BITS = 4;
const KIND_MASK = (1 << KIND_BITS) - 1;
const KIND_INDEX = Object.fromEntries(KINDS.map((kind, index) => [kind, index])) as Record<
  FormKind,
  number
>;

/**
 * The forms of a value, as kinds. Hex first: every value has it and no other form equals it,
 * so it is never dropped as a duplicate and finds an already held value (see `find`).
 */
function formKinds(value: HeldValue): FormKind[] {
  const kinds: FormKind[] = ['hex'];
  if (value.text !== undefined) kinds.push('text', 'json', 'json-twice', 'url', 'form');
  kinds.push('base64', 'base64url');
  // Only where they differ from the two above: padding exists when the length is not a
  // multiple of three.
  if (value.bytes.byteLength % 3 !== 0) kinds.push('base64-unpadded', 'base64url-padded');
  for (const shift of [0, 1, 2] as const) {
    kinds.push(`shifted-${shift}-base64`, `shifted-${shift}-base64url`);
  }
  return kinds;
}

/**
 * The exact length of a byte encoding of `value` (hex, base64 and its variants), or -1 for a
 * text form, whose length depends on its characters. Two forms are compared (to keep one of
 * them) only when this is equal for both: skipping a comparison can only keep a duplicate,
 * never lose a form.
 */
function byteFormLength(value: HeldValue, kind: FormKind): number {
  const n = value.bytes.byteLength;
  if (kind === 'hex') return 2 * n;
  if (kind === 'base64' || kind === 'base64url-padded') return paddedLength(n);
  if (kind === 'base64-unpadded' || kind === 'base64url') return unpaddedLength(n);
  if (kind.startsWith('shifted-')) {
    const shift = Number(kind.split('-')[1]);
    const total = shift + n;
    const start = Math.ceil((8 * shift) / 6);
    return 4 * Math.floor(total / 3) + Math.floor((8 * (total % 3)) / 6) - start;
  }
  return -1;
}

/**
 * The fewest characters a form of `value` can have: exact for the byte encodings; for text, one
 * UTF-16 code unit per three UTF-8 bytes at best (escaping only adds).
 */
function minCharsOf(value: HeldValue, kind: FormKind): number {
  const n = value.bytes.byteLength;
  if (kind === 'hex') return 2 * n;
  if (kind === 'base64' || kind === 'base64url-padded') return paddedLength(n);
  if (kind === 'base64-unpadded' || kind === 'base64url') return unpaddedLength(n);
  if (kind.startsWith('shifted-')) return Math.max(0, unpaddedLength(n) - 2);
  return value.textEncoding === 'utf16le' ? value.text!.byteLength / 2 : Math.ceil(n / 3);
}

/** One form of a value, in pieces whose concatenation is the whole form. */
function* formChunks(value: HeldValue, kind: FormKind): Generator<string> {
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
      // shifted-<shift>-<alphabet>: the characters that encode the value whatever surrounds it
      // inside a longer base64 text, when it starts `shift` bytes into a group of three. A
      // base64 character carries 6 bits; those mixing the value's bits with a neighbour's are
      // left out.
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
  // What URLSearchParams writes (application/x-www-form-urlencoded), built from
  // encodeURIComponent: a URLSearchParams per form costs some 20 µs, this about 1.
  form: (text) =>
    encodeURIComponent(toWellFormed(text))
      .replace(/[!'()~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`)
      .replace(/%20/g, '+'),
};

/** A value's text in pieces, never splitting a surrogate pair (each form escapes per character). */
function* textChunks(value: HeldValue): Generator<string> {
  const source = value.text!;
  let carry = '';
  // Most values fit one piece: decoded at once (a TextDecoder costs some 20 µs to make).
  if (source.byteLength <= FORM_CHUNK_BYTES) {
    yield source.toString(value.textEncoding);
    return;
  }
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

/** The first `count` characters of the pieces (all of them when there are fewer). */
function firstChars(pieces: Iterable<string>, count: number): string {
  let result = '';
  for (const piece of pieces) {
    result += piece.slice(0, count - result.length);
    if (result.length === count) break;
  }
  return result;
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

/** A copy of `bytes` in memory of its own (see register), or `bytes` itself when already fresh. */
function ownCopy(bytes: Uint8Array, fresh: boolean): Buffer {
  if (fresh && bytes.byteLength > Buffer.poolSize >>> 1 && Buffer.isBuffer(bytes)) return bytes;
  const copy = Buffer.allocUnsafeSlow(bytes.byteLength);
  copy.set(bytes);
  if (fresh) bytes.fill(0);
  return copy;
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

/** `text` with each lone surrogate replaced by U+FFFD (String#toWellFormed, not in this project's lib yet). */
function toWellFormed(text: string): string {
  return (text as unknown as { toWellFormed(): string }).toWellFormed();
}

/** False when `text` holds a lone surrogate (String#isWellFormed, not in this project's lib yet). */
function isWellFormed(text: string): boolean {
  return (text as unknown as { isWellFormed(): boolean }).isWellFormed();
}
