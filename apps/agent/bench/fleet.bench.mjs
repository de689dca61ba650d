#!/usr/bin/env node
// bench: needs-engine
// Benchmark: a fleet of hundreds of containers on the real engine, each with a secret of its
// own, on each delivery path (the volume driver, the host path, the exec path) and with no DSO,
// started side by side at a fixed concurrency, with the BUILT agent running as an operator runs
// it. Issue 17: "a real-engine run with as many containers as this machine holds (at least 300),
// start → files ready p50/p95".
//
// The agent (apps/agent/bin/dso-agent.js, as agent-process.mjs starts it) has a DSO home of its
// own: a local vault holding one 32-byte random secret per DSO container (`fleet/<kind>-<n>`),
// `hostPath.root` on /dev/shm, `volumes.root` /run/dso-fleet/volumes and
// DSO_VOLUME_DRIVER_NAME=dso-fleet, so it serves /run/docker/plugins/dso-fleet.sock (a name of
// its own: the other programs and the e2e tests use `dso`, `dso-bench`, `dso-e2e-*`). Then
// BENCH_FLEET containers of each kind (default 300; the exec path BENCH_FLEET_EXEC, default the
// same) are created and started through the Engine API by BENCH_FLEET_CONCURRENCY workers
// (default 6), the kinds interleaved (A V H E A V H E …) so the fleet's growth, the engine's
// load and the machine's other work fall on every kind alike:
//   A  no DSO (baseline): the busybox test image, a tmpfs at /run/secrets, no dso labels.
//   V  the volume driver: `Mounts: [{ Type: volume, Target: /run/secrets, DriverConfig:
//      dso-fleet, Options: { token: dsofile://fleet/v-<n> } }]`, no label: the engine asks the
//      agent to create and mount the volume before it starts the container.
//   H  the host path: `dso.enable=true`, `dso.file.token=dsofile://fleet/h-<n>`, and
//      `<hostPath.root>/<key>` bind-mounted read-only at /run/secrets.
//   E  the exec path: `dso.enable=true`, `dso.file.token=dsofile://fleet/e-<n>`, a tmpfs at
//      /run/secrets; the agent writes the file with one `docker exec` (tar on stdin).
// Every container runs the same script: it stamps its first instruction, polls for
// /run/secrets/token every 1 ms (A does not wait), stamps when it is readable, prints its
// sha256 (checked against that container's own secret, so a file delivered to the wrong
// container counts as a failure), and then sleeps: the fleet stays up, so the agent manages
// every DSO container of the run at once by the end.
//
// How the times are taken, and why: all on the host's one CLOCK_REALTIME, so no clock offset
// enters. In the container, busybox `adjtimex` prints the clock in µs (one fork+exec, ~1 ms, at
// both stamps). "Start" is the container's State.StartedAt, stamped by the engine as it marks
// the container running, just before the `start` event the exec and host paths react to.
// "Request" is when this program sent the create request (performance.timeOrigin + now()): the
// volume driver does its work before StartedAt (the engine waits for Create and Mount), so only
// request → files ready shows its cost; it is reported for every kind, against A's request →
// first instruction. Both are printed.
//
// The agent's RSS (with any provider process it started) is sampled every 500 ms; its CPU time
// is read from /proc before and after the fleet; MemAvailable before and with the fleet up shows
// what a container costs the machine (the engine's shim per container), which is what bounds
// the fleet's size here.
//
// Cleanup on every path, Ctrl-C included (minutes for a large fleet: ~2 containers a second on a
// loaded machine; a second Ctrl-C does not cut it short, 20 minutes do): every container
// labelled dso.test=bench-<uuid> (BENCH_FLEET_CONCURRENCY at a time, with its anonymous volume,
// so the engine calls the driver's Unmount and Remove while the agent still answers), every
// dso-fleet volume left, then the agent (SIGTERM), `umount -R` of the volumes root, the host
// path root, the DSO home. Then it checks that nothing is left and says so.
//
// Needs root (the plugin socket, the tmpfs, the host path). Run through
// `npm run bench -- fleet` (builds first) or, after `npx nx run @dso/agent:build`,
// `node apps/agent/bench/fleet.bench.mjs`. A report, not a test: exits 0 whatever the figures.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { createHostSecretDirs } from '@dso/docker-runtime';
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
  command,
  cpuTicks,
  createBenchHome,
  Docker,
  demux,
  driverVolumes,
  handleInterrupts,
  metricSum,
  mib,
  mountedUnder,
  newRunLabel,
  readMetrics,
  rssBytes,
  stampAfter,
  startAgentProcess,
  startedAtMicros,
  summarize,
  testImage,
  wasInterrupted,
} from './agent-process.mjs';

/** A driver name of this program's own (see the header). */
const DRIVER = 'dso-fleet';
const VOLUMES_ROOT = `/run/${DRIVER}/volumes`;
const TARGET = '/run/secrets';
/** The seed's "100-1000 ms added to startup". */
const SEED_MS = { low: 100, high: 1000 };
/** How long one container may take from its request to its files (then: a failure). */
const READY_TIMEOUT_MS = 60_000;
/** Polls of 1 ms the script makes before it gives up (~20-40 s with the forks). */
const MAX_POLLS = 20_000;
/** Bytes of a container's log kept: the script prints a few short lines. */
const MAX_OUTPUT = 16 * 1024;

const KINDS = {
  A: 'no DSO (baseline)',
  V: 'volume driver',
  H: 'host path',
  E: 'exec path',
};

// $1: `wait` or `nowait`; $2: polls before giving up. Nothing is interpolated into the script.
const SCRIPT = [
  'echo dso-t0; adjtimex',
  'if [ "$1" = wait ]; then',
  '  i=0',
  `  until [ -r ${TARGET}/token ]; do`,
  '    i=$((i+1)); [ "$i" -le "$2" ] || { echo dso-timeout; exec sleep 86400; }',
  '    usleep 1000',
  '  done',
  `  echo dso-t1; adjtimex; sha256sum ${TARGET}/token`,
  'fi',
  'echo dso-done',
  'exec sleep 86400',
].join('\n');

/** A whole number from the environment variable `name`, from 1 to `max`. */
function wholeFromEnv(name, fallback, max) {
  const raw = process.env[name] ?? String(fallback);
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1 || value > max) {
    throw new Error(`${name} must be a whole number from 1 to ${max}, got "${raw}"`);
  }
  return value;
}

const runLabel = newRunLabel();
const hostRoot = `/dev/shm/${DRIVER}-${randomUUID().slice(0, 8)}`;
handleInterrupts(
  `docker rm -fv $(docker ps -aq --filter label=${testImage.label}=${runLabel}); ` +
    `docker volume rm -f $(docker volume ls -q --filter driver=${DRIVER}) (while the agent runs); ` +
    `kill <agent pid>; umount -R ${VOLUMES_ROOT}; rm -rf /run/${DRIVER} ${hostRoot}`,
  // Removing a fleet of 1,200 took ~10 min on a loaded 2-core machine (~2 per second).
  { graceMs: 1_200_000 },
);

/** The host's CLOCK_REALTIME in µs, as precise as performance.now(). */
const nowMicros = () => (performance.timeOrigin + performance.now()) * 1000;

/** MemAvailable from /proc/meminfo, in bytes. */
function memAvailableBytes() {
  const line = readFileSync('/proc/meminfo', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('MemAvailable:'));
  return Number(line.split(/\s+/)[1]) * 1024;
}

/**
 * Runs `items` through `worker` with at most `concurrency` at a time, stopping on Ctrl-C. Every
 * worker has ended when it settles (so no container is created after the cleanup listed them);
 * it then rejects with the first error, if any.
 */
async function pool(items, concurrency, worker) {
  let next = 0;
  let failed;
  const run = async () => {
    while (next < items.length && failed === undefined) {
      checkpoint();
      const item = items[next++];
      await worker(item);
    }
  };
  const results = await Promise.allSettled(
    Array.from({ length: Math.min(concurrency, items.length) }, () =>
      run().catch((error) => {
        failed ??= error;
        throw error;
      }),
    ),
  );
  const rejected = results.find((result) => result.status === 'rejected');
  if (rejected) throw rejected.reason;
}

/** Runs a command to its end; rejects with its stderr when it exits non-zero. */
function containerSpec(job) {
  const labels = { [testImage.label]: runLabel };
  const managed = {
    ...labels,
    'dso.enable': 'true',
    'dso.file.token': `dsofile://${job.secretPath}`,
  };
  const cmd = ['sh', '-c', SCRIPT, 'sh', job.kind === 'A' ? 'nowait' : 'wait', String(MAX_POLLS)];
  const base = { Image: testImage.image, Cmd: cmd };
  switch (job.kind) {
    case 'A':
      return {
        ...base,
        Labels: labels,
        HostConfig: { NetworkMode: 'none', Tmpfs: { [TARGET]: '' } },
      };
    case 'V':
      return {
        ...base,
        Labels: labels,
        HostConfig: {
          NetworkMode: 'none',
          Mounts: [
            {
              Type: 'volume',
              Target: TARGET,
              VolumeOptions: {
                DriverConfig: { Name: DRIVER, Options: { token: `dsofile://${job.secretPath}` } },
              },
            },
          ],
        },
      };
    case 'H':
      return {
        ...base,
        Labels: managed,
        HostConfig: {
          NetworkMode: 'none',
          Mounts: [
            { Type: 'bind', Source: `${hostRoot}/${job.hostKey}`, Target: TARGET, ReadOnly: true },
          ],
        },
      };
    case 'E':
      return {
        ...base,
        Labels: managed,
        HostConfig: { NetworkMode: 'none', Tmpfs: { [TARGET]: '' } },
      };
    default:
      throw new Error(`unknown kind ${job.kind}`);
  }
}

/**
 * Follows a container's log until its script printed `dso-done` (or gave up), `timeoutMs`
 * passed or Ctrl-C; resolves with the text so far.
 */
async function waitForOutput(container, timeoutMs) {
  const stream = await container.logs({ follow: true, stdout: true, stderr: true });
  return new Promise((resolve) => {
    let raw = Buffer.alloc(0);
    const deadline = Date.now() + timeoutMs;
    const finish = () => {
      clearInterval(timer);
      stream.destroy();
      resolve(demux(raw));
    };
    const timer = setInterval(() => {
      if (Date.now() > deadline || wasInterrupted()) finish();
    }, 200);
    stream.on('data', (chunk) => {
      if (raw.length < MAX_OUTPUT) raw = Buffer.concat([raw, chunk]);
      const text = demux(raw);
      if (text.includes('dso-done\n') || text.includes('dso-timeout\n')) finish();
    });
    stream.on('end', finish);
    stream.on('error', finish);
  });
}

/**
 * Creates and starts one container of the job's kind and waits for its script's stamps; the
 * container keeps running. Returns its figures in ms, or why it failed.
 */
async function startOne(docker, job) {
  const requested = nowMicros();
  const container = await docker.createContainer(containerSpec(job));
  await container.start();
  const output = await waitForOutput(container, READY_TIMEOUT_MS);
  const info = await container.inspect();
  const started = startedAtMicros(info.State.StartedAt);
  const t0 = stampAfter(output, 'dso-t0');
  const t1 = job.kind === 'A' ? t0 : stampAfter(output, 'dso-t1');
  if (t0 === undefined || t1 === undefined) {
    return { failed: output.includes('dso-timeout') ? 'no file' : 'no stamps' };
  }
  if (job.digest !== undefined && !output.includes(job.digest)) {
    return { failed: 'another content' };
  }
  return {
    firstMs: (t0 - started) / 1000,
    readyMs: (t1 - started) / 1000,
    addedMs: (t1 - t0) / 1000,
    requestReadyMs: (t1 - requested) / 1000,
    requestedAt: requested,
    readyAt: t1,
  };
}

const ms = (value) => (value === undefined ? '—' : value.toFixed(1));

/** The agent's RSS plus that of its child processes (providers), in bytes. */
function agentTreeRss(pid, children) {
  let total = rssBytes(pid) ?? 0;
  for (const child of children) total += rssBytes(child) ?? 0;
  return total;
}

function agentTreeTicks(pid, children) {
  let total = cpuTicks(pid) ?? 0;
  for (const child of children) total += cpuTicks(child) ?? 0;
  return total;
}

/** Removes the run's containers (with their anonymous volumes), `concurrency` at a time. */
async function removeFleet(docker, concurrency) {
  let listed;
  try {
    listed = await docker.listContainers({
      all: true,
      filters: { label: [`${testImage.label}=${runLabel}`] },
    });
  } catch (error) {
    log(`could not list containers labelled ${testImage.label}=${runLabel}: ${error.message}`);
    process.exitCode = 1;
    return;
  }
  if (listed.length > 0) log(`removing ${listed.length} container(s)`);
  let next = 0;
  let removed = 0;
  const worker = async () => {
    while (next < listed.length) {
      const info = listed[next++];
      removed += 1;
      if (removed % 200 === 0) log(`${removed}/${listed.length} removed`);
      try {
        await docker.getContainer(info.Id).remove({ force: true, v: true });
      } catch (error) {
        if (error.statusCode !== 404) {
          log(`could not remove container ${info.Id.slice(0, 12)}: ${error.message}`);
          process.exitCode = 1;
        }
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
}

/** The engine's volumes of the driver, by name. */
async function main() {
  if (process.getuid?.() !== 0) {
    throw new Error('run as root: the plugin socket, the tmpfs and the host path need it');
  }
  const perKind = wholeFromEnv('BENCH_FLEET', 300, 5_000);
  const execCount = wholeFromEnv('BENCH_FLEET_EXEC', perKind, 5_000);
  const concurrency = wholeFromEnv('BENCH_FLEET_CONCURRENCY', 6, 64);
  const socketPath = dockerSocketPath();
  if (!socketPath) throw new Error('DOCKER_HOST is not a unix socket: this benchmark is local');
  const docker = new Docker({ socketPath });
  const engine = await docker.version();

  // The jobs, interleaved A V H E A V H E …; the exec path may be shorter.
  const jobs = [];
  const secrets = {};
  const dirs = createHostSecretDirs({ root: hostRoot });
  for (let n = 0; n < perKind; n += 1) {
    for (const kind of ['A', 'V', 'H', 'E']) {
      if (kind === 'E' && n >= execCount) continue;
      const job = { kind, n };
      if (kind !== 'A') {
        job.secretPath = `fleet/${kind.toLowerCase()}-${n}`;
        const value = randomBytes(32);
        job.digest = createHash('sha256').update(value).digest('hex');
        secrets[job.secretPath] = value;
      }
      if (kind === 'H') {
        job.hostKey = `${runLabel.slice(6, 14)}-${n}`;
        dirs.ensure(job.hostKey);
      }
      jobs.push(job);
    }
  }
  let workspace;
  let agent;
  try {
    log(`a vault with ${Object.keys(secrets).length} secrets`);
    workspace = await createBenchHome(secrets, {
      configYaml:
        `version: 1\nhostPath:\n  enabled: true\n  root: ${hostRoot}\n` +
        `volumes:\n  root: ${VOLUMES_ROOT}\n`,
    });
    for (const value of Object.values(secrets)) value.fill(0);
    const env = { ...workspace.env, DSO_VOLUME_DRIVER_NAME: DRIVER };
    // A process group of its own: a Ctrl-C reaches this program, which removes the volumes
    // while the agent still answers for them, and stops it last.
    agent = startAgentProcess(env, { detached: true });
    const served = await agent.waitForLog([
      'volume driver serving',
      'volume driver not served',
      'volume driver off: containers that mount DSO volumes will not start',
      'agent ready',
    ]);
    if (served.msg !== 'volume driver serving') {
      throw new Error(`the agent does not serve ${DRIVER}: ${served.msg} (${served.code ?? ''})`);
    }
    await agent.waitForLog('agent ready');
    log(`agent ready (pid ${agent.pid}), serving /run/docker/plugins/${DRIVER}.sock`);

    // Warm-up: one container of each DSO kind, so the vault is open and the paths are hot
    // (not measured, removed before the fleet).
    log('warm-up: one container of each kind');
    const warmups = ['A', 'V', 'H', 'E'].map((kind) => jobs.find((job) => job.kind === kind));
    for (const job of warmups) {
      checkpoint();
      const result = await startOne(docker, job);
      if (result.failed) throw new Error(`the ${KINDS[job.kind]} warm-up failed: ${result.failed}`);
    }
    await removeFleet(docker, concurrency);
    const measuredJobs = jobs.filter((job) => !warmups.includes(job));

    let children = childPids(agent.pid);
    const idleRss = agentTreeRss(agent.pid, children);
    const memBefore = memAvailableBytes();
    const metricsBefore = await readMetrics(workspace.metricsAddress);
    const ticksBefore = agentTreeTicks(agent.pid, children);
    let peakRss = idleRss;
    let samplesTaken = 0;
    const sampler = setInterval(() => {
      // Provider processes may start late; /proc is scanned again every 5 s only (it holds
      // every process of the fleet by then).
      if (++samplesTaken % 10 === 0) children = childPids(agent.pid);
      peakRss = Math.max(peakRss, agentTreeRss(agent.pid, children));
    }, 500);

    const loadAtStart = loadAverage();
    const results = { A: [], V: [], H: [], E: [] };
    const failures = { A: [], V: [], H: [], E: [] };
    let done = 0;
    const fleetStarted = nowMicros();
    log(
      `starting ${measuredJobs.length} containers (${perKind - 1} per kind, exec ${execCount - 1}), ` +
        `${concurrency} at a time`,
    );
    try {
      await pool(measuredJobs, concurrency, async (job) => {
        let result;
        try {
          result = await startOne(docker, job);
        } catch (error) {
          if (error.interrupted) throw error;
          result = { failed: error.message };
        }
        if (result.failed) {
          failures[job.kind].push(result.failed);
          if (failures[job.kind].length <= 3) log(`${job.kind} #${job.n}: ${result.failed}`);
        } else {
          results[job.kind].push(result);
        }
        done += 1;
        if (done % 100 === 0) log(`${done}/${measuredJobs.length} started`);
      });
    } finally {
      clearInterval(sampler);
    }
    const fleetEnded = nowMicros();
    children = childPids(agent.pid);
    const ticksAfter = agentTreeTicks(agent.pid, children);
    const fleetRss = agentTreeRss(agent.pid, children);
    peakRss = Math.max(peakRss, fleetRss);
    const memWithFleet = memAvailableBytes();
    const loadAtEnd = loadAverage();
    const metricsAfter = await readMetrics(workspace.metricsAddress);
    const live = (
      await docker.listContainers({ filters: { label: [`${testImage.label}=${runLabel}`] } })
    ).length;

    const writes = Object.fromEntries(
      ['volume', 'host', 'exec'].map((method) => [
        method,
        metricSum(metricsAfter, 'dso_injection_writes_total', { method, outcome: 'ok' }) -
          metricSum(metricsBefore, 'dso_injection_writes_total', { method, outcome: 'ok' }),
      ]),
    );
    // The agent's own time per delivery (from dequeue to done; for the volume driver, inside
    // Mount), so its work can be told from the waiting for the engine and the machine.
    const injectionMeanMs = Object.fromEntries(
      ['volume', 'host', 'exec'].map((method) => {
        const of = (text, suffix) =>
          metricSum(text, `dso_injection_duration_ms_${suffix}`, { method, outcome: 'ok' });
        const count = of(metricsAfter, 'count') - of(metricsBefore, 'count');
        const sum = of(metricsAfter, 'sum') - of(metricsBefore, 'sum');
        return [method, count > 0 ? round2(sum / count) : undefined];
      }),
    );
    const resolves =
      metricSum(metricsAfter, 'dso_provider_calls_total', { operation: 'resolve' }) -
      metricSum(metricsBefore, 'dso_provider_calls_total', { operation: 'resolve' });
    const delivered = results.V.length + results.H.length + results.E.length;
    const cpuSeconds = (ticksAfter - ticksBefore) / CLOCK_TICKS_PER_SECOND;
    const host = {
      ...(await machine()),
      dockerEngine: `${engine.Version} (API ${engine.ApiVersion})`,
      loadAtStart,
      loadAtEnd,
    };
    const stat = (kind, field) => summarize(results[kind].map((result) => result[field]));
    const stats = {};
    for (const kind of Object.keys(KINDS)) {
      stats[kind] = {
        start: stat(kind, kind === 'A' ? 'firstMs' : 'readyMs'),
        request: stat(kind, 'requestReadyMs'),
        added: kind === 'A' ? undefined : stat(kind, 'addedMs'),
        span:
          results[kind].length > 0
            ? (Math.max(...results[kind].map((r) => r.readyAt)) -
                Math.min(...results[kind].map((r) => r.requestedAt))) /
              1e6
            : undefined,
      };
    }
    const wallSeconds = (fleetEnded - fleetStarted) / 1e6;
    const perContainerMemory = (memBefore - memWithFleet) / Math.max(1, live);

    return () => {
      console.log('');
      console.log(
        `@dso/agent fleet on the real engine: ${measuredJobs.length} containers started ` +
          `${concurrency} at a time (no DSO ${results.A.length + failures.A.length}, ` +
          `volume ${results.V.length + failures.V.length}, host ${results.H.length + failures.H.length}, ` +
          `exec ${results.E.length + failures.E.length}), each DSO one with a 32-byte secret of its own ` +
          'in the local vault, the built agent as a child process',
      );
      printMachine(host, [
        `kernel ${host.kernel}, Docker Engine ${host.dockerEngine}, Node ${host.node}`,
        `revision ${host.revision}`,
      ]);
      console.log('');
      const rows = [];
      for (const [kind, name] of Object.entries(KINDS)) {
        const s = stats[kind];
        const what = kind === 'A' ? 'first instruction' : 'files ready';
        rows.push([`${kind}: ${name}, start → ${what}`, s.start]);
        if (kind !== 'A') rows.push([`${kind}: ${name}, ready − first instruction`, s.added]);
        rows.push([`${kind}: ${name}, create request → ${what}`, s.request]);
      }
      printTable(
        ['case', 'n', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms'],
        rows.map(([label, s]) => [
          label,
          String(s?.n ?? 0),
          ms(s?.median),
          ms(s?.p95),
          ms(s?.p99),
          ms(s?.max),
        ]),
      );
      console.log('');
      const A = stats.A.request;
      const againstBaseline = [];
      for (const kind of ['V', 'H', 'E']) {
        const s = stats[kind].request;
        if (!A || !s) continue;
        againstBaseline.push(
          `${KINDS[kind]} +${ms(s.median - A.median)} ms p50, +${ms(s.p95 - A.p95)} ms p95 ` +
            `(${(s.median / A.median).toFixed(2)}x at p50)`,
        );
      }
      console.log(
        `create request → files ready, against no DSO's request → first instruction in the same run: ` +
          `${againstBaseline.join('; ')}; seed: ${SEED_MS.low}-${SEED_MS.high} ms added to startup`,
      );
      console.log(
        `fleet: ${measuredJobs.length} containers in ${wallSeconds.toFixed(1)} s ` +
          `(${(measuredJobs.length / wallSeconds).toFixed(1)} per second), ${live} running at the end; ` +
          `each kind from its first request to its last file: ` +
          Object.keys(KINDS)
            .map((kind) => `${kind} ${stats[kind].span?.toFixed(1) ?? '—'} s`)
            .join(', '),
      );
      console.log(
        `agent (with its provider processes): RSS ${mib(idleRss).toFixed(1)} MiB before, ` +
          `peak ${mib(peakRss).toFixed(1)} MiB, ${mib(fleetRss).toFixed(1)} MiB managing ${delivered} containers ` +
          `(+${mib(fleetRss - idleRss).toFixed(1)} MiB); CPU ${cpuSeconds.toFixed(1)} s over the fleet, ` +
          `${((cpuSeconds * 1000) / Math.max(1, delivered)).toFixed(1)} ms per DSO container`,
      );
      console.log(
        `agent writes in the fleet: volume ${writes.volume}, host ${writes.host}, exec ${writes.exec}; ` +
          `provider resolves ${resolves}; the agent's own mean time per delivery ` +
          `(dso_injection_duration_ms): volume ${ms(injectionMeanMs.volume)} ms, ` +
          `host ${ms(injectionMeanMs.host)} ms, exec ${ms(injectionMeanMs.exec)} ms`,
      );
      console.log(
        `machine: MemAvailable ${mib(memBefore).toFixed(0)} MiB before, ${mib(memWithFleet).toFixed(0)} MiB ` +
          `with the fleet up: ~${mib(perContainerMemory).toFixed(1)} MiB per running container ` +
          '(the engine, its shim and the container; other work on the machine moves this)',
      );
      const failed = Object.entries(failures).filter(([, list]) => list.length > 0);
      console.log(
        failed.length === 0
          ? 'failures: none (every DSO container read its own secret)'
          : `failures: ${failed.map(([kind, list]) => `${kind} ${list.length} (${[...new Set(list)].join(', ')})`).join('; ')}`,
      );
      const pick = (s) =>
        s && {
          n: s.n,
          p50: round2(s.median),
          p95: round2(s.p95),
          p99: round2(s.p99),
          min: round2(s.min),
          max: round2(s.max),
        };
      printBenchJson({
        bench: 'agent/fleet',
        at: new Date().toISOString(),
        machine: host,
        unit: 'ms',
        concurrency,
        containers: {
          total: measuredJobs.length,
          live,
          perKind: Object.fromEntries(
            Object.keys(KINDS).map((kind) => [kind, results[kind].length + failures[kind].length]),
          ),
        },
        cases: Object.fromEntries(
          Object.keys(KINDS).map((kind) => [
            kind,
            {
              path: KINDS[kind],
              startToReady: pick(stats[kind].start),
              readyMinusFirst: pick(stats[kind].added),
              requestToReady: pick(stats[kind].request),
              spanSeconds: stats[kind].span && round2(stats[kind].span),
            },
          ]),
        ),
        fleetSeconds: round2(wallSeconds),
        agent: {
          idleRssMiB: round2(mib(idleRss)),
          peakRssMiB: round2(mib(peakRss)),
          fleetRssMiB: round2(mib(fleetRss)),
          cpuSeconds: round2(cpuSeconds),
          cpuMsPerContainer: round2((cpuSeconds * 1000) / Math.max(1, delivered)),
          writes,
          injectionMeanMs,
          providerResolves: resolves,
        },
        machineMemory: {
          availableBeforeMiB: round2(mib(memBefore)),
          availableWithFleetMiB: round2(mib(memWithFleet)),
          perRunningContainerMiB: round2(mib(perContainerMemory)),
        },
        failures: Object.fromEntries(
          Object.entries(failures).map(([kind, list]) => [kind, list.length]),
        ),
        seed: { addedMs: SEED_MS },
      });
    };
  } finally {
    // Order matters: containers and volumes go while the agent still answers the engine's
    // Unmount and Remove, then the agent, then its roots.
    await removeFleet(docker, concurrency);
    try {
      for (const name of await driverVolumes(docker, DRIVER)) {
        await docker
          .getVolume(name)
          .remove({ force: true })
          .catch((error) => {
            log(`could not remove volume ${name.slice(0, 12)}: ${error.message}`);
            process.exitCode = 1;
          });
      }
    } catch (error) {
      log(`could not list the ${DRIVER} volumes: ${error.message}`);
      process.exitCode = 1;
    }
    if (agent) {
      const code = await agent.stop();
      if (code !== 0 && !wasInterrupted()) {
        log(`the agent exited with ${code}`);
        process.exitCode = 1;
      }
    }
    if (mountedUnder(VOLUMES_ROOT)) {
      await command('umount', ['-R', VOLUMES_ROOT]).catch((error) => {
        log(`${error.message}: unmount ${VOLUMES_ROOT} by hand`);
        process.exitCode = 1;
      });
    }
    if (!mountedUnder(`/run/${DRIVER}`)) rmSync(`/run/${DRIVER}`, { recursive: true, force: true });
    rmSync(hostRoot, { recursive: true, force: true });
    workspace?.remove();
    await checkNothingLeft(docker, agent);
  }
}

/** Says what this run left behind, if anything (and fails the run then). */
async function checkNothingLeft(docker, agent) {
  const left = [];
  try {
    const containers = await docker.listContainers({
      all: true,
      filters: { label: [`${testImage.label}=${runLabel}`] },
    });
    if (containers.length > 0) left.push(`${containers.length} container(s)`);
    const volumes = await driverVolumes(docker, DRIVER);
    if (volumes.length > 0) left.push(`${volumes.length} ${DRIVER} volume(s)`);
  } catch (error) {
    left.push(`(the engine could not be asked: ${error.message})`);
  }
  if (agent && agent.exitCode === null && rssBytes(agent.pid) !== undefined) {
    left.push(`the agent (pid ${agent.pid})`);
  }
  if (mountedUnder(`/run/${DRIVER}`)) left.push(`mounts under /run/${DRIVER}`);
  for (const path of [`/run/${DRIVER}`, hostRoot]) if (existsSync(path)) left.push(path);
  if (left.length === 0) {
    log('left behind: nothing (containers, volumes, agent, mounts, folders all gone)');
  } else {
    log(`left behind: ${left.join(', ')}`);
    process.exitCode = 1;
  }
}

try {
  const report = await main();
  report();
} catch (error) {
  if (error.interrupted || wasInterrupted()) {
    process.exitCode = 130;
  } else {
    log(`failed: ${error.stack ?? error.message}`);
    process.exitCode = 1;
  }
}
