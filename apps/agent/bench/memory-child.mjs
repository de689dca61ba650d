// For memory.bench.mjs: one fresh process that measures what the agent, used as a library from
// the BUILT package, holds for `count` managed containers. Run as
// `node --expose-gc memory-child.mjs <count> <mix>`; prints one JSON line on stdout.
//
// Everything that is not the agent is built first and measured as the baseline: the modules
// loaded, a synthetic engine holding `count` running containers (a plain object per container,
// implementing the DockerRuntime interface of @dso/docker-runtime; the real engine cannot hold
// thousands of containers on this machine), an in-process provider (createProvider over a
// defineProvider definition) holding every secret's value, the redactor and a logger that
// discards its lines. Then createAgent + start(); once every container has had its files
// written and the queue is idle (and BENCH_MEMORY_SETTLE_MS of idling, when set), three full
// collections (global.gc) and the same figures again.
// The peak (VmHWM) is reset right after the baseline (`5` to /proc/self/clear_refs), so `peak`
// is the highest RSS reached while the agent (or the redactor) took the values in: a matcher's
// build temporaries show there even when they are freed before the end.
//
// mix `shared+own`: each container has 2 files, one secret all containers share and one of its
// own (count + 1 distinct secrets). mix `shared`: 2 files, both from secrets all share
// (2 distinct secrets), which isolates what the agent keeps per container from what it keeps
// per distinct secret (cache entry, redactor forms). mix `redactor`: no agent, only the
// redactor registering the `shared+own` values with a log line after each, as deliveries do.
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { createAgent } from '@dso/agent';
import { createLogger, createRedactor } from '@dso/core';
import { createProvider, defineProvider, SecretValue } from '@dso/provider-sdk';
import { z } from 'zod';

const count = Number(process.argv[2]);
const mix = process.argv[3] ?? 'shared+own';
if (!Number.isInteger(count) || count < 0)
  throw new Error(`bad container count ${process.argv[2]}`);
if (typeof global.gc !== 'function') throw new Error('run with --expose-gc');

async function collect() {
  for (let i = 0; i < 3; i += 1) {
    global.gc();
    await delay(20);
  }
}

function usage() {
  const { rss, heapUsed, heapTotal, external, arrayBuffers } = process.memoryUsage();
  return { rss, heapUsed, heapTotal, external, arrayBuffers, peak: peakRss() };
}

/** The process's peak RSS (VmHWM) in bytes since the last {@link resetPeak}. */
function peakRss() {
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(readFileSync('/proc/self/status', 'utf8'));
  return match ? Number(match[1]) * 1024 : Number.NaN;
}

function resetPeak() {
  try {
    writeFileSync('/proc/self/clear_refs', '5');
  } catch {
    // A kernel without clear_refs (before 4.0): the peak then includes loading, said by NaN.
    return false;
  }
  return true;
}

// ---- The world the agent runs in: part of the baseline ----

/** The store: path → value (44 characters of base64, like a generated token). */
const store = new Map();
const secret = () => randomBytes(32).toString('base64');
store.set('bench/shared', secret());
store.set('bench/shared-2', secret());
const startedAt = new Date().toISOString();
/** The engine's containers, kept compact: id and the one label that differs. */
const containers = Array.from({ length: count }, (_, index) => {
  const own = `bench/own-${index}`;
  if (mix !== 'shared') store.set(own, secret());
  return { id: randomBytes(32).toString('hex'), name: `app-${index}`, own };
});
const byId = new Map(containers.map((container) => [container.id, container]));

// Fresh objects on every call, as the real runtime parses them from the engine's JSON: what the
// agent keeps of them counts as the agent's.
const labelsOf = (container) => ({
  'dso.enable': 'true',
  'dso.file.shared': 'dsofile://bench/shared',
  'dso.file.own': `dsofile://${mix === 'shared+own' ? container.own : 'bench/shared-2'}`,
});

const written = new Set();
let resolveAllWritten;
const allWritten = new Promise((resolve) => {
  resolveAllWritten = resolve;
});
if (count === 0) resolveAllWritten();

/** A synthetic engine: every container running, an events stream that stays quiet. */
const runtime = {
  apiVersion: '1.41',
  engineVersion: 'synthetic',
  host: 'synthetic://',
  async *events({ signal, onConnected }) {
    onConnected?.();
    if (!signal.aborted) {
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    }
  },
  async listContainers() {
    return containers.map((container) => ({
      id: container.id,
      name: container.name,
      labels: labelsOf(container),
      state: 'running',
      image: 'dso-test/busybox:1',
    }));
  },
  async inspectContainer(id) {
    const container = byId.get(id);
    if (!container)
      throw Object.assign(new Error('no such container'), {
        code: 'DSO_DOCKER_CONTAINER_NOT_FOUND',
      });
    return {
      id,
      name: container.name,
      labels: labelsOf(container),
      running: true,
      state: 'running',
      user: '',
      startedAt,
      tmpfs: ['/run/secrets'],
      binds: [],
      image: 'dso-test/busybox:1',
    };
  },
  async writeFiles(id, request) {
    let bytes = 0;
    for (const file of request.files) bytes += file.content.byteLength;
    written.add(id);
    if (written.size === count) resolveAllWritten();
    return { files: request.files.length, bytes, durationMs: 0, generation: '1' };
  },
  async exec() {
    return {
      exitCode: 0,
      stdout: '',
      stderr: '',
      stdoutBytes: 0,
      stderrBytes: 0,
      truncated: false,
      durationMs: 0,
    };
  },
  async sendSignal() {},
  async restartContainer() {},
  async replaceContainer() {
    throw new Error('not in this benchmark');
  },
  async recoverReplacements() {
    return [];
  },
  async resolveUser() {
    return { uid: 0, gid: 0 };
  },
  async close() {},
  async [Symbol.asyncDispose]() {},
};

const definition = defineProvider({
  type: 'bench-memory',
  description: 'values from an in-memory map (benchmark)',
  configSchema: z.object({}),
  create: (_config, { name }) => ({
    name,
    capabilities: { list: false, watch: false, probe: false, health: false },
    async resolve({ path }) {
      const value = store.get(path);
      if (value === undefined) throw new Error(`no secret at ${path}`);
      return { value: SecretValue.fromText(value), version: '1' };
    },
    async close() {},
  }),
});

const redactor = createRedactor();
const logger = createLogger({ level: 'info', redactor, destination: { write() {} } });
const provider = await createProvider(definition, {}, { name: 'local' });
const providers = new Map([['local', provider]]);

// Settled figures are taken settled at both ends: the baseline too, after the same idle.
const settleMs = Number(process.env.BENCH_MEMORY_SETTLE_MS ?? 0);
if (settleMs > 0) await delay(settleMs);
await collect();
const baseline = usage();
const peakReset = resetPeak();

if (mix === 'redactor') {
  // No agent: what the redactor alone keeps for the same values, registered one at a time
  // with one log line after each, as deliveries do (each line makes it build what is pending).
  const started = performance.now();
  const deliver = (value) => {
    redactor.register(value);
    logger.info({ containerId: 'bench' }, 'secrets delivered');
  };
  if (count > 0) deliver(store.get('bench/shared'));
  for (const container of containers) deliver(store.get(container.own));
  const deliveredMs = performance.now() - started;
  await delay(100);
  await collect();
  const after = usage();
  if (!peakReset) after.peak = Number.NaN;
  process.stdout.write(
    `${JSON.stringify({ count, mix, distinctSecrets: redactor.size, baseline, after, deliveredMs, written: count, redactorStats: redactor.stats() })}\n`,
  );
  process.exit(0);
}

// ---- The agent ----
const started = performance.now();
const agent = createAgent({ runtime, providers, logger, redactor });
await agent.start();
const timeout = setTimeout(() => {
  process.stdout.write(
    `${JSON.stringify({ error: `only ${written.size} of ${count} written in 300 s` })}\n`,
  );
  process.exit(1);
}, 300_000);
await allWritten;
await agent.idle();
const deliveredMs = performance.now() - started;
clearTimeout(timeout);
// BENCH_MEMORY_SETTLE_MS: idle that long first, as an agent does after a burst of deliveries:
// V8's memory reducer gives back the young generation the burst grew (~10 s after it), so the
// figure is what the process keeps, not what the burst touched.
await delay(settleMs || 100);
await collect();
const after = usage();
if (!peakReset) after.peak = Number.NaN;
const status = agent.status();

process.stdout.write(
  `${JSON.stringify({
    count,
    mix,
    distinctSecrets: count === 0 ? 0 : mix === 'shared+own' ? count + 1 : 2,
    baseline,
    after,
    deliveredMs,
    written: written.size,
    tracked: status.containers.length,
    cacheEntries: status.cache.entries,
    redactorValues: redactor.size,
    redactorStats: redactor.stats(),
  })}\n`,
);
await agent.close();
await provider.close();
