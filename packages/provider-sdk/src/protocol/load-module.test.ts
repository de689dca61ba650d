import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { conditionsOf, loadProviderModule, resolveProviderModule } from './load-module.js';
import { fixturePath, serialise } from './test-fixtures/harness.js';

const CANARY = `canary-${randomUUID()}`;
let plugins: string;

/** A provider definition as any copy of the SDK marks one, in plain JavaScript. */
const definitionSource = (type: string) => `
const definition = { type: ${JSON.stringify(type)}, sdkApiVersion: 1, description: '', capabilities: { list: false, watch: false, probe: false, health: false }, configSchema: { safeParse: (v) => ({ success: true, data: v }) }, create() {} };
Object.defineProperty(definition, Symbol.for('dso.provider-definition'), { value: true });
export default definition;
`;

async function put(file: string, text: string) {
  await mkdir(dirname(join(plugins, file)), { recursive: true });
  await writeFile(join(plugins, file), text);
}

beforeAll(async () => {
  plugins = await mkdtemp(join(tmpdir(), 'dso-plugins-'));
  await put(
    'node_modules/dso-provider-acme/package.json',
    JSON.stringify({
      name: 'dso-provider-acme',
      type: 'module',
      exports: {
        '.': {
          '@acme/source': './src/index.mjs',
          import: './esm/index.mjs',
          require: './cjs/index.cjs',
        },
        './extra': './esm/extra.mjs',
        './features/*': './esm/features/*.mjs',
      },
    }),
  );
  await put('node_modules/dso-provider-acme/esm/index.mjs', definitionSource('acme'));
  await put('node_modules/dso-provider-acme/src/index.mjs', definitionSource('acme-source'));
  await put('node_modules/dso-provider-acme/esm/extra.mjs', definitionSource('acme-extra'));
  await put('node_modules/dso-provider-acme/esm/features/one.mjs', definitionSource('acme-one'));
  await put(
    'node_modules/@scope/dso-provider-main/package.json',
    JSON.stringify({ name: '@scope/dso-provider-main', type: 'module', main: 'lib/main' }),
  );
  await put('node_modules/@scope/dso-provider-main/lib/main.js', definitionSource('main'));
  await put(
    'node_modules/dso-provider-closed/package.json',
    JSON.stringify({ name: 'dso-provider-closed', exports: { './other': './other.mjs' } }),
  );
  await put('throws.mjs', `throw new Error('boom ${CANARY}');\n`);
  await put('nested/deeper/.keep', '');
});

afterAll(async () => {
  await rm(plugins, { recursive: true, force: true });
});

const file = (url: string) => fileURLToPath(url).slice(plugins.length + 1);

describe('resolveProviderModule', () => {
  it('resolves a package name through its exports with the import condition', () => {
    expect(file(resolveProviderModule('dso-provider-acme', plugins))).toBe(
      'node_modules/dso-provider-acme/esm/index.mjs',
    );
  });

  it('honours extra conditions in the order the package lists them', () => {
    expect(file(resolveProviderModule('dso-provider-acme', plugins, ['@acme/source']))).toBe(
      'node_modules/dso-provider-acme/src/index.mjs',
    );
  });

  it('resolves subpaths, patterns, scoped packages with main, and from a folder below', () => {
    expect(file(resolveProviderModule('dso-provider-acme/extra', plugins))).toBe(
      'node_modules/dso-provider-acme/esm/extra.mjs',
    );
    expect(file(resolveProviderModule('dso-provider-acme/features/one', plugins))).toBe(
      'node_modules/dso-provider-acme/esm/features/one.mjs',
    );
    expect(file(resolveProviderModule('@scope/dso-provider-main', plugins))).toBe(
      'node_modules/@scope/dso-provider-main/lib/main.js',
    );
    expect(file(resolveProviderModule('dso-provider-acme', join(plugins, 'nested/deeper')))).toBe(
      'node_modules/dso-provider-acme/esm/index.mjs',
    );
  });

  it('resolves absolute paths, paths relative to resolveFrom, and file URLs', () => {
    const path = join(plugins, 'throws.mjs');
    expect(resolveProviderModule(path, '/')).toBe(pathToFileURL(path).href);
    expect(resolveProviderModule('./throws.mjs', plugins)).toBe(pathToFileURL(path).href);
    expect(resolveProviderModule(pathToFileURL(path).href, '/')).toBe(pathToFileURL(path).href);
  });

  it.each([
    [
      'dso-provider-missing',
      'provider package dso-provider-missing is in no node_modules folder of',
    ],
    ['dso-provider-closed', 'exports nothing at .'],
    ['Not A Package!', 'neither a package name nor an absolute path'],
    ['/nowhere/provider.mjs', 'provider module /nowhere/provider.mjs does not exist'],
  ])('refuses %s with a clear error', (specifier, message) => {
    expect(() => resolveProviderModule(specifier, plugins)).toThrow(
      expect.objectContaining({
        code: 'DSO_PROVIDER_INVALID_CONFIG',
        message: expect.stringContaining(message),
      }),
    );
  });

  it('says how to install a missing package', () => {
    expect(() => resolveProviderModule('dso-provider-missing', plugins)).toThrow(
      `provider package dso-provider-missing is in no node_modules folder of ${plugins} or its parent folders (where Node looks): for the agent, install it with \`dso plugin install <its .tgz, its folder, or dso-provider-missing from your npm registry>\``,
    );
    // Not a way around dso plugin's checks.
    expect(() => resolveProviderModule('dso-provider-missing', plugins)).not.toThrow(
      /npm install --prefix/,
    );
  });
});

describe('loadProviderModule', () => {
  it('loads the default export of a package in the plugins folder', async () => {
    const definition = await loadProviderModule('dso-provider-acme', { resolveFrom: plugins });
    expect(definition.type).toBe('acme');
  });

  it('loads a TypeScript fixture by absolute path, default or `provider` export', async () => {
    expect((await loadProviderModule(fixturePath('full-provider.ts'))).type).toBe('fixture');
    expect((await loadProviderModule(fixturePath('minimal-provider.ts'))).type).toBe(
      'fixture-minimal',
    );
  });

  it('refuses a module that is not a provider definition, listing what it exports', async () => {
    await expect(loadProviderModule(fixturePath('not-a-provider.ts'))).rejects.toMatchObject({
      code: 'DSO_PROVIDER_INVALID_CONFIG',
      message: expect.stringContaining(
        'exports no provider definition (found exports: default, hello)',
      ),
    });
  });

  it('refuses a definition built for another SDK API version', async () => {
    await expect(loadProviderModule(fixturePath('future-sdk-provider.ts'))).rejects.toMatchObject({
      code: 'DSO_PROVIDER_INVALID_CONFIG',
      message: expect.stringContaining('SDK API version 99'),
    });
  });

  it('keeps what a module threw at import out of the error, and hands it to onImportError', async () => {
    const seen: unknown[] = [];
    const error = await loadProviderModule(join(plugins, 'throws.mjs'), {
      onImportError: (thrown) => seen.push(thrown),
    }).catch((thrown: unknown) => thrown);
    expect(error).toMatchObject({
      code: 'DSO_PROVIDER_INVALID_CONFIG',
      message: expect.stringContaining('failed to import (Error)'),
    });
    expect(serialise(error)).not.toContain(CANARY);
    expect(String(seen[0])).toContain(CANARY);
  });
});

describe('conditionsOf', () => {
  it('reads --conditions in each spelling', () => {
    expect(
      conditionsOf(['--conditions=a', '--conditions', 'b', '-C', 'c', '-Cd', '--import', 'tsx']),
    ).toEqual(['a', 'b', 'c', 'd']);
  });
});
