import {
  createWriteStream,
  existsSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  type WriteStream,
} from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { finished } from 'node:stream/promises';
import { type AuditLineSink, DsoError } from '@dso/core';

/**
 * The audit trail's file. It rotates itself by size (`audit.jsonl` → `audit.jsonl.1` → … up
 * to `maxFiles`, the oldest deleted) and is reopened on request so that an external logrotate
 * can move it away instead: after a rename, `reopen()` (the agent's SIGHUP, `systemctl reload
 * dso-agent`) starts a new file at the same path and closes the old one once its lines are
 * flushed. No line is lost or split across two files.
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
export async function openAuditFile(
  path: string,
  options: { maxFileBytes?: number; maxFiles?: number } = {},
): Promise<AuditFile> {
  const maxFileBytes = options.maxFileBytes ?? Number.POSITIVE_INFINITY;
  const maxFiles = options.maxFiles ?? 5;
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  let current = await open(path);
  let bytes = sizeOf(path);
  let failure: Error | undefined;
  const watch = (stream: WriteStream) =>
    stream.on('error', (error) => {
      failure ??= error;
    });
  watch(current);
  let closed: Promise<void> | undefined;
  /** Shifts the rotated files up by one, moves the current one to `.1`, starts a new one. */
  function rotate(): void {
    const previous = current;
    try {
      if (maxFiles === 0) {
        unlinkSync(path);
      } else {
        if (existsSync(`${path}.${maxFiles}`)) unlinkSync(`${path}.${maxFiles}`);
        for (let index = maxFiles - 1; index >= 1; index -= 1) {
          if (existsSync(`${path}.${index}`))
            renameSync(`${path}.${index}`, `${path}.${index + 1}`);
        }
        renameSync(path, `${path}.1`);
      }
    } catch {
      // Not rotated (a file in the way, permissions): keep appending to the current file and
      // try again at the next line, rather than lose one.
      return;
    }
    // Lines already handed to the previous stream land in the renamed file (same descriptor).
    // Opened synchronously, so the path exists again before the next line could rotate it.
    let fd: number;
    try {
      fd = openSync(path, 'a', 0o600);
    } catch (error) {
      failure ??= error as Error;
      return;
    }
    current = watch(createWriteStream(path, { fd }));
    bytes = 0;
    previous.end();
  }
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
        const size = Buffer.byteLength(line);
        if (bytes > 0 && bytes + size > maxFileBytes) rotate();
        current.write(line);
        bytes += size;
      },
    },
    async reopen() {
      if (closed) return;
      const next = await open(path);
      const previous = current;
      current = watch(next);
      bytes = sizeOf(path);
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

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
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
