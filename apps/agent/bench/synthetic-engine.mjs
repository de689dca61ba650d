// A synthetic Docker Engine for pipeline.bench.mjs: a separate node process serving, on a unix
// socket, exactly the Engine API calls the BUILT agent makes with the host path on and the
// volume driver off, with Docker 20.10 / API 1.41 bodies (shapes recorded from the real
// 20.10.24 engine of this machine: `_ping`, `/version`, `/info`, `/containers/json`,
// `/containers/{id}/json` and `/events`, whose lines are written as Docker 20.10 writes them).
// Any other request is answered 501, written to stderr and counted: the benchmark fails loudly
// on it, so nothing the agent needs is silently faked wrong. Not a test double of behaviour:
// it starts no process and runs no exec (which is why the benchmark uses the host path).
//
// The fleet: `containers` managed containers `pipe-<i>`, each labelled `dso.enable=true` and
// `dso.file.token=dsofile://pipe/c<i>` (a secret of its own), each bind-mounting
// `<hostRoot>/pipe-<i>` read-only at /run/secrets. They exist only once an event created them.
// Unmanaged job containers (`job-<k>`, no DSO labels) come and go during churn.
//
// Run by the benchmark as a child (`fork`), with one JSON argument
// `{ socket, containers, hostRoot }`. It says `{ type: 'listening' }`, then obeys messages:
//   { cmd: 'fleet', ratePerSecond }            create + start every managed container
//   { cmd: 'churn', ratePerSecond, durationMs } the churn cycle below, for durationMs
//   { cmd: 'stats' }                            requests and body bytes by route, unknown ones
// and answers each with `{ type: 'done', cmd, ... }`: events sent, and for every `start` of a
// managed container its index and send time (ms since the epoch, the event's own timeNano).
//
// The churn cycle, 8 events, all of which pass the agent's `type`/`event` filters so that the
// agent reads every one: `die` + `start` of managed container i (the start needs a delivery),
// `health_status: healthy` and `health_status: unhealthy` of managed container j, and `create`,
// `start`, `die`, `destroy` of an unmanaged job container. i and j go round the fleet.
//
// Events are emitted at the asked rate by a 5 ms tick (each tick sends what is due), stamped
// with the wall clock (an hrtime offset from one Date.now() anchor, so strictly increasing), kept
// in a history for `since` replays, and written to every subscriber whose filters they pass.
// A subscriber that reads slower than the rate makes its socket's buffer grow (nothing is
// dropped, unlike a real engine's bounded per-subscriber queue): the largest backlog (bytes
// written but not yet taken by the reader) is reported.
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer } from 'node:http';

const options = JSON.parse(process.argv[2] ?? '{}');
const { socket: socketPath, containers: fleetSize, hostRoot } = options;
if (!socketPath || !Number.isInteger(fleetSize) || !hostRoot) {
  process.stderr.write(
    'usage: node synthetic-engine.mjs \'{"socket":"<path>","containers":<n>,"hostRoot":"<dir>"}\'\n',
  );
  process.exit(2);
}

const IMAGE = 'dso-test/busybox:1';
const IMAGE_ID = 'sha256:1129c959e0b37032a122485e71e661c2e189619ee3d2954153c323095f96149d';
const API_VERSION = '1.41';
const ENGINE_VERSION = '20.10.24+dfsg1';
const KERNEL = '6.18.44-fc-v1272';

// ---- Clock -----------------------------------------------------------------------------------

const anchorWallNs = BigInt(Date.now()) * 1_000_000n;
const anchorHr = process.hrtime.bigint();
let lastNs = 0n;
/** Wall-clock ns, strictly increasing. */
function nowNs() {
  let ns = anchorWallNs + (process.hrtime.bigint() - anchorHr);
  if (ns <= lastNs) ns = lastNs + 1n;
  lastNs = ns;
  return ns;
}
const isoOf = (ns) => {
  const ms = Number(ns / 1_000_000n);
  const fraction = (ns % 1_000_000_000n).toString().padStart(9, '0');
  return `${new Date(ms).toISOString().slice(0, 19)}.${fraction}Z`;
};

// ---- The fleet -------------------------------------------------------------------------------

/** A 64-hex id, random-looking like the engine's (distinct in its first 12 digits too). */
const idOf = (kind, index) => createHash('sha256').update(`${kind}-${index}`).digest('hex');

/** Every container that exists, by id. */
const byId = new Map();
/** Name → id. */
const byName = new Map();

function makeContainer(kind, index) {
  const managed = kind === 'c';
  const name = managed ? `pipe-${index}` : `job-${index}`;
  const id = idOf(managed ? 'pipe' : 'job', index);
  const labels = managed
    ? { 'dso.enable': 'true', 'dso.file.token': `dsofile://pipe/c${index}`, app: 'pipe' }
    : { app: 'job' };
  const mounts = managed
    ? [
        {
          Type: 'bind',
          Source: `${hostRoot}/${name}`,
          Destination: '/run/secrets',
          Mode: '',
          RW: false,
          Propagation: 'rprivate',
        },
      ]
    : [];
  const createdNs = nowNs();
  const container = {
    id,
    name,
    labels,
    mounts,
    createdNs,
    state: 'created',
    startedNs: 0n,
    finishedNs: 0n,
    exitCode: 0,
    listCache: undefined,
  };
  byId.set(id, container);
  byName.set(name, id);
  return container;
}

function setState(container, state) {
  container.state = state;
  container.listCache = undefined;
  if (state === 'running') container.startedNs = nowNs();
  if (state === 'exited') container.finishedNs = nowNs();
}

function remove(container) {
  byId.delete(container.id);
  byName.delete(container.name);
}

/** The container's summary in `/containers/json`, as Docker 20.10 writes it (cached). */
function summaryJson(container) {
  container.listCache ??= JSON.stringify({
    Id: container.id,
    Names: [`/${container.name}`],
    Image: IMAGE,
    ImageID: IMAGE_ID,
    Command: 'sleep 3600',
    Created: Number(container.createdNs / 1_000_000_000n),
    Ports: [],
    Labels: container.labels,
    State: container.state,
    Status: container.state === 'running' ? 'Up 2 minutes' : 'Exited (0) 1 second ago',
    HostConfig: { NetworkMode: 'none' },
    NetworkSettings: {
      Networks: {
        none: {
          IPAMConfig: null,
          Links: null,
          Aliases: null,
          NetworkID: '62f66a1101b20032e3186ff2163ba48e1dda567dcbda4297f06324b498ef9df7',
          EndpointID: '',
          Gateway: '',
          IPAddress: '',
          IPPrefixLen: 0,
          IPv6Gateway: '',
          GlobalIPv6Address: '',
          GlobalIPv6PrefixLen: 0,
          MacAddress: '',
          DriverOpts: null,
        },
      },
    },
    Mounts: container.mounts,
  });
  return container.listCache;
}

/** `/containers/{id}/json` as Docker 20.10 writes it (the fields a real one has, trimmed of none the agent reads). */
function inspectJson(container) {
  const running = container.state === 'running';
  return JSON.stringify({
    Id: container.id,
    Created: isoOf(container.createdNs),
    Path: 'sleep',
    Args: ['3600'],
    State: {
      Status: container.state,
      Running: running,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: running ? 10_000 : 0,
      ExitCode: container.exitCode,
      Error: '',
      StartedAt: container.startedNs === 0n ? '0001-01-01T00:00:00Z' : isoOf(container.startedNs),
      FinishedAt:
        container.finishedNs === 0n ? '0001-01-01T00:00:00Z' : isoOf(container.finishedNs),
    },
    Image: IMAGE_ID,
    ResolvConfPath: `/var/lib/docker/containers/${container.id}/resolv.conf`,
    HostnamePath: `/var/lib/docker/containers/${container.id}/hostname`,
    HostsPath: `/var/lib/docker/containers/${container.id}/hosts`,
    LogPath: `/var/lib/docker/containers/${container.id}/${container.id}-json.log`,
    Name: `/${container.name}`,
    RestartCount: 0,
    Driver: 'overlay2',
    Platform: 'linux',
    MountLabel: '',
    ProcessLabel: '',
    AppArmorProfile: '',
    ExecIDs: null,
    HostConfig: {
      Binds: null,
      NetworkMode: 'none',
      RestartPolicy: { Name: '', MaximumRetryCount: 0 },
      AutoRemove: false,
      IpcMode: 'private',
      ShmSize: 67_108_864,
      Runtime: 'runc',
      Mounts: container.mounts.map((mount) => ({
        Type: mount.Type,
        Source: mount.Source,
        Target: mount.Destination,
        ReadOnly: !mount.RW,
      })),
      MaskedPaths: ['/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys'],
      ReadonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
    GraphDriver: { Data: {}, Name: 'overlay2' },
    Mounts: container.mounts,
    Config: {
      Hostname: container.id.slice(0, 12),
      Domainname: '',
      User: '',
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      Tty: false,
      OpenStdin: false,
      StdinOnce: false,
      Env: null,
      Cmd: ['sleep', '3600'],
      Image: IMAGE,
      Volumes: null,
      WorkingDir: '',
      Entrypoint: null,
      OnBuild: null,
      Labels: container.labels,
    },
    NetworkSettings: {
      Bridge: '',
      SandboxID: '',
      HairpinMode: false,
      Ports: {},
      SandboxKey: '',
      Networks: {},
    },
  });
}

// ---- Events ----------------------------------------------------------------------------------

/** Every event sent: `{ ns, action, line, container (id), labels }`, for `since` replays. */
const history = [];
/** The open `/events` responses with their filters. */
const subscribers = new Set();
let maxBacklogBytes = 0;

/** One event line as Docker 20.10 writes it (`status`, `id`, `from`, …, `timeNano`). */
function eventLine(container, action, ns, extra = {}) {
  const attributes = { ...container.labels, ...extra, image: IMAGE, name: container.name };
  const body = JSON.stringify({
    status: action,
    id: container.id,
    from: IMAGE,
    Type: 'container',
    Action: action,
    Actor: { ID: container.id, Attributes: attributes },
    scope: 'local',
    time: Number(ns / 1_000_000_000n),
  });
  // timeNano last, as the engine writes it, and exact (a Number would round it).
  return `${body.slice(0, -1)},"timeNano":${ns}}\n`;
}

/** Whether `event` passes a subscriber's filters (type, event, container, label), as Docker's do. */
function passes(filters, event) {
  for (const [key, values] of Object.entries(filters)) {
    if (values.length === 0) continue;
    if (key === 'type') {
      if (!values.includes('container')) return false;
    } else if (key === 'event') {
      const base = event.action.split(':')[0];
      if (!values.includes(event.action) && !values.includes(base)) return false;
    } else if (key === 'container') {
      if (!values.some((value) => event.container.startsWith(value) || value === event.name))
        return false;
    } else if (key === 'label') {
      const ok = values.every((value) => {
        const [name, ...rest] = value.split('=');
        return rest.length === 0 ? name in event.labels : event.labels[name] === rest.join('=');
      });
      if (!ok) return false;
    }
  }
  return true;
}

/** Emits one event: applies its effect on the fleet, records and writes it. */
function emit(container, action, extra) {
  const ns = nowNs();
  const line = eventLine(container, action, ns, extra);
  const event = {
    ns,
    action,
    line,
    container: container.id,
    name: container.name,
    labels: container.labels,
  };
  history.push(event);
  for (const subscriber of subscribers) {
    if (!passes(subscriber.filters, event)) continue;
    subscriber.pending.push(line);
  }
  return ns;
}

/** Writes what each subscriber has pending in one chunk, and notes the largest backlog. */
function flush() {
  for (const subscriber of subscribers) {
    if (subscriber.pending.length === 0) continue;
    subscriber.response.write(subscriber.pending.join(''));
    subscriber.pending.length = 0;
    const backlog = subscriber.response.writableLength;
    if (backlog > maxBacklogBytes) maxBacklogBytes = backlog;
  }
}

// ---- Workloads -------------------------------------------------------------------------------

const managed = [];
let jobCount = 0;
let churnIndex = 0;
let healthIndex = 0;

/** The fleet's events, in order, as functions that emit one event each. */
function* fleetSteps(starts) {
  for (let index = 0; index < fleetSize; index += 1) {
    yield () => {
      const container = makeContainer('c', index);
      managed[index] = container;
      emit(container, 'create');
    };
    yield () => {
      const container = managed[index];
      setState(container, 'running');
      starts.push([index, Number(emit(container, 'start') / 1_000n) / 1_000]);
    };
  }
}

function* churnSteps(starts) {
  for (;;) {
    const index = churnIndex;
    churnIndex = (churnIndex + 1) % fleetSize;
    const target = managed[index];
    const healthy = managed[healthIndex];
    healthIndex = (healthIndex + 7) % fleetSize;
    yield () => {
      setState(target, 'exited');
      emit(target, 'die', { exitCode: '0' });
    };
    yield () => {
      setState(target, 'running');
      starts.push([index, Number(emit(target, 'start') / 1_000n) / 1_000]);
    };
    yield () => emit(healthy, 'health_status: healthy');
    let job;
    yield () => {
      job = makeContainer('j', jobCount++);
      emit(job, 'create');
    };
    yield () => {
      setState(job, 'running');
      emit(job, 'start');
    };
    yield () => {
      setState(job, 'exited');
      emit(job, 'die', { exitCode: '0' });
    };
    yield () => {
      remove(job);
      emit(job, 'destroy');
    };
    yield () => emit(healthy, 'health_status: unhealthy');
  }
}

/** Runs `steps` at `ratePerSecond` until they end or `durationMs` passes; resolves with the count. */
function pace(steps, ratePerSecond, durationMs = Number.POSITIVE_INFINITY) {
  return new Promise((resolve) => {
    const started = performance.now();
    let sent = 0;
    const tick = () => {
      const elapsed = performance.now() - started;
      const due = Math.min(
        Math.floor((Math.min(elapsed, durationMs) * ratePerSecond) / 1000),
        Number.MAX_SAFE_INTEGER,
      );
      while (sent < due) {
        const step = steps.next();
        if (step.done) {
          flush();
          resolve({ sent, elapsedMs: performance.now() - started });
          return;
        }
        step.value();
        sent += 1;
      }
      flush();
      if (elapsed >= durationMs) {
        resolve({ sent, elapsedMs: performance.now() - started });
        return;
      }
      setTimeout(tick, 5);
    };
    tick();
  });
}

// ---- HTTP ------------------------------------------------------------------------------------

const requests = {};
/** Response body bytes by route (the events stream's not included). */
const bytes = {};
let currentRoute;
const unknown = [];

function json(response, status, body) {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  if (currentRoute) bytes[currentRoute] = (bytes[currentRoute] ?? 0) + Buffer.byteLength(text);
  response.writeHead(status, {
    'Api-Version': API_VERSION,
    'Content-Type': 'application/json',
    'Docker-Experimental': 'false',
    Ostype: 'linux',
    Server: `Docker/${ENGINE_VERSION} (linux)`,
    'Content-Length': Buffer.byteLength(text),
  });
  response.end(text);
}

/** `filters` as the engine takes it: `{"label":["a=b"]}` or the old `{"label":{"a=b":true}}`. */
function parseFilters(text) {
  if (!text) return {};
  const parsed = JSON.parse(text);
  const filters = {};
  for (const [key, value] of Object.entries(parsed)) {
    filters[key] = Array.isArray(value) ? value : Object.keys(value);
  }
  return filters;
}

/** A container by full id, unique id prefix or name, as the engine looks them up. */
function lookup(reference) {
  const byExact = byId.get(reference) ?? byId.get(byName.get(reference) ?? '');
  if (byExact) return byExact;
  if (reference.length >= 1 && /^[0-9a-f]+$/.test(reference)) {
    for (const [id, container] of byId) if (id.startsWith(reference)) return container;
  }
  return undefined;
}

const LIST_FILTERS = new Set(['label', 'status', 'id', 'name']);

function listContainers(url, response) {
  const all = ['1', 'true', 'True'].includes(url.searchParams.get('all') ?? '');
  const filters = parseFilters(url.searchParams.get('filters'));
  for (const key of Object.keys(filters)) {
    if (!LIST_FILTERS.has(key)) return false;
  }
  const parts = [];
  for (const container of byId.values()) {
    if (!all && container.state !== 'running') continue;
    if (filters.status?.length && !filters.status.includes(container.state)) continue;
    if (filters.id?.length && !filters.id.some((id) => container.id.startsWith(id))) continue;
    if (filters.name?.length && !filters.name.some((name) => container.name.includes(name)))
      continue;
    if (filters.label?.length && !passes({ label: filters.label }, container)) continue;
    parts.push(summaryJson(container));
  }
  json(response, 200, `[${parts.join(',')}]`);
  return true;
}

const EVENT_FILTERS = new Set(['type', 'event', 'container', 'label']);

/** Seconds with up to nine decimals → ns (BigInt). */
function toNs(text) {
  const [seconds, fraction = ''] = text.split('.');
  return BigInt(seconds) * 1_000_000_000n + BigInt(fraction.padEnd(9, '0').slice(0, 9) || '0');
}

function events(url, request, response) {
  const filters = parseFilters(url.searchParams.get('filters'));
  for (const key of Object.keys(filters)) {
    if (!EVENT_FILTERS.has(key)) return false;
  }
  if (url.searchParams.has('until')) return false;
  const since = url.searchParams.get('since');
  response.writeHead(200, {
    'Api-Version': API_VERSION,
    'Content-Type': 'application/json',
    'Docker-Experimental': 'false',
    Ostype: 'linux',
    Server: `Docker/${ENGINE_VERSION} (linux)`,
  });
  response.flushHeaders();
  const subscriber = { filters, response, pending: [] };
  if (since) {
    const sinceNs = toNs(since);
    for (const event of history) {
      if (event.ns >= sinceNs && passes(filters, event)) subscriber.pending.push(event.line);
    }
  }
  subscribers.add(subscriber);
  flush();
  const drop = () => subscribers.delete(subscriber);
  request.on('close', drop);
  response.on('close', drop);
  return true;
}

const INFO = () => ({
  ID: 'SYNT:HETI:CENG:INE0:0000:0000:0000:0000:0000:0000:0000:0000',
  Containers: byId.size,
  ContainersRunning: [...byId.values()].filter((container) => container.state === 'running').length,
  ContainersPaused: 0,
  ContainersStopped: [...byId.values()].filter((container) => container.state !== 'running').length,
  Images: 1,
  Driver: 'overlay2',
  Plugins: { Volume: ['local'], Network: ['bridge', 'host', 'null'], Log: ['json-file'] },
  MemoryLimit: true,
  SwapLimit: true,
  Debug: false,
  NEventsListener: subscribers.size,
  KernelVersion: KERNEL,
  OperatingSystem: 'Debian GNU/Linux 12 (bookworm)',
  OSVersion: '12',
  OSType: 'linux',
  Architecture: 'x86_64',
  NCPU: 2,
  DockerRootDir: '/var/lib/docker',
  Name: 'synthetic-engine',
  Labels: [],
  ExperimentalBuild: false,
  ServerVersion: ENGINE_VERSION,
  Swarm: {
    NodeID: '',
    NodeAddr: '',
    LocalNodeState: 'inactive',
    ControlAvailable: false,
    Error: '',
    RemoteManagers: null,
  },
  LiveRestoreEnabled: false,
  SecurityOptions: ['name=seccomp,profile=default'],
  Warnings: null,
});

const VERSION = {
  Platform: { Name: '' },
  Version: ENGINE_VERSION,
  ApiVersion: API_VERSION,
  MinAPIVersion: '1.12',
  GitCommit: '5d6db84',
  GoVersion: 'go1.19.8',
  Os: 'linux',
  Arch: 'amd64',
  KernelVersion: KERNEL,
  BuildTime: '2026-05-07T21:09:36.000000000+00:00',
};

function route(request, response) {
  const url = new URL(request.url ?? '/', 'http://engine');
  const path = url.pathname.replace(/^\/v1\.\d+/, '');
  const method = request.method ?? 'GET';
  let name;
  let handled = true;
  currentRoute = undefined;
  if ((method === 'GET' || method === 'HEAD') && path === '/_ping') {
    name = 'ping';
    response.writeHead(200, {
      'Api-Version': API_VERSION,
      'Docker-Experimental': 'false',
      Ostype: 'linux',
      Server: `Docker/${ENGINE_VERSION} (linux)`,
      'Content-Type': 'text/plain; charset=utf-8',
    });
    response.end(method === 'HEAD' ? undefined : 'OK');
  } else if (method === 'GET' && path === '/version') {
    name = 'version';
    currentRoute = name;
    json(response, 200, VERSION);
  } else if (method === 'GET' && path === '/info') {
    name = 'info';
    currentRoute = name;
    json(response, 200, INFO());
  } else if (method === 'GET' && path === '/containers/json') {
    name = 'list';
    currentRoute = name;
    handled = listContainers(url, response);
  } else if (method === 'GET' && /^\/containers\/[^/]+\/json$/.test(path)) {
    name = 'inspect';
    currentRoute = name;
    const container = lookup(decodeURIComponent(path.split('/')[2]));
    if (container) json(response, 200, inspectJson(container));
    else json(response, 404, { message: `No such container: ${path.split('/')[2]}` });
  } else if (method === 'GET' && path === '/events') {
    name = 'events';
    handled = events(url, request, response);
  } else {
    handled = false;
  }
  if (!handled) {
    const line = `${method} ${request.url}`;
    unknown.push(line);
    process.stderr.write(`synthetic engine: unknown request ${line}\n`);
    json(response, 501, { message: `the synthetic engine does not serve ${method} ${path}` });
    return;
  }
  requests[name] = (requests[name] ?? 0) + 1;
}

// ---- Control ---------------------------------------------------------------------------------

const server = createServer((request, response) => {
  try {
    route(request, response);
  } catch (error) {
    unknown.push(`${request.method} ${request.url} (${error.message})`);
    process.stderr.write(`synthetic engine: ${request.method} ${request.url}: ${error.stack}\n`);
    if (!response.headersSent) json(response, 500, { message: error.message });
  }
});
server.keepAliveTimeout = 60_000;

process.on('message', async (message) => {
  if (message.cmd === 'fleet') {
    const starts = [];
    const result = await pace(fleetSteps(starts), message.ratePerSecond);
    process.send({ type: 'done', cmd: 'fleet', ...result, starts, maxBacklogBytes });
  } else if (message.cmd === 'churn') {
    const starts = [];
    maxBacklogBytes = 0;
    const result = await pace(churnSteps(starts), message.ratePerSecond, message.durationMs);
    process.send({ type: 'done', cmd: 'churn', ...result, starts, maxBacklogBytes });
  } else if (message.cmd === 'stats') {
    process.send({
      type: 'done',
      cmd: 'stats',
      requests,
      bytes,
      unknown,
      subscribers: subscribers.size,
      historyEvents: history.length,
    });
  }
});

const stop = () => {
  server.close();
  for (const subscriber of subscribers) subscriber.response.destroy();
  rmSync(socketPath, { force: true });
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', () => {
  // The benchmark stops this process itself once it has cleaned up: a terminal's Ctrl-C
  // reaches the whole group, and the agent must still be answered while it stops.
});
process.on('disconnect', stop);
rmSync(socketPath, { force: true });
server.listen(socketPath, () => process.send({ type: 'listening' }));
