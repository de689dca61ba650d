import { spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DsoError, loadConfig } from '@dso/core';
import {
  inspectProviderPackage,
  PROVIDER_PACKAGE_NAME,
  PROVIDER_SDK_PACKAGE,
  PROVIDER_SDK_VERSION,
  type ProviderPackageInfo,
  sdkProblem,
} from '@dso/provider-sdk';
import type { Command } from 'commander';
import type { CliIo } from '../program.js';

/**
 * Where npm is told the `@dso` scope lives: a closed port on loopback. The scope on the public
 * registry is someone else's, so no `@dso/*` package may ever come from there: a plugin gets
 * `@dso/provider-sdk` from the agent (its peer dependency), and anything else that asks for a
 * `@dso/*` package fails at once, here, instead of installing a stranger's code.
 */
export const DSO_SCOPE_BLACKHOLE = 'http://127.0.0.1:9/';

/** Tarballs `dso plugin install` keeps, so the plugins folder never needs their source again. */
export const PLUGIN_TARBALLS_DIR = 'tarballs';

/** The npm that installs plugins: `npm <args>` with `env`; rejects DSO_CLI_NPM_MISSING without one. */
export type RunNpm = (
  args: readonly string[],
  options: { env: NodeJS.ProcessEnv; cwd: string },
) => Promise<{ code: number; output: string }>;

/** One provider package in the plugins folder, as `dso plugin list` shows it. */
export interface PluginEntry extends ProviderPackageInfo {
  /** Why the agent would refuse it (SDK range, not a provider package); absent when it can run it. */
  problem?: string;
}

/** What `dso plugin` works with: the plugins folder, npm, and the environment npm runs in. */
export interface PluginContext {
  pluginsDir: string;
  env: NodeJS.ProcessEnv;
  npm: RunNpm;
  /** npm's `--offline`: the package and its dependencies from npm's cache only. */
  offline?: boolean;
}

/** Output kept from npm: its last lines are where it says what went wrong. */
const MAX_NPM_OUTPUT_BYTES = 256 * 1024;

/** `npm` on PATH, its output collected (bounded); a missing npm is DSO_CLI_NPM_MISSING. */
export const runNpm: RunNpm = (args, { env, cwd }) =>
  new Promise((resolvePromise, reject) => {
    const child = spawn('npm', [...args], { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk: Buffer) => {
      output = (output + chunk.toString('utf8')).slice(-MAX_NPM_OUTPUT_BYTES);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    child.once('error', (error: NodeJS.ErrnoException) => {
      reject(
        error.code === 'ENOENT'
          ? new DsoError(
              'DSO_CLI_NPM_MISSING',
              'npm is not on PATH: dso plugin installs provider packages with npm, which comes with ' +
                'Node.js; install it (Debian: apt-get install npm) or put it on PATH',
              { cause: error },
            )
          : error,
      );
    });
    child.once('close', (code) => resolvePromise({ code: code ?? 1, output }));
  });

/** The flags every npm call of `dso plugin` gets: peers are never fetched, `@dso/*` never leaves loopback. */
function npmFlags(context: PluginContext): string[] {
  return [
    '--prefix',
    context.pluginsDir,
    // A provider's @dso/provider-sdk is a peer the agent supplies: npm must not fetch it.
    '--legacy-peer-deps',
    `--@dso:registry=${DSO_SCOPE_BLACKHOLE}`,
    '--no-audit',
    '--no-fund',
    '--no-update-notifier',
    ...(context.offline ? ['--offline'] : []),
  ];
}

/** The plugins folder as an npm project of its own, created on first use. */
async function preparePluginsDir(pluginsDir: string): Promise<void> {
  // Only the operator writes here (the agent runs what it holds): no group or other write.
  await mkdir(join(pluginsDir, PLUGIN_TARBALLS_DIR), { recursive: true, mode: 0o755 });
  const manifest = join(pluginsDir, 'package.json');
  try {
    await stat(manifest);
  } catch {
    await writeFile(
      manifest,
      `${JSON.stringify(
        {
          private: true,
          description:
            'DSO provider plugins: managed by `dso plugin install|list|remove`; the agent loads them by package name',
          dependencies: {},
        },
        null,
        2,
      )}\n`,
      { mode: 0o644 },
    );
  }
}

/** The three forms `dso plugin install` takes. */
type Source =
  | { kind: 'tarball'; file: string }
  | { kind: 'folder'; dir: string }
  | { kind: 'registry'; spec: string; name: string };

async function classify(spec: string, cwd: string): Promise<Source> {
  const path = resolve(cwd, spec);
  const found = await stat(path).catch(() => undefined);
  if (found?.isDirectory()) return { kind: 'folder', dir: path };
  if (found?.isFile()) {
    if (/\.(tgz|tar\.gz)$/.test(path)) return { kind: 'tarball', file: path };
    throw new DsoError(
      'DSO_CLI_PLUGIN_SOURCE_INVALID',
      `${spec} is a file but not a package tarball (.tgz): give the tarball \`npm pack\` writes, a package folder or a package name`,
    );
  }
  if (/^(\.{1,2}\/|\/)|\.(tgz|tar\.gz)$/.test(spec)) {
    throw new DsoError(
      'DSO_CLI_PLUGIN_SOURCE_NOT_FOUND',
      `${path} does not exist: give the path of a package tarball (npm pack writes one) or a package folder`,
    );
  }
  const at = spec.indexOf('@', spec.startsWith('@') ? 1 : 0);
  const name = at < 0 ? spec : spec.slice(0, at);
  const version = at < 0 ? '' : spec.slice(at + 1);
  if (/[:#]|^(git|https?)\b/.test(spec) || (at >= 0 && !/^[\w.^~<>=| *-]+$/.test(version))) {
    throw new DsoError(
      'DSO_CLI_PLUGIN_SOURCE_INVALID',
      `${spec} is not a package name, a tarball or a folder: git and URL sources are not taken; ` +
        'download or pack the package and install the tarball',
    );
  }
  checkName(name);
  return { kind: 'registry', spec, name };
}

function checkName(name: string): void {
  if (!PROVIDER_PACKAGE_NAME.test(name)) {
    throw new DsoError(
      'DSO_CLI_PLUGIN_NAME_INVALID',
      `${name || 'the package'} is not a provider package: a provider package is named ` +
        'dso-provider-<name> or @scope/dso-provider-<name> (its author renames it in package.json)',
    );
  }
}

/**
 * What an installed or about-to-be-installed package says about itself, refused unless the
 * agent can run it: the naming rule, the SDK as a peer (never a dependency npm would fetch)
 * whose range this DSO's SDK is in, or a `dso.command` of its own.
 */
function checkManifest(manifest: Record<string, unknown>): PluginEntry {
  const info = inspectProviderPackage(manifest);
  checkName(info.name);
  const dependencies = Object.keys(
    (manifest.dependencies as Record<string, unknown> | undefined) ?? {},
  ).filter((name) => name.startsWith('@dso/'));
  if (dependencies.length > 0) {
    // What the author does depends on the package: the SDK becomes a peer, the rest goes.
    const others = dependencies.filter((name) => name !== PROVIDER_SDK_PACKAGE);
    const fixes = [
      ...(dependencies.includes(PROVIDER_SDK_PACKAGE)
        ? [
            `move ${PROVIDER_SDK_PACKAGE} to peerDependencies ("${PROVIDER_SDK_PACKAGE}": "^${PROVIDER_SDK_VERSION}"): the agent supplies it`,
          ]
        : []),
      ...(others.length > 0
        ? [
            `remove ${others.join(', ')}: the agent supplies only ${PROVIDER_SDK_PACKAGE} (a peer dependency), so import from it or bundle what the provider needs`,
          ]
        : []),
    ];
    throw new DsoError(
      'DSO_CLI_PLUGIN_DEPENDENCY_INVALID',
      `${info.name} lists ${dependencies.join(', ')} in its dependencies, which npm would fetch from ` +
        `the public registry (the @dso scope there is not DSO's): its author should ${fixes.join('; and ')}`,
    );
  }
  const command = (manifest.dso as { command?: unknown } | undefined)?.command;
  if (
    info.kind === 'command' &&
    !(
      Array.isArray(command) &&
      command.length > 0 &&
      command.every((part) => typeof part === 'string' && part !== '')
    )
  ) {
    throw new DsoError(
      'DSO_CLI_PLUGIN_INVALID',
      `${info.name}: dso.command in its package.json must be a non-empty array of strings, the ` +
        'argv of its provider relative to the package folder, e.g. ["python3", "provider.py"]: its author should fix it',
    );
  }
  const problem = sdkProblem(info);
  if (problem !== undefined) {
    throw new DsoError(
      info.sdk === 'mismatch' ? 'DSO_CLI_PLUGIN_SDK_MISMATCH' : 'DSO_CLI_PLUGIN_INVALID',
      problem,
    );
  }
  return info;
}

/** The package.json inside an `npm pack` tarball (`package/package.json`). */
export async function readTarballManifest(file: string): Promise<Record<string, unknown>> {
  let tar: Buffer;
  try {
    tar = gunzipSync(await readFile(file), { maxOutputLength: 512 * 1024 * 1024 });
  } catch (error) {
    throw new DsoError(
      'DSO_CLI_PLUGIN_SOURCE_INVALID',
      `${file} is not a gzip tarball: give the .tgz that \`npm pack\` writes`,
      { cause: error },
    );
  }
  for (let offset = 0; offset + 512 <= tar.length; ) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((byte) => byte === 0)) break;
    const field = (start: number, length: number) =>
      header
        .subarray(start, start + length)
        .toString('utf8')
        .replace(/\0.*$/s, '');
    const prefix = field(345, 155);
    const name = prefix ? `${prefix}/${field(0, 100)}` : field(0, 100);
    const size = Number.parseInt(field(124, 12).trim() || '0', 8);
    const body = offset + 512;
    // npm pack writes every file under one top folder (`package/`).
    if (/^[^/]+\/package\.json$/.test(name) && field(156, 1) !== 'x') {
      try {
        return JSON.parse(tar.subarray(body, body + size).toString('utf8'));
      } catch (error) {
        throw new DsoError(
          'DSO_CLI_PLUGIN_SOURCE_INVALID',
          `${file} has an unreadable package.json: repack the package`,
          { cause: error },
        );
      }
    }
    offset = body + Math.ceil(size / 512) * 512;
  }
  throw new DsoError(
    'DSO_CLI_PLUGIN_SOURCE_INVALID',
    `${file} holds no package.json: give the .tgz that \`npm pack\` writes`,
  );
}

/** npm's own `npm error` lines, the last few: what it says went wrong, for the message. */
function npmErrorLines(output: string): string {
  const lines = output
    .split('\n')
    .filter((line) => line.startsWith('npm error') && !/^npm error\s+at /.test(line))
    .map((line) => line.replace(/^npm error\s*/, '').trim())
    .filter((line) => line !== '' && !line.startsWith('A complete log'));
  return lines.slice(0, 4).join('; ');
}

/** An npm failure as one of dso's errors, with the fix. */
function npmFailure(output: string, what: string, context: PluginContext): DsoError {
  const code = /npm error code (\S+)/.exec(output)?.[1] ?? '';
  const said = npmErrorLines(output);
  // npm names the package it failed to fetch in the URL: `…/@dso%2fprovider-sdk`.
  if (/@dso%2f|\/@dso\//i.test(output)) {
    return new DsoError(
      'DSO_CLI_PLUGIN_DEPENDENCY_INVALID',
      `${what} (or one of its dependencies) needs a @dso/* package from the registry, which DSO never ` +
        `fetches (the @dso scope there is not DSO's): a provider declares ${PROVIDER_SDK_PACKAGE} as a peer ` +
        `dependency, which the agent supplies (npm: ${said})`,
    );
  }
  if (code === 'E404') {
    return new DsoError(
      'DSO_CLI_PLUGIN_NOT_FOUND',
      `${what} is not on the registry npm uses: check the name, or install its tarball (npm: ${said})`,
    );
  }
  if (code === 'ENOTCACHED') {
    return new DsoError(
      'DSO_CLI_PLUGIN_REGISTRY_UNREACHABLE',
      `${what} or a dependency of it is not in npm's cache${context.offline ? ' (--offline)' : ''}: ` +
        `install it once with access to the registry, or give its tarball (npm: ${said})`,
    );
  }
  if (
    /^(ECONNREFUSED|ENOTFOUND|ETIMEDOUT|EAI_AGAIN|ECONNRESET|ENETUNREACH|EHOSTUNREACH)$/.test(code)
  ) {
    return new DsoError(
      'DSO_CLI_PLUGIN_REGISTRY_UNREACHABLE',
      `npm cannot reach its registry to install ${what}: check the network or npm's registry ` +
        `setting, or install the package's tarball with --offline (npm: ${said})`,
    );
  }
  if (code === 'EACCES' || code === 'EPERM') {
    return new DsoError(
      'DSO_CLI_PLUGIN_DENIED',
      `npm may not write the plugins folder ${context.pluginsDir} for ${what}: run dso plugin as the ` +
        `user who owns it (the operator; root for the agent's default) (npm: ${said})`,
    );
  }
  return new DsoError(
    'DSO_CLI_PLUGIN_INSTALL_FAILED',
    `npm failed for ${what}${code ? ` (${code})` : ''}: ${said || 'see npm output above'}`,
  );
}

async function readManifest(dir: string): Promise<Record<string, unknown> | undefined> {
  try {
    return JSON.parse(await readFile(join(dir, 'package.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

/**
 * Installs a provider package into the plugins folder with npm, the agent's SDK supplied:
 * a tarball or a folder is checked before npm runs and kept in `<pluginsDir>/tarballs`, a
 * registry name after npm fetched it (and removed again if it fails the check).
 *
 * @throws DsoError DSO_CLI_PLUGIN_NAME_INVALID, DSO_CLI_PLUGIN_SDK_MISMATCH,
 *   DSO_CLI_PLUGIN_DEPENDENCY_INVALID, DSO_CLI_PLUGIN_INVALID, DSO_CLI_PLUGIN_SOURCE_NOT_FOUND,
 *   DSO_CLI_PLUGIN_SOURCE_INVALID, DSO_CLI_PLUGIN_NOT_FOUND, DSO_CLI_PLUGIN_REGISTRY_UNREACHABLE,
 *   DSO_CLI_PLUGIN_DENIED, DSO_CLI_PLUGIN_INSTALL_FAILED, DSO_CLI_NPM_MISSING
 */
export async function installPlugin(
  spec: string,
  cwd: string,
  context: PluginContext,
): Promise<PluginEntry> {
  const source = await classify(spec, cwd);
  await preparePluginsDir(context.pluginsDir);
  const tarballs = join(context.pluginsDir, PLUGIN_TARBALLS_DIR);
  let target: string;
  let name: string;
  if (source.kind === 'registry') {
    target = source.spec;
    name = source.name;
  } else {
    let file: string;
    if (source.kind === 'folder') {
      const manifest = await readManifest(source.dir);
      if (manifest === undefined) {
        throw new DsoError(
          'DSO_CLI_PLUGIN_SOURCE_INVALID',
          `${source.dir} has no readable package.json: give a package folder, its tarball or its name`,
        );
      }
      checkManifest(manifest);
      // Packed, so the plugins folder holds a copy and never links to (or needs) the folder.
      const scratch = await mkdtemp(join(tarballs, '.pack-'));
      try {
        const packed = await context.npm(
          ['pack', source.dir, '--pack-destination', scratch, '--json', ...npmFlags(context)],
          { env: context.env, cwd: context.pluginsDir },
        );
        if (packed.code !== 0) throw npmFailure(packed.output, source.dir, context);
        const [made] = (await readdir(scratch)).filter((entry) => entry.endsWith('.tgz'));
        if (made === undefined) throw npmFailure(packed.output, source.dir, context);
        file = join(tarballs, made);
        await copyFile(join(scratch, made), file);
      } finally {
        await rm(scratch, { recursive: true, force: true });
      }
    } else {
      file = source.file;
    }
    const manifest = await readTarballManifest(file);
    const info = checkManifest(manifest);
    name = info.name;
    // Kept under npm pack's own name, which `dso plugin remove` finds it by.
    const kept = join(tarballs, `${tarballPrefix(name)}${info.version}.tgz`);
    if (kept !== file) await copyFile(file, kept);
    file = kept;
    target = file;
  }
  const installed = await context.npm(['install', target, ...npmFlags(context)], {
    env: context.env,
    cwd: context.pluginsDir,
  });
  if (installed.code !== 0) throw npmFailure(installed.output, spec, context);
  const manifest = await readManifest(join(context.pluginsDir, 'node_modules', name));
  try {
    if (manifest === undefined) {
      throw new DsoError(
        'DSO_CLI_PLUGIN_INSTALL_FAILED',
        `npm reported success but ${name} is not in ${context.pluginsDir}/node_modules: run dso plugin install again`,
      );
    }
    return checkManifest(manifest);
  } catch (error) {
    // A registry package is checked once npm has it: one the agent cannot run goes again.
    if (source.kind === 'registry') await removePlugin(name, context).catch(() => undefined);
    throw error;
  }
}

/** Every provider package in the plugins folder, with what stops the agent running it. */
export async function listPlugins(pluginsDir: string): Promise<PluginEntry[]> {
  const modules = join(pluginsDir, 'node_modules');
  const names: string[] = [];
  const entries = await readdir(modules).catch(() => [] as string[]);
  for (const entry of entries) {
    if (entry.startsWith('@')) {
      for (const inner of await readdir(join(modules, entry)).catch(() => [] as string[])) {
        names.push(`${entry}/${inner}`);
      }
    } else names.push(entry);
  }
  const plugins: PluginEntry[] = [];
  for (const name of names.filter((candidate) => PROVIDER_PACKAGE_NAME.test(candidate)).sort()) {
    const manifest = await readManifest(join(modules, name));
    const info = inspectProviderPackage(manifest ?? { name });
    const problem =
      manifest === undefined ? 'its package.json cannot be read: reinstall it' : sdkProblem(info);
    plugins.push({ ...info, ...(problem === undefined ? {} : { problem }) });
  }
  return plugins;
}

/**
 * Removes a provider package from the plugins folder (npm uninstall, and its kept tarball).
 *
 * @throws DsoError DSO_CLI_PLUGIN_NOT_INSTALLED, DSO_CLI_PLUGIN_NAME_INVALID
 */
export async function removePlugin(name: string, context: PluginContext): Promise<void> {
  checkName(name);
  const manifest = await readManifest(join(context.pluginsDir, 'node_modules', name));
  if (manifest === undefined) {
    throw new DsoError(
      'DSO_CLI_PLUGIN_NOT_INSTALLED',
      `${name} is not installed in ${context.pluginsDir}: dso plugin list shows what is`,
    );
  }
  const removed = await context.npm(['uninstall', name, ...npmFlags(context)], {
    env: context.env,
    cwd: context.pluginsDir,
  });
  if (removed.code !== 0) throw npmFailure(removed.output, name, context);
  const prefix = tarballPrefix(name);
  for (const file of await readdir(join(context.pluginsDir, PLUGIN_TARBALLS_DIR)).catch(
    () => [] as string[],
  )) {
    if (file.startsWith(prefix) && /^\d/.test(file.slice(prefix.length)) && file.endsWith('.tgz')) {
      await rm(join(context.pluginsDir, PLUGIN_TARBALLS_DIR, file), { force: true });
    }
  }
}

/** How npm pack names a package's tarball, before its version: `@acme/x` → `acme-x-`. */
function tarballPrefix(name: string): string {
  return `${name.replace(/^@/, '').replace('/', '-')}-`;
}

function describe(entry: PluginEntry): string {
  const sdk =
    entry.kind === 'command'
      ? 'runs its own command (dso.command)'
      : `${PROVIDER_SDK_PACKAGE} ${entry.sdkRange ?? '(none)'}, this DSO supplies ${PROVIDER_SDK_VERSION}`;
  return `${entry.name} ${entry.version}: ${sdk}`;
}

/**
 * Adds `dso plugin install|list|remove`: third-party provider packages in the agent's plugins
 * folder (`pluginsDir` in dso.yaml), installed by npm without ever fetching a `@dso/*` package.
 */
export function registerPluginCommand(
  program: Command,
  io: CliIo,
  npm: RunNpm = runNpm,
  cwd: () => string = () => process.cwd(),
): void {
  const print = (line: string) => io.stdout.write(`${line}\n`);
  const context = async (offline?: boolean): Promise<PluginContext> => {
    const { config } = await loadConfig({ env: io.env });
    return { pluginsDir: config.pluginsDir, env: io.env, npm, offline: offline === true };
  };
  const plugin = program
    .command('plugin')
    .description(
      "third-party provider packages in the agent's plugins folder (pluginsDir in dso.yaml)",
    );
  plugin
    .command('install')
    .description(
      `install a provider package (dso-provider-<name> or @scope/dso-provider-<name>) into the plugins folder with npm; its ${PROVIDER_SDK_PACKAGE} is the agent's (a peer dependency), no @dso/* package ever comes from a registry`,
    )
    .argument('<package>', 'a tarball (npm pack), a package folder, or a registry name[@version]')
    .option('--offline', "npm's --offline: the package and its dependencies from npm's cache only")
    .action(async (spec: string, options: { offline?: boolean }) => {
      const ctx = await context(options.offline);
      const entry = await installPlugin(spec, cwd(), ctx);
      print(`installed ${describe(entry)}`);
      print(`into ${ctx.pluginsDir}`);
      print(
        `use it in dso.yaml: providers: { <name>: { type: ${entry.name}, config: {...} } }, then restart the agent`,
      );
    });
  plugin
    .command('list')
    .description(
      'list the provider packages in the plugins folder and whether this DSO can run them',
    )
    .option('--json', 'print them as a JSON array')
    .action(async (options: { json?: boolean }) => {
      const { pluginsDir } = await context();
      const plugins = await listPlugins(pluginsDir);
      if (options.json) {
        print(JSON.stringify(plugins));
        return;
      }
      if (plugins.length === 0) {
        print(`no provider packages in ${pluginsDir} (dso plugin install <package> adds one)`);
        return;
      }
      const rows = [
        ['NAME', 'VERSION', 'KIND', 'SDK RANGE', 'STATUS'],
        ...plugins.map((entry) => [
          entry.name,
          entry.version || '-',
          entry.kind,
          entry.sdkRange ?? '-',
          entry.problem === undefined ? 'ok' : entry.sdk === 'mismatch' ? 'mismatch' : 'invalid',
        ]),
      ];
      const widths = rows[0]!.map((_, column) =>
        Math.max(...rows.map((row) => row[column]!.length)),
      );
      for (const row of rows) {
        print(
          row
            .map((cell, column) => cell.padEnd(widths[column]!))
            .join('  ')
            .trimEnd(),
        );
      }
      for (const entry of plugins) {
        if (entry.problem !== undefined) print(`${entry.name}: ${entry.problem}`);
      }
      print(`(${PROVIDER_SDK_PACKAGE} supplied by this DSO: ${PROVIDER_SDK_VERSION})`);
    });
  plugin
    .command('remove')
    .description('remove a provider package from the plugins folder')
    .argument('<name>', 'the package name, as dso plugin list shows it')
    .action(async (name: string) => {
      const { config } = await loadConfig({ env: io.env });
      const ctx: PluginContext = { pluginsDir: config.pluginsDir, env: io.env, npm };
      await removePlugin(name, ctx);
      print(`removed ${name} from ${ctx.pluginsDir}`);
      const users = Object.entries(config.providers)
        .filter(([, entry]) => entry.type === name)
        .map(([provider]) => provider);
      if (users.length > 0) {
        print(
          `dso.yaml still uses it (providers: ${users.join(', ')}): remove those entries, or the agent will not start`,
        );
      }
    });
}
