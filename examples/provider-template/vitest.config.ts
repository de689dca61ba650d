import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';

// Inside the DSO repository (examples/provider-template), the @dso packages are workspace
// links whose `@dso/source` export is their TypeScript source, so this folder is tested against
// the SDK and suite as they are now, unbuilt. A copy elsewhere uses the published builds: this
// is false there, and the line can be deleted.
const inDsoRepository = existsSync(
  new URL('../../packages/provider-sdk/package.json', import.meta.url),
);
const conditions = inDsoRepository ? ['@dso/source', 'import', 'node', 'default'] : undefined;

export default defineConfig({
  ...(conditions === undefined
    ? {}
    : { resolve: { conditions }, ssr: { resolve: { conditions } } }),
  test: {
    root: import.meta.dirname,
    include: ['src/**/*.test.ts'],
    environment: 'node',
    // The conformance suite starts child processes; give each check room on a loaded machine.
    testTimeout: 30_000,
    hookTimeout: 30_000,
  },
});
