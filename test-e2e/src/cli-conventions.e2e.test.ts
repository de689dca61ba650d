// The built `dso` and `dso-agent` follow the conventions of the Docker CLI and kubectl:
// --version, an exit code per failure class, shell completion, --json where data is printed.
// The agent runs on a private engine, so that it manages none of the shared engine's containers.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  AGENT_BIN,
  agentEnv,
  createWorkspace,
  runCommand,
  startAgent,
  trackLeftovers,
} from './harness.js';

const ROOT = join(import.meta.dirname, '..', '..');
const leftovers = trackLeftovers();

function packageVersion(path: string): string {
  return (JSON.parse(readFileSync(join(ROOT, path, 'package.json'), 'utf8')) as { version: string })
    .version;
}

const PLATFORM = `node ${process.version}, ${process.platform}/${process.arch}`;

describe('dso and dso-agent conventions (built binaries)', () => {
  it('print their version with --version and -v', async () => {
    await using workspace = await createWorkspace();
    const cli = packageVersion('apps/cli');
    expect(await workspace.cli(['--version'])).toEqual({
      code: 0,
      stdout: `dso ${cli} (${PLATFORM})\n`,
      stderr: '',
    });
    expect((await workspace.cli(['-v'])).stdout).toBe(`dso ${cli} (${PLATFORM})\n`);
    const json = await workspace.cli(['version', '--json']);
    expect(JSON.parse(json.stdout)).toEqual({
      dso: cli,
      node: process.version,
      platform: process.platform,
      arch: process.arch,
      agent: { socket: workspace.env.DSO_API_SOCKET, error: 'DSO_CLI_AGENT_UNREACHABLE' },
    });
    expect((await workspace.cli(['version', '--client'])).stdout).toBe(
      `dso ${cli} (${PLATFORM})\n`,
    );

    const agent = packageVersion('apps/agent');
    for (const flag of ['--version', '-v']) {
      expect(await runCommand(process.execPath, [AGENT_BIN, flag], { env: workspace.env })).toEqual(
        { code: 0, stdout: `dso-agent ${agent} (${PLATFORM})\n`, stderr: '' },
      );
    }
    const unknown = await runCommand(process.execPath, [AGENT_BIN, '--nope'], {
      env: workspace.env,
    });
    expect(unknown.code).toBe(2);
  });

  it('exit with one code per failure class, the error code on stderr', async () => {
    await using workspace = await createWorkspace();
    const canary = `canary-${randomUUID()}`;
    const expectExit = async (args: string[], code: number, errorCode: string, input?: string) => {
      const result = await workspace.cli(args, input);
      expect({ args, code: result.code }).toEqual({ args, code });
      expect(result.stderr).toContain(errorCode);
      expect(result.stdout + result.stderr).not.toContain(canary);
    };

    await expectExit(['nope'], 2, "unknown command 'nope'");
    await expectExit(['secret', 'list'], 4, 'DSO_VAULT_NOT_FOUND');
    expect((await workspace.cli(['init'])).code).toBe(0);
    await expectExit(['init'], 5, 'DSO_VAULT_EXISTS');
    await expectExit(['secret', 'set', 'app/db', canary], 2, 'DSO_CLI_VALUE_IN_ARGV');
    await expectExit(['secret', 'set', 'bad path!'], 3, 'DSO_VAULT_PATH_INVALID', canary);
    await expectExit(['secret', 'rm', 'app/nothing'], 4, 'DSO_CLI_SECRET_NOT_FOUND');
    // No agent yet: unavailable, try again later.
    await expectExit(['status'], 6, 'DSO_CLI_AGENT_UNREACHABLE');

    expect((await workspace.cli(['secret', 'set', 'app/db'], canary)).code).toBe(0);
    const listed = await workspace.cli(['secret', 'list', '--json']);
    expect(JSON.parse(listed.stdout)).toEqual({ paths: ['app/db'] });

    // The agent's own refusals are classed too.
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    await using agent = startAgent(env);
    await agent.waitForLog('agent ready');
    await expectExit(['rotate', '0123456789ab'], 4, 'DSO_AGENT_CONTAINER_UNKNOWN');
    // As docker version names the server's: the agent's version, from its status.
    expect((await workspace.cli(['version'])).stdout).toContain(
      `dso-agent ${packageVersion('apps/agent')} on ${workspace.env.DSO_API_SOCKET}\n`,
    );
    const reconciled = await workspace.cli(['reconcile', '--json']);
    expect(reconciled).toMatchObject({ code: 0, stderr: '' });
    expect(JSON.parse(reconciled.stdout)).toEqual({ containers: 0 });
    const rotated = await workspace.cli(['rotate', '--json']);
    expect(JSON.parse(rotated.stdout)).toEqual({ containers: 0, secrets: 0 });
    expect(agent.output).not.toContain(canary);
  }, 120_000);

  it('print a bash completion script that completes dso st to status', async () => {
    await using workspace = await createWorkspace();
    const script = join(workspace.home, 'dso.bash');
    const printed = await workspace.cli(['completion', 'bash']);
    expect(printed.code).toBe(0);
    await writeFile(script, printed.stdout);
    const complete = async (...words: string[]) => {
      const typed = words.map((word) => `'${word}'`).join(' ');
      const { stdout } = await runCommand('bash', [
        '--norc',
        '-c',
        `source '${script}'; COMP_WORDS=(${typed}); COMP_CWORD=${words.length - 1}; _dso; printf '%s\\n' "\${COMPREPLY[@]}"`,
      ]);
      return stdout.split('\n').filter((line) => line !== '');
    };
    expect(await complete('dso', 'st')).toContain('status');
    expect(await complete('dso', 'stat')).toEqual(['status']);
    expect(await complete('dso', 'secret', '')).toEqual(['set', 'list', 'rm', 'help']);
    for (const shell of ['zsh', 'fish']) {
      const other = await workspace.cli(['completion', shell]);
      expect(other.code).toBe(0);
      expect(other.stdout).toContain('complete');
    }
  });
});
