#!/usr/bin/env node
// `npm run release`: what a host needs to run DSO without the npm registry, in dist/release/:
//
//   npm/*.tgz                     every published package as `npm pack` makes it (tools/pack.mjs),
//                                 for `npm install -g --offline` of all of them together
//   dso-<version>-linux/          the self-contained bundle, also as dso-<version>-linux.tar.gz:
//     node_modules/@dso/<name>/   each package the commands run, its dist/ bundled by esbuild
//                                 with every third-party dependency inside; the @dso packages
//                                 stay separate folders, because the agent loads providers, and
//                                 plugins load the SDK, by package name
//     bin/dso, bin/dso-agent, bin/docker-dso   links to the packages' bins
//     install.sh                  puts it under a prefix (README.md, "Install on a host")
//
// The bundle needs a plain `node` (20.19+) and nothing else: no npm, no install step.
// `--no-build` reuses the built dist/ folders (the test that installs the release builds once).
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join, relative } from 'node:path';
import { assertNodeVersion, ensureDependencies, nx, ROOT, say } from './lib.mjs';
import { packProjects, publishedProjects, releaseVersion } from './pack.mjs';

const RELEASE_DIR = join(ROOT, 'dist', 'release');

/**
 * Packages the commands never load: the conformance suite runs in an author's vitest, so it
 * ships as a tarball only.
 */
const NOT_BUNDLED = new Set(['@dso/provider-conformance']);

/** The commands the bundle offers, as links in its bin/ (and in the prefix's, once installed). */
const COMMANDS = [
  { name: 'dso', package: '@dso/cli', bin: 'bin/dso.js' },
  { name: 'dso-agent', package: '@dso/agent', bin: 'bin/dso-agent.js' },
  { name: 'docker-dso', package: '@dso/cli', bin: 'bin/docker-dso.js' },
];

/**
 * Bundled code is ESM, and some dependencies are CommonJS that calls `require` or reads
 * `__dirname`: give every bundled file both, from its own location.
 */
const BANNER = [
  "import { createRequire as __dsoCreateRequire } from 'node:module';",
  "import { fileURLToPath as __dsoFileURLToPath } from 'node:url';",
  'const require = __dsoCreateRequire(import.meta.url);',
  'const __filename = __dsoFileURLToPath(import.meta.url);',
  "const __dirname = __dsoFileURLToPath(new URL('.', import.meta.url));",
].join('\n');

/**
 * dockerode's BuildKit session (gRPC) and docker-modem's SSH transport (ssh2) are required when
 * dockerode loads, used only to build images and for `DOCKER_HOST=ssh://`. Each file exports
 * one function: bundled, it becomes a stand-in that loads the file's own code (`?dso-real`) on
 * its first call, so an agent that never calls them never loads them (~12 MB of RSS). The
 * agent does the same for an unbundled install: apps/agent/src/defer-modules.ts.
 */
const DEFERRED_FILES = /[\\/](?:docker-modem[\\/]lib[\\/]ssh|dockerode[\\/]lib[\\/]session)\.js$/;
const deferUnusedFiles = {
  name: 'dso-defer-unused',
  setup(build) {
    build.onLoad({ filter: DEFERRED_FILES }, (args) => {
      if (args.suffix === '?dso-real') return undefined;
      return {
        contents: [
          'var real;',
          'module.exports = function () {',
          `  real = real || require(${JSON.stringify(`${args.path}?dso-real`)});`,
          '  return real.apply(this, arguments);',
          '};',
        ].join('\n'),
        loader: 'js',
      };
    });
  },
};

/** The .js files of a built dist/ folder, relative to it, without the vitest-only `testing/` entries. */
function distEntries(dist, sub = '') {
  return readdirSync(join(dist, sub), { withFileTypes: true }).flatMap((entry) => {
    const path = join(sub, entry.name);
    if (entry.isDirectory()) return path === 'testing' ? [] : distEntries(dist, path);
    return entry.name.endsWith('.js') ? [path] : [];
  });
}

/** `exports` without the entries the bundle leaves out, each target reduced to its JS file. */
function bundledExports(exports) {
  return Object.fromEntries(
    Object.entries(exports)
      .filter(([subpath]) => subpath !== './testing')
      .map(([subpath, target]) => [
        subpath,
        typeof target === 'string' ? target : (target.default ?? target.import),
      ]),
  );
}

async function bundlePackage(esbuild, { dir, manifest }, bundleDir) {
  const source = join(ROOT, dir);
  const target = join(bundleDir, 'node_modules', manifest.name);
  const dist = join(source, 'dist');
  const entries = distEntries(dist);
  const result = await esbuild.build({
    entryPoints: Object.fromEntries(
      entries.map((file) => [file.replace(/\.js$/, ''), join(dist, file)]),
    ),
    outdir: join(target, 'dist'),
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    // The other @dso packages are folders beside this one (one copy of each, found by name).
    // Native addons stay requires that fail, inside the try each sits in, as on a host where
    // npm built none: cpu-features (ssh2's optional speed-up) and ssh2's crypto binding; ssh2
    // (DOCKER_HOST=ssh://) then uses its JavaScript code.
    external: ['@dso/*', 'cpu-features', '*.node'],
    plugins: [deferUnusedFiles],
    banner: { js: BANNER },
    logLevel: 'warning',
    legalComments: 'eof',
  });
  if (result.errors.length > 0) throw new Error(`bundling ${manifest.name} failed`);
  for (const extra of ['bin', 'systemd', 'README.md', 'LICENSE']) {
    if (existsSync(join(source, extra)))
      cpSync(join(source, extra), join(target, extra), { recursive: true });
  }
  const dsoDependencies = Object.fromEntries(
    Object.entries(manifest.dependencies ?? {}).filter(([name]) => name.startsWith('@dso/')),
  );
  writeFileSync(
    join(target, 'package.json'),
    `${JSON.stringify(
      {
        name: manifest.name,
        version: manifest.version,
        description: manifest.description,
        type: 'module',
        license: manifest.license,
        engines: manifest.engines,
        exports: bundledExports(manifest.exports),
        main: manifest.main,
        ...(manifest.bin ? { bin: manifest.bin } : {}),
        // Third-party code is inside dist/; only the sibling @dso folders are dependencies.
        dependencies: dsoDependencies,
      },
      null,
      2,
    )}\n`,
  );
  say(`bundled ${manifest.name} (${entries.length} entries)`);
}

/**
 * Writes the self-contained bundle for `version` into `parent`/dso-<version>-linux and its
 * .tar.gz beside it. Returns both paths.
 */
async function writeBundle(projects, version, parent) {
  // esbuild is tsup's bundler (a dependency of the workspace through tsup): no dependency added.
  const esbuild = await import('esbuild');
  const name = `dso-${version}-linux`;
  const bundleDir = join(parent, name);
  rmSync(bundleDir, { recursive: true, force: true });
  mkdirSync(join(bundleDir, 'bin'), { recursive: true });
  for (const project of projects.filter(({ manifest }) => !NOT_BUNDLED.has(manifest.name))) {
    await bundlePackage(esbuild, project, bundleDir);
  }
  for (const command of COMMANDS) {
    const file = join('node_modules', command.package, command.bin);
    if (!existsSync(join(bundleDir, file))) {
      throw new Error(`${command.package} has no ${command.bin} (the ${command.name} command)`);
    }
    symlinkSync(join('..', file), join(bundleDir, 'bin', command.name));
  }
  copyFileSync(join(ROOT, 'tools', 'release', 'install.sh'), join(bundleDir, 'install.sh'));
  chmodSync(join(bundleDir, 'install.sh'), 0o755);
  writeFileSync(join(bundleDir, 'VERSION'), `${version}\n`);
  const tarball = `${bundleDir}.tar.gz`;
  const tar = spawnSync('tar', ['-czf', tarball, '-C', parent, name], { stdio: 'inherit' });
  if (tar.status !== 0) throw new Error(`tar could not write ${tarball}`);
  say(`bundled ${name}.tar.gz`);
  return { bundleDir, tarball };
}

{
  assertNodeVersion();
  await ensureDependencies();
  const projects = publishedProjects();
  const version = releaseVersion(projects);
  if (!process.argv.includes('--no-build')) {
    say(`building ${projects.length} packages`);
    await nx(['run-many', '-t', 'build', '-p', ...projects.map(({ manifest }) => manifest.name)]);
  }
  // Written beside dist/release and swapped in whole: a failed release leaves the last one.
  const next = `${RELEASE_DIR}.next`;
  rmSync(next, { recursive: true, force: true });
  packProjects(join(next, 'npm'), projects);
  await writeBundle(projects, version, next);
  rmSync(RELEASE_DIR, { recursive: true, force: true });
  renameSync(next, RELEASE_DIR);
  say(
    `release ${version} in ${relative(ROOT, RELEASE_DIR)}/: npm/*.tgz and dso-${version}-linux.tar.gz`,
  );
}
