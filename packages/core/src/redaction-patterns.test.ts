import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createRedactor, REDACTED } from './redaction.js';
import {
  compilePatterns,
  REDACTION_PATTERN_IDS,
  REDACTION_PATTERNS,
  type RedactionPatternId,
} from './redaction-patterns.js';

// Every token below is generated here, from a fixed seed, in the shape of the real thing: none
// is, or ever was, a credential, and no token-shaped literal sits in this file for a secret
// scanner to trip on.
const UPPER = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
const LOWER = 'abcdefghijklmnopqrstuvwxyz';
const DIGITS = '0123456789';
const ALNUM = UPPER + LOWER + DIGITS;
const B64URL = `${ALNUM}-_`;
const B64 = `${ALNUM}+/`;

let seed = 0x5eed;
/** `length` characters of `alphabet`, from a fixed-seed generator (xorshift32). */
function fake(alphabet: string, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    out += alphabet[(seed >>> 0) % alphabet.length];
  }
  return out;
}

function pem(label: string, lines = 6): string {
  const body = Array.from({ length: lines }, () => fake(B64, 64)).join('\n');
  return `-----BEGIN ${label}-----\n${body}\n${fake(B64, 20)}==\n-----END ${label}-----`;
}

const base64url = (text: string) => Buffer.from(text).toString('base64url');
const JWT = [
  base64url('{"alg":"HS256","typ":"JWT"}'),
  base64url('{"sub":"1234567890","name":"Jane Doe","iat":1516239022}'),
  fake(B64URL, 43),
].join('.');

const RSA = pem('RSA PRIVATE KEY');
const GITHUB_CLASSIC = `ghp_${fake(ALNUM, 36)}`;
const GITHUB_FINE = `github_pat_${fake(ALNUM, 22)}_${fake(ALNUM, 59)}`;
const BASIC = Buffer.from(`deploy:${fake(ALNUM, 20)}`).toString('base64');

interface Sample {
  /** Text holding a credential. */
  text: string;
  /** What must be gone from the redacted text. */
  secret: string;
  /** What the redacted text must be, when the pattern keeps part of the match. */
  expected?: string;
}

/** At least one real-looking sample per pattern: the test below fails when one is missing. */
const SAMPLES: Record<RedactionPatternId, Sample[]> = {
  'private-key': [
    {
      text: `key:\n${RSA}\ndone`,
      secret: RSA.split('\n')[1]!,
      expected: `key:\n-----BEGIN RSA PRIVATE KEY-----${REDACTED}-----END RSA PRIVATE KEY-----\ndone`,
    },
    ...['EC PRIVATE KEY', 'OPENSSH PRIVATE KEY', 'PRIVATE KEY', 'ENCRYPTED PRIVATE KEY'].map(
      (label) => {
        const block = pem(label);
        return { text: block, secret: block.split('\n')[2]! };
      },
    ),
    (() => {
      const block = pem('PGP PRIVATE KEY BLOCK').replace('\n', '\nVersion: GnuPG v2\n\n');
      return { text: block, secret: block.split('\n')[4]! };
    })(),
    // In a JSON log line the newlines are `\n` escapes.
    { text: JSON.stringify({ msg: 'loaded', key: RSA }), secret: RSA.split('\n')[3]! },
    // A line cut short: no END, the rest of the key text still goes.
    {
      text: RSA.slice(0, 300),
      secret: RSA.slice(200, 300),
      expected: `-----BEGIN RSA PRIVATE KEY-----${REDACTED}`,
    },
  ],
  'age-secret-key': [
    { text: `# key\nAGE-SECRET-KEY-1${fake(UPPER + DIGITS, 58)}`, secret: 'AGE-SECRET-KEY-1' },
  ],
  'aws-access-key-id': [
    (() => {
      const id = `AKIA${fake('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}`;
      return {
        text: `using key ${id} for s3`,
        secret: id,
        expected: `using key ${REDACTED} for s3`,
      };
    })(),
    (() => {
      const id = `ASIA${fake('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}`;
      return { text: JSON.stringify({ AccessKeyId: id }), secret: id };
    })(),
  ],
  'aws-secret-access-key': [
    (() => {
      const key = fake(B64, 40);
      return {
        text: `[default]\naws_secret_access_key = ${key}\nregion = eu-west-1`,
        secret: key,
        expected: `[default]\naws_secret_access_key = ${REDACTED}\nregion = eu-west-1`,
      };
    })(),
    (() => {
      const key = fake(B64, 40);
      return { text: `export AWS_SECRET_ACCESS_KEY="${key}"`, secret: key };
    })(),
    (() => {
      const key = fake(B64, 40);
      return { text: JSON.stringify({ Credentials: { SecretAccessKey: key } }), secret: key };
    })(),
  ],
  'github-token': [
    {
      text: `git clone https://x-access-token@github.com ${GITHUB_CLASSIC}`,
      secret: GITHUB_CLASSIC,
    },
    ...['gho', 'ghu', 'ghs', 'ghr'].map((prefix) => {
      const token = `${prefix}_${fake(ALNUM, 36)}`;
      return { text: `GITHUB_AUTH ${token}.`, secret: token, expected: `GITHUB_AUTH ${REDACTED}.` };
    }),
    { text: `token ${GITHUB_FINE}`, secret: GITHUB_FINE, expected: `token ${REDACTED}` },
  ],
  'gitlab-token': ['glpat', 'gldt', 'glrt', 'glptt', 'glcbt', 'gloas', 'glft'].map((prefix) => {
    const token = `${prefix}-${fake(B64URL, 20)}`;
    return { text: `CI_JOB ${token} ok`, secret: token, expected: `CI_JOB ${REDACTED} ok` };
  }),
  'slack-token': [
    ...['xoxb', 'xoxp', 'xoxa', 'xoxr', 'xoxs'].map((prefix) => {
      const token = `${prefix}-${fake(DIGITS, 12)}-${fake(DIGITS, 13)}-${fake(ALNUM, 24)}`;
      return { text: `slack ${token}`, secret: token, expected: `slack ${REDACTED}` };
    }),
    (() => {
      const token = `xapp-1-A${fake(UPPER + DIGITS, 10)}-${fake(DIGITS, 13)}-${fake('0123456789abcdef', 64)}`;
      return { text: token, secret: token, expected: REDACTED };
    })(),
  ],
  'slack-webhook': [
    (() => {
      const path = `T${fake(UPPER + DIGITS, 8)}/B${fake(UPPER + DIGITS, 10)}/${fake(ALNUM, 24)}`;
      return {
        text: `posting to https://hooks.slack.com/services/${path} now`,
        secret: path,
        expected: `posting to https://hooks.slack.com/services/${REDACTED} now`,
      };
    })(),
  ],
  'stripe-key': ['sk_live_', 'sk_test_', 'rk_live_', 'whsec_'].map((prefix) => {
    const key = `${prefix}${fake(ALNUM, 32)}`;
    return { text: `stripe ${key}`, secret: key, expected: `stripe ${REDACTED}` };
  }),
  'google-api-key': [
    (() => {
      const key = `AIza${fake(B64URL, 35)}`;
      return {
        text: `https://maps.googleapis.com/maps/api/geocode/json?address=x&k=${key}`,
        secret: key,
      };
    })(),
  ],
  'google-oauth': [
    { text: `client GOCSPX-${fake(B64URL, 28)}`, secret: 'GOCSPX-' },
    { text: `access ya29.${fake(B64URL, 120)}`, secret: 'ya29.' },
    { text: `refresh 1//0${fake(B64URL, 100)}`, secret: '1//0' },
  ],
  'npm-token': [
    (() => {
      const token = `npm_${fake(ALNUM, 36)}`;
      return {
        text: `//registry.npmjs.org/:_authToken=${token}`,
        secret: token,
        expected: `//registry.npmjs.org/:_authToken=${REDACTED}`,
      };
    })(),
  ],
  'pypi-token': [{ text: `pypi-AgEIcHlwaS5vcmc${fake(B64URL, 120)}`, secret: 'pypi-AgEI' }],
  'docker-hub-token': [
    (() => {
      const token = `dckr_pat_${fake(B64URL, 27)}`;
      return { text: `docker login -u ci -p ${token}`, secret: token };
    })(),
  ],
  'vault-token': [
    (() => {
      const token = `hvs.${fake(B64URL, 90)}`;
      return {
        text: `X-Vault-Token ${token}`,
        secret: token,
        expected: `X-Vault-Token ${REDACTED}`,
      };
    })(),
  ],
  'ai-api-key': [
    (() => {
      const key = `sk-proj-${fake(B64URL, 120)}`;
      return { text: `OPENAI ${key}`, secret: key, expected: `OPENAI ${REDACTED}` };
    })(),
    (() => {
      const key = `sk-ant-api03-${fake(B64URL, 93)}`;
      return { text: `ANTHROPIC ${key}`, secret: key };
    })(),
  ],
  'sendgrid-key': [
    (() => {
      const key = `SG.${fake(B64URL, 22)}.${fake(B64URL, 43)}`;
      return { text: `mail via ${key}`, secret: key, expected: `mail via ${REDACTED}` };
    })(),
  ],
  jwt: [
    { text: `session ${JWT} expired`, secret: JWT, expected: `session ${REDACTED} expired` },
    { text: JSON.stringify({ cookie: `id=${JWT}` }), secret: JWT },
  ],
  'authorization-header': [
    (() => {
      const token = fake(B64URL, 40);
      return {
        text: `Authorization: Bearer ${token}`,
        secret: token,
        expected: `Authorization: Bearer ${REDACTED}`,
      };
    })(),
    {
      text: JSON.stringify({ headers: { authorization: `Basic ${BASIC}` } }),
      secret: BASIC,
      expected: JSON.stringify({ headers: { authorization: `Basic ${REDACTED}` } }),
    },
    (() => {
      const token = fake(ALNUM, 40);
      return { text: `curl -H 'bearer ${token}'`, secret: token };
    })(),
  ],
  'credential-pair': [
    { text: 'password=hunter2-s3cret', secret: 'hunter2', expected: `password=${REDACTED}` },
    { text: 'passwd: s3cr3t-value', secret: 's3cr3t', expected: `passwd: ${REDACTED}` },
    { text: 'secret=abc123xyz&next=1', secret: 'abc123', expected: `secret=${REDACTED}&next=1` },
    { text: 'GET /cb?access_token=q1w2e3r4t5 HTTP/1.1', secret: 'q1w2e3r4t5' },
    { text: 'api_key = 9f8e7d6c5b4a', secret: '9f8e7d6c5b4a', expected: `api_key = ${REDACTED}` },
    { text: 'export DB_PASSWORD="correct horse battery"', secret: 'horse' },
    {
      text: "client_secret: 'zxcv-asdf-qwer'",
      secret: 'asdf',
      expected: `client_secret: '${REDACTED}'`,
    },
    { text: 'X-Api-Key: 1234-abcd-5678', secret: 'abcd', expected: `X-Api-Key: ${REDACTED}` },
    { text: 'db_pwd=pa55', secret: 'pa55' },
    {
      text: JSON.stringify({ user: 'app', password: 'p"w\\d', token: 'tok-123456' }),
      secret: 'tok-123456',
      expected: `{"user":"app","password":"${REDACTED}","token":"${REDACTED}"}`,
    },
    // A JSON document inside a log message: its quotes are escaped.
    {
      text: JSON.stringify({ msg: JSON.stringify({ password: 'inner-s3cret', user: 'u' }) }),
      secret: 'inner-s3cret',
      expected: JSON.stringify({ msg: `{"password":"${REDACTED}","user":"u"}` }),
    },
    {
      text: JSON.stringify({ msg: 'connecting with password="quoted value" now' }),
      secret: 'quoted value',
      expected: JSON.stringify({ msg: `connecting with password="${REDACTED}" now` }),
    },
    {
      text: "{'password': 'py-dict-s3cret'}",
      secret: 'py-dict',
      expected: `{'password': '${REDACTED}'}`,
    },
    { text: 'credentials=user:pw123', secret: 'user:pw123' },
    // A path before the key still redacts a value after `=`, and a JSON member named by a path.
    { text: 'GET /login/password=hunter2-s3cret', secret: 'hunter2' },
    {
      text: JSON.stringify({ 'app/db/password': 'path-keyed-s3cret' }),
      secret: 'path-keyed',
      expected: `{"app/db/password":"${REDACTED}"}`,
    },
  ],
  'url-credentials': [
    {
      text: 'connecting to postgres://admin:s3cr3t-pw@db.internal:5432/app',
      secret: 's3cr3t-pw',
      expected: `connecting to postgres://admin:${REDACTED}@db.internal:5432/app`,
    },
    { text: 'redis://:only-a-password@cache:6379/0', secret: 'only-a-password' },
    {
      text: 'https://user:p@ss:w0rd@example.com/x',
      secret: 'w0rd',
      expected: `https://user:${REDACTED}@example.com/x`,
    },
    {
      text: String.raw`{"url":"amqp:\/\/guest:guest-pw@mq\/vhost"}`,
      secret: 'guest-pw',
      expected: String.raw`{"url":"amqp:\/\/guest:${REDACTED}@mq\/vhost"}`,
    },
  ],
};

/**
 * For every pattern, text that comes close and is not a credential: neither the pattern alone
 * nor the whole set may touch it. Log lines must stay readable.
 */
const NEAR_MISSES: Record<RedactionPatternId, string[]> = {
  'private-key': [
    '-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBBQUAMBExDzANBgNVBAMMBmxv\n-----END CERTIFICATE-----',
    '-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----',
    'expected -----BEGIN PRIVATE KEY----- at line 1',
  ],
  'age-secret-key': [
    'recipient age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p',
    'AGE-SECRET-KEY-1 expected',
  ],
  'aws-access-key-id': ['Asia/Tokyo', 'AKIA ASIAN akiapolaau', 'AKIAEXAMPLE'],
  'aws-secret-access-key': [
    'aws_secret_access_key_file=/run/secrets/aws',
    'aws_secret_access_key is not set',
  ],
  'github-token': ['ghp_short gho_', 'the github_pat_ prefix', 'ghp_abc-def'],
  'gitlab-token': ['glpat-short', 'global-settings glrt-', 'gldt-x'],
  'slack-token': ['xoxb-', 'xoxo hugs', 'xapp-1-short'],
  'slack-webhook': ['https://hooks.slack.com/', 'see hooks.slack.com/services/ for setup'],
  'stripe-key': [`pk_live_${'a1B2c3D4e5F6g7H8i9J0k1L2'}`, 'sk_live_ prefix', 'whsec_short'],
  'google-api-key': ['AIzaShort', 'AIza'],
  'google-oauth': ['ya29.short', 'GOCSPX-', 'on 1//02'],
  'npm-token': ['npm_config_cache=/tmp', 'npm_package_version=1.2.3 npm_lifecycle_event=test'],
  'pypi-token': ['pypi-package', 'pypi-AgEIcHlwaS5vcmc'],
  'docker-hub-token': ['dckr_pat_short', 'dckr_pat_'],
  'vault-token': ['hvs.example', 'hvs.short'],
  'ai-api-key': ['sk-learn', 'disk-usage and task-queue-worker-process-pool-manager-thread'],
  'sendgrid-key': ['SG.example.com', 'msg.length', 'SG.short.key'],
  jwt: ['eyJhbGciOiJIUzI1NiJ9 without dots', 'eyJ.a.b', 'prefixeyJhbGciOiJIUzI1NiJ9'],
  'authorization-header': [
    'authorization failed',
    'bearer required',
    'WWW-Authenticate: Bearer realm="dso"',
  ],
  'credential-pair': [
    'the password is wrong',
    'enter your password',
    'password',
    'tokens=5 secrets: 3 keys=7',
    JSON.stringify({ tokenCount: 5, secretsFound: 3, keyId: 'k1', tokens: 12 }),
    // A JSON member that is not a string is left alone: replacing it would break the line.
    JSON.stringify({ token: 123, secret: null, password: true, auth: false }),
    'PWD=/home/dso OLDPWD=/tmp bypass=true oauth=1',
    'password_file=/run/secrets/db_password',
    '{"msg":"bad password:","provider":"vault"}',
    '{"msg":"missing token","next":"value"}',
    // A reference's path ending in a credential word, then a colon and the rest of a sentence.
    'could not resolve dsofile://rediskv:app/db/password: rediskv: redis cannot be reached',
    'could not resolve dso://local:app/other/token: secret at app/other/token',
    JSON.stringify({ msg: 'could not resolve dsofile://rediskv:app/db/password: rediskv: down' }),
    'app/db_password: no secret at app/db_password',
  ],
  'url-credentials': [
    'https://example.com:8443/path?q=1#frag',
    'git@github.com:org/repo.git and ssh://git@host:22/repo',
    'http://[::1]:8080/metrics',
    'dso://vault:app@3 dsofile://vault:db/password@v2 dso://app/db#password',
  ],
};

/** Text every DSO log line is full of: none of it may be touched. */
const ORDINARY = [
  'commit 3f786850e387550fdab836ed7e6dc881de23001b',
  'request 123e4567-e89b-12d3-a456-426614174000',
  'container 4f9c2a1b8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a39281706f5e4d3 started',
  'image sha256:9b2a6e3c4d5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9',
  JSON.stringify({ reference: 'dsofile://vault:app/db#password', provider: 'vault' }),
  JSON.stringify({ reference: 'dso://aws:prod/api#token@AWSCURRENT', containerId: 'a'.repeat(64) }),
  '{"level":30,"time":1735689600000,"pid":42,"hostname":"node-1","msg":"secrets injected","files":3}',
  '2025-01-01T00:00:00.000Z level=info msg="cache hit" provider=vault durationMs=1.2',
];

describe('REDACTION_PATTERNS', () => {
  it('has unique ids, each with anchors and a global RegExp with indices', () => {
    expect(new Set(REDACTION_PATTERN_IDS).size).toBe(REDACTION_PATTERNS.length);
    for (const { regex, anchors, description } of REDACTION_PATTERNS) {
      expect(regex.flags).toContain('g');
      expect(regex.flags).toContain('d');
      expect(anchors.length).toBeGreaterThan(0);
      expect(description.length).toBeGreaterThan(10);
    }
  });

  it('has a real-looking sample for every pattern', () => {
    for (const id of REDACTION_PATTERN_IDS) expect(SAMPLES[id].length).toBeGreaterThan(0);
  });

  const cases = Object.entries(SAMPLES).flatMap(([id, samples]) =>
    samples.map(
      (sample, index) => [`${id} #${index + 1}`, id as RedactionPatternId, sample] as const,
    ),
  );

  it.each(cases)('redacts sample %s by its own pattern and by the default set', (_, id, sample) => {
    const alone = createRedactor({ patterns: [id] }).redact(sample.text);
    const all = createRedactor().redact(sample.text);
    for (const redacted of [alone, all]) {
      expect(redacted).not.toContain(sample.secret);
      expect(redacted).toContain(REDACTED);
    }
    if (sample.expected !== undefined) expect(alone).toBe(sample.expected);
    // A sample that is a JSON document stays one.
    if (sample.text.startsWith('{"')) {
      expect(() => JSON.parse(alone)).not.toThrow();
      expect(() => JSON.parse(all)).not.toThrow();
    }
  });

  it('has a near miss for every pattern', () => {
    for (const id of REDACTION_PATTERN_IDS) expect(NEAR_MISSES[id].length).toBeGreaterThan(0);
  });

  const misses = Object.entries(NEAR_MISSES).flatMap(([id, texts]) =>
    texts.map((text) => [id as RedactionPatternId, text] as const),
  );

  it.each(misses)('%s leaves its near miss alone: %s', (id, text) => {
    expect(createRedactor({ patterns: [id] }).redact(text)).toBe(text);
    expect(createRedactor().redact(text)).toBe(text);
  });

  it.each(ORDINARY)('leaves ordinary text alone: %s', (text) => {
    expect(createRedactor().redact(text)).toBe(text);
  });
});

describe('createRedactor with patterns', () => {
  it('redacts well-known formats by default and not with patterns: false', () => {
    const text = `token ${GITHUB_CLASSIC}`;
    expect(createRedactor().redact(text)).toBe(`token ${REDACTED}`);
    expect(createRedactor({ patterns: false }).redact(text)).toBe(text);
    expect(createRedactor({ patterns: true }).redact(text)).toBe(`token ${REDACTED}`);
  });

  it('applies only the patterns it is given', () => {
    const text = `${GITHUB_CLASSIC} ${JWT}`;
    expect(createRedactor({ patterns: ['jwt'] }).redact(text)).toBe(
      `${GITHUB_CLASSIC} ${REDACTED}`,
    );
    expect(createRedactor({ patterns: [] }).redact(text)).toBe(text);
  });

  it('rejects an unknown pattern id with a TypeError listing the known ones', () => {
    expect(() => createRedactor({ patterns: ['nope' as RedactionPatternId] })).toThrow(
      /unknown redaction pattern "nope"; known: private-key/,
    );
    expect(() => compilePatterns('all' as unknown as boolean)).toThrow(TypeError);
  });

  it('replaces the union of registered values and pattern matches in one pass', () => {
    const redactor = createRedactor();
    // The registered value straddles the end of the URL password: neither match alone would
    // cover all of it, the union does.
    redactor.register('tail-of-pw@db and-more');
    const redacted = redactor.redact('postgres://u:head-tail-of-pw@db and-more text');
    expect(redacted).toBe(`postgres://u:${REDACTED} text`);
  });

  it('removes a registered value that a pattern would have cut in two', () => {
    const redactor = createRedactor();
    redactor.register('prefix password=middle suffix');
    expect(redactor.redact('[prefix password=middle suffix]')).toBe(`[${REDACTED}]`);
  });

  it('redacts a token that holds a registered value whole', () => {
    const redactor = createRedactor();
    const inner = GITHUB_CLASSIC.slice(8, 24);
    redactor.register(inner);
    expect(redactor.redact(`x ${GITHUB_CLASSIC} y`)).toBe(`x ${REDACTED} y`);
  });

  it('is idempotent on its own output', () => {
    const redactor = createRedactor();
    for (const samples of Object.values(SAMPLES)) {
      for (const { text } of samples) {
        const once = redactor.redact(text);
        expect(redactor.redact(once)).toBe(once);
      }
    }
  });
});

describe('pattern redaction, by property', () => {
  // Pieces that trigger the patterns, and the characters that matter to JSON and to the
  // patterns' boundaries, mixed with arbitrary text.
  const piece = fc.oneof(
    fc.constantFrom(
      'password',
      'passwd',
      'secret',
      'token',
      'api_key',
      'auth',
      'authorization',
      'Bearer ',
      'Basic ',
      '=',
      ':',
      ': ',
      '"',
      "'",
      '\\',
      '\\"',
      '\n',
      ' ',
      ',',
      '{',
      '}',
      '@',
      '/',
      '://',
      'https://',
      'user:',
      '-----BEGIN RSA PRIVATE KEY-----',
      '-----END RSA PRIVATE KEY-----',
      'eyJhbGciOiJIUzI1NiJ9.',
      'ghp_',
      'AKIA',
      'xoxb-',
      JWT,
      GITHUB_CLASSIC,
    ),
    fc.string({ maxLength: 6 }),
    fc.string({ unit: fc.constantFrom(...B64URL), minLength: 8, maxLength: 40 }),
  );
  const text = fc.array(piece, { maxLength: 24 }).map((pieces) => pieces.join(''));

  it('keeps every JSON document valid JSON, whatever its strings hold', () => {
    const redactor = createRedactor();
    fc.assert(
      fc.property(
        fc.dictionary(text, fc.oneof(text, fc.integer(), fc.constant(null))),
        text,
        (object, msg) => {
          for (const document of [
            JSON.stringify({ ...object, msg }),
            JSON.stringify({ msg: JSON.stringify(object) }),
            JSON.stringify([msg, object], null, 2),
          ]) {
            const redacted = redactor.redact(document);
            expect(() => JSON.parse(redacted)).not.toThrow();
          }
        },
      ),
      { numRuns: 400 },
    );
  });

  it('leaves text that holds no anchor unchanged', () => {
    const redactor = createRedactor();
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(...'0123456789 ,.;[]{}()') }), (plain) => {
        expect(redactor.redact(plain)).toBe(plain);
      }),
      { numRuns: 200 },
    );
  });
});
