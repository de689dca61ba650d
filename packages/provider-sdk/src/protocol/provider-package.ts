import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ProviderError } from '../provider-error.js';

/** A provider package in any language: what its package.json's `dso.command` says to run. */
export interface ProviderCommand {
  /** The child's argv, as the manifest writes it. */
  command: string[];
  /** The package folder: the child's working directory, so relative paths name its files. */
  cwd: string;
}

/**
 * The folder of the installed package `name`, looked up from `resolveFrom` as Node resolves a
 * package (`node_modules/<name>` there and in every folder above), or undefined.
 *
 * @example
 * findProviderPackageDir('dso-provider-pyexample', '/var/lib/dso/plugins');
 * // '/var/lib/dso/plugins/node_modules/dso-provider-pyexample'
 */
export function findProviderPackageDir(name: string, resolveFrom: string): string | undefined {
  for (let dir = resolve(resolveFrom); ; dir = dirname(dir)) {
    const packageDir = join(dir, 'node_modules', name);
    if (existsSync(join(packageDir, 'package.json'))) return packageDir;
    if (dirname(dir) === dir) return undefined;
  }
}

/**
 * The `dso.command` of the package in `packageDir`: a provider package in another language
 * names the child that speaks PROTOCOL.md (`"dso": { "command": ["python3", "provider.py"] }`),
 * run with the package folder as its working directory instead of the SDK's runner. Undefined
 * when the package has none (a JavaScript provider: the runner imports it).
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when package.json is unreadable or
 *   `dso.command` is not a non-empty array of non-empty strings
 * @example
 * readProviderCommand('/var/lib/dso/plugins/node_modules/dso-provider-pyexample');
 * // { command: ['python3', 'provider.py'], cwd: '/var/lib/dso/plugins/node_modules/dso-provider-pyexample' }
 */
export function readProviderCommand(packageDir: string): ProviderCommand | undefined {
  let manifest: { name?: unknown; dso?: { command?: unknown } };
  try {
    manifest = JSON.parse(readFileSync(join(packageDir, 'package.json'), 'utf8'));
  } catch {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `the provider package in ${packageDir} has no readable package.json: reinstall it`,
    );
  }
  const command = manifest?.dso?.command;
  if (command === undefined) return undefined;
  if (
    !Array.isArray(command) ||
    command.length === 0 ||
    !command.every((part) => typeof part === 'string' && part !== '')
  ) {
    const name = typeof manifest.name === 'string' ? manifest.name : packageDir;
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider package ${name}: dso.command in its package.json must be a non-empty array of ` +
        'non-empty strings, the argv of its child relative to the package folder, e.g. ' +
        '["python3", "provider.py"]: fix the package and reinstall it',
    );
  }
  return { command: [...command], cwd: packageDir };
}
