// Tests of tools/check-boundaries.mjs on small workspaces written to a temporary folder:
//   node --test tools/check-boundaries.test.mjs
// Each failing case proves the check notices one kind of break; the passing cases prove it does
// not cry wolf on what the workspace legitimately does (test helpers, exported subpaths, JSDoc).
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, describe, it } from 'node:test';
import { checkBoundaries, readImports } from './check-boundaries.mjs';

const scratch = mkdtempSync(join(tmpdir(), 'dso-boundaries-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

let count = 0;
/** A workspace with async, provider-sdk, core and provider-file, edited by `changes`. */
function workspace(changes = {}) {
  count += 1;
  const root = join(scratch, `ws-${count}`);
  const manifest = (name, dependencies = {}, extra = {}) =>
    JSON.stringify({
      name,
      version: '0.1.0',
      exports: { '.': './src/index.ts' },
      dependencies,
      ...extra,
    });
  const files = {
    'package.json': JSON.stringify({ private: true, workspaces: ['packages/*', 'apps/*'] }),
    'packages/async/package.json': manifest('@dso/async'),
    'packages/async/src/index.ts': 'export const sleep = 1;\n',
    'packages/provider-sdk/package.json': manifest('@dso/provider-sdk', { '@dso/async': '0.1.0' }),
    'packages/provider-sdk/src/index.ts':
      "import { sleep } from '@dso/async';\nexport { sleep };\n",
    'packages/core/package.json': manifest(
      '@dso/core',
      { '@dso/provider-sdk': '0.1.0' },
      { exports: { '.': './src/index.ts', './testing': './src/testing/index.ts' } },
    ),
    'packages/core/src/index.ts': "export type { X } from '@dso/provider-sdk';\n",
    'packages/core/src/testing/index.ts': 'export const suite = 1;\n',
    'packages/provider-file/package.json': manifest(
      '@dso/provider-file',
      { '@dso/async': '0.1.0', '@dso/provider-sdk': '0.1.0' },
      { devDependencies: { '@dso/core': '0.1.0' } },
    ),
    'packages/provider-file/src/index.ts': [
      '/** @example',
      " * import { createCache } from '@dso/core';",
      ' */',
      'const text = "import \'@dso/core\'";',
      "const pattern = /'/; import { sleep } from '@dso/async';",
      "export { defineProvider } from '@dso/provider-sdk';",
      'export { text, pattern, sleep };',
      '',
    ].join('\n'),
    'packages/provider-file/src/file.test.ts': "import { suite } from '@dso/core/testing';\n",
    ...changes,
  };
  for (const [path, text] of Object.entries(files)) {
    if (text === undefined) continue;
    mkdirSync(dirname(join(root, path)), { recursive: true });
    writeFileSync(join(root, path), text);
  }
  return root;
}

const problems = (root) =>
  checkBoundaries(root).violations.map(
    ({ file, line, specifier, problem }) => `${file}:${line} ${specifier}: ${problem}`,
  );

describe('readImports', () => {
  it('finds every kind of specifier with its line, and none in comments or strings', () => {
    const text = [
      "/** import { no } from '@dso/comment'; */",
      "import type { A } from '@dso/type';",
      "import '@dso/side-effect';",
      "export { b } from '@dso/re-export';",
      "export * from '@dso/star';",
      "const text = `import { no } from '@dso/template'`;",
      "const pattern = /'/; const d = await import('@dso/dynamic');",
      "type T = typeof import('@dso/import-type');",
      "import fs = require('@dso/require-import');",
      'const computed = await import(name);',
    ].join('\n');
    assert.deepEqual(readImports('x.ts', text), [
      { specifier: '@dso/type', line: 2 },
      { specifier: '@dso/side-effect', line: 3 },
      { specifier: '@dso/re-export', line: 4 },
      { specifier: '@dso/star', line: 5 },
      { specifier: '@dso/dynamic', line: 7 },
      { specifier: '@dso/import-type', line: 8 },
      { specifier: '@dso/require-import', line: 9 },
    ]);
  });
});

describe('checkBoundaries', () => {
  it('passes a workspace that keeps the direction, with test code using devDependencies', () => {
    assert.deepEqual(problems(workspace()), []);
  });

  it('fails an import of a workspace package the project does not declare', () => {
    const root = workspace({
      'packages/core/package.json': JSON.stringify({
        name: '@dso/core',
        exports: { '.': './src/index.ts', './testing': './src/testing/index.ts' },
      }),
    });
    const found = problems(root);
    assert.equal(found.length, 1);
    assert.match(found[0], /^packages\/core\/src\/index\.ts:1 @dso\/provider-sdk: .*not declared/);
  });

  it('fails production code that imports a devDependency', () => {
    const root = workspace({
      'packages/provider-file/src/helper.ts': "export { suite } from '@dso/core/testing';\n",
    });
    const found = problems(root);
    assert.equal(found.length, 1);
    assert.match(found[0], /helper\.ts:1 @dso\/core\/testing: @dso\/provider-file may not import/);
  });

  it('fails an import against the direction, naming what the part may import', () => {
    const root = workspace({
      'packages/provider-file/package.json': JSON.stringify({
        name: '@dso/provider-file',
        dependencies: { '@dso/provider-sdk': '0.1.0', '@dso/core': '0.1.0' },
      }),
      'packages/provider-file/src/cache.ts': "\nimport { createCache } from '@dso/core';\n",
    });
    const found = problems(root);
    assert.ok(
      found.some((line) =>
        /^packages\/provider-file\/package\.json:1 @dso\/core: .*declares/.test(line),
      ),
    );
    assert.ok(
      found.some((line) =>
        line.includes(
          'cache.ts:2 @dso/core: @dso/provider-file may not import @dso/core: against the dependency direction; @dso/provider-file may import only: @dso/async, @dso/provider-sdk',
        ),
      ),
    );
  });

  it('fails a test that imports a part below its own', () => {
    const root = workspace({
      'packages/core/package.json': JSON.stringify({
        name: '@dso/core',
        exports: { '.': './src/index.ts', './testing': './src/testing/index.ts' },
        dependencies: { '@dso/provider-sdk': '0.1.0' },
        devDependencies: { '@dso/provider-file': '0.1.0' },
      }),
      'packages/core/src/core.test.ts': "import '@dso/provider-file';\n",
    });
    const found = problems(root);
    assert.ok(
      found.some((line) => line.startsWith('packages/core/src/core.test.ts:1 @dso/provider-file')),
    );
    assert.ok(found.some((line) => line.includes('a cycle between projects')));
  });

  it('fails a deep import into another package, by name or by a relative path', () => {
    const root = workspace({
      'packages/core/src/index.ts':
        "import '@dso/provider-sdk/src/index.js';\nimport '../../provider-sdk/src/index.js';\n",
    });
    const found = problems(root);
    assert.equal(found.length, 2);
    assert.match(
      found[0],
      /index\.ts:1 @dso\/provider-sdk\/src\/index\.js: reaches into @dso\/provider-sdk's internals/,
    );
    assert.match(
      found[1],
      /index\.ts:2 \.\.\/\.\.\/provider-sdk\/src\/index\.js: a relative path out of packages\/core into @dso\/provider-sdk/,
    );
  });

  it('fails production code that reaches out of its project, but lets tests read workspace files', () => {
    const root = workspace({
      'tools/image.json': '{}',
      'packages/core/src/image.ts': "import image from '../../../tools/image.json';\n",
      'packages/core/src/test-support/image.ts':
        "import image from '../../../../tools/image.json';\n",
    });
    const found = problems(root);
    assert.equal(found.length, 1);
    assert.match(
      found[0],
      /^packages\/core\/src\/image\.ts:1 .*a published package cannot reach it/,
    );
  });

  it("lets test code import another project's test-support, and nothing else of it", () => {
    const root = workspace({
      'packages/provider-sdk/src/test-support/engine.ts': 'export const engine = 1;\n',
      'packages/core/src/core.test.ts':
        "import '../../provider-sdk/src/test-support/engine.js';\nimport '../../provider-sdk/src/index.js';\n",
    });
    const found = problems(root);
    assert.equal(found.length, 1);
    assert.match(found[0], /core\.test\.ts:2 .*a relative path out of packages\/core/);
  });

  it('fails a cycle that the table cannot see (two projects in one family)', () => {
    const provider = (name, other) => ({
      [`packages/${name}/package.json`]: JSON.stringify({
        name: `@dso/${name}`,
        dependencies: { '@dso/provider-sdk': '0.1.0', [`@dso/${other}`]: '0.1.0' },
      }),
      [`packages/${name}/src/index.ts`]: `import '@dso/${other}';\n`,
    });
    const root = workspace({
      ...provider('provider-a', 'provider-b'),
      ...provider('provider-b', 'provider-a'),
    });
    const cycle = problems(root).find((line) => line.includes('a cycle between projects'));
    assert.match(cycle, /@dso\/provider-a → @dso\/provider-b → @dso\/provider-a/);
  });

  it('fails a project the table has no layer for', () => {
    const root = workspace({
      'packages/stray/package.json': JSON.stringify({ name: '@dso/stray' }),
    });
    assert.match(problems(root).join('\n'), /@dso\/stray has no layer/);
  });

  it('lets the CLI use provider-local but never the agent', () => {
    const root = workspace({
      'packages/provider-local/package.json': JSON.stringify({
        name: '@dso/provider-local',
        dependencies: { '@dso/provider-sdk': '0.1.0' },
      }),
      'packages/provider-local/src/index.ts': 'export const vault = 1;\n',
      'apps/agent/package.json': JSON.stringify({
        name: '@dso/agent',
        dependencies: { '@dso/core': '0.1.0' },
      }),
      'apps/agent/src/index.ts': "import '@dso/core';\n",
      'apps/cli/package.json': JSON.stringify({
        name: '@dso/cli',
        dependencies: { '@dso/provider-local': '0.1.0', '@dso/agent': '0.1.0' },
      }),
      'apps/cli/src/index.ts': "import '@dso/provider-local';\nimport '@dso/agent';\n",
    });
    const found = problems(root);
    assert.equal(found.length, 2, found.join('\n'));
    assert.match(found[0], /^apps\/cli\/package\.json:1 @dso\/agent/);
    assert.match(
      found[1],
      /^apps\/cli\/src\/index\.ts:2 @dso\/agent: @dso\/cli may not import @dso\/agent/,
    );
  });

  it('reads the projects of the workspace it lives in', () => {
    // Whether the real tree keeps its boundaries is the script's own verdict, not this test's.
    const { projects } = checkBoundaries(join(import.meta.dirname, '..'));
    const names = projects.map((project) => project.name);
    for (const name of ['@dso/async', '@dso/agent', '@dso/test-e2e', 'dso-provider-example']) {
      assert.ok(names.includes(name), `${name} in ${names.join(', ')}`);
    }
  });
});
