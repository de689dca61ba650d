import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProcessProvider } from './host.js';
import {
  inspectProviderPackage,
  needsSuppliedSdk,
  PROVIDER_PACKAGE_NAME,
  PROVIDER_SDK_VERSION,
  sdkProblem,
} from './plugin-sdk.js';
import { SPAWN_TEST_TIMEOUT_MS } from './test-fixtures/harness.js';

const peer = (range: string) => ({ '@dso/provider-sdk': range });

describe('PROVIDER_SDK_VERSION', () => {
  it("is this package's version", async () => {
    const manifest = JSON.parse(
      await readFile(new URL('../../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    expect(PROVIDER_SDK_VERSION).toBe(manifest.version);
  });
});

describe('PROVIDER_PACKAGE_NAME', () => {
  it('accepts dso-provider-<name> and @scope/dso-provider-<name> only', () => {
    for (const name of ['dso-provider-acme', '@acme/dso-provider-vault', 'dso-provider-a.b_c-1']) {
      expect(name).toMatch(PROVIDER_PACKAGE_NAME);
    }
    for (const name of ['acme', 'dso-provider-', 'provider-acme', '@acme/acme', 'DSO-provider-x']) {
      expect(name).not.toMatch(PROVIDER_PACKAGE_NAME);
    }
  });
});

describe('inspectProviderPackage', () => {
  it('finds the SDK range among the peer dependencies and checks this SDK against it', () => {
    expect(
      inspectProviderPackage({
        name: 'dso-provider-acme',
        version: '1.0.0',
        peerDependencies: peer(`^${PROVIDER_SDK_VERSION}`),
      }),
    ).toEqual({
      name: 'dso-provider-acme',
      version: '1.0.0',
      kind: 'module',
      sdkRange: `^${PROVIDER_SDK_VERSION}`,
      sdkDeclaredIn: 'peerDependencies',
      sdk: 'ok',
    });
  });

  it('reports a mismatch, with both versions and what to do', () => {
    const info = inspectProviderPackage(
      { name: 'dso-provider-acme', version: '2.0.0', peerDependencies: peer('^9.0.0') },
      '0.1.0',
    );
    expect(info.sdk).toBe('mismatch');
    expect(sdkProblem(info, '0.1.0')).toBe(
      'dso-provider-acme 2.0.0 needs @dso/provider-sdk ^9.0.0; this DSO supplies 0.1.0: install a ' +
        'release of the package built for @dso/provider-sdk 0.1.0, or a DSO whose SDK is in ^9.0.0',
    );
  });

  it('says so when the range cannot be read or the package names no SDK and no command', () => {
    const unreadable = inspectProviderPackage({
      name: 'dso-provider-x',
      peerDependencies: peer('latest'),
    });
    expect(unreadable.sdk).toBe('unreadable');
    expect(sdkProblem(unreadable)).toMatch(/cannot read.*\^0\./);
    const missing = inspectProviderPackage({ name: 'dso-provider-x', version: '1.0.0' });
    expect(missing).toMatchObject({ kind: 'module', sdk: 'missing' });
    expect(sdkProblem(missing)).toMatch(/peerDependencies.*dso\.command/);
  });

  it('takes a command package (dso.command) without an SDK, and notes an SDK in dependencies', () => {
    expect(
      inspectProviderPackage({
        name: 'dso-provider-py',
        version: '0.1.0',
        dso: { command: ['python3', 'provider.py'] },
      }),
    ).toMatchObject({ kind: 'command', sdk: 'ok' });
    expect(
      inspectProviderPackage({ name: 'dso-provider-old', dependencies: peer('^0.1.0') }),
    ).toMatchObject({ sdkDeclaredIn: 'dependencies', sdk: 'ok' });
  });
});

describe('supplySdkToPlugins (through the runner)', () => {
  const canary = `canary-${randomUUID()}`;
  let pluginsDir: string;
  let moduleFile: string;

  beforeAll(async () => {
    // Outside the repository: no node_modules above it holds @dso/provider-sdk.
    pluginsDir = await mkdtemp(join(tmpdir(), 'dso-plugins-'));
    const dir = join(pluginsDir, 'node_modules', 'dso-provider-peer');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({
        name: 'dso-provider-peer',
        version: '1.0.0',
        type: 'module',
        exports: './index.js',
        peerDependencies: peer(`^${PROVIDER_SDK_VERSION}`),
      }),
    );
    moduleFile = join(dir, 'index.js');
    // No zod either: a schema with safeParse is all the SDK asks of it.
    await writeFile(
      moduleFile,
      `import { defineProvider, SecretValue } from '@dso/provider-sdk';
export default defineProvider({
  type: 'peer',
  description: 'a plugin with the SDK as its peer',
  configSchema: { safeParse: (data) => ({ success: true, data }) },
  create: (config, { name }) => ({
    name,
    capabilities: { list: false, watch: false, probe: false, health: false },
    async resolve() { return { value: SecretValue.fromText(config.canary), version: '1' }; },
    async close() {},
  }),
});
`,
    );
  });
  afterAll(async () => {
    await rm(pluginsDir, { recursive: true, force: true });
  });

  it('needs the supplied SDK only where no copy of its own resolves', () => {
    expect(needsSuppliedSdk(pathToFileURL(moduleFile).href)).toBe(true);
    // Inside this repository the workspace's SDK resolves: no loader thread for that.
    expect(needsSuppliedSdk(import.meta.url)).toBe(false);
  });

  it('cannot import the SDK on its own (what the runner supplies)', () => {
    const run = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `await import(${JSON.stringify(pathToFileURL(moduleFile).href)})`,
      ],
      {
        cwd: pluginsDir,
        encoding: 'utf8',
      },
    );
    expect(run.status).not.toBe(0);
    expect(run.stderr).toContain('ERR_MODULE_NOT_FOUND');
  });

  it(
    "resolves the plugin's @dso/provider-sdk import to the runner's own copy",
    async () => {
      const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
      const provider = await createProcessProvider({
        name: 'peer',
        module: moduleFile,
        resolveFrom: pluginsDir,
        config: { canary },
        execArgv: ['--conditions=@dso/source', '--import', tsx],
        startTimeoutMs: 20_000,
      });
      try {
        const { value } = await provider.resolve({ path: 'any' });
        expect(value.revealText()).toBe(canary);
      } finally {
        await provider.close();
      }
    },
    SPAWN_TEST_TIMEOUT_MS,
  );
});
