import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import {
  checkSdkApiVersion,
  isProviderDefinition,
  type ProviderDefinition,
} from '../define-provider.js';
import { ProviderError } from '../provider-error.js';
import { needsSuppliedSdk, supplySdkToPlugins } from './plugin-sdk.js';

/** Options of {@link loadProviderModule}. */
export interface LoadProviderModuleOptions {
  /** Directory a package name is resolved from (the plugins folder). @default process.cwd() */
  resolveFrom?: string;
  /** Export conditions besides `node`, `import`, `default`. @default the `--conditions` of this process */
  conditions?: readonly string[];
  /**
   * Sees the error the import itself threw (a syntax error, a missing dependency), for a
   * diagnostic stream the owner redacts. It is not kept in the thrown ProviderError: a module
   * may throw anything, a secret included.
   */
  onImportError?: (error: unknown) => void;
}

const PACKAGE_NAME = /^(?:@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/i;

/**
 * Imports a provider package or file and returns its definition: the `default` export, or the
 * export named `provider`, made by `defineProvider()` (from any copy of the SDK). A package
 * name is resolved from `resolveFrom` as Node resolves an `import` there (its `exports` map
 * with the `node`, `import` and `default` conditions, else `main`); a path must be absolute
 * (or `./…` relative to `resolveFrom`), or a `file:` URL. `@dso/provider-sdk`, imported by the
 * module without a copy of its own, resolves to this copy of the SDK ({@link supplySdkToPlugins}). The runner uses it in
 * the child; the agent may use it to load a provider in process.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when the module cannot be found or
 *   imported, exports no provider definition, or was built for an unsupported SDK API version
 * @example
 * const definition = await loadProviderModule('dso-provider-acme', { resolveFrom: '/var/lib/dso/plugins' });
 * const provider = await createProvider(definition, config, { name: 'acme' });
 */
export async function loadProviderModule(
  specifier: string,
  options: LoadProviderModuleOptions = {},
): Promise<ProviderDefinition> {
  const resolveFrom = options.resolveFrom ?? process.cwd();
  const url = resolveProviderModule(
    specifier,
    resolveFrom,
    options.conditions ?? conditionsOf(process.execArgv),
  );
  // A plugin declares this SDK as a peer and installs without it: it gets this copy.
  if (needsSuppliedSdk(url)) supplySdkToPlugins();
  let namespace: Record<string, unknown>;
  try {
    namespace = (await import(url)) as Record<string, unknown>;
  } catch (error) {
    options.onImportError?.(error);
    // The error's class and code only: a module that throws at import may quote anything.
    const code = (error as { code?: unknown })?.code;
    const kind = error instanceof Error ? error.name : typeof error;
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider module ${specifier} failed to import (${kind}${typeof code === 'string' ? ` ${code}` : ''}): ` +
        'its stderr has the details; check that it is built and its dependencies are installed',
    );
  }
  const candidates = [
    namespace.default,
    namespace.provider,
    // A CommonJS module: its exports object is the default export.
    (namespace.default as Record<string, unknown> | undefined)?.default,
    (namespace.default as Record<string, unknown> | undefined)?.provider,
  ];
  const definition = candidates.find((candidate) => isProviderDefinition(candidate));
  if (definition === undefined) {
    const names = Object.keys(namespace).sort().join(', ') || 'none';
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider module ${specifier} exports no provider definition (found exports: ${names}): ` +
        'a provider package must export the result of defineProvider() as default or as `provider`',
    );
  }
  checkSdkApiVersion(definition as ProviderDefinition);
  return definition as ProviderDefinition;
}

/**
 * The file URL a provider module specifier names, resolved from `resolveFrom` (see
 * {@link loadProviderModule}), without importing it.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when it names nothing that exists
 * @example
 * resolveProviderModule('@acme/dso-provider-x', '/var/lib/dso/plugins');
 * // 'file:///var/lib/dso/plugins/node_modules/@acme/dso-provider-x/dist/index.js'
 */
export function resolveProviderModule(
  specifier: string,
  resolveFrom: string,
  conditions: readonly string[] = [],
): string {
  const invalid = (message: string) => new ProviderError('DSO_PROVIDER_INVALID_CONFIG', message);
  if (typeof specifier !== 'string' || specifier === '') {
    throw invalid('a provider module must be a package name, an absolute path or a file: URL');
  }
  if (specifier.startsWith('file:')) return specifier;
  if (isAbsolute(specifier) || specifier.startsWith('./') || specifier.startsWith('../')) {
    const file = resolve(resolveFrom, specifier);
    if (!existsSync(file)) throw invalid(`provider module ${file} does not exist`);
    return pathToFileURL(file).href;
  }
  const { name, subpath } = splitSpecifier(specifier);
  if (!PACKAGE_NAME.test(name)) {
    throw invalid(
      `provider module ${JSON.stringify(specifier)} is neither a package name nor an absolute path`,
    );
  }
  for (let dir = resolve(resolveFrom); ; dir = dirname(dir)) {
    const packageDir = join(dir, 'node_modules', name);
    if (existsSync(join(packageDir, 'package.json'))) {
      return pathToFileURL(
        resolveInPackage(packageDir, name, subpath, ['node', 'import', 'default', ...conditions]),
      ).href;
    }
    if (dirname(dir) === dir) break;
  }
  throw invalid(
    `provider package ${name} is in no node_modules folder of ${resolveFrom} or its parent folders (where Node looks): ` +
      `for the agent, install it with \`dso plugin install <its .tgz, its folder, or ${name} from your npm registry>\` ` +
      "(it checks the package first); for a project of your own, add it to that project's dependencies",
  );
}

function splitSpecifier(specifier: string): { name: string; subpath: string } {
  const parts = specifier.split('/');
  const length = specifier.startsWith('@') ? 2 : 1;
  return {
    name: parts.slice(0, length).join('/'),
    subpath: parts.length > length ? `./${parts.slice(length).join('/')}` : '.',
  };
}

function resolveInPackage(
  packageDir: string,
  name: string,
  subpath: string,
  conditions: readonly string[],
): string {
  let manifest: { exports?: unknown; main?: unknown };
  try {
    manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  } catch {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider package ${name} has an unreadable package.json: reinstall it`,
    );
  }
  if (manifest.exports !== undefined && manifest.exports !== null) {
    const target = exportTarget(manifest.exports, subpath, conditions);
    if (target === undefined) {
      throw new ProviderError(
        'DSO_PROVIDER_INVALID_CONFIG',
        `provider package ${name} exports nothing at ${subpath} for conditions ${conditions.join(', ')}`,
      );
    }
    return join(packageDir, target);
  }
  if (subpath !== '.') return withExtension(join(packageDir, subpath), name);
  const main = typeof manifest.main === 'string' ? manifest.main : 'index.js';
  return withExtension(join(packageDir, main), name);
}

/** What `exports` maps `subpath` to (exact keys and one `*` pattern), under `conditions`. */
function exportTarget(
  exports: unknown,
  subpath: string,
  conditions: readonly string[],
): string | undefined {
  const isSubpathMap =
    typeof exports === 'object' &&
    exports !== null &&
    !Array.isArray(exports) &&
    Object.keys(exports).some((key) => key.startsWith('.'));
  if (!isSubpathMap) return subpath === '.' ? conditionalTarget(exports, conditions) : undefined;
  const map = exports as Record<string, unknown>;
  if (subpath in map) return conditionalTarget(map[subpath], conditions);
  for (const [key, value] of Object.entries(map)) {
    const star = key.indexOf('*');
    if (star < 0) continue;
    const prefix = key.slice(0, star);
    const suffix = key.slice(star + 1);
    if (
      subpath.startsWith(prefix) &&
      subpath.endsWith(suffix) &&
      subpath.length >= key.length - 1
    ) {
      const match = subpath.slice(prefix.length, subpath.length - suffix.length);
      return conditionalTarget(value, conditions)?.replaceAll('*', match);
    }
  }
  return undefined;
}

function conditionalTarget(target: unknown, conditions: readonly string[]): string | undefined {
  if (typeof target === 'string') return target.startsWith('./') ? target : undefined;
  if (Array.isArray(target)) {
    for (const entry of target) {
      const found = conditionalTarget(entry, conditions);
      if (found !== undefined) return found;
    }
    return undefined;
  }
  if (typeof target === 'object' && target !== null) {
    // Keys in their written order; the first whose condition holds wins, as in Node.
    for (const [condition, value] of Object.entries(target)) {
      if (condition === 'default' || conditions.includes(condition)) {
        const found = conditionalTarget(value, conditions);
        if (found !== undefined) return found;
      }
    }
  }
  return undefined;
}

function withExtension(file: string, name: string): string {
  for (const candidate of [file, `${file}.js`, `${file}.mjs`, join(file, 'index.js')]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  throw new ProviderError(
    'DSO_PROVIDER_INVALID_CONFIG',
    `provider package ${name} has no entry file at ${file}: reinstall it`,
  );
}

/** The `--conditions` (`-C`) given to this Node process. */
export function conditionsOf(execArgv: readonly string[]): string[] {
  const found: string[] = [];
  for (let index = 0; index < execArgv.length; index++) {
    const argument = execArgv[index] as string;
    if (argument.startsWith('--conditions=')) found.push(argument.slice('--conditions='.length));
    else if ((argument === '--conditions' || argument === '-C') && index + 1 < execArgv.length) {
      found.push(execArgv[++index] as string);
    } else if (argument.startsWith('-C') && argument.length > 2) found.push(argument.slice(2));
  }
  return found;
}
