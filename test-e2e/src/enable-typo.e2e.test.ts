/**
 * A misspelt `dso.enable` is not invisible: with the built CLI and agent on a private engine,
 * containers started with `dso.enabel=true`, `dso.enable=yes` or a `dso.file.*` label but no
 * `dso.enable` are each reported once, with what was meant: a row in `dso status` (and its
 * warning line), a `label-warning` event in `dso events`, a warn line with its code in the
 * agent's log and a `refused` audit line. A container with no DSO label is not listed, and none
 * of the DSO-labelled ones gets a file. The secret's canary value appears nowhere.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  CLI_BIN,
  createWorkspace,
  readAuditTrail,
  removeRunContainers,
  runContainer,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const leftovers = trackLeftovers();
afterAll(removeRunContainers);

type StatusRow = {
  id: string;
  name?: string;
  state?: string;
  files?: unknown[];
  lastAction: { outcome: string; code?: string };
  warnings?: Array<{ code: string; label: string; suggestion?: string; message: string }>;
};

describe('a misspelt dso.enable (built CLI and agent, private engine)', () => {
  it('reports each container whose DSO labels do not enable it, once, with what was meant', async () => {
    const canary = `canary-${randomUUID()}`;
    const workspace = await createWorkspace();
    leftovers.workspaces.add(workspace);
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/db'], canary)).code).toBe(0);
    await writeFile(join(workspace.home, 'dso.yaml'), 'volumes: { enabled: false }\n', {
      mode: 0o600,
    });
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    let follower: ReturnType<typeof spawn> | undefined;
    let followed = '';
    try {
      await agent.waitForLog('agent ready');
      follower = spawn(process.execPath, [CLI_BIN, 'events'], {
        env: workspace.env,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      follower.stdout?.setEncoding('utf8').on('data', (text: string) => {
        followed += text;
      });
      await waitFor('dso events following', async () =>
        followed.includes("following the agent's events") ? true : undefined,
      );
      const suffix = randomUUID().slice(0, 8);
      const file = ['--label', 'dso.file.db=dsofile://app/db', '--tmpfs', '/run/secrets'];
      const run = (name: string, labels: string[]) =>
        runContainer([...labels, ...file], ['sleep', '600'], {
          host: engine.host,
          name: `${name}-${suffix}`,
        });
      await using enabel = await run('enabel', ['--label', 'dso.enabel=true']);
      await using yes = await run('yes', ['--label', 'dso.enable=yes']);
      await using missing = await run('missing', []);
      await using plain = await runContainer([], ['sleep', '600'], { host: engine.host });
      const expected = [
        { container: enabel, label: 'dso.enabel', suggestion: 'dso.enable' },
        { container: yes, label: 'dso.enable', suggestion: 'dso.enable=true' },
        { container: missing, label: 'dso.enable', suggestion: 'dso.enable=true' },
      ];

      const rows = await waitFor('the three in dso status', async () => {
        const result = await workspace.cli(['status', '--json']);
        if (result.code !== 0) return undefined;
        const { containers } = JSON.parse(result.stdout) as { containers: StatusRow[] };
        const found = expected.map(({ container }) =>
          containers.find((row) => row.id === container.id),
        );
        return found.every((row) => row !== undefined) ? { containers, found } : undefined;
      });
      expected.forEach(({ container, label, suggestion }, index) => {
        expect(rows.found[index]).toMatchObject({
          name: container.name,
          state: 'running',
          lastAction: { outcome: 'failed', code: expect.stringMatching(/^DSO_LABEL_/) },
          warnings: [expect.objectContaining({ label, suggestion })],
        });
        expect(rows.found[index]?.files).toBeUndefined();
      });
      expect(rows.containers.some((row) => row.id === plain.id)).toBe(false);

      // What a person sees: the rows, and each warning's line with the label meant.
      const table = await workspace.cli(['status']);
      expect(table.stdout).toMatch(
        new RegExp(`^enabel-${suffix} +${enabel.id.slice(0, 12)} +running +- .*failed`, 'm'),
      );
      expect(table.stdout).toContain('did you mean dso.enable?');
      expect(table.stdout).toContain(
        `missing-${suffix} (${missing.id.slice(0, 12)}): warning: the container has DSO labels (dso.file.db) but not dso.enable=true`,
      );
      const one = await workspace.cli(['status', `yes-${suffix}`]);
      expect(one.stdout).toMatch(/did you mean dso\.enable=true\?/);

      // Events, the agent's warn log and the audit trail: once per container.
      for (const { container, label } of expected) {
        await waitFor(`the label-warning event of ${container.name}`, async () =>
          followed.includes(`label warning   ${container.name} (${container.id.slice(0, 12)}`)
            ? true
            : undefined,
        );
        const logged = agent
          .lines()
          .filter((line) => line.level === 40 && line.containerId === container.id.slice(0, 12));
        expect(logged).toEqual([
          expect.objectContaining({ code: expect.stringMatching(/^DSO_LABEL_/), label }),
        ]);
        const audited = (await readAuditTrail(workspace.home)).filter(
          (line) => line.containerId === container.id,
        );
        expect(audited).toEqual([
          expect.objectContaining({
            outcome: 'refused',
            containerName: container.name,
            code: expect.stringMatching(/^DSO_LABEL_/),
          }),
        ]);
      }
      // Listed again, told no second time.
      expect((await workspace.cli(['reconcile'])).code).toBe(0);
      expect(
        followed.split('\n').filter((line) => line.includes(`label warning   enabel-${suffix}`)),
      ).toHaveLength(1);

      // Nothing delivered to them.
      for (const { container } of expected) {
        await expect(container.readFile('/run/secrets/db')).rejects.toThrow();
      }
      for (const text of [agent.output, followed, table.stdout, one.stdout]) {
        expect(text).not.toContain(canary);
      }
    } finally {
      follower?.kill('SIGTERM');
      await agent[Symbol.asyncDispose]();
      leftovers.agents.delete(agent);
    }
  }, 180_000);
});
