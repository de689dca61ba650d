/**
 * The release as a host gets it (README.md, "Install on a host"): `npm run release` once, then
 * only its output, copied into a scratch folder, installed and run as the README says with a
 * PATH, working folder and HOME outside the clone and no NODE_OPTIONS:
 *
 * - the bundle: `install.sh --prefix`, then `dso --version`, `dso-agent --version`, `dso init`,
 *   `dso secret set` (value on stdin), the installed agent on a private engine delivering the
 *   secret to a labelled container, then the template provider installed with `dso plugin
 *   install` (it imports the SDK the bundle carries) delivering one of its own, and the Python
 *   provider (examples/provider-python, its own `dso.command`) installed and delivering the same way,
 *   `docker dso --version` through the installed plugin, and the
 *   installed systemd unit naming what the install put there (systemd-analyze verify). Every
 *   command runs under strace: no file of the clone is opened, stat'ed or executed.
 * - the npm form, the README's commands: `npm install -g --offline` of every tarball, whose @dso
 *   packages are the packed ones (none fetched or nested: the @dso scope on the registry is not
 *   ours), the docker plugin linked, the unit rewritten for the prefix and verified.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  access,
  constants,
  cp,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  writeFile,
} from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  createWorkspace,
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
const PROVIDER_CANARY = `canary-install-provider-${randomUUID()}`;
const PYTHON_CANARY = `canary-install-python-${randomUUID()}`;
/** npm's cache on this machine (filled by `npm ci`): a host's npm would have its own. */
const NPM_CACHE = process.env.npm_config_cache ?? join(homedir(), '.npm');

const TEMPLATE = join(ROOT, 'examples/provider-template');
const PYTHON_PROVIDER = join(ROOT, 'examples/provider-python');

/** The scratch folder: the release's copy, the prefixes, HOME and DSO_HOME; nothing of the clone. */
let scratch: string;
/** The template provider, packed: a third-party package an operator installs. */
let providerTarball: string;
/** The Python provider (examples/provider-python, `dso.command`, no SDK), packed. */
let pythonTarball: string;

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
  // The release step, as a maintainer runs it, on the dist/ folders the suite built (like every
  // e2e file, this one drives built artifacts; a rebuild here would empty the dist/ folders
  // under the agents of the file running beside it).
  const release = await runCommand(
    process.execPath,
    [join(ROOT, 'tools/release.mjs'), '--no-build'],
    {
      cwd: ROOT,
      timeoutMs: 900_000,
    },
  );
  expect(release.code, release.stderr).toBe(0);
  scratch = await mkdtemp(join(tmpdir(), 'dso-install-'));
  leftovers.paths.add(scratch);
  await mkdir(join(scratch, 'home'));
  // Only the release's output reaches the scratch folder: the tarball and the npm tarballs.
  await cp(join(ROOT, 'dist/release', `${BUNDLE}.tar.gz`), join(scratch, `${BUNDLE}.tar.gz`));
  await cp(join(ROOT, 'dist/release/npm'), join(scratch, 'npm'), { recursive: true });
  // A third-party provider as its author ships it: the template, built and packed (in the
  // scratch folder too, as an operator's download would be).
  const author = join(scratch, 'author', 'dso-provider-example');
  const tsc = await runCommand(
    'npx',
    ['tsc', '-p', join(TEMPLATE, 'tsconfig.build.json'), '--outDir', join(author, 'dist')],
    { cwd: ROOT },
  );
  expect(tsc.code, tsc.stdout + tsc.stderr).toBe(0);
  for (const file of ['package.json', 'README.md']) {
    await cp(join(TEMPLATE, file), join(author, file));
  }
  const packed = await runCommand('npm', ['pack', '--json', '--pack-destination', scratch], {
    cwd: author,
  });
  expect(packed.code, packed.stderr).toBe(0);
  providerTarball = join(scratch, JSON.parse(packed.stdout)[0].filename);
  // A provider in another language, packed by its author the same way (npm pack of its folder).
  const python = await runCommand('npm', ['pack', '--json', '--pack-destination', scratch], {
    cwd: PYTHON_PROVIDER,
  });
  expect(python.code, python.stderr).toBe(0);
  pythonTarball = join(scratch, JSON.parse(python.stdout)[0].filename);
}, 900_000);

describe('install on a host (release output only, private engine)', () => {
  it('installs the bundle under a prefix, whose dso, dso-agent, docker plugin and systemd unit work without the clone, and delivers from the vault and from a provider package it installs', async () => {
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
    const dockerDso = await onHost('docker', ['dso', '--version'], { env });
    expect(dockerDso.code, dockerDso.stderr).toBe(0);
    expect(dockerDso.stdout).toContain(`dso ${VERSION}`);

    // The unit starts what the install linked, and systemd reads it without a complaint.
    const unit = await readFile(join(units, 'dso-agent.service'), 'utf8');
    expect(unit).toMatch(new RegExp(`^ExecStart=${prefix}/bin/dso-agent$`, 'm'));
    await access(join(prefix, 'bin', 'dso-agent'), constants.X_OK);
    const verify = await runCommand('systemd-analyze', [
      'verify',
      join(units, 'dso-agent.service'),
    ]);
    expect({ code: verify.code, stderr: verify.stderr }).toEqual({ code: 0, stderr: '' });

    // The installed agent, on a private engine, under strace (it and its provider processes):
    // first the local vault, then a third-party provider installed with `dso plugin install`,
    // which imports the SDK the bundle carries.
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    // A driver name and host folders of its own, as every agent of the suite (see the harness):
    // the installed defaults under /run/dso are the host's, shared with any other agent.
    const folders = await createWorkspace();
    leftovers.workspaces.add(folders);
    const agentEnvironment = {
      ...env,
      DSO_VOLUME_DRIVER_NAME: folders.volumeDriver,
      DSO_VOLUMES_ROOT: folders.volumesRoot,
      DSO_HOST_PATH_ROOT: folders.hostPathRoot,
      DOCKER_HOST: engine.host,
      DSO_METRICS_ADDRESS: `127.0.0.1:${await freePort()}`,
      DSO_LOG_LEVEL: 'debug',
    };
    // `runner`: whether a provider of this step runs in a process of the bundle's runner (a
    // package does; the local vault, a built-in, runs in the agent's process by default).
    const deliver = async (reference: string, expected: string, { runner = true } = {}) => {
      const trace = join(scratch, `trace-agent-${randomUUID()}.txt`);
      await using agent = startTracedAgent(trace, agentEnvironment);
      await agent.waitForLog('agent ready');
      await using web = await runContainer(
        [
          '--label',
          'dso.enable=true',
          '--label',
          `dso.file.s=${reference}`,
          '--tmpfs',
          '/run/secrets',
        ],
        ['sleep', '600'],
        { host: engine.host },
      );
      await waitFor(`${reference} in the container`, async () =>
        (await web.readFile('/run/secrets/s').catch(() => '')) === expected ? true : undefined,
      );
      expect(await agent.stop()).toBe(0);
      expect(await cloneAccesses(trace)).toEqual([]);
      // A package's provider ran as a process of the bundle's runner, which the trace saw
      // start; a built-in alone starts none.
      const runnerPath = join(prefix, 'lib/dso/node_modules/@dso/provider-sdk/dist/runner.js');
      if (runner) expect(await readFile(trace, 'utf8')).toContain(runnerPath);
      else expect(await readFile(trace, 'utf8')).not.toContain(runnerPath);
      expect(agent.output).not.toContain(CANARY);
      expect(agent.output).not.toContain(PROVIDER_CANARY);
      expect(agent.output).not.toContain(PYTHON_CANARY);
    };
    await deliver('dsofile://app/db', CANARY, { runner: false });

    const provider = await onHost('dso', ['plugin', 'install', providerTarball, '--offline'], {
      env: { ...env, npm_config_cache: NPM_CACHE, npm_config_update_notifier: 'false' },
    });
    expect(provider.code, provider.stderr).toBe(0);
    expect(provider.stdout).toContain('installed dso-provider-example');
    const store = join(scratch, 'store.json');
    await writeFile(
      store,
      JSON.stringify({ secrets: { 'app/api': { version: '1', value: PROVIDER_CANARY } } }),
      { mode: 0o600 },
    );
    await writeFile(
      join(dsoHome, 'dso.yaml'),
      `providers:\n  example:\n    type: dso-provider-example\n    config:\n      file: ${store}\n`,
      { mode: 0o600 },
    );
    await deliver('dsofile://example:app/api', PROVIDER_CANARY);

    // The Python provider, installed with the same command: it runs its own `dso.command`
    // (python3 in its package folder), no SDK, under the installed agent.
    const python = await onHost('dso', ['plugin', 'install', pythonTarball, '--offline'], {
      env: { ...env, npm_config_cache: NPM_CACHE, npm_config_update_notifier: 'false' },
    });
    expect(python.code, python.stderr).toBe(0);
    expect(python.stdout).toContain('installed dso-provider-pyfile');
    const pythonStore = join(scratch, 'py-store.json');
    await writeFile(pythonStore, JSON.stringify({ 'app/token': PYTHON_CANARY }), { mode: 0o600 });
    await writeFile(
      join(dsoHome, 'dso.yaml'),
      // The local vault stays beside the two packages (and stays the default for references
      // without a provider: part).
      `providers:\n  local:\n    type: local\n` +
        `  example:\n    type: dso-provider-example\n    config:\n      file: ${store}\n` +
        `  py:\n    type: dso-provider-pyfile\n    config:\n      file: ${pythonStore}\n`,
      { mode: 0o600 },
    );
    await deliver('dsofile://py:app/token', PYTHON_CANARY);

    // Nowhere in the scratch folder: the installed bundle, DSO_HOME (an encrypted vault), HOME,
    // the plugins folder, the traces; the provider's value only in the store the test wrote.
    expect(await filesContaining(CANARY, [scratch])).toEqual([]);
    expect(await filesContaining(PROVIDER_CANARY, [scratch])).toEqual([store]);
    expect(await filesContaining(PYTHON_CANARY, [scratch])).toEqual([pythonStore]);

    // --uninstall (the copy of install.sh in the installed bundle) takes back all it put there.
    const uninstall = await runCommand(
      join(prefix, 'lib', 'dso', 'install.sh'),
      ['--uninstall', '--prefix', prefix, '--docker-plugins-dir', plugins, '--systemd-dir', units],
      { env: hostEnv(prefix), cwd: scratch },
    );
    expect(uninstall.code, uninstall.stderr).toBe(0);
    expect({
      bin: await readdir(join(prefix, 'bin')),
      lib: await readdir(join(prefix, 'lib')),
      plugins: await readdir(plugins),
      units: await readdir(units),
    }).toEqual({ bin: [], lib: [], plugins: [], units: [] });
  });

  it('installs every tarball with npm install -g --offline, the @dso packages from the tarballs only', async () => {
    const prefix = join(scratch, 'npm-prefix');
    const tarballs = (await readdir(join(scratch, 'npm'))).map((name) =>
      join(scratch, 'npm', name),
    );
    expect(tarballs.length).toBeGreaterThan(0);
    // The README's commands, in a shell, with the global prefix, the plugin folder and the
    // unit's folder in the scratch folder. --offline: npm takes nothing from the network; the
    // third-party packages come from its cache (this machine's, filled by `npm ci`), the @dso
    // ones only from the tarballs named, any other @dso lookup fails on loopback.
    const plugins = join(scratch, 'home', '.docker', 'cli-plugins');
    const units = join(scratch, 'npm-systemd');
    await mkdir(units);
    const script = [
      'set -e',
      'npm install -g --offline --@dso:registry=http://127.0.0.1:9 ./npm/*.tgz',
      `mkdir -p ${plugins}`,
      `ln -sfn "$(npm root -g)/@dso/cli/bin/docker-dso.js" ${plugins}/docker-dso`,
      'sed -e "s|^ExecStart=.*|ExecStart=$(npm prefix -g)/bin/dso-agent|" \\',
      '  -e "s|^Documentation=.*|Documentation=file:$(npm root -g)/@dso/agent/README.md|" \\',
      `  "$(npm root -g)/@dso/agent/systemd/dso-agent.service" >${units}/dso-agent.service`,
    ].join('\n');
    const install = await runCommand('sh', ['-c', script], {
      env: hostEnv(prefix, {
        npm_config_prefix: prefix,
        npm_config_cache: NPM_CACHE,
        npm_config_update_notifier: 'false',
        npm_config_audit: 'false',
        npm_config_fund: 'false',
      }),
      cwd: scratch,
      timeoutMs: 300_000,
    });
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
    const plugin = await runCommand('docker', ['dso', '--version'], { env, cwd: scratch });
    expect(plugin.code, plugin.stderr).toBe(0);
    expect(plugin.stdout).toContain(`dso ${VERSION}`);
    const unit = await readFile(join(units, 'dso-agent.service'), 'utf8');
    expect(unit).toMatch(new RegExp(`^ExecStart=${prefix}/bin/dso-agent$`, 'm'));
    const verify = await runCommand('systemd-analyze', [
      'verify',
      join(units, 'dso-agent.service'),
    ]);
    expect({ code: verify.code, stderr: verify.stderr }).toEqual({ code: 0, stderr: '' });
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
    /** Waits for a log line; a timeout says what the agent printed (why it is not there). */
    async waitForLog(message: string) {
      try {
        return await waitFor(`installed agent log "${message}"`, async () =>
          output.includes(`"msg":"${message}"`) ? true : undefined,
        );
      } catch (error) {
        throw new Error(`${(error as Error).message}; the agent printed:\n${output.slice(-3000)}`);
      }
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
