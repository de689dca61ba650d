/**
 * Two built agents sharing one real Redis as their cache (`cache.backend: redis`): the second
 * agent's container gets the secret the first one fetched, without a provider call of its own,
 * and Redis holds no value and no path, only sealed entries under hashed names.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  agentEnv,
  createWorkspace,
  metricValue,
  privateEngineForFile,
  readMetrics,
  removeRunContainers,
  runCommand,
  runContainer,
  startAgent,
  waitFor,
} from './harness.js';

// The whole file on an engine of its own (DOCKER_HOST), so it runs beside other files.
privateEngineForFile();

const PREFIX = `dso-e2e-${randomUUID().slice(0, 8)}:`;

async function redis(...args: string[]): Promise<string> {
  const result = await runCommand('redis-cli', ['-h', '127.0.0.1', '--raw', ...args]);
  if (result.code !== 0) throw new Error(`redis-cli ${args[0]} failed: ${result.stderr}`);
  return result.stdout;
}

afterAll(async () => {
  await removeRunContainers();
  const keys = (await redis('--scan', '--pattern', `${PREFIX}*`)).split('\n').filter(Boolean);
  if (keys.length > 0) await redis('DEL', ...keys);
});

const RESOLVE_OK = { provider: 'local', operation: 'resolve', outcome: 'ok' };
const SECRET = [
  '--label',
  'dso.enable=true',
  '--label',
  'dso.file.db=dsofile://app/db',
  '--tmpfs',
  '/run/secrets',
];

describe('the cache on Redis, shared by two agents', () => {
  it('costs one provider call for both, and Redis sees neither the value nor its path', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect(await workspace.cli(['secret', 'set', 'app/db'], canary)).toMatchObject({ code: 0 });
    await writeFile(
      join(workspace.home, 'dso.yaml'),
      `cache: { backend: redis, redis: { keyPrefix: "${PREFIX}" } }\n`,
    );
    // Both agents hold the same key (every agent sharing a Redis needs it), never in argv.
    const cacheKey = randomBytes(32).toString('hex');
    const first = await agentEnv(workspace, { DSO_CACHE_KEY: cacheKey });
    const second = await agentEnv(workspace, {
      DSO_CACHE_KEY: cacheKey,
      DSO_API_SOCKET: join(workspace.home, 'second.sock'),
    });

    await using agentA = startAgent(first.env);
    await agentA.waitForLog('agent ready');
    await using containerA = await runContainer(SECRET);
    await waitFor('the file from the first agent', async () =>
      (await containerA.readFile('/run/secrets/db').catch(() => '')) === canary ? true : undefined,
    );
    const metricsA = await readMetrics(first.metricsAddress);
    expect(metricValue(metricsA, 'dso_provider_calls_total', RESOLVE_OK)).toBe(1);
    expect(await agentA.stop()).toBe(0);

    await using agentB = startAgent(second.env);
    await agentB.waitForLog('agent ready');
    await using containerB = await runContainer(SECRET);
    await waitFor('the file from the second agent', async () =>
      (await containerB.readFile('/run/secrets/db').catch(() => '')) === canary ? true : undefined,
    );
    const metrics = await readMetrics(second.metricsAddress);
    // Both containers (the first one is still running, listed at start): from Redis.
    expect(metricValue(metrics, 'dso_provider_calls_total', RESOLVE_OK) ?? 0).toBe(0);
    expect(metricValue(metrics, 'dso_cache_hits_total')).toBeGreaterThanOrEqual(2);
    expect(await agentB.stop()).toBe(0);

    const keys = (await redis('--scan', '--pattern', `${PREFIX}*`)).split('\n').filter(Boolean);
    expect(keys.length).toBeGreaterThan(0);
    let stored = keys.join('\n');
    for (const key of keys) {
      const type = (await redis('TYPE', key)).trim();
      if (type === 'string') stored += await redis('GET', key);
      else if (type === 'hash') stored += await redis('HGETALL', key);
      else if (type === 'set') stored += await redis('SMEMBERS', key);
    }
    for (const needle of [
      canary,
      Buffer.from(canary).toString('base64'),
      Buffer.from(canary).toString('hex'),
      'app/db',
    ]) {
      expect(stored).not.toContain(needle);
    }
    expect(agentA.output + agentB.output).not.toContain(canary);
  });
});
