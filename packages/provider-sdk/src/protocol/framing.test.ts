import { describe, expect, it } from 'vitest';
import { createLineReader, createTextLineSplitter } from './framing.js';

function collect(max: number) {
  const lines: string[] = [];
  const oversized: Array<{ head: string; seen: number }> = [];
  const ends: number[] = [];
  const reader = createLineReader(max, {
    onLine: (line) => lines.push(line.toString('utf8')),
    onOversized: (head, seen) => oversized.push({ head: head.toString('utf8'), seen }),
    onEnd: (trailing) => ends.push(trailing),
  });
  return { reader, lines, oversized, ends };
}

describe('createLineReader', () => {
  it('splits lines across and within chunks', () => {
    const { reader, lines } = collect(100);
    reader.push(Buffer.from('{"a":1}\n{"b"'));
    reader.push(Buffer.from(':2}\n{"c":3}\n'));
    expect(lines).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
  });

  it('zeroes the bytes it handed out once the handler returns', () => {
    let kept: Buffer | undefined;
    const chunk = Buffer.from('secret-line\n');
    const reader = createLineReader(100, {
      onLine: (line) => {
        kept = line;
      },
      onOversized: () => undefined,
    });
    reader.push(chunk);
    expect(kept?.every((byte) => byte === 0)).toBe(true);
    expect(chunk.every((byte) => byte === 0)).toBe(true);
  });

  it('reports a line over the limit once, skips it, and reads the next one', () => {
    const { reader, lines, oversized } = collect(10);
    reader.push(Buffer.from('{"id":7,"result":"'));
    reader.push(Buffer.from('x'.repeat(50)));
    reader.push(Buffer.from('"}\nok\n'));
    expect(oversized).toHaveLength(1);
    expect(oversized[0]?.head.startsWith('{"id":7')).toBe(true);
    expect(lines).toEqual(['ok']);
  });

  it('reports an oversized line whose end is in the same chunk', () => {
    const { reader, lines, oversized } = collect(4);
    reader.push(Buffer.from('123456789\nabc\n'));
    expect(oversized).toHaveLength(1);
    expect(lines).toEqual(['abc']);
  });

  it('accepts a line of exactly the limit', () => {
    const { reader, lines, oversized } = collect(5);
    reader.push(Buffer.from('12345\n'));
    expect(lines).toEqual(['12345']);
    expect(oversized).toEqual([]);
  });

  it('reports a last line without its newline at the end', () => {
    const { reader, lines, ends } = collect(100);
    reader.push(Buffer.from('done\n{"jsonrpc":"2.0","id":'));
    reader.end();
    expect(lines).toEqual(['done']);
    expect(ends).toEqual([22]);
  });

  it('applies a new limit to later lines', () => {
    const { reader, lines, oversized } = collect(4);
    reader.setMaxLineBytes(8);
    reader.push(Buffer.from('1234567\n'));
    expect(lines).toEqual(['1234567']);
    expect(oversized).toEqual([]);
  });
});

describe('createTextLineSplitter', () => {
  it('keeps at most the bound of each line and counts the rest', () => {
    const lines: Array<[string, number]> = [];
    const splitter = createTextLineSplitter(4, (text, truncated) => lines.push([text, truncated]));
    splitter.push(Buffer.from('abcdefgh\nxy'));
    splitter.push(Buffer.from('z\r\nlast'));
    splitter.end();
    expect(lines).toEqual([
      ['abcd', 4],
      ['xyz', 0],
      ['last', 0],
    ]);
  });
});
