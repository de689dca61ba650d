import { existsSync, readFileSync } from 'node:fs';
import { createRequire, Module } from 'node:module';
import { dirname, join } from 'node:path';

/**
 * Keeps two parts of dockerode out of the agent's memory until something calls them, which the
 * agent never does on a unix socket or TCP: docker-modem's SSH transport (`lib/ssh.js`, which
 * loads ssh2: ~10 MB of RSS), used only for `DOCKER_HOST=ssh://`, and dockerode's BuildKit
 * session (`lib/session.js`, which loads @grpc/grpc-js and @grpc/proto-loader: ~8 MB), used
 * only to build images. dockerode and docker-modem `require()` both when they load, whether or
 * not they are used, and neither package offers a switch.
 *
 * Each of those files exports one function that is only called on its own path: it is entered
 * in `require`'s cache as a stand-in function that loads the real file on its first call and
 * passes every call on, so `ssh://` and builds work as before, loaded when first used. A file
 * whose export is not such a function (a later dockerode or docker-modem) is left alone: it
 * then costs memory, never behaviour (`defer-modules.test.ts` says when that happens).
 *
 * Must run before dockerode is loaded: `bin/dso-agent.js` imports `dist/startup.js` (which
 * calls this) before `dist/main.js`.
 *
 * @param dockerRuntimeUrl where `@dso/docker-runtime` resolves (its dockerode is the one
 *   deferred), e.g. `import.meta.resolve('@dso/docker-runtime')`
 * @returns the files now deferred (absolute paths); empty when none could be
 * @example
 * deferUnusedModules(import.meta.resolve('@dso/docker-runtime'));
 */
export function deferUnusedModules(dockerRuntimeUrl: string): string[] {
  let files: string[];
  try {
    const dockerode = createRequire(dockerRuntimeUrl).resolve('dockerode');
    const modem = createRequire(dockerode).resolve('docker-modem');
    files = [join(dirname(modem), 'ssh.js'), join(dirname(dockerode), 'session.js')];
  } catch {
    // Not resolvable from here (an unusual install): nothing deferred, dockerode loads whole.
    return [];
  }
  const require = createRequire(import.meta.url);
  return files.filter((file) => defer(file, require));
}

/**
 * `module.exports = function (…) {` or `module.exports = name;` with `function name(` in the
 * same file: one function and nothing else exported.
 */
function exportsOneFunction(source: string): boolean {
  const assigned = /^module\.exports\s*=\s*(?:function\b|([A-Za-z_$][\w$]*)\s*;)/m.exec(source);
  if (assigned === null) return false;
  if (/module\.exports\.|exports\.[A-Za-z_$]/.test(source)) return false;
  const name = assigned[1];
  return name === undefined || new RegExp(`\\bfunction\\s+${name}\\s*\\(`).test(source);
}

function defer(file: string, require: NodeJS.Require): boolean {
  if (!existsSync(file) || require.cache[file] !== undefined) return false;
  if (!exportsOneFunction(readFileSync(file, 'utf8'))) return false;
  let real: ((...args: unknown[]) => unknown) | undefined;
  const stand = new Module(file) as Module & { paths: string[] };
  stand.filename = file;
  stand.loaded = true;
  stand.exports = function deferred(this: unknown, ...args: unknown[]) {
    if (real === undefined) {
      // The stand-in leaves the cache so that require() loads the file itself.
      delete require.cache[file];
      real = require(file) as (...args: unknown[]) => unknown;
    }
    return real.apply(this, args);
  };
  require.cache[file] = stand;
  return true;
}
