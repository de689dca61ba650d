import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Agent } from 'node:http';
import type { Duplex, Readable } from 'node:stream';
import Docker from 'dockerode';
import { negotiateApiVersion } from './api-version.js';
import { type NumericOwner, resolveContainerUser } from './container-user.js';
import {
  type ExecRequest,
  type ExecResult,
  execInContainer,
  restartContainer,
  signalContainer,
} from './control.js';
import { Deadline } from './deadline.js';
import { type DockerEndpoint, resolveDockerHost } from './docker-host.js';
import type { EngineContext, RuntimeSettings } from './engine-context.js';
import { toEngineError, UNREACHABLE_FIX } from './engine-errors.js';
import { DockerRuntimeError, isDockerRuntimeError } from './errors.js';
import {
  CONTAINER_ACTIONS,
  type ContainerEvent,
  LineSplitter,
  parseContainerEvent,
  toEngineSince,
} from './events.js';
import { type ExecOutcome, runExec } from './exec.js';
import {
  type ReplaceRecovery,
  type ReplaceRequest,
  type ReplaceResult,
  recoverReplacements,
  replaceContainer,
} from './replace.js';
import { buildTar } from './tar.js';
import {
  type ValidatedWriteRequest,
  validateWriteRequest,
  type WriteFilesRequest,
  type WriteFilesResult,
} from './write-request.js';
import { interpretWriteExit, WRITE_SCRIPT } from './write-script.js';

/** Default for {@link DockerRuntimeOptions.connectTimeoutMs}. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Default for {@link DockerRuntimeOptions.requestTimeoutMs}. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Default for {@link DockerRuntimeOptions.writeTimeoutMs}. */
export const DEFAULT_WRITE_TIMEOUT_MS = 30_000;
/** Most bytes of an exec's stdout and of its stderr kept (the tail); the rest is counted. */
export const MAX_EXEC_OUTPUT_BYTES = 64 * 1024;

/** How to reach the engine, and how long to wait for it. */
export interface DockerRuntimeOptions {
  /**
   * Where the engine listens, in `DOCKER_HOST` syntax: `unix:///path/to/docker.sock` or
   * `tcp://host:port` (plain TCP only to loopback unless {@link allowInsecureTcp}).
   * @default `DOCKER_HOST` from the environment, else `unix:///var/run/docker.sock`
   */
  host?: string;
  /** Aborts {@link createDockerRuntime} (the ping and version negotiation). */
  signal?: AbortSignal;
  /**
   * Bound on reaching the engine: the ping at creation, and an events stream's first response.
   * @default 5000
   */
  connectTimeoutMs?: number;
  /**
   * Bound on each list, inspect and exec-control request.
   * @default 30000
   */
  requestTimeoutMs?: number;
  /**
   * Bound on a whole {@link DockerRuntime.writeFiles} call unless the request sets its own.
   * @default 30000
   */
  writeTimeoutMs?: number;
  /**
   * Allow `tcp://` to a non-loopback host. Secret files then cross the network unencrypted.
   * @default false
   */
  allowInsecureTcp?: boolean;
  /**
   * The environment `DOCKER_HOST` is read from.
   * @default process.env
   */
  env?: NodeJS.ProcessEnv;
}

/** Options of {@link DockerRuntime.events}. */
export interface EventsOptions {
  /**
   * Replay events from this time on (the engine keeps only its last 256 events). A number below
   * 1e11 is unix seconds, anything larger is unix ms; a string is the engine's own
   * `seconds[.nanoseconds]` form, exact for resuming after an event's `timeNano`.
   * @default only events from now on
   */
  since?: number | string;
  /** Ends the iteration (without an error) and closes the HTTP stream. */
  signal: AbortSignal;
  /**
   * Called once the engine has accepted the subscription, before any event: an owner counting
   * failed reconnects resets its count here, so a quiet but healthy stream is not a failure.
   */
  onConnected?: () => void;
}

/** Options of {@link DockerRuntime.listContainers}. */
export interface ListContainersOptions {
  /** A label filter as the engine takes it: `key` or `key=value`, e.g. `dso.enable=true`. */
  label: string;
  /**
   * Include containers that are not running.
   * @default false
   */
  all?: boolean;
  signal?: AbortSignal;
}

/** A container as listed. */
export interface ContainerSummary {
  /** Full container id. */
  id: string;
  /** Name without the leading `/`. */
  name: string;
  labels: Record<string, string>;
  /** The engine's state: `created`, `running`, `paused`, `restarting`, `exited`, `dead`... */
  state: string;
  /** The image reference it was created from. */
  image: string;
}

/** What DSO needs to know about one container. */
export interface ContainerDetails {
  /** Full container id. */
  id: string;
  /** Name without the leading `/`. */
  name: string;
  labels: Record<string, string>;
  running: boolean;
  /** The engine's state: `created`, `running`, `paused`, `restarting`, `exited`, `dead`... */
  state: string;
  /** `Config.User` as given to the engine: `''` (root), `name`, `uid`, `uid:gid`, `name:group`. */
  user: string;
  /** Destinations of its tmpfs mounts, from `HostConfig.Tmpfs` and mounts of type tmpfs. */
  tmpfs: string[];
  /** The image reference it was created from. */
  image: string;
}

/**
 * The Docker Engine behind a narrow interface of DSO's own types. Create it with
 * {@link createDockerRuntime}; close it (or `await using` it) when done.
 */
export interface DockerRuntime extends AsyncDisposable {
  /** The Engine API version negotiated, e.g. `1.41`. */
  readonly apiVersion: string;
  /** The engine's own version, e.g. `20.10.24+dfsg1`. */
  readonly engineVersion: string;
  /** Where the engine was reached, e.g. `unix:///var/run/docker.sock`. */
  readonly host: string;

  /**
   * Streams container lifecycle events (create, start, die, destroy). Consume promptly: a slow
   * reader slows the engine and, past ~1,300 buffered events, the engine drops events for it.
   * Aborting `signal` ends the iteration without an error. There is no reconnect here: when the
   * engine ends the stream or it breaks, the iteration throws DSO_DOCKER_EVENTS_LOST, and the
   * owner resumes with `since` and reconciles.
   *
   * @throws DockerRuntimeError DSO_DOCKER_EVENTS_LOST when the stream ends, breaks or garbles
   * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE, DSO_DOCKER_TIMEOUT when it cannot start
   * @throws DockerRuntimeError DSO_DOCKER_CLOSED when the runtime is closed meanwhile
   * @example
   * for await (const event of runtime.events({ signal })) queue.push(event);
   */
  events(options: EventsOptions): AsyncIterable<ContainerEvent>;

  /**
   * Lists containers carrying a label, running ones only unless `all` is set.
   *
   * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE, DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED,
   *   DSO_DOCKER_ENGINE_ERROR
   * @example
   * const managed = await runtime.listContainers({ label: 'dso.enable=true' });
   */
  listContainers(options: ListContainersOptions): Promise<ContainerSummary[]>;

  /**
   * Inspects one container by id or name.
   *
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND when it does not exist
   * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE, DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED
   * @example
   * const { user, tmpfs } = await runtime.inspectContainer(id);
   */
  inspectContainer(id: string, options?: { signal?: AbortSignal }): Promise<ContainerDetails>;

  /**
   * Replaces the whole set of secret files in a tmpfs directory of a running container,
   * all-or-nothing, through ONE `docker exec` that reads a tar of the files on its stdin. Values
   * never appear in the exec's argv or env, in labels, logs, error messages, or on host disk.
   * Each `<target>/<name>` becomes a symlink to `..data/<name>`; `..data` is swapped atomically,
   * so readers see the old set or the new one, never a mix. Calls for one container are run one
   * after another.
   *
   * The image needs sh, tar, mkdir, chmod, chown, ln, mv (-T) and rm; busybox is enough.
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a bad name, target, mode or owner
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND, DSO_DOCKER_CONTAINER_NOT_RUNNING
   * @throws DockerRuntimeError DSO_DOCKER_TARGET_NOT_TMPFS when target is not a tmpfs mount point
   * @throws DockerRuntimeError DSO_DOCKER_TARGET_CONFLICT when a name exists there as a real file
   * @throws DockerRuntimeError DSO_DOCKER_USER_UNRESOLVED when the container's user has no entry
   * @throws DockerRuntimeError DSO_DOCKER_NO_SHELL, DSO_DOCKER_NO_TAR, DSO_DOCKER_MISSING_TOOL
   * @throws DockerRuntimeError DSO_DOCKER_EXEC_FAILED when staging or the swap fails (old set kept)
   * @throws DockerRuntimeError DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED: the set is then old or new
   * @example
   * await runtime.writeFiles(id, {
   *   target: '/run/secrets',
   *   files: [{ name: 'db_password', content: bytes }],
   * });
   */
  writeFiles(id: string, request: WriteFilesRequest): Promise<WriteFilesResult>;

  /**
   * Runs a command in a running container and returns its exit code and bounded output.
   * (control.ts owns the full contract.)
   */
  exec(id: string, request: ExecRequest): Promise<ExecResult>;

  /**
   * Sends a unix signal to a container's main process. (control.ts owns the full contract.)
   */
  sendSignal(
    id: string,
    unixSignal: string | number,
    options?: { signal?: AbortSignal },
  ): Promise<void>;

  /**
   * Restarts a container (stop with a grace period, then start). (control.ts owns the contract.)
   */
  restartContainer(
    id: string,
    options?: { stopTimeoutMs?: number; signal?: AbortSignal },
  ): Promise<void>;

  /**
   * Clone-and-replace: recreates a container with changed environment beside the old one,
   * switches once healthy, rolls back otherwise. (replace.ts owns the full contract.)
   */
  replaceContainer(id: string, request: ReplaceRequest): Promise<ReplaceResult>;

  /**
   * Finishes or undoes replacements a crash interrupted. (replace.ts owns the full contract.)
   */
  recoverReplacements(options?: { signal?: AbortSignal }): Promise<ReplaceRecovery[]>;

  /**
   * The container's user as numeric uid and gid, read from its own /etc/passwd and /etc/group.
   * (container-user.ts owns the full contract.)
   */
  resolveUser(id: string, options?: { signal?: AbortSignal }): Promise<NumericOwner>;
  /**
   * Aborts every call in flight (they reject with DSO_DOCKER_CLOSED), destroys every socket,
   * and refuses later calls. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Connects to the Docker Engine: pings it within `connectTimeoutMs`, reads its version and
 * negotiates the API version (1.41 at least).
 *
 * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE when nothing answers in time, naming the
 *   socket or host and how to fix it
 * @throws DockerRuntimeError DSO_DOCKER_PERMISSION_DENIED when the socket refuses this user
 * @throws DockerRuntimeError DSO_DOCKER_API_TOO_OLD when the engine is older than API 1.41
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_HOST, DSO_DOCKER_INSECURE_HOST for a bad host
 * @throws DockerRuntimeError DSO_DOCKER_ABORTED when `signal` aborts
 * @example
 * await using runtime = await createDockerRuntime();
 * console.log(runtime.engineVersion, runtime.apiVersion);
 */
export async function createDockerRuntime(
  options: DockerRuntimeOptions = {},
): Promise<DockerRuntime> {
  const endpoint = resolveDockerHost(options.host, options.env ?? process.env, {
    allowInsecureTcp: options.allowInsecureTcp ?? false,
  });
  const settings = {
    connectTimeoutMs: positive(
      options.connectTimeoutMs,
      DEFAULT_CONNECT_TIMEOUT_MS,
      'connectTimeoutMs',
    ),
    requestTimeoutMs: positive(
      options.requestTimeoutMs,
      DEFAULT_REQUEST_TIMEOUT_MS,
      'requestTimeoutMs',
    ),
    writeTimeoutMs: positive(options.writeTimeoutMs, DEFAULT_WRITE_TIMEOUT_MS, 'writeTimeoutMs'),
  };
  const agent = new Agent({ keepAlive: true });
  const probe = new Docker(modemOptions(endpoint, agent, undefined));
  const deadline = new Deadline({ caller: options.signal }, settings.connectTimeoutMs);
  let version: Docker.DockerVersion;
  try {
    // dockerode takes an abortSignal here too; its typings only miss it.
    const engine = probe as unknown as ProbeCalls;
    await engine.ping({ abortSignal: deadline.signal });
    version = await engine.version({ abortSignal: deadline.signal });
  } catch (error) {
    agent.destroy();
    throw connectError(error, endpoint, deadline, settings.connectTimeoutMs);
  } finally {
    deadline.dispose();
  }
  const engineVersion = String(version.Version ?? 'unknown');
  let apiVersion: string;
  try {
    apiVersion = negotiateApiVersion({
      apiVersion: String(version.ApiVersion ?? ''),
      minApiVersion: version.MinAPIVersion,
      engineVersion,
    });
  } catch (error) {
    agent.destroy();
    throw error;
  }
  const docker = new Docker(modemOptions(endpoint, agent, apiVersion));
  return new EngineRuntime(docker, agent, endpoint, apiVersion, engineVersion, settings);
}

interface ProbeCalls {
  ping(options: { abortSignal: AbortSignal }): Promise<unknown>;
  version(options: { abortSignal: AbortSignal }): Promise<Docker.DockerVersion>;
}

class EngineRuntime implements DockerRuntime {
  readonly #docker: Docker;
  readonly #agent: Agent;
  readonly #endpoint: DockerEndpoint;
  readonly #settings: RuntimeSettings;
  readonly #closed = new AbortController();
  /** Hijacked exec sockets and event streams: destroyed on close, whatever state they are in. */
  readonly #streams = new Set<Duplex | Readable>();
  /** The tail of each write chain, by container: one writeFiles at a time per container. */
  readonly #writeChains = new Map<string, Promise<unknown>>();

  /** What the operation modules (exec, control, replace, users) share with this runtime. */
  readonly #context: EngineContext;

  constructor(
    docker: Docker,
    agent: Agent,
    endpoint: DockerEndpoint,
    readonly apiVersion: string,
    readonly engineVersion: string,
    settings: RuntimeSettings,
  ) {
    this.#docker = docker;
    this.#agent = agent;
    this.#endpoint = endpoint;
    this.#settings = settings;
    // Every call in flight listens here (and unlinks when done): many concurrent calls are
    // normal, not a leak.
    setMaxListeners(0, this.#closed.signal);
    this.#context = {
      docker,
      host: endpoint.display,
      settings,
      closed: this.#closed.signal,
      track: (stream) => {
        this.#streams.add(stream);
        return () => this.#streams.delete(stream);
      },
      assertOpen: (operation) => this.#assertOpen(operation),
      request: (operation, caller, containerId, call) =>
        this.#request(operation, caller, containerId, call),
    };
  }

  get host(): string {
    return this.#endpoint.display;
  }

  events(options: EventsOptions): AsyncIterable<ContainerEvent> {
    return this.#events(options);
  }

  async *#events(options: EventsOptions): AsyncGenerator<ContainerEvent> {
    this.#assertOpen('stream events');
    if (options.signal.aborted) return;
    const since = options.since === undefined ? undefined : toEngineSince(options.since);
    const deadline = new Deadline(
      { caller: options.signal, closed: this.#closed.signal },
      this.#settings.connectTimeoutMs,
    );
    const context = { operation: 'stream events', endpoint: this.host };
    let stream: Readable;
    try {
      stream = (await this.#docker.getEvents({
        filters: { type: ['container'], event: Object.keys(CONTAINER_ACTIONS) },
        ...(since === undefined ? {} : { since: since as unknown as number }),
        abortSignal: deadline.signal,
      } as Docker.GetEventsOptions)) as Readable;
    } catch (error) {
      deadline.dispose();
      if (deadline.cause === 'caller') return;
      throw toEngineError(error, {
        ...context,
        deadlineCause: deadline.cause,
        timeoutMs: this.#settings.connectTimeoutMs,
      });
    }
    // Connected: from here only the caller's signal or close ends the stream.
    deadline.clearTimeout();
    options.onConnected?.();
    this.#streams.add(stream);
    const destroy = () => stream.destroy();
    deadline.signal.addEventListener('abort', destroy, { once: true });
    const lines = new LineSplitter();
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        for (const line of lines.push(decoder.decode(chunk as Buffer, { stream: true }))) {
          const event = parseContainerEvent(line);
          if (event !== undefined) yield event;
        }
      }
      if (deadline.cause === 'caller') return;
      throw new DockerRuntimeError(
        'DSO_DOCKER_EVENTS_LOST',
        `the Docker Engine at ${this.host} ended the events stream: resume with since and reconcile`,
        { reason: 'ended', endpoint: this.host },
      );
    } catch (error) {
      if (deadline.cause === 'caller') return;
      if (deadline.cause === 'closed') {
        throw new DockerRuntimeError(
          'DSO_DOCKER_CLOSED',
          'the events stream stopped: the docker runtime was closed',
          { endpoint: this.host, cause: error },
        );
      }
      if (isDockerRuntimeError(error) && error.code === 'DSO_DOCKER_EVENTS_LOST') throw error;
      throw new DockerRuntimeError(
        'DSO_DOCKER_EVENTS_LOST',
        `the events stream from the Docker Engine at ${this.host} broke: resume with since and reconcile`,
        { reason: 'error', endpoint: this.host, cause: error },
      );
    } finally {
      deadline.signal.removeEventListener('abort', destroy);
      deadline.dispose();
      stream.destroy();
      this.#streams.delete(stream);
    }
  }

  async listContainers(options: ListContainersOptions): Promise<ContainerSummary[]> {
    if (typeof options?.label !== 'string' || options.label === '') {
      throw new DockerRuntimeError(
        'DSO_DOCKER_INVALID_REQUEST',
        'label must be a non-empty string',
        {
          field: 'label',
        },
      );
    }
    const infos = await this.#request('list containers', options.signal, undefined, (signal) =>
      this.#docker.listContainers({
        all: options.all ?? false,
        filters: { label: [options.label] },
        abortSignal: signal,
      }),
    );
    return infos.map((info) => ({
      id: info.Id,
      name: (info.Names?.[0] ?? '').replace(/^\//, ''),
      labels: { ...(info.Labels ?? {}) },
      state: info.State ?? '',
      image: info.Image ?? '',
    }));
  }

  async inspectContainer(
    id: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<ContainerDetails> {
    assertContainerId(id);
    const info = await this.#request('inspect container', options.signal, id, (signal) =>
      this.#docker.getContainer(id).inspect({ abortSignal: signal }),
    );
    return toDetails(info);
  }

  async writeFiles(id: string, request: WriteFilesRequest): Promise<WriteFilesResult> {
    const startedAt = performance.now();
    this.#assertOpen('write files');
    assertContainerId(id);
    const valid = validateWriteRequest(request);
    const timeoutMs = positive(request.timeoutMs, this.#settings.writeTimeoutMs, 'timeoutMs');
    const deadline = new Deadline(
      { caller: request.signal, closed: this.#closed.signal },
      timeoutMs,
    );
    const context = { endpoint: this.host, containerId: id, timeoutMs };
    try {
      // Calls for one container run in call order (keyed by the id as given), and never
      // overlap inside the container (keyed again by the full id, which another spelling of the
      // same container resolves to): the script assumes it is alone in the target.
      return await this.#serialised(`given:${id}`, () =>
        this.#writeSerialised(id, valid, deadline, startedAt),
      );
    } catch (error) {
      throw toEngineError(error, {
        ...context,
        operation: `write files into container ${id}`,
        deadlineCause: deadline.cause,
      });
    } finally {
      deadline.dispose();
    }
  }

  async #writeSerialised(
    id: string,
    valid: ValidatedWriteRequest,
    deadline: Deadline,
    startedAt: number,
  ): Promise<WriteFilesResult> {
    deadline.signal.throwIfAborted();
    // Under the write's own deadline, so its timeout and abort name the write.
    const details = toDetails(
      await this.#docker.getContainer(id).inspect({ abortSignal: deadline.signal }),
    );
    if (!details.running) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_CONTAINER_NOT_RUNNING',
        `container ${id} is not running (${details.state}): start it first`,
        { containerId: id, state: details.state },
      );
    }
    const owner =
      valid.owner === undefined ? details.user : `${valid.owner.uid}:${valid.owner.gid}`;
    const generation = `${Date.now()}_${randomBytes(6).toString('hex')}`;
    const argv = [
      'sh',
      '-c',
      WRITE_SCRIPT,
      'dso-write',
      valid.target,
      generation,
      valid.mode.toString(8),
      owner,
      ...valid.files.map((file) => file.name),
    ];
    await this.#serialised(`id:${details.id}`, async () => {
      const archive = await buildTar(valid.files, {
        mode: valid.mode,
        uid: valid.owner?.uid ?? 0,
        gid: valid.owner?.gid ?? 0,
        mtime: new Date(),
      });
      let exit: ExecOutcome;
      try {
        exit = await runExec(
          this.#context,
          details.id,
          {
            argv,
            user: '0:0',
            env: [],
            workingDir: '/',
            stdin: archive,
            maxOutputBytes: MAX_EXEC_OUTPUT_BYTES,
          },
          deadline,
        );
      } finally {
        archive.fill(0);
      }
      const failure = interpretWriteExit({
        ...exit,
        containerId: details.id,
        target: valid.target,
      });
      if (failure !== undefined) throw failure;
    });
    return {
      files: valid.files.length,
      bytes: valid.bytes,
      durationMs: Math.round((performance.now() - startedAt) * 100) / 100,
      generation,
    };
  }

  exec(id: string, request: ExecRequest): Promise<ExecResult> {
    return execInContainer(this.#context, id, request);
  }

  sendSignal(
    id: string,
    unixSignal: string | number,
    options: { signal?: AbortSignal } = {},
  ): Promise<void> {
    return signalContainer(this.#context, id, unixSignal, options);
  }

  restartContainer(
    id: string,
    options: { stopTimeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    return restartContainer(this.#context, id, options);
  }

  replaceContainer(id: string, request: ReplaceRequest): Promise<ReplaceResult> {
    return replaceContainer(this.#context, id, request);
  }

  recoverReplacements(options: { signal?: AbortSignal } = {}): Promise<ReplaceRecovery[]> {
    return recoverReplacements(this.#context, options);
  }

  resolveUser(id: string, options: { signal?: AbortSignal } = {}): Promise<NumericOwner> {
    return resolveContainerUser(this.#context, id, options);
  }

  async close(): Promise<void> {
    if (this.#closed.signal.aborted) return;
    this.#closed.abort();
    for (const stream of this.#streams) stream.destroy();
    this.#streams.clear();
    this.#agent.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Runs `task` once every earlier task with the same key has settled, in call order. */
  async #serialised<T>(key: string, task: () => Promise<T>): Promise<T> {
    const previous = this.#writeChains.get(key) ?? Promise.resolve();
    const current = previous.then(task, task);
    const settled = current.then(
      () => undefined,
      () => undefined,
    );
    this.#writeChains.set(key, settled);
    try {
      return await current;
    } finally {
      if (this.#writeChains.get(key) === settled) this.#writeChains.delete(key);
    }
  }

  /** One non-streaming engine call under the request timeout, the caller's signal and close. */
  async #request<T>(
    operation: string,
    caller: AbortSignal | undefined,
    containerId: string | undefined,
    call: (signal: AbortSignal) => Promise<T>,
  ): Promise<T> {
    this.#assertOpen(operation);
    const timeoutMs = this.#settings.requestTimeoutMs;
    const deadline = new Deadline({ caller, closed: this.#closed.signal }, timeoutMs);
    try {
      return await call(deadline.signal);
    } catch (error) {
      throw toEngineError(error, {
        operation,
        endpoint: this.host,
        containerId,
        deadlineCause: deadline.cause,
        timeoutMs,
      });
    } finally {
      deadline.dispose();
    }
  }

  #assertOpen(operation: string): void {
    if (this.#closed.signal.aborted) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_CLOSED',
        `cannot ${operation}: the docker runtime is closed`,
        { endpoint: this.host },
      );
    }
  }
}

function toDetails(info: Docker.ContainerInspectInfo): ContainerDetails {
  const tmpfs = new Set<string>();
  const add = (path: unknown) => {
    if (typeof path === 'string' && path !== '')
      tmpfs.add(path.length > 1 ? path.replace(/\/+$/, '') : path);
  };
  for (const path of Object.keys(info.HostConfig?.Tmpfs ?? {})) add(path);
  for (const mount of info.HostConfig?.Mounts ?? []) if (mount.Type === 'tmpfs') add(mount.Target);
  for (const mount of info.Mounts ?? []) {
    if ((mount as { Type?: string }).Type === 'tmpfs') add(mount.Destination);
  }
  return {
    id: info.Id,
    name: (info.Name ?? '').replace(/^\//, ''),
    labels: { ...(info.Config?.Labels ?? {}) },
    running: info.State?.Running === true,
    state: info.State?.Status ?? '',
    user: info.Config?.User ?? '',
    tmpfs: [...tmpfs],
    image: info.Config?.Image ?? '',
  };
}

function modemOptions(
  endpoint: DockerEndpoint,
  agent: Agent,
  apiVersion: string | undefined,
): Docker.DockerOptions {
  // Every field is set, even to undefined: docker-modem merges its own DOCKER_HOST reading
  // under these, and a stray env host would otherwise win over an explicit socket.
  const common = {
    protocol: 'http' as const,
    version: apiVersion === undefined ? undefined : `v${apiVersion}`,
    agent,
    timeout: undefined,
    ca: undefined,
    cert: undefined,
    key: undefined,
  };
  return endpoint.kind === 'unix'
    ? { ...common, socketPath: endpoint.socketPath, host: undefined, port: undefined }
    : { ...common, socketPath: undefined, host: endpoint.host, port: endpoint.port };
}

function connectError(
  error: unknown,
  endpoint: DockerEndpoint,
  deadline: Deadline,
  timeoutMs: number,
): DockerRuntimeError {
  if (deadline.cause === 'timeout') {
    return new DockerRuntimeError(
      'DSO_DOCKER_UNREACHABLE',
      `the Docker Engine at ${endpoint.display} did not answer within ${timeoutMs} ms: ${UNREACHABLE_FIX}`,
      { endpoint: endpoint.display, timeoutMs, cause: error },
    );
  }
  const mapped = toEngineError(error, {
    operation: 'ping the engine',
    endpoint: endpoint.display,
    deadlineCause: deadline.cause,
  });
  if (mapped.code !== 'DSO_DOCKER_ENGINE_ERROR') return mapped;
  return new DockerRuntimeError(
    'DSO_DOCKER_UNREACHABLE',
    `something at ${endpoint.display} answered, but not as a Docker Engine: ${UNREACHABLE_FIX}`,
    { endpoint: endpoint.display, cause: error },
  );
}

function assertContainerId(id: unknown): void {
  if (typeof id !== 'string' || !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$/.test(id)) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      `container id ${JSON.stringify(id)} is not a container id or name`,
      { field: 'id' },
    );
  }
}

function positive(value: number | undefined, fallback: number, field: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      `${field} must be a positive number`,
      {
        field,
      },
    );
  }
  return value;
}
