#!/usr/bin/env node
// The e2e target: the end-to-end files in two groups side by side (vitest.config.ts), one vitest
// each. `shared`: the files that use the shared engine, one at a time. `private`: the files that
// use private engines only, DSO_E2E_PRIVATE_WORKERS (default 2) at a time. Each group writes its
// own JSON report (.reports/e2e-shared.json, e2e-private.json), which tools/test.mjs counts;
// each output line says its group. Fails when either group fails. Arguments (file filters,
// vitest options) run plain vitest instead: every matching file, one at a time.
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { join } from 'node:path';

const here = import.meta.dirname;
const args = process.argv.slice(2);

/** Runs vitest for `group` (all files when undefined); resolves with its exit code. */
function runGroup(group) {
  const env = { ...process.env };
  if (group === undefined) delete env.DSO_E2E_GROUP;
  else env.DSO_E2E_GROUP = group;
  const child = spawn('npx', ['vitest', 'run', '--config', 'vitest.config.ts', ...args], {
    cwd: here,
    env,
    stdio: group === undefined ? 'inherit' : ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  if (group !== undefined) {
    for (const [from, to] of [
      [child.stdout, process.stdout],
      [child.stderr, process.stderr],
    ]) {
      // Whole lines only, each marked with its group, so the two runs' lines stay readable.
      let partial = '';
      from.setEncoding('utf8').on('data', (text) => {
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) to.write(`[${group}] ${line}\n`);
      });
      from.on('end', () => {
        if (partial) to.write(`[${group}] ${partial}\n`);
      });
    }
  }
  const started = Date.now();
  return new Promise((resolve) => {
    child.on('error', (error) => {
      console.error(`[${group ?? 'e2e'}] vitest did not start: ${error.message}`);
      resolve(1);
    });
    child.on('close', (code, signal) => {
      const seconds = Math.round((Date.now() - started) / 1000);
      if (group !== undefined) console.log(`[${group}] finished in ${seconds} s (exit ${code})`);
      resolve(code ?? (signal ? 1 : 0));
    });
  });
}

const children = [];
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    for (const child of children) child.kill(signal);
  });
}

let codes;
if (args.length > 0) {
  codes = [await runGroup(undefined)];
} else {
  // A report of an earlier run of one file must not be counted with this run's.
  for (const name of ['e2e.json', 'e2e-shared.json', 'e2e-private.json']) {
    rmSync(join(here, '.reports', name), { force: true });
  }
  codes = await Promise.all([runGroup('shared'), runGroup('private')]);
}
process.exit(codes.find((code) => code !== 0) ?? 0);
