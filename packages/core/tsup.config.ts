import { definePackageBuild } from '../../tools/config/tsup.base.ts';

// Two entries: the package, and `@dso/core/testing` (the cache conformance suite, for adapters).
export default definePackageBuild({
  entry: { index: 'src/index.ts', 'testing/index': 'src/testing/index.ts' },
  external: ['vitest'],
});
