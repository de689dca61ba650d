import { definePackageBuild } from '../../tools/config/tsup.base.ts';

// Two entries: the package, and `@dso/docker-runtime/testing` (an in-memory engine and the
// conformance suite that checks it against the real one).
export default definePackageBuild({
  entry: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' },
  external: ['vitest'],
});
