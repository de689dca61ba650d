import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRedactor, DEFAULT_REDACTION_MIN_LENGTH, REDACTED } from './redaction.js';

/** How a value can be written where a log line picks it up. */
const ENCODINGS = {
  raw: (value: string) => value,
  json: (value: string) => JSON.stringify(value).slice(1, -1),
  'json twice': (value: string) => JSON.stringify(JSON.stringify(value).slice(1, -1)).slice(1, -1),
  url: (value: string) => {
    try {
      return encodeURIComponent(value);
    } catch {
      // A lone surrogate has no URL form (URIError): write it raw instead.
      return value;
    }
  },
  form: (value: string) => new URLSearchParams({ v: value }).toString().slice(2),
  base64: (value: string) => Buffer.from(value).toString('base64'),
  'base64 unpadded': (value: string) => Buffer.from(value).toString('base64').replace(/=+$/, ''),
  base64url: (value: string) => Buffer.from(value).toString('base64url'),
  hex: (value: string) => Buffer.from(value).toString('hex'),
} as const;
type Encoding = keyof typeof ENCODINGS;
const encoding = fc.constantFrom(...(Object.keys(ENCODINGS) as Encoding[]));

// Values of any Unicode, at least the minimum length; filler of any Unicode, and of the
// characters the encodings produce, so that a value's form can run into its neighbours.
const value = fc.string({ unit: 'binary', minLength: DEFAULT_REDACTION_MIN_LENGTH, maxLength: 20 });
const filler = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.string({ unit: fc.constantFrom(...'aZ09+/=-_%\\"u '), maxLength: 8 }),
);

// The default, and every form short enough to be matched whole by a window shorter than the
// anchor (a pass per length): both ways of finding a form must be as thorough.
describe.each([
  ['the default minimum length', {}],
  ['minLength 1', { minLength: 1 }],
] as const)('createRedactor with %s, by property', (_, options) => {
  it('leaves no registered value, in any encoded form, anywhere in the text it returns', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(value, { minLength: 1, maxLength: 5 }),
        fc.array(fc.tuple(filler, fc.nat(), encoding), { minLength: 1, maxLength: 8 }),
        filler,
        (values, pieces, tail) => {
          const redactor = createRedactor(options);
          for (const v of values) redactor.register(v);
          const embedded = new Set<string>();
          let text = '';
          for (const [before, index, how] of pieces) {
            const form = ENCODINGS[how](values[index % values.length]!);
            embedded.add(form);
            text += before + form;
          }
          text += tail;

          const redacted = redactor.redact(text);
          // What is not a marker is text kept from the input: none of it may hold a form.
          // (A value such as "DACT" occurs in the marker itself, hence the split.)
          for (const kept of redacted.split(REDACTED)) {
            for (const form of embedded) expect(kept).not.toContain(form);
            for (const v of values) expect(kept).not.toContain(v);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('leaves no registered value in a JSON log line, and the line stays JSON', () => {
    // A value holding `"` or `\\` could, as raw text, match a line's own JSON punctuation and
    // take it away with it: the value is still gone, but the line is no longer JSON.
    const plain = value.filter((v) => !/["\\]/.test(v));
    fc.assert(
      fc.property(
        plain,
        fc.dictionary(fc.string({ maxLength: 8 }), fc.string({ unit: 'binary', maxLength: 12 })),
        fc.nat(),
        (secret, fields, at) => {
          const redactor = createRedactor(options);
          redactor.register(secret);
          const keys = Object.keys(fields);
          const record: Record<string, string> = { ...fields, msg: `value ${secret} in a message` };
          if (keys.length > 0) {
            const key = keys[at % keys.length]!;
            record[key] = `${fields[key]}${secret}${fields[key]}`;
          }
          const line = JSON.stringify(record);
          const redacted = redactor.redact(line);
          const parsed = JSON.parse(redacted) as Record<string, string>;
          for (const field of Object.values(parsed)) {
            for (const kept of field.split(REDACTED)) expect(kept).not.toContain(secret);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

/** How bytes are written: their own base64 or hex, or their text (when it decodes) encoded. */
function embed(v: string | Uint8Array, how: Encoding): string {
  if (typeof v === 'string') return ENCODINGS[how](v);
  const bytes = Buffer.from(v);
  if (how === 'base64' || how === 'base64url' || how === 'hex') return bytes.toString(how);
  if (how === 'base64 unpadded') return bytes.toString('base64').replace(/=+$/, '');
  return ENCODINGS[how](new TextDecoder().decode(bytes));
}

/**
 * Every form the redactor promises for `v`, written out whole with Node's own encoders: the
 * oracle the redactor (anchors, hashes, forms computed on a hit) is compared with.
 */
function formsOf(v: string | Uint8Array, minLength: number): Set<string> {
  const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);
  let text: string | undefined;
  if (typeof v === 'string') text = v;
  else {
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
    } catch {
      // Not UTF-8: only the byte encodings apply.
    }
  }
  const forms = new Set<string>();
  if (text !== undefined) {
    const json = JSON.stringify(text).slice(1, -1);
    forms.add(text).add(json).add(JSON.stringify(json).slice(1, -1));
    try {
      forms.add(encodeURIComponent(text));
    } catch {
      // A lone surrogate has no URL form.
    }
    forms.add(new URLSearchParams({ v: text }).toString().slice(2));
  }
  const base64 = bytes.toString('base64');
  const base64url = bytes.toString('base64url');
  forms.add(base64).add(base64.replace(/=+$/, '')).add(base64url).add(bytes.toString('hex'));
  forms.add(base64url + '='.repeat((4 - (base64url.length % 4)) % 4));
  // Inside longer base64 at each alignment: the characters that depend on the value alone.
  for (let shift = 0; shift < 3; shift++) {
    const padded = Buffer.concat([Buffer.alloc(shift), bytes]);
    const start = Math.ceil((8 * shift) / 6);
    const end = 4 * Math.floor(padded.length / 3) + Math.floor((8 * (padded.length % 3)) / 6);
    for (const alphabet of ['base64', 'base64url'] as const) {
      const form = padded.toString(alphabet).slice(start, end);
      if (form.length >= 8) forms.add(form);
    }
  }
  return new Set([...forms].filter((form) => form.length >= minLength));
}

/** `text` with every occurrence of every form replaced, overlapping ones as one run: by brute force. */
function oracle(text: string, forms: ReadonlySet<string>): string {
  const longest = new Array<number>(text.length + 1).fill(0);
  for (const form of forms) {
    for (let at = text.indexOf(form); at !== -1; at = text.indexOf(form, at + 1)) {
      longest[at + form.length] = Math.max(longest[at + form.length]!, form.length);
    }
  }
  const runs: Array<[number, number]> = [];
  for (let end = 1; end <= text.length; end++) {
    if (longest[end] === 0) continue;
    let start = end - longest[end]!;
    while (runs.length > 0 && start < runs[runs.length - 1]![1]) {
      start = Math.min(start, runs.pop()![0]);
    }
    runs.push([start, end]);
  }
  let result = '';
  let copied = 0;
  for (const [start, end] of runs) {
    result += text.slice(copied, start) + REDACTED;
    copied = end;
  }
  return result + text.slice(copied);
}

describe('createRedactor against every form written out whole', () => {
  const anyValue = fc.oneof(
    value,
    fc.uint8Array({ minLength: DEFAULT_REDACTION_MIN_LENGTH, maxLength: 20 }),
    // Values that share their first characters, so that anchors (and their checks) collide.
    fc
      .string({ unit: fc.constantFrom('a', 'b'), minLength: 0, maxLength: 6 })
      .map((end) => `-----BEGIN KEY-----${end}`),
  );

  it.each([
    ['the default minimum length', DEFAULT_REDACTION_MIN_LENGTH],
    ['minLength 1', 1],
  ])('gives exactly what a brute-force search for each form gives, with %s', (_, minLength) => {
    fc.assert(
      fc.property(
        fc.array(anyValue, { minLength: 1, maxLength: 4 }),
        fc.array(fc.tuple(filler, fc.nat(), encoding, fc.nat({ max: 2 })), {
          minLength: 1,
          maxLength: 6,
        }),
        fc.nat(),
        fc.nat(),
        (values, pieces, cut, released) => {
          const redactor = createRedactor({ patterns: false, minLength });
          const leases = values.map((v) => redactor.register(v));
          // One value (and each copy of it) released again: its forms must go, the others stay.
          const gone = values[released % values.length]!;
          const same = (v: string | Uint8Array) =>
            typeof v === typeof gone && Buffer.from(v).equals(Buffer.from(gone));
          values.forEach((v, index) => {
            if (same(v)) leases[index]!.release();
          });
          const forms = new Set<string>();
          for (const v of values) {
            if (v.length >= minLength && !same(v)) {
              for (const form of formsOf(v, minLength)) forms.add(form);
            }
          }
          let text = '';
          for (const [before, index, how, shift] of pieces) {
            const v = values[index % values.length]!;
            // Inside longer base64 (as HTTP Basic credentials), `shift` bytes into a group.
            const inside = Buffer.concat([Buffer.from('u:'.slice(0, shift)), Buffer.from(v)]);
            text += before + (shift > 0 ? inside.toString('base64') : embed(v, how));
          }
          // Also cut short, so that forms end mid-way.
          for (const sample of [text, text.slice(0, cut % (text.length + 1))]) {
            expect(redactor.redact(sample)).toBe(oracle(sample, forms));
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
