#!/usr/bin/env node
// Benchmark: what redacting a log line costs with 10,000 registered values, against what
// producing the line costs and against the naive approach, measured in the same run.
//
// 10,000 random values of 16 to 48 characters are registered; then 2,000 distinct 1 KiB JSON
// log lines (pino's shape: agent events, provider calls, errors with stacks; 5% hold a
// registered value, raw or base64, 2% an unregistered credential for the patterns) are
// redacted, pass after pass, by a redactor with the credential patterns on and one with them
// off, the two interleaved so drift (other load) falls on both alike. Reported: lines/s, MB/s,
// median and p99 per line. Baselines: (b) JSON.stringify of the same log objects, the cost of
// producing the line at all; (a) a loop of `line.includes(value)` over all 10,000 values per
// line, the approach a redactor must not take, on a 100-line sample (it is that slow). Every
// redacted line is checked: no embedded value left, still one JSON document.
//
// The previous revision's redactor (BENCH_PREVIOUS_REV, default the commit before the anchor
// table: whole forms in Aho-Corasick automata), bundled from git with esbuild (tsup's bundler,
// already in the workspace) into node_modules/.cache/dso-bench, runs the same lines in the same
// passes, patterns on: the ratio to it is this run's, not one against figures from another day.
//
// Imports the BUILT package by its name, so it measures what ships: run it through
// `npm run bench` (builds first), or `node packages/core/bench/redaction.bench.mjs` after a
// build. BENCH_RUNS sets the measured passes over the 2,000 lines (default 5). A report, not a
// test: exits 0 whatever the figures, non-zero only when redaction let something through.
import { randomBytes, randomInt } from 'node:crypto';
import { createRedactor, REDACTED } from '@dso/core';
import {
  bundlePreviousRedactor,
  loadAverage,
  log,
  machine,
  percentile,
  printBenchJson,
  printMachine,
  printTable,
  round2,
  runsFromEnv,
} from '../../../tools/bench-lib.mjs';

const VALUES = 10_000;
const LINES = 2_000;
const LINE_BYTES = 1_024;
const NAIVE_LINES = 100;
const WARMUP_PASSES = 1;
const SHARE_WITH_VALUE = 0.05;
const SHARE_WITH_CREDENTIAL = 0.02;

/** The commit before the anchor table (60fe449): the redactor of BENCHMARKS.md's figures. */
const PREVIOUS_REV = process.env.BENCH_PREVIOUS_REV ?? 'ca0ee577160245fdbc5b1c1dda85f0ea2c28fbcb';
/** BENCHMARKS.md's "Redaction" figures (revision 139b706): the same program, another day. */
const PREVIOUS_RECORDED = {
  linesPerSecondPatternsOn: 13_302,
  registerAndBuildMs: 1_000,
  rssMiB: 87,
};

/** The previous revision's `createRedactor`, bundled from git. */
async function previousCreateRedactor() {
  return (await import(await bundlePreviousRedactor(PREVIOUS_REV))).createRedactor;
}

// Printable ASCII but the quote and backslash, so a value is the same raw and JSON-escaped
// and the check below can look for it as is; its other encoded forms are registered anyway.
const VALUE_ALPHABET =
  'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&()*+,-./:;<=>?@[]^_{|}~';

function randomValue() {
  const length = randomInt(16, 49);
  const bytes = randomBytes(length);
  let value = '';
  for (const byte of bytes) value += VALUE_ALPHABET[byte % VALUE_ALPHABET.length];
  return value;
}

const hex = (bytes) => randomBytes(bytes).toString('hex');
const pick = (list) => list[randomInt(list.length)];
const PROVIDERS = ['vault', 'aws-sm', 'local', 'azure-kv', 'gcp-sm'];
const MESSAGES = [
  'secrets injected',
  'container started',
  'container died',
  'provider request finished',
  'cache hit',
  'rotation scheduled',
  'event stream reconnected',
];

/** A credential the values do not hold, in a shape one of the patterns knows (fake, made here). */
function unregisteredCredential() {
  const alnum = () => randomBytes(30).toString('base64url').replace(/[-_]/g, 'x');
  return pick([
    () => `connecting to postgres://app:${alnum().slice(0, 16)}@db.internal:5432/app`,
    () => `retrying with password=${alnum().slice(0, 20)}`,
    () => `token ghp_${alnum().slice(0, 36)}`,
    () => `Authorization: Bearer ${alnum()}`,
  ])();
}

/**
 * A pino-shaped record, padded to exactly `LINE_BYTES` when serialised, and what it embeds
 * that redaction must remove.
 */
function logRecord(values) {
  const time = Date.UTC(2025, 0, 1) + randomInt(86_400_000);
  const record = {
    level: pick([20, 30, 30, 30, 40, 50]),
    time,
    pid: 4242,
    hostname: 'dso-node-1',
    name: 'agent',
    msg: pick(MESSAGES),
    provider: pick(PROVIDERS),
    containerId: hex(32),
    reference: `dsofile://${pick(PROVIDERS)}:app/${pick(['db', 'api', 'cache'])}#${pick(['password', 'token', 'key'])}`,
    files: randomInt(1, 10),
    durationMs: round2(Math.random() * 200),
    image: `registry.example.com/team/app@sha256:${hex(32)}`,
    labels: { 'com.docker.compose.project': 'shop', 'com.docker.compose.service': 'web' },
  };
  const embedded = [];
  const roll = Math.random();
  if (roll < SHARE_WITH_VALUE) {
    const value = pick(values);
    const form = Math.random() < 0.5 ? value : Buffer.from(value).toString('base64');
    embedded.push(form);
    if (Math.random() < 0.5) record.msg = `upstream said ${form}`;
    else record.err = errorWith(`connect failed for ${form}`);
  } else if (roll < SHARE_WITH_VALUE + SHARE_WITH_CREDENTIAL) {
    record.msg = unregisteredCredential();
  } else if (Math.random() < 0.15) {
    record.err = errorWith('exec exited non-zero');
  }
  // Pad with a plausible field to reach the size exactly (every character here is ASCII).
  record.detail = '';
  const missing = LINE_BYTES - JSON.stringify(record).length;
  if (missing > 0)
    record.detail = 'event detail '.repeat(Math.ceil(missing / 13)).slice(0, missing);
  return { record, embedded };
}

function errorWith(message) {
  return {
    type: 'DsoError',
    message,
    code: 'DSO_DOCKER_EXEC_FAILED',
    stack: `DsoError: ${message}\n    at writeFiles (file:///app/node_modules/@dso/docker-runtime/dist/index.js:812:11)`,
  };
}

function summarize(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    n: sorted.length,
    median: percentile(sorted, 0.5),
    p99: percentile(sorted, 0.99),
    max: sorted[sorted.length - 1],
  };
}

/** Times `fn(line)` for each line; returns per-line microseconds and the total seconds. */
function timeEach(lines, fn, sink) {
  const micros = new Float64Array(lines.length);
  const started = process.hrtime.bigint();
  for (let i = 0; i < lines.length; i++) {
    const t0 = process.hrtime.bigint();
    sink.last = fn(lines[i]);
    micros[i] = Number(process.hrtime.bigint() - t0) / 1_000;
  }
  return { micros, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

async function main() {
  if (typeof createRedactor !== 'function' || typeof REDACTED !== 'string') {
    throw new Error('@dso/core does not export createRedactor and REDACTED: build it first');
  }
  const runs = runsFromEnv();
  const loadAtStart = loadAverage();
  log(
    `${VALUES} values, ${LINES} lines of ${LINE_BYTES} B, ${WARMUP_PASSES} warm-up + ${runs} measured passes`,
  );

  const values = Array.from({ length: VALUES }, randomValue);
  const previous = await previousCreateRedactor();
  const redactors = {};
  const registration = {};
  // The previous one last: its build peak would otherwise count in this revision's RSS growth.
  for (const [which, create, patterns] of [
    ['on', createRedactor, true],
    ['off', createRedactor, false],
    ['previous', previous, true],
  ]) {
    const rssBefore = process.memoryUsage().rss;
    const started = process.hrtime.bigint();
    const redactor = create({ patterns });
    for (const value of values) redactor.register(value);
    const registeredMs = Number(process.hrtime.bigint() - started) / 1e6;
    redactor.redact(''); // the previous revision builds its automata here
    const builtMs = Number(process.hrtime.bigint() - started) / 1e6;
    redactors[which] = redactor;
    registration[which] = {
      registerMs: round2(registeredMs),
      registerAndBuildMs: round2(builtMs),
      rssGrowthMiB: round2((process.memoryUsage().rss - rssBefore) / 2 ** 20),
    };
  }

  const generated = Array.from({ length: LINES }, () => logRecord(values));
  const records = generated.map(({ record }) => record);
  const lines = records.map((record) => JSON.stringify(record));
  const bytes = lines.reduce((sum, line) => sum + Buffer.byteLength(line), 0);

  // Correctness first: a fast redactor that lets a value through is worth nothing.
  let leaks = 0;
  let changed = 0;
  for (const [index, line] of lines.entries()) {
    for (const which of ['on', 'off', 'previous']) {
      const redacted = redactors[which].redact(line);
      if (redacted !== line && which === 'on') changed++;
      JSON.parse(redacted);
      const kept = redacted.split(REDACTED);
      for (const form of generated[index].embedded) {
        if (kept.some((piece) => piece.includes(form))) leaks++;
      }
    }
  }
  if (leaks > 0) throw new Error(`${leaks} embedded values survived redaction`);

  const sink = { last: '' };
  const samples = { on: [], off: [], previous: [], stringify: [] };
  const seconds = { on: 0, off: 0, previous: 0, stringify: 0 };
  for (let pass = 0; pass < WARMUP_PASSES + runs; pass++) {
    // Rotate which redactor goes first, so none always runs on a warmer cache.
    const order = ['on', 'off', 'previous'];
    for (let turn = 0; turn < pass % 3; turn++) order.push(order.shift());
    for (const which of order) {
      const result = timeEach(lines, redactors[which].redact, sink);
      if (pass >= WARMUP_PASSES) {
        samples[which].push(...result.micros);
        seconds[which] += result.seconds;
      }
    }
    const result = timeEach(records, JSON.stringify, sink);
    if (pass >= WARMUP_PASSES) {
      samples.stringify.push(...result.micros);
      seconds.stringify += result.seconds;
    }
    log(`pass ${pass + 1}/${WARMUP_PASSES + runs}`);
  }

  // Baseline (a): every value searched for in every line, raw form only (a real naive
  // redactor would also search for each encoded form, several times this).
  const naiveSample = lines.slice(0, NAIVE_LINES);
  const naive = timeEach(
    naiveSample,
    (line) => {
      let out = line;
      for (const value of values) if (out.includes(value)) out = out.replaceAll(value, REDACTED);
      return out;
    },
    sink,
  );

  const measured = runs * LINES;
  const row = (id, label, stats, totalSeconds, count) => ({
    id,
    label,
    lines: count,
    linesPerSecond: Math.round(count / totalSeconds),
    mbPerSecond: round2((count * (bytes / LINES)) / totalSeconds / 1e6),
    medianUs: round2(stats.median),
    p99Us: round2(stats.p99),
    maxUs: round2(stats.max),
  });
  const rows = [
    row(
      'redact-patterns-on',
      'redact, patterns on (default)',
      summarize(samples.on),
      seconds.on,
      measured,
    ),
    row(
      'redact-patterns-off',
      'redact, patterns off',
      summarize(samples.off),
      seconds.off,
      measured,
    ),
    row(
      'previous-patterns-on',
      `P: previous revision (${PREVIOUS_REV.slice(0, 7)}), patterns on`,
      summarize(samples.previous),
      seconds.previous,
      measured,
    ),
    row(
      'baseline-stringify',
      'B: JSON.stringify of the record',
      summarize(samples.stringify),
      seconds.stringify,
      measured,
    ),
    row(
      'baseline-naive',
      `A: includes() x ${VALUES} values`,
      summarize(naive.micros),
      naive.seconds,
      NAIVE_LINES,
    ),
  ];
  const byId = Object.fromEntries(rows.map((entry) => [entry.id, entry]));
  const ratio = (a, b) => round2(byId[a].medianUs / byId[b].medianUs);
  const ratios = {
    patternsOnVsStringify: ratio('redact-patterns-on', 'baseline-stringify'),
    patternsOffVsStringify: ratio('redact-patterns-off', 'baseline-stringify'),
    patternsOnVsOff: ratio('redact-patterns-on', 'redact-patterns-off'),
    naiveVsPatternsOn: ratio('baseline-naive', 'redact-patterns-on'),
    patternsOnVsPrevious: ratio('redact-patterns-on', 'previous-patterns-on'),
    linesPerSecondVsPrevious: round2(
      byId['redact-patterns-on'].linesPerSecond / byId['previous-patterns-on'].linesPerSecond,
    ),
    linesPerSecondVsRecorded: round2(
      byId['redact-patterns-on'].linesPerSecond / PREVIOUS_RECORDED.linesPerSecondPatternsOn,
    ),
  };
  const host = { ...(await machine()), loadAtStart, loadAtEnd: loadAverage() };

  console.log('');
  console.log(
    `@dso/core redaction: ${VALUES} registered values (16-48 chars), ${LINES} JSON log lines of ${LINE_BYTES} B, ${runs} measured passes`,
  );
  printMachine(host, [`kernel ${host.kernel}, Node ${host.node}, revision ${host.revision}`]);
  console.log(
    `registering ${VALUES} values: ${registration.on.registerAndBuildMs} ms, memory +${registration.on.rssGrowthMiB} MiB RSS; ` +
      `previous revision: ${registration.previous.registerAndBuildMs} ms with its build ` +
      `(${registration.previous.registerMs} ms registering), +${registration.previous.rssGrowthMiB} MiB RSS ` +
      `(in one process, after this revision's: see memory.bench.mjs for clean figures)`,
  );
  console.log(
    `lines changed by redaction: ${changed} of ${LINES}; every embedded value removed, every line still JSON`,
  );
  console.log('');
  const header = ['case', 'lines', 'lines/s', 'MB/s', 'median us', 'p99 us', 'max us'];
  const table = rows.map((entry) => [
    entry.label,
    String(entry.lines),
    String(entry.linesPerSecond),
    entry.mbPerSecond.toFixed(2),
    entry.medianUs.toFixed(2),
    entry.p99Us.toFixed(2),
    entry.maxUs.toFixed(1),
  ]);
  printTable(header, table);
  console.log('');
  console.log(
    `redact (patterns on) costs ${ratios.patternsOnVsStringify}x producing the line (JSON.stringify); ` +
      `patterns off ${ratios.patternsOffVsStringify}x; patterns add ${round2((ratios.patternsOnVsOff - 1) * 100)}%`,
  );
  console.log(
    `the naive includes() loop over ${VALUES} values is ${ratios.naiveVsPatternsOn}x slower per line than redact with patterns on`,
  );
  console.log(
    `against the previous revision in this run: ${ratios.linesPerSecondVsPrevious}x its lines/s (median per line ` +
      `${ratios.patternsOnVsPrevious}x); against BENCHMARKS.md's ${PREVIOUS_RECORDED.linesPerSecondPatternsOn} lines/s ` +
      `(139b706, another day): ${ratios.linesPerSecondVsRecorded}x`,
  );
  printBenchJson({
    bench: 'core/redaction',
    at: new Date().toISOString(),
    runs,
    warmupPasses: WARMUP_PASSES,
    values: VALUES,
    lineBytes: LINE_BYTES,
    distinctLines: LINES,
    linesChanged: changed,
    machine: host,
    registration,
    previousRev: PREVIOUS_REV,
    previousRecorded: PREVIOUS_RECORDED,
    unit: 'us',
    cases: rows,
    ratios,
  });
}

main().catch((error) => {
  log(error.stack ?? String(error));
  process.exit(1);
});
