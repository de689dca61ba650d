#!/usr/bin/env node
// Benchmark: what a provider call costs in process and across the process boundary, against a
// same-run baseline of a bare in-process call of the provider's own `resolve` (no guard).
//
// The provider (bench/echo-provider.mjs) answers every path with a fixed 64-byte value at
// once, so the figures are the SDK's and the protocol's cost, not a backend's. Four ways to
// call it, each for BENCH_RUNS rounds (default 5, after one warm-up round), interleaved round
// by round so drift hits all alike:
//   bare        `await provider.resolve()` on the object `definition.create()` returned
//   in process  `createProvider()`: config checked, capabilities cross-checked, calls guarded
//   child       `createProcessProvider()`: JSON-RPC over the child's stdio through the runner
//               (dist/runner.js), deadline and breaker on every call
// Sequential round trips (one call at a time) give p50 and p99 latency; then 64 calls kept in
// flight give the throughput. Every value is revealed, checked and disposed by the caller.
// For the child, the CPU time each side spends per call at 64 in flight is reported too (this
// process from process.cpuUsage, the child from /proc/<pid>/stat): unlike wall-clock figures it
// holds up on a loaded machine.
// Prints machine facts, a table, then one `BENCH_JSON {...}` line for the record.
//
// Imports the BUILT package by its name, so it measures what ships: run it through
// `npm run bench` (builds first), or `node packages/provider-sdk/bench/provider.bench.mjs`
// after `npx tsup` in packages/provider-sdk. A report, not a test: exits 0 whatever the
// figures, non-zero only when something failed.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createProcessProvider, createProvider } from '@dso/provider-sdk';
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
import echo, { VALUE_BYTES } from './echo-provider.mjs';

const SEQUENTIAL_CALLS = 5_000;
const CONCURRENT_CALLS = 20_000;
const IN_FLIGHT = 64;
const MODULE = fileURLToPath(new URL('./echo-provider.mjs', import.meta.url));
/** The seed's design: one connection per provider, calls serialized, 30 s timeout. */
const SEED = 'one connection per provider, serialized calls (no figures published to compare with)';

const nowNs = () => process.hrtime.bigint();
const CLOCK_TICKS_PER_SECOND = 100;

/** CPU time (user + system) of process `pid` in microseconds, from /proc; undefined elsewhere. */
function childCpuUs(pid) {
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS_PER_SECOND;
  } catch {
    // Not Linux: the child's CPU time is not reported; the other figures stand.
    return undefined;
  }
}

/** `run()` and the CPU microseconds per call it cost this process and the child. */
async function withCpu(pid, calls, run) {
  const host = process.cpuUsage();
  const child = childCpuUs(pid);
  const result = await run();
  const used = process.cpuUsage(host);
  const childAfter = childCpuUs(pid);
  return {
    result,
    hostUs: (used.user + used.system) / calls,
    childUs:
      child === undefined || childAfter === undefined ? undefined : (childAfter - child) / calls,
  };
}

function check(result) {
  if (result.value.byteLength !== VALUE_BYTES) throw new Error('wrong value size');
  result.value.dispose();
}

/** One call at a time: each call's round trip in microseconds, sorted. */
async function sequential(provider, calls) {
  const samples = new Float64Array(calls);
  for (let index = 0; index < calls; index++) {
    const start = nowNs();
    check(await provider.resolve({ path: `app/s${index & 1023}` }, {}));
    samples[index] = Number(nowNs() - start) / 1_000;
  }
  return [...samples].sort((a, b) => a - b);
}

/** `calls` calls with `inFlight` of them outstanding at any time: calls per second. */
async function concurrent(provider, calls, inFlight) {
  let started = 0;
  const start = nowNs();
  const lane = async () => {
    while (started < calls) {
      const index = started++;
      check(await provider.resolve({ path: `app/s${index & 1023}` }, {}));
    }
  };
  await Promise.all(Array.from({ length: inFlight }, lane));
  return calls / (Number(nowNs() - start) / 1e9);
}

async function main() {
  const runs = runsFromEnv();
  const loadAtStart = loadAverage();
  const bare = await echo.create({}, { name: 'bare', log: undefined, env: {} });
  const inProcess = await createProvider(echo, {}, { name: 'in-process' });
  const startedAt = nowNs();
  const child = await createProcessProvider({
    name: 'child',
    module: MODULE,
    config: {},
    onLog: (entry) => {
      if (entry.level === 'warn' || entry.level === 'error') log(`child: ${entry.message}`);
    },
  });
  const startMs = Number(nowNs() - startedAt) / 1e6;
  const cases = { bare, inProcess, child };
  try {
    log('warming up');
    for (const provider of Object.values(cases)) {
      await sequential(provider, SEQUENTIAL_CALLS / 5);
      await concurrent(provider, CONCURRENT_CALLS / 5, IN_FLIGHT);
    }
    const p50 = { bare: [], inProcess: [], child: [] };
    const p99 = { bare: [], inProcess: [], child: [] };
    const throughput = { bare: [], inProcess: [], child: [] };
    const cpu = { host: [], child: [] };
    const pid = child.state().pid;
    for (let round = 0; round < runs; round++) {
      for (const [name, provider] of Object.entries(cases)) {
        const sorted = await sequential(provider, SEQUENTIAL_CALLS);
        p50[name].push(percentile(sorted, 0.5));
        p99[name].push(percentile(sorted, 0.99));
        const measured = await withCpu(pid, CONCURRENT_CALLS, () =>
          concurrent(provider, CONCURRENT_CALLS, IN_FLIGHT),
        );
        throughput[name].push(measured.result);
        if (name === 'child') {
          cpu.host.push(measured.hostUs);
          if (measured.childUs !== undefined) cpu.child.push(measured.childUs);
        }
      }
      log(`round ${round + 1}/${runs}`);
    }
    const state = child.state();
    if (state.restarts !== 0 || state.consecutiveFailures !== 0) {
      throw new Error(`the child failed during the run: ${JSON.stringify(state)}`);
    }
    const figures = Object.fromEntries(
      Object.keys(cases).map((name) => [
        name,
        {
          p50Us: median(p50[name]),
          p99Us: median(p99[name]),
          callsPerSec: median(throughput[name]),
        },
      ]),
    );
    const host = { ...(await machine()), loadAtStart, loadAtEnd: loadAverage() };

    console.log('');
    console.log(
      `@dso/provider-sdk provider calls: ${runs} measured rounds (median of rounds), 1 warm-up; ` +
        `${SEQUENTIAL_CALLS} sequential calls and ${CONCURRENT_CALLS} calls at ${IN_FLIGHT} in flight per round; ` +
        `${VALUE_BYTES}-byte value`,
    );
    printMachine(host, [`kernel ${host.kernel}, Node ${host.node}, revision ${host.revision}`]);
    console.log('');
    const base = figures.bare;
    const label = {
      bare: 'baseline: bare resolve() in process (no guard)',
      inProcess: 'in process: createProvider',
      child: 'child process: createProcessProvider',
    };
    printTable(
      [
        'call',
        'p50 µs',
        'p99 µs',
        'p50 vs baseline',
        `calls/s at ${IN_FLIGHT} in flight`,
        'vs baseline',
      ],
      Object.keys(cases).map((name) => [
        label[name],
        figures[name].p50Us.toFixed(1),
        figures[name].p99Us.toFixed(1),
        `${(figures[name].p50Us / base.p50Us).toFixed(1)}x`,
        Math.round(figures[name].callsPerSec).toLocaleString('en'),
        `${(figures[name].callsPerSec / base.callsPerSec).toFixed(3)}x`,
      ]),
    );
    console.log('');
    const hostCpu = median(cpu.host);
    const childCpu = cpu.child.length > 0 ? median(cpu.child) : undefined;
    console.log(
      `CPU per call across the boundary at ${IN_FLIGHT} in flight: host ${hostCpu.toFixed(1)} µs, ` +
        `child ${childCpu === undefined ? 'n/a' : `${childCpu.toFixed(1)} µs`}`,
    );
    console.log(`child start (spawn, import, handshake): ${startMs.toFixed(0)} ms`);
    console.log(
      `pipelining: ${IN_FLIGHT} in flight give ${(figures.child.callsPerSec / (1e6 / figures.child.p50Us)).toFixed(1)}x ` +
        'the calls/s of one call at a time across the boundary',
    );
    console.log(`seed: ${SEED}`);
    printBenchJson({
      bench: 'provider-sdk/provider',
      at: new Date().toISOString(),
      runs,
      machine: host,
      valueBytes: VALUE_BYTES,
      sequentialCalls: SEQUENTIAL_CALLS,
      concurrentCalls: CONCURRENT_CALLS,
      inFlight: IN_FLIGHT,
      childStartMs: round2(startMs),
      childCpuPerCallUs: {
        host: round2(hostCpu),
        child: childCpu === undefined ? null : round2(childCpu),
      },
      ...Object.fromEntries(
        Object.entries(figures).map(([name, figure]) => [
          name,
          {
            p50Us: round2(figure.p50Us),
            p99Us: round2(figure.p99Us),
            callsPerSec: Math.round(figure.callsPerSec),
            p50RatioToBaseline: round2(figure.p50Us / base.p50Us),
            throughputRatioToBaseline: round2(figure.callsPerSec / base.callsPerSec),
          },
        ]),
      ),
    });
  } finally {
    await child.close();
    await inProcess.close();
    await bare.close();
  }
}

try {
  await main();
} catch (error) {
  log(error.stack ?? String(error));
  process.exitCode = 1;
}
