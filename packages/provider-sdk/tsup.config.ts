import { definePackageBuild } from '../../tools/config/tsup.base.ts';

// runner.ts is the child's entry point (bin/dso-provider-runner.js, and what the host spawns).
export default definePackageBuild({ entry: ['src/index.ts', 'src/runner.ts'] });
