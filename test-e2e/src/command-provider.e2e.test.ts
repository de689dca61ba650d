/**
 * A provider in any language straight from dso.yaml: `type: command` with the argv of the
 * Python example (examples/provider-python/provider.py, standard library only, no SDK), run by
 * the built agent (private engine) and delivering a secret into a container; its secrets come
 * from the configuration, never argv or the environment. A `type: command` without `command`
 * stops the agent with the field and the fix.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  AGENT_BIN,
  agentEnv,
  createWorkspace,
  filesContaining,
  removeRunContainers,
  runCommand,
  runContainer,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const PROVIDER = join(import.meta.dirname, '../../examples/provider-python/provider.py');

const leftovers = trackLeftovers();
afterAll(removeRunContainers);

let engine: Awaited<ReturnType<typeof startPrivateEngine>>;
beforeAll(async () => {
  engine = await startPrivateEngine();
  leftovers.engines.add(engine);
}, 120_000);

describe('type: command providers', () => {
  it('runs the Python example from dso.yaml and delivers its secret to a container', async () => {
    const canary = `canary-${randomUUID()}`;
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    const store = join(workspace.home, 'secrets.json');
    await writeFile(store, JSON.stringify({ 'app/api/token': canary }), { mode: 0o600 });
    await writeFile(
      join(workspace.home, 'dso.yaml'),
      [
        'providers:',
        '  py:',
        '    type: command',
        `    command: [python3, ${PROVIDER}]`,
        `    config: { file: ${store}, pollIntervalMs: 200 }`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    await agent.waitForLog('agent ready', 60_000).catch((error: unknown) => {
      throw new Error(`the agent did not get ready: ${agent.output.slice(-3000)}`, {
        cause: error,
      });
    });

    await using container = await runContainer(
      [
        '--label',
        'dso.enable=true',
        '--label',
        'dso.file.token=dsofile://py:app/api/token',
        '--tmpfs',
        '/run/secrets',
      ],
      ['sleep', '600'],
      { host: engine.host },
    );
    const content = await waitFor('the token in the container', async () => {
      const text = await container.readFile('/run/secrets/token').catch(() => '');
      return text.length > 0 ? text : undefined;
    });
    expect(content).toBe(canary);
    expect(await agent.stop()).toBe(0);
    expect(agent.output).toContain('provider process started');
    expect(agent.output).not.toContain(canary);
    // On host disk only where the test put it.
    expect(await filesContaining(canary, [workspace.home])).toEqual([store]);
  }, 180_000);

  it('refuses type: command without command, naming the field and the fix', async () => {
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    await writeFile(join(workspace.home, 'dso.yaml'), 'providers:\n  py:\n    type: command\n', {
      mode: 0o600,
    });
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = await runCommand(process.execPath, [AGENT_BIN], { env, timeoutMs: 60_000 });
    expect(agent.code).not.toBe(0);
    const output = agent.stdout + agent.stderr;
    expect(output).toContain('providers.py.command');
    expect(output).toContain('required with `type: command`');
  }, 120_000);
});
