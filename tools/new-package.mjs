#!/usr/bin/env node
// Writes the skeleton every project shares (see ../shared/STYLE.md, "Layout"):
//   node tools/new-package.mjs packages/provider-foo @dso/provider-foo "One-line description"
// It never overwrites a file that exists, so it is safe to run over a project to fill gaps.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';

const [dir, name, description = ''] = process.argv.slice(2);
if (!dir || !name) {
  console.error('usage: node tools/new-package.mjs <dir> <@dso/name> ["description"]');
  process.exit(2);
}
const root = join(import.meta.dirname, '..');
const projectDir = join(root, dir);
const up = relative(projectDir, root) || '.';

const files = {
  'package.json': `${JSON.stringify(
    {
      name,
      version: '0.1.0',
      description,
      type: 'module',
      license: 'Apache-2.0',
      engines: { node: '>=20.19.0' },
      exports: {
        '.': {
          '@dso/source': './src/index.ts',
          types: './dist/index.d.ts',
          default: './dist/index.js',
        },
        './package.json': './package.json',
      },
      main: './dist/index.js',
      types: './dist/index.d.ts',
      files: ['dist', 'src', '!src/**/*.test.ts'],
      sideEffects: false,
      scripts: {
        build: 'tsup',
        typecheck: 'tsc -p tsconfig.json',
        lint: 'biome check .',
        test: 'vitest run',
      },
      publishConfig: { access: 'public' },
    },
    null,
    2,
  )}\n`,
  'README.md': `# ${name}\n\n${description}\n`,
  'tsconfig.json': `${JSON.stringify(
    {
      extends: `${up}/tsconfig.base.json`,
      compilerOptions: { noEmit: true, allowImportingTsExtensions: true },
      include: ['src', '*.config.ts'],
    },
    null,
    2,
  )}\n`,
  'tsconfig.build.json': `${JSON.stringify(
    {
      extends: './tsconfig.json',
      compilerOptions: { noEmit: false, allowImportingTsExtensions: false, rootDir: 'src' },
      include: ['src'],
      exclude: ['src/**/*.test.ts'],
    },
    null,
    2,
  )}\n`,
  'tsup.config.ts': `import { definePackageBuild } from '${up}/tools/config/tsup.base.ts';\n\nexport default definePackageBuild();\n`,
  'vitest.config.ts': `import { defineProjectTests } from '${up}/vitest.shared.ts';\n\nexport default defineProjectTests(import.meta.dirname);\n`,
  'src/index.ts': `/**\n * ${name}: ${description}\n */\nexport const PACKAGE_NAME = '${name}';\n`,
};

mkdirSync(join(projectDir, 'src'), { recursive: true });
for (const [file, content] of Object.entries(files)) {
  const path = join(projectDir, file);
  if (existsSync(path)) continue;
  writeFileSync(path, content);
  console.log(`wrote ${relative(root, path)}`);
}
