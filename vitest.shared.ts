import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

/** The `exports` condition that points each workspace package at its `src/`, so tests need no build. */
const SOURCE_CONDITION = '@dso/source';

export type TestKind = 'test' | 'test-int' | 'e2e';

/** What a project may change of the shared settings. */
export interface TestRunOptions {
  /** Files at once; engine and end-to-end tests default to one (test-e2e runs two). */
  maxWorkers?: number;
}

/**
 * Vitest settings shared by every project. `kind` picks the files: unit tests
 * (`*.test.ts`, no services), integration tests (`*.int.test.ts`, the real engine or Redis),
 * or end-to-end tests (`*.e2e.test.ts`, built artifacts only).
 */
export function defineProjectTests(
  projectDir: string,
  kind: TestKind = 'test',
  run: TestRunOptions = {},
) {
  const include = {
    test: ['src/**/*.test.ts'],
    'test-int': ['src/**/*.int.test.ts'],
    e2e: ['src/**/*.e2e.test.ts'],
  }[kind];
  const exclude = kind === 'test' ? ['src/**/*.int.test.ts', 'src/**/*.e2e.test.ts'] : [];
  // Engine tests share one daemon: their files run one at a time unless the project says how
  // many can run at once (test-e2e's files use engines of their own).
  const maxWorkers = kind === 'test' ? undefined : (run.maxWorkers ?? 1);
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
      fileParallelism: maxWorkers === undefined || maxWorkers > 1,
      ...(maxWorkers === undefined ? {} : { maxWorkers }),
      testTimeout: kind === 'test' ? 10_000 : 120_000,
      hookTimeout: kind === 'test' ? 10_000 : 120_000,
      passWithNoTests: false,
    },
  });
}
