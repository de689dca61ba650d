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

// Every value large (matched by anchor, checked against its bytes), with anchors of two
// characters that turn up everywhere: the large path must be exactly as thorough.
describe.each([
  ['whole forms', {}],
  ['large values', { largeValueBytes: 6 }],
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

describe('createRedactor, large values by anchor', () => {
  it('gives exactly what whole forms give, for any values (bytes and strings) and any text', () => {
    const anyValue = fc.oneof(
      value,
      fc.uint8Array({ minLength: DEFAULT_REDACTION_MIN_LENGTH, maxLength: 20 }),
    );
    fc.assert(
      fc.property(
        fc.array(anyValue, { minLength: 1, maxLength: 4 }),
        fc.array(fc.tuple(filler, fc.nat(), encoding), { minLength: 1, maxLength: 6 }),
        fc.nat(),
        (values, pieces, cut) => {
          const whole = createRedactor({ patterns: false });
          const anchored = createRedactor({ patterns: false, largeValueBytes: 6 });
          for (const v of values) {
            whole.register(v);
            anchored.register(v);
          }
          let text = '';
          for (const [before, index, how] of pieces) {
            const v = values[index % values.length]!;
            text += before + embed(v, how);
          }
          // Also cut short, so that forms end mid-way.
          for (const sample of [text, text.slice(0, cut % (text.length + 1))]) {
            expect(anchored.redact(sample)).toBe(whole.redact(sample));
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});
