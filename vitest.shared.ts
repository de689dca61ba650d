import { join } from 'node:path';
import { defineConfig } from 'vitest/config';

/** The `exports` condition that points each workspace package at its `src/`, so tests need no build. */
const SOURCE_CONDITION = '@dso/source';

export type TestKind = 'test' | 'test-int' | 'e2e';

/** What one run of a project's files may change (test-e2e runs its files in two groups). */
export interface TestRunOptions {
  /** Only these files (globs under the project), instead of every file of the kind. */
  include?: string[];
  /** More files to leave out. */
  exclude?: string[];
  /** Files at once; engine and end-to-end tests default to one. */
  maxWorkers?: number;
  /** The JSON report's name under `.reports/`, without `.json`; the kind by default. */
  report?: string;
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
  const include =
    run.include ??
    {
      test: ['src/**/*.test.ts'],
      'test-int': ['src/**/*.int.test.ts'],
      e2e: ['src/**/*.e2e.test.ts'],
    }[kind];
  const exclude = [
    ...(kind === 'test' ? ['src/**/*.int.test.ts', 'src/**/*.e2e.test.ts'] : []),
    ...(run.exclude ?? []),
  ];
  // Engine and end-to-end tests share one daemon: their files run one at a time unless the
  // project says how many of its files can run at once (test-e2e's private-engine group).
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
      outputFile: { json: join(projectDir, '.reports', `${run.report ?? kind}.json`) },
      fileParallelism: maxWorkers === undefined || maxWorkers > 1,
      ...(maxWorkers === undefined ? {} : { maxWorkers }),
      testTimeout: kind === 'test' ? 10_000 : 120_000,
      hookTimeout: kind === 'test' ? 10_000 : 120_000,
      passWithNoTests: false,
    },
  });
}
