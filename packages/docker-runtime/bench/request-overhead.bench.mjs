#!/usr/bin/env node
// bench: needs-engine
// Benchmark: what one Engine API request costs the agent's process, in CPU and wall time.
//
// docker-modem 5.0.7 formats every request's options with util.inspect(..., { showHidden: true,
// depth: null }) for a debug line nobody reads, walking the keep-alive agent and every pooled
// socket. The runtime's client (src/engine-client.ts) gives the options a one-line inspect.
// Against one labelled test container, each round runs, interleaved:
//   inspect, one at a time:  a bare http.request GET /containers/{id}/json on a keep-alive agent
//                            (the baseline), the stock dockerode built as the runtime built it
//                            before (before), runtime.inspectContainer (after)
//   inspect, 8 in flight:    the same three, 8 requests at a time (8 pooled sockets to walk)
//   exec with stdin:         the requests writeFiles makes (create, start hijacked, write stdin,
//                            half-close, read to the end, inspect the exit code) by a bare
//                            http.request client (baseline), the stock dockerode (before), and
//                            runtime.exec with the same argv and stdin (after)
// CPU per request is process.cpuUsage() (user + system) over a batch divided by its requests,
// the median over rounds; wall p50/p99 are over every request. The runtime's rows include its
// own work (id check, deadline, mapping the reply), so "after" is an upper bound on its cost.
//
// Imports the BUILT package by its name (`npm run bench -- request-overhead` builds first).
// BENCH_RUNS sets the measured rounds (default 30). A report, not a test: exits 0 whatever the
// figures, non-zero only when something failed. The container is removed on every path,
// Ctrl-C included.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { createRequire } from 'node:module';
import { createDockerRuntime } from '@dso/docker-runtime';
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

// dockerode as the package itself resolves it: the same copy and version that ships with it.
const Docker = createRequire(import.meta.resolve('@dso/docker-runtime'))('dockerode');
const testImage = JSON.parse(
  readFileSync(new URL('../../../tools/test-image.json', import.meta.url), 'utf8'),
);

const WARMUP_ROUNDS = 3;
const INSPECTS_PER_ROUND = 20;
const IN_FLIGHT = 8;
const EXECS_PER_ROUND = 2;
/** Requests one exec makes: create, start (hijacked), and at least one inspect of its exit. */
const REQUESTS_PER_EXEC = 3;
const STDIN = new TextEncoder().encode('request-overhead-bench\n');
const runLabel = `bench-${randomUUID()}`;

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    if (interrupted) return;
    interrupted = true;
    log(`${signal}: stopping after the current call, then removing the container`);
    setTimeout(() => {
      log('still busy after 30 s: exiting; remove by hand with');
      log(`  docker rm -f $(docker ps -aq --filter label=${testImage.label}=${runLabel})`);
      process.exit(130);
    }, 30_000).unref();
  });
}

function checkpoint() {
  if (interrupted) throw Object.assign(new Error('interrupted'), { interrupted: true });
}

/** A bare HTTP/1.1 client on the engine's socket: what any request costs without a library. */
function bareClient(socketPath, apiVersion) {
  const agent = new Agent({ keepAlive: true });
  const call = (method, path, body, extra = {}) =>
    new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : JSON.stringify(body);
      const req = request({
        socketPath,
        agent,
        method,
        path: `/v${apiVersion}${path}`,
        headers: payload === undefined ? {} : { 'Content-Type': 'application/json' },
        ...extra,
      });
      req.on('error', reject);
      req.on('upgrade', (_response, socket, head) => resolve({ socket, head }));
      req.on('response', (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          if (response.statusCode >= 300) reject(new Error(`${method} ${path}: ${text}`));
          else resolve(text === '' ? undefined : JSON.parse(text));
        });
      });
      req.end(payload);
    });
  return {
    agent,
    inspect: (id) => call('GET', `/containers/${id}/json`),
    async exec(id) {
      const { Id } = await call('POST', `/containers/${id}/exec`, execOptions());
      const { socket, head } = await call(
        'POST',
        `/exec/${Id}/start`,
        { Detach: false, Tty: false },
        { headers: { 'Content-Type': 'application/json', Connection: 'Upgrade', Upgrade: 'tcp' } },
      );
      if (head.length > 0) socket.unshift(head);
      await drain(socket);
      await exitCode((execId) => call('GET', `/exec/${execId}/json`), Id);
    },
  };
}

function execOptions() {
  return {
    Cmd: ['cat'],
    AttachStdin: true,
    AttachStdout: true,
    AttachStderr: true,
    Tty: false,
    User: '',
    Env: [],
    WorkingDir: '',
    Privileged: false,
  };
}

/** Writes the stdin, half-closes, reads until the engine ends the stream (as runExec does). */
function drain(socket) {
  return new Promise((resolve) => {
    socket.on('data', () => {});
    socket.on('error', () => resolve());
    socket.once('end', () => resolve());
    socket.once('close', () => resolve());
    socket.write(STDIN);
    socket.end();
  }).finally(() => socket.destroy());
}

/** Polls the exec's exit code with runExec's backoff (5 ms doubling, at most 100 ms). */
async function exitCode(inspect, execId) {
  for (let attempt = 0; ; attempt += 1) {
    const info = await inspect(execId);
    if (!info.Running && typeof info.ExitCode === 'number') {
      if (info.ExitCode !== 0) throw new Error(`exec exited ${info.ExitCode}`);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(5 * 2 ** attempt, 100)));
  }
}

/** The exec writeFiles makes, through a dockerode client. */
async function dockerodeExec(docker, id) {
  const exec = await docker.getContainer(id).exec(execOptions());
  const socket = await exec.start({ hijack: true, stdin: true, Detach: false, Tty: false });
  await drain(socket);
  await exitCode(() => exec.inspect(), exec.id);
}

/**
 * Runs `count` calls, `inFlight` at a time; returns the batch's CPU µs per request (of
 * `requestsPerCall` each) and every call's wall time in ms.
 */
async function batch(call, count, inFlight, requestsPerCall) {
  const walls = [];
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next += 1;
      const started = performance.now();
      await call();
      walls.push((performance.now() - started) / requestsPerCall);
    }
  };
  const cpuBefore = process.cpuUsage();
  await Promise.all(Array.from({ length: inFlight }, worker));
  const cpu = process.cpuUsage(cpuBefore);
  return { cpuUs: (cpu.user + cpu.system) / (count * requestsPerCall), walls };
}

function summarize(entry) {
  const sorted = [...entry.walls].sort((a, b) => a - b);
  return {
    requests: entry.walls.length * entry.requestsPerCall,
    cpuUsPerRequest: median(entry.cpu),
    wallP50Ms: median(sorted),
    wallP99Ms: percentile(sorted, 0.99),
  };
}

async function main() {
  const runs = runsFromEnv(30, 10_000);
  const socketPath = dockerSocketPath();
  if (!socketPath) throw new Error('DOCKER_HOST is not a unix socket: this benchmark is local');
  const runtime = await createDockerRuntime({ host: `unix://${socketPath}` });
  // Before: the client exactly as the runtime built it until the engine client replaced it.
  const stockAgent = new Agent({ keepAlive: true });
  const stock = new Docker({
    socketPath,
    version: `v${runtime.apiVersion}`,
    agent: stockAgent,
    protocol: 'http',
    host: undefined,
    port: undefined,
    timeout: undefined,
  });
  const bare = bareClient(socketPath, runtime.apiVersion);
  let containerId;
  try {
    checkpoint();
    const container = await stock.createContainer({
      name: `dso-${runLabel}`,
      Image: testImage.image,
      Cmd: ['sleep', '3600'],
      Labels: { [testImage.label]: runLabel },
      HostConfig: { NetworkMode: 'none' },
    });
    containerId = container.id;
    checkpoint();
    await container.start();
    log(`container dso-${runLabel} (${containerId.slice(0, 12)}) started`);

    const id = containerId;
    const inspects = {
      baseline: () => bare.inspect(id),
      before: () => stock.getContainer(id).inspect(),
      after: () => runtime.inspectContainer(id),
    };
    const execs = {
      baseline: () => bare.exec(id),
      before: () => dockerodeExec(stock, id),
      after: async () => {
        const result = await runtime.exec(id, { argv: ['cat'], stdin: STDIN });
        if (result.exitCode !== 0) throw new Error(`runtime.exec exited ${result.exitCode}`);
      },
    };
    const labels = {
      baseline: 'bare http.request',
      before: 'dockerode, stock (before)',
      after: 'runtime (after)',
    };
    const cases = [];
    for (const client of ['baseline', 'before', 'after']) {
      cases.push({
        id: `inspect-${client}`,
        group: 'container inspect, 1 at a time',
        client,
        run: () => batch(inspects[client], INSPECTS_PER_ROUND, 1, 1),
      });
    }
    for (const client of ['baseline', 'before', 'after']) {
      cases.push({
        id: `inspect-${IN_FLIGHT}-${client}`,
        group: `container inspect, ${IN_FLIGHT} in flight`,
        client,
        run: () => batch(inspects[client], IN_FLIGHT * 5, IN_FLIGHT, 1),
      });
    }
    for (const client of ['baseline', 'before', 'after']) {
      cases.push({
        id: `exec-${client}`,
        group: 'exec with stdin (as writeFiles)',
        client,
        requestsPerCall: REQUESTS_PER_EXEC,
        run: () => batch(execs[client], EXECS_PER_ROUND, 1, REQUESTS_PER_EXEC),
      });
    }
    for (const entry of cases) {
      entry.requestsPerCall ??= 1;
      entry.cpu = [];
      entry.walls = [];
    }

    const loadAtStart = loadAverage();
    const rounds = WARMUP_ROUNDS + runs;
    log(`${WARMUP_ROUNDS} warm-up + ${runs} measured rounds of ${cases.length} cases`);
    for (let round = 0; round < rounds; round += 1) {
      // Each round starts one case later, so no case always follows the same neighbour.
      for (let step = 0; step < cases.length; step += 1) {
        checkpoint();
        const entry = cases[(round + step) % cases.length];
        const result = await entry.run();
        if (round >= WARMUP_ROUNDS) {
          entry.cpu.push(result.cpuUs);
          entry.walls.push(...result.walls);
        }
      }
      if ((round + 1) % 10 === 0) log(`round ${round + 1}/${rounds}`);
    }

    const host = {
      ...(await machine()),
      dockerEngine: runtime.engineVersion,
      dockerApi: runtime.apiVersion,
      loadAtStart,
      loadAtEnd: loadAverage(),
    };
    const rows = cases.map((entry) => ({ ...entry, stats: summarize(entry) }));
    const find = (caseId) => rows.find((row) => row.id === caseId).stats;

    console.log('');
    console.log(
      `@dso/docker-runtime per-request overhead: ${runs} measured rounds, ${WARMUP_ROUNDS} warm-up`,
    );
    printMachine(host, [
      `kernel ${host.kernel}, Docker Engine ${host.dockerEngine} ` +
        `(API ${host.dockerApi}), Node ${host.node}`,
      `revision ${host.revision}`,
    ]);
    console.log('');
    const lines = rows.map((row) => {
      const prefix = row.id.slice(0, row.id.lastIndexOf('-'));
      const baseline = find(`${prefix}-baseline`);
      const before = find(`${prefix}-before`);
      return [
        `${row.group}: ${labels[row.client]}`,
        String(row.stats.requests),
        row.stats.cpuUsPerRequest.toFixed(0),
        `${(row.stats.cpuUsPerRequest / baseline.cpuUsPerRequest).toFixed(2)}x`,
        row.client === 'after'
          ? `${(row.stats.cpuUsPerRequest / before.cpuUsPerRequest).toFixed(2)}x`
          : '',
        row.stats.wallP50Ms.toFixed(2),
        row.stats.wallP99Ms.toFixed(2),
      ];
    });
    printTable(
      [
        'case',
        'requests',
        'CPU µs/request',
        'CPU vs bare',
        'after/before',
        'wall p50 ms',
        'wall p99 ms',
      ],
      lines,
    );
    console.log('');
    console.log(
      'wall times are per request (an exec row: its three requests and the process, divided by 3)',
    );
    printBenchJson({
      bench: 'docker-runtime/request-overhead',
      at: new Date().toISOString(),
      runs,
      warmupRounds: WARMUP_ROUNDS,
      machine: host,
      cases: rows.map((row) => ({
        id: row.id,
        group: row.group,
        client: row.client,
        requests: row.stats.requests,
        cpuUsPerRequest: round2(row.stats.cpuUsPerRequest),
        wallP50Ms: round2(row.stats.wallP50Ms),
        wallP99Ms: round2(row.stats.wallP99Ms),
      })),
    });
  } finally {
    await removeContainers(stock, containerId);
    await runtime.close();
    stockAgent.destroy();
    bare.agent.destroy();
  }
}

/** Removes this run's container: by id, and by label for one created as an interrupt landed. */
async function removeContainers(docker, id) {
  const ids = new Set(id ? [id] : []);
  try {
    const listed = await docker.listContainers({
      all: true,
      filters: { label: [`${testImage.label}=${runLabel}`] },
    });
    for (const info of listed) ids.add(info.Id);
  } catch (error) {
    log(`could not list containers labelled ${testImage.label}=${runLabel}: ${error.message}`);
  }
  for (const each of ids) {
    try {
      await docker.getContainer(each).remove({ force: true, v: true });
      log(`container ${each.slice(0, 12)} removed`);
    } catch (error) {
      log(`could not remove container ${each.slice(0, 12)}: ${error.message}`);
    }
  }
}

try {
  await main();
} catch (error) {
  if (error?.interrupted) process.exit(130);
  console.error(error);
  process.exit(1);
}
