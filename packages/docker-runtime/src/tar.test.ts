import { Readable } from 'node:stream';
import { extract } from 'tar-stream';
import { describe, expect, it } from 'vitest';
import { buildTar } from './tar.js';

async function readTar(archive: Buffer) {
  const entries: Array<{ header: Record<string, unknown>; content: Buffer }> = [];
  const extractor = extract();
  Readable.from([archive]).pipe(extractor);
  for await (const entry of extractor) {
    const chunks: Buffer[] = [];
    for await (const chunk of entry) chunks.push(chunk as Buffer);
    entries.push({
      header: entry.header as unknown as Record<string, unknown>,
      content: Buffer.concat(chunks),
    });
  }
  return entries;
}

describe('buildTar', () => {
  const mtime = new Date('2024-01-02T03:04:05Z');

  it('writes each file as a plain entry with the given mode and numeric owner', async () => {
    const archive = await buildTar(
      [
        { name: 'db_password', content: new TextEncoder().encode('hunter2') },
        { name: '.env', content: new Uint8Array([0, 1, 2, 255]) },
      ],
      { mode: 0o440, uid: 1000, gid: 2000, mtime },
    );
    const entries = await readTar(archive);
    expect(entries.map((entry) => entry.header.name)).toEqual(['db_password', '.env']);
    for (const entry of entries) {
      expect(entry.header).toMatchObject({
        type: 'file',
        mode: 0o440,
        uid: 1000,
        gid: 2000,
        uname: '',
        gname: '',
        mtime,
      });
    }
    expect(entries[0]?.content.toString()).toBe('hunter2');
    expect([...(entries[1]?.content ?? [])]).toEqual([0, 1, 2, 255]);
  });

  it('pads to 512-byte blocks and ends with two zero blocks', async () => {
    const archive = await buildTar([{ name: 'a', content: new Uint8Array(1) }], {
      mode: 0o400,
      uid: 0,
      gid: 0,
      mtime,
    });
    // header + one data block + end-of-archive
    expect(archive.byteLength).toBe(512 + 512 + 1024);
    expect(archive.subarray(-1024).every((byte) => byte === 0)).toBe(true);
  });

  it('reads a view of a larger buffer without its neighbours', async () => {
    const backing = new TextEncoder().encode('XXsecretYY');
    const archive = await buildTar([{ name: 'a', content: backing.subarray(2, 8) }], {
      mode: 0o400,
      uid: 0,
      gid: 0,
      mtime,
    });
    const [entry] = await readTar(archive);
    expect(entry?.content.toString()).toBe('secret');
    expect(archive.includes('XX')).toBe(false);
  });

  it('returns a buffer of its own that can be zeroed without touching the inputs', async () => {
    const content = new TextEncoder().encode('keep-me');
    const archive = await buildTar([{ name: 'a', content }], {
      mode: 0o400,
      uid: 0,
      gid: 0,
      mtime,
    });
    archive.fill(0);
    expect(new TextDecoder().decode(content)).toBe('keep-me');
    expect(archive.every((byte) => byte === 0)).toBe(true);
  });

  it('builds a valid empty archive for an empty set', async () => {
    const archive = await buildTar([], { mode: 0o400, uid: 0, gid: 0, mtime });
    expect(archive.byteLength).toBe(1024);
    expect(await readTar(archive)).toEqual([]);
  });
});
