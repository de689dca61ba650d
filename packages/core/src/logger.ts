import { type DestinationStream, type Logger as PinoLogger, pino } from 'pino';
import { DsoError } from './errors.js';
import { createPrettyDestination } from './logger-pretty.js';
import { createRedactor, type Redactor } from './redaction.js';

/** DSO's logger: pino's, so every pino method, child logger and level works unchanged. */
export type Logger = PinoLogger;

/** The level {@link createLogger} logs at when none is given. */
export const DEFAULT_LOG_LEVEL = 'info';

/** The levels {@link createLogger} accepts, most verbose first, plus `silent`. */
export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;

/**
 * How lines are written: `json` one JSON object a line, `pretty` one readable line, `auto`
 * pretty on a terminal and JSON elsewhere.
 */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;

/** One of {@link LOG_FORMATS}. */
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /**
   * The lowest level written: one of {@link LOG_LEVELS}.
   * @default 'info'
   */
  level?: string;
  /**
   * Every finished line passes through `redactor.redact` before it is written, so no
   * registered value, and no credential of a well-known format (unless the redactor was made
   * with `patterns: false`), reaches the destination in any message, field, error message or
   * stack. Without one, lines still pass through a redactor of its own that has no values:
   * well-known credential formats are redacted, and `SecretValue`s print `[REDACTED]`
   * themselves.
   * @default a redactor with no registered values and every pattern
   */
  redactor?: Redactor;
  /**
   * Where lines go.
   * @default standard output
   */
  destination?: DestinationStream;
  /**
   * `json`, `pretty` (time, level, message and fields on one line; the JSON line is redacted
   * first, the readable line once more), or `auto`: pretty when no `destination` is given and
   * standard output is a terminal.
   * @default 'json'
   */
  format?: LogFormat;
  /**
   * ANSI colours in `pretty` lines.
   * @default standard output is a terminal and `NO_COLOR` is not set
   */
  color?: boolean;
  /** The logger's name, written as `name` on every line. */
  name?: string;
  /**
   * Fields written on every line, replacing pino's default `pid` and `hostname`.
   * @default { pid, hostname }
   */
  base?: Record<string, unknown>;
}

/**
 * Creates a logger writing JSON lines, or readable lines with `format: 'pretty'`. Errors under `err` or `error` are serialised with pino's
 * standard error serializer (type, message, stack, causes, code and other own fields); a
 * `SecretValue` anywhere prints `[REDACTED]`.
 *
 * Redaction happens on the serialised line (pino's `hooks.streamWrite`), after every
 * serializer, child binding and message formatting: there is no field or level that escapes
 * it. Values registered after a line is written are not removed from it.
 *
 * @example
 * const redactor = createRedactor();
 * const logger = createLogger({ level: 'debug', redactor, name: 'agent' });
 * redactor.register(value.revealText());
 * logger.info({ provider: 'vault', containerId, files: 3 }, 'secrets injected');
 * @throws DsoError DSO_LOG_LEVEL_INVALID when `level` is not one of {@link LOG_LEVELS}
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  const level = options.level ?? DEFAULT_LOG_LEVEL;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new DsoError(
      'DSO_LOG_LEVEL_INVALID',
      `log level ${JSON.stringify(level)} is not known; use one of ${LOG_LEVELS.join(', ')}`,
      { level },
    );
  }
  const redactor = options.redactor ?? createRedactor();
  const format = options.format ?? 'json';
  if (!(LOG_FORMATS as readonly string[]).includes(format)) {
    throw new DsoError(
      'DSO_LOG_FORMAT_INVALID',
      `log format ${JSON.stringify(format)} is not known; use one of ${LOG_FORMATS.join(', ')}`,
      { format },
    );
  }
  const terminal = process.stdout.isTTY === true;
  const pretty = format === 'pretty' || (format === 'auto' && !options.destination && terminal);
  const destination = pretty
    ? createPrettyDestination({
        // Synchronous on standard output: a line written just before exit is not lost.
        target: options.destination ?? pino.destination({ dest: 1, sync: true }),
        redactor,
        color: options.color ?? (terminal && !process.env.NO_COLOR),
      })
    : options.destination;
  return pino(
    {
      level,
      ...(options.name === undefined ? {} : { name: options.name }),
      ...(options.base === undefined ? {} : { base: options.base }),
      serializers: { err: pino.stdSerializers.err, error: pino.stdSerializers.err },
      hooks: { streamWrite: (line: string) => redactor.redact(line) },
    },
    destination,
  );
}
