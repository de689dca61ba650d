// Small helpers shared by the workspace scripts (start, test, package checks). Node built-ins
// only: these scripts run on a fresh clone, before `npm ci` has installed anything.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const ROOT = join(import.meta.dirname, '..');

export function say(message) {
  process.stderr.write(`dso: ${message}\n`);
}

/**
 * Runs a command with its output on ours and no stdin: no step of these scripts reads the
 * terminal, so none can stop at a question (with or without a terminal). Resolves on exit 0,
 * rejects with its exit code.
 */
export function run(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
      ...options,
    });
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      if (code === 0) resolve();
      else
        reject(
          Object.assign(new Error(`${command} ${args.join(' ')} failed (${signal ?? code})`), {
            exitCode: code ?? 1,
          }),
        );
    });
  });
}

/**
 * Runs the workspace's own Nx (`nx run-many …`) so that it never asks and never replays logs:
 * no stdin (Nx asks only on a terminal; nx.json's `analytics: false` answers its usage-data
 * question for good), Nx Cloud off (NX_NO_CLOUD: nothing leaves the machine), and the
 * `static-failures-only` output style unless `args` names another: one line per task that
 * passed or came from the cache, the whole log of a task that failed.
 */
export function nx(args) {
  const style = args.some((arg) => arg.startsWith('--outputStyle'))
    ? []
    : ['--outputStyle=static-failures-only'];
  const bin = join(ROOT, 'node_modules/nx', readJson('node_modules/nx/package.json').bin.nx);
  return run(process.execPath, [bin, ...args, ...style], {
    env: { ...process.env, NX_NO_CLOUD: 'true', NX_TUI: 'false' },
  }).catch((error) => {
    // Nx has printed the failed tasks' logs above; the message names the command to rerun.
    throw Object.assign(new Error(`npx nx ${args.join(' ')} failed (exit ${error.exitCode})`), {
      exitCode: error.exitCode,
    });
  });
}

export function assertNodeVersion() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 19)) {
    say(`Node.js ${process.versions.node} is too old: DSO needs Node.js 20.19 or newer.`);
    process.exit(1);
  }
}

/** Installs dependencies with `npm ci` when node_modules is missing or older than the lock file. */
export async function ensureDependencies() {
  const marker = join(ROOT, 'node_modules', '.package-lock.json');
  const lock = join(ROOT, 'package-lock.json');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs) return;
  say('installing dependencies (npm ci)');
  await run('npm', ['ci', '--no-audit', '--no-fund']);
}

/** The engine's unix socket from DOCKER_HOST, or the default; undefined for a tcp host. */
export function dockerSocketPath(env = process.env) {
  const host = env.DOCKER_HOST;
  if (!host) return '/var/run/docker.sock';
  if (host.startsWith('unix://')) return host.slice('unix://'.length);
  return undefined;
}

/** Resolves true when the engine answers `/_ping` on its socket within `timeoutMs`. */
export function engineAnswers(socketPath = dockerSocketPath(), timeoutMs = 3_000) {
  if (!socketPath) return Promise.resolve(true); // a tcp engine: the agent itself checks it
  return new Promise((resolve) => {
    const req = request({ socketPath, path: '/_ping', timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
    req.end();
  });
}

/** Exits with the fix when no engine answers: the one thing these scripts cannot set up themselves. */
export async function requireEngine() {
  const socket = dockerSocketPath();
  if (await engineAnswers(socket)) return;
  say(`no Docker Engine answers at ${socket ?? process.env.DOCKER_HOST}.`);
  say("Fix: start one (as root: `sudo bash tools/services.sh up` installs Debian's docker.io when");
  say('missing and starts it without a bridge), or point DOCKER_HOST at a running engine.');
  process.exit(1);
}

export function readJson(path) {
  return JSON.parse(readFileSync(join(ROOT, path), 'utf8'));
}

/**
 * A generated reference in docs/ (`npm run docs:config`, `npm run docs:cli`): loads `render`
 * (a function exported by a built package) and writes `docs/<file>`, or with `--check` on the
 * command line writes nothing and exits 1 when the file differs. `project` and `script` name
 * what to build and what to run in the messages; `source` says what the file is made from.
 */
export async function writeGeneratedDoc({ file, built, exportName, project, script, source }) {
  const target = join(ROOT, 'docs', file);
  let module;
  try {
    module = await import(pathToFileURL(join(ROOT, built)).href);
  } catch (error) {
    say(`cannot load ${built} (${error.message}): build it with \`npx nx run ${project}:build\``);
    process.exit(1);
  }
  if (typeof module[exportName] !== 'function') {
    say(
      `the built ${project} has no ${exportName}: rebuild it with \`npx nx run ${project}:build\``,
    );
    process.exit(1);
  }
  const rendered = module[exportName]();
  let current = '';
  try {
    current = readFileSync(target, 'utf8');
  } catch {
    // No file yet: it is written below (or reported stale by --check).
  }
  if (process.argv.includes('--check')) {
    if (current !== rendered) {
      say(`docs/${file} does not match ${source}: run \`npm run ${script}\``);
      process.exit(1);
    }
    say(`docs/${file} is up to date`);
  } else if (current === rendered) {
    say(`docs/${file} is up to date`);
  } else {
    writeFileSync(target, rendered);
    say(`wrote docs/${file}`);
  }
}
