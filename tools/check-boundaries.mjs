#!/usr/bin/env node
// Package boundaries, checked so that breaking one fails the build (what Nx's module boundary
// lint rule does for eslint; this workspace lints with biome). For every project it reads each
// import, export-from, dynamic import, `import type` and `require` specifier in `src/` and fails
// when a project:
//   - imports a workspace package its package.json does not declare (test code may also use
//     devDependencies);
//   - imports against the dependency direction of LAYERS below (a part depends only on parts
//     above it), or declares such a dependency in its package.json;
//   - reaches into another package's internals (`@dso/x/src/…`, a subpath `@dso/x` does not
//     export, or a relative path that leaves the project);
//   - takes part in a cycle of projects.
//   node tools/check-boundaries.mjs   # exit 0, or 1 with file:line, the import and the fix
// Test code is `*.test.ts` and anything under a `test-support/` or `test-fixtures/` folder.
// Needs `typescript` (a root devDependency) to parse: imports are read from the syntax tree,
// never by a regular expression that a comment, a string or a regex literal could fool.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';

/**
 * The dependency direction, top to bottom: a part may import only the parts its `mayImport`
 * names, each of which sits above it. `@dso/async` is the lowest layer, the toolkit every part
 * uses instead of its own timers, so every part may import it. `name` is a package name; a
 * trailing `*` matches a family. Everything else (which projects exist, what they declare, what
 * they export) is read from their package.json.
 */
export const LAYERS = [
  { name: '@dso/async', mayImport: [] },
  { name: '@dso/provider-sdk', mayImport: ['@dso/async'] },
  { name: '@dso/provider-conformance', mayImport: ['@dso/provider-sdk'] },
  { name: '@dso/core', mayImport: ['@dso/provider-sdk'] },
  { name: '@dso/docker-runtime', mayImport: ['@dso/core'] },
  { name: '@dso/cache-redis', mayImport: ['@dso/core', '@dso/provider-sdk'] },
  // Providers stand on the SDK alone, so a third party can write one: never on core.
  { name: '@dso/provider-*', mayImport: ['@dso/provider-sdk'] },
  // All packages but the conformance suite, which runs inside vitest: the agent's tests may use it.
  {
    name: '@dso/agent',
    mayImport: [
      '@dso/provider-sdk',
      '@dso/core',
      '@dso/docker-runtime',
      '@dso/cache-redis',
      '@dso/provider-*',
    ],
  },
  // The CLI talks to the agent over its API, never by importing it.
  { name: '@dso/cli', mayImport: ['@dso/core', '@dso/provider-sdk', '@dso/provider-local'] },
  // The third-party provider template, checked as its author's package would be.
  { name: 'dso-provider-*', mayImport: ['@dso/provider-sdk'] },
  // End-to-end tests drive built artifacts of anything; all of their code is test code.
  { name: '@dso/test-e2e', mayImport: ['*'], testOnly: true },
];

/** Imported by every layer but its own (see LAYERS). */
const BOTTOM = '@dso/async';

/** Folders besides the workspaces whose projects are checked too (not npm workspaces). */
const EXTRA_PROJECT_GLOBS = ['examples/*'];

const SOURCE_FILE = /\.(c|m)?tsx?$/;
const TEST_FILE = /\.test\.(c|m)?tsx?$/;
const TEST_FOLDERS = ['test-support', 'test-fixtures'];

const matches = (pattern, name) =>
  pattern === '*' ||
  (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : pattern === name);

/** The index in `layers` of the layer a package belongs to, or -1. */
function layerIndex(layers, name) {
  return layers.findIndex((layer) => matches(layer.name, name));
}

/** Whether `from` (a package name) may import `to` by the table, and the names it may import. */
function directionAllows(layers, from, to) {
  const index = layerIndex(layers, from);
  const layer = layers[index];
  if (to === BOTTOM && from !== BOTTOM) return true;
  return layer.mayImport.some((pattern) => matches(pattern, to));
}

/** Whether `to` sits in a layer above `from`'s (what test code and devDependencies need). */
function isAbove(layers, from, to) {
  const fromLayer = layers[layerIndex(layers, from)];
  if (fromLayer.mayImport.includes('*')) return true;
  const toIndex = layerIndex(layers, to);
  return toIndex !== -1 && toIndex < layerIndex(layers, from);
}

function allowedText(layers, name) {
  const layer = layers[layerIndex(layers, name)];
  if (layer.mayImport.includes('*')) return 'any workspace package';
  const names = name === BOTTOM ? [] : [BOTTOM, ...layer.mayImport];
  return names.length ? names.join(', ') : 'no workspace package';
}

function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/** Expands `dir/*` and literal workspace entries to project folders holding a package.json. */
function expandGlobs(root, globs) {
  return globs.flatMap((glob) => {
    if (!glob.endsWith('/*')) return existsSync(join(root, glob, 'package.json')) ? [glob] : [];
    const parent = glob.slice(0, -2);
    if (!existsSync(join(root, parent))) return [];
    return readdirSync(join(root, parent), { withFileTypes: true })
      .filter((entry) => entry.isDirectory())
      .map((entry) => `${parent}/${entry.name}`)
      .filter((dir) => existsSync(join(root, dir, 'package.json')));
  });
}

/** Every project: its folder, name, declared workspace dependencies and exported subpaths. */
export function findProjects(root) {
  const workspaces = readJson(join(root, 'package.json')).workspaces ?? [];
  const globs = Array.isArray(workspaces) ? workspaces : (workspaces.packages ?? []);
  const dirs = [...new Set(expandGlobs(root, [...globs, ...EXTRA_PROJECT_GLOBS]))];
  return dirs.map((dir) => {
    const manifest = readJson(join(root, dir, 'package.json'));
    return {
      dir,
      name: manifest.name,
      dependencies: Object.keys(manifest.dependencies ?? {}),
      peerDependencies: Object.keys(manifest.peerDependencies ?? {}),
      devDependencies: Object.keys(manifest.devDependencies ?? {}),
      exports: exportedSubpaths(manifest),
    };
  });
}

function exportedSubpaths(manifest) {
  const { exports } = manifest;
  if (exports === undefined) return ['.'];
  if (typeof exports === 'string' || Array.isArray(exports)) return ['.'];
  const keys = Object.keys(exports);
  return keys.some((key) => key.startsWith('.')) ? keys : ['.'];
}

/** Whether `subpath` (`.` or `./x`) is in an `exports` map, patterns (`./x/*`) included. */
function isExported(subpaths, subpath) {
  return subpaths.some((key) => {
    const star = key.indexOf('*');
    if (star === -1) return key === subpath;
    return subpath.startsWith(key.slice(0, star)) && subpath.endsWith(key.slice(star + 1));
  });
}

function listSources(dir) {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      return entry.name === 'node_modules' || entry.name === 'dist' ? [] : listSources(path);
    }
    return SOURCE_FILE.test(entry.name) && !entry.name.endsWith('.d.ts') ? [path] : [];
  });
}

function isTestFile(projectRelativePath) {
  const parts = projectRelativePath.split(sep);
  return TEST_FILE.test(parts.at(-1)) || parts.some((part) => TEST_FOLDERS.includes(part));
}

/**
 * Every module specifier in a TypeScript source, with its 1-based line: static imports and
 * exports, `import x = require()`, `import()` and `require()` with a literal argument, and
 * `import('…')` types. A dynamic import of a computed name (a provider loaded by its package
 * name) cannot be checked and is left alone.
 */
export function readImports(fileName, text) {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, false);
  const found = [];
  const add = (literal) => {
    if (!literal || !ts.isStringLiteralLike(literal)) return;
    const { line } = source.getLineAndCharacterOfPosition(literal.getStart(source));
    found.push({ specifier: literal.text, line: line + 1 });
  };
  const visit = (node) => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) add(node.moduleSpecifier);
    else if (
      ts.isImportEqualsDeclaration(node) &&
      ts.isExternalModuleReference(node.moduleReference)
    ) {
      add(node.moduleReference.expression);
    } else if (ts.isCallExpression(node)) {
      const callee = node.expression;
      const isImport = callee.kind === ts.SyntaxKind.ImportKeyword;
      const isRequire = ts.isIdentifier(callee) && callee.text === 'require';
      if ((isImport || isRequire) && node.arguments.length > 0) add(node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      add(node.argument.literal);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** `@scope/name/sub/path` → { name: '@scope/name', subpath: './sub/path' }. */
function splitSpecifier(specifier) {
  const parts = specifier.split('/');
  const count = specifier.startsWith('@') ? 2 : 1;
  const rest = parts.slice(count).join('/');
  return { name: parts.slice(0, count).join('/'), subpath: rest ? `./${rest}` : '.' };
}

/**
 * Checks the workspace at `root`. Returns every violation (none when the boundaries hold) with
 * the file (relative to root), the line, the import, what is wrong and how to fix it.
 */
export function checkBoundaries(workspaceRoot, { layers = LAYERS } = {}) {
  const root = resolve(workspaceRoot);
  const projects = findProjects(root);
  const byName = new Map(projects.map((project) => [project.name, project]));
  const violations = [];
  /** Project → project edges, with where each was first seen, for the cycle check. */
  const edges = new Map(projects.map((project) => [project.name, new Map()]));
  const addEdge = (from, to, where) => {
    if (from !== to && !edges.get(from).has(to)) edges.get(from).set(to, where);
  };
  const report = (file, line, specifier, problem, fix) =>
    violations.push({ file, line, specifier, problem, fix });

  for (const project of projects) {
    const manifestPath = `${project.dir}/package.json`;
    if (layerIndex(layers, project.name) === -1) {
      report(
        manifestPath,
        1,
        project.name,
        `${project.name} has no layer in the boundary table`,
        'add it to LAYERS in tools/check-boundaries.mjs, under the parts it may import',
      );
    }
  }
  // A table that points down or sideways would allow a cycle: refuse it before anything else.
  layers.forEach((layer, index) => {
    for (const pattern of layer.mayImport) {
      if (pattern === '*') continue;
      const target = layers.findIndex(
        (other) => other.name === pattern || matches(other.name, pattern),
      );
      if (target === -1 || target >= index) {
        report(
          'tools/check-boundaries.mjs',
          1,
          pattern,
          `the layer ${layer.name} may import ${pattern}, which is not a layer above it`,
          'list only layers above it in LAYERS',
        );
      }
    }
  });
  if (violations.length) return { projects, violations };

  for (const project of projects) {
    const manifestPath = `${project.dir}/package.json`;
    const declaredRuntime = new Set([...project.dependencies, ...project.peerDependencies]);
    // What package.json declares must follow the direction too: it is what Nx and npm build from.
    for (const dependency of [...declaredRuntime, ...project.devDependencies]) {
      if (!byName.has(dependency) || dependency === project.name) continue;
      addEdge(project.name, dependency, { file: manifestPath, line: 1 });
      const runtime = declaredRuntime.has(dependency);
      const allowed = runtime
        ? directionAllows(layers, project.name, dependency)
        : isAbove(layers, project.name, dependency);
      if (!allowed) {
        report(
          manifestPath,
          1,
          dependency,
          `${project.name} declares ${dependency}${runtime ? '' : ' (devDependencies)'}, against the dependency direction; ${project.name} may import only: ${allowedText(layers, project.name)}`,
          `remove ${dependency} from ${manifestPath}${runtime ? ', and move what it needs into a part it may import' : ''}`,
        );
      }
    }

    const projectRoot = join(root, project.dir);
    const testOnly = layers[layerIndex(layers, project.name)].testOnly === true;
    for (const path of listSources(join(projectRoot, 'src'))) {
      const file = relative(root, path).split(sep).join('/');
      const test = testOnly || isTestFile(relative(projectRoot, path));
      const declared = test
        ? new Set([...declaredRuntime, ...project.devDependencies])
        : declaredRuntime;
      for (const { specifier, line } of readImports(path, readFileSync(path, 'utf8'))) {
        if (specifier.startsWith('.')) {
          checkRelative({ root, project, projects, path, file, line, specifier, test, report });
          continue;
        }
        const { name, subpath } = splitSpecifier(specifier);
        const target = byName.get(name);
        if (!target) continue; // not a workspace package: npm's business, not this check's
        if (!isExported(target.exports, subpath)) {
          const exported = target.exports.map((key) => `'${key}'`).join(', ');
          report(
            file,
            line,
            specifier,
            `reaches into ${name}'s internals: its package.json exports only ${exported}`,
            `import from '${name}' (export what you need from ${target.dir}/src/index.ts)`,
          );
        }
        if (name === project.name) continue; // a package may import itself by its name
        addEdge(project.name, name, { file, line });
        const allowed = test
          ? isAbove(layers, project.name, name)
          : directionAllows(layers, project.name, name);
        if (!allowed) {
          // A devDependency in a file the check reads as production code: usually a test helper
          // named like production code.
          const testHelper = !test && project.devDependencies.includes(name);
          report(
            file,
            line,
            specifier,
            `${project.name} may not import ${name}: against the dependency direction; ${project.name} may import only: ${allowedText(layers, project.name)}${test ? ' (its test code: any part above it)' : ''}`,
            testHelper
              ? `${name} is a devDependency: if ${file} is test code, move it under src/test-support/ (or name it *.test.ts)`
              : `move what it needs from ${name} into a part ${project.name} may import, or invert the dependency (pass it in from the caller)`,
          );
        } else if (!declared.has(name)) {
          const version = readJson(join(root, target.dir, 'package.json')).version;
          report(
            file,
            line,
            specifier,
            `${name} is not declared in ${manifestPath} (${test ? 'dependencies, peerDependencies or devDependencies' : 'dependencies or peerDependencies'})`,
            `add "${name}": "${version}" to ${test ? 'devDependencies' : 'dependencies'} in ${manifestPath}`,
          );
        }
      }
    }
  }

  for (const cycle of findCycles(edges)) {
    const path = [...cycle, cycle[0]];
    const steps = cycle.map((from, i) => ({
      from,
      to: path[i + 1],
      ...edges.get(from).get(path[i + 1]),
    }));
    const evidence = steps.map(({ from, to, file, line }) => `${from} → ${to} at ${file}:${line}`);
    report(
      steps[0].file,
      steps[0].line,
      steps[0].to,
      `a cycle between projects: ${path.join(' → ')} (${evidence.join('; ')})`,
      'remove one of these imports or dependencies: a part depends only on parts above it',
    );
  }
  return { projects, violations };
}

/** Each strongly connected set of more than one project, as one cycle through it (Tarjan). */
function findCycles(edges) {
  const index = new Map();
  const low = new Map();
  const stack = [];
  const onStack = new Set();
  const components = [];
  let counter = 0;
  const connect = (node) => {
    index.set(node, counter);
    low.set(node, counter);
    counter += 1;
    stack.push(node);
    onStack.add(node);
    for (const next of edges.get(node)?.keys() ?? []) {
      if (!edges.has(next)) continue;
      if (!index.has(next)) {
        connect(next);
        low.set(node, Math.min(low.get(node), low.get(next)));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node), index.get(next)));
      }
    }
    if (low.get(node) === index.get(node)) {
      const component = [];
      let member;
      do {
        member = stack.pop();
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1) components.push(component);
    }
  };
  for (const node of edges.keys()) if (!index.has(node)) connect(node);
  return components.map((component) => cycleWithin(edges, new Set(component)));
}

/** One simple cycle inside a strongly connected component, starting at its first name. */
function cycleWithin(edges, members) {
  const start = [...members].sort()[0];
  const path = [start];
  const seen = new Set([start]);
  const walk = (node) => {
    for (const next of edges.get(node).keys()) {
      if (!members.has(next)) continue;
      if (next === start) return true;
      if (seen.has(next)) continue;
      seen.add(next);
      path.push(next);
      if (walk(next)) return true;
      path.pop();
    }
    return false;
  };
  walk(start);
  return path;
}

function checkRelative({ root, project, projects, path, file, line, specifier, test, report }) {
  const target = resolve(dirname(path), specifier);
  const projectRoot = join(root, project.dir);
  if (target === projectRoot || target.startsWith(projectRoot + sep)) return;
  const owner = projects.find(
    (other) => target === join(root, other.dir) || target.startsWith(join(root, other.dir) + sep),
  );
  // Test code may read workspace files that belong to no project (tools/test-image.json), and
  // another project's src/test-support/ (the workspace's shared test helpers, never published:
  // each package's `files` leaves them out), such as a private engine for end-to-end tests.
  if (test && !owner) return;
  if (test && target.startsWith(join(root, owner.dir, 'src', 'test-support') + sep)) return;
  report(
    file,
    line,
    specifier,
    owner
      ? `a relative path out of ${project.dir} into ${owner.name}'s internals`
      : `a relative path out of ${project.dir}: a published package cannot reach it`,
    owner
      ? `import '${owner.name}' by its name (export what you need from ${owner.dir}/src/index.ts, or a test-only subpath such as '${owner.name}/testing'), and declare it in ${project.dir}/package.json`
      : `move the file into ${project.dir}, or read it at run time from a path given in configuration`,
  );
}

function main() {
  const root = join(import.meta.dirname, '..');
  const { projects, violations } = checkBoundaries(root);
  for (const { file, line, specifier, problem, fix } of violations) {
    console.error(`${file}:${line}: '${specifier}': ${problem}\n  fix: ${fix}`);
  }
  const order = LAYERS.map((layer) => layer.name).join(' → ');
  if (violations.length) {
    console.error(
      `\nboundaries: ${violations.length} violation(s); each part imports only parts before it in ${order}`,
    );
    process.exit(1);
  }
  console.log(`boundaries: ${projects.length} projects keep to ${order}`);
}

if (process.argv[1] && resolve(process.argv[1]) === import.meta.filename) main();
