/**
 * The built agent under load and under failure: a hundred containers that share one secret, the
 * agent SIGKILLed in the middle of a burst, the engine restarted in the middle of one, and a
 * provider process killed. Each test waits for what must end up true (every container holding
 * its file), never for a time, and names the containers that lack their files when it fails.
 * Files are checked from the host through `/proc/<pid>/root` (see `containerFileDigests`), and a
 * sample through `docker exec`, as an application would read them.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  type PrivateEngine,
  startPrivateEngine,
} from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  createWorkspace,
  dockerOn,
  dockerRaw,
  metricValue,
  providerProcesses,
  readAuditTrail,
  readMetrics,
  removeContainers,
  runContainer,
  runContainerIds,
  runManyContainers,
  startAgent,
  waitFor,
  waitForContainerFiles,
} from './harness.js';

/**
 * What a test left behind when it did not reach its own cleanup (a timeout stops awaiting the
 * test, not its work): agents first, so none keeps working on what is removed next.
 */
const leftovers = {
  agents: new Set<ReturnType<typeof startAgent>>(),
  engines: new Set<PrivateEngine>(),
  workspaces: new Set<Workspace>(),
};
afterAll(async () => {
  for (const agent of leftovers.agents) await agent[Symbol.asyncDispose]();
  for (const engine of leftovers.engines) {
    const ids = await runContainerIds({ host: engine.host }).catch(() => []);
    await removeContainers(ids, { host: engine.host });
    await engine.destroy();
  }
  for (const workspace of leftovers.workspaces) await workspace[Symbol.asyncDispose]();
});

/**
 * The engine of the tests that do not restart theirs: one private engine for the file, started
 * at its first use, so the file shares no engine with files running beside it. Each test
 * removes its containers before the next one's agent starts.
 */
let fileEngine: PrivateEngine | undefined;
async function engineHost(): Promise<string> {
  if (fileEngine === undefined) {
    fileEngine = await startPrivateEngine();
    leftovers.engines.add(fileEngine);
  }
  return fileEngine.host;
}

/** The built agent (see `startAgent`), also stopped after all tests should a test not get to it. */
function launchAgent(env: NodeJS.ProcessEnv) {
  const agent = startAgent(env);
  leftovers.agents.add(agent);
  return agent;
}

const SECRET_FILE = '/run/secrets/db';
const SHARED_SECRET = [
  '--label',
  'dso.enable=true',
  '--label',
  'dso.file.db=dsofile://app/db',
  '--tmpfs',
  '/run/secrets',
];
const RESOLVE_OK = { provider: 'local', operation: 'resolve', outcome: 'ok' };

type Workspace = Awaited<ReturnType<typeof createWorkspace>>;

/** A vault in a fresh DSO home holding `secrets` (path → value). */
async function workspaceWith(secrets: Record<string, string>): Promise<Workspace> {
  const workspace = await createWorkspace();
  leftovers.workspaces.add(workspace);
  try {
    expect((await workspace.cli(['init'])).code).toBe(0);
    for (const [path, value] of Object.entries(secrets)) {
      expect(await workspace.cli(['secret', 'set', path], value)).toMatchObject({ code: 0 });
    }
    return workspace;
  } catch (error) {
    // Not yet handed to the caller's `await using`: remove the folder here.
    await workspace[Symbol.asyncDispose]();
    throw error;
  }
}

/**
 * The local provider in a process of its own (`mode: process`; a built-in runs in the agent's
 * process by default): the tests that kill or count provider processes need one.
 */
async function withProviderProcess(workspace: Workspace): Promise<void> {
  await writeFile(
    join(workspace.home, 'dso.yaml'),
    'providers:\n  local:\n    type: local\n    mode: process\n',
    { mode: 0o600 },
  );
}

/** The pid the agent logs in its own lines (pino's `pid`), from its `agent ready` line. */
async function agentPid(agent: ReturnType<typeof startAgent>): Promise<number> {
  const ready = await agent.waitForLog('agent ready');
  return Number(ready.pid);
}

/** A promise with its resolver, for "when the 30th container has started". */
function milestone() {
  let reach: () => void = () => undefined;
  const reached = new Promise<void>((resolve) => {
    reach = resolve;
  });
  return { reached, reach };
}

/** Waits until none of `pids` is a live provider process of `home`; names the ones that linger. */
async function waitForProviderExit(home: string, pids: number[], timeoutMs = 15_000) {
  await vi.waitFor(
    async () => {
      const alive = (await providerProcesses(home)).filter(
        (candidate) => pids.includes(candidate.pid) && candidate.state !== 'Z',
      );
      if (alive.length === 0) return;
      throw new Error(
        `provider processes still running ${timeoutMs} ms after their agent died:\n  ` +
          alive
            .map((p) => `pid ${p.pid} (parent ${p.ppid}, ${p.state}): ${p.command}`)
            .join('\n  '),
      );
    },
    { timeout: timeoutMs, interval: 200 },
  );
}

/** The sample that is also read through the engine, as the application would read it. */
async function expectReadableThroughExec(ids: string[], expected: string, host?: string) {
  const sample = ids.filter((_, index) => index % 10 === 0);
  const contents = await Promise.all(
    sample.map((id) =>
      host === undefined
        ? dockerRaw('exec', id, 'cat', SECRET_FILE)
        : dockerRaw('-H', host, 'exec', id, 'cat', SECRET_FILE),
    ),
  );
  expect(contents.filter((content) => content !== expected)).toEqual([]);
}

describe('resilience of the built agent', () => {
  it('delivers one shared secret to 100 containers started at once with one provider call', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await workspaceWith({ 'app/db': canary });
    const host = await engineHost();
    const { env, metricsAddress } = await agentEnv(workspace, { DOCKER_HOST: host });
    await using agent = launchAgent(env);
    await agent.waitForLog('agent ready');

    const { ids, failures } = await runManyContainers(100, SHARED_SECRET, { host });
    try {
      expect(failures).toEqual([]);
      expect(ids).toHaveLength(100);
      await waitForContainerFiles(ids, SECRET_FILE, canary, { host, timeoutMs: 90_000 });
      await expectReadableThroughExec(ids, canary, host);

      // The cache's single flight: however many deliveries asked at once, one call went out.
      const metrics = await readMetrics(metricsAddress);
      expect(metricValue(metrics, 'dso_provider_calls_total', RESOLVE_OK)).toBe(1);

      // One audit line per container, and only the first one missed the cache.
      const injected = await waitFor(
        '100 inject lines in the audit trail',
        async () => {
          const lines = (await readAuditTrail(workspace.home)).filter(
            (line) => line.action === 'inject',
          );
          return lines.length >= 100 ? lines : undefined;
        },
        { timeoutMs: 30_000, intervalMs: 200 },
      );
      expect(injected).toHaveLength(100);
      expect(injected.filter((line) => line.outcome !== 'ok')).toEqual([]);
      expect(new Set(injected.map((line) => line.containerId))).toEqual(new Set(ids));
      expect(injected.filter((line) => line.cacheHit === true)).toHaveLength(99);

      expect(await agent.stop()).toBe(0);
      expect(agent.output).not.toContain(canary);
    } finally {
      await removeContainers(ids, { host });
    }
  }, 180_000);

  it('gives all 100 containers their files when the agent is SIGKILLed mid-burst and restarted', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await workspaceWith({ 'app/db': canary });
    // Its provider in a process of its own, which must not outlive the killed agent.
    await withProviderProcess(workspace);
    const host = await engineHost();
    const { env } = await agentEnv(workspace, { DOCKER_HOST: host });
    await using killed = launchAgent(env);
    const killedPid = await agentPid(killed);
    const children = (await providerProcesses(workspace.home)).filter(
      (candidate) => candidate.ppid === killedPid,
    );
    expect(children).toHaveLength(1);

    // Killed once 30 have started; restarted once 70 have: 40 start while no agent runs (the
    // restarted agent's startup listing finds them), the last 30 after (its events do).
    const kill = milestone();
    const restart = milestone();
    const burst = runManyContainers(100, SHARED_SECRET, {
      host,
      onStarted: (_, started) => {
        if (started === 30) kill.reach();
        if (started === 70) restart.reach();
      },
    });
    // Should the burst end short of a milestone, waiting for it must not hang the test.
    const reachAll = () => {
      kill.reach();
      restart.reach();
    };
    burst.then(reachAll, reachAll);
    let ids: string[] = [];
    try {
      await kill.reached;
      await killed[Symbol.asyncDispose](); // SIGKILL, and wait for it to exit
      expect(killed.output).not.toContain(canary);
      // Its provider process sees its stdin close and exits on its own.
      await waitForProviderExit(
        workspace.home,
        children.map((child) => child.pid),
      );

      await restart.reached;
      await using restarted = launchAgent(env);
      // Its startup listing finds at least the 70 already running (others' tests may add more).
      const listed = await waitFor('the restarted agent to list running containers', async () =>
        restarted.lines().find((line) => line.msg === 'managed containers found'),
      );
      expect(listed.trigger).toBe('startup');
      expect(listed.containers).toBeGreaterThanOrEqual(70);
      const started = await burst;
      ids = started.ids;
      expect(started.failures).toEqual([]);
      expect(ids).toHaveLength(100);
      await waitForContainerFiles(ids, SECRET_FILE, canary, { host, timeoutMs: 90_000 });
      await expectReadableThroughExec(ids, canary, host);

      expect(await restarted.stop()).toBe(0);
      expect(restarted.output).not.toContain(canary);
    } finally {
      ids = ids.length > 0 ? ids : (await burst).ids;
      await removeContainers(ids, { host });
    }
  }, 180_000);

  it('gives every running container its files again after the engine restarts mid-burst', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await workspaceWith({ 'app/db': canary });
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    try {
      const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
      await using agent = launchAgent(env);
      await agent.waitForLog('agent ready');
      // `always`: the engine starts them again when it comes back, each with a new, empty
      // tmpfs. A short stop timeout: `sleep` as pid 1 ignores the engine's SIGTERM.
      const restarting = [...SHARED_SECRET, '--restart', 'always', '--stop-timeout', '1'];

      const before = await runManyContainers(40, restarting, { host: engine.host });
      expect(before.failures).toEqual([]);
      await waitForContainerFiles(before.ids, SECRET_FILE, canary, {
        host: engine.host,
        timeoutMs: 60_000,
      });

      // More are being created while the engine stops and starts again; some of those fail.
      const midway = milestone();
      const during = runManyContainers(20, restarting, {
        host: engine.host,
        concurrency: 5,
        onStarted: (_, started) => {
          if (started === 5) midway.reach();
        },
      });
      during.then(midway.reach, midway.reach);
      await midway.reached;
      const stoppedAt = Date.now();
      await engine.stop();
      await engine.start();
      const duringResult = await during;

      const after = await runManyContainers(20, restarting, { host: engine.host });
      expect(after.failures).toEqual([]);

      // Every container that was started comes back (restart policy), and gets its file again.
      const expected = [...before.ids, ...duringResult.ids, ...after.ids];
      await waitFor(
        `all ${expected.length} started containers running after the engine restart`,
        async () => {
          const running = new Set(await runContainerIds({ host: engine.host, running: true }));
          return expected.every((id) => running.has(id)) ? true : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 200 },
      );
      const running = await runContainerIds({ host: engine.host, running: true });
      await waitForContainerFiles(running, SECRET_FILE, canary, {
        host: engine.host,
        timeoutMs: 120_000,
      });
      await expectReadableThroughExec(running, canary, engine.host);

      // The first 40 were really stopped and started again (a new run, a new tmpfs), so their
      // files were delivered a second time, not left over.
      const startedAt = (
        await dockerOn(engine.host, 'inspect', '--format', '{{.State.StartedAt}}', ...before.ids)
      ).split('\n');
      expect(startedAt.filter((at) => Date.parse(at) < stoppedAt)).toEqual([]);
      expect(agent.lines().some((line) => line.msg === 'events stream lost, reconnecting')).toBe(
        true,
      );

      expect(await agent.stop()).toBe(0);
      expect(agent.output).not.toContain(canary);
    } finally {
      await removeContainers(await runContainerIds({ host: engine.host }).catch(() => []), {
        host: engine.host,
      });
      leftovers.engines.delete(engine);
      await engine.destroy();
    }
  }, 180_000);

  it('restarts a SIGKILLed provider process and delivers a secret not resolved before', async () => {
    const first = `canary-${randomUUID()}`;
    const second = `canary-${randomUUID()}`;
    await using workspace = await workspaceWith({ 'app/db': first, 'app/api': second });
    await withProviderProcess(workspace);
    const host = await engineHost();
    const { env, metricsAddress } = await agentEnv(workspace, { DOCKER_HOST: host });
    await using agent = launchAgent(env);
    const pid = await agentPid(agent);

    await using before = await runContainer(SHARED_SECRET, undefined, { host });
    await waitForContainerFiles([before.id], SECRET_FILE, first, { host });
    const [child, ...others] = (await providerProcesses(workspace.home)).filter(
      (candidate) => candidate.ppid === pid,
    );
    expect(child).toBeDefined();
    expect(others).toEqual([]);

    process.kill(child!.pid, 'SIGKILL');
    await waitForProviderExit(workspace.home, [child!.pid]);
    // The host notices and starts a new process. The container starts once it has: one that
    // starts during the restart is retried for only ~1.5 s (the queue's default retry), which
    // a restart does not always fit in, and then waits for the next reconciliation.
    await agent.waitForLog('provider process ready');
    // A secret no one asked for yet: nothing in the cache, only the new process can answer.
    await using after = await runContainer(
      [
        '--label',
        'dso.enable=true',
        '--label',
        'dso.file.api=dsofile://app/api',
        '--tmpfs',
        '/run/secrets',
      ],
      undefined,
      { host },
    );
    await waitForContainerFiles([after.id], '/run/secrets/api', second, {
      host,
      timeoutMs: 60_000,
    });
    expect(await after.readFile('/run/secrets/api')).toBe(second);

    const respawned = (await providerProcesses(workspace.home)).filter(
      (candidate) => candidate.ppid === pid && candidate.state !== 'Z',
    );
    expect(respawned).toHaveLength(1);
    expect(respawned[0]?.pid).not.toBe(child!.pid);
    expect(agent.lines().some((line) => line.msg === 'provider process ended')).toBe(true);
    const metrics = await readMetrics(metricsAddress);
    expect(metricValue(metrics, 'dso_provider_calls_total', RESOLVE_OK)).toBe(2);

    expect(await agent.stop()).toBe(0);
    expect(agent.output).not.toContain(first);
    expect(agent.output).not.toContain(second);
  }, 120_000);
});
