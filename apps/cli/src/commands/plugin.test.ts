import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { PROVIDER_SDK_VERSION } from '@dso/provider-sdk';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../program.js';
import { readTarballManifest, runNpm } from './plugin.js';

// Real npm, offline and on loopback only: these packages have no dependencies to fetch, and a
// registry asked for anything is a closed port.
const NPM_ENV = {
  PATH: process.env.PATH,
  HOME: process.env.HOME,
  npm_config_registry: 'http://127.0.0.1:9/',
  npm_config_fetch_retries: '0',
};
const NPM_TEST_TIMEOUT_MS = 60_000;

let home: string;
let work: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'dso-plugin-home-'));
  work = await mkdtemp(join(tmpdir(), 'dso-plugin-src-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

async function dso(args: string[], env: NodeJS.ProcessEnv = {}) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk) => {
    out += chunk;
  });
  stderr.on('data', (chunk) => {
    err += chunk;
  });
  const stdin = Readable.from(['']) as unknown as NodeJS.ReadStream;
  const code = await runCli(args, {
    env: { ...NPM_ENV, DSO_HOME: home, ...env },
    stdin,
    stdout,
    stderr,
  });
  return { code, stdout: out, stderr: err };
}

/** A provider package folder: package.json from `manifest`, and an index.js. */
async function packageFolder(folder: string, manifest: Record<string, unknown>): Promise<string> {
  const dir = join(work, folder);
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ version: '1.0.0', type: 'module', main: 'index.js', ...manifest }),
  );
  await writeFile(join(dir, 'index.js'), 'export default {};\n');
  return dir;
}

const sdkPeer = (range: string) => ({ peerDependencies: { '@dso/provider-sdk': range } });
const pluginsDir = () => join(home, 'plugins');

describe('dso plugin install, list, remove', () => {
  it(
    'installs a package folder (packed and kept), lists it as ok, and removes it',
    async () => {
      const folder = await packageFolder('acme', {
        name: 'dso-provider-acme',
        ...sdkPeer(`^${PROVIDER_SDK_VERSION}`),
      });
      const installed = await dso(['plugin', 'install', folder, '--offline']);
      expect(installed.stderr).toBe('');
      expect(installed.code).toBe(0);
      expect(installed.stdout).toContain(
        `installed dso-provider-acme 1.0.0: @dso/provider-sdk ^${PROVIDER_SDK_VERSION}, this DSO supplies ${PROVIDER_SDK_VERSION}`,
      );
      const manifest = JSON.parse(
        await readFile(
          join(pluginsDir(), 'node_modules', 'dso-provider-acme', 'package.json'),
          'utf8',
        ),
      );
      expect(manifest.name).toBe('dso-provider-acme');
      // Nothing of the SDK is installed: the agent supplies it.
      expect(await readdir(join(pluginsDir(), 'node_modules'))).not.toContain('@dso');
      expect(await readdir(join(pluginsDir(), 'tarballs'))).toEqual([
        'dso-provider-acme-1.0.0.tgz',
      ]);
      // The plugins folder needs the source folder no more.
      await rm(folder, { recursive: true });

      const listed = await dso(['plugin', 'list', '--json']);
      expect(listed.code).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual([
        {
          name: 'dso-provider-acme',
          version: '1.0.0',
          kind: 'module',
          sdkRange: `^${PROVIDER_SDK_VERSION}`,
          sdkDeclaredIn: 'peerDependencies',
          sdk: 'ok',
        },
      ]);
      const table = await dso(['plugin', 'list']);
      expect(table.stdout.split('\n')[1]).toMatch(
        /^dso-provider-acme\s+1\.0\.0\s+module\s+\^\S+\s+ok$/,
      );

      const removed = await dso(['plugin', 'remove', 'dso-provider-acme']);
      expect(removed.code).toBe(0);
      expect(await readdir(join(pluginsDir(), 'node_modules'))).not.toContain('dso-provider-acme');
      expect(await readdir(join(pluginsDir(), 'tarballs'))).toEqual([]);
      expect((await dso(['plugin', 'list'])).stdout).toContain('no provider packages in');
    },
    NPM_TEST_TIMEOUT_MS,
  );

  it(
    'installs a tarball and a command package (dso.command, no SDK)',
    async () => {
      const folder = await packageFolder('py', {
        name: '@acme/dso-provider-py',
        dso: { command: ['python3', 'provider.py'] },
        files: ['index.js'],
      });
      const packed = await runNpm(['pack', folder, '--pack-destination', work], {
        env: NPM_ENV,
        cwd: work,
      });
      expect(packed.code).toBe(0);
      const tarball = join(work, 'acme-dso-provider-py-1.0.0.tgz');
      expect(await readTarballManifest(tarball)).toMatchObject({ name: '@acme/dso-provider-py' });
      const installed = await dso(['plugin', 'install', tarball, '--offline']);
      expect(installed.stderr).toBe('');
      expect(installed.stdout).toContain(
        'installed @acme/dso-provider-py 1.0.0: runs its own command',
      );
      const listed = JSON.parse((await dso(['plugin', 'list', '--json'])).stdout);
      expect(listed).toMatchObject([{ name: '@acme/dso-provider-py', kind: 'command', sdk: 'ok' }]);
      expect((await dso(['plugin', 'remove', '@acme/dso-provider-py'])).code).toBe(0);
      expect(await readdir(join(pluginsDir(), 'tarballs'))).toEqual([]);
    },
    NPM_TEST_TIMEOUT_MS,
  );

  it('refuses a package built for an SDK this DSO does not supply, with both versions, installing nothing', async () => {
    const folder = await packageFolder('newer', {
      name: 'dso-provider-newer',
      version: '2.0.0',
      ...sdkPeer('^9.0.0'),
    });
    const result = await dso(['plugin', 'install', folder], { PATH: '' });
    expect(result.code).toBe(3);
    expect(result.stderr).toBe(
      `dso: dso-provider-newer 2.0.0 needs @dso/provider-sdk ^9.0.0; this DSO supplies ${PROVIDER_SDK_VERSION}: ` +
        `install a release of the package built for @dso/provider-sdk ${PROVIDER_SDK_VERSION}, or a DSO whose SDK is in ^9.0.0 (DSO_CLI_PLUGIN_SDK_MISMATCH)\n`,
    );
    expect(await readdir(join(pluginsDir(), 'node_modules')).catch(() => [])).toEqual([]);
  });

  it('refuses what is not a provider package: its name, an SDK npm would fetch, neither SDK nor command', async () => {
    // PATH is empty: npm could not even start, so these are refused before it would run.
    const misnamed = await packageFolder('misnamed', {
      name: 'acme-secrets',
      ...sdkPeer('^0.1.0'),
    });
    const named = await dso(['plugin', 'install', misnamed], { PATH: '' });
    expect(named.code).toBe(3);
    expect(named.stderr).toContain('dso-provider-<name> or @scope/dso-provider-<name>');
    expect(named.stderr).toContain('(DSO_CLI_PLUGIN_NAME_INVALID)');
    expect((await dso(['plugin', 'install', 'left-pad'], { PATH: '' })).stderr).toContain(
      'DSO_CLI_PLUGIN_NAME_INVALID',
    );

    const fetching = await packageFolder('dep', {
      name: 'dso-provider-dep',
      dependencies: { '@dso/provider-sdk': '^0.1.0' },
    });
    const dependency = await dso(['plugin', 'install', fetching], { PATH: '' });
    expect(dependency.code).toBe(3);
    expect(dependency.stderr).toContain('move @dso/provider-sdk to peerDependencies');
    expect(dependency.stderr).toContain('(DSO_CLI_PLUGIN_DEPENDENCY_INVALID)');
    // Another @dso package: named, and removed rather than made a peer.
    const core = await packageFolder('core-dep', {
      name: 'dso-provider-core-dep',
      peerDependencies: { '@dso/provider-sdk': '^0.1.0' },
      dependencies: { '@dso/core': '^0.1.0' },
    });
    const coreDependency = await dso(['plugin', 'install', core], { PATH: '' });
    expect(coreDependency.code).toBe(3);
    expect(coreDependency.stderr).toContain(
      'lists @dso/core in its dependencies, which npm would fetch from the public registry',
    );
    expect(coreDependency.stderr).toContain(
      'its author should remove @dso/core: the agent supplies only @dso/provider-sdk',
    );
    expect(coreDependency.stderr).not.toContain('move @dso/provider-sdk');

    const neither = await packageFolder('neither', { name: 'dso-provider-neither' });
    const none = await dso(['plugin', 'install', neither], { PATH: '' });
    expect(none.code).toBe(3);
    expect(none.stderr).toContain('(DSO_CLI_PLUGIN_INVALID)');

    const badCommand = await packageFolder('bad-command', {
      name: 'dso-provider-bad-command',
      dso: { command: 'python3 provider.py' },
    });
    expect((await dso(['plugin', 'install', badCommand], { PATH: '' })).stderr).toContain(
      'must be a non-empty array of strings',
    );

    const missing = await dso(['plugin', 'install', './nowhere.tgz']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toContain('(DSO_CLI_PLUGIN_SOURCE_NOT_FOUND)');
    expect(
      (await dso(['plugin', 'install', 'git+https://example.invalid/x.git'])).stderr,
    ).toContain('DSO_CLI_PLUGIN_SOURCE_INVALID');
  });

  it(
    'says npm is missing, and that the registry cannot be reached, with exit codes by class',
    async () => {
      const noNpm = await dso(['plugin', 'install', 'dso-provider-acme'], { PATH: '' });
      expect(noNpm.code).toBe(4);
      expect(noNpm.stderr).toContain('npm is not on PATH');
      expect(noNpm.stderr).toContain('(DSO_CLI_NPM_MISSING)');

      const unreachable = await dso(['plugin', 'install', 'dso-provider-acme']);
      expect(unreachable.code).toBe(6);
      expect(unreachable.stderr).toContain('npm cannot reach its registry');
      expect(unreachable.stderr).toContain('(DSO_CLI_PLUGIN_REGISTRY_UNREACHABLE)');
    },
    NPM_TEST_TIMEOUT_MS,
  );

  it('says what to do when removing a package that is not installed', async () => {
    const result = await dso(['plugin', 'remove', 'dso-provider-absent']);
    expect(result.code).toBe(4);
    expect(result.stderr).toContain('dso plugin list shows what is');
    expect(result.stderr).toContain('(DSO_CLI_PLUGIN_NOT_INSTALLED)');
  });

  it('lists a package whose SDK range this DSO is not in as a mismatch, with the fix', async () => {
    const dir = join(pluginsDir(), 'node_modules', 'dso-provider-old');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'dso-provider-old', version: '0.0.1', ...sdkPeer('~0.0.1') }),
    );
    const table = await dso(['plugin', 'list']);
    expect(table.code).toBe(0);
    expect(table.stdout).toMatch(/dso-provider-old\s+0\.0\.1\s+module\s+~0\.0\.1\s+mismatch/);
    expect(table.stdout).toContain(
      'dso-provider-old: dso-provider-old 0.0.1 needs @dso/provider-sdk ~0.0.1',
    );
  });
});
