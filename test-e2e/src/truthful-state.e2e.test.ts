/**
 * State that tells the truth, with the built agent and CLI on a private engine (so no other
 * test's agent touches these containers, and the fixed port below is this engine's own):
 *
 * - a `dso://` value whose replacement rolls back for real (a service bound to a fixed port on
 *   the host network cannot run twice: the new container exits) is not recorded as delivered:
 *   `dso status` shows it failed, with the versions the container still runs and what to do,
 *   and it is retried with backoff, at `dso reconcile`, at a restart of the container and at a
 *   restart of the agent;
 * - storing an identical value is no new version and causes no action (no restart, no
 *   replacement), while a different value does;
 * - a secret removed from its store while in use is shown missing on its consumer, not
 *   up to date.
 *
 * Each test waits for what must become true, never for a time.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it, onTestFailed } from 'vitest';
import {
  type PrivateEngine,
  startPrivateEngine,
} from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  type AgentProcess,
  agentEnv,
  createWorkspace,
  dockerOn,
  readAuditTrail,
  removeContainers,
  runContainer,
  runContainerIds,
  startAgent,
  trackLeftovers,
  type Workspace,
  waitFor,
} from './harness.js';

const leftovers = trackLeftovers();

/** A DSO home with `secrets` in its vault and an agent configuration for quick rotations. */
async function workspaceWith(secrets: Record<string, string>): Promise<Workspace> {
  const workspace = await createWorkspace();
  leftovers.workspaces.add(workspace);
  expect((await workspace.cli(['init'])).code).toBe(0);
  for (const [path, value] of Object.entries(secrets)) {
    expect(await workspace.cli(['secret', 'set', path], value)).toMatchObject({ code: 0 });
  }
  await writeFile(
    join(workspace.home, 'dso.yaml'),
    [
      'cache: { ttlMs: 0 }',
      'rotation: { jitterMs: 0, healthTimeoutMs: 20s, stopTimeoutMs: 1s }',
      // Not needed here, and a second driver on this host's plugin folder would be refused.
      'volumes: { enabled: false }',
    ].join('\n'),
  );
  return workspace;
}

async function privateEngine(): Promise<PrivateEngine> {
  const engine = await startPrivateEngine();
  leftovers.engines.add(engine);
  return engine;
}

function launchAgent(env: NodeJS.ProcessEnv): AgentProcess {
  const agent = startAgent(env);
  leftovers.agents.add(agent);
  return agent;
}

/**
 * `docker run -d` on `host` with `env` in the docker CLI's own environment (`-e NAME` in
 * `args`), so a value reaches the container the way `dso up` passes one, never through argv.
 */
async function runOn(
  host: string,
  args: string[],
  command: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ id: string; name: string }> {
  const { id, name } = await runContainer(args, command, { host, env });
  return { id, name };
}

/** The agent's answer to `dso status --json` for one container. */
async function statusOf(workspace: Workspace, id: string) {
  const result = await workspace.cli(['status', '--json']);
  if (result.code !== 0) return undefined;
  const status = JSON.parse(result.stdout) as {
    containers: Array<{
      id: string;
      env?: Array<{ name: string; version: string }>;
      files?: Array<{ name: string; version: string }>;
      lastAction: { outcome: string; code?: string; message?: string; trigger: string };
    }>;
  };
  return status.containers.find((container) => container.id === id);
}

/** How many times the agent has logged `message` for container `id` (short id in its lines). */
function count(agent: AgentProcess, message: string, id: string): number {
  return agent
    .lines()
    .filter((line) => line.msg === message && line.containerId === id.slice(0, 12)).length;
}

const ROLLED_BACK = 'replacement rolled back: the old container keeps serving';

describe('a replacement that rolled back', () => {
  it('is shown failed with what to do, not delivered, and retried with backoff, at dso reconcile, a container restart and an agent restart', async () => {
    const canary = `canary-${randomUUID()}`;
    const workspace = await workspaceWith({ 'app/api': `${canary}-1` });
    const engine = await privateEngine();
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    let agent = launchAgent(env);
    onTestFailed(() => console.log(agent.output.slice(-4000)));
    try {
      await agent.waitForLog('agent ready', 60_000);
      // A service on a fixed port of the host network (the private engine's namespace): a
      // second copy cannot bind it and exits at once, as a fixed published port would.
      const { id, name } = await runOn(
        engine.host,
        [
          '--network',
          'host',
          '--label',
          'dso.enable=true',
          '--label',
          'dso.env.API_KEY=dso://app/api',
          '--label',
          'dso.env-version.API_KEY=1',
          '-e',
          'API_KEY',
        ],
        ['httpd', '-f', '-p', '127.0.0.1:18080'],
        { API_KEY: `${canary}-1` },
      );
      await waitFor('the agent to see the container', async () =>
        count(agent, 'secrets delivered', id) > 0 ? true : undefined,
      );

      expect(await workspace.cli(['secret', 'set', 'app/api'], `${canary}-2`)).toMatchObject({
        code: 0,
        stdout: 'stored app/api (version 2)\n',
      });
      expect(await workspace.cli(['rotate'])).toMatchObject({ code: 0 });
      const failed = await waitFor(
        'dso status to show the replacement failed',
        async () => {
          const container = await statusOf(workspace, id);
          return container?.lastAction.outcome === 'failed' ? container : undefined;
        },
        { timeoutMs: 60_000 },
      );
      expect(failed.lastAction.code).toBe('DSO_DOCKER_REPLACE_FAILED');
      // The version it runs, not the new one; the reason and what to do.
      expect(failed.env).toEqual([expect.objectContaining({ name: 'API_KEY', version: '1' })]);
      expect(failed.lastAction.message).toContain('exited');
      expect(failed.lastAction.message).toContain('it still runs the old values');
      expect(failed.lastAction.message).toContain('cannot run twice at once');
      expect(failed.lastAction.message).toContain('tried again in');
      const table = await workspace.cli(['status']);
      expect(table.stdout).toContain('failed');
      expect(table.stdout).toContain('cannot run twice at once');
      // Nothing changed on the engine: the same container, its old value, no clone left.
      expect(await dockerOn(engine.host, 'inspect', '--format', '{{.Id}}', name)).toBe(id);
      expect(
        await dockerOn(engine.host, 'inspect', '--format', '{{json .Config.Env}}', id),
      ).toContain(`API_KEY=${canary}-1`);
      expect(await runContainerIds({ host: engine.host })).toEqual([id]);
      expect(count(agent, ROLLED_BACK, id)).toBe(1);

      // Retried on its own, after its backoff (15 to 30 s for the first).
      await waitFor(
        'the retry after the backoff',
        async () => (count(agent, ROLLED_BACK, id) >= 2 ? true : undefined),
        { timeoutMs: 45_000, intervalMs: 500 },
      );
      // dso reconcile tries it at once.
      const beforeReconcile = count(agent, ROLLED_BACK, id);
      expect((await workspace.cli(['reconcile'])).code).toBe(0);
      await waitFor('the retry at dso reconcile', async () =>
        count(agent, ROLLED_BACK, id) > beforeReconcile ? true : undefined,
      );
      // So does a restart of the container.
      const beforeRestart = count(agent, ROLLED_BACK, id);
      await dockerOn(engine.host, 'restart', '-t', '1', id);
      await waitFor(
        'the retry at the container restart',
        async () => (count(agent, ROLLED_BACK, id) > beforeRestart ? true : undefined),
        { timeoutMs: 60_000 },
      );
      // And an agent restart: the state file says the value is not delivered.
      expect(await agent.stop()).toBe(0);
      const firstOutput = agent.output;
      leftovers.agents.delete(agent);
      agent = launchAgent(env);
      await waitFor(
        'the retry after the agent restart',
        async () => (count(agent, ROLLED_BACK, id) > 0 ? true : undefined),
        { timeoutMs: 60_000 },
      );
      await waitFor('dso status to show it failed after the agent restart', async () => {
        const container = await statusOf(workspace, id);
        return container?.lastAction.outcome === 'failed' ? true : undefined;
      });

      expect(await agent.stop()).toBe(0);
      // Values only in the container's environment: never in the output or the audit trail.
      expect(firstOutput + agent.output).not.toContain(canary);
      const audit = await readAuditTrail(workspace.home);
      expect(JSON.stringify(audit)).not.toContain(canary);
      expect(
        audit.filter((line) => line.action === 'rotate' && line.outcome === 'error').length,
      ).toBeGreaterThanOrEqual(4);
    } finally {
      await agent[Symbol.asyncDispose]();
      await removeContainers(await runContainerIds({ host: engine.host }).catch(() => []), {
        host: engine.host,
      });
      leftovers.engines.delete(engine);
      await engine.destroy();
      await workspace[Symbol.asyncDispose]();
      leftovers.workspaces.delete(workspace);
    }
  }, 300_000);
});

describe('an identical value', () => {
  it('is no new version and causes no action; a different value does', async () => {
    const canary = `canary-${randomUUID()}`;
    const workspace = await workspaceWith({ 'app/db': `${canary}-db`, 'app/api': `${canary}-api` });
    const engine = await privateEngine();
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = launchAgent(env);
    // The agent's last lines (never a value: the test checks that too) say what it was doing.
    onTestFailed(() => console.log(agent.output.slice(-4000)));
    try {
      await agent.waitForLog('agent ready', 60_000);
      const restarted = await runOn(
        engine.host,
        [
          '--network',
          'none',
          '--tmpfs',
          '/run/secrets',
          '--label',
          'dso.enable=true',
          '--label',
          'dso.file.db=dsofile://app/db',
          '--label',
          'dso.rotate=restart',
        ],
        ['sleep', '600'],
      );
      const replaced = await runOn(
        engine.host,
        [
          '--network',
          'none',
          '--label',
          'dso.enable=true',
          '--label',
          'dso.env.API_KEY=dso://app/api',
          '--label',
          'dso.env-version.API_KEY=1',
          '-e',
          'API_KEY',
        ],
        ['sleep', '600'],
        { API_KEY: `${canary}-api` },
      );
      for (const { id } of [restarted, replaced]) {
        await waitFor('the agent to deliver', async () =>
          count(agent, 'secrets delivered', id) > 0 ? true : undefined,
        );
      }
      const startedAt = () =>
        dockerOn(engine.host, 'inspect', '--format', '{{.State.StartedAt}}', restarted.id);
      const firstStart = await startedAt();

      // The same values again: no new version.
      expect(await workspace.cli(['secret', 'set', 'app/db'], `${canary}-db`)).toMatchObject({
        code: 0,
        stdout: 'unchanged, still version 1\n',
      });
      expect(await workspace.cli(['secret', 'set', 'app/api'], `${canary}-api`)).toMatchObject({
        code: 0,
        stdout: 'unchanged, still version 1\n',
      });
      // dso rotate asks the store again, past the cache: the checks find nothing to do.
      const upToDate = (id: string) =>
        agent
          .lines()
          .filter(
            (line) =>
              line.msg === 'secrets up to date' &&
              line.containerId === id.slice(0, 12) &&
              line.trigger === 'api',
          ).length;
      expect(await workspace.cli(['rotate'])).toMatchObject({ code: 0 });
      for (const { id } of [restarted, replaced]) {
        await waitFor('the check after dso rotate', async () =>
          upToDate(id) > 0 ? true : undefined,
        );
      }
      expect(await startedAt()).toBe(firstStart);
      expect((await runContainerIds({ host: engine.host })).sort()).toEqual(
        [restarted.id, replaced.id].sort(),
      );
      expect(agent.lines().filter((line) => line.msg === 'secrets rotated')).toEqual([]);
      expect((await statusOf(workspace, restarted.id))?.files).toEqual([
        expect.objectContaining({ name: 'db', version: '1' }),
      ]);
      expect((await readAuditTrail(workspace.home)).filter((l) => l.action === 'rotate')).toEqual(
        [],
      );

      // A different value is a new version, and its action runs (the test can fail).
      expect(await workspace.cli(['secret', 'set', 'app/db'], `${canary}-db2`)).toMatchObject({
        code: 0,
        stdout: 'stored app/db (version 2)\n',
      });
      expect(await workspace.cli(['rotate'])).toMatchObject({ code: 0 });
      await waitFor('the restart of the container', async () =>
        (await startedAt()) !== firstStart ? true : undefined,
      );

      expect(await agent.stop()).toBe(0);
      expect(agent.output).not.toContain(canary);
    } finally {
      await agent[Symbol.asyncDispose]();
      await removeContainers(await runContainerIds({ host: engine.host }).catch(() => []), {
        host: engine.host,
      });
      leftovers.engines.delete(engine);
      await engine.destroy();
      await workspace[Symbol.asyncDispose]();
      leftovers.workspaces.delete(workspace);
    }
  }, 180_000);
});

describe('a secret removed from its store while in use', () => {
  it('is shown missing on its consumer (status, audit), never up to date, and the container keeps its file', async () => {
    const canary = `canary-${randomUUID()}`;
    const workspace = await workspaceWith({ 'app/db': canary });
    // The local vault probes: each secret in use is asked for its version every second.
    await writeFile(
      join(workspace.home, 'dso.yaml'),
      [
        'cache: { ttlMs: 10m }',
        'rotation: { jitterMs: 0, pollIntervalMs: 1s }',
        'volumes: { enabled: false }',
        'reconcile: { intervalMs: 1h }',
      ].join('\n'),
    );
    const engine = await privateEngine();
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = launchAgent(env);
    onTestFailed(() => console.log(agent.output.slice(-4000)));
    try {
      await agent.waitForLog('agent ready', 60_000);
      const { id } = await runOn(
        engine.host,
        [
          '--network',
          'none',
          '--tmpfs',
          '/run/secrets',
          '--label',
          'dso.enable=true',
          '--label',
          'dso.file.db=dsofile://app/db',
        ],
        ['sleep', '600'],
      );
      await waitFor('the agent to deliver', async () =>
        count(agent, 'secrets delivered', id) > 0 ? true : undefined,
      );
      expect(await workspace.cli(['secret', 'rm', 'app/db'])).toMatchObject({ code: 0 });
      const missing = await waitFor('dso status to show the secret missing', async () => {
        const container = await statusOf(workspace, id);
        return container?.lastAction.outcome === 'missing' ? container : undefined;
      });
      expect(missing.lastAction).toMatchObject({
        code: 'DSO_PROVIDER_NOT_FOUND',
        reference: 'dsofile://app/db',
      });
      expect(missing.lastAction.message).toContain('is no longer in provider local');
      expect((await workspace.cli(['status'])).stdout).toContain('missing');
      // dso reconcile asks the store, not the 10-minute cache: never "up to date" again.
      expect((await workspace.cli(['reconcile'])).code).toBe(0);
      const checked = await waitFor('the check after dso reconcile', async () => {
        const container = await statusOf(workspace, id);
        return container?.lastAction.trigger === 'api' ? container : undefined;
      });
      expect(checked.lastAction).toMatchObject({
        outcome: 'failed',
        code: 'DSO_PROVIDER_NOT_FOUND',
      });
      // The running container keeps the value it was given.
      expect(await dockerOn(engine.host, 'exec', id, 'cat', '/run/secrets/db')).toBe(canary);
      expect(await agent.stop()).toBe(0);
      const audit = await readAuditTrail(workspace.home);
      expect(audit).toContainEqual(
        expect.objectContaining({
          action: 'inject',
          reference: 'dsofile://app/db',
          outcome: 'error',
          code: 'DSO_PROVIDER_NOT_FOUND',
        }),
      );
      expect(agent.output).not.toContain(canary);
      expect(JSON.stringify(audit)).not.toContain(canary);
    } finally {
      await agent[Symbol.asyncDispose]();
      await removeContainers(await runContainerIds({ host: engine.host }).catch(() => []), {
        host: engine.host,
      });
      leftovers.engines.delete(engine);
      await engine.destroy();
      await workspace[Symbol.asyncDispose]();
      leftovers.workspaces.delete(workspace);
    }
  }, 180_000);
});
