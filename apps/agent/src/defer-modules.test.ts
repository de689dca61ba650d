import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = promisify(execFile);

/**
 * Runs `code` in a fresh node (its own require cache: the test process has loaded dockerode
 * already) with this folder's TypeScript sources, and returns what it prints as JSON.
 */
async function inFreshNode(code: string): Promise<Record<string, unknown>> {
  const { stdout } = await run(
    process.execPath,
    ['--conditions=@dso/source', '--import', 'tsx', '--input-type=module', '-e', code],
    { cwd: import.meta.dirname, timeout: 60_000 },
  );
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '{}');
}

describe('deferUnusedModules', () => {
  it('keeps ssh2 and gRPC unloaded until their function is called, then calls the real one', async () => {
    const result = await inFreshNode(`
      import { createRequire } from 'node:module';
      import { deferUnusedModules } from './defer-modules.ts';
      const deferred = deferUnusedModules(import.meta.resolve('@dso/docker-runtime'));
      const require = createRequire(import.meta.resolve('@dso/docker-runtime'));
      const Docker = require('dockerode');
      new Docker({ socketPath: '/nonexistent.sock' });
      const loaded = (pattern) => Object.keys(require.cache).some((file) => pattern.test(file));
      const before = { ssh2: loaded(/node_modules[\\\\/]ssh2[\\\\/]/), grpc: loaded(/@grpc/) };
      // docker-modem's ssh transport, as a modem for ssh:// calls it: an http.Agent, no connection yet.
      const ssh = require(createRequire(require.resolve('dockerode')).resolve('docker-modem').replace(/modem\\.js$/, 'ssh.js'));
      const agent = ssh({ host: '127.0.0.1', port: 1 });
      const after = { ssh2: loaded(/node_modules[\\\\/]ssh2[\\\\/]/), agent: agent.constructor.name };
      agent.destroy();
      console.log(JSON.stringify({ deferred: deferred.map((file) => file.split(/[\\\\/]/).slice(-3).join('/')), before, after }));
    `);
    // Both files found and deferred: a later dockerode or docker-modem that changes them makes
    // this fail, and the agent then only carries their memory again (see defer-modules.ts).
    expect(result.deferred).toEqual(['docker-modem/lib/ssh.js', 'dockerode/lib/session.js']);
    expect(result.before).toEqual({ ssh2: false, grpc: false });
    expect(result.after).toEqual({ ssh2: true, agent: 'Agent' });
  }, 60_000);

  it('defers nothing when dockerode cannot be found from where it is asked to look', async () => {
    const result = await inFreshNode(`
      import { deferUnusedModules } from './defer-modules.ts';
      console.log(JSON.stringify({ deferred: deferUnusedModules('file:///nonexistent/x.js') }));
    `);
    expect(result).toEqual({ deferred: [] });
  }, 60_000);
});
