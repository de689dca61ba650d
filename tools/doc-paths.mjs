// Every file a package's documentation points to (README.md, PROTOCOL.md: `src/…`, `bin/…`,
// `dist/…`, and links to its other Markdown files) is in its tarball: an author reading the installed package finds the example the
// docs name. Tests (`*.test.ts`) and test-only helpers (`test-support/`) are exempt: the docs
// name them for readers of the repository, and they are not published by design.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './lib.mjs';

const NAMED_PATH =
  /(?:`|\]\((?:\.\/)?)((?:src|bin|dist)\/[A-Za-z0-9_./-]*)|\]\((?:\.\/)?([A-Za-z0-9_-]+\.md)\)/g;

/** The package-relative paths the package's Markdown files name, existing in the repository. */
export function documentedPaths(dir) {
  const found = new Set();
  for (const file of readdirSync(join(ROOT, dir)).filter((name) => name.endsWith('.md'))) {
    const text = readFileSync(join(ROOT, dir, file), 'utf8');
    for (const [, inFolder, markdown] of text.matchAll(NAMED_PATH)) {
      const path = inFolder ?? markdown;
      if (path.endsWith('.test.ts') || path.includes('test-support/')) continue;
      // dist/ is built; a path that does not exist in the repository is a different doc bug.
      if (path.startsWith('dist/') || existsSync(join(ROOT, dir, path))) found.add(path);
    }
  }
  return [...found].sort();
}

/**
 * Throws naming each documented path that `tarball` leaves out (a folder: nothing under it).
 *
 * @throws Error with the package's `files` list to fix
 */
export function checkDocumentedPaths(dir, tarball) {
  const packed = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .map((entry) => entry.replace(/^package\//, ''));
  const missing = documentedPaths(dir).filter((path) =>
    path.endsWith('/')
      ? !packed.some((entry) => entry.startsWith(path))
      : !packed.includes(path.replace(/\/$/, '')),
  );
  if (missing.length > 0) {
    throw new Error(
      `${dir}: its docs name ${missing.join(', ')}, which its tarball leaves out: ` +
        `add them to "files" in ${dir}/package.json (or stop pointing readers to them)`,
    );
  }
}
