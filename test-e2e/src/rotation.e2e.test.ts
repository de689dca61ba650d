/**
 * Rotation with the built agent and the real engine: a container created with a `dso://`
 * environment value is replaced blue-green when the secret changes, and kept as it is (rolled
 * back, still serving under its name) when the new container fails its health check. Also the
 * host path: a container that bind-mounts its folder from `hostPath.root` gets its files there,
 * without an exec, and the folder is emptied when it stops.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it, onTestFinished } from 'vitest';
import {
  agentEnv,
  createWorkspace,
  docker,
  metricValue,
  privateEngineForFile,
  RUN_ID,
  readAuditTrail,
  readMetrics,
  removeRunContainers,
  runContainer,
  startAgent,
  waitFor,
} from './harness.js';

// The whole file on an engine of its own (DOCKER_HOST), so it runs beside other files.
privateEngineForFile();

afterAll(removeRunContainers);

/** Environment variable values of a container, by name (from `docker inspect`). */
async function envOf(nameOrId: string): Promise<Record<string, string>> {
  const entries = JSON.parse(
    await docker('inspect', '--format', '{{json .Config.Env}}', nameOrId),
  ) as string[];
  return Object.fromEntries(
    entries.map((entry) => [
      entry.slice(0, entry.indexOf('=')),
      entry.slice(entry.indexOf('=') + 1),
    ]),
  );
}

/**
 * A DSO home whose vault holds `app/token` = `value`, with an agent configuration that asks
 * the provider at every check (each second) and rotates at once.
 */
async function tokenWorkspace(value: string, healthTimeout: string) {
  const workspace = await createWorkspace();
  expect((await workspace.cli(['init'])).code).toBe(0);
  expect(await workspace.cli(['secret', 'set', 'app/token'], value)).toMatchObject({ code: 0 });
  await writeFile(
    join(workspace.home, 'dso.yaml'),
    [
      'cache: { ttlMs: 0 }',
      'reconcile: { intervalMs: 1s }',
      `rotation: { jitterMs: 0, healthTimeoutMs: ${healthTimeout}, stopTimeoutMs: 1s }`,
    ].join('\n'),
  );
  return workspace;
}

/**
 * A container created as `dso up` creates one: `TOKEN`'s value in its environment (from the
 * docker CLI's own environment, never argv), its reference in a label, `dso.rotate=replace`,
 * and a health check that fails while the value starts with `unhealthyPrefix`, after `retries`.
 */
function tokenContainer(value: string, unhealthyPrefix: string, retries: number) {
  return runContainer(
    [
      '--label',
      'dso.enable=true',
      '--label',
      'dso.env.TOKEN=dso://app/token',
      '--label',
      'dso.rotate=replace',
      '-e',
      'TOKEN',
      '--health-cmd',
      `case "$TOKEN" in ${unhealthyPrefix}*) exit 1;; esac`,
      '--health-interval',
      '1s',
      '--health-retries',
      String(retries),
      '--health-timeout',
      '2s',
    ],
    ['sleep', '600'],
    { env: { TOKEN: value } },
  );
}

/** Waits for the agent's first delivery to a container (its `dso://` versions noted). */
function delivered(agent: ReturnType<typeof startAgent>, id: string) {
  return waitFor('the agent to see the container', async () =>
    agent
      .lines()
      .find((line) => line.msg === 'secrets delivered' && line.containerId === id.slice(0, 12)),
  );
}

describe('rotation of a dso:// environment value by replacement', () => {
  it('replaces the container when the secret changes, and rolls back when the new one is unhealthy', async () => {
    const canary = randomUUID();
    await using workspace = await tokenWorkspace(`good-1-${canary}`, '30s');
    const { env } = await agentEnv(workspace);
    await using agent = startAgent(env);
    await agent.waitForLog('agent ready');
    const { id: firstId, name } = await tokenContainer(`good-1-${canary}`, 'bad-', 1);
    await delivered(agent, firstId);

    // A new version: a new container with the new value takes the name; the old one is gone.
    expect(await workspace.cli(['secret', 'set', 'app/token'], `good-2-${canary}`)).toMatchObject({
      code: 0,
    });
    await agent.waitForLog('container replaced', 60_000);
    const secondId = await docker('inspect', '--format', '{{.Id}}', name);
    expect(secondId).not.toBe(firstId);
    expect((await envOf(name)).TOKEN).toBe(`good-2-${canary}`);
    expect(await docker('inspect', '--format', '{{.State.Running}}', name)).toBe('true');
    expect(await docker('ps', '-aq', '--filter', `id=${firstId}`)).toBe('');

    // A version the new container fails its health check with: rolled back, the serving
    // container keeps its name, its value and its run; no half-made container is left.
    expect(await workspace.cli(['secret', 'set', 'app/token'], `bad-${canary}`)).toMatchObject({
      code: 0,
    });
    const rolledBack = await agent.waitForLog(
      'replacement rolled back: the old container keeps serving',
      60_000,
    );
    expect(rolledBack).toMatchObject({ code: 'DSO_DOCKER_REPLACE_FAILED', stage: 'health' });
    expect(await docker('inspect', '--format', '{{.Id}}', name)).toBe(secondId);
    expect(await docker('inspect', '--format', '{{.State.Running}}', name)).toBe('true');
    expect((await envOf(name)).TOKEN).toBe(`good-2-${canary}`);
    expect(await docker('ps', '-aq', '--filter', `name=${name}-dso-next`)).toBe('');

    expect(await agent.stop()).toBe(0);
    const rotations = (await readAuditTrail(workspace.home)).filter(
      (line) => line.action === 'rotate',
    );
    expect(rotations.map((line) => [line.policy, line.outcome])).toEqual([
      ['replace', 'ok'],
      ['replace', 'error'],
    ]);
    // Values only where dso:// puts them (the container's environment): never in the agent's
    // output or the audit trail.
    expect(agent.output).not.toContain(canary);
    expect(JSON.stringify(rotations)).not.toContain(canary);
  });
});

describe('an agent killed in the middle of a replacement', () => {
  it('undoes the half-made replacement at its next start: the old container keeps its name', async () => {
    const canary = randomUUID();
    await using workspace = await tokenWorkspace(`good-${canary}`, '60s');
    const { env } = await agentEnv(workspace);
    const first = startAgent(env);
    try {
      await first.waitForLog('agent ready');
      // A `slow-` value keeps the new container `starting` (100 retries) far past the kill.
      const { id: oldId, name } = await tokenContainer(`good-${canary}`, 'slow-', 100);
      await delivered(first, oldId);
      expect(await workspace.cli(['secret', 'set', 'app/token'], `slow-${canary}`)).toMatchObject({
        code: 0,
      });
      const nextId = await waitFor(
        'the new container of the replacement',
        async () => (await docker('ps', '-aq', '--filter', `name=${name}-dso-next`)) || undefined,
        { timeoutMs: 30_000 },
      );
      await first[Symbol.asyncDispose](); // SIGKILL: no rollback of its own
      // Both exist now: the old one serving under its name, the new one half-made.
      expect(await docker('inspect', '--format', '{{.Name}}', oldId)).toBe(`/${name}`);

      await using second = startAgent(env);
      // Its own line: the file's engine may hold an earlier test's half-made replacement too,
      // which the agent rightly recovers as well (seen: that one logged first).
      const recovered = await waitFor(
        'its interrupted replacement recovered',
        async () =>
          second
            .lines()
            .find((line) => line.msg === 'interrupted replacement recovered' && line.name === name),
        { timeoutMs: 60_000 },
      );
      expect(recovered).toMatchObject({ name, action: 'undone' });
      await second.waitForLog('agent ready');
      expect(await docker('ps', '-aq', '--filter', `id=${nextId}`)).toBe('');
      expect(await docker('inspect', '--format', '{{.Id}} {{.State.Running}}', name)).toBe(
        `${oldId} true`,
      );
      expect((await envOf(name)).TOKEN).toBe(`good-${canary}`);
      expect(await second.stop()).toBe(0);
      expect(first.output + second.output).not.toContain(canary);
    } finally {
      await first[Symbol.asyncDispose]();
    }
  });
});

describe('the host path', () => {
  it('writes a container that bind-mounts its folder from hostPath.root there, without exec', async () => {
    const canary = `canary-${randomUUID()}`;
    {
      // Its agent's hostPath.root is the workspace's (DSO_HOST_PATH_ROOT, on /dev/shm).
      await using workspace = await createWorkspace();
      expect((await workspace.cli(['init'])).code).toBe(0);
      expect(await workspace.cli(['secret', 'set', 'app/db'], canary)).toMatchObject({ code: 0 });
      const { env, metricsAddress } = await agentEnv(workspace);
      await using agent = startAgent(env);
      await agent.waitForLog('agent ready');
      const folder = join(workspace.hostPathRoot, `web-${RUN_ID.slice(0, 8)}`);
      await mkdir(folder);
      await using container = await runContainer([
        '--user',
        `${process.getuid?.() ?? 0}:${process.getgid?.() ?? 0}`,
        '--label',
        'dso.enable=true',
        '--label',
        'dso.file.db=dsofile://app/db',
        '--mount',
        `type=bind,source=${folder},target=/run/secrets,readonly`,
      ]);
      const content = await waitFor('the file through the bind mount', async () => {
        const text = await container.readFile('/run/secrets/db').catch(() => '');
        return text.length > 0 ? text : undefined;
      });
      expect(content).toBe(canary);
      const metrics = await readMetrics(metricsAddress);
      expect(
        metricValue(metrics, 'dso_injection_writes_total', { method: 'host', outcome: 'ok' }),
      ).toBe(1);
      expect(
        metricValue(metrics, 'dso_injection_writes_total', { method: 'exec', outcome: 'ok' }),
      ).toBe(0);
      // Stopped: the folder stays (the bind mount needs it) but holds no secret.
      await docker('stop', '-t', '0', container.id);
      await waitFor('the folder to be emptied', async () =>
        existsSync(join(folder, '..data')) ? undefined : true,
      );
      expect(await agent.stop()).toBe(0);
      expect(agent.output).not.toContain(canary);
    }
  });
});

describe('change detection', () => {
  it("rewrites a file when the provider's version probe sees a new version, long before a reconciliation", async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect(await workspace.cli(['secret', 'set', 'app/db'], `${canary}-1`)).toMatchObject({
      code: 0,
    });
    // Reconciliation hourly and the cache for ten minutes: only the probe can notice in time.
    await writeFile(
      join(workspace.home, 'dso.yaml'),
      'reconcile: { intervalMs: 1h }\nrotation: { pollIntervalMs: 1s, jitterMs: 0 }\n',
    );
    const { env } = await agentEnv(workspace);
    await using agent = startAgent(env);
    await agent.waitForLog('agent ready');
    await using container = await runContainer([
      '--label',
      'dso.enable=true',
      '--label',
      'dso.file.db=dsofile://app/db',
      '--tmpfs',
      '/run/secrets',
    ]);
    const read = () => container.readFile('/run/secrets/db').catch(() => '');
    await waitFor('the first version', async () =>
      (await read()) === `${canary}-1` ? true : undefined,
    );
    expect(await workspace.cli(['secret', 'set', 'app/db'], `${canary}-2`)).toMatchObject({
      code: 0,
    });
    await waitFor('the second version', async () =>
      (await read()) === `${canary}-2` ? true : undefined,
    );
    expect(agent.lines().find((line) => line.msg === 'new secret version detected')).toMatchObject({
      reference: 'local:app/db',
      source: 'probe',
      containers: 1,
    });
    expect(await agent.stop()).toBe(0);
    expect(agent.output).not.toContain(canary);
  });
});

describe('rotation across agent restarts', () => {
  it('runs no hook after a restart with nothing changed, and runs it once for a version that changed while no agent ran', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect(await workspace.cli(['secret', 'set', 'app/db'], `${canary}-1`)).toMatchObject({
      code: 0,
    });
    await writeFile(join(workspace.home, 'dso.yaml'), 'rotation: { jitterMs: 0 }\n');
    const { env } = await agentEnv(workspace);
    await using container = await runContainer([
      '--label',
      'dso.enable=true',
      '--label',
      'dso.file.db=dsofile://app/db',
      '--label',
      'dso.rotate=hook',
      '--label',
      'dso.rotate.hook=["sh","-c","echo ran >> /tmp/hook-runs"]',
      '--tmpfs',
      '/run/secrets',
    ]);
    const hookRuns = async () =>
      (await container.exec('sh', '-c', 'cat /tmp/hook-runs 2>/dev/null || true'))
        .split('\n')
        .filter(Boolean).length;
    const started: Array<ReturnType<typeof startAgent>> = [];
    onTestFinished(async () => {
      for (const agent of started) await agent[Symbol.asyncDispose]();
    });
    const runAgent = async () => {
      const agent = startAgent(env);
      started.push(agent);
      await agent.waitForLog('agent ready');
      await waitFor('the agent to look at the container', async () =>
        agent
          .lines()
          .find(
            (line) =>
              (line.msg === 'secrets delivered' || line.msg === 'secrets up to date') &&
              line.containerId === container.id.slice(0, 12),
          ),
      );
      return agent;
    };

    const first = await runAgent();
    expect(await first.stop()).toBe(0);
    const second = await runAgent();
    expect(second.lines().some((line) => line.msg === 'secrets up to date')).toBe(true);
    expect(await second.stop()).toBe(0);
    expect(await hookRuns()).toBe(0);

    expect(await workspace.cli(['secret', 'set', 'app/db'], `${canary}-2`)).toMatchObject({
      code: 0,
    });
    const third = await runAgent();
    await waitFor('the hook to run', async () => ((await hookRuns()) === 1 ? true : undefined));
    expect(await container.readFile('/run/secrets/db')).toBe(`${canary}-2`);
    expect(await third.stop()).toBe(0);
    expect(await hookRuns()).toBe(1);
    for (const agent of [first, second, third]) expect(agent.output).not.toContain(canary);
  });
});
