/**
 * Bulkheads, with the built agent on a private engine: a secret store that never answers costs
 * only the deliveries that wait on it. Four containers reference a provider whose calls never
 * settle (a third-party plugin, in its own process as any plugin runs) while a hundred
 * containers reference a healthy one: all hundred have their files while the four calls are
 * still in flight. Proven by state, not by a clock: the hung provider's deadline is an hour
 * and it records any call the agent gives up on, so a delivery queue whose four workers waited
 * on it (as before: none of the hundred had its file within 10 s, p50 23 s, the 30 s deadline
 * freeing the workers) would deliver none of the hundred while the four are pending. The
 * start-to-file figures are printed, not asserted.
 */
import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  containerFileDigests,
  createWorkspace,
  dockerOn,
  removeContainers,
  runContainerIds,
  runManyContainers,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const SECRET_FILE = '/run/secrets/db';
const HUNG_CONTAINERS = 4;
const HEALTHY_CONTAINERS = 100;
/**
 * How long the poller waits for the last healthy file after the last start: a deadline for a
 * failing run to end, not a speed bound (a run here takes seconds).
 */
const GIVE_UP_AFTER_MS = 90_000;
/**
 * `docker run`s at once. A burst of 20 at once on the 2-core test machine, loaded by other
 * tests, kept the engine so busy that even with no hung provider at all the containers waited
 * 15 s (p50) for their files: the engine's pace, not a bulkhead's. At 5 at once they wait about
 * 1 s with the hung provider (max 3 s), and about 23 s without the bulkhead.
 */
const START_LANES = 5;

/**
 * A provider package whose `resolve` never settles; each call appends `call <path>` to
 * `callsFile` first, so the test knows the hung calls are in flight, and `aborted <path>` when
 * the agent gives up on it (its deadline, a shutdown). No imports: the definition is branded
 * the way the SDK's `defineProvider` brands one, so it loads from a folder outside the repo.
 */
const HUNG_PROVIDER = `
import { appendFileSync } from 'node:fs';
const capabilities = Object.freeze({ list: false, watch: false, probe: false, health: false });
const configSchema = {
  safeParse: (config) =>
    typeof config?.callsFile === 'string'
      ? { success: true, data: config }
      : { success: false, error: { issues: [{ path: ['callsFile'], message: 'required' }] } },
};
const definition = {
  type: 'hung',
  sdkApiVersion: 1,
  description: 'a store that never answers',
  capabilities,
  configSchema,
  create: (config, { name }) => ({
    name,
    capabilities,
    resolve: ({ path }, options) => {
      appendFileSync(config.callsFile, 'call ' + path + '\\n');
      options?.signal?.addEventListener('abort', () =>
        appendFileSync(config.callsFile, 'aborted ' + path + '\\n'),
      );
      return new Promise(() => {});
    },
    async close() {},
  }),
};
Object.defineProperty(definition, Symbol.for('dso.provider-definition'), { value: true });
export default Object.freeze(definition);
`;

const leftovers = trackLeftovers();

/** The lines of the hung provider's calls file that start with `kind`, as paths. */
async function hungCalls(callsFile: string, kind: 'call' | 'aborted'): Promise<Set<string>> {
  const lines = (await readFile(callsFile, 'utf8')).split('\n');
  return new Set(
    lines.filter((line) => line.startsWith(`${kind} `)).map((line) => line.slice(kind.length + 1)),
  );
}

/** The nearest-rank percentile of `values` (ms). */
function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

describe('bulkheads of the built agent', () => {
  it('delivers to 100 containers on a healthy provider while 4 calls to a hung one are still in flight', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect(await workspace.cli(['secret', 'set', 'app/db'], canary)).toMatchObject({ code: 0 });
    const plugin = join(workspace.home, 'plugins', 'node_modules', 'dso-provider-hung');
    await mkdir(plugin, { recursive: true });
    await writeFile(
      join(plugin, 'package.json'),
      JSON.stringify({
        name: 'dso-provider-hung',
        version: '1.0.0',
        type: 'module',
        main: 'index.js',
      }),
    );
    await writeFile(join(plugin, 'index.js'), HUNG_PROVIDER);
    const callsFile = join(workspace.home, 'hung-calls');
    await writeFile(callsFile, '');
    // Defaults otherwise (queue.concurrency 4). The hung provider's deadline is the longest
    // allowed, so its calls stay in flight for the whole test: no timeout frees a worker.
    await writeFile(
      join(workspace.home, 'dso.yaml'),
      [
        `pluginsDir: ${join(workspace.home, 'plugins')}`,
        'volumes: { enabled: false }',
        'providers:',
        `  local: { type: local, config: { vaultPath: ${join(workspace.home, 'vault.dso')} } }`,
        `  hung: { type: dso-provider-hung, timeoutMs: 1h, config: { callsFile: ${callsFile} } }`,
        '',
      ].join('\n'),
      { mode: 0o600 },
    );

    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    try {
      const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
      const agent = startAgent(env);
      leftovers.agents.add(agent);
      await agent.waitForLog('agent ready').catch((error: unknown) => {
        // What the agent said instead (no value of the test's is in it before it is ready).
        console.log(agent.output.slice(-4_000));
        throw error;
      });

      // Four containers, each on its own path of the hung provider (no shared cache load).
      const hung = [];
      for (let index = 0; index < HUNG_CONTAINERS; index += 1) {
        const started = await runManyContainers(
          1,
          [
            '--label',
            'dso.enable=true',
            '--label',
            `dso.file.db=dsofile://hung:app/hung-${index}`,
            '--tmpfs',
            '/run/secrets',
          ],
          { host: engine.host },
        );
        expect(started.failures).toEqual([]);
        hung.push(...started.ids);
      }
      // Their calls are in flight before the healthy containers start.
      await waitFor(
        `${HUNG_CONTAINERS} calls to the hung provider`,
        async () => {
          const calls = await hungCalls(callsFile, 'call');
          return calls.size >= HUNG_CONTAINERS ? calls : undefined;
        },
        { timeoutMs: 20_000, intervalMs: 100 },
      );

      // When each container's file is first seen, polled from the host while they start: the
      // poller watches every container from the moment `docker run` returns its id.
      const want = createHash('sha256').update(canary).digest('hex');
      const started: string[] = [];
      const seenAt = new Map<string, number>();
      let starting = true;
      let lastStartAt = Date.now();
      const poller = (async () => {
        while (
          starting ||
          (seenAt.size < started.length && Date.now() - lastStartAt < GIVE_UP_AFTER_MS)
        ) {
          const pending = started.filter((id) => !seenAt.has(id));
          if (pending.length > 0) {
            const states = await containerFileDigests(pending, SECRET_FILE, { host: engine.host });
            const now = Date.now();
            for (const [id, state] of states) if (state === want) seenAt.set(id, now);
          }
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })();
      const healthy = await runManyContainers(
        HEALTHY_CONTAINERS,
        [
          '--label',
          'dso.enable=true',
          '--label',
          'dso.file.db=dsofile://app/db',
          '--tmpfs',
          '/run/secrets',
        ],
        {
          host: engine.host,
          concurrency: START_LANES,
          onStarted: (id) => {
            started.push(id);
            lastStartAt = Date.now();
          },
        },
      ).finally(() => {
        starting = false;
      });
      await poller;
      expect(healthy.failures).toEqual([]);
      // Each container's start as the engine recorded it.
      const startedAt = new Map(
        (
          await dockerOn(
            engine.host,
            'inspect',
            '--format',
            '{{.Id}} {{.State.StartedAt}}',
            ...healthy.ids,
          )
        )
          .split('\n')
          .map((line) => line.split(' '))
          .map(([id = '', at = '']) => [id, Date.parse(at)] as const),
      );
      const waits = healthy.ids.map((id) => (seenAt.get(id) ?? Number.NaN) - startedAt.get(id)!);
      const delivered = waits.filter((wait) => !Number.isNaN(wait));
      console.log(
        `bulkheads: ${delivered.length}/${HEALTHY_CONTAINERS} healthy containers had their file ` +
          `(${HUNG_CONTAINERS} on a hung provider); start to file: ` +
          `p50 ${percentile(delivered, 50)} ms, p95 ${percentile(delivered, 95)} ms, ` +
          `max ${Math.max(...delivered)} ms (the file seen by polling from the host, all ` +
          `containers in one pass after another)`,
      );
      const undelivered = healthy.ids.filter((id) => !seenAt.has(id)).map((id) => id.slice(0, 12));
      expect(undelivered).toEqual([]);

      // ...while the hung ones still wait on their provider: every call in flight, none given
      // up on, no file.
      expect((await hungCalls(callsFile, 'call')).size).toBe(HUNG_CONTAINERS);
      expect([...(await hungCalls(callsFile, 'aborted'))]).toEqual([]);
      const hungStates = await containerFileDigests(hung, SECRET_FILE, { host: engine.host });
      expect([...hungStates.values()]).toEqual(Array(HUNG_CONTAINERS).fill('no file'));

      expect(await agent.stop()).toBe(0);
      leftovers.agents.delete(agent);
      // The probe above could tell: stopping the agent ends the four calls, and each is recorded.
      expect(await hungCalls(callsFile, 'aborted')).toEqual(await hungCalls(callsFile, 'call'));
      expect(agent.output).not.toContain(canary);
    } finally {
      await removeContainers(await runContainerIds({ host: engine.host }).catch(() => []), {
        host: engine.host,
      });
      leftovers.engines.delete(engine);
      await engine.destroy();
    }
  }, 300_000);
});
