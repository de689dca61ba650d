/**
 * `docker dso …` with the real docker CLI: the built `bin/docker-dso.js` linked into a scratch
 * HOME's ~/.docker/cli-plugins, as the install step does. Docker lists it in `docker --help`
 * (from its metadata), runs `docker dso --version` and `--help` under the `docker dso` name,
 * passes a secret on stdin through to `dso secret set`, and `docker dso status` reaches an agent
 * on a private engine, or says it is unreachable once that agent stops. The canary value
 * appears in no output.
 */
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, symlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  CLI_BIN,
  createWorkspace,
  runCommand,
  runContainer,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const leftovers = trackLeftovers();
const PLUGIN_BIN = join(CLI_BIN, '..', 'docker-dso.js');
const CANARY = `canary-docker-plugin-${randomUUID()}`;

describe('docker dso (the Docker CLI plugin, real docker CLI)', () => {
  it('is listed by docker, runs dso commands under the `docker dso` name, and reaches the agent', async () => {
    const home = await mkdtemp(join(tmpdir(), 'dso-docker-home-'));
    leftovers.paths.add(home);
    await mkdir(join(home, '.docker', 'cli-plugins'), { recursive: true });
    await symlink(PLUGIN_BIN, join(home, '.docker', 'cli-plugins', 'docker-dso'));
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    // The docker CLI finds its plugins under $HOME/.docker unless DOCKER_CONFIG says otherwise.
    const { DOCKER_CONFIG: _config, ...inherited } = workspace.env;
    const env: NodeJS.ProcessEnv = { ...inherited, HOME: home };
    const dockerCli = (args: string[], input?: string) =>
      runCommand('docker', args, { env, ...(input === undefined ? {} : { input }) });
    const outputs: string[] = [];
    const seen = async (result: Promise<Awaited<ReturnType<typeof runCommand>>>) => {
      const done = await result;
      outputs.push(done.stdout, done.stderr);
      return done;
    };

    const help = await seen(dockerCli(['--help']));
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^\s+dso\*\s+Secrets from secret stores into running containers/m);

    const version = await seen(dockerCli(['dso', '--version']));
    expect(version).toMatchObject({
      code: 0,
      stdout: expect.stringMatching(/^dso \d+\.\d+\.\d+ /),
    });
    const dsoHelp = await seen(dockerCli(['dso', '--help']));
    expect(dsoHelp.stdout).toMatch(/^Usage: docker dso \[options\] \[command\]/);
    expect(dsoHelp.stdout).toContain('secret');

    expect((await seen(dockerCli(['dso', 'init']))).code).toBe(0);
    const set = await seen(dockerCli(['dso', 'secret', 'set', 'app/db'], CANARY));
    expect(set).toMatchObject({ code: 0, stdout: 'stored app/db (version 1)\n' });

    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    const agent = startAgent((await agentEnv(workspace, { DOCKER_HOST: engine.host })).env);
    leftovers.agents.add(agent);
    await agent.waitForLog('agent ready');
    const web = await runContainer(
      ['--label', 'dso.enable=true', '--label', 'dso.file.db=dsofile://app/db'],
      ['sleep', '600'],
      { host: engine.host },
    );
    // Docker's -H goes before `dso`; the plugin hands it on as DOCKER_HOST.
    const listed = await waitFor('docker dso status to list the container', async () => {
      const result = await seen(dockerCli(['-H', engine.host, 'dso', 'status', '--json']));
      if (result.code !== 0) return undefined;
      const status = JSON.parse(result.stdout) as { containers: Array<{ id: string }> };
      return status.containers.find((container) => web.id.startsWith(container.id))
        ? status
        : undefined;
    });
    expect(listed.containers.length).toBe(1);

    expect(await agent.stop()).toBe(0);
    const unreachable = await seen(dockerCli(['dso', 'status']));
    expect(unreachable.code).toBe(6);
    expect(unreachable.stderr).toContain('DSO_CLI_AGENT_UNREACHABLE');

    for (const output of [...outputs, agent.output]) expect(output).not.toContain(CANARY);
  });
});
