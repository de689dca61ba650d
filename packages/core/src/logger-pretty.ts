import type { DestinationStream } from 'pino';
import type { Redactor } from './redaction.js';

/** Options of {@link createPrettyDestination}. */
export interface PrettyDestinationOptions {
  /** Where the readable lines go. */
  target: DestinationStream;
  /** Every readable line passes through it again before it is written. */
  redactor: Redactor;
  /** ANSI colours for the level and the field names. */
  color: boolean;
}

/** pino's numeric levels, as a person reads them (padded to one width). */
const LEVEL_NAMES: Readonly<Record<number, string>> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO ',
  40: 'WARN ',
  50: 'ERROR',
  60: 'FATAL',
};
const LEVEL_COLORS: Readonly<Record<number, string>> = {
  10: '90',
  20: '36',
  30: '32',
  40: '33',
  50: '31',
  60: '1;31',
};

/** Fields every line has, or that say nothing to a person at a terminal. */
const HIDDEN_FIELDS = new Set(['time', 'level', 'msg', 'pid', 'hostname', 'name', 'v']);

/** C0 and C1 control characters: never written raw, so a field cannot drive the terminal. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: matching them is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;

/**
 * A destination that turns pino's JSON lines into one readable line each:
 * `12:04:05.123 WARN  message key=value …`. It receives lines after the logger's redactor
 * (pino's `streamWrite` hook) and redacts the readable line once more, so decoding JSON escapes
 * never brings back anything the redactor would catch. Control characters in messages and
 * fields are written escaped: nothing a container or store names can move the cursor or change
 * colours. An error field prints its type, code and message; its stack only when it has no code
 * (an unexpected failure), indented under the line.
 */
export function createPrettyDestination(options: PrettyDestinationOptions): DestinationStream {
  const { target, redactor, color } = options;
  const paint = (code: string, text: string) => (color ? `\u001b[${code}m${text}\u001b[0m` : text);
  return {
    write(line: string) {
      let record: Record<string, unknown>;
      try {
        record = JSON.parse(line) as Record<string, unknown>;
      } catch {
        // Not a JSON line (never from pino): written as it came, already redacted.
        target.write(line);
        return;
      }
      const level = typeof record.level === 'number' ? record.level : 30;
      const time = typeof record.time === 'number' ? clock(record.time) : '';
      const parts = [
        paint('90', time),
        paint(LEVEL_COLORS[level] ?? '0', LEVEL_NAMES[level] ?? String(record.level)),
        escapeControl(typeof record.msg === 'string' ? record.msg : ''),
      ];
      let stack: string | undefined;
      for (const [key, value] of Object.entries(record)) {
        if (HIDDEN_FIELDS.has(key) || value === undefined) continue;
        if ((key === 'err' || key === 'error') && isErrorRecord(value)) {
          parts.push(`${paint('2', `${key}=`)}${formatValue(describeError(value))}`);
          if (value.code === undefined && typeof value.stack === 'string') stack = value.stack;
          continue;
        }
        parts.push(`${paint('2', `${key}=`)}${formatValue(value)}`);
      }
      let text = parts.filter((part) => part !== '').join(' ');
      if (stack !== undefined) {
        const indented = stack
          .split('\n')
          .slice(1)
          .map((frame) => `    ${escapeControl(frame.trim())}`)
          .join('\n');
        if (indented !== '') text += `\n${paint('90', indented)}`;
      }
      target.write(`${redactor.redact(text)}\n`);
    },
  };
}

function clock(epochMs: number): string {
  const date = new Date(epochMs);
  const pad = (value: number, width = 2) => String(value).padStart(width, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

interface ErrorRecord {
  type?: unknown;
  message?: unknown;
  code?: unknown;
  stack?: unknown;
}

function isErrorRecord(value: unknown): value is ErrorRecord {
  return typeof value === 'object' && value !== null && 'message' in value;
}

function describeError(error: ErrorRecord): string {
  const message = typeof error.message === 'string' ? error.message : String(error.message);
  const type = typeof error.type === 'string' && error.type !== 'Error' ? `${error.type}: ` : '';
  return `${type}${message}`;
}

/** A bare word when it reads unambiguously, else JSON (quoted, control characters escaped). */
function formatValue(value: unknown): string {
  if (typeof value === 'string') {
    return /^[^\s"'=]+$/.test(value) && !CONTROL.test(value) ? value : JSON.stringify(value);
  }
  if (typeof value === 'number' || typeof value === 'boolean' || value === null) {
    return String(value);
  }
  return escapeControl(JSON.stringify(value) ?? String(value));
}

function escapeControl(text: string): string {
  if (!CONTROL.test(text)) return text;
  return text.replace(
    new RegExp(CONTROL.source, 'g'),
    (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`,
  );
}
