import { randomBytes, randomInt } from 'node:crypto';
import { inspect } from 'node:util';
import { isProviderError, type ProviderError, type ProviderErrorCode } from '@dso/provider-sdk';

/**
 * A failed conformance expectation. Its message says what the provider did and what the
 * contract wants; it never quotes a secret value the suite stored.
 */
export class ConformanceError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConformanceError';
  }
}

/** Throws a {@link ConformanceError} with `message` unless `condition` holds. */
export function check(condition: unknown, message: string): asserts condition {
  if (!condition) throw new ConformanceError(message);
}

/** Lowercase letters and digits, `length` of them: safe in every path and every store. */
export function randomId(length = 12): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  let id = '';
  for (let index = 0; index < length; index += 1) id += alphabet[randomInt(alphabet.length)];
  return id;
}

/**
 * A canary: `canary-` and 17 random characters, 24 in all. A multiple of three, so base64 of the
 * canary repeated is the canary's base64 repeated, and any excerpt of an encoded value made of
 * canaries still contains a findable needle.
 */
export function createCanary(): string {
  return `canary-${randomId(17)}`;
}

/** `length` random printable ASCII bytes (a text value that survives every store). */
export function randomText(length: number): string {
  const bytes = randomBytes(length);
  let text = '';
  // 0x21..0x7e: printable, no space, so a value never trims differently in any store.
  for (const byte of bytes) text += String.fromCharCode(0x21 + (byte % 94));
  return text;
}

/** Every byte value 0..255 once in order, then once more shuffled: 512 bytes. */
export function allByteValues(): Uint8Array {
  const ordered = Array.from({ length: 256 }, (_, index) => index);
  const shuffled = [...ordered];
  for (let index = shuffled.length - 1; index > 0; index -= 1) {
    const other = randomInt(index + 1);
    [shuffled[index], shuffled[other]] = [shuffled[other]!, shuffled[index]!];
  }
  return Uint8Array.from([...ordered, ...shuffled]);
}

/** Bytes of `value`: UTF-8 for a string. */
export function toBytes(value: Uint8Array | string): Uint8Array {
  return typeof value === 'string' ? new TextEncoder().encode(value) : value;
}

/** Whether two byte sequences are equal. */
export function sameBytes(left: Uint8Array, right: Uint8Array): boolean {
  return Buffer.from(left.buffer, left.byteOffset, left.byteLength).equals(
    Buffer.from(right.buffer, right.byteOffset, right.byteLength),
  );
}

/**
 * A version id shaped like `version` (digits stay digits, hex stays hex, dashes stay) that
 * the store has almost certainly never issued: what "an unknown version" means for any store.
 */
export function unknownVersionLike(version: string, avoid: readonly string[] = []): string {
  for (;;) {
    let candidate: string;
    if (/^[0-9]+$/.test(version)) {
      candidate = (BigInt(version) + 1_000_000n + BigInt(randomInt(1_000_000))).toString();
    } else {
      candidate = version.replace(/[0-9a-zA-Z]/g, (char) => {
        if (/[0-9]/.test(char)) return String(randomInt(10));
        const hex = /[a-fA-F]/.test(char);
        const pool = hex ? 'abcdef0123456789' : 'abcdefghijklmnopqrstuvwxyz';
        const picked = pool[randomInt(pool.length)]!;
        return char === char.toUpperCase() ? picked.toUpperCase() : picked;
      });
      if (candidate === '') candidate = `unknown-${randomId(8)}`;
    }
    if (candidate !== version && !avoid.includes(candidate)) return candidate;
  }
}

/** The outcome of a promise, without throwing. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** Waits for `promise` and reports how it settled. */
export function settle<T>(promise: Promise<T>): Promise<Settled<T>> {
  return promise.then(
    (value) => ({ ok: true as const, value }),
    (error: unknown) => ({ ok: false as const, error }),
  );
}

/**
 * `promise`, or a {@link ConformanceError} naming `what` when it has not settled within `ms`:
 * how the suite proves that nothing hangs.
 */
export async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new ConformanceError(`${what} did not settle within ${ms} ms`)),
      ms,
    );
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Runs `attempt` until it resolves, or throws its last error once `ms` have passed: for
 * recovery, which a store may take a moment to show. Not a retry of flaky work: the condition
 * is what is waited for.
 */
export async function eventually<T>(
  attempt: () => Promise<T>,
  ms: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      return await attempt();
    } catch (error) {
      last = error;
    }
    if (Date.now() >= deadline) {
      throw new ConformanceError(`${what}: still failing after ${ms} ms (${describeError(last)})`, {
        cause: last,
      });
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A one-line description of an error for a failure message: its name, code and message. */
export function describeError(error: unknown): string {
  if (isProviderError(error)) {
    return `ProviderError ${error.code} (retryable ${error.retryable}): ${error.message}`;
  }
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return inspect(error, { depth: 2, breakLength: Number.POSITIVE_INFINITY });
}

/** Asserts `error` is a ProviderError (from any copy of the SDK) with `code`, and returns it. */
export function expectProviderError(
  error: unknown,
  code: ProviderErrorCode,
  what: string,
): ProviderError {
  check(
    isProviderError(error),
    `${what}: expected a ProviderError ${code}, got ${describeError(error)}`,
  );
  check(error.code === code, `${what}: expected ${code}, got ${describeError(error)}`);
  check(
    typeof error.message === 'string' && error.message.trim() !== '',
    `${what}: the ${code} error has an empty message; say what failed and what to do`,
  );
  return error;
}

/**
 * Whether `error` is what a cancelled call may reject with: a ProviderError
 * DSO_PROVIDER_TIMEOUT, an `AbortError`, or the signal's own reason.
 */
export function isAbortOutcome(error: unknown, signal?: AbortSignal): boolean {
  if (isProviderError(error)) return error.code === 'DSO_PROVIDER_TIMEOUT';
  if (signal !== undefined && error === signal.reason) return true;
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { name?: unknown }).name === 'AbortError'
  );
}

/**
 * Every form in which an error could show a value to a reader: `String()`, message, stack,
 * `util.inspect` (which prints own properties), JSON of its own properties, and the same for
 * each `cause` and each `errors[]` entry, recursively.
 */
export function serialiseError(error: unknown): string {
  const parts: string[] = [];
  const seen = new Set<unknown>();
  const visit = (value: unknown, depth: number) => {
    if (depth > 16 || seen.has(value)) return;
    seen.add(value);
    parts.push(inspect(value, { depth: 8, showHidden: true, maxStringLength: null }));
    if (typeof value !== 'object' || value === null) {
      parts.push(String(value));
      return;
    }
    const record = value as Record<string, unknown>;
    try {
      parts.push(String(value));
    } catch {
      // An object without a usable toString: inspect above already printed it.
    }
    for (const key of ['message', 'stack', 'detail', 'body'] as const) {
      if (typeof record[key] === 'string') parts.push(record[key]);
    }
    try {
      parts.push(JSON.stringify(value, Object.getOwnPropertyNames(value)));
      parts.push(JSON.stringify(value));
    } catch {
      // A cyclic or unserialisable error: inspect above printed what it holds.
    }
    if ('cause' in record) visit(record.cause, depth + 1);
    if (Array.isArray(record.errors)) for (const inner of record.errors) visit(inner, depth + 1);
  };
  visit(error, 0);
  return parts.join('\n');
}

/**
 * The strings a leak of `value` would show: the value as text (when it is valid UTF-8),
 * base64, base64url and hex. Values under 8 bytes are too short to search for.
 */
export function leakNeedles(value: Uint8Array): string[] {
  if (value.byteLength < 8) return [];
  const buffer = Buffer.from(value);
  const needles = [buffer.toString('base64'), buffer.toString('base64url'), buffer.toString('hex')];
  const text = buffer.toString('utf8');
  if (Buffer.from(text, 'utf8').equals(buffer)) needles.push(text);
  // A value made of printable text may be shown JSON-escaped (a log line's fields).
  if (Buffer.from(text, 'utf8').equals(buffer)) needles.push(JSON.stringify(text).slice(1, -1));
  return [...new Set(needles)];
}

/** The first needle found in `haystack`, or undefined. */
export function findNeedle(haystack: string, needles: readonly string[]): string | undefined {
  return needles.find((needle) => haystack.includes(needle));
}

/** Every string in `value` (object values and array items, recursively) of at least `min` chars. */
export function stringsIn(value: unknown, min = 4): string[] {
  const found: string[] = [];
  const visit = (item: unknown, depth: number) => {
    if (depth > 32) return;
    if (typeof item === 'string') {
      if (item.length >= min) found.push(item);
    } else if (Array.isArray(item)) {
      for (const entry of item) visit(entry, depth + 1);
    } else if (typeof item === 'object' && item !== null) {
      for (const entry of Object.values(item)) visit(entry, depth + 1);
    }
  };
  visit(value, 0);
  return found;
}
