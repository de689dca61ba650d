import { createWriteStream, type WriteStream } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { finished } from 'node:stream/promises';
import { type AuditLineSink, DsoError } from '@dso/core';

/**
 * The audit trail's file, reopened on request so that logrotate can move it away: after a
 * rename, `reopen()` (the agent's SIGHUP, `systemctl reload dso-agent`) starts a new file at
 * the same path and closes the old one once its lines are flushed. No line is lost or split
 * across the two: lines written before the swap go to the old file, after it to the new one.
 */
export interface AuditFile {
  /** Where the audit log writes its lines. */
  readonly sink: AuditLineSink;
  /**
   * Opens the path again (created 0600 when missing) and closes the previous file.
   * @throws DsoError DSO_AGENT_AUDIT_UNAVAILABLE when the path cannot be opened; the previous
   *   file then stays in use
   */
  reopen(): Promise<void>;
  /** Flushes and closes the file. Idempotent. */
  close(): Promise<void>;
}

/**
 * Opens `path` for appending (mode 0600, its folder created 0700 when missing).
 *
 * @throws DsoError DSO_AGENT_AUDIT_UNAVAILABLE naming the path and the fix
 * @example
 * const file = await openAuditFile('/var/lib/dso/audit.jsonl');
 * const audit = createAuditLog({ destination: file.sink, redactor });
 * process.on('SIGHUP', () => void file.reopen());
 */
export async function openAuditFile(path: string): Promise<AuditFile> {
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let current = await open(path);
  let failure: Error | undefined;
  const watch = (stream: WriteStream) =>
    stream.on('error', (error) => {
      failure ??= error;
    });
  watch(current);
  let closed: Promise<void> | undefined;
  return {
    sink: {
      write(line: string) {
        if (failure) {
          throw new DsoError(
            'DSO_AGENT_AUDIT_UNAVAILABLE',
            `cannot write the audit trail ${path}`,
            {
              cause: failure,
            },
          );
        }
        current.write(line);
      },
    },
    async reopen() {
      if (closed) return;
      const next = await open(path);
      const previous = current;
      current = watch(next);
      failure = undefined;
      previous.end();
      await finished(previous).catch(() => undefined);
    },
    close() {
      closed ??= (async () => {
        current.end();
        await finished(current).catch(() => undefined);
      })();
      return closed;
    },
  };
}

async function open(path: string): Promise<WriteStream> {
  const stream = createWriteStream(path, { flags: 'a', mode: 0o600 });
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (error) =>
      reject(
        new DsoError(
          'DSO_AGENT_AUDIT_UNAVAILABLE',
          `cannot open the audit trail ${path}: fix its folder's permissions, set audit.path, or audit.enabled: false`,
          { cause: error },
        ),
      ),
    );
  });
  return stream;
}
