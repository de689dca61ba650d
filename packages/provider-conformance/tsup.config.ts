import { definePackageBuild } from '../../tools/config/tsup.base.ts';

// cli.ts is the `dso-provider-conformance` command (bin/); command-suite.ts is the test file it
// runs under vitest, so it is built beside it.
export default definePackageBuild({
  entry: ['src/index.ts', 'src/cli.ts', 'src/command-suite.ts'],
});
