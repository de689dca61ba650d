import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatByteSize, formatDuration, parseByteSize, parseDuration } from './units.js';

describe('parseDuration', () => {
  it.each([
    ['0', 0],
    ['250', 250],
    ['500ms', 500],
    ['30s', 30_000],
    ['10m', 600_000],
    ['1.5h', 5_400_000],
    ['1d', 86_400_000],
    [' 2 m ', 120_000],
    ['1.1s', 1_100],
  ])('reads %j as %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each([
    '',
    'soon',
    '10 minutes',
    '-5s',
    '1e3',
    '5M',
    '0.5ms',
    '1h30m',
    '10x',
    '99999999999999999d',
  ])('refuses %j', (text) => {
    expect(parseDuration(text)).toBeUndefined();
  });

  it('reads back whatever formatDuration writes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), (ms) => {
        expect(parseDuration(formatDuration(ms))).toBe(ms);
      }),
    );
  });

  it('writes the largest unit that divides exactly', () => {
    expect(formatDuration(600_000)).toBe('10m');
    expect(formatDuration(90_000)).toBe('90s');
    expect(formatDuration(1_500)).toBe('1500ms');
    expect(formatDuration(0)).toBe('0ms');
    expect(formatDuration(86_400_000)).toBe('1d');
  });
});

describe('parseByteSize', () => {
  it.each([
    ['1024', 1024],
    ['512KiB', 524_288],
    ['64MiB', 67_108_864],
    ['64 mib', 67_108_864],
    ['1GiB', 1_073_741_824],
    ['1kB', 1_000],
    ['2MB', 2_000_000],
    ['1.5KiB', 1_536],
    ['10B', 10],
  ])('reads %j as %d bytes', (text, bytes) => {
    expect(parseByteSize(text)).toBe(bytes);
  });

  it.each(['', 'big', '-1KiB', '1.3B', '5 TB', '1e6', 'MiB'])('refuses %j', (text) => {
    expect(parseByteSize(text)).toBeUndefined();
  });

  it('reads back whatever formatByteSize writes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 45 }), (bytes) => {
        expect(parseByteSize(formatByteSize(bytes))).toBe(bytes);
      }),
    );
  });
});
