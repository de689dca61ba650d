/**
 * Well-known credential formats, recognised by shape, for secrets that were never registered
 * with a redactor: a token pasted into a provider's config, a database URL in an error message,
 * a private key dumped by a library. Exact-value redaction ({@link createRedactor}) is the
 * guarantee; these patterns are the best-effort net under it.
 *
 * Every pattern is written so that its replacement keeps a JSON log line valid JSON: what it
 * replaces never contains a raw `"` and never ends inside a backslash escape.
 */

/** The name of one entry of {@link REDACTION_PATTERNS}. */
export type RedactionPatternId =
  | 'private-key'
  | 'age-secret-key'
  | 'aws-access-key-id'
  | 'aws-secret-access-key'
  | 'github-token'
  | 'gitlab-token'
  | 'slack-token'
  | 'slack-webhook'
  | 'stripe-key'
  | 'google-api-key'
  | 'google-oauth'
  | 'npm-token'
  | 'pypi-token'
  | 'docker-hub-token'
  | 'vault-token'
  | 'ai-api-key'
  | 'sendgrid-key'
  | 'jwt'
  | 'authorization-header'
  | 'credential-pair'
  | 'url-credentials';

/** One credential format: how it is recognised and which part of it is replaced. */
export interface RedactionPattern {
  readonly id: RedactionPatternId;
  /** What it recognises, for documentation and error messages. */
  readonly description: string;
  /**
   * A global RegExp with the `d` flag. When it has named groups whose names start with
   * `secret`, only the group that took part in a match is replaced (the key of a
   * `password=` pair, the user and host of a URL stay readable); otherwise the whole match is.
   */
  readonly regex: RegExp;
  /**
   * Lower-case literals, one of which occurs (in the lower-cased text) wherever the pattern
   * can match. The regex runs only on text that contains one: most log lines contain none,
   * and then the patterns cost a few substring searches.
   */
  readonly anchors: readonly string[];
}

// Shared pieces.
/**
 * What comes between a key and a value that holds no quote or backslash (a token): the end of
 * a JSON member name and the opening quote of its string value (`"key":"`), the same escaped
 * inside a JSON string (`\"key\":\"`) or in a Python-style dict (`'key': '`), or a separator
 * (`=`, `:`, `:=`, `=>`) and an optional opening quote. A JSON member whose value is not a
 * string (`"token":123`) is left alone: replacing the number would break the document. A raw `"`
 * followed by `,` `:` `}` `]` or whitespace ends a JSON string (a message ending in
 * `password:`); it opens nothing.
 */
const TOKEN_AFTER_KEY = String.raw`(?:"\s*:\s*"|\\"\s*:\s*\\"|'\s*:\s*'|\s*(?:=>|:=|=|:)\s*(?:\\"|"(?![\s,:}\]])|')?)`;
const ALNUM_BEFORE = '(?<![A-Za-z0-9])';
const WORD_BEFORE = '(?<![A-Za-z0-9_])';
const WORD_AFTER = '(?![A-Za-z0-9_])';
/** A PEM label: `-----BEGIN RSA PRIVATE KEY-----`, `… OPENSSH …`, `… PGP PRIVATE KEY BLOCK-----`. */
const PEM_LABEL = '[A-Z0-9 ]{0,40} PRIVATE KEY(?: BLOCK)?-----';
/**
 * The body of a PEM block: anything but a quote, raw (the end of a JSON string) or escaped (the
 * end of a string in JSON inside a JSON string), with backslash escapes (`\n` in a JSON log
 * line) taken whole, so a replacement never splits one.
 */
const PEM_BODY = String.raw`(?:[^"\\]|\\[^"])*?`;
/**
 * The rest of a PEM block whose END line is missing (a truncated line): from the line break
 * after BEGIN, base64 and headers. Without the line break it is a mention of the format
 * (`expected -----BEGIN PRIVATE KEY----- at line 1`), not a key.
 */
const PEM_TAIL = String.raw`(?:\r?\n|(?:\\r)?\\n)(?:[A-Za-z0-9+/=:,. \t\r\n-]|\\[nrt])+`;

/**
 * A key that names a credential: the key's last word is one of these. `pass`, `auth` and `pwd`
 * only as whole words (not `bypass`, `oauth`, the shell's `PWD`).
 */
const CREDENTIAL_KEY = [
  'pass(?:words?|wd|phrase|(?<![A-Za-z0-9]pass))',
  'pwd(?<=[_.-]pwd)',
  'secret',
  'token',
  'api[_-]?key',
  '(?:access|private|account|signing|encryption|master)[_-]?key',
  'credentials?',
  'auth(?<![A-Za-z0-9]auth)',
].join('|');

/**
 * The value after a credential key. JSON members (`"password":"…"`, also escaped inside a JSON
 * string) keep their quotes and lose their content; a non-string JSON value is left alone, since
 * replacing it would break the document. After `=` or `:`, a quoted value up to its closing
 * quote, or an unquoted one up to whitespace, a quote, `&` or `;`.
 *
 * A raw `"` right after the separator that is followed by `,` `:` `}` `]` or whitespace is the
 * end of a JSON string (a message ending in `password:`), not an opening quote.
 */
const CREDENTIAL_VALUE = [
  String.raw`"\s*:\s*"(?<secret>(?:[^"\\]|\\.)*)"`,
  String.raw`\\"\s*:\s*\\"(?<secret2>(?:[^"\\]|\\[^"])*)\\"`,
  String.raw`'\s*:\s*'(?<secret3>(?:[^'"\\\r\n]|\\[^"\r\n])*)'`,
  String.raw`\s*(?:=>|:=|=|:)\s*(?:` +
    [
      String.raw`\\"(?<secret4>(?:[^"\\]|\\[^"])*)\\"`,
      String.raw`"(?![\s,:}\]])(?<secret5>(?:[^"\\\r\n]|\\.)*)"`,
      String.raw`'(?<secret6>[^'"\\\r\n]*)'`,
      String.raw`(?!(?:true|false|null)(?![A-Za-z0-9]))(?<secret7>(?:\\[\\/u]|[^\s"'\\&;])+)`,
    ].join('|') +
    ')',
].join('|');

/**
 * Right after a credential key: a key that ends a path (`app/db/password`, `app/db_password`)
 * followed by `: ` is a secret reference in a sentence (`could not resolve
 * dso://app/db/password: secret not found`), not a credential: the next word is the message,
 * not a value. A path-ended key with `=`, a JSON member named by a path (`"app/db/password":"…"`)
 * and every key not inside a path still redact. Checked only where a key matched, and the look
 * back is bounded (a path segment is at most 100 characters here), so a long run of word
 * characters costs no more than before.
 */
const NOT_A_PATH_IN_PROSE = String.raw`(?:(?<!/[A-Za-z0-9_.-]{0,100})|(?!\s*:\s))`;

const HTTP_AUTH_SCHEMES =
  'Bearer|Basic|Token|Bot|Digest|Negotiate|NTLM|ApiKey|SSWS|AWS4-HMAC-SHA256';

function pattern(
  id: RedactionPatternId,
  description: string,
  source: string,
  anchors: readonly string[],
  flags = '',
): RedactionPattern {
  return Object.freeze({
    id,
    description,
    regex: new RegExp(source, `gd${flags}`),
    anchors: Object.freeze([...anchors]),
  });
}

/**
 * The credential formats {@link createRedactor} recognises by default, in the order they are
 * documented. Each replaces the secret part of a match with `[REDACTED]`.
 */
export const REDACTION_PATTERNS: readonly RedactionPattern[] = Object.freeze([
  pattern(
    'private-key',
    'PEM private key blocks (RSA, EC, DSA, OPENSSH, ENCRYPTED, PGP, PKCS#8): the body between BEGIN and END, or to the end of the key text when END is missing',
    `-----BEGIN${PEM_LABEL}(?:(?<secret>${PEM_BODY})-----END${PEM_LABEL}|(?<secret2>${PEM_TAIL}))`,
    ['-----begin'],
  ),
  pattern(
    'age-secret-key',
    'age (and SOPS) secret keys: AGE-SECRET-KEY-1…',
    `${ALNUM_BEFORE}AGE-SECRET-KEY-1[0-9A-Z]{58}`,
    ['age-secret-key-1'],
  ),
  pattern(
    'aws-access-key-id',
    'AWS access key ids: AKIA, ASIA, ABIA, ACCA and 16 more characters',
    `${ALNUM_BEFORE}(?:AKIA|ASIA|ABIA|ACCA)[A-Z0-9]{16}(?![A-Za-z0-9])`,
    ['akia', 'asia', 'abia', 'acca'],
  ),
  pattern(
    'aws-secret-access-key',
    'AWS secret access keys (40 characters) after aws_secret_access_key, SecretAccessKey and the like',
    '(?:secret[_-]?access[_-]?key|aws[_-]?secret[_-]?key)' +
      `${TOKEN_AFTER_KEY}(?<secret>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])`,
    ['secret'],
    'i',
  ),
  pattern(
    'github-token',
    'GitHub tokens: ghp_, gho_, ghu_, ghs_, ghr_ and fine-grained github_pat_',
    `${WORD_BEFORE}(?:gh[pousr]_[A-Za-z0-9]{36,251}|github_pat_[A-Za-z0-9_]{22,255})${WORD_AFTER}`,
    ['ghp_', 'gho_', 'ghu_', 'ghs_', 'ghr_', 'github_pat_'],
  ),
  pattern(
    'gitlab-token',
    'GitLab tokens: glpat-, gldt-, glrt-, glptt-, glcbt-, gloas- and the other gl…- prefixes, runner registration GR1348941…',
    `(?<![A-Za-z0-9_-])(?:gl(?:pat|dt|rt|rtr|ptt|cbt|imt|oas|soat|ffct|agent|ft|wt)-|GR1348941)[A-Za-z0-9_.-]{19,}[A-Za-z0-9_]`,
    [
      'glpat-',
      'gldt-',
      'glrt-',
      'glrtr-',
      'glptt-',
      'glcbt-',
      'glimt-',
      'gloas-',
      'glsoat-',
      'glffct-',
      'glagent-',
      'glft-',
      'glwt-',
      'gr1348941',
    ],
  ),
  pattern(
    'slack-token',
    'Slack tokens: xoxb-, xoxp-, xoxa-, xoxr-, xoxs-, xoxo-, xoxe-, and app tokens xapp-',
    `${ALNUM_BEFORE}(?:xox(?:[abposr]|e(?:\\.xox[bp])?)-[A-Za-z0-9-]{10,}|xapp-[0-9]-[A-Za-z0-9-]{10,})`,
    ['xoxa-', 'xoxb-', 'xoxp-', 'xoxo-', 'xoxs-', 'xoxr-', 'xoxe', 'xapp-'],
  ),
  pattern(
    'slack-webhook',
    'Slack incoming webhook URLs: the path after hooks.slack.com/services/ (or workflows/, triggers/)',
    String.raw`hooks\.slack\.com(?:\\?/)(?:services|workflows|triggers)(?:\\?/)(?<secret>[A-Za-z0-9_+-]+(?:(?:\\?/)[A-Za-z0-9_+-]+)*)`,
    ['hooks.slack.com'],
  ),
  pattern(
    'stripe-key',
    'Stripe secret and restricted keys (sk_live_, sk_test_, rk_live_, rk_test_) and webhook secrets (whsec_)',
    `${ALNUM_BEFORE}(?:[sr]k_(?:live|test)_[A-Za-z0-9]{10,247}|whsec_[A-Za-z0-9]{24,})(?![A-Za-z0-9])`,
    ['sk_live_', 'sk_test_', 'rk_live_', 'rk_test_', 'whsec_'],
  ),
  pattern(
    'google-api-key',
    'Google API keys: AIza and 35 more characters',
    '(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])',
    ['aiza'],
  ),
  pattern(
    'google-oauth',
    'Google OAuth client secrets (GOCSPX-), access tokens (ya29.) and refresh tokens (1//0…)',
    '(?<![A-Za-z0-9_-])(?:GOCSPX-[A-Za-z0-9_-]{28}|ya29\\.[0-9A-Za-z_-]{20,}|1//0[0-9A-Za-z_-]{40,})',
    ['gocspx-', 'ya29.', '1//0'],
  ),
  pattern(
    'npm-token',
    'npm access tokens: npm_ and 36 more characters',
    `${WORD_BEFORE}npm_[A-Za-z0-9]{36}(?![A-Za-z0-9])`,
    ['npm_'],
  ),
  pattern(
    'pypi-token',
    'PyPI API tokens: pypi-AgEIcHlwaS5vcmc…',
    'pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{50,}',
    ['pypi-ageichlwas5vcmc'],
  ),
  pattern(
    'docker-hub-token',
    'Docker Hub personal and organisation access tokens: dckr_pat_, dckr_oat_',
    `${WORD_BEFORE}dckr_(?:pat|oat)_[A-Za-z0-9_-]{20,}`,
    ['dckr_pat_', 'dckr_oat_'],
  ),
  pattern(
    'vault-token',
    'HashiCorp Vault tokens: hvs., hvb., hvr.',
    '(?<![A-Za-z0-9_.-])hv[sbr]\\.[A-Za-z0-9_-]{24,}',
    ['hvs.', 'hvb.', 'hvr.'],
  ),
  pattern(
    'ai-api-key',
    'OpenAI and Anthropic API keys: sk-, sk-proj-, sk-svcacct-, sk-ant-api03- … (32 or more characters after sk-)',
    '(?<![A-Za-z0-9_-])sk-[A-Za-z0-9_-]{32,}',
    ['sk-'],
  ),
  pattern(
    'sendgrid-key',
    'SendGrid API keys: SG.<22>.<43>',
    `${ALNUM_BEFORE}SG\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])`,
    ['sg.'],
  ),
  pattern(
    'jwt',
    'JSON Web Tokens: three base64url segments, the first starting eyJ',
    '(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]{10,}\\.[A-Za-z0-9_-]*',
    ['eyj'],
  ),
  pattern(
    'authorization-header',
    'HTTP credentials: the value of an Authorization header after its scheme (Bearer, Basic, …), and any "Bearer <token>"',
    // The scheme, when there is one, is kept; without the lookahead a second pass over
    // `Bearer [REDACTED]` would take `Bearer` for the credential.
    String.raw`(?<![A-Za-z0-9])(?:authorization${TOKEN_AFTER_KEY}(?:(?:${HTTP_AUTH_SCHEMES})\s+|(?!(?:${HTTP_AUTH_SCHEMES})\s))` +
      String.raw`(?<secret>[A-Za-z0-9._~+/-]+=*)|bearer\s+(?<secret2>[A-Za-z0-9._~+/-]{16,}=*))`,
    ['authorization', 'bearer'],
    'i',
  ),
  pattern(
    'credential-pair',
    'The value of a key that names a credential (password, passwd, pwd, secret, token, api_key, access_key, private_key, credentials, auth, and keys ending in them) in key=value, key: value and JSON',
    `(?:${CREDENTIAL_KEY})${NOT_A_PATH_IN_PROSE}(?:${CREDENTIAL_VALUE})`,
    ['pass', 'pwd', 'secret', 'token', 'key', 'credential', 'auth'],
    'i',
  ),
  pattern(
    'url-credentials',
    'The password in a URL: scheme://user:password@host keeps scheme, user and host (dso:// and dsofile:// references are not URLs)',
    String.raw`:(?://|\\/\\/)(?<=[A-Za-z0-9+.-]:(?:\\?/){2})(?<!(?<![A-Za-z0-9+.-])dso(?:file)?:(?:\\?/){2})[^\s:@/?#"'\\]*:(?<secret>[^\s/?#"'\\]+)@`,
    ['://', ':\\/\\/'],
  ),
]);

const PATTERNS_BY_ID: ReadonlyMap<string, RedactionPattern> = new Map(
  REDACTION_PATTERNS.map((entry) => [entry.id, entry]),
);

/** The ids of {@link REDACTION_PATTERNS}, in order. */
export const REDACTION_PATTERN_IDS: readonly RedactionPatternId[] = Object.freeze(
  REDACTION_PATTERNS.map((entry) => entry.id),
);

/**
 * A selection of patterns ready to run, with one automaton for all their anchors: a
 * deterministic Aho–Corasick machine over ASCII folded to lower case, so that one pass over the
 * text, one table lookup a character, tells which patterns can match. Internal to this package
 * (used by `createRedactor`), like {@link compilePatterns} and {@link findPatternRanges}.
 */
export interface PatternSet {
  readonly patterns: readonly RedactionPattern[];
  /** The column of each ASCII code unit; letters fold to lower case; 0 for any other unit. */
  readonly columnOf: Uint8Array;
  readonly columns: number;
  /** `next[state * columns + column]`: the state after reading a unit in that column. */
  readonly next: Uint16Array;
  /** Bit `i` set when pattern `i`'s anchor ends at the state. */
  readonly found: Uint32Array;
}

/**
 * Resolves a selection (`true`: all, `false`: none, or ids) into a {@link PatternSet}.
 *
 * @throws TypeError when an id is not one of {@link REDACTION_PATTERN_IDS}
 */
export function compilePatterns(selection: boolean | readonly RedactionPatternId[]): PatternSet {
  let patterns: RedactionPattern[];
  if (selection === true) patterns = [...REDACTION_PATTERNS];
  else if (selection === false) patterns = [];
  else if (Array.isArray(selection)) {
    patterns = [];
    for (const id of new Set(selection)) {
      const found = PATTERNS_BY_ID.get(id);
      if (found === undefined) {
        throw new TypeError(
          `unknown redaction pattern ${JSON.stringify(id)}; known: ${REDACTION_PATTERN_IDS.join(', ')}`,
        );
      }
      patterns.push(found);
    }
  } else {
    throw new TypeError('patterns must be true, false or an array of pattern ids');
  }
  return { patterns, ...buildAnchorMachine(patterns) };
}

function buildAnchorMachine(patterns: readonly RedactionPattern[]) {
  // One bit per pattern in a Uint32: the table has fewer than 32 entries.
  if (patterns.length > 32) throw new RangeError('at most 32 patterns fit one anchor machine');
  const columnOf = new Uint8Array(128);
  let columns = 1;
  for (const { anchors } of patterns) {
    for (const anchor of anchors) {
      for (let i = 0; i < anchor.length; i++) {
        const code = anchor.charCodeAt(i);
        if (code >= 128 || (code >= 0x41 && code <= 0x5a)) {
          throw new RangeError(`anchor ${JSON.stringify(anchor)} is not lower-case ASCII`);
        }
        if (columnOf[code] === 0) columnOf[code] = columns++;
      }
    }
  }
  for (let upper = 0x41; upper <= 0x5a; upper++) columnOf[upper] = columnOf[upper + 0x20]!;

  // The trie, then breadth-first: fail links, and every missing edge filled from the fail
  // state's, which makes the machine deterministic.
  const edges: number[][] = [new Array<number>(columns).fill(-1)];
  const found: number[] = [0];
  patterns.forEach(({ anchors }, index) => {
    for (const anchor of anchors) {
      let state = 0;
      for (let i = 0; i < anchor.length; i++) {
        const column = columnOf[anchor.charCodeAt(i)]!;
        let child = edges[state]![column]!;
        if (child === -1) {
          child = edges.length;
          edges.push(new Array<number>(columns).fill(-1));
          found.push(0);
          edges[state]![column] = child;
        }
        state = child;
      }
      found[state]! |= 1 << index;
    }
  });
  const states = edges.length;
  const next = new Uint16Array(states * columns);
  const output = new Uint32Array(states);
  const fail = new Int32Array(states);
  const queue: number[] = [];
  for (let column = 0; column < columns; column++) {
    const child = edges[0]![column]!;
    if (child === -1) continue;
    next[column] = child;
    queue.push(child);
  }
  output[0] = found[0]!;
  for (let head = 0; head < queue.length; head++) {
    const state = queue[head]!;
    output[state] = (found[state]! | output[fail[state]!]!) >>> 0;
    for (let column = 0; column < columns; column++) {
      const child = edges[state]![column]!;
      const viaFail = next[fail[state]! * columns + column]!;
      if (child === -1) {
        next[state * columns + column] = viaFail;
      } else {
        next[state * columns + column] = child;
        fail[child] = viaFail;
        queue.push(child);
      }
    }
  }
  return { columnOf, columns, next, found: output };
}

/**
 * Appends `[start, end)` pairs to `ranges` for every secret part the patterns find in `text`.
 * Ranges may overlap and come in no particular order.
 */
export function findPatternRanges(text: string, set: PatternSet, ranges: number[]): void {
  const { patterns, columnOf, columns, next, found } = set;
  if (patterns.length === 0) return;
  let state = 0;
  let candidates = 0;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    state = next[state * columns + (code < 128 ? columnOf[code]! : 0)]!;
    candidates |= found[state]!;
  }
  if (candidates === 0) return;
  for (let index = 0; index < patterns.length; index++) {
    if ((candidates >>> index) & 1) matchPattern(text, patterns[index]!.regex, ranges);
  }
}

function matchPattern(text: string, regex: RegExp, ranges: number[]): void {
  // The RegExp objects are shared by every redactor; this loop never yields, so resetting
  // lastIndex first is enough to make that safe.
  regex.lastIndex = 0;
  for (let match = regex.exec(text); match !== null; match = regex.exec(text)) {
    if (match[0].length === 0) {
      regex.lastIndex++;
      continue;
    }
    const groups = match.indices?.groups;
    let partial = false;
    if (groups !== undefined) {
      for (const name in groups) {
        if (!name.startsWith('secret')) continue;
        partial = true;
        const span = groups[name];
        if (span !== undefined && span[1] > span[0]) ranges.push(span[0], span[1]);
      }
    }
    if (!partial) ranges.push(match.index, match.index + match[0].length);
  }
  regex.lastIndex = 0;
}
