/**
 * The operator's checks end to end, with the built CLI and agent on a private engine: a label
 * typo on a running container is reported with a suggestion (status warning, event, audit line),
 * `dso validate` of a compose file names a typo label and a near-miss reference with what was
 * meant, the README's owner/mode example holds (a worker of uid 33 reads a `dso.owner=0:33`,
 * `dso.mode=0440` file and not a default one), and `dso doctor` passes on a healthy setup and
 * fails, with the fix, once the agent stops.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  CLI_BIN,
  createWorkspace,
  readAuditTrail,
  removeRunContainers,
  runCommand,
  runContainer,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const leftovers = trackLeftovers();
afterAll(removeRunContainers);

/** GET on the agent's socket; the body parsed. */
function getJson(socketPath: string, path: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, path, method: 'GET' }, (response) => {
      let body = '';
      response.setEncoding('utf8').on('data', (text: string) => {
        body += text;
      });
      response.on('end', () => {
        try {
          resolve(JSON.parse(body) as Record<string, unknown>);
        } catch (error) {
          reject(error);
        }
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** Follows `GET /v1/events`, collecting its lines until closed. */
function followEvents(socketPath: string) {
  const events: Array<Record<string, unknown>> = [];
  const req = request({ socketPath, path: '/v1/events', method: 'GET' }, (response) => {
    let buffered = '';
    response.setEncoding('utf8').on('data', (text: string) => {
      buffered += text;
      for (let index = buffered.indexOf('\n'); index !== -1; index = buffered.indexOf('\n')) {
        events.push(JSON.parse(buffered.slice(0, index)) as Record<string, unknown>);
        buffered = buffered.slice(index + 1);
      }
    });
  });
  req.on('error', () => {
    // The agent stopping ends the stream: what was collected stays.
  });
  req.end();
  return { events, close: () => req.destroy() };
}

describe('dso validate, dso doctor and label warnings', () => {
  it('reports a typo label with a suggestion, validates a compose file, and doctors a healthy and a stopped agent', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/db'], canary)).code).toBe(0);
    // No volume driver: this agent shares no plugin socket with the other tests' agents.
    await writeFile(join(workspace.home, 'dso.yaml'), 'volumes: { enabled: false }\n');
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const cli = (args: string[]) =>
      runCommand(process.execPath, [CLI_BIN, ...args], { env: { ...env } });
    const socketPath = env.DSO_API_SOCKET!;
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    try {
      await agent.waitForLog('agent ready');
      const stream = followEvents(socketPath);
      await waitFor('the events stream', async () =>
        stream.events.some((event) => event.type === 'subscribed') ? true : undefined,
      );

      // 1. A typo label on a running container.
      await using typo = await runContainer(
        [
          '--label',
          'dso.enable=true',
          '--label',
          'dso.flie.db=dsofile://app/db',
          '--tmpfs',
          '/run/secrets',
        ],
        ['sleep', '600'],
        { host: engine.host },
      );
      const row = await waitFor('the typo container in status', async () => {
        const status = (await getJson(socketPath, '/v1/status')) as {
          containers: Array<{ id: string; warnings?: Array<Record<string, unknown>> }>;
        };
        return status.containers.find((entry) => entry.id === typo.id && entry.warnings);
      });
      expect(row.warnings).toEqual([
        expect.objectContaining({
          code: 'DSO_LABEL_UNKNOWN',
          label: 'dso.flie.db',
          suggestion: 'dso.file.db',
          message: expect.stringContaining('did you mean dso.file.db?'),
        }),
      ]);
      const event = await waitFor('the label-warning event', async () =>
        stream.events.find((line) => line.type === 'label-warning' && line.containerId === typo.id),
      );
      expect(event).toMatchObject({ label: 'dso.flie.db', suggestion: 'dso.file.db' });
      const audited = await waitFor('the audit line', async () =>
        (await readAuditTrail(workspace.home)).find(
          (line) => line.code === 'DSO_LABEL_UNKNOWN' && line.containerId === typo.id,
        ),
      );
      expect(audited).toMatchObject({
        outcome: 'refused',
        reason: expect.stringContaining('did you mean dso.file.db?'),
      });
      stream.close();

      // The README's worked example: a server whose workers run as another user (nginx's
      // www-data, uid and gid 33) reads its file with dso.owner=0:33 and dso.mode=0440, and
      // cannot with the default (0400, the container's user: root).
      const tmpfs = ['--label', 'dso.enable=true', '--label', 'dso.file.db=dsofile://app/db'];
      await using shared = await runContainer(
        [
          ...tmpfs,
          '--label',
          'dso.owner=0:33',
          '--label',
          'dso.mode=0440',
          '--tmpfs',
          '/run/secrets',
        ],
        ['sleep', '600'],
        { host: engine.host },
      );
      await using plain = await runContainer(
        [...tmpfs, '--tmpfs', '/run/secrets'],
        ['sleep', '600'],
        {
          host: engine.host,
        },
      );
      const asWorker = (id: string) =>
        runCommand('docker', [
          '-H',
          engine.host,
          'exec',
          '--user',
          '33:33',
          id,
          'cat',
          '/run/secrets/db',
        ]);
      await waitFor('the files of both', async () =>
        (await shared.readFile('/run/secrets/db').catch(() => '')) === canary &&
        (await plain.readFile('/run/secrets/db').catch(() => '')) === canary
          ? true
          : undefined,
      );
      expect((await asWorker(shared.id)).stdout).toBe(canary);
      const refused = await asWorker(plain.id);
      expect(refused.code).not.toBe(0);
      expect(refused.stdout).not.toContain(canary);
      expect(refused.stderr).toMatch(/Permission denied/i);

      // 2. dso validate of a compose file with a typo label and a near-miss reference.
      const compose = join(workspace.home, 'compose.yaml');
      await writeFile(
        compose,
        [
          'services:',
          '  web:',
          '    image: busybox',
          '    labels:',
          '      dso.ower: "0:33"',
          '    environment:',
          '      DB_FILE: "dsofile:/app/db"',
          '      TOKEN_FILE: dsofile://app/missing',
          `      PLAIN: ${canary}-not-a-secret-here`,
          '    tmpfs: [/run/secrets]',
        ].join('\n'),
      );
      const validated = await cli(['validate', compose]);
      expect(validated.code).not.toBe(0);
      expect(validated.stdout).toContain('did you mean dso.owner?');
      expect(validated.stdout).toContain('did you mean dsofile://app/db?');
      // The agent looked the references up: the missing one is named.
      expect(validated.stdout).toMatch(/dsofile:\/\/app\/missing[^\n]*DSO_PROVIDER_NOT_FOUND/);
      expect(validated.stdout + validated.stderr).not.toContain(canary);
      const json = await cli(['validate', '--json', compose]);
      expect(JSON.parse(json.stdout)).toMatchObject({ ok: false });

      // 3. dso doctor: healthy, then with the agent stopped.
      const healthy = await cli(['doctor', '--json']);
      const report = JSON.parse(healthy.stdout) as {
        ok: boolean;
        checks: Array<{ name: string; outcome: string }>;
      };
      expect(report.checks.filter((check) => check.outcome === 'error')).toEqual([]);
      expect(report).toMatchObject({ ok: true });
      expect(healthy.code).toBe(0);
      expect(
        Object.fromEntries(report.checks.map((check) => [check.name, check.outcome])),
      ).toMatchObject({ engine: 'ok', agent: 'ok', socket: 'ok', clock: 'ok', versions: 'ok' });

      await agent.stop();
      const stopped = await cli(['doctor']);
      // The first failed check is the agent's: exit 6, the class of an agent that is not running.
      expect(stopped.code).toBe(6);
      expect(stopped.stdout).toMatch(/FAIL agent: no answer on/);
      expect(stopped.stdout).toMatch(/fix: start it/);
      expect(stopped.stdout).toMatch(/ok {3}engine: Docker/);
    } finally {
      await agent[Symbol.asyncDispose]();
      leftovers.agents.delete(agent);
    }
  });
});
