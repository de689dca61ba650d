import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';

/** The parts of an `Authorization: AWS4-HMAC-SHA256 …` header. */
export interface ParsedAuthorization {
  accessKeyId: string;
  /** `YYYYMMDD` of the credential scope. */
  date: string;
  region: string;
  service: string;
  signedHeaders: string[];
  signature: string;
}

const ALGORITHM = 'AWS4-HMAC-SHA256';

/**
 * Parses a SigV4 `Authorization` header, or returns a reason it is malformed (worded as AWS's
 * IncompleteSignatureException messages are).
 */
export function parseAuthorization(header: string): ParsedAuthorization | string {
  if (!header.startsWith(`${ALGORITHM} `)) {
    return `Authorization header requires ${ALGORITHM} as its algorithm`;
  }
  const fields = new Map<string, string>();
  for (const part of header.slice(ALGORITHM.length + 1).split(',')) {
    const trimmed = part.trim();
    const equals = trimmed.indexOf('=');
    if (equals > 0) fields.set(trimmed.slice(0, equals), trimmed.slice(equals + 1));
  }
  const credential = fields.get('Credential');
  const signedHeaders = fields.get('SignedHeaders');
  const signature = fields.get('Signature');
  if (credential === undefined || signedHeaders === undefined || signature === undefined) {
    return "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters";
  }
  const scope = credential.split('/');
  if (scope.length !== 5 || scope[4] !== 'aws4_request') {
    return 'Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/aws4_request';
  }
  const [accessKeyId = '', date = '', region = '', service = ''] = scope;
  if (!/^[0-9a-f]{64}$/.test(signature)) return 'Signature must be 64 hexadecimal characters';
  return {
    accessKeyId,
    date,
    region,
    service,
    signedHeaders: signedHeaders.split(';'),
    signature,
  };
}

/**
 * Recomputes a SigV4 signature the way AWS does for a JSON-protocol request (no query string,
 * the body hashed as sent) and compares it in constant time.
 */
export function verifySignature(options: {
  method: string;
  path: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  authorization: ParsedAuthorization;
  amzDate: string;
  secretAccessKey: string;
}): boolean {
  const { authorization, headers } = options;
  const canonicalHeaders = authorization.signedHeaders
    .map((name) => {
      const raw = headers[name];
      const value = Array.isArray(raw) ? raw.join(',') : (raw ?? '');
      return `${name}:${value.trim().replace(/\s+/g, ' ')}\n`;
    })
    .join('');
  const canonicalRequest = [
    options.method,
    canonicalPath(options.path),
    '',
    canonicalHeaders,
    authorization.signedHeaders.join(';'),
    sha256Hex(options.body),
  ].join('\n');
  const scope = `${authorization.date}/${authorization.region}/${authorization.service}/aws4_request`;
  const stringToSign = [ALGORITHM, options.amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const kDate = hmac(`AWS4${options.secretAccessKey}`, authorization.date);
  const kRegion = hmac(kDate, authorization.region);
  const kService = hmac(kRegion, authorization.service);
  const kSigning = hmac(kService, 'aws4_request');
  const expected = createHmac('sha256', kSigning).update(stringToSign).digest();
  const given = Buffer.from(authorization.signature, 'hex');
  return given.length === expected.length && timingSafeEqual(given, expected);
}

/** `20240131T235959Z` → epoch ms, or undefined when malformed. */
export function parseAmzDate(value: string): number | undefined {
  const match = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/.exec(value);
  if (match === null) return undefined;
  const [, year, month, day, hour, minute, second] = match.map(Number) as number[];
  return Date.UTC(year ?? 0, (month ?? 1) - 1, day, hour, minute, second);
}

/** Epoch ms → `20240131T235959Z`. */
export function formatAmzDate(ms: number): string {
  return new Date(ms)
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

// Services other than S3 sign the normalised path with each segment URI-encoded twice; for
// the `/` every JSON-protocol call uses, that is `/`.
function canonicalPath(path: string): string {
  const segments = path
    .split('/')
    .map((segment) => encodeURIComponent(encodeURIComponent(decodeURIComponent(segment))));
  return segments.join('/') || '/';
}

function sha256Hex(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

function hmac(key: string | Buffer, data: string): Buffer {
  return createHmac('sha256', key).update(data).digest();
}
