import type {
  AuditLog,
  Cache,
  Clock,
  EventQueueRetryOptions,
  LabelRotationPolicy,
  LabelWarning,
  Logger,
  Redactor,
  SecretReference,
} from '@dso/core';
import type { DockerRuntime, HostSecretDirs } from '@dso/docker-runtime';
import type { SecretProvider, SecretValue } from '@dso/provider-sdk';
import type { AgentHealth, AgentMetrics } from './observability.js';
import type { VolumeFolders } from './volumes/folders.js';
import type { VolumeDriver } from './volumes/volume-driver.js';

// The agent's public surface: its options, what it reports, and its defaults. The parts that
// implement it are listed in agent.ts.

/** How many containers the agent delivers to at once. @default 4 */
export const DEFAULT_CONCURRENCY = 4;
/** How long SIGTERM waits for deliveries in flight. @default 10_000 */
export const DEFAULT_SHUTDOWN_GRACE_MS = 10_000;
/** Consecutive failed reconnects of the events stream before the agent gives up (the seed's figure). @default 100 */
export const DEFAULT_MAX_RECONNECTS = 100;
/** Cap of the reconnect backoff. @default 30_000 */
export const DEFAULT_RECONNECT_MAX_DELAY_MS = 30_000;
/** Time between two full reconciliations. @default 600_000 (10 minutes) */
export const DEFAULT_RECONCILE_INTERVAL_MS = 10 * 60_000;

/**
 * Why a container is being delivered to. A start (or restart) always writes: the container's
 * tmpfs is new. A reconciliation writes only when what it would write differs from what was
 * last delivered to the same run of the container.
 */
export type DeliveryTrigger = 'started' | 'startup' | 'periodic' | 'resync' | 'api' | 'changed';

/** What the agent is built from: long-lived objects the owner constructs and closes. */
export interface AgentOptions {
  runtime: DockerRuntime;
  /** Providers by name; a reference without a provider uses `defaultProvider`. */
  providers: ReadonlyMap<string, SecretProvider>;
  /** @default 'local' */
  defaultProvider?: string;
  logger: Logger;
  /** Every resolved value is registered here before anything could log it. */
  redactor: Redactor;
  /**
   * The host tmpfs folders for the host path: a container that bind-mounts `<root>/<key>` at
   * its `dso.target` gets its files written there directly (no exec). Absent: exec only. Give
   * it only when the agent shares the host with the engine.
   */
  hostDirs?: HostSecretDirs;
  /**
   * How old (since its last change) a host folder no container binds must be before it is
   * removed: a container being created may be about to bind a new one. @default 60000
   */
  hostFolderMinAgeMs?: number;
  /** Where resolved secrets are cached. @default createMemoryCache() with its defaults */
  cache?: Cache;
  /** Deliveries at once (1-32). @default DEFAULT_CONCURRENCY */
  concurrency?: number;
  /** Containers waiting for delivery before the oldest is shed (and redone once idle). @default DEFAULT_QUEUE_MAX_SIZE */
  queueMaxSize?: number;
  /** Retries of a delivery that failed for a reason that may pass (engine or provider unavailable). @default DEFAULT_QUEUE_RETRY */
  retry?: EventQueueRetryOptions;
  /** @default DEFAULT_SHUTDOWN_GRACE_MS */
  shutdownGraceMs?: number;
  /**
   * Time between two full reconciliations (every managed container checked and repaired).
   * @default DEFAULT_RECONCILE_INTERVAL_MS
   */
  reconcileIntervalMs?: number;
  /** Where one line per secret delivered (or refused) goes; none when absent. */
  audit?: AuditLog;
  /** Counters and histograms for /metrics; none when absent. */
  metrics?: AgentMetrics;
  /**
   * What a running container does after its files change (a new version): the default for
   * containers without `dso.rotate` labels, the signal the `signal` policy sends, and bounds.
   */
  rotation?: RotationOptions;
  /** What /healthz and /readyz report; none when absent. */
  health?: AgentHealth;
  /**
   * Per provider, how long past its expiry a cached value may still be served while the
   * provider fails; a stale value older than this fails the delivery instead (retried with
   * backoff). Providers absent here are bounded by the cache's own stale window only.
   */
  maxStalenessMs?: ReadonlyMap<string, number>;
  /**
   * The agent's time: every timer it sets (reconciliation, the delivery queue's retries, coalesced
   * saves and tracking, rotation jitter, retries after giving up) and the staleness check. Give
   * the cache the same clock. @default systemClock
   */
  clock?: Clock;
  /**
   * Noticing new versions between reconciliations: a provider's watch where it declares one,
   * else its version probe, else a resolve, every interval (see change-detector.ts). Absent:
   * new versions are noticed by the periodic reconciliation only.
   */
  changeDetection?: {
    pollIntervalMs: number;
    /** Per provider intervals overriding `pollIntervalMs`. */
    pollIntervalByProvider?: ReadonlyMap<string, number>;
  };
  /**
   * Where what was delivered is kept across restarts (digests of names, references and
   * versions per container run: nothing a value can be recovered from), so a version that
   * changed while the agent was down, or a rotation a crash interrupted, is rotated at the next
   * start. Absent: kept in memory only.
   */
  statePath?: string;
  /**
   * The volume driver: DSO volumes' folders (under `volumes.root`, on a tmpfs), the driver's
   * name and the `Mount` deadline. Absent: no volume driver (serve it with
   * `startVolumePluginServer(agent.volumeDriver)`).
   */
  volumes?: {
    folders: VolumeFolders;
    driverName: string;
    mountTimeoutMs: number;
    /** Where volumes and mounts are kept across restarts (references and digests, no value). */
    statePath?: string;
  };
  /** @default DEFAULT_MAX_RECONNECTS */
  maxReconnects?: number;
  /** @default 500 */
  reconnectBaseDelayMs?: number;
  /** @default DEFAULT_RECONNECT_MAX_DELAY_MS */
  reconnectMaxDelayMs?: number;
}

/** {@link AgentOptions.rotation}. */
export interface RotationOptions {
  /** @default 'files' */
  defaultPolicy?: LabelRotationPolicy;
  /** @default 'SIGHUP' */
  signal?: string;
  /** Containers running their rotation action at once. @default 16 */
  maxInFlight?: number;
  /** Each action starts after a random delay up to this. @default 5000 */
  jitterMs?: number;
  /** Bound on a `hook` command. @default 30000 */
  hookTimeoutMs?: number;
  /** SIGTERM-to-SIGKILL grace of the `restart` policy and of a replaced container. @default 10000 */
  stopTimeoutMs?: number;
  /** Under `replace`, how long the new container has to prove healthy. @default 60000 */
  healthTimeoutMs?: number;
  /**
   * A replacement that failed (the container still runs its old `dso://` values) is tried
   * again after this, doubling (jittered) up to {@link RotationOptions.retryMaxDelayMs}.
   * @default 30000
   */
  retryBaseDelayMs?: number;
  /** @default 600000 */
  retryMaxDelayMs?: number;
  /** The heaviest policy tried when a lighter one fails, unless a container's label says otherwise. @default none */
  escalateTo?: LabelRotationPolicy;
}

/** A running agent: start it once, await `done`, close it on shutdown. */
export interface Agent extends AsyncDisposable {
  /**
   * Starts watching the engine, then delivers to every managed container already running.
   * Resolves once both are under way; `done` settles when the agent stops.
   */
  start(): Promise<void>;
  /** Settles when the agent stops: resolves after close(), rejects when the events stream cannot be restored. */
  readonly done: Promise<void>;
  /** Resolves when no delivery waits or runs (for tests and tools). */
  idle(): Promise<void>;
  /** Stops taking work, waits up to the grace period for deliveries in flight, then returns. */
  close(): Promise<void>;
  /** What the agent knows now: every managed container it has worked on, queue and cache. */
  status(): AgentStatus;
  /**
   * Lists every managed container and queues each for a check now (a reconciliation with the
   * `api` trigger); resolves with how many were queued.
   */
  reconcile(): Promise<{ containers: number }>;
  /**
   * Asks the providers again now, past the cache, for every secret the selected running
   * containers use (all managed containers when `containerId` is absent), then checks those
   * containers: any that gets a new version is rotated by its policy. Resolves with how many
   * containers and secrets were selected.
   * @throws DsoError DSO_AGENT_NOT_RUNNING before start or after close
   * @throws DsoError DSO_AGENT_CONTAINER_UNKNOWN when `containerId` names no managed container
   */
  rotate(selector?: { containerId?: string }): Promise<{ containers: number; secrets: number }>;
  /**
   * Resolves `dso://` references for a container about to be created (`dso up`), through the
   * cache and the configured providers, as a delivery would. The caller owns (and disposes) the
   * values. Every value is registered with the redactor first.
   * @throws DsoError DSO_AGENT_RESOLVE_FAILED naming the reference (never a value)
   */
  resolveEnvironment(
    references: readonly SecretReference[],
    options?: { signal?: AbortSignal },
  ): Promise<ResolvedEnvironmentValue[]>;
  /**
   * Looks references (`dso://` or `dsofile://`) up in their stores, through the cache, as a
   * delivery would, and answers each one's version or failure; the values are disposed at once
   * (`dso up` checks its references before it starts anything).
   * @throws DsoError DSO_AGENT_NOT_RUNNING before start or after close
   */
  checkReferences(
    references: readonly SecretReference[],
    options?: { signal?: AbortSignal },
  ): Promise<CheckedReference[]>;
  /**
   * Calls `listener` with every {@link AgentEvent} from now on, synchronously (a listener must
   * not block; one that throws is dropped). Returns the unsubscribe function.
   */
  subscribe(listener: (event: AgentEvent) => void): () => void;
  /** The volume driver's handlers, when {@link AgentOptions.volumes} was given. */
  readonly volumeDriver: VolumeDriver | undefined;
}

/**
 * Something the agent did to a container, as {@link Agent.subscribe} reports it (and the API's
 * `GET /v1/events` streams it): ids, references, versions, policies and codes, never a value.
 */
export type AgentEvent = {
  /** ms since the epoch. */
  at: number;
  containerId: string;
  /** The container's name, when the agent knows it (the event bus adds it). */
  containerName?: string;
  /** The engine's state of the container as the agent last saw it (the event bus adds it). */
  containerState?: string;
} & (
  | {
      type: 'delivered';
      trigger: DeliveryTrigger;
      files: number;
      method: 'exec' | 'host' | 'volume';
    }
  | {
      type: 'delivery-failed';
      trigger: DeliveryTrigger;
      code: string;
      reference?: string;
      retry: boolean;
      /** What happened and what to do (never a value). */
      message?: string;
    }
  | {
      type: 'rotated';
      policy: LabelRotationPolicy;
      /** What was done when it says more than the policy (a Swarm task stopped, by names). */
      message?: string;
    }
  | {
      type: 'rotation-failed';
      policy: LabelRotationPolicy;
      code: string;
      rolledBack: boolean;
      /** What happened and what to do (references, versions and reasons; never a value). */
      message?: string;
    }
  | {
      /** A secret the container consumes is no longer in its store (deleted while in use). */
      type: 'secret-missing';
      reference: string;
      code: string;
      /** What happened and what to do (never a value). */
      message?: string;
    }
  | { type: 'replaced'; newContainerId: string }
  | ({ type: 'label-warning' } & LabelWarning)
  | {
      /** Started with `dso://`/`dsofile://` text in its environment (created without dso up). */
      type: 'literal-references';
      variables: string[];
      code: string;
      message: string;
    }
);

/** One reference {@link Agent.checkReferences} looked up: a version, or a failure (never a value). */
export interface CheckedReference {
  /** The reference as written (formatted). */
  reference: string;
  provider: string;
  version?: string;
  /** The failure's code (e.g. `DSO_PROVIDER_NOT_FOUND`) and message, when it could not be had. */
  code?: string;
  error?: string;
}

/** One value {@link Agent.resolveEnvironment} resolved. */
export interface ResolvedEnvironmentValue {
  /** The reference as written (formatted). */
  reference: string;
  provider: string;
  version: string;
  /** The caller's to dispose. */
  value: SecretValue;
}

/** One file as last delivered: never its value. */
export interface DeliveredFile {
  name: string;
  reference: string;
  provider: string;
  version: string;
}

/** What the agent last did for one container. */
export interface ContainerStatus {
  id: string;
  /** Its name (without the leading `/`) once inspected. */
  name?: string;
  /** The engine's state as last seen: `running`, `exited`, … */
  state?: string;
  /** Its rotation policy as its `dso.rotate*` labels say it, when they do. */
  rotation?: string;
  /** The files of the last successful delivery (absent before one). */
  files?: DeliveredFile[];
  /** Its `dso://` environment variables (`name` is the variable) and their current versions. */
  env?: DeliveredFile[];
  /** When that delivery happened, ms since the epoch. */
  deliveredAt?: number;
  /** What its labels got wrong without failing (an unknown `dso.*` label, …), with a suggestion. */
  warnings?: LabelWarning[];
  /** Environment variables it was started with whose value is a reference as text (created without dso up). */
  literalReferences?: Array<{ variable: string; reference: string }>;
  lastAction: {
    trigger: DeliveryTrigger | 'api';
    at: number;
    /** `missing`: a secret it consumes was removed from its store (`reference` names it). */
    outcome: 'delivered' | 'up-to-date' | 'failed' | 'missing';
    /** For a failure: the code, and the reference it concerns (never a value). */
    code?: string;
    reference?: string;
    /** For a failure: what happened and what to do (never a value). */
    message?: string;
  };
  /** Its last failure, kept after a later success (until the container is gone). */
  lastFailure?: {
    trigger: DeliveryTrigger | 'api';
    at: number;
    code: string;
    reference?: string;
    message?: string;
  };
}

/** {@link Agent.status}. */
export interface AgentStatus {
  startedAt: number | undefined;
  containers: ContainerStatus[];
  queue: { depth: number; inFlight: number; shed: number };
  cache: { entries: number; hits: number; misses: number; staleServed: number };
  /** The volume driver's name, when the agent serves one. */
  volumeDriver?: string;
}
