#!/usr/bin/env node
// `npm run docs:cli`: writes docs/cli.md, the reference of every `dso` command, option and exit
// code, from the commander program in apps/cli. It imports the built package, so build @dso/cli
// first (the npm script does). `--check` writes nothing and exits 1 when the file is stale; the
// unit test apps/cli/src/cli-reference.test.ts makes the same comparison on every test run.
import { writeGeneratedDoc } from './lib.mjs';

await writeGeneratedDoc({
  file: 'cli.md',
  built: 'apps/cli/dist/index.js',
  exportName: 'renderCliReference',
  project: '@dso/cli',
  script: 'docs:cli',
  source: 'the commands of dso',
});
