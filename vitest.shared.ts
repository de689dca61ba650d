import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

/** The `exports` condition that points each workspace package at its `src/`, so tests need no build. */
const SOURCE_CONDITION = '@dso/source';

export type TestKind = 'test' | 'test-int' | 'e2e';

/**
 * Vitest settings shared by every project. `kind` picks the files: unit tests
 * (`*.test.ts`, no services), integration tests (`*.int.test.ts`, the real engine or Redis),
 * or end-to-end tests (`*.e2e.test.ts`, built artifacts only).
 */
export function defineProjectTests(projectDir: string, kind: TestKind = 'test') {
  const include = {
    test: ['src/**/*.test.ts'],
    'test-int': ['src/**/*.int.test.ts'],
    e2e: ['src/**/*.e2e.test.ts'],
  }[kind];
  const exclude = kind === 'test' ? ['src/**/*.int.test.ts', 'src/**/*.e2e.test.ts'] : [];
  return defineConfig({
    resolve: { conditions: [SOURCE_CONDITION, 'import', 'node', 'default'] },
    ssr: { resolve: { conditions: [SOURCE_CONDITION, 'import', 'node', 'default'] } },
    test: {
      root: projectDir,
      include,
      exclude: ['**/node_modules/**', '**/dist/**', ...exclude],
      environment: 'node',
      reporters: ['default', 'json'],
      // Read by tools/test.mjs for the closing summary; a cached run restores it (nx `outputs`).
      outputFile: { json: join(projectDir, '.reports', `${kind}.json`) },
      // Engine and end-to-end tests share one daemon: run their files one at a time.
      fileParallelism: kind === 'test',
      testTimeout: kind === 'test' ? 10_000 : 120_000,
      hookTimeout: kind === 'test' ? 10_000 : 120_000,
      passWithNoTests: false,
    },
  });
}
