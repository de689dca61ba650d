// Durations and sizes in dso.yaml: numbers in the field's unit (milliseconds, bytes), or strings
// with a unit for people. This file is the one place either kind of string is read or written.

const DURATION = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$/;
const DURATION_UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const SIZE = /^(\d+(?:\.\d+)?)\s*(b|kb|kib|mb|mib|gb|gib)?$/i;
const SIZE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1_000,
  kib: 1_024,
  mb: 1_000_000,
  mib: 1_048_576,
  gb: 1_000_000_000,
  gib: 1_073_741_824,
};

/** How a duration string is written, quoted in error messages and the reference. */
export const DURATION_SYNTAX = 'milliseconds, or a number with a unit: 500ms, 30s, 10m, 1.5h, 1d';
/** How a size string is written, quoted in error messages and the reference. */
export const SIZE_SYNTAX = 'bytes, or a number with a unit: 512KiB, 64MiB, 1GiB (or kB, MB, GB)';

/**
 * Reads a duration: a whole number of milliseconds (`"600000"`), or a number with one unit, `ms`,
 * `s`, `m`, `h` or `d` (`"10m"`, `"1.5h"`). Undefined when the text is neither, or names a
 * fraction of a millisecond.
 *
 * @example
 * parseDuration('10m');  // 600000
 * parseDuration('250');  // 250
 * parseDuration('soon'); // undefined
 */
export function parseDuration(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (match === null) return undefined;
  return scale(match[1]!, DURATION_UNITS[match[2] ?? 'ms']!);
}

/**
 * Reads a size: a whole number of bytes (`"1024"`), or a number with a unit, binary (`KiB`,
 * `MiB`, `GiB`: powers of 1024) or decimal (`kB`, `MB`, `GB`: powers of 1000), any case.
 * Undefined when the text is neither, or names a fraction of a byte.
 *
 * @example
 * parseByteSize('64MiB'); // 67108864
 * parseByteSize('1 kB');  // 1000
 */
export function parseByteSize(text: string): number | undefined {
  const match = SIZE.exec(text.trim());
  if (match === null) return undefined;
  return scale(match[1]!, SIZE_UNITS[(match[2] ?? 'b').toLowerCase()]!);
}

/** `digits × factor` when that is a safe whole number; a fraction of the base unit is refused. */
function scale(digits: string, factor: number): number | undefined {
  const exact = Number(digits) * factor;
  const whole = Math.round(exact);
  // 1.1 × 1000 is 1100.0000000000002 in floating point: round, but refuse a real fraction.
  if (Math.abs(exact - whole) > 1e-6 || !Number.isSafeInteger(whole)) return undefined;
  return whole;
}

/**
 * The shortest exact way to write a duration: the largest unit that divides it.
 *
 * @example
 * formatDuration(600_000); // '10m'
 * formatDuration(1_500);   // '1500ms'
 */
export function formatDuration(ms: number): string {
  for (const unit of ['d', 'h', 'm', 's'] as const) {
    const factor = DURATION_UNITS[unit]!;
    if (ms !== 0 && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}

/**
 * The shortest exact way to write a size: the largest binary unit that divides it.
 *
 * @example
 * formatByteSize(67_108_864); // '64 MiB'
 */
export function formatByteSize(bytes: number): string {
  for (const unit of ['GiB', 'MiB', 'KiB'] as const) {
    const factor = SIZE_UNITS[unit.toLowerCase()]!;
    if (bytes !== 0 && bytes % factor === 0) return `${bytes / factor} ${unit}`;
  }
  return `${bytes} B`;
}
