#!/usr/bin/env node
// `npm run docs:cli`: writes docs/cli.md, the reference of every `dso` command, option and exit
// code, from the commander program in apps/cli. It imports the built package, so build @dso/cli
// first (the npm script does). `--check` writes nothing and exits 1 when the file is stale; the
// unit test apps/cli/src/cli-reference.test.ts makes the same comparison on every test run.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, say } from './lib.mjs';

const TARGET = join(ROOT, 'docs', 'cli.md');
const BUILT = join(ROOT, 'apps', 'cli', 'dist', 'index.js');

let cli;
try {
  cli = await import(pathToFileURL(BUILT).href);
} catch (error) {
  say(`cannot load ${BUILT} (${error.message}): build it with \`npx nx run @dso/cli:build\``);
  process.exit(1);
}
if (typeof cli.renderCliReference !== 'function') {
  say('the built @dso/cli has no renderCliReference: rebuild it with `npx nx run @dso/cli:build`');
  process.exit(1);
}

const rendered = cli.renderCliReference();
let current = '';
try {
  current = readFileSync(TARGET, 'utf8');
} catch {
  // No file yet: it is written below (or reported stale by --check).
}

if (process.argv.includes('--check')) {
  if (current !== rendered) {
    say('docs/cli.md does not match the commands of dso: run `npm run docs:cli`');
    process.exit(1);
  }
  say('docs/cli.md is up to date');
} else if (current === rendered) {
  say('docs/cli.md is up to date');
} else {
  writeFileSync(TARGET, rendered);
  say('wrote docs/cli.md');
}
