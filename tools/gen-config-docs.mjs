#!/usr/bin/env node
// `npm run docs:config`: writes docs/config.md, the dso.yaml reference, from the configuration
// schema in @dso/core. It imports the built package, so build @dso/core first (the npm script
// does). `--check` writes nothing and exits 1 when the file is stale; the unit test
// packages/core/src/config/reference.test.ts makes the same comparison on every test run.
import { writeGeneratedDoc } from './lib.mjs';

await writeGeneratedDoc({
  file: 'config.md',
  built: 'packages/core/dist/index.js',
  exportName: 'renderConfigReference',
  project: '@dso/core',
  script: 'docs:config',
  source: 'the configuration schema',
});
