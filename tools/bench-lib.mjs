// Helpers shared by the benchmark programs (packages/*/bench/*.bench.mjs): run count, machine
// facts, medians and percentiles, the markdown table and the BENCH_JSON line, and a past
// revision's redactor. Node built-ins only (and the workspace's esbuild, for that redactor).
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Progress and errors on stderr, so stdout holds only the report. */
export const log = (message) => process.stderr.write(`bench: ${message}\n`);

export const round2 = (value) => Math.round(value * 100) / 100;

/** BENCH_RUNS as a whole number from 1 to `max`, `fallback` when unset. */
export function runsFromEnv(fallback = 5, max = 1_000) {
  const raw = process.env.BENCH_RUNS ?? String(fallback);
  const runs = Number(raw);
  if (!Number.isInteger(runs) || runs < 1 || runs > max) {
    throw new Error(`BENCH_RUNS must be a whole number from 1 to ${max}, got "${raw}"`);
  }
  return runs;
}

/** Median of the samples (the mean of the middle two for an even count); input untouched. */
export function median(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const n = sorted.length;
  return n % 2 ? sorted[(n - 1) / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

/** Nearest-rank percentile (`q` from 0 to 1) of an already sorted array. */
export function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
}

/** The 1-minute load average: other work on the machine skews every figure. */
export const loadAverage = () => round2(loadavg()[0]);

/** Facts about the machine and the checkout the figures were measured on. */
export async function machine() {
  let cpuModel = cpus()[0]?.model ?? 'unknown';
  try {
    const line = readFileSync('/proc/cpuinfo', 'utf8')
      .split('\n')
      .find((entry) => /^model name\s*:/.test(entry));
    if (line) cpuModel = line.split(':')[1].trim();
  } catch {
    // No /proc/cpuinfo (not Linux): os.cpus() already gave a model.
  }
  let revision = 'unknown';
  try {
    // What was built: the commit, "-dirty" when the working tree has changes.
    const { stdout } = await execFileAsync('git', ['describe', '--always', '--dirty'], {
      cwd: import.meta.dirname,
    });
    revision = stdout.trim();
  } catch {
    // Not a git checkout (an unpacked tarball): the figures stand without a revision.
  }
  return {
    revision,
    nproc: availableParallelism(),
    memoryGiB: Math.round((totalmem() / 2 ** 30) * 10) / 10,
    cpuModel,
    kernel: release(),
    node: process.versions.node,
  };
}

/** The machine header: CPUs and memory, the given detail lines, then the load average. */
export function printMachine(host, details) {
  console.log(`machine: ${host.nproc} CPUs (${host.cpuModel}), ${host.memoryGiB} GiB RAM`);
  for (const line of details) console.log(`         ${line}`);
  console.log(`         load average (1 min): ${host.loadAtStart} before, ${host.loadAtEnd} after`);
}

/** A markdown table: the first column left-aligned, the figures right-aligned. */
export function printTable(header, lines) {
  const widths = header.map((title, column) =>
    Math.max(title.length, ...lines.map((line) => line[column].length)),
  );
  const pad = (cell, column) =>
    column === 0 ? cell.padEnd(widths[column]) : cell.padStart(widths[column]);
  const format = (cells) => `| ${cells.map(pad).join(' | ')} |`;
  const rule = widths.map((width, column) => '-'.repeat(width + 1) + (column ? ':' : '-'));
  console.log(format(header));
  console.log(`|${rule.join('|')}|`);
  for (const line of lines) console.log(format(line));
}

/** The one machine-readable line a run leaves for the record. */
export function printBenchJson(record) {
  console.log(`BENCH_JSON ${JSON.stringify(record)}`);
}

/**
 * `@dso/core`'s redactor as it was at git revision `rev`, bundled with esbuild into one ES module
 * under node_modules/.cache/dso-bench, for a benchmark to measure beside this revision's. Returns
 * the module's path (its `createRedactor` is the redactor of that revision).
 */
export async function bundlePreviousRedactor(rev) {
  const { build } = await import('esbuild');
  const root = join(import.meta.dirname, '..');
  const dir = join(root, 'node_modules/.cache/dso-bench', `redaction-${rev.slice(0, 12)}`);
  mkdirSync(dir, { recursive: true });
  for (const file of ['redaction.ts', 'redaction-patterns.ts']) {
    const source = execFileSync('git', ['show', `${rev}:packages/core/src/${file}`], { cwd: root });
    writeFileSync(join(dir, file), source);
  }
  const outfile = join(dir, 'redaction.mjs');
  await build({
    entryPoints: [join(dir, 'redaction.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    outfile,
    logLevel: 'warning',
  });
  return outfile;
}
