import { describe, expect, it } from 'vitest';
import { DockerStreamDemuxer, TailBuffer } from './demux.js';

function frame(stream: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.byteLength, 4);
  return Buffer.concat([header, payload]);
}

describe('DockerStreamDemuxer', () => {
  it('splits stdout and stderr frames', () => {
    const out = new TailBuffer(1024);
    const err = new TailBuffer(1024);
    const demuxer = new DockerStreamDemuxer(out, err);
    demuxer.push(Buffer.concat([frame(1, 'hello '), frame(2, 'oops'), frame(1, 'world')]));
    expect(out.toString()).toBe('hello world');
    expect(err.toString()).toBe('oops');
  });

  it('reassembles headers and payloads split across chunks, one byte at a time', () => {
    const out = new TailBuffer(1024);
    const err = new TailBuffer(1024);
    const demuxer = new DockerStreamDemuxer(out, err);
    const bytes = Buffer.concat([frame(2, 'first'), frame(1, 'second'), frame(2, '')]);
    for (const byte of bytes) demuxer.push(Buffer.from([byte]));
    expect(err.toString()).toBe('first');
    expect(out.toString()).toBe('second');
  });

  it('treats a stream that is not multiplexed as raw stdout', () => {
    const out = new TailBuffer(1024);
    const err = new TailBuffer(1024);
    new DockerStreamDemuxer(out, err).push(Buffer.from('OCI runtime exec failed: no sh\r\n'));
    expect(out.toString()).toBe('OCI runtime exec failed: no sh\r\n');
    expect(err.toString()).toBe('');
  });
});

describe('TailBuffer', () => {
  it('keeps only the last limit bytes and counts the total', () => {
    const tail = new TailBuffer(8);
    for (let index = 0; index < 100; index += 1) tail.push(Buffer.from(`${index % 10}`));
    tail.push(Buffer.from('abcdefghijkl'));
    expect(tail.toString()).toBe('efghijkl');
    expect(tail.total).toBe(112);
    expect(tail.truncated).toBe(true);
  });

  it('holds no more than about twice its limit however much it is fed', () => {
    const tail = new TailBuffer(1024);
    for (let index = 0; index < 10_000; index += 1) tail.push(Buffer.alloc(100, 1));
    expect(tail.toString().length).toBe(1024);
  });
});
