/**
 * The built agent and CLI against clients that hold connections, and the audit trail of its
 * refusals, on a private engine (an agent manages every `dso.enable` container of its engine:
 * this one must neither touch other tests' containers nor be touched by their agents).
 *
 * - `dso status` answers with 100 idle connections held on the API socket (each one the agent
 *   closes is opened again at once), and `/healthz` with 100 held on the metrics port: before,
 *   node's connection cap dropped every new connection, so both failed.
 * - A container refused for a label that is no reference, and one whose target is no tmpfs,
 *   each leave one `refused` line in the audit file with their id, name, code and reason.
 * - As root, the agent says it made itself non-dumpable.
 */
import { randomUUID } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type PrivateEngine,
  startPrivateEngine,
} from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  createWorkspace,
  metricValue,
  readAuditTrail,
  readMetrics,
  removeContainers,
  runManyContainers,
  startAgent,
  trackLeftovers,
  type Workspace,
  waitFor,
} from './harness.js';

const CANARY = `canary-connections-${randomUUID()}`;

const leftovers = trackLeftovers();

/** One agent on a private engine, for the whole file: started once, reused by each test. */
let shared:
  | Promise<{
      engine: PrivateEngine;
      workspace: Workspace;
      agent: ReturnType<typeof startAgent>;
      metricsAddress: string;
    }>
  | undefined;
function agentOnPrivateEngine() {
  shared ??= (async () => {
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/db'], CANARY)).code).toBe(0);
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    const { env, metricsAddress } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    await agent.waitForLog('agent ready');
    return { engine, workspace, agent, metricsAddress };
  })();
  return shared;
}

/**
 * Holds `count` connections that send nothing, to a unix socket (`path`) or a port; each one
 * the server closes is opened again at once, as a client hogging the server would. Returns the
 * release.
 */
function holdIdle(count: number, target: { path: string } | { host: string; port: number }) {
  const held = new Set<Socket>();
  let holding = true;
  const hold = () => {
    const socket = connect(target);
    held.add(socket);
    socket.on('error', () => undefined); // a cut connection is what the server does here
    socket.on('close', () => {
      held.delete(socket);
      if (holding) hold();
    });
  };
  for (let index = 0; index < count; index++) hold();
  return () => {
    holding = false;
    for (const socket of held) socket.destroy();
  };
}

describe('connections of the built agent', () => {
  it('dso status answers 21 times in 21 with 100 idle connections held on the API socket', async () => {
    const { workspace } = await agentOnPrivateEngine();
    const release = holdIdle(100, { path: join(workspace.home, 'agent.sock') });
    try {
      const results = [];
      for (let attempt = 0; attempt < 21; attempt++) {
        const result = await workspace.cli(['status']);
        results.push(result.code === 0 ? 'ok' : result.stderr.trim());
      }
      expect(results).toEqual(Array(21).fill('ok'));
    } finally {
      release();
    }
  });

  it('/healthz answers 20 times in 20 with 100 idle connections held on the metrics port', async () => {
    const { metricsAddress } = await agentOnPrivateEngine();
    const [host, port] = [
      metricsAddress.slice(0, metricsAddress.lastIndexOf(':')),
      Number(metricsAddress.slice(metricsAddress.lastIndexOf(':') + 1)),
    ];
    const release = holdIdle(100, { host, port });
    try {
      const statuses = [];
      for (let attempt = 0; attempt < 20; attempt++) {
        const response = await fetch(`http://${metricsAddress}/healthz`, {
          signal: AbortSignal.timeout(5_000),
        }).catch((error: unknown) => ({ status: String((error as Error).cause ?? error) }));
        statuses.push(response.status);
      }
      expect(statuses).toEqual(Array(20).fill(200));
    } finally {
      release();
    }
  });
});

describe('refusals of the built agent in its audit file', () => {
  it('writes one refused line, with id, name, code and reason, for a bad label and for a target that is no tmpfs', async () => {
    const { engine, workspace, agent } = await agentOnPrivateEngine();
    const badLabel = await runManyContainers(
      1,
      [
        '--label',
        'dso.enable=true',
        '--label',
        'dso.file.db=not-a-reference',
        '--tmpfs',
        '/run/secrets',
      ],
      { host: engine.host },
    );
    const noTmpfs = await runManyContainers(
      1,
      ['--label', 'dso.enable=true', '--label', 'dso.file.db=dsofile://app/db'],
      { host: engine.host },
    );
    const ids = [...badLabel.ids, ...noTmpfs.ids];
    expect([...badLabel.failures, ...noTmpfs.failures]).toEqual([]);
    try {
      const refusals = await waitFor('a refused audit line for each container', async () => {
        const lines = (await readAuditTrail(workspace.home)).filter(
          (line) => line.outcome === 'refused' && ids.includes(String(line.containerId)),
        );
        return lines.length >= 2 ? lines : undefined;
      });
      const byId = new Map(refusals.map((line) => [line.containerId, line]));
      expect(byId.get(badLabel.ids[0])).toMatchObject({
        action: 'inject',
        containerName: expect.stringMatching(/^dso-test-/),
        code: 'DSO_LABEL_INVALID',
        reason: expect.stringContaining('dso.file.db'),
      });
      expect(byId.get(noTmpfs.ids[0])).toMatchObject({
        action: 'inject',
        containerName: expect.stringMatching(/^dso-test-/),
        code: 'DSO_DOCKER_TARGET_NOT_TMPFS',
        reason: expect.stringContaining('/run/secrets'),
      });
      // A reconciliation tries them again (and fails them again): still one line each.
      expect((await workspace.cli(['reconcile'])).code).toBe(0);
      await waitFor('both refused again by the reconciliation', async () => {
        const again = agent
          .lines()
          .filter((line) => line.msg === 'secrets not delivered' && line.trigger === 'api')
          .map((line) => line.containerId);
        return ids.every((id) => again.includes(id.slice(0, 12))) ? true : undefined;
      });
      const again = (await readAuditTrail(workspace.home)).filter(
        (line) => line.outcome === 'refused' && ids.includes(String(line.containerId)),
      );
      expect(again).toHaveLength(2);
      expect(JSON.stringify(await readAuditTrail(workspace.home))).not.toContain(CANARY);
      expect(agent.output).not.toContain(CANARY);
    } finally {
      await removeContainers(ids, { host: engine.host });
    }
  });

  it.runIf(process.geteuid?.() === 0)(
    'says at start, as root, that core dumps of the agent are off (log and metric)',
    async () => {
      const { agent, metricsAddress } = await agentOnPrivateEngine();
      expect(await agent.waitForLog('core dumps of the agent are off')).toMatchObject({
        nonDumpable: true,
      });
      expect(metricValue(await readMetrics(metricsAddress), 'dso_agent_dumpable_items')).toBe(0);
    },
  );
});
