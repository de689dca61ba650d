// The workspace's published packages and how they are packed: shared by the package check
// (tools/check-packages.mjs) and the release build (tools/release.mjs), so both ship exactly
// what `npm publish` would.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, readJson, say } from './lib.mjs';

/** Runs a command and returns its standard output; a failure throws with what it printed. */
export function exec(command, args, cwd = ROOT) {
  try {
    return execFileSync(command, args, {
      cwd,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    const printed = `${error.stdout ?? ''}${error.stderr ?? ''}`.trim();
    throw new Error(`${command} ${args.join(' ')} failed in ${cwd}:\n${printed || error.message}`);
  }
}

/** Every package of packages/ and apps/ that is not private: `{ dir, manifest }`, dir relative to the root. */
export function publishedProjects() {
  return ['packages', 'apps']
    .flatMap((dir) => readdirSync(join(ROOT, dir)).map((name) => join(dir, name)))
    .map((dir) => ({ dir, manifest: readJson(join(dir, 'package.json')) }))
    .filter(({ manifest }) => !manifest.private);
}

/**
 * The one version every published package carries: they depend on each other at exactly that
 * version, so a set of tarballs installs together only when they agree.
 *
 * @throws Error naming the packages that differ
 */
export function releaseVersion(projects = publishedProjects()) {
  const versions = new Set(projects.map(({ manifest }) => manifest.version));
  if (versions.size !== 1) {
    const list = projects.map(({ manifest }) => `${manifest.name}@${manifest.version}`).join(', ');
    throw new Error(`the published packages must share one version, found: ${list}`);
  }
  return [...versions][0];
}

/**
 * Checks each project with publint (strict) and packs it with `npm pack` into `destination`.
 * Returns the projects with `tarball` (its absolute path). The packages must be built.
 */
export function packProjects(destination, projects = publishedProjects()) {
  mkdirSync(destination, { recursive: true });
  return projects.map(({ dir, manifest }) => {
    exec('npx', ['publint', '--strict', dir]);
    const [packed] = JSON.parse(
      exec('npm', ['pack', '--json', '--pack-destination', destination], join(ROOT, dir)),
    );
    say(`packed ${manifest.name} (${packed.entryCount} files, ${packed.size} bytes)`);
    return { dir, manifest, tarball: join(destination, packed.filename) };
  });
}
