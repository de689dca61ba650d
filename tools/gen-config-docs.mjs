#!/usr/bin/env node
// `npm run docs:config`: writes docs/config.md, the dso.yaml reference, from the configuration
// schema in @dso/core. It imports the built package, so build @dso/core first (the npm script
// does). `--check` writes nothing and exits 1 when the file is stale; the unit test
// packages/core/src/config/reference.test.ts makes the same comparison on every test run.
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ROOT, say } from './lib.mjs';

const TARGET = join(ROOT, 'docs', 'config.md');
const BUILT = join(ROOT, 'packages', 'core', 'dist', 'index.js');

let core;
try {
  core = await import(pathToFileURL(BUILT).href);
} catch (error) {
  say(`cannot load ${BUILT} (${error.message}): build it with \`npx nx run @dso/core:build\``);
  process.exit(1);
}
if (typeof core.renderConfigReference !== 'function') {
  say(
    'the built @dso/core has no renderConfigReference: rebuild it with `npx nx run @dso/core:build`',
  );
  process.exit(1);
}

const rendered = core.renderConfigReference();
let current = '';
try {
  current = readFileSync(TARGET, 'utf8');
} catch {
  // No file yet: it is written below (or reported stale by --check).
}

if (process.argv.includes('--check')) {
  if (current !== rendered) {
    say('docs/config.md does not match the configuration schema: run `npm run docs:config`');
    process.exit(1);
  }
  say('docs/config.md is up to date');
} else if (current === rendered) {
  say('docs/config.md is up to date');
} else {
  writeFileSync(TARGET, rendered);
  say('wrote docs/config.md');
}
