#!/usr/bin/env node
// Benchmark: how many events a minute @dso/core's keyed event queue takes in and dispatches on
// one core, and how long an event waits between its add and the dispatch of the run that covers
// it, against two baselines measured in the same run:
//
//   A. a plain FIFO with no keying: every event is one run (an array and a head index);
//   B. the agent's stopgap keyed queue (apps/agent/src/work-queue.ts), its algorithm inlined
//      here with an item per key so it can carry the timestamp the latency is measured from.
//
// Workload, identical for the three: 1,000,000 events over 10,000 distinct container ids (64
// hex characters, drawn uniformly by a seeded generator before timing), pushed 1,000 at a time
// with a turn of the event loop between chunks, as events arrive from a stream; a trivial async
// worker; 32 workers. Each round runs every case twice:
//
//   - throughput: events per minute, from the first add to the queue going idle, with nothing
//     measured per event (a clock reading costs about as much as an add);
//   - latency: the same again with each event's item set to `performance.now()` at its add, read
//     back when the worker starts. The event queue keeps the oldest item of coalesced events
//     (`merge`), so a run's latency is that of the oldest event it covers.
//
// The process pins itself (every thread, GC helpers included) to one CPU with `taskset` when it
// can, and prints the CPU time it used per wall-clock second to show it.
//
// Imports the BUILT package by its name, so it measures what ships: run it through `npm run
// bench` (builds first), or `node packages/core/bench/queue.bench.mjs` after a build. BENCH_RUNS
// sets the measured rounds (default 5), after one warm-up round. A report, not a test: exits 0
// whatever the figures.
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { createEventQueue } from '@dso/core';
import {
  loadAverage,
  log,
  machine,
  median,
  percentile,
  printBenchJson,
  printMachine,
  printTable,
  round2,
  runsFromEnv,
} from '../../../tools/bench-lib.mjs';

const EVENTS = 1_000_000;
const KEYS = 10_000;
const CONCURRENCY = 32;
const CHUNK = 1_000;
/** Room for every id a chunk can bring (the seed's upper bound): nothing should be shed. */
const MAX_SIZE = 2_000;
/** The seed's sustained rate, and this project's target: a hundred times that. */
const SEED_EVENTS_PER_MINUTE = 10_000;
const TARGET_EVENTS_PER_MINUTE = 1_000_000;

/** A small seeded generator (mulberry32): the same event order on every run and machine. */
function seeded(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function workload() {
  const random = seeded(0xd50);
  const hex = () =>
    Math.floor(random() * 2 ** 32)
      .toString(16)
      .padStart(8, '0');
  const ids = Array.from({ length: KEYS }, () => Array.from({ length: 8 }, hex).join(''));
  const order = new Uint16Array(EVENTS);
  for (let index = 0; index < EVENTS; index += 1) order[index] = Math.floor(random() * KEYS);
  return { ids, order };
}

/** Pins this process, every thread of it, to the first CPU it may run on. */
function pinToOneCpu() {
  try {
    const current = execFileSync('taskset', ['-c', '-p', String(process.pid)], {
      encoding: 'utf8',
    });
    const cpu = current.split(':').at(-1).trim().split(/[,-]/)[0];
    execFileSync('taskset', ['-a', '-c', '-p', cpu, String(process.pid)], { stdio: 'ignore' });
    return `pinned to CPU ${cpu} (taskset)`;
  } catch {
    // No taskset (not Linux, or not installed): the CPU-time figure still shows the cores used.
    return 'not pinned (no taskset)';
  }
}

// Each case builds a queue around `dispatch(key, enqueuedAt)` and returns { add, idle, stats }.

/** @dso/core's event queue, as the agent would build it. */
function eventQueueCase(dispatch) {
  const queue = createEventQueue({
    concurrency: CONCURRENCY,
    maxSize: MAX_SIZE,
    merge: (oldest) => oldest,
    worker: async (key, enqueuedAt) => {
      dispatch(key, enqueuedAt);
    },
  });
  return {
    add: (key, enqueuedAt) => queue.add(key, enqueuedAt),
    idle: () => queue.idle(),
    stats: () => queue.stats(),
  };
}

/** Baseline A: no keying, no coalescing, no bound: every event is a run, first in first out. */
function plainFifoCase(dispatch) {
  let keys = [];
  let times = [];
  let head = 0;
  let running = 0;
  let idleWaiters = [];
  const worker = async (key, enqueuedAt) => {
    dispatch(key, enqueuedAt);
  };
  const pump = () => {
    while (running < CONCURRENCY && head < keys.length) {
      const key = keys[head];
      const enqueuedAt = times[head];
      head += 1;
      running += 1;
      worker(key, enqueuedAt).finally(done);
    }
    if (head === keys.length && head > 0) {
      keys = [];
      times = [];
      head = 0;
    }
  };
  const done = () => {
    running -= 1;
    pump();
    if (running === 0 && head === keys.length) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  };
  return {
    add(key, enqueuedAt) {
      keys.push(key);
      times.push(enqueuedAt);
      pump();
    },
    idle: () =>
      running === 0 && head === keys.length
        ? Promise.resolve()
        : new Promise((resolve) => idleWaiters.push(resolve)),
  };
}

/** Baseline B: the agent's stopgap (work-queue.ts), with a Map where it has a Set for items. */
function stopgapCase(dispatch) {
  const waiting = new Map(); // insertion order = FIFO across keys
  const running = new Set();
  const rerun = new Map(); // keys added again while running
  let idleWaiters = [];
  const worker = async (key, enqueuedAt) => {
    dispatch(key, enqueuedAt);
  };
  const settleIdle = () => {
    if (waiting.size > 0 || running.size > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  };
  const pump = () => {
    for (const [key, enqueuedAt] of waiting) {
      if (running.size >= CONCURRENCY) break;
      if (running.has(key)) continue;
      waiting.delete(key);
      running.add(key);
      void worker(key, enqueuedAt)
        .catch(() => {})
        .finally(() => {
          running.delete(key);
          const again = rerun.get(key);
          if (again !== undefined) {
            rerun.delete(key);
            waiting.set(key, again);
          }
          pump();
          settleIdle();
        });
    }
  };
  return {
    add(key, enqueuedAt) {
      if (running.has(key)) {
        if (!rerun.has(key)) rerun.set(key, enqueuedAt);
      } else if (!waiting.has(key)) waiting.set(key, enqueuedAt);
      pump();
    },
    idle: () =>
      waiting.size === 0 && running.size === 0
        ? Promise.resolve()
        : new Promise((resolve) => idleWaiters.push(resolve)),
  };
}

const CASES = [
  { id: 'baseline-fifo', label: 'A: plain FIFO, no keying', build: plainFifoCase },
  { id: 'baseline-stopgap', label: "B: agent's stopgap keyed queue", build: stopgapCase },
  { id: 'event-queue', label: '@dso/core createEventQueue', build: eventQueueCase },
];

const turn = () => new Promise((resolve) => setImmediate(resolve));

/** Pushes every event through a fresh queue of one case and times it. */
async function throughput(entry, { ids, order }) {
  let dispatched = 0;
  const queue = entry.build(() => {
    dispatched += 1;
  });
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  for (let index = 0; index < EVENTS; ) {
    const end = Math.min(index + CHUNK, EVENTS);
    for (; index < end; index += 1) queue.add(ids[order[index]], 0);
    await turn();
  }
  await queue.idle();
  const elapsedMs = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  return {
    eventsPerMinute: (EVENTS / elapsedMs) * 60_000,
    dispatched,
    cpuPerWall: (cpu.user + cpu.system) / 1_000 / elapsedMs,
    stats: queue.stats?.(),
  };
}

/** The same, with every event stamped at its add and every dispatch measured against it. */
async function latency(entry, { ids, order }) {
  const latencies = new Float64Array(EVENTS);
  let dispatched = 0;
  const queue = entry.build((_key, enqueuedAt) => {
    latencies[dispatched] = performance.now() - enqueuedAt;
    dispatched += 1;
  });
  for (let index = 0; index < EVENTS; ) {
    const end = Math.min(index + CHUNK, EVENTS);
    for (; index < end; index += 1) queue.add(ids[order[index]], performance.now());
    await turn();
  }
  await queue.idle();
  const sorted = latencies.subarray(0, dispatched).sort();
  return {
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    maxMs: sorted[dispatched - 1],
  };
}

async function measure(entry, data) {
  return { ...(await throughput(entry, data)), ...(await latency(entry, data)) };
}

const round3 = (value) => Math.round(value * 1_000) / 1_000;
const millions = (value) => `${(value / 1e6).toFixed(2)} M`;

function printCases(rows, baseline) {
  const header = [
    'case',
    'events/min',
    'runs/round',
    'p50 ms',
    'p99 ms',
    'max ms',
    'cpu/wall',
    'vs A',
  ];
  const lines = rows.map((row) => [
    row.label,
    millions(row.eventsPerMinute),
    String(Math.round(row.dispatched)),
    row.p50Ms.toFixed(3),
    row.p99Ms.toFixed(3),
    row.maxMs.toFixed(1),
    row.cpuPerWall.toFixed(2),
    `${(row.eventsPerMinute / baseline).toFixed(2)}x`,
  ]);
  printTable(header, lines);
}

async function main() {
  const runs = runsFromEnv();
  // Before pinning: afterwards the process may use (and Node reports) one CPU.
  const nproc = availableParallelism();
  const pinning = pinToOneCpu();
  log(pinning);
  const data = workload();
  const loadAtStart = loadAverage();

  log('warm-up round');
  for (const entry of CASES) await measure(entry, data);

  const results = new Map(CASES.map((entry) => [entry.id, []]));
  for (let round = 0; round < runs; round += 1) {
    // Each round starts one case later, so no case always runs first (or after the same one).
    for (let step = 0; step < CASES.length; step += 1) {
      const entry = CASES[(round + step) % CASES.length];
      results.get(entry.id).push(await measure(entry, data));
    }
    log(`round ${round + 1}/${runs}`);
  }

  const host = { ...(await machine()), nproc, pinning, loadAtStart, loadAtEnd: loadAverage() };
  const rows = CASES.map((entry) => {
    const samples = results.get(entry.id);
    const pick = (field) => median(samples.map((sample) => sample[field]));
    return {
      id: entry.id,
      label: entry.label,
      eventsPerMinute: pick('eventsPerMinute'),
      dispatched: pick('dispatched'),
      p50Ms: pick('p50Ms'),
      p99Ms: pick('p99Ms'),
      maxMs: pick('maxMs'),
      cpuPerWall: pick('cpuPerWall'),
      stats: samples.at(-1).stats,
    };
  });
  const baseline = rows[0].eventsPerMinute;
  const queueRow = rows.find((row) => row.id === 'event-queue');
  const stopgapRow = rows.find((row) => row.id === 'baseline-stopgap');
  const { stats } = queueRow;

  console.log('');
  console.log(
    `@dso/core event queue: ${EVENTS.toLocaleString('en')} events over ` +
      `${KEYS.toLocaleString('en')} keys, ${CHUNK} per event-loop turn, ${CONCURRENCY} workers; ` +
      `median of ${runs} rounds`,
  );
  printMachine(host, [
    `kernel ${host.kernel}, Node ${host.node}, ${pinning}`,
    `revision ${host.revision}`,
  ]);
  console.log('');
  printCases(rows, baseline);
  console.log('');
  console.log(
    `event queue, last round: ${stats.completed} runs for ${stats.added} events ` +
      `(${stats.coalesced} coalesced), ${stats.shed} shed, ${stats.failed} failed`,
  );
  console.log(
    'events/min: first add to idle, nothing measured per event; latency (separate pass, every ' +
      'event stamped): add to the dispatch of the run covering it, a coalesced run counting its ' +
      'oldest event',
  );
  const met = queueRow.eventsPerMinute >= TARGET_EVENTS_PER_MINUTE;
  console.log(
    `target: >= ${TARGET_EVENTS_PER_MINUTE.toLocaleString('en')} events/min on one core ` +
      `(100x the seed's ~${SEED_EVENTS_PER_MINUTE.toLocaleString('en')}): ` +
      `${Math.round(queueRow.eventsPerMinute).toLocaleString('en')} - ${met ? 'met' : 'NOT met'} ` +
      `(${(queueRow.eventsPerMinute / TARGET_EVENTS_PER_MINUTE).toFixed(1)}x the target, ` +
      `${(queueRow.eventsPerMinute / SEED_EVENTS_PER_MINUTE).toFixed(0)}x the seed; ` +
      `${(queueRow.eventsPerMinute / stopgapRow.eventsPerMinute).toFixed(2)}x the stopgap)`,
  );
  printBenchJson({
    bench: 'core/queue',
    at: new Date().toISOString(),
    runs,
    workload: {
      events: EVENTS,
      keys: KEYS,
      chunk: CHUNK,
      concurrency: CONCURRENCY,
      maxSize: MAX_SIZE,
      warmupRounds: 1,
    },
    machine: host,
    cases: rows.map((row) => ({
      id: row.id,
      label: row.label,
      eventsPerMinute: Math.round(row.eventsPerMinute),
      runsPerRound: row.dispatched,
      p50Ms: round3(row.p50Ms),
      p99Ms: round3(row.p99Ms),
      maxMs: round2(row.maxMs),
      cpuPerWall: round2(row.cpuPerWall),
      ratioToBaseline: round2(row.eventsPerMinute / baseline),
    })),
    eventQueueStats: stats,
    target: {
      eventsPerMinute: TARGET_EVENTS_PER_MINUTE,
      measured: Math.round(queueRow.eventsPerMinute),
      met,
    },
    seed: { eventsPerMinute: SEED_EVENTS_PER_MINUTE },
  });
}

main().catch((error) => {
  log(error.stack ?? String(error));
  process.exitCode = 1;
});
