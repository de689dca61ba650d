#!/usr/bin/env node
// bench: needs-engine
// Benchmark: the CPU the BUILT agent uses while idle, against a bare node process measured over
// the same window.
//
// The agent (apps/agent/bin/dso-agent.js) runs as a child process as an operator runs it (its
// own DSO home with a local vault, the real engine, metrics on a free loopback port), beside two
// baselines started at the same moment: a bare `node -e 'setInterval(() => {}, 1000)'`, and the
// same holding nothing but what the agent's process metrics hold (@dso/core's
// collectProcessMetrics: prom-client's default metrics, whose event loop delay monitor samples
// every 10 ms), which tells how much of the agent's idle CPU is that monitor, and the same again
// with the monitor at a 100 ms resolution. Two windows of
// BENCH_IDLE_MS (default 20,000 ms) each, after the agent has settled for 30 s:
//   1. no managed container;
//   2. 20 managed running containers (`sleep 3600`, `dso.enable=true`, one `dsofile://`
//      secret, a tmpfs at /run/secrets), started before the window and all delivered to
//      (the agent's `dso_injection_writes_total` reaches 20) and settled for 30 s.
// CPU is utime + stime from /proc/<pid>/stat (clock ticks of 10 ms: over 20 s, a resolution of
// 0.05 % of one core), read at both ends of the window, for the agent, its provider process(es)
// and the baselines. Percentages are of one core (the machine has two).
//
// What idle leaves out: the periodic reconciliation (every 10 minutes: a list and one inspect per
// managed container) and change detection's version polls (every 5 minutes by default, for a
// provider that can neither push nor watch) most likely fall outside a 20 s window.
//
// Run through `npm run bench -- agent` (builds first) or, after `npx nx run @dso/agent:build`,
// `node apps/agent/bench/idle-cpu.bench.mjs`. A report, not a test: exits 0 whatever the
// figures. Containers (label dso.test=bench-<uuid>) and the DSO home are removed on every path,
// Ctrl-C included.
import { randomBytes } from 'node:crypto';
import {
  loadAverage,
  log,
  machine,
  printBenchJson,
  printMachine,
  printTable,
  round2,
} from '../../../tools/bench-lib.mjs';
import { dockerSocketPath } from '../../../tools/lib.mjs';
import {
  CLOCK_TICKS_PER_SECOND,
  checkpoint,
  childPids,
  cpuTicks,
  createBenchHome,
  Docker,
  handleInterrupts,
  metricSum,
  newRunLabel,
  pause,
  readMetrics,
  removeRunContainers,
  startAgentProcess,
  startNode,
  testImage,
  wasInterrupted,
} from './agent-process.mjs';

const CONTAINERS = 20;
const SETTLE_MS = 30_000;
/** The seed's "Idle: <1% CPU". */
const SEED_IDLE_PERCENT = 1;

/**
 * The other baselines: node with the agent's process metrics collector and nothing else, as the
 * agent sets it up (prom-client's default event loop delay resolution, 10 ms), and with a
 * resolution of 100 ms (`eventLoopMonitoringPrecision`), to show what that setting costs.
 */
const processMetrics = (precisionMs) => [
  '--input-type=module',
  '-e',
  "import { collectProcessMetrics, createMetricsRegistry, createRedactor } from '@dso/core';" +
    'collectProcessMetrics(createMetricsRegistry({ redactor: createRedactor() })' +
    `${precisionMs === undefined ? '' : `, { eventLoopMonitoringPrecision: ${precisionMs} }`});` +
    'setInterval(() => {}, 1000);',
];

const runLabel = newRunLabel();
handleInterrupts(`docker rm -f $(docker ps -aq --filter label=${testImage.label}=${runLabel})`);

/** BENCH_IDLE_MS: the window's length, 1 s to 10 min. */
function windowFromEnv() {
  const raw = process.env.BENCH_IDLE_MS ?? '20000';
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1_000 || value > 600_000) {
    throw new Error(`BENCH_IDLE_MS must be a whole number of ms from 1000 to 600000, got "${raw}"`);
  }
  return value;
}

/** CPU ticks of each group of pids over `windowMs` of wall time; the bench itself sleeps. */
async function measureWindow(groups, windowMs) {
  const read = () =>
    Object.fromEntries(
      Object.entries(groups).map(([name, pids]) => {
        const ticks = pids.map(cpuTicks);
        if (ticks.some((value) => value === undefined)) throw new Error(`${name} exited`);
        return [name, ticks.reduce((a, b) => a + b, 0)];
      }),
    );
  const before = read();
  const started = performance.now();
  await pause(windowMs);
  const after = read();
  const seconds = (performance.now() - started) / 1000;
  return Object.fromEntries(
    Object.keys(groups).map((name) => {
      const cpuMs = ((after[name] - before[name]) * 1000) / CLOCK_TICKS_PER_SECOND;
      return [name, { cpuMs, percent: (cpuMs / 1000 / seconds) * 100, seconds }];
    }),
  );
}

async function main() {
  const windowMs = windowFromEnv();
  const socketPath = dockerSocketPath();
  if (!socketPath) throw new Error('DOCKER_HOST is not a unix socket: this benchmark is local');
  const docker = new Docker({ socketPath });
  const token = randomBytes(32);
  const workspace = await createBenchHome({ 'bench/token': token });
  token.fill(0);
  let agent;
  let bare;
  let collector;
  let collector100;
  try {
    const loadAtStart = loadAverage();
    agent = startAgentProcess(workspace.env);
    bare = startNode(['-e', 'setInterval(() => {}, 1000)']);
    collector = startNode(processMetrics());
    collector100 = startNode(processMetrics(100));
    await agent.waitForLog('agent ready');
    const providers = childPids(agent.pid);
    log(`agent ready (pid ${agent.pid}, ${providers.length} provider process(es)); settling`);
    const groups = {
      bare: [bare.pid],
      collector: [collector.pid],
      collector100: [collector100.pid],
      agent: [agent.pid],
      providers,
    };
    await pause(SETTLE_MS);
    log(`window 1: ${windowMs / 1000} s, no managed container`);
    const empty = await measureWindow(groups, windowMs);

    log(`starting ${CONTAINERS} managed containers`);
    for (let index = 0; index < CONTAINERS; index += 1) {
      checkpoint();
      const container = await docker.createContainer({
        Image: testImage.image,
        Cmd: ['sleep', '3600'],
        Labels: {
          [testImage.label]: runLabel,
          'dso.enable': 'true',
          'dso.file.token': 'dsofile://bench/token',
        },
        HostConfig: { NetworkMode: 'none', Tmpfs: { '/run/secrets': '' } },
      });
      await container.start();
    }
    const deadline = Date.now() + 120_000;
    for (;;) {
      const written = metricSum(
        await readMetrics(workspace.metricsAddress),
        'dso_injection_writes_total',
        {
          outcome: 'ok',
        },
      );
      if (written >= CONTAINERS) break;
      if (Date.now() > deadline)
        throw new Error(`only ${written} of ${CONTAINERS} containers delivered to in 120 s`);
      await pause(200);
    }
    await pause(SETTLE_MS);
    log(`window 2: ${windowMs / 1000} s, ${CONTAINERS} managed containers running`);
    const busy = await measureWindow(groups, windowMs);
    const host = { ...(await machine()), loadAtStart, loadAtEnd: loadAverage() };

    const pct = (value) => `${value.toFixed(2)} %`;
    // Over the bare baseline in percentage points of one core: a bare node process often uses
    // no tick at all in a window, so a ratio to it would mean nothing.
    const over = (percent, base) => `+${(percent - base).toFixed(2)} pp`;
    const total = (window) => ({
      cpuMs: window.agent.cpuMs + window.providers.cpuMs,
      percent: window.agent.percent + window.providers.percent,
    });
    console.log('');
    console.log(
      `@dso/agent idle CPU: two windows of ${windowMs / 1000} s, the built agent beside a bare node process ` +
        '(CPU % of one core, from /proc/<pid>/stat)',
    );
    printMachine(host, [`kernel ${host.kernel}, Node ${host.node}`, `revision ${host.revision}`]);
    console.log('');
    const rows = [];
    for (const [label, window] of [
      ['no managed container', empty],
      [`${CONTAINERS} managed containers`, busy],
    ]) {
      const sum = total(window);
      rows.push(
        [
          `baseline: node -e 'setInterval(…)' (${label})`,
          window.bare.cpuMs,
          window.bare.percent,
          '',
        ],
        [
          `baseline: node + collectProcessMetrics (${label})`,
          window.collector.cpuMs,
          window.collector.percent,
          over(window.collector.percent, window.bare.percent),
        ],
        [
          `baseline: the same, 100 ms event loop delay resolution (${label})`,
          window.collector100.cpuMs,
          window.collector100.percent,
          over(window.collector100.percent, window.bare.percent),
        ],
        [
          `dso-agent (${label})`,
          window.agent.cpuMs,
          window.agent.percent,
          over(window.agent.percent, window.bare.percent),
        ],
        [`provider process(es) (${label})`, window.providers.cpuMs, window.providers.percent, ''],
        [
          `dso-agent + provider(s) (${label})`,
          sum.cpuMs,
          sum.percent,
          over(sum.percent, window.bare.percent),
        ],
      );
    }
    printTable(
      ['process', 'CPU ms', 'CPU % of one core', 'over bare node'],
      rows.map(([label, cpuMs, percent, vs]) => [label, cpuMs.toFixed(0), pct(percent), vs]),
    );
    console.log('');
    const worst = Math.max(total(empty).percent, total(busy).percent);
    console.log(
      `seed: idle < ${SEED_IDLE_PERCENT} % CPU; measured ${pct(total(empty).percent)} with no container and ` +
        `${pct(total(busy).percent)} with ${CONTAINERS} (agent and provider process together) - ` +
        `${worst < SEED_IDLE_PERCENT ? 'under' : 'NOT under'} the seed's bound`,
    );
    const record = (window) => ({
      bareCpuMs: Math.round(window.bare.cpuMs),
      agentCpuMs: Math.round(window.agent.cpuMs),
      providersCpuMs: Math.round(window.providers.cpuMs),
      collectorCpuMs: Math.round(window.collector.cpuMs),
      collector100CpuMs: Math.round(window.collector100.cpuMs),
      barePercent: round2(window.bare.percent),
      collectorPercent: round2(window.collector.percent),
      collector100Percent: round2(window.collector100.percent),
      agentPercent: round2(window.agent.percent),
      providersPercent: round2(window.providers.percent),
      seconds: round2(window.agent.seconds),
    });
    console.log(
      `of which the process metrics' event loop delay monitor (the second baseline): ` +
        `${pct(empty.collector.percent)} and ${pct(busy.collector.percent)} in the same windows; ` +
        `at a 100 ms resolution ${pct(empty.collector100.percent)} and ${pct(busy.collector100.percent)}`,
    );
    printBenchJson({
      bench: 'agent/idle-cpu',
      at: new Date().toISOString(),
      windowMs,
      machine: host,
      unit: 'percent of one core',
      noContainers: record(empty),
      managedContainers: { count: CONTAINERS, ...record(busy) },
      seed: { idlePercent: SEED_IDLE_PERCENT },
    });
  } finally {
    await bare?.stop();
    await collector?.stop();
    await collector100?.stop();
    if (agent) {
      const code = await agent.stop();
      if (code !== 0) {
        log(`the agent exited with ${code}`);
        process.exitCode = 1;
      }
    }
    await removeRunContainers(docker, runLabel);
    workspace.remove();
  }
}

try {
  await main();
} catch (error) {
  if (error.interrupted || wasInterrupted()) {
    process.exitCode = 130;
  } else {
    log(`failed: ${error.stack ?? error.message}`);
    process.exitCode = 1;
  }
}
