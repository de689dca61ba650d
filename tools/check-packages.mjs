#!/usr/bin/env node
// Proves every publishable package is publishable as it is: publint finds no error, `npm pack`
// yields a tarball, and all tarballs install together in a scratch folder where each package
// imports and each bin answers --help.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkDocumentedPaths } from './doc-paths.mjs';
import { ROOT, say } from './lib.mjs';
import { exec, packProjects } from './pack.mjs';

const scratch = mkdtempSync(join(tmpdir(), 'dso-pack-'));
try {
  const projects = packProjects(scratch);
  const tarballs = projects.map(({ tarball }) => tarball);
  const app = join(scratch, 'app');
  mkdirSync(app);
  // Peers the packages name are pinned as an author's project would pin them: vitest (the
  // conformance suite runs inside it) at the workspace's own version, which npm has cached.
  const rootManifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8'));
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({
      name: 'scratch',
      private: true,
      type: 'module',
      dependencies: { vitest: rootManifest.devDependencies.vitest },
    }),
  );
  // --prefer-offline: npm's cache (filled by `npm ci`) first; the registry only for what a fresh
  // resolution picks newer than the lockfile (transitive ranges of the SDKs).
  exec('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', ...tarballs], app);
  for (const { dir, manifest, tarball } of projects) {
    checkDocumentedPaths(dir, tarball);
    // The tarball's copy, not a registry package of the same name (the npm scope is not ours alone).
    const installed = JSON.parse(
      readFileSync(join(app, 'node_modules', manifest.name, 'package.json'), 'utf8'),
    );
    if (installed.version !== manifest.version || installed.description !== manifest.description) {
      throw new Error(
        `${manifest.name} in the scratch install is not the packed one (version ${installed.version})`,
      );
    }
    const names = exec(
      'node',
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(manifest.name)}); console.log(Object.keys(m).join(','))`,
      ],
      app,
    ).trim();
    if (!names) throw new Error(`${manifest.name} imports but exports nothing`);
    for (const bin of Object.keys(manifest.bin ?? {})) {
      exec(join(app, 'node_modules', '.bin', bin), ['--help'], app);
    }
    say(`${manifest.name} installs and imports from its tarball`);
  }
  console.log(`package checks: ${projects.length} packages packed, installed and imported`);
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
