/**
 * What an operator sees, with the built CLI and agent on a private engine (no other agent sees
 * these containers): `dso status` and `dso events` name containers with their state and give a
 * failure's reason and fix; `dso status <name>` shows one container in full and an unknown name
 * is an error; a stopped container stays `exited` through reconciliations until it is removed;
 * `dso events` fails when the agent stops; a restarted agent (its socket set in dso.yaml only,
 * which the CLI reads too) lists the files it finds delivered, with when they were delivered and
 * the default rotation it applies. The secret's canary value appears in none of it.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  CLI_BIN,
  createWorkspace,
  dockerOn,
  runCommand,
  runContainer,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const leftovers = trackLeftovers();

const CANARY = `canary-operator-${randomUUID()}`;

/** `dso status --json`'s containers, or undefined while the agent does not answer. */
async function statusOf(cli: (args: string[]) => ReturnType<typeof runCommand>) {
  const result = await cli(['status', '--json']);
  if (result.code !== 0) return undefined;
  return JSON.parse(result.stdout) as {
    containers: Array<{
      id: string;
      name?: string;
      state?: string;
      files?: Array<{ name: string; reference: string }>;
      deliveredAt?: number;
      rotation?: string;
      lastAction: { outcome: string; code?: string; message?: string };
    }>;
  };
}

describe('operator status (built CLI and agent, private engine)', () => {
  it('names containers with state, reason and fix in status and events; shows one in full; lists files after an agent restart', async () => {
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/db'], CANARY)).code).toBe(0);
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    await agent.waitForLog('agent ready');

    // Followed from before the containers start, until the agent stops.
    const follower = spawn(process.execPath, [CLI_BIN, 'events', '--json'], {
      env: workspace.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const followed = { stdout: '', stderr: '', code: undefined as number | null | undefined };
    follower.stdout.setEncoding('utf8').on('data', (text: string) => {
      followed.stdout += text;
    });
    follower.stderr.setEncoding('utf8').on('data', (text: string) => {
      followed.stderr += text;
    });
    const ended = new Promise<number | null>((resolve) => follower.on('close', resolve));
    try {
      await waitFor('dso events subscribed', async () =>
        followed.stdout.includes('"type":"subscribed"') ? true : undefined,
      );

      const suffix = randomUUID().slice(0, 8);
      const web = await runContainer(
        [
          '--label',
          'dso.enable=true',
          '--label',
          'dso.file.db=dsofile://app/db',
          '--tmpfs',
          '/run/secrets',
        ],
        ['sleep', '600'],
        { host: engine.host, name: `web-${suffix}` },
      );
      const broken = await runContainer(
        [
          '--label',
          'dso.enable=true',
          '--label',
          'dso.file.db=dsofile://app/missing',
          '--tmpfs',
          '/run/secrets',
        ],
        ['sleep', '600'],
        { host: engine.host, name: `broken-${suffix}` },
      );

      // Status: both named, running, the failure with its reason and fix.
      await waitFor('both containers in dso status', async () => {
        const containers = (await statusOf(workspace.cli))?.containers ?? [];
        const done = containers.filter(
          (c) =>
            (c.id === web.id && c.lastAction.outcome === 'delivered') ||
            (c.id === broken.id && c.lastAction.outcome === 'failed'),
        );
        return done.length === 2 ? containers : undefined;
      });
      const table = await workspace.cli(['status']);
      expect(table.code).toBe(0);
      expect(table.stdout).toMatch(/^NAME +CONTAINER ID +STATE +FILES/m);
      expect(table.stdout).toMatch(
        new RegExp(`^web-${suffix} +${web.id.slice(0, 12)} +running +1 `, 'm'),
      );
      expect(table.stdout).toMatch(
        new RegExp(
          `^broken-${suffix} +${broken.id.slice(0, 12)} +running .*failed .*DSO_PROVIDER_NOT_FOUND dsofile://app/missing$`,
          'm',
        ),
      );
      expect(table.stdout).toContain(
        `broken-${suffix} (${broken.id.slice(0, 12)}): could not resolve dsofile://app/missing from provider local (the default for references without \`provider:\`): `,
      );
      expect(table.stdout).toMatch(
        /store the secret in the provider named \(dso secret set <path> for the local vault\)/,
      );

      // One container in full, by name and by id prefix; an unknown one is an error.
      const one = await workspace.cli(['status', `web-${suffix}`]);
      expect(one.code).toBe(0);
      expect(one.stdout).toMatch(
        new RegExp(`^Name: +web-${suffix}\\nID: +${web.id}\\nState: +running`),
      );
      expect(one.stdout).toMatch(/^ {2}db +dsofile:\/\/app\/db +local +\S+$/m);
      expect(one.stdout).toMatch(/^Last failure: +none$/m);
      const byId = await workspace.cli(['status', broken.id.slice(0, 8), '--json']);
      expect(JSON.parse(byId.stdout)).toMatchObject({
        id: broken.id,
        name: `broken-${suffix}`,
        lastFailure: {
          code: 'DSO_PROVIDER_NOT_FOUND',
          message: expect.stringContaining('store the secret'),
        },
      });
      const unknown = await workspace.cli(['status', `nope-${suffix}`]);
      expect(unknown.code).toBe(4); // not found
      expect(unknown.stderr).toMatch(
        /no container the agent manages is named .*\(DSO_CLI_CONTAINER_UNKNOWN\)/,
      );

      // A stopped container is shown exited, also after the agent lists every container again.
      await dockerOn(engine.host, 'stop', '-t', '0', broken.id);
      await waitFor('broken shown exited', async () =>
        (await statusOf(workspace.cli))?.containers.find(
          (c) => c.id === broken.id && c.state === 'exited',
        ),
      );
      expect((await workspace.cli(['reconcile'])).code).toBe(0);
      expect((await workspace.cli(['reconcile'])).code).toBe(0);
      const reconciled = await workspace.cli(['status']);
      expect(reconciled.stdout).toMatch(
        new RegExp(`^broken-${suffix} +${broken.id.slice(0, 12)} +exited `, 'm'),
      );
      const webDelivered = (await statusOf(workspace.cli))?.containers.find((c) => c.id === web.id);
      expect(webDelivered?.rotation).toBe("files (the agent's default: rotation in dso.yaml)");
      // Removed: gone from status.
      await broken[Symbol.asyncDispose]();
      await waitFor('broken gone from status', async () =>
        (await statusOf(workspace.cli))?.containers.some((c) => c.id === broken.id) === false
          ? true
          : undefined,
      );

      // The agent stops: dso events says so on stderr and fails.
      expect(await agent.stop()).toBe(0);
      followed.code = await ended;
      expect(followed.code).toBe(6); // the agent is unavailable
      expect(followed.stderr).toMatch(
        /the agent stopped: its events ended; .*\(DSO_CLI_AGENT_UNAVAILABLE\)/,
      );
      const lines = followed.stdout
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line) as Record<string, unknown>);
      expect(lines).toContainEqual(
        expect.objectContaining({
          type: 'delivered',
          containerId: web.id,
          containerName: `web-${suffix}`,
          containerState: 'running',
        }),
      );
      expect(lines).toContainEqual(
        expect.objectContaining({
          type: 'delivery-failed',
          containerId: broken.id,
          containerName: `broken-${suffix}`,
          code: 'DSO_PROVIDER_NOT_FOUND',
          message: expect.stringContaining('store the secret'),
        }),
      );

      // Restarted with its socket named in dso.yaml only: the CLI finds it there too (no
      // DSO_API_SOCKET for either). The files it finds delivered are listed, not `-`, with when.
      const yamlSocket = join(workspace.home, 'from-yaml.sock');
      await writeFile(join(workspace.home, 'dso.yaml'), `api: { socket: ${yamlSocket} }\n`, {
        mode: 0o600,
      });
      const { DSO_API_SOCKET: _agentSocket, ...withoutSocket } = env;
      const { DSO_API_SOCKET: _cliSocket, ...cliEnv } = workspace.env;
      const cli = (args: string[]) =>
        runCommand(process.execPath, [CLI_BIN, ...args], { env: cliEnv });
      const again = startAgent(withoutSocket);
      leftovers.agents.add(again);
      await again.waitForLog('agent ready');
      const restored = await waitFor('web checked by the restarted agent', async () =>
        (await statusOf(cli))?.containers.find(
          (c) => c.id === web.id && c.lastAction.outcome === 'up-to-date',
        ),
      );
      // When the first agent delivered, from its state file: not "before the agent started".
      expect(restored.deliveredAt).toBe(webDelivered?.deliveredAt);
      const full = await cli(['status', `web-${suffix}`]);
      expect(full.stdout).toMatch(/^Last delivery: +\S+ ago \(\d{4}-\d\d-\d\dT/m);
      expect(full.stdout).not.toContain('before the agent started');
      const doctor = await cli(['doctor', '--json']);
      const agentCheck = (
        JSON.parse(doctor.stdout) as { checks: Array<{ name: string; detail: string }> }
      ).checks.find((check) => check.name === 'agent');
      expect(agentCheck?.detail).toContain(
        `running on ${yamlSocket} (api.socket in ${join(workspace.home, 'dso.yaml')})`,
      );
      expect(restored).toMatchObject({ name: `web-${suffix}`, state: 'running' });
      expect(restored.files?.map((file) => file.reference)).toEqual(['dsofile://app/db']);
      const after = await cli(['status']);
      expect(after.stdout).toMatch(
        new RegExp(
          `^web-${suffix} +${web.id.slice(0, 12)} +running +1 +- +startup +up-to-date`,
          'm',
        ),
      );

      for (const output of [table, one, byId, unknown, followed, reconciled, after, full, doctor]) {
        expect(`${output.stdout}${output.stderr}`).not.toContain(CANARY);
      }
      expect(await again.stop()).toBe(0);
      await web[Symbol.asyncDispose]();
    } finally {
      if (follower.exitCode === null) follower.kill('SIGKILL');
    }
  }, 240_000);
});
