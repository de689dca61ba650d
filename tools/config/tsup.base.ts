import { defineConfig, type Options } from 'tsup';

/**
 * The one tsup setup every package builds with: ESM for Node 20, type declarations from
 * `tsconfig.build.json`, source maps, a clean `dist/`. Packages pass only what differs
 * (extra entries, a shebang banner for a bin).
 */
export function definePackageBuild(overrides: Options = {}) {
  return defineConfig({
    entry: ['src/index.ts'],
    format: ['esm'],
    platform: 'node',
    target: 'node20',
    tsconfig: 'tsconfig.build.json',
    dts: true,
    sourcemap: true,
    clean: true,
    splitting: false,
    treeshake: true,
    ...overrides,
  });
}
