import { randomBytes } from 'node:crypto';
import { inspect } from 'node:util';

/** A value that must never show up in an error, a cause or a log line. */
export function canary(): string {
  return `canary-${randomBytes(8).toString('hex')}`;
}

/**
 * Everything an error could reveal: its inspection with hidden properties, its cause chain,
 * and its JSON form.
 */
export function dump(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 10 && current !== undefined && current !== null; depth += 1) {
    parts.push(inspect(current, { depth: 10, showHidden: true, getters: true }));
    if (current instanceof Error) {
      parts.push(current.message, current.stack ?? '');
      parts.push(JSON.stringify(current, Object.getOwnPropertyNames(current)) ?? '');
    }
    current = (current as { cause?: unknown }).cause;
  }
  return parts.join('\n');
}
