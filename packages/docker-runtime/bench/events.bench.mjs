#!/usr/bin/env node
// bench: needs-engine
// Benchmark: the CPU time the events consumer spends per event, against a same-run baseline.
//
// Part 1, synthetic: a child process plays the engine on a unix socket (ping, version, and an
// /events stream of 100,000 container events, each line as Docker 20.10 writes it). This
// process consumes it twice, alternating, several rounds: through `runtime.events()` (HTTP via
// dockerode, line splitting, parsing, cursors, de-duplication, the reconnect loop) and through
// the baseline, a bare `http.get` that splits lines and `JSON.parse`s each, nothing else. CPU
// is `process.cpuUsage()` (user + system) of this process only, divided by the events read.
//
// Part 2, real engine: a child process creates and removes labelled containers while this
// process consumes the real engine's stream; CPU per event again (the engine emits at most
// ~1,450 container events a minute here, so this part is small and its figure noisier).
//
// Imports the BUILT package: run through `npm run bench` (builds first). BENCH_RUNS sets the
// synthetic rounds (default 5). Prints a table and one `BENCH_JSON {...}` line.
import { fork } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createDockerRuntime } from '@dso/docker-runtime';
import {
  loadAverage,
  log,
  machine,
  median,
  printBenchJson,
  printMachine,
  printTable,
  round2,
  runsFromEnv,
} from '../../../tools/bench-lib.mjs';
import { dockerSocketPath } from '../../../tools/lib.mjs';

const SYNTHETIC_EVENTS = 100_000;
const REAL_CONTAINERS = 60;
const IDLE_WINDOW_MS = 2_000;
const testImage = JSON.parse(
  readFileSync(new URL('../../../tools/test-image.json', import.meta.url), 'utf8'),
);

/** CPU µs (user + system) and wall ms that `work` costs this process. */
async function measure(work) {
  const cpu = process.cpuUsage();
  const started = performance.now();
  const count = await work();
  const used = process.cpuUsage(cpu);
  return { count, cpuUs: used.user + used.system, wallMs: performance.now() - started };
}

/** Starts the fake engine child; resolves with its socket path once it listens. */
function startFakeEngine() {
  const socketPath = join(tmpdir(), `dso-bench-events-${randomUUID().slice(0, 8)}.sock`);
  const child = fork(new URL('./fake-events-engine.mjs', import.meta.url), [
    socketPath,
    String(SYNTHETIC_EVENTS),
  ]);
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve({ socketPath, child }));
    child.once('exit', (code) => reject(new Error(`fake engine exited with ${code}`)));
  });
}

/**
 * The baseline: one HTTP GET of /events, split into lines, each JSON.parse'd, until `count`
 * container events have passed `filter`.
 */
function bareConsume(socketPath, count, filter = () => true) {
  return new Promise((resolve, reject) => {
    let seen = 0;
    let partial = '';
    const request = get({ socketPath, path: '/v1.41/events' }, (response) => {
      response.setEncoding('utf8');
      response.on('data', (text) => {
        const lines = (partial + text).split('\n');
        partial = lines.pop() ?? '';
        for (const line of lines) {
          if (line === '') continue;
          const event = JSON.parse(line);
          if (event.Type === 'container' && filter(event)) seen += 1;
          if (seen === count) {
            request.destroy();
            resolve(seen);
            return;
          }
        }
      });
    });
    request.on('error', (error) => {
      if (seen < count) reject(error);
    });
  });
}

/**
 * Through the runtime: every event as a typed item, until `count` have passed `filter`.
 * Returns how many events were consumed in all (other tests' containers share the engine).
 */
async function runtimeConsume(runtime, count, filter = () => true) {
  const controller = new AbortController();
  let matched = 0;
  let all = 0;
  for await (const item of runtime.events({ signal: controller.signal })) {
    if (item.type === 'resync') continue;
    all += 1;
    if (!filter(item)) continue;
    matched += 1;
    if (matched === count) controller.abort();
  }
  return all;
}

async function synthetic(rounds) {
  const { socketPath, child } = await startFakeEngine();
  const runtime = await createDockerRuntime({ host: `unix://${socketPath}` });
  const results = { runtime: [], bare: [] };
  try {
    // One warm-up of each, then alternate so drift hits both alike.
    await bareConsume(socketPath, SYNTHETIC_EVENTS);
    await runtimeConsume(runtime, SYNTHETIC_EVENTS);
    for (let round = 0; round < rounds; round += 1) {
      results.bare.push(await measure(() => bareConsume(socketPath, SYNTHETIC_EVENTS)));
      results.runtime.push(await measure(() => runtimeConsume(runtime, SYNTHETIC_EVENTS)));
      log(`synthetic round ${round + 1}/${rounds}`);
    }
  } finally {
    await runtime.close();
    child.kill();
  }
  return results;
}

/**
 * Forks the child that creates and removes labelled containers (its CPU is not ours); it
 * starts when told, so the fork itself stays out of the measured window.
 */
function churner(socketPath, runLabel) {
  const child = fork(new URL('./container-churn.mjs', import.meta.url), [
    socketPath,
    testImage.image,
    testImage.label,
    runLabel,
    String(REAL_CONTAINERS),
  ]);
  const done = new Promise((resolve, reject) => {
    child.once('exit', (code) =>
      code === 0 ? resolve() : reject(new Error(`container churn exited with ${code}`)),
    );
  });
  return { go: () => child.send('go'), done };
}

async function real() {
  const socketPath = dockerSocketPath();
  if (!socketPath) throw new Error('DOCKER_HOST is not a unix socket: this benchmark is local');
  const runtime = await createDockerRuntime({ host: `unix://${socketPath}` });
  const runLabel = `bench-${randomUUID()}`;
  // create + destroy for each container.
  const expected = REAL_CONTAINERS * 2;
  try {
    // What the process spends with the stream open and nothing happening: subtracted below.
    const idle = await measure(async () => {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), IDLE_WINDOW_MS);
      for await (const _ of runtime.events({ signal: controller.signal })) {
        // Anything arriving here is other work on the engine: it is counted in the idle cost.
      }
      return 0;
    });
    // The same churn twice: once read by the bare baseline, once by the runtime.
    const bareProducer = churner(socketPath, `${runLabel}-bare`);
    const bareOurs = (event) => event.Actor?.Attributes?.[testImage.label] === `${runLabel}-bare`;
    const bareConsumed = measure(async () => {
      await bareConsume(socketPath, expected, bareOurs);
      return expected;
    });
    bareProducer.go();
    const [bare] = await Promise.all([bareConsumed, bareProducer.done]);

    const producer = churner(socketPath, runLabel);
    const ours = (item) => item.labels[testImage.label] === runLabel;
    const consumed = measure(() => runtimeConsume(runtime, expected, ours));
    producer.go();
    const [result] = await Promise.all([consumed, producer.done]);
    const idleUs = (idle.cpuUs / idle.wallMs) * result.wallMs;
    const bareIdleUs = (idle.cpuUs / idle.wallMs) * bare.wallMs;
    return {
      ...result,
      bareNetCpuUsPerEvent: Math.max(0, bare.cpuUs - bareIdleUs) / expected,
      netCpuUs: Math.max(0, result.cpuUs - idleUs),
      idleCpuUsPerSec: (idle.cpuUs / idle.wallMs) * 1000,
      engineVersion: runtime.engineVersion,
      apiVersion: runtime.apiVersion,
    };
  } finally {
    await runtime.close();
  }
}

async function main() {
  const rounds = runsFromEnv(5, 100);
  const loadAtStart = loadAverage();
  const fake = await synthetic(rounds);
  log(`real engine: ${REAL_CONTAINERS} containers created and removed`);
  const engine = await real();
  const host = {
    ...(await machine()),
    dockerEngine: engine.engineVersion,
    dockerApi: engine.apiVersion,
    loadAtStart,
    loadAtEnd: loadAverage(),
  };

  const perEvent = (samples) => median(samples.map((s) => s.cpuUs / s.count));
  const rate = (samples) => median(samples.map((s) => s.count / (s.wallMs / 1000)));
  const runtimeUs = perEvent(fake.runtime);
  const bareUs = perEvent(fake.bare);
  const realUs = engine.netCpuUs / engine.count;

  console.log('');
  console.log(
    `@dso/docker-runtime events consumer: ${rounds} rounds of ${SYNTHETIC_EVENTS.toLocaleString('en')} synthetic events, ` +
      `then ${engine.count} real engine events`,
  );
  printMachine(host, [
    `kernel ${host.kernel}, Docker Engine ${host.dockerEngine} (API ${host.dockerApi}), Node ${host.node}`,
    `revision ${host.revision}`,
  ]);
  console.log('');
  printTable(
    ['case', 'CPU µs per event (median)', 'events/s (wall)', 'vs baseline'],
    [
      [
        'baseline: http.get + split + JSON.parse',
        bareUs.toFixed(2),
        Math.round(rate(fake.bare)).toLocaleString('en'),
        '1.00x',
      ],
      [
        'runtime.events(), synthetic engine',
        runtimeUs.toFixed(2),
        Math.round(rate(fake.runtime)).toLocaleString('en'),
        `${(runtimeUs / bareUs).toFixed(2)}x`,
      ],
      [
        'baseline, real engine (net of idle)',
        engine.bareNetCpuUsPerEvent.toFixed(2),
        '',
        '1.00x (real)',
      ],
      [
        'runtime.events(), real engine (net of idle)',
        realUs.toFixed(2),
        Math.round(engine.count / (engine.wallMs / 1000)).toLocaleString('en'),
        `${(realUs / engine.bareNetCpuUsPerEvent).toFixed(2)}x (real)`,
      ],
    ],
  );
  console.log('');
  console.log(
    `real engine: ${(engine.cpuUs / engine.count).toFixed(1)} µs gross per event; the process idles at ` +
      `${Math.round(engine.idleCpuUsPerSec)} µs CPU per second with the stream open`,
  );
  console.log(
    `at the seed's 10,000 events/min, one event per read as the real engine sends them, the ` +
      `consumer would use ${((realUs * 10_000) / 60 / 10_000).toFixed(1)}% of one core ` +
      `(${((runtimeUs * 10_000) / 60 / 10_000).toFixed(2)}% when events arrive batched)`,
  );
  printBenchJson({
    bench: 'docker-runtime/events',
    at: new Date().toISOString(),
    rounds,
    machine: host,
    unit: 'cpu µs per event',
    syntheticEvents: SYNTHETIC_EVENTS,
    cases: [
      {
        id: 'baseline-bare',
        cpuUsPerEvent: round2(bareUs),
        eventsPerSec: Math.round(rate(fake.bare)),
      },
      {
        id: 'runtime-synthetic',
        cpuUsPerEvent: round2(runtimeUs),
        eventsPerSec: Math.round(rate(fake.runtime)),
        ratioToBaseline: round2(runtimeUs / bareUs),
      },
      {
        id: 'runtime-real',
        events: engine.count,
        cpuUsPerEvent: round2(realUs),
        grossCpuUsPerEvent: round2(engine.cpuUs / engine.count),
        baselineCpuUsPerEvent: round2(engine.bareNetCpuUsPerEvent),
        idleCpuUsPerSec: Math.round(engine.idleCpuUsPerSec),
      },
    ],
  });
}

try {
  await main();
} catch (error) {
  log(`failed: ${error.stack ?? error.message}`);
  process.exitCode = 1;
}
