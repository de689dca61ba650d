#!/usr/bin/env node
// Benchmark: the agent's memory per 1,000 managed containers, against a baseline measured in
// the same process and against the issue's targets and the previous revision's figures.
//
// The agent as a library (BUILT @dso/agent's createAgent) over a synthetic engine: the real
// engine cannot hold thousands of containers on this machine. For each size (0, 1,000, 5,000,
// 10,000 running managed containers, 2 files each) a fresh `node --expose-gc` process
// (memory-child.mjs) builds everything that is not the agent first (modules, the synthetic
// engine's containers, an in-process provider holding every value, redactor, a logger that
// discards) and measures it as its baseline; then starts the agent, waits until every container
// has had its files written and the queue is idle, runs three full collections and measures
// again. Two mixes: `shared+own` (one secret all containers share and one of each container's
// own: size + 1 distinct secrets) and `shared` (two shared secrets: what the agent keeps per
// container alone). A third row per size has no agent at all: the redactor alone registering
// the same values as `shared+own`, one log line after each as deliveries write them, to show
// its share. Each size runs BENCH_RUNS times (default 3, a fresh process each); medians are
// reported.
//
// The issue's two figures, for `shared+own` (one own secret per container):
// - marginal: (Δ at 10,000 − Δ at 1,000) / 9, MB per 1,000 containers (target under 5 MB RSS);
// - the first 1,000: Δ at 1,000 − Δ at 0 (target under 15 MB RSS).
// Both in RSS (what an operator sees: freed-but-kept heap pages and allocator fragmentation
// included) and live (heapUsed + external after full collections: what the data costs), beside
// the previous revision's figures (BENCHMARKS.md, 139b706, hard-coded below). Peak = the
// highest RSS (VmHWM, reset after the baseline) while the values were taken in, over the
// baseline: where a matcher's build temporaries show.
//
// Two variants of `shared+own` at 0, 1,000 and 10,000: the young generation capped
// (--max-semi-space-size=4, as the agent could be run), and Node's defaults measured after 15 s
// of idling once delivered (V8's memory reducer has then given back the young generation the
// burst grew: what a running agent keeps). The issue's figures are printed for both.
//
// The idle real process (the built agent binary and its provider processes) is measured by
// footprint.bench.mjs.
//
// Run through `npm run bench -- bench/memory.bench` (builds first) or, after `npx nx run @dso/agent:build`,
// `node apps/agent/bench/memory.bench.mjs`. Creates nothing but its child processes. A report,
// not a test: exits 0 whatever the figures.
import { spawn } from 'node:child_process';
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
import { checkpoint, handleInterrupts, mib, wasInterrupted } from './agent-process.mjs';

const SIZES = [0, 1_000, 5_000, 10_000];
const MIXES = ['shared+own', 'shared'];
/** The issue's targets (issue 17), MB (10^6 bytes) of RSS. */
const TARGET = { marginalMbPer1000: 5, first1000Mb: 15 };
/** The seed's "expected memory per 1000 managed containers: ~10-50MB". */
const SEED_MB_PER_1000 = { low: 10, high: 50 };
/**
 * The previous revision's figures, from BENCHMARKS.md ("Memory", revision 139b706, 2026-11-28
 * 03:41 UTC, medians of 3 processes), in MB: not measured by this run.
 */
const PREVIOUS = {
  label: 'previous (BENCHMARKS.md, 139b706)',
  marginal: { rss: 9.02, live: 6.99 },
  first1000: { rss: 46.46, live: 7.68 },
  redactorMarginal: { rss: 7.7, live: 5.56 },
  redactorFirst1000: { rss: 37.36, live: 5.77 },
  /** The redactor alone at 10,000 + 1 values: RSS Δ after (the peak was not recorded). */
  redactor10000RssMb: 106.7,
};

/**
 * V8 grows its young generation (up to 2 x 16 MiB semi-spaces by default) under a burst of
 * short-lived allocations, such as the first deliveries, and the pages it touched stay in RSS.
 * A variant of `shared+own` caps it, as the agent's process could be run, to show that share.
 */
const YOUNG_FLAGS = ['--max-semi-space-size=4'];
const YOUNG_SIZES = [0, 1_000, 10_000];
/**
 * A variant of `shared+own` measured after idling this long once delivered, with Node's
 * defaults: V8's memory reducer shrinks the young generation ~10 s after a burst, so this is what
 * a running agent keeps for its fleet, the burst's transient pages given back.
 */
const SETTLE_MS = 15_000;
const SETTLED_SIZES = [0, 1_000, 10_000];

const CHILD = fileURLToPath(new URL('./memory-child.mjs', import.meta.url));
const MB = 1e6;

let running;
handleInterrupts('nothing to remove: this benchmark creates only its child processes');
// A child is stopped at once (then main reports the interruption); it holds nothing to clean.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => running?.kill('SIGKILL'));
}

/** One memory-child process; resolves with the JSON line it prints. */
function measureChild(size, mix, flags = [], env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...flags, '--expose-gc', CHILD, String(size), mix], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
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
  const deltas = new Map(); // `${size} ${mix}` → arrays of figures, one per run
  const add = (key, result) => {
    const entry = deltas.get(key) ?? {
      rss: [],
      heap: [],
      external: [],
      live: [],
      peak: [],
      ms: [],
      baselineRss: [],
    };
    const d = (field) => result.after[field] - result.baseline[field];
    entry.rss.push(d('rss'));
    entry.heap.push(d('heapUsed'));
    entry.external.push(d('external'));
    entry.live.push(d('heapUsed') + d('external'));
    // The peak since the baseline, over the baseline's RSS.
    entry.peak.push(result.after.peak - result.baseline.rss);
    entry.ms.push(result.deliveredMs);
    entry.baselineRss.push(result.baseline.rss);
    entry.distinctSecrets = result.distinctSecrets;
    entry.redactorStats = result.redactorStats;
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
    for (const size of YOUNG_SIZES) {
      checkpoint();
      add(`${size} young`, await measureChild(size, 'shared+own', YOUNG_FLAGS));
    }
    for (const size of SETTLED_SIZES) {
      checkpoint();
      add(
        `${size} settled`,
        await measureChild(size, 'shared+own', [], { BENCH_MEMORY_SETTLE_MS: String(SETTLE_MS) }),
      );
    }
    log(`round ${run + 1}/${runs}`);
  }
  const summary = new Map();
  for (const [key, entry] of deltas) {
    summary.set(key, {
      distinctSecrets: entry.distinctSecrets,
      redactorStats: entry.redactorStats,
      rss: median(entry.rss),
      heap: median(entry.heap),
      external: median(entry.external),
      live: median(entry.live),
      peak: median(entry.peak),
      ms: median(entry.ms),
      baselineRss: median(entry.baselineRss),
      rssRange: [Math.min(...entry.rss), Math.max(...entry.rss)],
    });
  }
  return summary;
}

const f1 = (value) => value.toFixed(1);
const f2 = (value) => value.toFixed(2);
const ratio = (value, previous) => `${f2(value / previous)}x`;

async function main() {
  const runs = runsFromEnv(3, 20);
  const loadAtStart = loadAverage();
  log(`sizes ${SIZES.join(', ')}, mixes ${MIXES.join(', ')}, ${runs} fresh process(es) each`);
  const lib = await library(runs);
  const host = { ...(await machine()), loadAtStart, loadAtEnd: loadAverage() };

  const idle = lib.get('0');
  console.log('');
  console.log(
    `@dso/agent memory: createAgent over a synthetic engine, ${runs} fresh process(es) per size (medians)`,
  );
  printMachine(host, [`kernel ${host.kernel}, Node ${host.node}`, `revision ${host.revision}`]);
  console.log('');
  const rows = [
    ['0 (agent started, idle)', idle],
    ...SIZES.filter((size) => size > 0).flatMap((size) => [
      ...MIXES.map((mix) => [`${size.toLocaleString('en')}, ${mix}`, lib.get(`${size} ${mix}`)]),
      [
        `(no agent) redactor alone, ${size.toLocaleString('en')} + 1 values`,
        lib.get(`${size} redactor`),
      ],
    ]),
    ...YOUNG_SIZES.map((size) => [
      `${size.toLocaleString('en')}, shared+own, ${YOUNG_FLAGS.join(' ')}`,
      lib.get(`${size} young`),
    ]),
    ...SETTLED_SIZES.map((size) => [
      `${size.toLocaleString('en')}, shared+own, after ${SETTLE_MS / 1000} s idle`,
      lib.get(`${size} settled`),
    ]),
  ];
  printTable(
    [
      'containers, secrets',
      'distinct secrets',
      'RSS Δ MiB',
      'RSS Δ range',
      'peak Δ MiB',
      'heapUsed Δ MiB',
      'external Δ MiB',
      'deliveries s',
    ],
    rows.map(([label, entry]) => [
      label,
      entry.distinctSecrets.toLocaleString('en'),
      f1(mib(entry.rss)),
      entry.rssRange.map((value) => f1(mib(value))).join('-'),
      f1(mib(entry.peak)),
      f1(mib(entry.heap)),
      f1(mib(entry.external)),
      f2(entry.ms / 1000),
    ]),
  );
  console.log(
    `baseline (everything loaded, no agent): RSS ${f1(mib(idle.baselineRss))} MiB; Δ = after − baseline in the same process; ` +
      'peak Δ = highest RSS while delivering − baseline; live = heapUsed + external after three full collections',
  );
  console.log('');

  // The marginal cost, from 1,000 to 10,000 containers, and the first 1,000 (what the step
  // from 0 to 1,000 adds, one-off growth of the process included).
  const marginal = (mix, field) =>
    (lib.get(`10000 ${mix}`)[field] - lib.get(`1000 ${mix}`)[field]) / 9 / MB;
  const first = (mix, field) =>
    (lib.get(`1000 ${mix}`)[field] -
      (mix === 'redactor'
        ? 0
        : lib.get(mix === 'young' || mix === 'settled' ? `0 ${mix}` : '0')[field])) /
    MB;
  const figures = {
    marginal: { rss: marginal('shared+own', 'rss'), live: marginal('shared+own', 'live') },
    first1000: { rss: first('shared+own', 'rss'), live: first('shared+own', 'live') },
    sharedMarginal: { rss: marginal('shared', 'rss'), live: marginal('shared', 'live') },
    sharedFirst1000: { rss: first('shared', 'rss'), live: first('shared', 'live') },
    redactorMarginal: { rss: marginal('redactor', 'rss'), live: marginal('redactor', 'live') },
    redactorFirst1000: { rss: first('redactor', 'rss'), live: first('redactor', 'live') },
    youngMarginal: { rss: marginal('young', 'rss'), live: marginal('young', 'live') },
    youngFirst1000: { rss: first('young', 'rss'), live: first('young', 'live') },
    settledMarginal: { rss: marginal('settled', 'rss'), live: marginal('settled', 'live') },
    settledFirst1000: { rss: first('settled', 'rss'), live: first('settled', 'live') },
  };
  const met = {
    marginal: figures.marginal.rss < TARGET.marginalMbPer1000,
    first1000: figures.first1000.rss < TARGET.first1000Mb,
  };
  const verdict = (ok) => (ok ? 'met' : 'NOT met');
  printTable(
    [
      'figure (MB = 10^6 bytes)',
      'RSS MB',
      'live MB',
      'target (RSS)',
      PREVIOUS.label,
      'RSS vs previous',
    ],
    [
      [
        'per 1,000 containers, marginal (1,000 → 10,000), one own secret each',
        f2(figures.marginal.rss),
        f2(figures.marginal.live),
        `< ${TARGET.marginalMbPer1000}: ${verdict(met.marginal)}`,
        `${PREVIOUS.marginal.rss} RSS, ${PREVIOUS.marginal.live} live`,
        ratio(figures.marginal.rss, PREVIOUS.marginal.rss),
      ],
      [
        'the first 1,000 containers (Δ at 1,000 − Δ at 0), one own secret each',
        f2(figures.first1000.rss),
        f2(figures.first1000.live),
        `< ${TARGET.first1000Mb}: ${verdict(met.first1000)}`,
        `${PREVIOUS.first1000.rss} RSS, ${PREVIOUS.first1000.live} live`,
        ratio(figures.first1000.rss, PREVIOUS.first1000.rss),
      ],
      [
        `per 1,000, marginal, one own secret each, ${YOUNG_FLAGS.join(' ')}`,
        f2(figures.youngMarginal.rss),
        f2(figures.youngMarginal.live),
        `< ${TARGET.marginalMbPer1000}: ${verdict(figures.youngMarginal.rss < TARGET.marginalMbPer1000)}`,
        '',
        '',
      ],
      [
        `the first 1,000, one own secret each, ${YOUNG_FLAGS.join(' ')}`,
        f2(figures.youngFirst1000.rss),
        f2(figures.youngFirst1000.live),
        `< ${TARGET.first1000Mb}: ${verdict(figures.youngFirst1000.rss < TARGET.first1000Mb)}`,
        '',
        '',
      ],
      [
        `per 1,000, marginal, one own secret each, after ${SETTLE_MS / 1000} s idle`,
        f2(figures.settledMarginal.rss),
        f2(figures.settledMarginal.live),
        `< ${TARGET.marginalMbPer1000}: ${verdict(figures.settledMarginal.rss < TARGET.marginalMbPer1000)}`,
        '',
        '',
      ],
      [
        `the first 1,000, one own secret each, after ${SETTLE_MS / 1000} s idle`,
        f2(figures.settledFirst1000.rss),
        f2(figures.settledFirst1000.live),
        `< ${TARGET.first1000Mb}: ${verdict(figures.settledFirst1000.rss < TARGET.first1000Mb)}`,
        '',
        '',
      ],
      [
        'per 1,000, marginal, shared secrets only (the agent per container)',
        f2(figures.sharedMarginal.rss),
        f2(figures.sharedMarginal.live),
        '',
        '1.10 RSS',
        ratio(figures.sharedMarginal.rss, 1.1),
      ],
      [
        'the first 1,000, shared secrets only',
        f2(figures.sharedFirst1000.rss),
        f2(figures.sharedFirst1000.live),
        '',
        '',
        '',
      ],
      [
        'redactor alone: per 1,000 values, marginal',
        f2(figures.redactorMarginal.rss),
        f2(figures.redactorMarginal.live),
        '',
        `${PREVIOUS.redactorMarginal.rss} RSS, ${PREVIOUS.redactorMarginal.live} live`,
        ratio(figures.redactorMarginal.rss, PREVIOUS.redactorMarginal.rss),
      ],
      [
        'redactor alone: the first 1,000 values',
        f2(figures.redactorFirst1000.rss),
        f2(figures.redactorFirst1000.live),
        '',
        `${PREVIOUS.redactorFirst1000.rss} RSS, ${PREVIOUS.redactorFirst1000.live} live`,
        ratio(figures.redactorFirst1000.rss, PREVIOUS.redactorFirst1000.rss),
      ],
    ],
  );
  const redactor10k = lib.get('10000 redactor');
  console.log(
    `the redactor alone at 10,000 + 1 values: peak RSS ${f1(redactor10k.peak / MB)} MB over the baseline ` +
      `(RSS after ${f1(redactor10k.rss / MB)} MB; ${PREVIOUS.label}: ${PREVIOUS.redactor10000RssMb} MB after); ` +
      `its structures: ${JSON.stringify(redactor10k.redactorStats)}`,
  );
  console.log(
    `seed: ${SEED_MB_PER_1000.low}-${SEED_MB_PER_1000.high} MB per 1,000 containers; ` +
      `the previous figures are from an earlier run (not this one): compare them loosely`,
  );

  const libRecord = Object.fromEntries(
    [...lib].map(([key, entry]) => [
      key,
      {
        distinctSecrets: entry.distinctSecrets,
        rssDeltaMiB: round2(mib(entry.rss)),
        peakDeltaMiB: round2(mib(entry.peak)),
        heapUsedDeltaMiB: round2(mib(entry.heap)),
        externalDeltaMiB: round2(mib(entry.external)),
        deliveriesMs: Math.round(entry.ms),
      },
    ]),
  );
  const rounded = (pair) => ({ rss: round2(pair.rss), live: round2(pair.live) });
  printBenchJson({
    bench: 'agent/memory',
    at: new Date().toISOString(),
    runs,
    machine: host,
    library: libRecord,
    mbPer1000Marginal: rounded(figures.marginal),
    mbFirst1000: rounded(figures.first1000),
    sharedOnly: {
      mbPer1000Marginal: rounded(figures.sharedMarginal),
      mbFirst1000: rounded(figures.sharedFirst1000),
    },
    youngGenerationCapped: {
      flags: YOUNG_FLAGS,
      mbPer1000Marginal: rounded(figures.youngMarginal),
      mbFirst1000: rounded(figures.youngFirst1000),
    },
    settled: {
      settleMs: SETTLE_MS,
      mbPer1000Marginal: rounded(figures.settledMarginal),
      mbFirst1000: rounded(figures.settledFirst1000),
    },
    redactorAlone: {
      mbPer1000Marginal: rounded(figures.redactorMarginal),
      mbFirst1000: rounded(figures.redactorFirst1000),
      peakMbAt10000: round2(redactor10k.peak / MB),
      stats10000: redactor10k.redactorStats,
    },
    target: { ...TARGET, met },
    previous: PREVIOUS,
    seed: { mbPer1000: SEED_MB_PER_1000 },
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
