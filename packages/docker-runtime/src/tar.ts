import { pack } from 'tar-stream';
import type { SecretFile } from './write-request.js';

/** Header facts every entry of a secrets tar carries. */
export interface TarOptions {
  /** Permission bits of every file. */
  mode: number;
  /** Numeric owner written in the headers (the exec's script sets it again with chown). */
  uid: number;
  gid: number;
  /** Modification time of every entry. */
  mtime: Date;
}

/**
 * Builds an uncompressed tar of plain files, in memory, in one contiguous buffer that the caller
 * zeroes once it is sent. The files' own bytes are passed to tar-stream as views (not copies), so
 * the returned buffer is the only copy this function makes of a secret.
 *
 * Headers carry numeric ids only (empty `uname`/`gname`), so the extracting tar cannot map them
 * through the container's user database.
 */
export async function buildTar(files: readonly SecretFile[], options: TarOptions): Promise<Buffer> {
  const archive = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of archive) chunks.push(chunk as Buffer);
  })();
  for (const file of files) {
    const content = Buffer.from(
      file.content.buffer,
      file.content.byteOffset,
      file.content.byteLength,
    );
    archive.entry(
      {
        name: file.name,
        type: 'file',
        size: content.byteLength,
        mode: options.mode,
        uid: options.uid,
        gid: options.gid,
        uname: '',
        gname: '',
        mtime: options.mtime,
      },
      content,
    );
  }
  archive.finalize();
  await collected;
  // Buffer.alloc is never carved from the shared pool (Buffer.concat may be), so the archive
  // owns its memory and zeroing it clears the only copy made here.
  const archiveBytes = Buffer.alloc(chunks.reduce((sum, chunk) => sum + chunk.byteLength, 0));
  let offset = 0;
  for (const chunk of chunks) offset += chunk.copy(archiveBytes, offset);
  return archiveBytes;
}
