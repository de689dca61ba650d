#!/usr/bin/env node
// `npm run bench`: runs every benchmark program in the workspace (`<project>/bench/*.bench.mjs`)
// against the real engine and prints what each measures. Installs dependencies, builds the
// projects that own a benchmark (benchmarks import the BUILT package, so they measure what
// ships), checks the engine answers, builds the test image, then runs the programs one at a
// time: they share one engine and two cores, so running them together would skew both.
// Benchmarks print figures; they never pass or fail on a speed. Results go in BENCHMARKS.md.
//
//   npm run bench               every benchmark
//   npm run bench -- inject     only those whose path contains "inject"
//   BENCH_RUNS=60 npm run bench measured runs per case (default: each program's own)
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import {
  assertNodeVersion,
  ensureDependencies,
  ROOT,
  readJson,
  requireEngine,
  run,
  say,
} from './lib.mjs';

/** Every `<packages|apps>/<name>/bench/*.bench.mjs`, with the name of the project owning it. */
function findBenchmarks() {
  const found = [];
  for (const parent of ['packages', 'apps']) {
    for (const name of readdirSync(join(ROOT, parent)).sort()) {
      const dir = join(ROOT, parent, name, 'bench');
      if (!existsSync(dir)) continue;
      const project = readJson(join(parent, name, 'package.json')).name;
      for (const file of readdirSync(dir).sort()) {
        if (file.endsWith('.bench.mjs')) found.push({ project, file: join(dir, file) });
      }
    }
  }
  return found;
}

/**
 * Runs one benchmark program. Signals reach it too: Ctrl-C in a terminal goes to the whole
 * process group, a `kill` of this process is forwarded. The program then removes what it
 * created and exits; this script waits for it rather than leaving it behind.
 */
function runBenchmark(file) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [file], { cwd: ROOT, stdio: 'inherit' });
    const forward = (signal) => child.kill(signal);
    const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'];
    for (const signal of signals) process.on(signal, forward);
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      for (const name of signals) process.off(name, forward);
      resolve(code ?? (signal ? 130 : 1));
    });
  });
}

assertNodeVersion();
const filters = process.argv.slice(2);
const benchmarks = findBenchmarks().filter(
  ({ file }) => filters.length === 0 || filters.some((filter) => file.includes(filter)),
);
if (benchmarks.length === 0) {
  say(`no benchmark found${filters.length ? ` matching ${filters.join(', ')}` : ''}`);
  process.exit(1);
}

// Benchmarks that drive the engine say so with a `// bench: needs-engine` line. The engine is
// checked first: it is the one thing this script cannot fix, and checking costs nothing.
const needsEngine = benchmarks.some(({ file }) =>
  readFileSync(file, 'utf8').includes('// bench: needs-engine'),
);
if (needsEngine) await requireEngine();

try {
  await ensureDependencies();
  const projects = [...new Set(benchmarks.map(({ project }) => project))];
  await run('npx', ['nx', 'run-many', '-t', 'build', '-p', ...projects, '--outputStyle=stream']);
  if (needsEngine) await run('bash', ['tools/test-image.sh']);
} catch (error) {
  say(error.message);
  process.exit(error.exitCode ?? 1);
}

const failed = [];
for (const { file } of benchmarks) {
  const name = relative(ROOT, file);
  say(`running ${name}`);
  const code = await runBenchmark(file);
  if (code === 130) {
    say(`${name} was interrupted`);
    process.exit(130);
  }
  if (code !== 0) failed.push(name);
}
if (failed.length > 0) {
  say(`failed: ${failed.join(', ')}`);
  process.exit(1);
}
say(`${benchmarks.length} benchmark(s) ran; record the figures in BENCHMARKS.md`);
