/**
 * Swarm services delivered to by labels, with the built agent on a private engine in swarm mode
 * (one engine, one swarm, one agent for the whole file):
 *
 * - a service whose tasks carry `--container-label dso.enable=true --container-label
 *   dso.file.db=dsofile://app/db` and a tmpfs at /run/secrets gets its file in every task, also
 *   after `docker service scale` to 3;
 * - one new version of the secret, then `dso rotate`, rotates four services at once, each by its
 *   own policy: `files` (the new value in every task), `signal` (the task's SIGHUP trap runs),
 *   `restart` (each task stopped, one at a time, and replaced by Swarm: exactly its replicas
 *   run afterwards, none orphaned, each with the new value; the stopped tasks are `Shutdown` in
 *   Swarm's task list), `replace` (refused: a service owns its tasks; the operator sees why and
 *   what to use), and `restart` on a service whose restart condition is `on-failure` (refused
 *   before anything is stopped: Swarm would not replace it);
 * - the values never appear in the agent's output, the audit trail, `docker service inspect`
 *   or a task's labels.
 *
 * As in volume-cluster.e2e.test.ts (which covers the volume driver on a service), the engine
 * runs in a network namespace of its own: Docker 20.10's `swarm init` makes the `ingress` and
 * `docker_gwbridge` networks, which must never appear on the host.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type PrivateEngine,
  startPrivateEngine,
} from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  type AgentProcess,
  agentEnv,
  createWorkspace,
  dockerOn,
  dockerRaw,
  RUN_ID,
  readAuditTrail,
  startAgent,
  TEST_IMAGE,
  TEST_LABEL,
  trackLeftovers,
  type Workspace,
  waitFor,
} from './harness.js';

const SECRET_FILE = '/run/secrets/db';
const first = `canary-${randomUUID()}`;
const second = `canary-${randomUUID()}`;
const prefix = `dso-svc-${randomUUID().slice(0, 6)}`;
/** One service per policy; `restart-on-failure` restarts its tasks only on failure. */
const services = {
  files: `${prefix}-files`,
  signal: `${prefix}-signal`,
  restart: `${prefix}-restart`,
  replace: `${prefix}-replace`,
  refused: `${prefix}-refused`,
};

const leftovers = trackLeftovers();
let workspace: Workspace;
let engine: PrivateEngine;
let agent: AgentProcess;

const onEngine = (...args: string[]) => dockerOn(engine.host, ...args);

/** The running task containers of a service, by id. */
async function tasksOf(service: string, options: { all?: boolean } = {}): Promise<string[]> {
  const ids = await onEngine(
    'ps',
    ...(options.all ? ['-a'] : []),
    '-q',
    '--no-trunc',
    '--filter',
    `label=com.docker.swarm.service.name=${service}`,
  );
  return ids.split('\n').filter(Boolean).sort();
}

/** A file's exact content in a running task, read as the application would; '' when absent. */
const readIn = (id: string) =>
  dockerRaw('-H', engine.host, 'exec', id, 'cat', SECRET_FILE).catch(() => '');

/** Waits until the service runs `replicas` tasks and each holds `value`; returns their ids. */
function servedWith(service: string, replicas: number, value: string): Promise<string[]> {
  return waitFor(
    `${replicas} task(s) of ${service} holding the expected value`,
    async () => {
      const ids = await tasksOf(service);
      if (ids.length !== replicas) return undefined;
      const contents = await Promise.all(ids.map(readIn));
      return contents.every((content) => content === value) ? ids : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 250 },
  );
}

/**
 * `docker service create` for the labels path: the task's labels name the secret and the
 * policy, a tmpfs takes the files. The task traps SIGHUP (prints `reloaded`) and exits 0 on
 * SIGTERM, as a server that reloads and stops cleanly does.
 */
function createService(name: string, policy: string, replicas: number, extra: string[] = []) {
  return onEngine(
    'service',
    'create',
    '--detach',
    '--no-resolve-image',
    '--name',
    name,
    '--replicas',
    String(replicas),
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    '--container-label',
    `${TEST_LABEL}=${RUN_ID}`,
    '--container-label',
    'dso.enable=true',
    '--container-label',
    'dso.file.db=dsofile://app/db',
    '--container-label',
    `dso.rotate=${policy}`,
    '--mount',
    'type=tmpfs,dst=/run/secrets',
    '--stop-grace-period',
    '2s',
    // Swarm waits 5 s by default before it starts a stopped task's replacement.
    '--restart-delay',
    '1s',
    ...extra,
    TEST_IMAGE,
    'sh',
    '-c',
    'trap "echo reloaded" HUP; trap "exit 0" TERM; while :; do sleep 600 & wait $!; done',
  );
}

async function setSecret(value: string): Promise<void> {
  const stored = await workspace.cli(['secret', 'set', 'app/db'], value);
  if (stored.code !== 0) throw new Error(`dso secret set failed: ${stored.stderr}`);
}

/** The agent's log lines with this message. */
const logged = (message: string) => agent.lines().filter((line) => line.msg === message);

beforeAll(async () => {
  workspace = await createWorkspace();
  leftovers.workspaces.add(workspace);
  expect((await workspace.cli(['init'])).code).toBe(0);
  await setSecret(first);
  await writeFile(
    join(workspace.home, 'dso.yaml'),
    'rotation: { jitterMs: 0, pollIntervalMs: 600000, stopTimeoutMs: 2000 }\n',
  );
  engine = await startPrivateEngine({
    netns: true,
    env: { DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: '1' },
  });
  leftovers.engines.add(engine);
  await onEngine(
    'swarm',
    'init',
    '--advertise-addr',
    '127.0.0.1',
    '--listen-addr',
    '127.0.0.1:2377',
    '--data-path-addr',
    '127.0.0.1',
  );
  const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
  agent = startAgent(env);
  leftovers.agents.add(agent);
  await agent.waitForLog('agent ready');
  await Promise.all([
    createService(services.files, 'files', 1),
    createService(services.signal, 'signal', 1),
    createService(services.restart, 'restart', 3),
    createService(services.replace, 'replace', 1),
    createService(services.refused, 'restart', 1, ['--restart-condition', 'on-failure']),
  ]);
}, 120_000);

// Before the leftovers go (hooks run last-registered first): the services, so that Swarm
// starts no task while their containers are removed.
afterAll(async () => {
  if (engine === undefined) return;
  for (const service of Object.values(services)) {
    await onEngine('service', 'rm', service).catch(() => {
      // Never created (a failed setup), or the engine is gone: nothing to remove.
    });
  }
}, 60_000);

describe('a Swarm service delivered to by labels', () => {
  it('gives every task its file, also after docker service scale to 3', async () => {
    const [one, ...none] = await servedWith(services.files, 1, first);
    expect(none).toEqual([]);
    expect(
      await onEngine('inspect', '--format', '{{index .Config.Labels "dso.file.db"}}', one ?? ''),
    ).toBe('dsofile://app/db');
    await onEngine('service', 'scale', '--detach', `${services.files}=3`);
    const scaled = await servedWith(services.files, 3, first);
    expect(scaled).toContain(one);
    for (const service of [services.signal, services.replace, services.refused]) {
      await servedWith(service, 1, first);
    }
    await servedWith(services.restart, 3, first);
  }, 90_000);

  describe('after a new version and dso rotate', () => {
    let restartTasks: string[] = [];
    let rotatedAt = '';

    beforeAll(async () => {
      restartTasks = await tasksOf(services.restart);
      expect(restartTasks).toHaveLength(3);
      // The engine's own clock: the events of the rotation are read from it below.
      rotatedAt = await onEngine('info', '--format', '{{.SystemTime}}');
      await setSecret(second);
      const rotated = await workspace.cli(['rotate']);
      expect(rotated.code, rotated.stderr).toBe(0);
    }, 60_000);

    it('files: the new value in every task', async () => {
      await servedWith(services.files, 3, second);
    }, 60_000);

    it('signal: each task gets the new file, then its signal', async () => {
      const [id = ''] = await servedWith(services.signal, 1, second);
      await waitFor('the task’s SIGHUP trap', async () =>
        (await onEngine('logs', id)).includes('reloaded') ? true : undefined,
      );
    }, 60_000);

    it('restart: each task stopped one at a time and replaced by Swarm, none orphaned', async () => {
      const names = await Promise.all(
        restartTasks.map((id) => onEngine('inspect', '--format', '{{.Name}}', id)),
      );
      const stopped = await waitFor(
        'the agent to stop the three tasks',
        async () => {
          const lines = logged('swarm task stopped; Swarm replaces it').filter(
            (line) => line.service === services.restart,
          );
          return lines.length === 3 ? lines : undefined;
        },
        { timeoutMs: 60_000, intervalMs: 250 },
      );
      expect(stopped.map((line) => `/${String(line.task)}`).sort()).toEqual([...names].sort());
      for (const line of stopped) {
        expect(String(line.action)).toMatch(
          new RegExp(
            `^stopped task ${String(line.task).replaceAll('.', '\\.')} of service ${services.restart}; Swarm replaces it \\(task ${services.restart}\\.\\d\\.\\w+ runs\\)$`,
          ),
        );
      }
      // Exactly the service's replicas run, all new, each with the new value.
      const running = await servedWith(services.restart, 3, second);
      expect(running.filter((id) => restartTasks.includes(id))).toEqual([]);
      // The stopped ones are stopped (none restarted beside its replacement) ...
      for (const id of restartTasks) {
        expect(await onEngine('inspect', '--format', '{{.State.Status}}', id)).toBe('exited');
      }
      // ... and Swarm's task list shows them shut down, complete (a clean stop), not failed.
      const taskList = (
        await onEngine(
          'service',
          'ps',
          '--no-trunc',
          '--format',
          '{{.ID}} {{.DesiredState}} {{.CurrentState}}',
          services.restart,
        )
      ).split('\n');
      for (const name of names) {
        const taskId = name.split('.').at(-1) ?? '';
        const row = taskList.find((line) => line.startsWith(`${taskId} `)) ?? '';
        expect(row).toMatch(/ Shutdown Complete /);
      }
      // One at a time: between two of the old tasks' deaths, a replacement started.
      const events = (
        await onEngine(
          'events',
          '--since',
          rotatedAt,
          '--until',
          await onEngine('info', '--format', '{{.SystemTime}}'),
          '--filter',
          `label=com.docker.swarm.service.name=${services.restart}`,
          '--filter',
          'event=die',
          '--filter',
          'event=start',
          '--format',
          '{{.Action}} {{.Actor.ID}}',
        )
      )
        .split('\n')
        .filter(Boolean);
      const sequence = events.map((line) =>
        line.startsWith('die ') ? 'stop' : restartTasks.includes(line.slice(6)) ? 'old' : 'new',
      );
      expect(sequence).toEqual(['stop', 'new', 'stop', 'new', 'stop', 'new']);
      // What the operator sees of a stopped task: the status and the audit trail name it.
      const [firstStopped = ''] = restartTasks;
      const status = await workspace.cli(['status', firstStopped.slice(0, 12), '--json']);
      expect(status.code, status.stderr).toBe(0);
      const entry = JSON.parse(status.stdout) as {
        state?: string;
        lastAction: { message?: string };
      };
      expect(entry.state).toBe('exited');
      expect(entry.lastAction.message).toMatch(
        new RegExp(
          `^stopped task ${services.restart}\\.\\d\\.\\w+ of service ${services.restart}; Swarm replaces it`,
        ),
      );
      const audit = await readAuditTrail(workspace.home);
      const stops = audit.filter(
        (line) => line.action === 'rotate' && line.policy === 'restart' && line.outcome === 'ok',
      );
      expect(stops.map((line) => `/${String(line.containerName)}`).sort()).toEqual(
        [...names].sort(),
      );
    }, 90_000);

    it('replace: refused on a task; the task keeps serving the new file and status says what to use', async () => {
      const [id = ''] = await servedWith(services.replace, 1, second);
      const status = await waitFor('the refusal in the task’s status', async () => {
        const answer = await workspace.cli(['status', id.slice(0, 12), '--json']);
        const entry = JSON.parse(answer.stdout) as {
          lastAction: { outcome: string; code?: string; message?: string };
        };
        return entry.lastAction.outcome === 'failed' ? entry.lastAction : undefined;
      });
      expect(status.code).toBe('DSO_DOCKER_REPLACE_FAILED');
      expect(status.message).toContain('is a swarm task');
      expect(status.message).toContain('use dso.rotate=restart');
      expect(await tasksOf(services.replace, { all: true })).toEqual([id]);
    }, 60_000);

    it('restart on a service whose restart condition is on-failure: refused, nothing stopped', async () => {
      const [id = ''] = await servedWith(services.refused, 1, second);
      const refusal = await waitFor('the refusal in the audit trail', async () =>
        (await readAuditTrail(workspace.home)).find(
          (line) => line.code === 'DSO_AGENT_TASK_RESTART_REFUSED',
        ),
      );
      expect(refusal).toMatchObject({ outcome: 'refused', policy: 'restart' });
      expect(String(refusal.reason)).toContain(
        `docker service update --restart-condition any ${services.refused}`,
      );
      expect(await tasksOf(services.refused, { all: true })).toEqual([id]);
      const text = await workspace.cli(['status', id.slice(0, 12)]);
      expect(text.stdout).toContain('DSO_AGENT_TASK_RESTART_REFUSED');
      expect(text.stdout).toContain('(restart condition on-failure)');
    }, 60_000);
  });

  it('never shows a value in the agent’s output, the audit trail, service inspect or task labels', async () => {
    const inspected = await onEngine('service', 'inspect', ...Object.values(services));
    const containers = await onEngine('ps', '-aq', '--no-trunc');
    const labels = await onEngine(
      'inspect',
      '--format',
      '{{json .Config.Labels}}',
      ...containers.split('\n').filter(Boolean),
    );
    expect(labels).toContain('dsofile://app/db');
    const audit = JSON.stringify(await readAuditTrail(workspace.home));
    for (const value of [first, second]) {
      expect(agent.output).not.toContain(value);
      expect(inspected).not.toContain(value);
      expect(labels).not.toContain(value);
      expect(audit).not.toContain(value);
    }
    // The swarm's networks stayed in the engine's namespace.
    expect(await onEngine('network', 'ls', '--format', '{{.Name}}')).toContain('docker_gwbridge');
  });
});
