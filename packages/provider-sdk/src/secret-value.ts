import { inspect } from 'node:util';

const REDACTED = '[REDACTED]';

// A global symbol, so values from a second copy of this package are still recognised.
const SECRET_VALUE = Symbol.for('dso.secret-value');

/**
 * A secret's bytes, wrapped so they cannot reach a log line, an error message or JSON by accident.
 * Printing, string conversion, `JSON.stringify` and `util.inspect` all yield `[REDACTED]`; the
 * bytes come out only through {@link SecretValue.reveal} or {@link SecretValue.revealText}.
 *
 * @example
 * const value = SecretValue.fromText('hunter2');
 * `${value}`;                // '[REDACTED]'
 * value.revealText();        // 'hunter2'
 * value.dispose();           // zeroes the bytes
 */
export class SecretValue {
  readonly #bytes: Buffer;
  #disposed = false;
  #onDispose: Array<() => void> | undefined;

  private constructor(bytes: Buffer) {
    this.#bytes = bytes;
    Object.defineProperty(this, SECRET_VALUE, { value: true });
  }

  /** Takes a copy of `bytes`; the caller may zero its own buffer afterwards. */
  static fromBytes(bytes: Uint8Array): SecretValue {
    return new SecretValue(Buffer.from(bytes));
  }

  /** Encodes `text` as UTF-8. */
  static fromText(text: string): SecretValue {
    return new SecretValue(Buffer.from(text, 'utf8'));
  }

  /** Size in bytes; safe to log. */
  get byteLength(): number {
    return this.#bytes.byteLength;
  }

  /**
   * The secret's bytes. The buffer is the value's own: do not keep it past {@link dispose}.
   * @throws TypeError when the value was disposed
   */
  reveal(): Buffer {
    this.#assertLive();
    return this.#bytes;
  }

  /**
   * The secret decoded as UTF-8.
   * @throws TypeError when the value was disposed
   */
  revealText(): string {
    this.#assertLive();
    return this.#bytes.toString('utf8');
  }

  /**
   * Runs `callback` once, when the value is disposed (at once if it already was): ties what
   * exists only because this value does, such as a redactor's registration of it, to its life.
   *
   * @example
   * const lease = redactor.register(value.reveal());
   * value.onDispose(() => lease.release());
   */
  onDispose(callback: () => void): void {
    if (this.#disposed) {
      callback();
      return;
    }
    this.#onDispose ??= [];
    this.#onDispose.push(callback);
  }

  /** Zeroes the bytes and runs the {@link onDispose} callbacks. Idempotent. */
  dispose(): void {
    this.#bytes.fill(0);
    this.#disposed = true;
    const callbacks = this.#onDispose;
    this.#onDispose = undefined;
    for (const callback of callbacks ?? []) callback();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  toString(): string {
    return REDACTED;
  }

  toJSON(): string {
    return REDACTED;
  }

  [Symbol.toPrimitive](): string {
    return REDACTED;
  }

  [inspect.custom](): string {
    return `SecretValue(${REDACTED})`;
  }

  #assertLive(): void {
    if (this.#disposed) throw new TypeError('SecretValue was disposed');
  }
}

/** True for a {@link SecretValue}, from any copy of this package. */
export function isSecretValue(value: unknown): value is SecretValue {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[SECRET_VALUE] === true
  );
}
