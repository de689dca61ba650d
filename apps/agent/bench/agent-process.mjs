// Helpers shared by the agent's benchmarks (apps/agent/bench/*.bench.mjs): a DSO home with a
// local vault and its key file, the BUILT agent as a child process (as test-e2e's harness starts
// it: own DSO_HOME, own API socket, metrics on a free loopback port), its /metrics, the RSS and
// CPU time of a process from /proc, labelled containers and their removal, and Ctrl-C handling.
// Generic figures and printing (medians, tables, BENCH_JSON) come from tools/bench-lib.mjs.
// Not a benchmark itself: tools/bench.mjs runs only `*.bench.mjs`.
import { execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateKeyFile, initVault, resolveVaultKey } from '@dso/provider-local';
import { SecretValue } from '@dso/provider-sdk';
import { log, median, percentile } from '../../../tools/bench-lib.mjs';

export const ROOT = join(import.meta.dirname, '..', '..', '..');
/** The built agent's command, as an operator runs it. */
export const AGENT_BIN = join(ROOT, 'apps/agent/bin/dso-agent.js');
export const testImage = JSON.parse(readFileSync(join(ROOT, 'tools/test-image.json'), 'utf8'));
/** dockerode as @dso/docker-runtime resolves it: the copy that ships with the agent. */
export const Docker = createRequire(import.meta.resolve('@dso/docker-runtime'))('dockerode');

/** Clock ticks per second of /proc/<pid>/stat's utime and stime (USER_HZ, 100 on Linux). */
export const CLOCK_TICKS_PER_SECOND = 100;

// ---- Ctrl-C ----------------------------------------------------------------------------------

let interrupted = false;
/**
 * Makes SIGINT/SIGTERM/SIGHUP set a flag that {@link checkpoint} turns into an error, so the
 * program's `finally` blocks remove what it created. `cleanupHint` is printed should cleanup
 * still be busy after `graceMs` (30 s; a program that removes hundreds of containers needs more).
 */
export function handleInterrupts(cleanupHint, { graceMs = 30_000 } = {}) {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
    process.on(signal, () => {
      // Ctrl-C may arrive twice (the terminal's and the one tools/bench.mjs forwards).
      if (interrupted) return;
      interrupted = true;
      log(`${signal}: stopping after the current step, then cleaning up`);
      setTimeout(() => {
        log(`still busy after ${graceMs / 1000} s: exiting; clean up by hand with`);
        log(`  ${cleanupHint}`);
        process.exit(130);
      }, graceMs).unref();
    });
  }
}

/** Whether a signal arrived (a child that died of the same Ctrl-C is then no failure). */
export const wasInterrupted = () => interrupted;

/** Throws (an error marked `interrupted`) once a signal arrived. */
export function checkpoint() {
  if (interrupted) throw Object.assign(new Error('interrupted'), { interrupted: true });
}

/** Resolves after `ms`, or rejects early (as {@link checkpoint}) when a signal arrives. */
export async function pause(ms) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    checkpoint();
    await new Promise((resolve) => setTimeout(resolve, Math.min(100, until - Date.now())));
  }
  checkpoint();
}

// ---- A DSO home and the built agent ----------------------------------------------------------

/** A TCP port on 127.0.0.1 that nothing listens on at the moment. */
export async function freePort() {
  const server = createServer();
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', resolve);
  });
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/**
 * A DSO home of the benchmark's own in a temporary folder: a key file (mode 0600) and a local
 * vault holding `secrets` (path → bytes), as `dso init` + `dso secret set` make them, and a
 * `dso.yaml` from `configYaml` when given. `env` is the agent's environment: the inherited one
 * without the operator's own DSO settings, plus DSO_HOME, its own API socket and metrics on a
 * free loopback port. `remove()` deletes the folder.
 */
export async function createBenchHome(secrets, { configYaml } = {}) {
  const home = mkdtempSync(join(tmpdir(), 'dso-bench-'));
  try {
    const keyFile = join(home, 'vault.key');
    await generateKeyFile(keyFile);
    const key = await resolveVaultKey({ env: { DSO_VAULT_KEY_FILE: keyFile } });
    const vault = await initVault({ path: join(home, 'vault.dso'), key });
    try {
      for (const [path, bytes] of Object.entries(secrets)) {
        const value = SecretValue.fromBytes(bytes);
        await vault.set(path, value);
        value.dispose();
      }
    } finally {
      await vault.close();
    }
    if (configYaml !== undefined) {
      writeFileSync(join(home, 'dso.yaml'), configYaml, { mode: 0o600 });
      chmodSync(join(home, 'dso.yaml'), 0o600);
    }
    const inherited = Object.fromEntries(
      Object.entries(process.env).filter(([name]) => !name.startsWith('DSO_')),
    );
    const metricsAddress = `127.0.0.1:${await freePort()}`;
    const env = {
      ...inherited,
      DSO_HOME: home,
      DSO_API_SOCKET: join(home, 'agent.sock'),
      DSO_METRICS_ADDRESS: metricsAddress,
      DSO_LOG_LEVEL: 'info',
    };
    return {
      home,
      env,
      metricsAddress,
      remove: () => rmSync(home, { recursive: true, force: true }),
    };
  } catch (error) {
    rmSync(home, { recursive: true, force: true });
    throw error;
  }
}

/**
 * Starts the built agent (`apps/agent/bin/dso-agent.js`) with `env`. Its JSON log lines are kept
 * (the last 2,000) for `waitForLog`. `stop()` sends SIGTERM and waits for the exit (SIGKILL
 * after 15 s).
 */
export function startAgentProcess(env, { detached = false, script = AGENT_BIN } = {}) {
  // `detached`: a process group of its own, so a Ctrl-C at the terminal does not stop the agent
  // before the program has cleaned up what the agent must still answer for. `script`: another
  // entry than the command (footprint.bench.mjs starts dist/main.js to compare).
  const child = spawn(process.execPath, [script], {
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached,
  });
  const lines = [];
  const other = [];
  let partial = '';
  const keep = (text) => {
    const parts = (partial + text).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      if (!line.startsWith('{')) {
        // A line that is not the agent's log (Node's own error on a crash, say): the last few
        // are kept for the error saying why it exited.
        if (line.trim() !== '') other.push(line.slice(0, 300));
        if (other.length > 5) other.shift();
        continue;
      }
      try {
        lines.push(JSON.parse(line));
      } catch {
        // Not one of the agent's JSON lines (a stray write): nothing to look for in it.
      }
      if (lines.length > 2_000) lines.shift();
    }
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  const exited = new Promise((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal)),
  );
  return {
    pid: child.pid,
    lines,
    get exitCode() {
      return child.exitCode;
    },
    /**
     * Resolves with the first log line whose `msg` is `message` (or one of several); rejects on
     * exit or timeout.
     */
    async waitForLog(message, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      const wanted = Array.isArray(message) ? message : [message];
      for (;;) {
        const found = lines.find((line) => wanted.includes(line.msg));
        if (found) return found;
        if (child.exitCode !== null) {
          const last = [
            ...lines.slice(-5).map((line) => `${line.msg} ${line.code ?? ''}`),
            ...other,
          ];
          throw new Error(
            `the agent exited (${child.exitCode}) before "${wanted[0]}": ${last.join('; ')}`,
          );
        }
        if (Date.now() > deadline)
          throw new Error(`no "${wanted[0]}" from the agent in ${timeoutMs} ms`);
        await pause(50);
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
        const code = await exited;
        clearTimeout(timer);
        return code;
      }
      return exited;
    },
  };
}

/** The agent's /metrics exposition from `address` (`host:port`). */
export async function readMetrics(address) {
  const response = await fetch(`http://${address}/metrics`, {
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok) throw new Error(`GET http://${address}/metrics answered ${response.status}`);
  return response.text();
}

/**
 * The sum of the series named `name` whose labels include `labels`, from a Prometheus text
 * exposition (0 when none): `dso_injection_writes_total{method="host"}` sums its outcomes.
 */
export function metricSum(exposition, name, labels = {}) {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    const sample = /^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (sample === null || sample[1] !== name) continue;
    const found = {};
    for (const [, key, value] of (sample[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)) {
      found[key] = value;
    }
    if (Object.entries(labels).every(([key, value]) => found[key] === value)) {
      sum += Number(sample[3]);
    }
  }
  return sum;
}

// ---- /proc -----------------------------------------------------------------------------------

/** Resident set size of process `pid` in bytes (VmRSS), or undefined once it is gone. */
export function rssBytes(pid) {
  try {
    const line = readFileSync(`/proc/${pid}/status`, 'utf8')
      .split('\n')
      .find((entry) => entry.startsWith('VmRSS:'));
    return line === undefined ? undefined : Number(line.split(/\s+/)[1]) * 1024;
  } catch {
    // The process exited: no figure, which the caller reports.
    return undefined;
  }
}

/** CPU time (user + system) process `pid` has used, in clock ticks; undefined once it is gone. */
export function cpuTicks(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // `pid (comm) state ppid …`: comm may hold spaces, so split after its closing parenthesis.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    // The process exited: no figure, which the caller reports.
    return undefined;
  }
}

/** The pids whose parent is `pid` (the agent's provider processes), from /proc. */
export function childPids(pid) {
  const children = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) children.push(Number(entry));
    } catch {
      // It exited while we looked: not a child any more.
    }
  }
  return children;
}

/**
 * Starts `node <args>` (a baseline process) in the workspace root, so `-e` code can import the
 * workspace's packages, with `env` (default: this process's); `stop()` kills it and waits.
 */
export function startNode(args, env = process.env) {
  const child = spawn(process.execPath, args, {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  const exited = new Promise((resolve) => child.on('exit', resolve));
  return {
    pid: child.pid,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

export const mib = (bytes) => bytes / 2 ** 20;

// ---- Containers ------------------------------------------------------------------------------

/** A label value for this run's containers: `dso.test=bench-<uuid>`. */
export const newRunLabel = () => `bench-${randomUUID()}`;

/** Removes every container labelled `dso.test=<runLabel>` (and their anonymous volumes). */
export async function removeRunContainers(docker, runLabel) {
  let listed = [];
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
  for (const info of listed) {
    try {
      await docker.getContainer(info.Id).remove({ force: true, v: true });
    } catch (error) {
      if (error.statusCode !== 404) {
        log(`could not remove container ${info.Id.slice(0, 12)}: ${error.message}`);
        process.exitCode = 1;
      }
    }
  }
  if (listed.length > 0) log(`${listed.length} container(s) labelled ${runLabel} removed`);
}

// ---- In-container stamps ----------------------------------------------------------------------

/** The payload of a non-TTY container's log stream (8-byte frame headers removed). */
export function demux(buffer) {
  const parts = [];
  for (let offset = 0; offset + 8 <= buffer.length; ) {
    const size = buffer.readUInt32BE(offset + 4);
    parts.push(buffer.subarray(offset + 8, offset + 8 + size));
    offset += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}

/** adjtimex(2)'s STA_NANO: `time.tv_usec` then holds nanoseconds. */
const STA_NANO = 0x2000;

/**
 * µs since the epoch from the busybox `adjtimex` output printed after the line `marker`, or
 * undefined (busybox `date` has no sub-second format; `adjtimex` prints the clock). Its
 * `time.tv_usec` is in ns when the kernel's clock status has STA_NANO (seen here: status
 * 8256), in µs otherwise.
 */
export function stampAfter(output, marker) {
  const at = output.indexOf(`${marker}\n`);
  if (at < 0) return undefined;
  const rest = output.slice(at);
  const status = /status:\s*(\d+)/.exec(rest);
  const seconds = /time\.tv_sec:\s*(\d+)/.exec(rest);
  const fraction = /time\.tv_usec:\s*(\d+)/.exec(rest);
  if (!status || !seconds || !fraction) return undefined;
  const nano = (Number(status[1]) & STA_NANO) !== 0;
  return Number(seconds[1]) * 1e6 + Number(fraction[1]) / (nano ? 1000 : 1);
}

/** An RFC 3339 time with nanoseconds (`State.StartedAt`) as µs since the epoch. */
export function startedAtMicros(text) {
  const match = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!match) throw new Error(`unexpected StartedAt ${text}`);
  const fraction = Number(`0.${match[2] ?? '0'}`);
  return Date.parse(`${match[1]}${match[3]}`) * 1000 + fraction * 1e6;
}

const execFileAsync = promisify(execFile);

/** Runs a program to its end; its stdout, trimmed. @throws Error naming the program and its stderr */
export async function command(file, args) {
  try {
    const { stdout } = await execFileAsync(file, args, { maxBuffer: 1024 * 1024 });
    return stdout.trim();
  } catch (error) {
    throw new Error(`${file} ${args[0]} failed: ${(error.stderr ?? error.message).trim()}`);
  }
}

/** Whether anything is mounted at or under `path`. */
export const mountedUnder = (path) =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((line) => {
      const point = line.split(' ')[4];
      return point === path || point?.startsWith(`${path}/`);
    });

/** n, median, p95, p99, min and max of a list of samples; undefined for none. */
export function summarize(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  if (sorted.length === 0) return undefined;
  return {
    n: sorted.length,
    median: median(sorted),
    p95: percentile(sorted, 0.95),
    p99: percentile(sorted, 0.99),
    min: sorted[0],
    max: sorted[sorted.length - 1],
  };
}

/** The names of the engine's volumes of volume driver `driver`. */
export async function driverVolumes(docker, driver) {
  const { Volumes } = await docker.listVolumes({ filters: { driver: [driver] } });
  return (Volumes ?? []).map((volume) => volume.Name);
}
