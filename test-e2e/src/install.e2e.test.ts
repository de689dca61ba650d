/**
 * The release as a host gets it (README.md, "Install on a host"): `npm run release` once, then
 * only its output, copied into a scratch folder, installed and run as the README says with a
 * PATH, working folder and HOME outside the clone and no NODE_OPTIONS:
 *
 * - the bundle: `install.sh --prefix`, then `dso --version`, `dso-agent --version`, `dso init`,
 *   `dso secret set` (value on stdin), the installed agent on a private engine delivering the
 *   secret to a labelled container, `docker dso --version` through the installed plugin, and the
 *   installed systemd unit naming what the install put there (systemd-analyze verify). Every
 *   command runs under strace: no file of the clone is opened, stat'ed or executed.
 * - the npm form: `npm install -g --offline --prefix` of every tarball, whose @dso packages are
 *   the packed ones (none fetched or nested: the @dso scope on the registry is not ours).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { access, constants, cp, mkdir, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  filesContaining,
  freePort,
  runCommand,
  runContainer,
  trackLeftovers,
  waitFor,
} from './harness.js';

const leftovers = trackLeftovers();

const ROOT = join(import.meta.dirname, '..', '..');
const AGENT_MANIFEST = JSON.parse(await readFile(join(ROOT, 'apps/agent/package.json'), 'utf8'));
const VERSION: string = AGENT_MANIFEST.version;
const BUNDLE = `dso-${VERSION}-linux`;
const CANARY = `canary-install-${randomUUID()}`;

/** The scratch folder: the release's copy, the prefixes, HOME and DSO_HOME; nothing of the clone. */
let scratch: string;

/** A host's environment: nothing inherited from this process (no NODE_OPTIONS, no npm_*). */
function hostEnv(prefix: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  return {
    PATH: `${prefix}/bin:${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
    HOME: join(scratch, 'home'),
    LANG: 'C.UTF-8',
    ...extra,
  };
}

/** strace's record of every file-name system call of a command and its children. */
function straceArgs(trace: string): string[] {
  return ['-f', '-qq', '--seccomp-bpf', '-e', 'trace=%file', '-o', trace, '--'];
}

/** The lines of a trace that name a path in the clone (none is the point). */
async function cloneAccesses(trace: string): Promise<string[]> {
  const text = await readFile(trace, 'utf8');
  // The trace must have seen the command at work, or finding nothing would prove nothing.
  expect(text).toContain(join(scratch, 'prefix', 'lib', 'dso'));
  return text.split('\n').filter((line) => line.includes(ROOT));
}

/** Runs a command of the host under strace in the scratch folder; fails on a clone access. */
async function onHost(
  command: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; input?: string },
) {
  const trace = join(scratch, `trace-${randomUUID()}.txt`);
  const result = await runCommand('strace', [...straceArgs(trace), command, ...args], {
    env: options.env,
    cwd: scratch,
    ...(options.input === undefined ? {} : { input: options.input }),
    timeoutMs: 120_000,
  });
  expect(await cloneAccesses(trace)).toEqual([]);
  return result;
}

beforeAll(async () => {
  // The release step, as a maintainer runs it (the build is nx's cache after `npm test`'s).
  const release = await runCommand(process.execPath, [join(ROOT, 'tools/release.mjs')], {
    cwd: ROOT,
    timeoutMs: 900_000,
  });
  expect(release.code, release.stderr).toBe(0);
  scratch = await mkdtemp(join(tmpdir(), 'dso-install-'));
  leftovers.paths.add(scratch);
  await mkdir(join(scratch, 'home'));
  // Only the release's output reaches the scratch folder: the tarball and the npm tarballs.
  await cp(join(ROOT, 'dist/release', `${BUNDLE}.tar.gz`), join(scratch, `${BUNDLE}.tar.gz`));
  await cp(join(ROOT, 'dist/release/npm'), join(scratch, 'npm'), { recursive: true });
}, 900_000);

describe('install on a host (release output only, private engine)', () => {
  it('installs the bundle under a prefix, whose dso, dso-agent, docker plugin and systemd unit work without the clone, and delivers a secret', async () => {
    const prefix = join(scratch, 'prefix');
    const plugins = join(scratch, 'home', '.docker', 'cli-plugins');
    const units = join(scratch, 'systemd');
    const untar = await runCommand('tar', ['-xzf', `${BUNDLE}.tar.gz`], { cwd: scratch });
    expect(untar.code, untar.stderr).toBe(0);
    const install = await onHost(
      join(scratch, BUNDLE, 'install.sh'),
      ['--prefix', prefix, '--docker-plugins-dir', plugins, '--systemd-dir', units],
      { env: hostEnv(prefix) },
    );
    expect(install.code, install.stderr).toBe(0);
    expect(install.stdout).toContain(`installed dso and dso-agent ${VERSION} in ${prefix}/bin`);
    // The extracted folder goes away: the installed copy must stand alone.
    await rm(join(scratch, BUNDLE), { recursive: true });

    const dsoHome = join(scratch, 'dso-home');
    const env = hostEnv(prefix, {
      DSO_HOME: dsoHome,
      DSO_API_SOCKET: join(dsoHome, 'agent.sock'),
    });
    const dsoVersion = await onHost('dso', ['--version'], { env });
    expect(dsoVersion.stdout).toMatch(new RegExp(`^dso ${VERSION.replaceAll('.', '\\.')} `));
    const agentVersion = await onHost('dso-agent', ['--version'], { env });
    expect(agentVersion.stdout).toMatch(
      new RegExp(`^dso-agent ${VERSION.replaceAll('.', '\\.')} `),
    );
    const init = await onHost('dso', ['init'], { env });
    expect(init.code, init.stderr).toBe(0);
    const set = await onHost('dso', ['secret', 'set', 'app/db'], { env, input: CANARY });
    expect(set.code, set.stderr).toBe(0);

    // The Docker CLI finds the plugin in $HOME/.docker/cli-plugins and runs it as `docker dso`.
    const plugin = await onHost('docker', ['dso', '--version'], { env });
    expect(plugin.code, plugin.stderr).toBe(0);
    expect(plugin.stdout).toContain(`dso ${VERSION}`);

    // The unit starts what the install linked, and systemd reads it without a complaint.
    const unit = await readFile(join(units, 'dso-agent.service'), 'utf8');
    expect(unit).toMatch(new RegExp(`^ExecStart=${prefix}/bin/dso-agent$`, 'm'));
    await access(join(prefix, 'bin', 'dso-agent'), constants.X_OK);
    const verify = await runCommand('systemd-analyze', [
      'verify',
      join(units, 'dso-agent.service'),
    ]);
    expect({ code: verify.code, stderr: verify.stderr }).toEqual({ code: 0, stderr: '' });

    // The installed agent, on a private engine, under strace (it and its provider processes).
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    const trace = join(scratch, 'trace-agent.txt');
    await using agent = startTracedAgent(trace, {
      ...env,
      DOCKER_HOST: engine.host,
      DSO_METRICS_ADDRESS: `127.0.0.1:${await freePort()}`,
      DSO_LOG_LEVEL: 'debug',
    });
    await agent.waitForLog('agent ready');
    await using web = await runContainer(
      [
        '--label',
        'dso.enable=true',
        '--label',
        'dso.file.db=dsofile://app/db',
        '--tmpfs',
        '/run/secrets',
      ],
      ['sleep', '600'],
      { host: engine.host },
    );
    const delivered = await waitFor('the secret in the container', async () => {
      const text = await web.readFile('/run/secrets/db');
      return text === CANARY ? text : undefined;
    });
    expect(delivered).toBe(CANARY);
    expect(await agent.stop()).toBe(0);
    expect(await cloneAccesses(trace)).toEqual([]);
    // The provider ran as a process of the bundle's runner, which the trace saw started.
    expect(await readFile(trace, 'utf8')).toContain(
      join(prefix, 'lib/dso/node_modules/@dso/provider-sdk/dist/runner.js'),
    );
    expect(agent.output).not.toContain(CANARY);
    // Nowhere in the scratch folder: the installed bundle, DSO_HOME (an encrypted vault), HOME, traces.
    expect(await filesContaining(CANARY, [scratch])).toEqual([]);
  });

  it('installs every tarball with npm install -g --offline, the @dso packages from the tarballs only', async () => {
    const prefix = join(scratch, 'npm-prefix');
    const tarballs = (await readdir(join(scratch, 'npm'))).map((name) =>
      join(scratch, 'npm', name),
    );
    expect(tarballs.length).toBeGreaterThan(0);
    // --offline: npm takes nothing from the network; third-party packages come from its cache
    // (this machine's, filled by `npm ci`), the @dso ones only from the tarballs named here.
    const install = await runCommand(
      'npm',
      ['install', '-g', '--offline', '--no-audit', '--no-fund', '--prefix', prefix, ...tarballs],
      {
        env: hostEnv(prefix, {
          npm_config_cache: process.env.npm_config_cache ?? join(homedir(), '.npm'),
          npm_config_update_notifier: 'false',
        }),
        cwd: scratch,
        timeoutMs: 300_000,
      },
    );
    expect(install.code, install.stderr).toBe(0);
    const installed = join(prefix, 'lib', 'node_modules', '@dso');
    for (const tarball of tarballs) {
      const name = /^dso-(.+)-\d+\.\d+\.\d+\.tgz$/.exec(tarball.split('/').at(-1) ?? '')?.[1];
      const manifest = JSON.parse(
        await readFile(join(installed, `${name}`, 'package.json'), 'utf8'),
      );
      expect(manifest.version).toBe(VERSION);
    }
    // One copy of each @dso package, at the top: none nested under another (which npm would
    // have had to fetch).
    const nested = await runCommand('find', [
      join(prefix, 'lib', 'node_modules'),
      '-mindepth',
      '3',
      '-type',
      'd',
      '-path',
      '*/node_modules/@dso',
    ]);
    expect(nested.stdout).toBe('');
    const env = hostEnv(prefix, { DSO_HOME: join(scratch, 'npm-dso-home') });
    const dso = await runCommand(join(prefix, 'bin', 'dso'), ['--version'], { env, cwd: scratch });
    expect(dso.stdout).toMatch(new RegExp(`^dso ${VERSION.replaceAll('.', '\\.')} `));
    const agent = await runCommand(join(prefix, 'bin', 'dso-agent'), ['--version'], {
      env,
      cwd: scratch,
    });
    expect(agent.stdout).toMatch(new RegExp(`^dso-agent ${VERSION.replaceAll('.', '\\.')} `));
  });
});

/**
 * The installed `dso-agent` under `strace -f` (its provider processes too), its output kept.
 * Stopping signals the agent itself: strace, signalled, would detach and leave it running.
 */
function startTracedAgent(trace: string, env: NodeJS.ProcessEnv) {
  const child: ChildProcess = spawn('strace', [...straceArgs(trace), 'dso-agent'], {
    env,
    cwd: scratch,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  /** The agent's pid: strace's one child. */
  const agentPid = async () => {
    const children = await readFile(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8');
    return Number(children.trim().split(/\s+/)[0]);
  };
  const signal = async (name: NodeJS.Signals) => {
    if (child.exitCode !== null) return;
    try {
      process.kill(await agentPid(), name);
    } catch {
      // strace already reaped the agent (or never started it): nothing left to signal.
    }
  };
  return {
    get output() {
      return output;
    },
    waitForLog(message: string) {
      return waitFor(`installed agent log "${message}"`, async () =>
        output.includes(`"msg":"${message}"`) ? true : undefined,
      );
    },
    /** SIGTERM to the agent; resolves with the exit code strace passes on. */
    async stop(): Promise<number | null> {
      await signal('SIGTERM');
      return exited;
    },
    async [Symbol.asyncDispose]() {
      await signal('SIGKILL');
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}
