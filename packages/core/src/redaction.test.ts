import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { createRedactor, DEFAULT_REDACTION_MIN_LENGTH, REDACTED } from './redaction.js';

// Characters that need escaping in JSON and in URLs, and a multi-byte one; 26 bytes, so its
// base64 is padded, and it holds a "/", so base64url differs.
const TRICKY = 'p@ss w/"quote"\\+é?&=!???!';

describe('createRedactor', () => {
  it('replaces every occurrence of a registered value', () => {
    const redactor = createRedactor();
    redactor.register('hunter2-s3cret');
    expect(redactor.redact('a hunter2-s3cret b hunter2-s3cret')).toBe(
      `a ${REDACTED} b ${REDACTED}`,
    );
  });

  it('returns text without registered values unchanged', () => {
    const redactor = createRedactor();
    redactor.register('hunter2-s3cret');
    expect(redactor.redact('hunter2-s3cre nothing here')).toBe('hunter2-s3cre nothing here');
    expect(redactor.redact('')).toBe('');
  });

  it('returns text unchanged when nothing is registered', () => {
    expect(createRedactor().redact('anything at all')).toBe('anything at all');
  });

  const bytes = Buffer.from(TRICKY, 'utf8');
  it('is tested with a value whose base64 is padded and differs from base64url', () => {
    expect(bytes.toString('base64')).toMatch(/[+/].*=$/);
  });

  it.each([
    ['the value itself', TRICKY],
    ['base64', bytes.toString('base64')],
    ['base64 without padding', bytes.toString('base64').replace(/=+$/, '')],
    ['base64url', bytes.toString('base64url')],
    ['base64url with padding', bytes.toString('base64').replace(/\+/g, '-').replace(/\//g, '_')],
    ['URL-encoded', encodeURIComponent(TRICKY)],
    ['form-encoded', new URLSearchParams({ v: TRICKY }).toString().slice(2)],
    ['JSON-escaped', JSON.stringify(TRICKY).slice(1, -1)],
    ['JSON-escaped twice', JSON.stringify(JSON.stringify(TRICKY).slice(1, -1)).slice(1, -1)],
    ['hex', bytes.toString('hex')],
  ])('replaces the value written as %s', (_, form) => {
    const redactor = createRedactor();
    redactor.register(TRICKY);
    expect(redactor.redact(`before ${form} after`)).toBe(`before ${REDACTED} after`);
  });

  it('replaces the value inside a JSON log line built by JSON.stringify', () => {
    const redactor = createRedactor();
    redactor.register(TRICKY);
    const line = JSON.stringify({
      msg: `got ${TRICKY}`,
      nested: JSON.stringify({ value: TRICKY }),
    });
    const redacted = redactor.redact(line);
    expect(redacted).not.toContain(JSON.stringify(TRICKY).slice(1, -1));
    expect(JSON.parse(redacted)).toEqual({
      msg: `got ${REDACTED}`,
      nested: expect.stringContaining(REDACTED),
    });
  });

  it.each([
    ['', 0],
    ['u', 1],
    ['us', 2],
    ['longer-username', 15],
  ])('hides a value inside longer base64, as in HTTP Basic credentials for user %j', (user) => {
    const password = 'correct-horse-battery-staple';
    const redactor = createRedactor();
    redactor.register(password);
    const header = Buffer.from(`${user}:${password}`).toString('base64');
    const redacted = redactor.redact(`Authorization: Basic ${header}`);
    expect(redacted).toContain(REDACTED);
    // At most the user's characters and two characters that mix user and password bits remain.
    const kept = redacted.replace('Authorization: Basic ', '').replace(REDACTED, '');
    expect(kept.replace(/=+$/, '').length).toBeLessThanOrEqual(
      Math.ceil(((user.length + 1) * 4) / 3) + 4,
    );
  });

  it('copies a registered Uint8Array, so the caller may zero it', () => {
    const redactor = createRedactor();
    const value = Buffer.from('buffer-s3cret-value');
    redactor.register(value);
    value.fill(0);
    expect(redactor.redact('x buffer-s3cret-value y')).toBe(`x ${REDACTED} y`);
  });

  it('registers the encoded forms of bytes that are not UTF-8', () => {
    const redactor = createRedactor();
    const value = Uint8Array.from([0xff, 0xfe, 0x00, 0x80, 0xc3, 0x28, 0x9f, 0x01]);
    redactor.register(value);
    const buffer = Buffer.from(value);
    expect(redactor.redact(`hex ${buffer.toString('hex')}`)).toBe(`hex ${REDACTED}`);
    expect(redactor.redact(`b64 ${buffer.toString('base64')}`)).toBe(`b64 ${REDACTED}`);
    expect(redactor.size).toBe(1);
  });

  it(`does not register values shorter than ${DEFAULT_REDACTION_MIN_LENGTH} characters by default`, () => {
    const redactor = createRedactor();
    redactor.register('abc');
    redactor.register(Uint8Array.from([1, 2, 3]));
    redactor.register('');
    expect(redactor.size).toBe(0);
    expect(redactor.redact('abc abc')).toBe('abc abc');
    redactor.register('abcd');
    expect(redactor.size).toBe(1);
    expect(redactor.redact('abcd')).toBe(REDACTED);
  });

  it('applies a configured minimum length', () => {
    const redactor = createRedactor({ minLength: 10 });
    redactor.register('123456789');
    redactor.register('1234567890');
    expect(redactor.size).toBe(1);
    expect(redactor.redact('123456789 1234567890')).toBe(`123456789 ${REDACTED}`);
  });

  it('applies a minimum length longer than the characters it hashes to check a form', () => {
    const redactor = createRedactor({ minLength: 100 });
    const value = `${'x'.repeat(99)}y`;
    redactor.register(value);
    redactor.register('z'.repeat(99));
    expect(redactor.size).toBe(1);
    expect(redactor.redact(`<${value}> <${'z'.repeat(99)}>`)).toBe(
      `<${REDACTED}> <${'z'.repeat(99)}>`,
    );
    expect(redactor.redact(Buffer.from(value).toString('base64'))).toBe(REDACTED);
  });

  it('registers short encoded forms when minLength allows short values', () => {
    const redactor = createRedactor({ minLength: 1 });
    redactor.register('a');
    // 'a' is 61 in hex and YQ in base64: all short, but registered because minLength is 1.
    expect(redactor.redact('a 61 YQ')).toBe(`${REDACTED} ${REDACTED} ${REDACTED}`);
  });

  it('does not register base64 fragments of a shifted value shorter than 8 characters', () => {
    const redactor = createRedactor();
    redactor.register('abcd');
    // 'xabcd' is eGFiY2Q=: the part that depends only on 'abcd' is 'FiY2', too short to trust.
    expect(redactor.redact('eGFiY2Q= FiY2')).toBe('eGFiY2Q= FiY2');
    expect(redactor.redact('YWJjZA==')).toBe(REDACTED);
  });

  it.each([[0], [-1], [1.5], [Number.NaN]])('rejects minLength %s', (minLength) => {
    expect(() => createRedactor({ minLength })).toThrow(RangeError);
  });

  it('rejects a value that is neither a string nor bytes', () => {
    expect(() => createRedactor().register(42 as unknown as string)).toThrow(TypeError);
  });

  it('counts distinct values, a string and its UTF-8 bytes being one', () => {
    const redactor = createRedactor();
    redactor.register('same-value');
    redactor.register('same-value');
    redactor.register(Buffer.from('same-value'));
    expect(redactor.size).toBe(1);
    redactor.register('other-value');
    expect(redactor.size).toBe(2);
  });

  it('keeps a value whose base64 is another registered value', () => {
    const redactor = createRedactor();
    redactor.register(Buffer.from('hello').toString('base64')); // 'aGVsbG8='
    redactor.register('hello');
    expect(redactor.redact('say hello')).toBe(`say ${REDACTED}`);
  });

  it('applies values registered after a redact call from the next call on', () => {
    const redactor = createRedactor();
    redactor.register('first-secret');
    expect(redactor.redact('first-secret second-secret')).toBe(`${REDACTED} second-secret`);
    redactor.register('second-secret');
    expect(redactor.redact('first-secret second-secret')).toBe(`${REDACTED} ${REDACTED}`);
  });

  it('merges overlapping matches into one replacement', () => {
    const redactor = createRedactor();
    redactor.register('abcdef12');
    redactor.register('ef12ghij');
    expect(redactor.redact('x abcdef12ghij y')).toBe(`x ${REDACTED} y`);
  });

  it('replaces a value that contains another registered value as a whole', () => {
    const redactor = createRedactor();
    redactor.register('pass');
    redactor.register('my-password-long');
    expect(redactor.redact('[my-password-long] [pass]')).toBe(`[${REDACTED}] [${REDACTED}]`);
  });

  it('merges a long match that reaches back over several shorter ones', () => {
    const redactor = createRedactor();
    redactor.register('bbbb');
    redactor.register('dddd');
    redactor.register('aaaabbbbccccddddeeee');
    expect(redactor.redact('<aaaabbbbccccddddeeee>')).toBe(`<${REDACTED}>`);
    expect(redactor.redact('<bbbb cc dddd>')).toBe(`<${REDACTED} cc ${REDACTED}>`);
  });

  it('finds a value that ends inside the beginning of a longer one', () => {
    const redactor = createRedactor();
    redactor.register('abcdefgh');
    redactor.register('cdef');
    expect(redactor.redact('abcdefXX')).toBe(`ab${REDACTED}XX`);
  });

  it('keeps back-to-back occurrences as separate replacements', () => {
    const redactor = createRedactor();
    redactor.register('twice');
    expect(redactor.redact('twicetwice')).toBe(`${REDACTED}${REDACTED}`);
  });

  it('matches code units beyond ASCII and the basic plane', () => {
    const redactor = createRedactor();
    redactor.register('пароль-🔑-秘密');
    expect(redactor.redact('key: пароль-🔑-秘密!')).toBe(`key: ${REDACTED}!`);
  });

  it('redacts every one of thousands of values registered in batches between calls', () => {
    const redactor = createRedactor();
    const values = Array.from({ length: 3000 }, () => randomBytes(12).toString('base64url'));
    for (const [index, value] of values.entries()) {
      redactor.register(value);
      if (index % 97 === 0) redactor.redact('between batches');
    }
    expect(redactor.size).toBe(3000);
    const text = values.join(' | ');
    const redacted = redactor.redact(text);
    expect(redacted).toBe(values.map(() => REDACTED).join(' | '));
    for (const value of values.slice(0, 50)) {
      expect(redactor.redact(Buffer.from(value).toString('hex'))).toBe(REDACTED);
    }
  });
});

describe('createRedactor, by property', () => {
  // Values from g-z (here g, h, i) and filler from space and punctuation: no encoded form (hex has digits,
  // base64 starts groups with Z or a-e) can then occur in the text, so replacing the raw values
  // alone, as the naive oracle below does, is the exact expected result.
  // Three letters only, so values often overlap and contain one another.
  const value = fc.string({ unit: fc.constantFrom('g', 'h', 'i'), minLength: 4, maxLength: 10 });
  const filler = fc.string({ unit: fc.constantFrom(' ', ',', ';', '-'), maxLength: 4 });

  function naive(text: string, values: readonly string[]): string {
    const covered: Array<[number, number]> = [];
    for (let end = 1; end <= text.length; end++) {
      let start = end;
      for (const v of values) {
        if (v.length <= end && text.startsWith(v, end - v.length))
          start = Math.min(start, end - v.length);
      }
      if (start === end) continue;
      while (covered.length > 0 && start < covered[covered.length - 1]![1]) {
        start = Math.min(start, covered.pop()![0]);
      }
      covered.push([start, end]);
    }
    let result = '';
    let copied = 0;
    for (const [start, end] of covered) {
      result += text.slice(copied, start) + REDACTED;
      copied = end;
    }
    return result + text.slice(copied);
  }

  it.each([
    ['the default minimum length', {}],
    ['minLength 1', { minLength: 1 }],
  ] as const)('gives the same result as replacing each value by brute force, %s', (_, options) => {
    fc.assert(
      fc.property(
        fc.uniqueArray(value, { minLength: 1, maxLength: 8 }),
        fc.array(
          fc.tuple(
            filler,
            fc.nat(),
            fc.string({ unit: fc.constantFrom('g', 'h', 'z'), maxLength: 3 }),
          ),
        ),
        fc.nat({ max: 7 }),
        (values, pieces, split) => {
          const redactor = createRedactor(options);
          // Register in two batches with a redact call between: the table changes in place.
          for (const v of values.slice(0, split)) redactor.register(v);
          redactor.redact('');
          for (const v of values.slice(split)) redactor.register(v);
          const text = pieces
            .map(([before, index, noise]) => before + values[index % values.length] + noise)
            .join('');
          const redacted = redactor.redact(text);
          expect(redacted).toBe(naive(text, values));
          for (const v of values) expect(redacted).not.toContain(v);
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe('createRedactor, lifetimes', () => {
  it('forgets a value once its only lease is released', () => {
    const redactor = createRedactor({ patterns: false });
    const lease = redactor.register('hunter2-s3cret');
    expect(redactor.redact('a hunter2-s3cret')).toBe(`a ${REDACTED}`);
    lease.release();
    expect(redactor.size).toBe(0);
    expect(redactor.redact('a hunter2-s3cret')).toBe('a hunter2-s3cret');
    expect(redactor.redact(Buffer.from('hunter2-s3cret').toString('hex'))).not.toContain(REDACTED);
  });

  it('releases through release passed on alone, as a disposer', () => {
    const redactor = createRedactor({ patterns: false });
    const lease = redactor.register('hunter2-s3cret');
    const { release } = lease;
    const disposers: Array<() => void> = [release];
    for (const dispose of disposers) dispose();
    release();
    expect(redactor.size).toBe(0);
    expect(redactor.redact('a hunter2-s3cret')).toBe('a hunter2-s3cret');
  });

  it('keeps a value while another lease still holds it, and a second release of one lease counts once', () => {
    const redactor = createRedactor({ patterns: false });
    const first = redactor.register('hunter2-s3cret');
    const second = redactor.register(Buffer.from('hunter2-s3cret'));
    first.release();
    first.release();
    expect(redactor.redact('a hunter2-s3cret')).toBe(`a ${REDACTED}`);
    second.release();
    expect(redactor.redact('a hunter2-s3cret')).toBe('a hunter2-s3cret');
  });

  it('keeps a form another held value shares when one value is released', () => {
    const redactor = createRedactor({ patterns: false });
    const encoded = redactor.register(Buffer.from('hello').toString('base64')); // 'aGVsbG8='
    const plain = redactor.register('hello');
    plain.release();
    expect(redactor.redact('say hello aGVsbG8=')).toBe(`say hello ${REDACTED}`);
    encoded.release();
    expect(redactor.redact('say hello aGVsbG8=')).toBe('say hello aGVsbG8=');
  });

  it('gives a lease that does nothing for a value too short to register', () => {
    const redactor = createRedactor();
    redactor.register('abc').release();
    expect(redactor.size).toBe(0);
  });

  it('returns its structures to their baseline once every value is released', () => {
    const redactor = createRedactor();
    const kept = redactor.register('held-for-the-whole-test');
    redactor.redact('');
    const baseline = redactor.stats();
    // Rotations: each version registered (small and large), held a while, then released.
    let previous: Array<{ release(): void }> = [];
    for (let version = 0; version < 20; version++) {
      const leases = [
        redactor.register(randomBytes(24).toString('base64')),
        redactor.register(randomBytes(64 * 1024)),
        redactor.register(randomBytes(5000).toString('hex')),
      ];
      redactor.redact('a log line between versions');
      for (const lease of previous) lease.release();
      previous = leases;
    }
    const during = redactor.stats();
    expect(during.values).toBe(4);
    for (const lease of previous) lease.release();
    expect(redactor.redact('held-for-the-whole-test')).toBe(REDACTED);
    expect(redactor.stats()).toEqual(baseline);
    expect(baseline.heldBytes).toBe(Buffer.byteLength('held-for-the-whole-test'));
    kept.release();
    expect(redactor.stats()).toMatchObject({ values: 0, forms: 0, heldBytes: 0 });
  });

  it('zeroes nothing of the caller: a registered Buffer stays as it was after release', () => {
    const redactor = createRedactor();
    const bytes = randomBytes(4096);
    const copy = Buffer.from(bytes);
    redactor.register(bytes).release();
    expect(bytes.equals(copy)).toBe(true);
  });

  it('zeroes its own copy of a value, small or large, string or bytes, once released', () => {
    const redactor = createRedactor();
    const copies: Buffer[] = [];
    const allocate = Buffer.allocUnsafeSlow;
    const spy = vi.spyOn(Buffer, 'allocUnsafeSlow').mockImplementation((size) => {
      const copy = allocate(size);
      copies.push(copy);
      return copy;
    });
    let leases: Array<{ release(): void }>;
    try {
      leases = [
        redactor.register('a small secret value'),
        redactor.register(randomBytes(24)),
        redactor.register(randomBytes(64 * 1024)),
        redactor.register('lone \ud800 surrogate'),
      ];
    } finally {
      spy.mockRestore();
    }
    // One copy each, and the lone surrogate's text as UTF-16 too.
    expect(copies.length).toBe(5);
    for (const copy of copies) expect(copy.some((byte) => byte !== 0)).toBe(true);
    for (const lease of leases) lease.release();
    for (const copy of copies) expect(copy.every((byte) => byte === 0)).toBe(true);
  });
});

describe('createRedactor, memory', () => {
  it('keeps a value as its bytes and a few dozen bytes a form, whatever the count', () => {
    const redactor = createRedactor();
    const values = Array.from({ length: 10_000 }, () => randomBytes(32).toString('base64'));
    for (const value of values) redactor.register(value);
    const stats = redactor.stats();
    expect(stats.values).toBe(10_000);
    expect(stats.heldBytes).toBe(44 * 10_000);
    // 44 characters of base64: text (= JSON), URL/form, and the byte encodings of its UTF-8.
    expect(stats.forms / stats.values).toBeLessThanOrEqual(16);
    expect(stats.tableBytes / stats.values).toBeLessThan(16 * 64);
    for (const value of values.slice(0, 100)) {
      expect(redactor.redact(`{"msg":"token ${value}"}`)).toBe(`{"msg":"token ${REDACTED}"}`);
    }
  });

  it('shrinks its table back to what one value needs once thousands are released', () => {
    const redactor = createRedactor();
    const kept = 'kept-while-the-others-come-and-go';
    redactor.register(kept);
    const alone = redactor.stats();
    const leases = Array.from({ length: 5_000 }, () =>
      redactor.register(randomBytes(18).toString('base64url')),
    );
    expect(redactor.stats().tableBytes).toBeGreaterThan(10 * alone.tableBytes);
    for (const lease of leases.reverse()) lease.release();
    expect(redactor.stats()).toEqual(alone);
    expect(redactor.redact(`a ${kept} b`)).toBe(`a ${REDACTED} b`);
  });

  it('tells apart values that begin alike: only the one written is replaced', () => {
    const redactor = createRedactor({ patterns: false });
    const values = Array.from(
      { length: 300 },
      (_, index) => `-----BEGIN KEY-----${String(index).padStart(3, '0')}`,
    );
    for (const value of values) redactor.register(value);
    expect(redactor.redact('-----BEGIN KEY-----')).toBe('-----BEGIN KEY-----');
    expect(redactor.redact('-----BEGIN KEY-----300')).toBe('-----BEGIN KEY-----300');
    expect(redactor.redact(`<${values[42]!}>`)).toBe(`<${REDACTED}>`);
    expect(redactor.redact(`<${values[42]!}9>`)).toBe(`<${REDACTED}9>`);
  });

  it('counts a string with a lone surrogate and its UTF-8 bytes (which hold U+FFFD) as two values', () => {
    const redactor = createRedactor({ patterns: false });
    const lone = 'ab\ud800cdef';
    redactor.register(lone);
    redactor.register(Buffer.from(lone, 'utf8'));
    expect(redactor.size).toBe(2);
    expect(redactor.redact(`<${lone}>`)).toBe(`<${REDACTED}>`);
    expect(redactor.redact('<ab\ufffdcdef>')).toBe(`<${REDACTED}>`);
  });
});

describe('createRedactor, large values', () => {
  // 700 KB of text that needs escaping in JSON and URLs, with multi-byte characters.
  const large = Array.from(
    { length: (700 * 1024) / 28 },
    () => `${randomBytes(9).toString('base64')}"\\/é&+ `,
  ).join('');

  it('keeps about the value itself and a record per form, not every form', () => {
    const redactor = createRedactor();
    redactor.register(large);
    const stats = redactor.stats();
    expect(stats.heldBytes).toBe(Buffer.byteLength(large));
    expect(stats.forms).toBeLessThanOrEqual(16);
    expect(stats.tableBytes).toBeLessThan(4 * 1024);
  });

  it.each([
    ['the value itself', (v: string) => v],
    ['JSON-escaped', (v: string) => JSON.stringify(v).slice(1, -1)],
    [
      'JSON-escaped twice',
      (v: string) => JSON.stringify(JSON.stringify(v).slice(1, -1)).slice(1, -1),
    ],
    ['URL-encoded', (v: string) => encodeURIComponent(v)],
    ['form-encoded', (v: string) => new URLSearchParams({ v }).toString().slice(2)],
    ['base64', (v: string) => Buffer.from(v).toString('base64')],
    ['base64 unpadded', (v: string) => Buffer.from(v).toString('base64').replace(/=+$/, '')],
    ['base64url', (v: string) => Buffer.from(v).toString('base64url')],
    ['hex', (v: string) => Buffer.from(v).toString('hex')],
  ])('replaces a large value written as %s, and only the whole of it', (_, encode) => {
    const redactor = createRedactor({ patterns: false });
    redactor.register(large);
    const form = encode(large);
    // Compared as booleans: a failure would otherwise print megabytes.
    expect(redactor.redact(`<${form}>`) === `<${REDACTED}>`).toBe(true);
    // Cut short (past what a shifted base64 form leaves out): not the value, left alone.
    const cut = form.slice(0, -4);
    expect(redactor.redact(`<${cut}>`) === `<${cut}>`).toBe(true);
  });

  it('replaces a large value inside longer base64, at each alignment', () => {
    const password = randomBytes(3 * 1024);
    const redactor = createRedactor({ patterns: false });
    redactor.register(password);
    for (const user of ['', 'u', 'us']) {
      const header = Buffer.concat([Buffer.from(`${user}:`), password, Buffer.from('!')]).toString(
        'base64',
      );
      const redacted = redactor.redact(header);
      expect(redacted).toContain(REDACTED);
      expect(redacted.length).toBeLessThan(REDACTED.length + 12);
    }
  });

  it('forgets a large value once released', () => {
    const redactor = createRedactor({ patterns: false });
    redactor.register(large).release();
    expect(redactor.stats()).toMatchObject({ values: 0, heldBytes: 0, forms: 0 });
    expect(redactor.redact(`<${large}>`) === `<${large}>`).toBe(true);
  });
});
