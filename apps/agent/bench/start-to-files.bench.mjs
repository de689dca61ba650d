#!/usr/bin/env node
// bench: needs-engine
// Benchmark: container start → secret files ready, with the BUILT agent running as an operator
// runs it, against baselines measured in the same run.
//
// The agent (apps/agent/bin/dso-agent.js) runs as a child process with a DSO home of its own (a
// local vault holding one 32-byte secret, its key file, its own API socket, metrics on a free
// loopback port, host path root in /dev/shm). Then, round after round, one labelled, network-less
// container of each case is created and started through the Engine API, waited for, read and
// removed:
//   A  no DSO: the same image, tmpfs and script, no dso labels. start → first instruction.
//   B  DSO, exec path: `dso.enable=true`, `dso.file.token=dsofile://bench/<run>/token`, a tmpfs at
//      /run/secrets. The script notes its first instruction, polls for /run/secrets/token every
//      1 ms, notes when it is readable and prints its sha256 (checked against the secret's).
//   C  DSO + waitForSecretsCommand (core's wrapper: 10 ms polls for its first second, then
//      100 ms): start → the application's first instruction, which is what an operator's
//      application actually experiences.
//   H  DSO, host path: the container bind-mounts `<hostPath.root>/<key>` read-only at
//      /run/secrets instead of a tmpfs; otherwise as B. Probed in the first warm-up round and
//      skipped, with a note, when the agent's `dso_injection_writes_total{method="host"}` stays
//      0 (an agent without host path delivery cannot write into a read-only bind mount).
//   G  the host path + waitForSecretsCommand: start → the application's first instruction.
//   D  the exec floor: `runtime.exec(id, { argv: ['true'] })` on a running container, through
//      the same exec code the agent's writes use (create, start hijacked, wait, exit code).
//   I  the inspect floor: `runtime.inspectContainer(id)`, the engine call every delivery makes
//      first, whichever path writes the files (what the host path costs beyond its ~0.4 ms write).
//
// How "start" and "files ready" are timed, and why: both ends are read on the host's one
// CLOCK_REALTIME, so no clock offset enters. "Start" is the container's State.StartedAt, which
// the engine stamps as it marks the container running, just before it emits the `start` event
// the agent reacts to: the agent cannot act earlier. "First instruction" and "files ready" are
// stamped inside the container by busybox `adjtimex` (µs; busybox `date` has no sub-second
// format), which costs one fork+exec (~1 ms) at both ends, so it cancels in B's "added delay"
// (ready − first instruction, in the same container). The readiness poll adds at most one poll
// period (~1.2 ms: `usleep 1000` plus the fork) and about half that on average. Polling from the
// host through /proc/<pid>/root was the alternative: it needs the pid, known only after start
// returns, so a fast delivery (the host path) could already be there at the first poll.
//
// Imports the BUILT packages and runs the BUILT agent: run it through `npm run bench -- agent`
// (builds first), or `node apps/agent/bench/start-to-files.bench.mjs` after
// `npx nx run @dso/agent:build`. BENCH_RUNS sets the measured rounds (default 30). A report, not
// a test: exits 0 whatever the figures. Containers (label dso.test=bench-<uuid>), the DSO home
// and the host path root are removed on every path, Ctrl-C included.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { waitForSecretsCommand } from '@dso/core';
import { createDockerRuntime, createHostSecretDirs } from '@dso/docker-runtime';
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
import { dockerSocketPath } from '../../../tools/lib.mjs';
import {
  checkpoint,
  createBenchHome,
  Docker,
  demux,
  handleInterrupts,
  metricSum,
  newRunLabel,
  readMetrics,
  removeRunContainers,
  stampAfter,
  startAgentProcess,
  startedAtMicros,
  testImage,
  wasInterrupted,
} from './agent-process.mjs';

const WARMUP_ROUNDS = 2;
const TARGET = '/run/secrets';
// A path of this run's own: every agent watching the same engine acts on a `dso.enable=true`
// container, and another one holding a `bench/token` (another program's, running beside this
// one) wrote its value into this program's containers first (seen: the wrong sha256 on the
// exec path). Another agent cannot resolve this path, so it writes nothing.
const SECRET_PATH = `bench/${randomUUID().slice(0, 8)}/token`;
/** The seed's "total container startup impact: 100-1000 ms added to startup". */
const SEED_MS = { low: 100, high: 1000 };
/** The issue's target: 5x under the seed's figure, so ≤ 20 ms against 100 ms, ≤ 200 against 1000. */
const TARGET_FACTOR = 5;
/** Polls of 1 ms before the script gives up (about 12 s with the forks); ~4 s for the probe. */
const MAX_POLLS = 10_000;
const PROBE_POLLS = 3_000;

// $1: `wait` or `nowait`; $2: polls before giving up. Nothing is interpolated into the script.
const SCRIPT = [
  'echo dso-t0; adjtimex',
  '[ "$1" = wait ] || exit 0',
  'i=0',
  `until [ -r ${TARGET}/token ]; do`,
  '  i=$((i+1)); [ "$i" -le "$2" ] || { echo dso-timeout; exit 3; }',
  '  usleep 1000',
  'done',
  `echo dso-t1; adjtimex; sha256sum ${TARGET}/token`,
].join('\n');
const APP = ['sh', '-c', `echo dso-t1; adjtimex; sha256sum ${TARGET}/token`];

const runLabel = newRunLabel();
const hostRoot = `/dev/shm/dso-bench-${randomUUID().slice(0, 8)}`;
handleInterrupts(
  `docker rm -f $(docker ps -aq --filter label=${testImage.label}=${runLabel}); rm -rf ${hostRoot}`,
);

function containerSpec(kind, { hostKey, polls }) {
  const labels = { [testImage.label]: runLabel };
  const managed = {
    ...labels,
    'dso.enable': 'true',
    'dso.file.token': `dsofile://${SECRET_PATH}`,
  };
  const base = {
    Image: testImage.image,
    HostConfig: { NetworkMode: 'none', Tmpfs: { [TARGET]: '' } },
  };
  switch (kind) {
    case 'A':
      return { ...base, Labels: labels, Cmd: ['sh', '-c', SCRIPT, 'sh', 'nowait', '0'] };
    case 'B':
      return { ...base, Labels: managed, Cmd: ['sh', '-c', SCRIPT, 'sh', 'wait', String(polls)] };
    case 'C': {
      const [entrypoint, ...args] = waitForSecretsCommand(TARGET, APP, { timeoutMs: 15_000 });
      return { ...base, Labels: managed, Entrypoint: [entrypoint], Cmd: args };
    }
    case 'H':
    case 'G': {
      const hostConfig = {
        NetworkMode: 'none',
        Mounts: [
          { Type: 'bind', Source: `${hostRoot}/${hostKey}`, Target: TARGET, ReadOnly: true },
        ],
      };
      if (kind === 'H') {
        return {
          Image: testImage.image,
          Labels: managed,
          Cmd: ['sh', '-c', SCRIPT, 'sh', 'wait', String(polls)],
          HostConfig: hostConfig,
        };
      }
      const [entrypoint, ...args] = waitForSecretsCommand(TARGET, APP, { timeoutMs: 15_000 });
      return {
        Image: testImage.image,
        Labels: managed,
        Entrypoint: [entrypoint],
        Cmd: args,
        HostConfig: hostConfig,
      };
    }
    default:
      throw new Error(`unknown case ${kind}`);
  }
}

/**
 * Creates, starts and waits for one container of `kind`, then reads its StartedAt and output
 * and removes it. Returns the stamps as ms relative to StartedAt, and whether the file it read
 * had the secret's digest.
 */
async function runOnce(docker, kind, options) {
  checkpoint();
  const container = await docker.createContainer(containerSpec(kind, options));
  try {
    await container.start();
    const { StatusCode: exitCode } = await container.wait();
    const info = await container.inspect();
    const output = demux(await container.logs({ stdout: true, stderr: true }));
    const started = startedAtMicros(info.State.StartedAt);
    const t0 = stampAfter(output, 'dso-t0');
    const t1 = stampAfter(output, 'dso-t1');
    return {
      exitCode,
      firstMs: t0 === undefined ? undefined : (t0 - started) / 1000,
      readyMs: t1 === undefined ? undefined : (t1 - started) / 1000,
      digestOk: output.includes(options.digest),
      timedOut: output.includes('dso-timeout') || exitCode === 70,
    };
  } finally {
    await container.remove({ force: true, v: true }).catch((error) => {
      if (error.statusCode !== 404) log(`could not remove a container: ${error.message}`);
    });
  }
}

function summarize(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  return {
    n: sorted.length,
    median: median(sorted),
    p95: percentile(sorted, 0.95),
    min: sorted[0],
    max: sorted[sorted.length - 1],
  };
}

const ms = (value) => (value === undefined ? '—' : value.toFixed(1));

async function main() {
  const runs = runsFromEnv(30, 1_000);
  const socketPath = dockerSocketPath();
  if (!socketPath) throw new Error('DOCKER_HOST is not a unix socket: this benchmark is local');
  const docker = new Docker({ socketPath });
  const runtime = await createDockerRuntime({ host: `unix://${socketPath}` });
  const token = randomBytes(32);
  const digest = createHash('sha256').update(token).digest('hex');
  const workspace = await createBenchHome(
    { [SECRET_PATH]: token },
    { configYaml: `version: 1\nhostPath:\n  enabled: true\n  root: ${hostRoot}\n` },
  );
  token.fill(0);
  const dirs = createHostSecretDirs({ root: hostRoot });
  let agent;
  let floorId;
  try {
    agent = startAgentProcess(workspace.env);
    await agent.waitForLog('agent ready');
    log(`agent ready (pid ${agent.pid})`);

    // The exec floor's container: running, unmanaged.
    const floor = await docker.createContainer({
      Image: testImage.image,
      Cmd: ['sleep', '3600'],
      Labels: { [testImage.label]: runLabel },
      HostConfig: { NetworkMode: 'none', Tmpfs: { [TARGET]: '' } },
    });
    floorId = floor.id;
    await floor.start();

    let hostKeys = 0;
    const hostOptions = (polls) => {
      const hostKey = `${runLabel.slice(0, 14)}-${hostKeys++}`;
      dirs.ensure(hostKey);
      return { hostKey, polls, digest };
    };
    const samples = { A: [], B: [], Badded: [], C: [], H: [], Hadded: [], G: [], D: [], I: [] };
    const failures = { B: 0, C: 0, H: 0, G: 0 };
    // Each case runs once and returns how to record its figures, or that it failed (no file,
    // or the wrong content), so warm-up rounds record nothing.
    const delivered = (kind, result, added) => {
      if (result.readyMs === undefined || !result.digestOk) return () => (failures[kind] += 1);
      return () => {
        samples[kind].push(result.readyMs);
        if (added) samples[added].push(result.readyMs - result.firstMs);
      };
    };
    const cases = {
      A: async () => {
        const result = await runOnce(docker, 'A', { digest });
        return () => samples.A.push(result.firstMs);
      },
      B: async () =>
        delivered('B', await runOnce(docker, 'B', { polls: MAX_POLLS, digest }), 'Badded'),
      C: async () => delivered('C', await runOnce(docker, 'C', { digest })),
      H: async () => delivered('H', await runOnce(docker, 'H', hostOptions(MAX_POLLS)), 'Hadded'),
      G: async () => delivered('G', await runOnce(docker, 'G', hostOptions(MAX_POLLS))),
      D: async () => {
        const started = performance.now();
        const result = await runtime.exec(floorId, { argv: ['true'] });
        const elapsed = performance.now() - started;
        if (result.exitCode !== 0) throw new Error(`exec true exited ${result.exitCode}`);
        return () => samples.D.push(elapsed);
      },
      I: async () => {
        const started = performance.now();
        await runtime.inspectContainer(floorId);
        const elapsed = performance.now() - started;
        return () => samples.I.push(elapsed);
      },
    };

    // The host path probe: one container, and the agent's own count of host path writes.
    log('probing the host path');
    const probe = await runOnce(docker, 'H', hostOptions(PROBE_POLLS));
    const hostWrites = metricSum(
      await readMetrics(workspace.metricsAddress),
      'dso_injection_writes_total',
      {
        method: 'host',
      },
    );
    const hostPath = hostWrites > 0 && probe.readyMs !== undefined && probe.digestOk;
    const hostNote = hostPath
      ? undefined
      : `host path case skipped: the agent did not use it (dso_injection_writes_total{method="host"} = ${hostWrites}` +
        `${probe.timedOut ? ', the probe container never saw its file' : ''}); ` +
        `it runs once the agent delivers through hostPath.root`;
    if (hostNote) log(hostNote);
    const order = hostPath ? ['A', 'B', 'C', 'H', 'G', 'D', 'I'] : ['A', 'B', 'C', 'D', 'I'];

    const loadAtStart = loadAverage();
    const rounds = WARMUP_ROUNDS + runs;
    let metricsBefore = '';
    log(`${WARMUP_ROUNDS} warm-up + ${runs} measured rounds of ${order.length} cases`);
    for (let round = 0; round < rounds; round += 1) {
      // Each round starts one case later than the round before, so drift affects all alike.
      for (let step = 0; step < order.length; step += 1) {
        checkpoint();
        const kind = order[(round + step) % order.length];
        const record = await cases[kind]();
        if (round >= WARMUP_ROUNDS) record();
      }
      if (round === WARMUP_ROUNDS - 1) metricsBefore = await readMetrics(workspace.metricsAddress);
      if ((round + 1) % 10 === 0) log(`round ${round + 1}/${rounds}`);
    }
    const loadAtEnd = loadAverage();

    // Net of the warm-up and the probe (the first delivery also opens the vault: slow).
    const injection = (before, after, method) => {
      const of = (text, suffix) =>
        metricSum(text, `dso_injection_duration_ms_${suffix}`, { method, outcome: 'ok' });
      const count = of(after, 'count') - of(before, 'count');
      return count > 0
        ? { count, meanMs: (of(after, 'sum') - of(before, 'sum')) / count }
        : undefined;
    };
    const metricsAfter = await readMetrics(workspace.metricsAddress);
    // How many deliveries asked the provider rather than the cache (expected: none).
    const resolves =
      metricSum(metricsAfter, 'dso_provider_calls_total', { operation: 'resolve' }) -
      metricSum(metricsBefore, 'dso_provider_calls_total', { operation: 'resolve' });
    const agentSide = {
      exec: injection(metricsBefore, metricsAfter, 'exec'),
      host: injection(metricsBefore, metricsAfter, 'host'),
    };

    const host = {
      ...(await machine()),
      dockerEngine: runtime.engineVersion,
      dockerApi: runtime.apiVersion,
      loadAtStart,
      loadAtEnd,
    };
    const stats = Object.fromEntries(
      Object.entries(samples).map(([key, list]) => [key, summarize(list)]),
    );

    console.log('');
    console.log(
      `@dso/agent container start → files ready: ${runs} measured rounds, ${WARMUP_ROUNDS} warm-up, ` +
        'the built agent as a child process, one 32-byte secret in the local vault',
    );
    printMachine(host, [
      `kernel ${host.kernel}, Docker Engine ${host.dockerEngine} (API ${host.dockerApi}), Node ${host.node}`,
      `revision ${host.revision}`,
    ]);
    console.log('');
    const rows = [
      ['A: no DSO, start → first instruction (baseline)', 'A'],
      ['B: DSO exec path, start → files ready', 'B'],
      ['B: DSO exec path, added delay (ready − first instruction)', 'Badded'],
      ['C: DSO + waitForSecretsCommand, start → application', 'C'],
      ...(hostPath
        ? [
            ['H: DSO host path, start → files ready', 'H'],
            ['H: DSO host path, added delay (ready − first instruction)', 'Hadded'],
            ['G: DSO host path + waitForSecretsCommand, start → application', 'G'],
          ]
        : []),
      ['D: exec floor, runtime.exec(true) wall time', 'D'],
      ['I: inspect floor, runtime.inspectContainer wall time', 'I'],
    ];
    printTable(
      ['case', 'runs', 'p50 ms', 'p95 ms', 'min ms', 'max ms'],
      rows.map(([label, key]) => [
        label,
        String(stats[key]?.n ?? 0),
        ms(stats[key]?.median),
        ms(stats[key]?.p95),
        ms(stats[key]?.min),
        ms(stats[key]?.max),
      ]),
    );
    console.log('');
    const failed = Object.entries(failures).filter(
      ([kind, count]) => count > 0 && ((kind !== 'H' && kind !== 'G') || hostPath),
    );
    if (failed.length > 0) {
      console.log(
        `failures (no file, or the wrong content): ${failed.map(([k, n]) => `${k} ${n}`).join(', ')}`,
      );
    }
    if (hostNote) console.log(hostNote);
    const judge = (label, added) => {
      if (!added) return;
      for (const [name, value] of [
        ['p50', added.median],
        ['p95', added.p95],
      ]) {
        const verdicts = [SEED_MS.low, SEED_MS.high].map((seed) => {
          const limit = seed / TARGET_FACTOR;
          return (
            `${(seed / value).toFixed(1)}x under ${seed} ms ` +
            `(5x target ≤ ${limit} ms: ${value <= limit ? 'met' : 'NOT met'})`
          );
        });
        console.log(`${label} ${name} ${ms(value)} ms: ${verdicts.join('; ')}`);
      }
    };
    console.log(
      `seed: ${SEED_MS.low}-${SEED_MS.high} ms added to startup; target: ${TARGET_FACTOR}x under`,
    );
    judge('exec path added delay', stats.Badded);
    if (hostPath) judge('host path added delay', stats.Hadded);
    if (stats.C && stats.A) {
      const host = stats.G ? `, on the host path ${ms(stats.G.median - stats.A.median)} ms` : '';
      console.log(
        `with waitForSecretsCommand the application starts ${ms(stats.C.median - stats.A.median)} ms ` +
          `later than without DSO on the exec path${host} (p50 vs p50): the wrapper polls every 10 ms for its first second (100 ms after), ` +
          'so the application starts at the first poll after the files are ready',
      );
    }
    if (stats.Badded && stats.D) {
      console.log(
        `exec path added delay p50 = ${(stats.Badded.median / stats.D.median).toFixed(2)}x the exec floor's p50; ` +
          `the agent's own mean per delivery (inspect + resolve + write): ` +
          `exec ${ms(agentSide.exec?.meanMs)} ms, host ${ms(agentSide.host?.meanMs)} ms; ` +
          `provider resolves in the measured rounds: ${resolves} (the rest from the cache)`,
      );
    }
    const pick = (s) =>
      s && {
        n: s.n,
        p50: round2(s.median),
        p95: round2(s.p95),
        min: round2(s.min),
        max: round2(s.max),
      };
    printBenchJson({
      bench: 'agent/start-to-files',
      at: new Date().toISOString(),
      runs,
      warmupRounds: WARMUP_ROUNDS,
      machine: host,
      unit: 'ms',
      cases: {
        baselineFirstInstruction: pick(stats.A),
        execReady: pick(stats.B),
        execAdded: pick(stats.Badded),
        waitWrapperApplication: pick(stats.C),
        hostReady: pick(stats.H),
        hostAdded: pick(stats.Hadded),
        hostWaitWrapperApplication: pick(stats.G),
        execFloor: pick(stats.D),
        inspectFloor: pick(stats.I),
      },
      failures,
      hostPath: { used: hostPath, hostWrites, ...(hostNote ? { note: hostNote } : {}) },
      providerResolves: resolves,
      agentInjectionMeanMs: {
        exec: agentSide.exec && round2(agentSide.exec.meanMs),
        host: agentSide.host && round2(agentSide.host.meanMs),
      },
      seed: { addedMs: SEED_MS, targetFactor: TARGET_FACTOR },
    });
  } finally {
    if (agent) {
      const code = await agent.stop();
      if (code !== 0) {
        log(`the agent exited with ${code}`);
        process.exitCode = 1;
      }
    }
    await removeRunContainers(docker, runLabel);
    await runtime.close();
    rmSync(hostRoot, { recursive: true, force: true });
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
