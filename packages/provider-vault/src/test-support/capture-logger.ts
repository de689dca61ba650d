import type { ProviderLogger } from '@dso/provider-sdk';

/** One line a provider logged. */
export interface CapturedLine {
  level: 'debug' | 'info' | 'warn' | 'error';
  message: string;
  fields?: Record<string, unknown>;
}

/**
 * A logger that keeps every line, for tests that assert what was (and was not) logged.
 *
 * @example
 * const capture = createCaptureLogger();
 * await createVaultProvider(config, { log: capture.log });
 * expect(capture.text()).not.toContain(token);
 */
export function createCaptureLogger(): {
  log: ProviderLogger;
  lines: CapturedLine[];
  /** Every line as JSON, one per line: what a search for a leaked value should look through. */
  text(): string;
} {
  const lines: CapturedLine[] = [];
  const at =
    (level: CapturedLine['level']) => (message: string, fields?: Record<string, unknown>) => {
      lines.push(fields === undefined ? { level, message } : { level, message, fields });
    };
  return {
    log: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') },
    lines,
    text: () => lines.map((line) => JSON.stringify(line)).join('\n'),
  };
}

/** An error and its whole `cause` chain as text, own properties included. */
export function serialiseError(error: unknown): string {
  const parts: string[] = [];
  let current: unknown = error;
  for (let depth = 0; depth < 10 && current !== undefined && current !== null; depth += 1) {
    if (current instanceof Error) {
      parts.push(current.name, current.message, String(current.stack));
      parts.push(JSON.stringify(current, Object.getOwnPropertyNames(current)));
    } else {
      parts.push(JSON.stringify(current) ?? String(current));
    }
    current = (current as { cause?: unknown }).cause;
  }
  return parts.join('\n');
}
