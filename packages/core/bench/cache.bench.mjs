#!/usr/bin/env node
// Benchmark: what the memory cache costs, against bare Map work measured in the same run.
//
// Three cases, each repeated for BENCH_RUNS rounds (default 5; the median is reported):
//   hit       `await cache.get(key)` of a warm 64-byte entry, the returned copy disposed by the
//             caller, against baseline A (a bare `Map.get` plus a copy of the same bytes, zeroed
//             after use), baseline B (A inside an async function, awaited: what the asynchronous
//             contract costs by itself) and baseline C (A's copy wrapped in a SecretValue and
//             disposed: what the returned type costs by itself)
//   set       `cache.set` of 64-byte values over 20,000 keys into a cache bounded at 10,000
//             entries, so half the writes also evict (and zero) an entry
//   getOrLoad 1,000 callers at once on one cold key, the loader resolving after a setImmediate,
//             20 times a round: how many loads ran (target: 1) and how long until every caller
//             had its value, against a hand-made single flight (one shared promise, one copy
//             per caller) run alternately with it
// Prints machine facts, a table, then one `BENCH_JSON {...}` line for the record.
//
// Imports the BUILT package by its name, so it measures what ships: run it through
// `npm run bench` (builds first), or `node packages/core/bench/cache.bench.mjs` after a build.
// A report, not a test: exits 0 whatever the figures, non-zero only when something failed.
import { cacheKey, createMemoryCache } from '@dso/core';
import { SecretValue } from '@dso/provider-sdk';
import {
  loadAverage,
  log,
  machine,
  median,
  printBenchJson,
  printMachine,
  round2,
  runsFromEnv,
} from '../../../tools/bench-lib.mjs';

const HIT_OPS = 1_000_000;
const SET_OPS = 200_000;
const SET_KEYS = 20_000;
const SET_MAX_ENTRIES = 10_000;
const CALLERS = 1_000;
/** Stampedes per round: one takes a few ms, so a single GC pause would decide a lone sample. */
const STAMPEDES_PER_ROUND = 20;
const VALUE_BYTES = 64;
/** The target for 1,000 concurrent callers on one key. */
const TARGET_LOADS = 1;

const valueBytes = () => Uint8Array.from({ length: VALUE_BYTES }, (_, index) => (index * 7) & 0xff);
const secret = () => ({
  value: SecretValue.fromBytes(valueBytes()),
  version: '1',
  provider: 'bench',
});
const nowNs = () => process.hrtime.bigint();
const nsPerOp = (start, ops) => Number(nowNs() - start) / ops;

/** `await cache.get` of a warm key; the caller disposes the copy it got, as callers must. */
async function hitRound(cache, key, ops) {
  let bytes = 0;
  const start = nowNs();
  for (let i = 0; i < ops; i++) {
    const entry = await cache.get(key);
    bytes += entry.value.byteLength;
    entry.value.dispose();
  }
  const result = nsPerOp(start, ops);
  if (bytes !== ops * VALUE_BYTES) throw new Error('hit round missed');
  return result;
}

/** Baseline A: a bare Map.get and a copy of the same bytes, zeroed after use. */
function mapRound(map, key, ops) {
  let bytes = 0;
  const start = nowNs();
  for (let i = 0; i < ops; i++) {
    const copy = map.get(key).slice();
    bytes += copy.byteLength;
    copy.fill(0);
  }
  const result = nsPerOp(start, ops);
  if (bytes !== ops * VALUE_BYTES) throw new Error('map round missed');
  return result;
}

/** Baseline C: baseline A with the copy wrapped in a SecretValue, the type a cache returns. */
function secretValueRound(map, key, ops) {
  let bytes = 0;
  const start = nowNs();
  for (let i = 0; i < ops; i++) {
    const copy = SecretValue.fromBytes(map.get(key));
    bytes += copy.byteLength;
    copy.dispose();
  }
  const result = nsPerOp(start, ops);
  if (bytes !== ops * VALUE_BYTES) throw new Error('secret value round missed');
  return result;
}

/** Baseline B: baseline A behind an async function, awaited. */
async function asyncMapRound(map, key, ops) {
  const get = async (k) => map.get(k).slice();
  let bytes = 0;
  const start = nowNs();
  for (let i = 0; i < ops; i++) {
    const copy = await get(key);
    bytes += copy.byteLength;
    copy.fill(0);
  }
  const result = nsPerOp(start, ops);
  if (bytes !== ops * VALUE_BYTES) throw new Error('async map round missed');
  return result;
}

async function setRound(ops) {
  const cache = createMemoryCache({ maxEntries: SET_MAX_ENTRIES });
  const keys = Array.from({ length: SET_KEYS }, (_, index) => cacheKey('bench', `app/s${index}`));
  const secrets = Array.from({ length: 64 }, secret);
  const start = nowNs();
  for (let i = 0; i < ops; i++) await cache.set(keys[i % SET_KEYS], secrets[i & 63]);
  const perOp = nsPerOp(start, ops);
  const stats = cache.stats();
  await cache.close();
  for (const value of secrets) value.value.dispose();
  return { perOp, evictions: stats.evictions, entries: stats.entries };
}

/** 1,000 callers on one cold key; the loader answers after one turn of the event loop. */
async function stampedeRound(round) {
  const cache = createMemoryCache();
  let loads = 0;
  const loader = async () => {
    loads++;
    await new Promise((resolve) => setImmediate(resolve));
    return secret();
  };
  const key = cacheKey('bench', `app/cold-${round}`);
  const start = nowNs();
  const results = await Promise.all(
    Array.from({ length: CALLERS }, () => cache.getOrLoad(key, loader)),
  );
  const ms = Number(nowNs() - start) / 1e6;
  const distinct = new Set(results.map((result) => result.value.reveal())).size;
  for (const result of results) result.value.dispose();
  const { coalesced } = cache.stats();
  await cache.close();
  if (distinct !== CALLERS) throw new Error('callers shared a buffer');
  return { ms, loads, coalesced };
}

/** The same stampede through one shared promise by hand: no cache, one copy per caller. */
async function bareStampedeRound() {
  let loads = 0;
  let shared;
  const load = async () => {
    loads++;
    await new Promise((resolve) => setImmediate(resolve));
    return valueBytes();
  };
  const call = async () => {
    shared ??= load();
    return (await shared).slice();
  };
  const start = nowNs();
  const results = await Promise.all(Array.from({ length: CALLERS }, call));
  const ms = Number(nowNs() - start) / 1e6;
  for (const copy of results) copy.fill(0);
  if (loads !== 1) throw new Error('bare single flight loaded more than once');
  return ms;
}

async function main() {
  const runs = runsFromEnv();
  const loadAtStart = loadAverage();
  const key = cacheKey('bench', 'app/hot');
  const cache = createMemoryCache();
  await cache.set(key, secret());
  const map = new Map([[key, valueBytes()]]);

  log('warming up');
  await hitRound(cache, key, HIT_OPS / 10);
  mapRound(map, key, HIT_OPS / 10);
  secretValueRound(map, key, HIT_OPS / 10);
  await asyncMapRound(map, key, HIT_OPS / 10);
  await setRound(SET_OPS / 10);
  await stampedeRound(-1);
  await bareStampedeRound();

  const samples = { hit: [], mapA: [], mapB: [], mapC: [], set: [], stampede: [], bare: [] };
  let setFacts;
  const loadCounts = [];
  const coalescedCounts = [];
  // Cases interleave round by round, so drift (other load, GC, frequency) hits all alike.
  for (let round = 0; round < runs; round++) {
    samples.mapA.push(mapRound(map, key, HIT_OPS));
    samples.mapB.push(await asyncMapRound(map, key, HIT_OPS));
    samples.mapC.push(secretValueRound(map, key, HIT_OPS));
    samples.hit.push(await hitRound(cache, key, HIT_OPS));
    setFacts = await setRound(SET_OPS);
    samples.set.push(setFacts.perOp);
    for (let repeat = 0; repeat < STAMPEDES_PER_ROUND; repeat++) {
      const stampede = await stampedeRound(round * STAMPEDES_PER_ROUND + repeat);
      samples.stampede.push(stampede.ms);
      loadCounts.push(stampede.loads);
      coalescedCounts.push(stampede.coalesced);
      samples.bare.push(await bareStampedeRound());
    }
    log(`round ${round + 1}/${runs}`);
  }
  const hitStats = cache.stats();
  await cache.close();

  const host = {
    ...(await machine()),
    loadAtStart,
    loadAtEnd: loadAverage(),
  };
  const hit = median(samples.hit);
  const mapA = median(samples.mapA);
  const mapB = median(samples.mapB);
  const mapC = median(samples.mapC);
  const set = median(samples.set);
  const stampede = median(samples.stampede);
  const bare = median(samples.bare);
  const maxLoads = Math.max(...loadCounts);

  console.log('');
  console.log(`@dso/core memory cache: ${runs} measured rounds (median), 1 warm-up`);
  printMachine(host, [`kernel ${host.kernel}, Node ${host.node}, revision ${host.revision}`]);
  console.log('');
  const rows = [
    [
      'hit: await cache.get + dispose',
      `${HIT_OPS} ops`,
      `${hit.toFixed(0)} ns/op`,
      `${(hit / mapA).toFixed(2)}x A`,
    ],
    ['  A: Map.get + copy + zero', `${HIT_OPS} ops`, `${mapA.toFixed(0)} ns/op`, '1.00x A'],
    [
      '  B: A in an awaited async fn',
      `${HIT_OPS} ops`,
      `${mapB.toFixed(0)} ns/op`,
      `${(mapB / mapA).toFixed(2)}x A`,
    ],
    [
      '  C: A as a SecretValue',
      `${HIT_OPS} ops`,
      `${mapC.toFixed(0)} ns/op`,
      `${(mapC / mapA).toFixed(2)}x A`,
    ],
    [
      `set: ${SET_KEYS} keys, bound ${SET_MAX_ENTRIES}`,
      `${SET_OPS} ops`,
      `${set.toFixed(0)} ns/op`,
      `${Math.round(1e9 / set).toLocaleString('en')} sets/s`,
    ],
    [
      `getOrLoad: ${CALLERS} callers, 1 key`,
      `loads ${Math.min(...loadCounts)}-${maxLoads} (${loadCounts.length} runs)`,
      `${stampede.toFixed(2)} ms`,
      `${(stampede / bare).toFixed(2)}x bare`,
    ],
    ['  bare: one shared promise', 'loads 1', `${bare.toFixed(2)} ms`, '1.00x bare'],
  ];
  const widths = rows[0].map((_, column) => Math.max(...rows.map((row) => row[column].length)));
  for (const row of rows)
    console.log(row.map((cell, column) => cell.padEnd(widths[column])).join('  '));
  console.log('');
  console.log(
    `target: ${TARGET_LOADS} load for ${CALLERS} concurrent callers on one key: ` +
      `at most ${maxLoads} in ${loadCounts.length} stampedes - ` +
      `${maxLoads <= TARGET_LOADS ? 'met' : 'NOT met'}`,
  );
  console.log(
    'seed: in-memory, unencrypted, 10 min ttl, no manual invalidation, size unbounded ' +
      '(no figures published to compare with)',
  );
  printBenchJson({
    bench: 'core/cache',
    at: new Date().toISOString(),
    runs,
    machine: host,
    valueBytes: VALUE_BYTES,
    hit: {
      ops: HIT_OPS,
      nsPerOp: round2(hit),
      baselineMapNsPerOp: round2(mapA),
      baselineAsyncMapNsPerOp: round2(mapB),
      baselineSecretValueNsPerOp: round2(mapC),
      ratioToMap: round2(hit / mapA),
      ratioToAsyncMap: round2(hit / mapB),
      cacheHits: hitStats.hits,
    },
    set: {
      ops: SET_OPS,
      keys: SET_KEYS,
      maxEntries: SET_MAX_ENTRIES,
      nsPerOp: round2(set),
      opsPerSec: Math.round(1e9 / set),
      evictionsLastRound: setFacts.evictions,
    },
    getOrLoad: {
      callers: CALLERS,
      stampedes: loadCounts.length,
      maxLoads,
      minCoalesced: Math.min(...coalescedCounts),
      ms: round2(stampede),
      baselineSharedPromiseMs: round2(bare),
      ratioToBaseline: round2(stampede / bare),
      target: { maxLoads: TARGET_LOADS, met: maxLoads <= TARGET_LOADS },
    },
  });
}

try {
  await main();
} catch (error) {
  log(error.stack ?? String(error));
  process.exitCode = 1;
}
