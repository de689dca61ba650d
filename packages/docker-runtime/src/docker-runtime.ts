import { randomBytes } from 'node:crypto';
import { setMaxListeners } from 'node:events';
import { Agent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import { abortable, onAbort, pause } from '@dso/async';
import type Docker from 'dockerode';
import { negotiateApiVersion } from './api-version.js';
import { assertContainerId } from './container-id.js';
import { type NumericOwner, resolveContainerUser } from './container-user.js';
import {
  type ExecRequest,
  type ExecResult,
  execInContainer,
  MAX_EXEC_OUTPUT_BYTES,
  restartContainer,
  signalContainer,
  stopContainer,
} from './control.js';
import { Deadline } from './deadline.js';
import {
  type DockerEndpoint,
  type DockerTlsFiles,
  readDockerTls,
  resolveDockerHost,
  resolveDockerTls,
  tlsFailure,
} from './docker-host.js';
import { createEngineClient } from './engine-client.js';
import type { EngineContext, RuntimeSettings } from './engine-context.js';
import {
  detectEngineDialect,
  type EngineDialect,
  type EngineKind,
  type EngineVersionReply,
} from './engine-dialect.js';
import { toEngineError, UNREACHABLE_FIX } from './engine-errors.js';
import { DockerRuntimeError, isDockerRuntimeError } from './errors.js';
import {
  type EventsReconnecting,
  type EventsReconnectOptions,
  resilientEvents,
} from './event-stream.js';
import {
  type ContainerEvent,
  LineSplitter,
  parseContainerEvent,
  parseEventCursor,
  type RuntimeEvent,
  toEngineSince,
} from './events.js';
import { type ExecOutcome, runExec } from './exec.js';
import {
  type RecoverReplacementsOptions,
  type ReplaceRecovery,
  type ReplaceRequest,
  type ReplaceResult,
  recoverReplacements,
  replaceContainer,
} from './replace.js';
import { inspectSwarmService, type SwarmService } from './swarm.js';
import { buildTar } from './tar.js';
import {
  type ValidatedWriteRequest,
  validateWriteRequest,
  type WriteFilesRequest,
  type WriteFilesResult,
} from './write-request.js';
import {
  interpretOwnerWriteExit,
  interpretWriteExit,
  ownerToWriteAs,
  WRITE_SCRIPT,
} from './write-script.js';

/** Default for {@link DockerRuntimeOptions.connectTimeoutMs}. */
export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/** Default for {@link DockerRuntimeOptions.requestTimeoutMs}. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** Default for {@link DockerRuntimeOptions.writeTimeoutMs}. */
export const DEFAULT_WRITE_TIMEOUT_MS = 30_000;
// Defined beside exec in control.ts, exported from here as before.
export { MAX_EXEC_OUTPUT_BYTES };

/** How to reach the engine, and how long to wait for it. */
export interface DockerRuntimeOptions {
  /**
   * Where the engine listens, in `DOCKER_HOST` syntax: `unix:///path/to/docker.sock` or
   * `tcp://host:port` (port 2375 when omitted, 2376 with TLS). Plain TCP only to loopback unless
   * {@link allowInsecureTcp}; with {@link tlsVerify} any host.
   * @default `DOCKER_HOST` from the environment, else `unix:///var/run/docker.sock`, or
   *   `tcp://localhost:2376` with TLS (as the docker CLI)
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
   * Not needed with {@link tlsVerify}.
   * @default false
   */
  allowInsecureTcp?: boolean;
  /**
   * Reach a `tcp://` engine over TLS, verifying its certificate against `ca.pem` and presenting
   * `cert.pem`/`key.pem` from {@link tlsCertPath}, as `docker --tlsverify` does (the engine runs
   * `dockerd --tlsverify`). Any tcp host is then allowed. TLS without verifying the engine is
   * not offered. Wrong with a `unix://` host.
   * @default `DOCKER_TLS_VERIFY` set to anything non-empty in {@link env}, else false
   */
  tlsVerify?: boolean;
  /**
   * The directory holding `ca.pem`, `cert.pem` and `key.pem` (unencrypted), read once at
   * creation. Only with {@link tlsVerify}.
   * @default `DOCKER_CERT_PATH` from {@link env}, else `~/.docker`
   */
  tlsCertPath?: string;
  /**
   * The environment `DOCKER_HOST`, `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH` are read from.
   * @default process.env
   */
  env?: NodeJS.ProcessEnv;
}

/** Options of {@link DockerRuntime.events}. */
export interface EventsOptions {
  /** Ends the iteration (without an error) and closes the HTTP stream. */
  signal: AbortSignal;
  /**
   * Resume after this event: the `cursor` of the last event the owner handled (for instance
   * before it restarted). The engine replays what followed; when it can no longer (it keeps
   * only its last 256 events, none across its own restart) a `resync` item says so first.
   * Not with `since`.
   */
  resumeFrom?: string;
  /**
   * Replay events from this time on, unverified (prefer `resumeFrom`). A number below 1e11 is
   * unix seconds, anything larger is unix ms; a string is the engine's `seconds[.nanoseconds]`.
   * @default only events from now on
   */
  since?: number | string;
  /**
   * How a broken stream is reconnected.
   * @default { maxAttempts: 100, baseDelayMs: 500, maxDelayMs: 30000 }
   */
  reconnect?: EventsReconnectOptions;
  /**
   * Called each time the engine accepts the subscription (first connection and every
   * reconnect), before its events.
   */
  onConnected?: () => void;
  /** Called before each wait to reconnect, with the attempt, the delay and what broke. */
  onReconnecting?: (info: EventsReconnecting) => void;
}

/** Options of {@link DockerRuntime.listContainers}. */
export interface ListContainersOptions {
  /**
   * A label filter as the engine takes it: `key` or `key=value`, e.g. `dso.enable=true`.
   * Absent: every container.
   */
  label?: string;
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
  /**
   * Host folders it bind-mounts, where, and whether read-only: what the host path's clean-up
   * must not remove, and who else can write a folder.
   */
  binds?: Array<{ source: string; target: string; readOnly: boolean }>;
  /** When it was created, in ms since the epoch (the engine gives whole seconds); 0 when unknown. */
  createdAt?: number;
  /** Its volumes, with the driver that serves each: which containers use a volume driver's mounts. */
  volumes?: VolumeMount[];
}

/** A volume a container mounts (`-v name:/in`, `--mount type=volume`), as the engine reports it. */
export interface VolumeMount {
  /** The volume's name (a random 64-hex name for an anonymous volume). */
  name: string;
  /** The driver that serves it: `local`, or a plugin's name. */
  driver: string;
  /** Where the volume is on the host: for a plugin, the mount point its `Mount` answered. */
  source: string;
  /** Where the container sees it. */
  target: string;
  readOnly: boolean;
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
  /**
   * When the current run of the container started (`State.StartedAt`, RFC 3339), `''` if it
   * never did: a restart changes it, and starts the container with an empty tmpfs.
   */
  startedAt: string;
  /** Destinations of its tmpfs mounts, from `HostConfig.Tmpfs` and mounts of type tmpfs. */
  tmpfs: string[];
  /**
   * Its bind mounts (`-v /host:/in` and `--mount type=bind`): where each comes from on the host
   * and where the container sees it. The host path delivery looks for a secrets folder here.
   */
  binds: Array<{ source: string; target: string; readOnly: boolean }>;
  /** Its volumes and their drivers (a volume driver's consumers are found here). */
  volumes: VolumeMount[];
  /** The image reference it was created from. */
  image: string;
  /**
   * Its environment variables whose value is a DSO reference as written (`dso://…`,
   * `dsofile://…`): it was created without the references wired in (a plain `compose up`
   * instead of `dso up`). Only these leave the runtime: any other value of the environment may
   * be a secret.
   */
  envReferences?: Array<{ name: string; value: string }>;
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
  /** Which engine answers: `docker` or `podman` (its Docker-compatible API service). */
  readonly engineKind: EngineKind;

  /**
   * Streams container lifecycle events (created, started, died, destroyed, renamed, health) and
   * keeps streaming across engine restarts and broken connections. Each reconnect resumes with
   * `since` at the last event delivered and drops the duplicates the overlap brings; when the
   * gap cannot be replayed (the engine keeps only its last 256 events of every type, and none
   * across its own restart) a `{ type: 'resync' }` item comes first: reconcile everything.
   * Reconnects back off with capped, jittered exponential delays; a connection the engine
   * accepts resets the count. Consume promptly: a slow reader slows the engine and, past ~1,300
   * buffered events, the engine drops events for it. Aborting `signal` ends the iteration
   * without an error.
   *
   * @throws DockerRuntimeError DSO_DOCKER_RECONNECT_FAILED after `reconnect.maxAttempts`
   *   consecutive failed reconnects
   * @throws DockerRuntimeError DSO_DOCKER_CLOSED when the runtime is closed meanwhile
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for bad options
   * @example
   * for await (const item of runtime.events({ signal })) {
   *   if (item.type === 'resync') reconcileAll();
   *   else queue.add(item.id, item);
   * }
   */
  events(options: EventsOptions): AsyncIterable<RuntimeEvent>;

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
   * The names of the volumes a driver serves, as the engine knows them. Asking also makes the
   * engine load a socket-discovered plugin of that name: until it has used a plugin, an engine
   * does not list it, and a Swarm manager places no task that needs it on that node.
   *
   * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE, DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED,
   *   DSO_DOCKER_ENGINE_ERROR
   * @example
   * await runtime.listVolumes({ driver: 'dso' });
   */
  listVolumes(options: { driver: string; signal?: AbortSignal }): Promise<string[]>;

  /**
   * Whether the engine is an active node of a Swarm (`docker info`'s `Swarm.LocalNodeState`).
   *
   * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE, DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED,
   *   DSO_DOCKER_ENGINE_ERROR
   */
  swarmNodeActive(options?: { signal?: AbortSignal }): Promise<boolean>;

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
   * The image needs sh, tar, mkdir, chmod, chown, ln, mv (-T) and rm; busybox is enough. The
   * exec runs as root; where root in the container cannot write the files for their owner (no
   * CAP_CHOWN, or no CAP_DAC_OVERRIDE in a tmpfs it does not own: `--cap-drop ALL`) and changed
   * nothing, it runs once more as the owner, whose own files need no chown.
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a bad name, target, mode or owner
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND, DSO_DOCKER_CONTAINER_NOT_RUNNING
   * @throws DockerRuntimeError DSO_DOCKER_TARGET_NOT_TMPFS when target is not a tmpfs mount point
   * @throws DockerRuntimeError DSO_DOCKER_TARGET_CONFLICT when a name exists there as a real file
   * @throws DockerRuntimeError DSO_DOCKER_USER_UNRESOLVED when the container's user has no entry
   * @throws DockerRuntimeError DSO_DOCKER_NO_SHELL, DSO_DOCKER_NO_TAR, DSO_DOCKER_MISSING_TOOL
   * @throws DockerRuntimeError DSO_DOCKER_TARGET_READ_ONLY, DSO_DOCKER_TARGET_NOT_WRITABLE,
   *   DSO_DOCKER_NO_CAP_CHOWN when the container lacks what the write needs (not retryable)
   * @throws DockerRuntimeError DSO_DOCKER_TARGET_TAMPERED when `<target>/..lock` was planted by
   *   something in the container (not retryable); DSO_DOCKER_TARGET_BUSY when a write it gave up
   *   on still runs there after 10 s (retryable)
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
   * Runs a command in a running container (`docker exec`) and returns its exit code, its
   * stdout and stderr (the last `maxOutputBytes` of each, decoded as UTF-8), how many bytes each
   * wrote in all, and whether either was cut. A non-zero exit is a result, not an error.
   *
   * **Never put a secret value in `argv` or `env`.** The engine keeps both with the exec,
   * publishes `argv` in its `exec_create`/`exec_start` events to every events subscriber and
   * shows it in exec inspect; `env` is readable in `/proc/<pid>/environ` by anything in the
   * container running as that user. `stdin` is the only channel for a value: it is written to
   * the process and the stream closed; the caller's buffer is not modified (zero it yourself
   * once done).
   *
   * The user defaults to the container's own (`Config.User`), as for `docker exec`. On timeout
   * or abort the call returns at once, but the process inside may keep running: the Engine API
   * cannot kill an exec. Give commands their own bound (`timeout 5 …`) where that matters.
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for an empty argv, a NUL in argv or
   *   env, argv or env too large (64 KiB per string, 256 KiB together), a bad env key, user or
   *   workingDir, maxOutputBytes outside 0..16 MiB, a timeout that is not positive, or stdin
   *   over 64 MiB
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND, DSO_DOCKER_CONTAINER_NOT_RUNNING
   *   (stopped or paused)
   * @throws DockerRuntimeError DSO_DOCKER_TIMEOUT after `timeoutMs`, DSO_DOCKER_ABORTED when
   *   `signal` aborts, DSO_DOCKER_CLOSED when the runtime closes
   * @throws DockerRuntimeError DSO_DOCKER_ENGINE_ERROR for any other refusal by the engine (a
   *   command that cannot be run is not one: it exits 126 or 127)
   * @example
   * const { exitCode, stdout } = await runtime.exec(id, {
   *   argv: ['sh', '-c', 'cat > /run/app/token && kill -HUP 1'],
   *   stdin: tokenBytes,
   *   timeoutMs: 5_000,
   * });
   * if (exitCode !== 0) throw new Error(`hook failed with ${exitCode}`);
   */
  exec(id: string, request: ExecRequest): Promise<ExecResult>;

  /**
   * Sends a unix signal to a container's main process (`docker kill --signal`), e.g. so it
   * reloads rewritten secret files. The signal is a name with or without `SIG`, in any case
   * (`SIGHUP`, `hup`, `RTMIN+3`), or a number from 1 to 64; names are sent as `SIGHUP`. The call
   * returns once the engine has delivered it; what the process does with it is its own affair
   * (PID 1 ignores signals it has no handler for).
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for an unknown signal
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND, DSO_DOCKER_CONTAINER_NOT_RUNNING
   * @throws DockerRuntimeError DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED, DSO_DOCKER_CLOSED
   * @example
   * await runtime.sendSignal(id, 'SIGHUP');
   */
  sendSignal(
    id: string,
    unixSignal: string | number,
    options?: { signal?: AbortSignal },
  ): Promise<void>;

  /**
   * Restarts a container (`docker restart`): SIGTERM (or the image's stop signal), up to
   * `stopTimeoutMs` (rounded up to whole seconds) for it to exit, SIGKILL, then start. A stopped
   * container is started. The call is bounded by `stopTimeoutMs` plus the runtime's
   * requestTimeoutMs. A manual restart does not count in the engine's `RestartCount`. A Swarm
   * task (label `com.docker.swarm.task.id`) is refused, nothing stopped: restarted in place it
   * would run on beside the task Swarm starts for the one it saw end; stop it instead.
   *
   * @default stopTimeoutMs 10000
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST when stopTimeoutMs is not an integer >= 0
   * @throws DockerRuntimeError DSO_DOCKER_RESTART_REFUSED (`details.reason` `swarm-task`) for a
   *   Swarm task container
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND when it does not exist
   * @throws DockerRuntimeError DSO_DOCKER_ENGINE_ERROR when the engine cannot start it again
   * @throws DockerRuntimeError DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED, DSO_DOCKER_CLOSED: the
   *   restart may still complete in the engine
   * @example
   * await runtime.restartContainer(id, { stopTimeoutMs: 5_000 });
   */
  restartContainer(
    id: string,
    options?: { stopTimeoutMs?: number; signal?: AbortSignal },
  ): Promise<void>;

  /**
   * Stops a container (`docker stop`): SIGTERM (or the image's stop signal), up to
   * `stopTimeoutMs` (rounded up to whole seconds) for it to exit, then SIGKILL. A container
   * already stopped is not an error. Bounded by `stopTimeoutMs` plus the runtime's
   * requestTimeoutMs. On a Swarm task this is how its task ends: Swarm, not the engine, decides
   * whether a new task replaces it (the service's restart policy).
   *
   * @default stopTimeoutMs 10000
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST when stopTimeoutMs is not an integer >= 0
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND when it does not exist
   * @throws DockerRuntimeError DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED, DSO_DOCKER_CLOSED: the
   *   stop may still complete in the engine
   * @example
   * await runtime.stopContainer(id, { stopTimeoutMs: 5_000 });
   */
  stopContainer(
    id: string,
    options?: { stopTimeoutMs?: number; signal?: AbortSignal },
  ): Promise<void>;

  /**
   * A Swarm service's name and restart policy (`GET /services/{id}`), to know whether Swarm
   * replaces a task that stops. Only a manager node can tell: on a worker node (and for a
   * service removed meanwhile) the answer is `undefined`.
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for an id that is no service id
   * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE, DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED,
   *   DSO_DOCKER_ENGINE_ERROR
   * @example
   * const task = swarmTaskOf(container.labels);
   * const service = task && (await runtime.inspectSwarmService(task.serviceId));
   * if (service?.restart.condition === 'none') refuse();
   */
  inspectSwarmService(
    serviceId: string,
    options?: { signal?: AbortSignal },
  ): Promise<SwarmService | undefined>;

  /**
   * Clone-and-replace (blue-green): recreates a running container with changed environment
   * beside the old one, switches to it once it proves healthy, and rolls back otherwise. This
   * is how an environment value (a `dso://` reference) changes: the engine sets env only at
   * create. Values go only into the new container's `Config.Env`, never into a label, log,
   * message, or the request URL.
   *
   * Steps, each leaving a state {@link recoverReplacements} recognises:
   * 1. Inspect the old container O (it must run, and not be one side of an unfinished
   *    replacement); check it can run twice at once (no fixed host port, IP or MAC address, no
   *    container using its network namespace, not a swarm task).
   * 2. Create N as `<name>-dso-next-<O's 12-char id>` from O's whole `Config` and `HostConfig`
   *    with the env changes applied, the same image id (the tag as written while it still names
   *    that id), O's networks and aliases, O's anonymous volumes mounted by name, and the labels
   *    `dso.replace.of=<O's id>`, `dso.replace.name=<name>`, `dso.replace.generation=<n>`.
   * 3. `onCreated(N)`, start N, `onStarted(N)`.
   * 4. Wait until N is fit: `healthy` by its healthcheck (own or image's) within
   *    `health.timeoutMs`; without one, running (same start, no restart) for
   *    `health.runningForMs`. Fails fast when N exits, restarts or turns unhealthy.
   * 5. Swap: rename O to `<name>-dso-old-<O's 12-char id>`, then N to `<name>` (committed).
   * 6. Stop O (`stopTimeoutMs` grace) and remove it, keeping its volumes (N mounts them).
   *
   * Any failure or abort before step 5 completes rolls back on fresh short deadlines: O gets
   * its name back first, then N is force-removed; O is never stopped. A failure in step 6 does
   * not throw: N serves, `oldRemoved` is false and `cleanupError` says why; recovery removes O.
   * An abort after step 4 passed has no effect (the swap is two short renames).
   *
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a bad id, env name, duration or hook
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND when the container does not exist
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_RUNNING when it is stopped, paused or
   *   restarting
   * @throws DockerRuntimeError DSO_DOCKER_REPLACE_FAILED with `details.stage` (`inspect`, `plan`,
   *   `create`, `on-created`, `start`, `on-started`, `health`, `swap`) and `details.reason`
   *   (`replace-pending`, `fixed-host-port`, `fixed-ip`, `fixed-mac-address`,
   *   `network-dependents`, `swarm-task`, `image-changed`, `hook-failed`, `exited`, `restarted`,
   *   `unhealthy`, `health-timeout`, `engine-error`), plus `rollback` (`done` | `incomplete`),
   *   `oldRunning`, and for a health failure `exitCode`, `healthStatus`, `healthOutput` and
   *   `logTail` (redacted of every value of N's environment, bounded by `logTailBytes`)
   * @throws DockerRuntimeError DSO_DOCKER_ABORTED, DSO_DOCKER_CLOSED when `signal` aborts or the
   *   runtime closes before the swap (rolled back as above; `details.stage` says where)
   * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE, DSO_DOCKER_TIMEOUT from the first inspect
   * @example
   * const result = await runtime.replaceContainer('web', {
   *   env: { DB_PASSWORD: newPassword, OLD_FLAG: null },
   *   health: { timeoutMs: 30_000 },
   *   onStarted: (id, signal) => runtime.writeFiles(id, { target: '/run/secrets', files, signal }).then(() => {}),
   * });
   * if (!result.oldRemoved) log.warn({ err: result.cleanupError }, 'old container left');
   */
  replaceContainer(id: string, request: ReplaceRequest): Promise<ReplaceResult>;

  /**
   * Finishes or undoes every replacement a crash (or a failed rollback) interrupted, from what
   * the engine holds; run it at start, before new replacements. For each container N labelled
   * `dso.replace.of=O`, `dso.replace.name=NAME`:
   *
   * | N's name      | O                          | action                               |
   * | ------------- | -------------------------- | ------------------------------------ |
   * | `NAME`        | gone                       | none (a completed replacement)       |
   * | `NAME`        | `NAME-dso-old-<O:12>`      | stop and remove O: `finished`        |
   * | `NAME`        | under another name         | `blocked` (`old-renamed`)            |
   * | `NAME-dso-next-<O:12>` | `NAME`            | remove N: `undone`                   |
   * | `NAME-dso-next-<O:12>` | `NAME-dso-old-<O:12>` | rename O to NAME, remove N: `undone` |
   * | `NAME-dso-next-<O:12>` | under another name | remove N: `undone`                  |
   * | `NAME-dso-next-<O:12>` | gone              | rename N to NAME: `finished`         |
   * | anything else | —                          | none (renamed by someone, or the old side of a newer replacement) |
   *
   * Never removes both containers; a rename refused because NAME is taken reports `blocked`
   * (`name-taken`) and changes nothing. N keeps its state (a renamed N that never started
   * stays stopped). Replacements running in this runtime are skipped. Idempotent: after a run
   * that finished or undid everything, the next returns `[]` (a `blocked` entry is reported
   * again until someone resolves it). One entry's engine failure is reported on it (`blocked`,
   * `engine-error`) and the others still run. Run it from one process at a time.
   *
   * @returns one entry per interrupted replacement found (completed ones are not listed)
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a bad `stopTimeoutMs`
   * @throws DockerRuntimeError DSO_DOCKER_ABORTED, DSO_DOCKER_CLOSED when `signal` aborts or the
   *   runtime closes (`details.done` lists what was done; the rest is left recognisable)
   * @throws DockerRuntimeError DSO_DOCKER_UNREACHABLE, DSO_DOCKER_TIMEOUT,
   *   DSO_DOCKER_ENGINE_ERROR when the containers cannot be listed
   * @example
   * for (const entry of await runtime.recoverReplacements({ signal })) {
   *   log.info({ name: entry.name, action: entry.action, reason: entry.reason }, 'replacement recovered');
   * }
   */
  recoverReplacements(options?: RecoverReplacementsOptions): Promise<ReplaceRecovery[]>;

  /**
   * The container's user (`Config.User`) as numeric uid and gid, resolved with the engine's
   * rules against the container's own /etc/passwd and /etc/group: `''` is 0:0; `uid:gid` is
   * taken as is (no file read); a bare uid takes its primary group from /etc/passwd (0 when it
   * has no entry); a name must be in /etc/passwd and a group name in /etc/group. The files are
   * read with the engine's archive GET (never PUT, never exec), symlinks followed, at most 1 MiB
   * each; a container without /etc/passwd resolves numeric users only. Works on a created
   * container that never started: resolve, write its files (host path), then start it.
   *
   * @throws DockerRuntimeError DSO_DOCKER_USER_UNRESOLVED naming the user (or group) and the
   *   container when it has no entry, or a database is unreadable or larger than 1 MiB
   * @throws DockerRuntimeError DSO_DOCKER_CONTAINER_NOT_FOUND when the container does not exist
   * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST when `id` is not a container id or name
   * @throws DockerRuntimeError DSO_DOCKER_TIMEOUT, DSO_DOCKER_ABORTED, DSO_DOCKER_CLOSED,
   *   DSO_DOCKER_UNREACHABLE, DSO_DOCKER_ENGINE_ERROR
   * @example
   * const owner = await runtime.resolveUser(containerId); // e.g. { uid: 1000, gid: 1000 }
   * hostDirs.write(key, { files, owner });
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
 * @throws DockerRuntimeError DSO_DOCKER_TLS_INVALID when a TLS file is missing, unreadable or
 *   unusable, TLS is asked for with a unix socket, the engine's certificate does not verify,
 *   or the engine refuses this client's certificate
 * @throws DockerRuntimeError DSO_DOCKER_ABORTED when `signal` aborts
 * @example
 * await using runtime = await createDockerRuntime();
 * console.log(runtime.engineVersion, runtime.apiVersion);
 * @example
 * // A remote engine running `dockerd --tlsverify`, as `DOCKER_TLS_VERIFY=1` would:
 * await using remote = await createDockerRuntime({
 *   host: 'tcp://docker.example.internal:2376',
 *   tlsVerify: true,
 *   tlsCertPath: '/etc/dso/docker-tls', // ca.pem, cert.pem, key.pem
 * });
 */
export async function createDockerRuntime(
  options: DockerRuntimeOptions = {},
): Promise<DockerRuntime> {
  const env = options.env ?? process.env;
  const tlsSettings = resolveDockerTls(
    { tlsVerify: options.tlsVerify, tlsCertPath: options.tlsCertPath },
    env,
  );
  const endpoint = resolveDockerHost(options.host, env, {
    allowInsecureTcp: options.allowInsecureTcp ?? false,
    tls: tlsSettings.verify,
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
  // Read once, here: a missing or broken file fails creation, not some later call.
  const tls =
    endpoint.kind === 'tcp' && endpoint.tls ? await readDockerTls(tlsSettings.certPath) : undefined;
  // With TLS the pooled sockets must carry the same CA and client certificate as each request.
  const agent =
    tls === undefined
      ? new Agent({ keepAlive: true })
      : new HttpsAgent({ keepAlive: true, ca: tls.ca, cert: tls.cert, key: tls.key });
  const client = (apiVersion: string | undefined): Docker => {
    try {
      return createEngineClient(modemOptions(endpoint, agent, apiVersion, tls));
    } catch (error) {
      // docker-modem reads DOCKER_HOST and DOCKER_CERT_PATH from process.env for its defaults
      // (ours override them), and throws when the files DOCKER_CERT_PATH names are missing.
      agent.destroy();
      throw new DockerRuntimeError(
        'DSO_DOCKER_INVALID_HOST',
        "the Docker client could not read its defaults from this process's environment " +
          '(DOCKER_HOST, DOCKER_CERT_PATH): fix or unset them',
        { endpoint: endpoint.display, cause: error },
      );
    }
  };
  const probe = client(undefined);
  const deadline = new Deadline({ caller: options.signal }, settings.connectTimeoutMs);
  let version: Docker.DockerVersion;
  try {
    // dockerode takes an abortSignal here too; its typings only miss it.
    const engine = probe as unknown as ProbeCalls;
    await engine.ping({ abortSignal: deadline.signal });
    version = await engine.version({ abortSignal: deadline.signal });
  } catch (error) {
    agent.destroy();
    throw connectError(error, endpoint, deadline, settings.connectTimeoutMs, tls);
  } finally {
    deadline.dispose();
  }
  const engineVersion = String(version.Version ?? 'unknown');
  const dialect = detectEngineDialect(version as EngineVersionReply);
  let apiVersion: string;
  try {
    apiVersion = negotiateApiVersion({
      apiVersion: String(version.ApiVersion ?? ''),
      minApiVersion: version.MinAPIVersion,
      engineVersion,
      ...(dialect.kind === 'docker' ? {} : { display: dialect.display }),
    });
  } catch (error) {
    agent.destroy();
    throw error;
  }
  const docker = client(apiVersion);
  return new EngineRuntime(docker, agent, endpoint, apiVersion, engineVersion, dialect, settings);
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
  readonly engineKind: EngineKind;

  constructor(
    docker: Docker,
    agent: Agent,
    endpoint: DockerEndpoint,
    readonly apiVersion: string,
    readonly engineVersion: string,
    dialect: EngineDialect,
    settings: RuntimeSettings,
  ) {
    this.engineKind = dialect.kind;
    this.#docker = docker;
    this.#agent = agent;
    this.#endpoint = endpoint;
    this.#settings = settings;
    // Every call in flight listens here (and unlinks when done): many concurrent calls are
    // normal, not a leak.
    setMaxListeners(0, this.#closed.signal);
    this.#context = {
      docker,
      dialect,
      host: endpoint.display,
      settings,
      closed: this.#closed.signal,
      replacing: new Set(),
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

  events(options: EventsOptions): AsyncIterable<RuntimeEvent> {
    this.#assertOpen('stream events');
    if (options.since !== undefined && options.resumeFrom !== undefined) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_INVALID_REQUEST',
        'give events() either resumeFrom (an event cursor) or since (a time), not both',
        { field: 'since' },
      );
    }
    if (options.resumeFrom !== undefined) parseEventCursor(options.resumeFrom);
    return resilientEvents(
      {
        signal: options.signal,
        since: options.since === undefined ? undefined : toEngineSince(options.since),
        resumeFrom: options.resumeFrom,
        reconnect: options.reconnect,
        onConnected: options.onConnected,
        onReconnecting: options.onReconnecting,
      },
      {
        connect: (request) => this.#connectEvents(request),
        sleep: (ms, signal) => sleepUnlessAborted(ms, signal, this.#closed.signal),
        now: Date.now,
        random: Math.random,
      },
    );
  }

  /** One subscription to `/events`; ends or throws DSO_DOCKER_EVENTS_LOST when it breaks. */
  async *#connectEvents(options: {
    since: string | undefined;
    signal: AbortSignal;
    onConnected: () => void;
  }): AsyncGenerator<ContainerEvent> {
    this.#assertOpen('stream events');
    if (options.signal.aborted) return;
    const since = options.since;
    // The engine's own action names and `since` format (Podman's differ from Docker's).
    const events = this.#context.dialect.events;
    const deadline = new Deadline(
      { caller: options.signal, closed: this.#closed.signal },
      this.#settings.connectTimeoutMs,
    );
    const context = {
      operation: 'stream events',
      endpoint: this.host,
      dialect: this.#context.dialect,
    };
    let stream: Readable;
    try {
      stream = (await this.#docker.getEvents({
        filters: { type: ['container'], event: [...events.subscribe] },
        ...(since === undefined ? {} : { since: events.since(since) as unknown as number }),
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
    options.onConnected();
    this.#streams.add(stream);
    const stopDestroying = onAbort(deadline.signal, () => stream.destroy());
    const lines = new LineSplitter();
    const decoder = new TextDecoder();
    try {
      for await (const chunk of stream) {
        for (const line of lines.push(decoder.decode(chunk as Buffer, { stream: true }))) {
          const event = parseContainerEvent(line, events);
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
      stopDestroying();
      deadline.dispose();
      stream.destroy();
      this.#streams.delete(stream);
    }
  }

  async swarmNodeActive(options: { signal?: AbortSignal } = {}): Promise<boolean> {
    this.#assertOpen('read the engine info');
    // dockerode's info() takes no signal: the deadline still bounds the wait.
    const info: unknown = await this.#request(
      'read the engine info',
      options.signal,
      undefined,
      (signal) => abortable(this.#docker.info(), signal),
    );
    return (info as { Swarm?: { LocalNodeState?: string } }).Swarm?.LocalNodeState === 'active';
  }

  async listVolumes(options: { driver: string; signal?: AbortSignal }): Promise<string[]> {
    this.#assertOpen('list volumes');
    const answer = await this.#request('list volumes', options.signal, undefined, (signal) =>
      this.#docker.listVolumes({ filters: { driver: [options.driver] }, abortSignal: signal }),
    );
    return (answer.Volumes ?? []).map((volume) => volume.Name);
  }

  async listContainers(options: ListContainersOptions): Promise<ContainerSummary[]> {
    if (
      options?.label !== undefined &&
      (typeof options.label !== 'string' || options.label === '')
    ) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_INVALID_REQUEST',
        'label must be a non-empty string',
        {
          field: 'label',
        },
      );
    }
    const label = options.label;
    const infos = await this.#request('list containers', options.signal, undefined, (signal) =>
      this.#docker.listContainers({
        all: options.all ?? false,
        ...(label === undefined ? {} : { filters: { label: [label] } }),
        abortSignal: signal,
      }),
    );
    return infos.map((info) => ({
      id: info.Id,
      name: (info.Names?.[0] ?? '').replace(/^\//, ''),
      labels: { ...(info.Labels ?? {}) },
      state: info.State ?? '',
      image: info.Image ?? '',
      binds: (info.Mounts ?? [])
        .filter((mount) => mount.Type === 'bind' && typeof mount.Source === 'string')
        .map((mount) => ({
          source: mount.Source,
          target: mount.Destination,
          readOnly: mount.RW === false,
        })),
      volumes: volumesOf(info.Mounts),
      createdAt: typeof info.Created === 'number' ? info.Created * 1000 : 0,
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
    const context = {
      endpoint: this.host,
      containerId: id,
      timeoutMs,
      dialect: this.#context.dialect,
    };
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
    let fullId = id;
    let owner: string;
    if (valid.owner !== undefined) {
      owner = `${valid.owner.uid}:${valid.owner.gid}`;
    } else if (valid.containerUser !== undefined) {
      owner = valid.containerUser;
    } else {
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
      fullId = details.id;
      owner = details.user;
    }
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
    await this.#serialised(`id:${fullId}`, async () => {
      const exit = await this.#runWriteScript(fullId, argv, valid, '0:0', deadline);
      const writeAs = ownerToWriteAs(exit);
      if (writeAs === undefined) {
        const failure = interpretWriteExit({ ...exit, containerId: fullId, target: valid.target });
        if (failure !== undefined) throw failure;
        return;
      }
      // Root in the container may not write the files for their owner (no CAP_CHOWN to give
      // them away, or no CAP_DAC_OVERRIDE in a tmpfs it does not own), and changed nothing: the
      // owner writes them itself, so none needs a chown. Nothing in the container is gained: it
      // is the user the files are for.
      const asOwner = await this.#runWriteScript(fullId, argv, valid, writeAs, deadline);
      const failure = interpretOwnerWriteExit(
        { ...asOwner, containerId: fullId, target: valid.target },
        writeAs,
        exit.exitCode,
      );
      if (failure !== undefined) throw failure;
    });
    return {
      files: valid.files.length,
      bytes: valid.bytes,
      durationMs: Math.round((performance.now() - startedAt) * 100) / 100,
      generation,
    };
  }

  /** One run of the write script as `user`, its archive built for it and zeroed after. */
  async #runWriteScript(
    containerId: string,
    argv: string[],
    valid: ValidatedWriteRequest,
    user: string,
    deadline: Deadline,
  ): Promise<ExecOutcome> {
    const archive = await buildTar(valid.files, {
      mode: valid.mode,
      uid: valid.owner?.uid ?? 0,
      gid: valid.owner?.gid ?? 0,
      mtime: new Date(),
    });
    try {
      return await runExec(
        this.#context,
        containerId,
        {
          argv,
          user,
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

  stopContainer(
    id: string,
    options: { stopTimeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    return stopContainer(this.#context, id, options);
  }

  inspectSwarmService(
    serviceId: string,
    options: { signal?: AbortSignal } = {},
  ): Promise<SwarmService | undefined> {
    return inspectSwarmService(this.#context, serviceId, options);
  }

  replaceContainer(id: string, request: ReplaceRequest): Promise<ReplaceResult> {
    return replaceContainer(this.#context, id, request);
  }

  recoverReplacements(options: RecoverReplacementsOptions = {}): Promise<ReplaceRecovery[]> {
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
        dialect: this.#context.dialect,
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
  const binds: ContainerDetails['binds'] = [];
  for (const mount of info.Mounts ?? []) {
    const { Type, Source, Destination, RW } = mount as {
      Type?: string;
      Source?: string;
      Destination?: string;
      RW?: boolean;
    };
    if (Type === 'bind' && typeof Source === 'string' && typeof Destination === 'string') {
      binds.push({
        source: Source,
        target: Destination.length > 1 ? Destination.replace(/\/+$/, '') : Destination,
        readOnly: RW === false,
      });
    }
  }
  return {
    id: info.Id,
    name: (info.Name ?? '').replace(/^\//, ''),
    labels: { ...(info.Config?.Labels ?? {}) },
    running: info.State?.Running === true,
    state: info.State?.Status ?? '',
    user: info.Config?.User ?? '',
    startedAt: info.State?.StartedAt?.startsWith('0001-') ? '' : (info.State?.StartedAt ?? ''),
    tmpfs: [...tmpfs],
    binds,
    volumes: volumesOf(info.Mounts),
    image: info.Config?.Image ?? '',
    envReferences: envReferencesOf(info.Config?.Env),
  };
}

/** The `NAME=value` entries of `Config.Env` whose value is a DSO reference (see `envReferences`). */
function envReferencesOf(env: unknown): Array<{ name: string; value: string }> {
  if (!Array.isArray(env)) return [];
  const found: Array<{ name: string; value: string }> = [];
  for (const entry of env) {
    if (typeof entry !== 'string') continue;
    const equals = entry.indexOf('=');
    if (equals <= 0) continue;
    const value = entry.slice(equals + 1);
    if (value.startsWith('dso://') || value.startsWith('dsofile://')) {
      found.push({ name: entry.slice(0, equals), value });
    }
  }
  return found;
}

/** The volume mounts of an engine's `Mounts` list (listing and inspect share the shape). */
function volumesOf(mounts: unknown): VolumeMount[] {
  if (!Array.isArray(mounts)) return [];
  const volumes: VolumeMount[] = [];
  for (const mount of mounts as Array<Record<string, unknown>>) {
    const { Type, Name, Driver, Source, Destination, RW } = mount;
    if (Type !== 'volume' || typeof Name !== 'string' || typeof Destination !== 'string') continue;
    volumes.push({
      name: Name,
      driver: typeof Driver === 'string' ? Driver : 'local',
      source: typeof Source === 'string' ? Source : '',
      target: Destination.length > 1 ? Destination.replace(/\/+$/, '') : Destination,
      readOnly: RW === false,
    });
  }
  return volumes;
}

function modemOptions(
  endpoint: DockerEndpoint,
  agent: Agent,
  apiVersion: string | undefined,
  tls: DockerTlsFiles | undefined,
): Docker.DockerOptions {
  // Every field is set, even to undefined: docker-modem merges its own DOCKER_HOST,
  // DOCKER_TLS_VERIFY and DOCKER_CERT_PATH reading under these, and a stray env value would
  // otherwise win over an explicit socket or turn TLS on or off behind our back.
  const common = {
    protocol: tls === undefined ? ('http' as const) : ('https' as const),
    version: apiVersion === undefined ? undefined : `v${apiVersion}`,
    agent,
    timeout: undefined,
    // docker-modem puts these on every request too; the agent's copies build the sockets.
    ca: tls?.ca,
    cert: tls?.cert,
    key: tls?.key,
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
  tls: DockerTlsFiles | undefined,
): DockerRuntimeError {
  if (tls !== undefined && deadline.cause === undefined) {
    const failure = tlsFailure(error, endpoint, tls.certPath);
    if (failure !== undefined) return failure;
  }
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

/** Waits `ms`, returning early (without an error) when either signal aborts. */
async function sleepUnlessAborted(
  ms: number,
  signal: AbortSignal,
  closed: AbortSignal,
): Promise<void> {
  const either = new AbortController();
  const stop = onAbort([signal, closed], () => either.abort());
  try {
    await pause(ms, { signal: either.signal });
  } finally {
    stop();
  }
}
