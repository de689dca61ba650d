/**
 * Third-party provider packages, as their author and an operator would use them, with no
 * registry anywhere: the template provider (examples/provider-template) built and packed, the
 * Python provider (examples/provider-python) packed, each installed with the built
 * `dso plugin install <tarball>` into a fresh DSO_HOME's plugins folder (npm offline, its
 * registry a closed loopback port, so any fetch fails loudly), configured in dso.yaml by its
 * package name, and delivering a secret through the built agent (private engine) into a
 * container. A package built for another SDK is refused at install and at agent start.
 */
import { randomUUID } from 'node:crypto';
import { cp, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  AGENT_BIN,
  agentEnv,
  CLI_BIN,
  createWorkspace,
  dockerOn,
  filesContaining,
  removeRunContainers,
  runCommand,
  runContainer,
  startAgent,
  trackLeftovers,
  type Workspace,
  waitFor,
} from './harness.js';

const ROOT = join(import.meta.dirname, '../..');
const TEMPLATE = join(ROOT, 'examples/provider-template');
const PYTHON = join(ROOT, 'examples/provider-python');
// npm reaches nothing: `dso plugin install --offline` takes packages from npm's cache only
// (keyed by the registry's URL, so the registry setting stays), and any request npm would make
// anyway goes to a proxy on a closed loopback port and fails at once.
const NO_REGISTRY = {
  npm_config_proxy: 'http://127.0.0.1:9/',
  npm_config_https_proxy: 'http://127.0.0.1:9/',
  npm_config_fetch_retries: '0',
};

const leftovers = trackLeftovers();
afterAll(removeRunContainers);

let work: string;
let templateTarball: string;
let pythonTarball: string;
let engine: Awaited<ReturnType<typeof startPrivateEngine>>;

async function run(command: string, args: string[], cwd = ROOT, env = process.env) {
  const result = await runCommand(command, args, {
    cwd,
    env: { ...env, ...NO_REGISTRY },
    timeoutMs: 150_000,
  });
  if (result.code !== 0) {
    throw new Error(`${command} ${args.join(' ')} failed: ${result.stdout}${result.stderr}`);
  }
  return result;
}

/** `npm pack <folder>` into the work folder: the tarball's path. */
async function pack(folder: string): Promise<string> {
  const { stdout } = await run('npm', ['pack', folder, '--pack-destination', work, '--json']);
  const [packed] = JSON.parse(stdout) as Array<{ filename: string }>;
  return join(work, packed!.filename);
}

/** The built dso in a workspace, npm without a registry. */
function dso(workspace: Workspace, args: string[]) {
  return runCommand(process.execPath, [CLI_BIN, ...args], {
    env: { ...workspace.env, ...NO_REGISTRY },
  });
}

async function writeConfig(workspace: Workspace, yaml: string): Promise<void> {
  await writeFile(join(workspace.home, 'dso.yaml'), yaml, { mode: 0o600 });
}

/** A container with the reference as a file; its content once the agent wrote it. */
async function delivered(reference: string): Promise<string> {
  await using container = await runContainer(
    ['--label', 'dso.enable=true', '--label', `dso.file.s=${reference}`, '--tmpfs', '/run/secrets'],
    ['sleep', '600'],
    { host: engine.host },
  );
  try {
    return await waitFor(`${reference} in the container`, async () => {
      const content = await container.readFile('/run/secrets/s').catch(() => '');
      return content.length > 0 ? content : undefined;
    });
  } catch (error) {
    const state = await dockerOn(
      engine.host,
      'inspect',
      '--format',
      '{{json .State}}',
      container.id,
    );
    const logs = await dockerOn(engine.host, 'logs', container.id).catch(() => '');
    throw new Error(`${(error as Error).message} (container state ${state}, logs ${logs})`);
  }
}

/** `step`, or its failure with the agent's last log lines, which say why. */
async function explained<T>(agent: { output: string }, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (error) {
    throw new Error(
      `${(error as Error).message}; the agent's log ends:\n${agent.output.slice(-3000)}`,
    );
  }
}

beforeAll(async () => {
  work = await mkdirTemp();
  // The template as its author builds and packs it (tsc to dist/, npm pack of package.json,
  // README and dist/), its build output kept out of the repository.
  const built = join(work, 'dso-provider-example');
  await mkdir(built);
  await run('npx', [
    'tsc',
    '-p',
    join(TEMPLATE, 'tsconfig.build.json'),
    '--outDir',
    join(built, 'dist'),
  ]);
  for (const file of ['package.json', 'README.md'])
    await cp(join(TEMPLATE, file), join(built, file));
  templateTarball = await pack(built);
  pythonTarball = await pack(PYTHON);
  engine = await startPrivateEngine();
  leftovers.engines.add(engine);
}, 180_000);

async function mkdirTemp(): Promise<string> {
  const dir = join(tmpdir(), `dso-plugin-e2e-${randomUUID()}`);
  await mkdir(dir);
  leftovers.paths.add(dir);
  return dir;
}

describe('dso plugin install: provider packages from tarballs, without the registry', () => {
  it('installs the template provider, which finds the agent’s SDK and delivers a secret', async () => {
    const canary = `canary-${randomUUID()}`;
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    const installed = await dso(workspace, ['plugin', 'install', templateTarball, '--offline']);
    expect(installed.stderr).toBe('');
    expect(installed.code).toBe(0);
    expect(installed.stdout).toContain('installed dso-provider-example 0.1.0');
    const modules = join(workspace.home, 'plugins', 'node_modules');
    // Its own dependency (zod) came from npm's cache; no @dso package was installed at all.
    expect((await readdir(modules)).sort()).toEqual([
      '.package-lock.json',
      'dso-provider-example',
      'zod',
    ]);
    const listed = await dso(workspace, ['plugin', 'list', '--json']);
    expect(JSON.parse(listed.stdout)).toMatchObject([
      { name: 'dso-provider-example', version: '0.1.0', kind: 'module', sdk: 'ok' },
    ]);

    const store = join(workspace.home, 'store.json');
    await writeFile(
      store,
      JSON.stringify({ secrets: { 'app/db/password': { version: '1', value: canary } } }),
      { mode: 0o600 },
    );
    await writeConfig(
      workspace,
      `providers:\n  example:\n    type: dso-provider-example\n    config:\n      file: ${store}\n`,
    );
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    await explained(agent, () => agent.waitForLog('agent ready', 60_000));
    expect(await explained(agent, () => delivered('dsofile://example:app/db/password'))).toBe(
      canary,
    );
    expect(await agent.stop()).toBe(0);
    expect(agent.output).not.toContain(canary);
    expect(installed.stdout + listed.stdout).not.toContain(canary);
    // The value is on host disk only where the test put it: the store file.
    expect(await filesContaining(canary, [workspace.home])).toEqual([store]);
  }, 180_000);

  it('installs the Python provider (dso.command, no SDK) and delivers a secret from it', async () => {
    const canary = `canary-${randomUUID()}`;
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    const installed = await dso(workspace, ['plugin', 'install', pythonTarball, '--offline']);
    expect(installed.stderr).toBe('');
    expect(installed.code).toBe(0);
    expect(installed.stdout).toContain('installed dso-provider-pyfile 0.1.0: runs its own command');
    const listed = await dso(workspace, ['plugin', 'list', '--json']);
    expect(JSON.parse(listed.stdout)).toMatchObject([
      { name: 'dso-provider-pyfile', kind: 'command', sdk: 'ok' },
    ]);

    const store = join(workspace.home, 'py-store.json');
    await writeFile(store, JSON.stringify({ 'app/api/token': canary }), { mode: 0o600 });
    await writeConfig(
      workspace,
      `providers:\n  py:\n    type: dso-provider-pyfile\n    config:\n      file: ${store}\n`,
    );
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    await explained(agent, () => agent.waitForLog('agent ready', 60_000));
    expect(await explained(agent, () => delivered('dsofile://py:app/api/token'))).toBe(canary);
    expect(await agent.stop()).toBe(0);
    expect(agent.output).not.toContain(canary);
  }, 180_000);

  it('refuses a package built for another SDK: at install, and at agent start when put there by hand', async () => {
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    const manifest = JSON.parse(await readFile(join(TEMPLATE, 'package.json'), 'utf8'));
    const newer = join(work, 'dso-provider-newer');
    await mkdir(join(newer, 'dist'), { recursive: true });
    await cp(join(work, 'dso-provider-example', 'dist'), join(newer, 'dist'), { recursive: true });
    await writeFile(
      join(newer, 'package.json'),
      JSON.stringify({
        ...manifest,
        name: 'dso-provider-newer',
        version: '2.0.0',
        peerDependencies: { '@dso/provider-sdk': '^9.0.0' },
      }),
    );
    const refused = await dso(workspace, ['plugin', 'install', await pack(newer), '--offline']);
    expect(refused.code).toBe(3);
    expect(refused.stderr).toMatch(
      /^dso: dso-provider-newer 2\.0\.0 needs @dso\/provider-sdk \^9\.0\.0; this DSO supplies \d+\.\d+\.\d+: install a release of the package built for .* \(DSO_CLI_PLUGIN_SDK_MISMATCH\)\n$/,
    );
    expect(await readdir(join(workspace.home, 'plugins', 'node_modules')).catch(() => [])).toEqual(
      [],
    );

    // An operator who copied it in by hand: the agent says the same, and does not start.
    await cp(newer, join(workspace.home, 'plugins', 'node_modules', 'dso-provider-newer'), {
      recursive: true,
    });
    await writeConfig(
      workspace,
      `providers:\n  newer:\n    type: dso-provider-newer\n    config:\n      file: /nowhere.json\n`,
    );
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = await runCommand(process.execPath, [AGENT_BIN], { env, timeoutMs: 60_000 });
    expect(agent.code).not.toBe(0);
    const output = agent.stdout + agent.stderr;
    expect(output).toContain('DSO_AGENT_PROVIDER_SDK_MISMATCH');
    expect(output).toContain('dso-provider-newer 2.0.0 needs @dso/provider-sdk ^9.0.0');
  }, 180_000);
});
