import type { Readable } from 'node:stream';
import { DsoError } from '@dso/core';

/** The largest value `dso secret set` accepts: 1 MiB, the provider protocol's message bound. */
export const MAX_SECRET_BYTES = 1024 * 1024;

/**
 * Reads a secret value from a pipe: every byte up to end of input, at most `maxBytes`. One
 * trailing newline (`\n` or `\r\n`) is dropped unless `keepNewline`, since `echo` adds one.
 *
 * @throws DsoError DSO_CLI_VALUE_TOO_LARGE past `maxBytes`; DSO_CLI_VALUE_EMPTY when nothing was read
 */
export async function readSecretFromStream(
  input: Readable,
  { maxBytes = MAX_SECRET_BYTES, keepNewline = false } = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of input) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      size += buffer.byteLength;
      chunks.push(buffer);
      if (size > maxBytes) {
        throw new DsoError(
          'DSO_CLI_VALUE_TOO_LARGE',
          `the value on stdin is larger than ${maxBytes} bytes; DSO keeps secrets up to 1 MiB`,
        );
      }
    }
    // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool, so zeroing it
    // below zeroes every copy of the value this function made.
    const joined = Buffer.allocUnsafeSlow(size);
    let offset = 0;
    for (const chunk of chunks) offset += chunk.copy(joined, offset);
    let value = joined;
    if (!keepNewline) {
      if (value.subarray(-2).toString() === '\r\n') value = value.subarray(0, -2);
      else if (value.subarray(-1).toString() === '\n') value = value.subarray(0, -1);
    }
    if (value.byteLength === 0) {
      throw new DsoError(
        'DSO_CLI_VALUE_EMPTY',
        'nothing was read from stdin: pipe the value in, e.g. `printf %s "$VALUE" | dso secret set app/db`',
      );
    }
    const result = Buffer.from(value);
    joined.fill(0);
    return result;
  } finally {
    for (const chunk of chunks) chunk.fill(0);
  }
}

/**
 * Asks for a value on a terminal without echoing it. Enter ends it, Backspace erases,
 * Ctrl-C or Ctrl-D on an empty line cancels.
 *
 * @throws DsoError DSO_CLI_CANCELLED when cancelled
 */
export function readHiddenLine(
  prompt: string,
  input: NodeJS.ReadStream,
  output: NodeJS.WritableStream,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const bytes: number[] = [];
    output.write(prompt);
    input.setRawMode(true);
    input.resume();
    const finish = (error?: Error) => {
      input.setRawMode(false);
      input.pause();
      input.removeListener('data', onData);
      output.write('\n');
      const value = Buffer.from(bytes);
      bytes.fill(0);
      if (error) reject(error);
      else resolve(value);
    };
    const onData = (chunk: Buffer) => {
      try {
        for (const byte of chunk) {
          if (byte === 0x03 || (byte === 0x04 && bytes.length === 0)) {
            finish(new DsoError('DSO_CLI_CANCELLED', 'cancelled'));
            return;
          }
          if (byte === 0x0d || byte === 0x0a) {
            finish();
            return;
          }
          if (byte === 0x7f || byte === 0x08) bytes.pop();
          else bytes.push(byte);
        }
      } finally {
        chunk.fill(0);
      }
    };
    input.on('data', onData);
  });
}
