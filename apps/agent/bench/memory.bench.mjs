#!/usr/bin/env node
// bench: needs-engine
// Benchmark: the agent's memory, idle and per 1,000 managed containers, against baselines
// measured in the same run.
//
// Part 1, the agent as a library (BUILT @dso/agent's createAgent) over a synthetic engine: the
// real engine cannot hold thousands of containers on this machine. For each size (0, 1,000,
// 5,000, 10,000 running managed containers, 2 files each) a fresh `node --expose-gc` process
// (memory-child.mjs) builds everything that is not the agent first (modules, the synthetic
// engine's containers, an in-process provider holding every value, redactor, a logger that
// discards) and measures it as its baseline; then starts the agent, waits until every container
// has had its files written and the queue is idle, runs three full collections and measures
// again. Two mixes: `shared+own` (one secret all containers share and one of each container's
// own: size + 1 distinct secrets) and `shared` (two shared secrets: what the agent keeps per
// container alone). Per 1,000 containers = (delta at the size − delta at 0) / (size / 1,000).
// A third row per size has no agent at all: the redactor alone registering the same values as
// `shared+own`, one log line after each as deliveries write them, to show its share.
// Each size runs BENCH_RUNS times (default 3, a fresh process each); medians are reported.
//
// Part 2, the real process: the BUILT agent binary started as an operator runs it (own DSO
// home, local vault, real engine, no managed container), its RSS and its provider process's
// from /proc after it has idled, beside two baselines started at the same moment: a bare
// `node -e 'setInterval(() => {}, 1000)'` and a node process holding dockerode and one open
// events stream (dockerode-events.mjs).
//
// RSS is what the kernel holds for the process, freed-but-kept heap pages and allocator
// fragmentation included; heapUsed + external is what is live after a full collection. Both
// are printed: the first is what an operator sees, the second what the agent's data costs.
//
// Run through `npm run bench -- agent` (builds first) or, after `npx nx run @dso/agent:build`,
// `node apps/agent/bench/memory.bench.mjs`. A report, not a test: exits 0 whatever the figures.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
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
import {
  checkpoint,
  childPids,
  createBenchHome,
  handleInterrupts,
  mib,
  pause,
  rssBytes,
  startAgentProcess,
  startNode,
  wasInterrupted,
} from './agent-process.mjs';

const SIZES = [0, 1_000, 5_000, 10_000];
const MIXES = ['shared+own', 'shared'];
/** The issue's target: under 10 MB of RSS per 1,000 managed containers. */
const TARGET_MB_PER_1000 = 10;
/** The seed's "expected memory per 1000 managed containers: ~10-50MB". */
const SEED_MB_PER_1000 = { low: 10, high: 50 };
/** The seed's "typical daemon memory usage: 50-200MB under normal load". */
const SEED_DAEMON_MB = { low: 50, high: 200 };
/** How long the real processes idle before their RSS is read, then how many 1 s samples. */
const SETTLE_MS = 10_000;
const SAMPLES = 5;

const CHILD = fileURLToPath(new URL('./memory-child.mjs', import.meta.url));
const DOCKERODE_EVENTS = fileURLToPath(new URL('./dockerode-events.mjs', import.meta.url));
const MB = 1e6;

let running;
handleInterrupts('nothing to remove by hand but /tmp/dso-bench-* folders');

/** One memory-child process; resolves with the JSON line it prints. */
function measureChild(size, mix) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--expose-gc', CHILD, String(size), mix], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    running = child;
    let output = '';
    child.stdout.setEncoding('utf8').on('data', (text) => {
      output += text;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      running = undefined;
      const result = output.trim() ? JSON.parse(output.trim().split('\n').pop()) : {};
      if (code !== 0 || result.error)
        reject(new Error(`memory child (${size}, ${mix}): ${result.error ?? `exit ${code}`}`));
      else if (result.written !== size)
        reject(new Error(`memory child (${size}): ${result.written} written`));
      else resolve(result);
    });
  });
}

async function library(runs) {
  const deltas = new Map(); // `${size} ${mix}` → { rss: [], live: [], heap: [], external: [], ms: [] }
  const add = (key, result) => {
    const entry = deltas.get(key) ?? {
      rss: [],
      heap: [],
      external: [],
      live: [],
      ms: [],
      baselineRss: [],
    };
    const d = (field) => result.after[field] - result.baseline[field];
    entry.rss.push(d('rss'));
    entry.heap.push(d('heapUsed'));
    entry.external.push(d('external'));
    entry.live.push(d('heapUsed') + d('external'));
    entry.ms.push(result.deliveredMs);
    entry.baselineRss.push(result.baseline.rss);
    entry.distinctSecrets = result.distinctSecrets;
    deltas.set(key, entry);
  };
  for (let run = 0; run < runs; run += 1) {
    // One fresh process per size and mix, alternating, so drift hits all alike.
    add('0', await measureChild(0, MIXES[0]));
    for (const size of SIZES.filter((each) => each > 0)) {
      for (const mix of [...MIXES, 'redactor']) {
        checkpoint();
        add(`${size} ${mix}`, await measureChild(size, mix));
      }
    }
    log(`library round ${run + 1}/${runs}`);
  }
  const summary = new Map();
  for (const [key, entry] of deltas) {
    summary.set(key, {
      distinctSecrets: entry.distinctSecrets,
      rss: median(entry.rss),
      heap: median(entry.heap),
      external: median(entry.external),
      live: median(entry.live),
      ms: median(entry.ms),
      baselineRss: median(entry.baselineRss),
      rssRange: [Math.min(...entry.rss), Math.max(...entry.rss)],
    });
  }
  return summary;
}

/** Median RSS of `pids` summed, over SAMPLES one-second samples. */
async function sampleRss(groups) {
  const samples = Object.fromEntries(Object.keys(groups).map((name) => [name, []]));
  for (let i = 0; i < SAMPLES; i += 1) {
    for (const [name, pids] of Object.entries(groups)) {
      const values = pids().map(rssBytes);
      if (values.some((value) => value === undefined)) throw new Error(`${name} exited`);
      samples[name].push(values.reduce((a, b) => a + b, 0));
    }
    await pause(1_000);
  }
  return Object.fromEntries(Object.entries(samples).map(([name, list]) => [name, median(list)]));
}

async function realProcess(socketPath) {
  const workspace = await createBenchHome({ 'bench/token': randomBytes(32) });
  let agent;
  let bare;
  let events;
  try {
    agent = startAgentProcess(workspace.env);
    bare = startNode(['-e', 'setInterval(() => {}, 1000)']);
    events = startNode([DOCKERODE_EVENTS, socketPath]);
    await agent.waitForLog('agent ready');
    log(`agent ready (pid ${agent.pid}); idling ${SETTLE_MS / 1000} s before sampling`);
    await pause(SETTLE_MS);
    const providers = childPids(agent.pid);
    const rss = await sampleRss({
      bare: () => [bare.pid],
      events: () => [events.pid],
      agent: () => [agent.pid],
      providers: () => providers,
    });
    return { ...rss, providerCount: providers.length };
  } finally {
    await bare?.stop();
    await events?.stop();
    if (agent) {
      const code = await agent.stop();
      if (code !== 0) {
        log(`the agent exited with ${code}`);
        process.exitCode = 1;
      }
    }
    workspace.remove();
  }
}

const f1 = (value) => value.toFixed(1);
const f2 = (value) => value.toFixed(2);

async function main() {
  const runs = runsFromEnv(3, 20);
  const socketPath = dockerSocketPath();
  if (!socketPath) throw new Error('DOCKER_HOST is not a unix socket: this benchmark is local');
  const loadAtStart = loadAverage();
  log(
    `library: sizes ${SIZES.join(', ')}, mixes ${MIXES.join(', ')}, ${runs} fresh process(es) each`,
  );
  const lib = await library(runs);
  log('real process: the built agent, idle, beside two baselines');
  const real = await realProcess(socketPath);
  const host = { ...(await machine()), loadAtStart, loadAtEnd: loadAverage() };

  const idle = lib.get('0');
  const per1000 = (entry, size, field) => (entry[field] - idle[field]) / (size / 1_000);
  console.log('');
  console.log(
    `@dso/agent memory: createAgent over a synthetic engine, ${runs} fresh process(es) per size (medians), ` +
      'then the built agent process idle',
  );
  printMachine(host, [`kernel ${host.kernel}, Node ${host.node}`, `revision ${host.revision}`]);
  console.log('');
  const rows = [
    ['0 (agent started, idle)', idle, 0],
    ...SIZES.filter((size) => size > 0).flatMap((size) => [
      ...MIXES.map((mix) => [
        `${size.toLocaleString('en')}, ${mix}`,
        lib.get(`${size} ${mix}`),
        size,
      ]),
      [
        `(no agent) redactor alone, ${size.toLocaleString('en')} + 1 values`,
        lib.get(`${size} redactor`),
        size,
      ],
    ]),
  ];
  printTable(
    [
      'containers, secrets',
      'distinct secrets',
      'RSS Δ MiB',
      'RSS Δ range',
      'heapUsed Δ MiB',
      'external Δ MiB',
      'RSS MB per 1,000',
      'live MB per 1,000',
      'deliveries s',
    ],
    rows.map(([label, entry, size]) => [
      label,
      entry.distinctSecrets.toLocaleString('en'),
      f1(mib(entry.rss)),
      entry.rssRange.map((value) => f1(mib(value))).join('-'),
      f1(mib(entry.heap)),
      f1(mib(entry.external)),
      size ? f2(per1000(entry, size, 'rss') / MB) : '',
      size ? f2(per1000(entry, size, 'live') / MB) : '',
      f2(entry.ms / 1000),
    ]),
  );
  console.log(
    `baseline (everything loaded, no agent): RSS ${f1(mib(idle.baselineRss))} MiB; Δ = after − baseline in the same process; ` +
      'live = heapUsed + external after three full collections',
  );
  console.log('');
  // The marginal cost: from 1,000 to 10,000 containers. The step from 0 to 1,000 also holds
  // what the process keeps once after its first burst of deliveries (a grown heap, compiled
  // code, allocator arenas), which does not grow with the count.
  const big = lib.get('10000 shared+own');
  const slopeOf = (mix, field) =>
    (lib.get(`10000 ${mix}`)[field] - lib.get(`1000 ${mix}`)[field]) / 9 / MB;
  const slope = slopeOf('shared+own', 'rss');
  const met = slope < TARGET_MB_PER_1000;
  console.log(
    `target: under ${TARGET_MB_PER_1000} MB RSS per 1,000 containers (2 files, one of them an own secret): ` +
      `${f2(slope)} MB per 1,000 from 1,000 to 10,000 containers - ${met ? 'met' : 'NOT met'} ` +
      `(${f2(per1000(big, 10_000, 'rss') / MB)} MB per 1,000 averaged from 0 to 10,000, one-off growth included)`,
  );
  console.log(
    `shared secrets only: ${f2(slopeOf('shared', 'rss'))} MB RSS, ${f2(slopeOf('shared', 'live'))} MB live per 1,000 ` +
      `from 1,000 to 10,000; with own secrets ${f2(slopeOf('shared+own', 'live'))} MB live. ` +
      `seed: ${SEED_MB_PER_1000.low}-${SEED_MB_PER_1000.high} MB per 1,000 containers`,
  );
  console.log(
    `the redactor alone (no agent), same values: ${f1(mib(lib.get('1000 redactor').rss))} MiB RSS at 1,000 values, ` +
      `${f1(mib(lib.get('10000 redactor').rss))} MiB at 10,000; ${f2(slopeOf('redactor', 'rss'))} MB RSS, ` +
      `${f2(slopeOf('redactor', 'live'))} MB live per 1,000 values from 1,000 to 10,000`,
  );
  console.log('');
  const total = real.agent + real.providers;
  printTable(
    ['process (idle, real engine)', 'RSS MiB', 'vs bare node'],
    [
      ["baseline: node -e 'setInterval(…)'", f1(mib(real.bare)), '1.00x'],
      [
        'baseline: node + dockerode + one events stream',
        f1(mib(real.events)),
        `${f2(real.events / real.bare)}x`,
      ],
      ['dso-agent (the daemon process)', f1(mib(real.agent)), `${f2(real.agent / real.bare)}x`],
      [`provider process(es) (${real.providerCount}: local vault)`, f1(mib(real.providers)), ''],
      ['dso-agent + its provider process(es)', f1(mib(total)), `${f2(total / real.bare)}x`],
    ],
  );
  console.log(
    `seed: a typical daemon uses ${SEED_DAEMON_MB.low}-${SEED_DAEMON_MB.high} MB; the agent idles at ` +
      `${f1(real.agent / MB)} MB (${f1(total / MB)} MB with its provider process), ` +
      `${f1((real.agent - real.events) / MB)} MB over a node process holding dockerode and one events stream`,
  );

  const libRecord = Object.fromEntries(
    [...lib].map(([key, entry]) => [
      key,
      {
        distinctSecrets: entry.distinctSecrets,
        rssDeltaMiB: round2(mib(entry.rss)),
        heapUsedDeltaMiB: round2(mib(entry.heap)),
        externalDeltaMiB: round2(mib(entry.external)),
        deliveriesMs: Math.round(entry.ms),
      },
    ]),
  );
  printBenchJson({
    bench: 'agent/memory',
    at: new Date().toISOString(),
    runs,
    machine: host,
    library: libRecord,
    mbPer1000From1000To10000: {
      rss: round2(slope),
      live: round2(slopeOf('shared+own', 'live')),
      sharedOnlyRss: round2(slopeOf('shared', 'rss')),
      sharedOnlyLive: round2(slopeOf('shared', 'live')),
      redactorAloneRss: round2(slopeOf('redactor', 'rss')),
      redactorAloneLive: round2(slopeOf('redactor', 'live')),
    },
    rssMbPer1000From0To10000: round2(per1000(big, 10_000, 'rss') / MB),
    target: { mbPer1000: TARGET_MB_PER_1000, met },
    process: {
      bareNodeMiB: round2(mib(real.bare)),
      dockerodeEventsMiB: round2(mib(real.events)),
      agentMiB: round2(mib(real.agent)),
      providersMiB: round2(mib(real.providers)),
      providerCount: real.providerCount,
    },
    seed: { mbPer1000: SEED_MB_PER_1000, daemonMb: SEED_DAEMON_MB },
  });
}

try {
  await main();
} catch (error) {
  running?.kill('SIGKILL');
  if (error.interrupted || wasInterrupted()) {
    process.exitCode = 130;
  } else {
    log(`failed: ${error.stack ?? error.message}`);
    process.exitCode = 1;
  }
}
