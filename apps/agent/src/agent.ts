import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import {
  type AuditLog,
  type Cache,
  type CacheResult,
  type Clock,
  cacheKey,
  createEventQueue,
  createMemoryCache,
  DEFAULT_QUEUE_RETRY,
  DsoError,
  type EventQueueRetryOptions,
  errorCode,
  formatReference,
  LABEL_ROTATION_POLICIES,
  LABELS,
  type LabelRotationPolicy,
  type Logger,
  type ManagedSpec,
  parseManagedLabels,
  type Redactor,
  type SecretReference,
  systemClock,
} from '@dso/core';
import type {
  ContainerDetails,
  ContainerEvent,
  DockerRuntime,
  HostSecretDirs,
  NumericOwner,
} from '@dso/docker-runtime';
import { type SecretProvider, type SecretValue, selectField } from '@dso/provider-sdk';
import {
  type ChangeDetector,
  createChangeDetector,
  type TrackedSecret,
} from './change-detector.js';
import { type DeliveredState, loadDeliveredState, saveDeliveredState } from './delivered-state.js';
import type { AgentHealth, AgentMetrics } from './observability.js';

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
  /** The cache's clock, for the staleness check. @default systemClock */
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
  /** The heaviest policy tried when a lighter one fails, unless a container's label says otherwise. @default none */
  escalateTo?: LabelRotationPolicy;
}

/** One resolved file, with what the audit trail and the delivered-state digest need. */
interface ResolvedFile {
  name: string;
  content: Buffer;
  reference: string;
  provider: string;
  version: string;
  cacheHit: boolean;
}

/**
 * A digest of what a delivery writes, minus the values: names, references, versions, target,
 * mode and owner. Equal digests mean equal files (versions identify values).
 */
function digestOf(spec: ManagedSpec, files: ResolvedFile[], user: string): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify([spec.target, spec.mode, spec.owner ?? user]));
  for (const file of files) {
    hash.update(JSON.stringify([file.name, file.reference, file.provider, file.version]));
  }
  return hash.digest('hex');
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
   * Calls `listener` with every {@link AgentEvent} from now on, synchronously (a listener must
   * not block; one that throws is dropped). Returns the unsubscribe function.
   */
  subscribe(listener: (event: AgentEvent) => void): () => void;
}

/**
 * Something the agent did to a container, as {@link Agent.subscribe} reports it (and the API's
 * `GET /v1/events` streams it): ids, references, versions, policies and codes, never a value.
 */
export type AgentEvent = {
  /** ms since the epoch. */
  at: number;
  containerId: string;
} & (
  | { type: 'delivered'; trigger: DeliveryTrigger; files: number; method: 'exec' | 'host' }
  | {
      type: 'delivery-failed';
      trigger: DeliveryTrigger;
      code: string;
      reference?: string;
      retry: boolean;
    }
  | { type: 'rotated'; policy: LabelRotationPolicy }
  | { type: 'rotation-failed'; policy: LabelRotationPolicy; code: string; rolledBack: boolean }
  | { type: 'replaced'; newContainerId: string }
);

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
  /** The files of the last successful delivery (absent before one). */
  files?: DeliveredFile[];
  /** Its `dso://` environment variables (`name` is the variable) and their current versions. */
  env?: DeliveredFile[];
  /** When that delivery happened, ms since the epoch. */
  deliveredAt?: number;
  lastAction: {
    trigger: DeliveryTrigger | 'api';
    at: number;
    outcome: 'delivered' | 'up-to-date' | 'failed';
    /** For a failure: the code, and the reference it concerns (never a value). */
    code?: string;
    reference?: string;
  };
}

/** {@link Agent.status}. */
export interface AgentStatus {
  startedAt: number | undefined;
  containers: ContainerStatus[];
  queue: { depth: number; inFlight: number; shed: number };
  cache: { entries: number; hits: number; misses: number; staleServed: number };
}

/**
 * The agent: watches the engine's container events and, for every running container that
 * carries `dso.enable=true` and `dso.file.*` labels, writes those secrets as files into the
 * container's tmpfs through the runtime's atomic injection.
 *
 * @example
 * const agent = createAgent({ runtime, providers: new Map([['local', provider]]), logger, redactor });
 * await agent.start();
 * process.on('SIGTERM', () => agent.close());
 * await agent.done;
 */
export function createAgent(options: AgentOptions): Agent {
  const { runtime, providers, logger, redactor } = options;
  const ownCache = options.cache === undefined;
  const cache = options.cache ?? createMemoryCache();
  const defaultProvider = options.defaultProvider ?? 'local';
  const graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  const maxReconnects = options.maxReconnects ?? DEFAULT_MAX_RECONNECTS;
  const baseDelayMs = options.reconnectBaseDelayMs ?? 500;
  const maxDelayMs = options.reconnectMaxDelayMs ?? DEFAULT_RECONNECT_MAX_DELAY_MS;
  const stopping = new AbortController();
  const reconcileIntervalMs = options.reconcileIntervalMs ?? DEFAULT_RECONCILE_INTERVAL_MS;
  const rotation = {
    defaultPolicy: options.rotation?.defaultPolicy ?? 'files',
    signal: options.rotation?.signal ?? 'SIGHUP',
    maxInFlight: options.rotation?.maxInFlight ?? 16,
    jitterMs: options.rotation?.jitterMs ?? 5_000,
    hookTimeoutMs: options.rotation?.hookTimeoutMs ?? 30_000,
    stopTimeoutMs: options.rotation?.stopTimeoutMs ?? 10_000,
    healthTimeoutMs: options.rotation?.healthTimeoutMs ?? 60_000,
    escalateTo: options.rotation?.escalateTo,
  };
  let rotating = 0;
  const rotationTurns: Array<() => void> = [];
  /**
   * Rotations run beside the queue (a restart or a replacement can take a minute): tracked so
   * that shutdown waits for them within its grace period, then aborts them (a replacement
   * aborted before its swap rolls back), and never lets two run on one container.
   */
  const rotations = new Map<string, Promise<void>>();
  const rotationsAbort = new AbortController();
  const maxStaleness: ReadonlyMap<string, number> = options.maxStalenessMs ?? new Map();
  const clock = options.clock ?? systemClock;
  const hostDirs = options.hostDirs;
  const hostFolderMinAgeMs = options.hostFolderMinAgeMs ?? 60_000;
  const listeners = new Set<(event: AgentEvent) => void>();
  /** Tells every subscriber (the API's event streams). */
  function emit(event: AgentEvent): void {
    for (const listener of listeners) {
      try {
        listener(event);
      } catch {
        listeners.delete(listener);
      }
    }
  }
  /**
   * The secrets each container was last given (provider, path, version; never a pinned
   * version): what the change detector tracks, and who consumes a secret that changed.
   */
  const consumed = new Map<string, TrackedSecret[]>();
  const detector: ChangeDetector | undefined =
    options.changeDetection === undefined
      ? undefined
      : createChangeDetector({
          providers,
          logger,
          redactor,
          ...(options.metrics === undefined ? {} : { metrics: options.metrics }),
          pollIntervalMs: options.changeDetection.pollIntervalMs,
          ...(options.changeDetection.pollIntervalByProvider === undefined
            ? {}
            : { pollIntervalByProvider: options.changeDetection.pollIntervalByProvider }),
          onChange: (change) => {
            options.metrics?.changeDetected(change.source);
            // The cached value first, so the deliveries that follow ask the provider.
            void refresh(change.provider, change.path, stopping.signal).then(() => {
              if (stopping.signal.aborted) return;
              let containers = 0;
              for (const [id, secrets] of consumed) {
                if (secrets.some((s) => s.provider === change.provider && s.path === change.path)) {
                  queue.add(id, 'changed');
                  containers += 1;
                }
              }
              logger.info(
                {
                  reference: `${change.provider}:${change.path}`,
                  version: change.version,
                  source: change.source,
                  containers,
                },
                'new secret version detected',
              );
            });
          },
        });
  if (detector !== undefined) options.metrics?.trackChangeDetector(() => detector.stats());
  let trackTimer: NodeJS.Timeout | undefined;
  /** Records what a container consumes and hands the whole set to the detector (coalesced). */
  function consume(containerId: string, secrets: TrackedSecret[] | undefined): void {
    if (detector === undefined) return;
    if (secrets === undefined) {
      consumed.delete(containerId);
      consumedAt.delete(containerId);
    } else {
      // A provider that reports no version gives nothing to compare: not tracked.
      consumed.set(
        containerId,
        secrets.filter((secret) => secret.version !== ''),
      );
      consumeClock += 1;
      consumedAt.set(containerId, consumeClock);
    }
    if (trackTimer !== undefined) return;
    trackTimer = setTimeout(() => {
      trackTimer = undefined;
      if (stopping.signal.aborted) return;
      // The baseline of a secret is the version most recently delivered (a consumer that lags,
      // its delivery failing, must not move it back and make the detector report it again).
      const latest = new Map<string, { secret: TrackedSecret; at: number }>();
      for (const [id, secrets] of consumed) {
        const at = consumedAt.get(id) ?? 0;
        for (const secret of secrets) {
          const key = `${secret.provider}:${secret.path}`;
          const known = latest.get(key);
          if (known === undefined || known.at < at) latest.set(key, { secret, at });
        }
      }
      try {
        detector.track([...latest.values()].map(({ secret }) => secret));
      } catch (error) {
        logger.error({ err: error, code: errorCode(error) }, 'change detection could not track');
      }
    }, 100);
    trackTimer.unref();
  }
  /** When each container last consumed (a counter, not a clock: only the order matters). */
  const consumedAt = new Map<string, number>();
  let consumeClock = 0;
  /** Containers delivered to by the host path, with their key (the bind mount's folder). */
  const hostKeys = new Map<string, string>();
  const auditLog = options.audit;
  let auditFailing = false;
  /**
   * The audit trail, never throwing: a trail that cannot be written (disk full) is logged once
   * per outage and counted as an error there, and never turns a delivery or a rotation that
   * happened into a failure (nor a successful action into an escalation).
   */
  const audit =
    auditLog === undefined
      ? undefined
      : {
          record(entry: Parameters<AuditLog['record']>[0]): void {
            try {
              auditLog.record(entry);
              if (auditFailing) {
                auditFailing = false;
                logger.info('audit trail written again');
              }
            } catch (error) {
              if (!auditFailing) {
                auditFailing = true;
                logger.error(
                  { err: error, code: errorCode(error) },
                  'audit trail cannot be written: fix it (disk space, permissions); the agent goes on',
                );
              }
            }
          },
        };
  const metrics = options.metrics;
  const health = options.health;

  const queue = createEventQueue<DeliveryTrigger>({
    concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
    ...(options.queueMaxSize === undefined ? {} : { maxSize: options.queueMaxSize }),
    retry: options.retry ?? DEFAULT_QUEUE_RETRY,
    worker: (containerId, trigger, { signal, attempt }) =>
      deliver(containerId, trigger, signal, attempt),
    // A start coalesced with a reconciliation is still a start: the tmpfs is new.
    merge: (queued, next) => (queued === 'started' || next === 'started' ? 'started' : next),
    onFailed: (containerId, error, attempts) => {
      // Not forgotten until the next periodic check: tried again later, backing off per
      // container (30 s doubling to 10 min), as long as it runs and the agent does.
      const rounds = (gaveUp.get(containerId) ?? 0) + 1;
      gaveUp.set(containerId, rounds);
      const delayMs = Math.min(10 * 60_000, 30_000 * 2 ** Math.min(rounds - 1, 10));
      logger.error(
        {
          containerId: containerId.slice(0, 12),
          code: errorCode(error),
          attempts,
          retryInMs: delayMs,
        },
        'secrets delivery gave up',
      );
      const timer = setTimeout(() => {
        if (!stopping.signal.aborted && gaveUp.has(containerId)) queue.add(containerId, 'resync');
      }, delayMs);
      timer.unref();
    },
    onShed: (containerIds) => {
      // Too much work at once: the oldest waiting containers were dropped from the queue. They
      // are delivered to once the queue has drained, so none is forgotten.
      logger.warn({ containers: containerIds.length }, 'delivery work shed, will retry when idle');
      for (const id of containerIds) shed.add(id);
      void queue.idle().then(() => {
        const ids = [...shed];
        shed.clear();
        for (const id of ids) queue.add(id, 'resync');
      });
    },
  });
  const shed = new Set<string>();
  /** Containers whose delivery gave up, with how many times in a row: retried later. */
  const gaveUp = new Map<string, number>();
  metrics?.trackQueue(() => queue.stats());
  metrics?.trackCache(() => cache.stats());
  /**
   * What was last delivered to each container's current run: a digest of the set (names,
   * references, versions, target, mode, owner) and the run's start time. Hashes and versions
   * only: nothing here reveals a value.
   */
  const delivered = new Map<string, DeliveredState>();
  /**
   * While a container's rotation runs, what the state file keeps for it is the state before
   * (undefined: nothing): a crash before the action finished leaves it to redo at the next start.
   */
  const persistBefore = new Map<string, DeliveredState | undefined>();
  let saveTimer: NodeJS.Timeout | undefined;
  let saving: Promise<void> = Promise.resolve();
  /** Writes the state file soon (coalesced), when there is one. */
  function scheduleSave(): void {
    if (options.statePath === undefined || saveTimer !== undefined) return;
    saveTimer = setTimeout(() => {
      saveTimer = undefined;
      void flushState();
    }, 500);
    saveTimer.unref();
  }
  function flushState(): Promise<void> {
    const path = options.statePath;
    if (path === undefined) return Promise.resolve();
    const snapshot: Array<[string, DeliveredState]> = [];
    for (const [id, state] of delivered) {
      const kept = persistBefore.has(id) ? persistBefore.get(id) : state;
      if (kept !== undefined) snapshot.push([id, kept]);
    }
    saving = saving
      .then(() => saveDeliveredState(path, snapshot))
      .catch((error: unknown) => {
        logger.warn({ err: error, path }, 'could not save what was delivered; tried again later');
      });
    return saving;
  }
  /** The last action per container, for status(): references and versions, never values. */
  const statuses = new Map<string, ContainerStatus>();

  /**
   * Delivers one container's files. Throws only for failures worth retrying (the queue backs
   * off and retries); anything else is reported here and left for the next start or reconcile.
   */
  async function deliver(
    containerId: string,
    trigger: DeliveryTrigger,
    signal: AbortSignal,
    attempt: number,
  ): Promise<void> {
    const started = performance.now();
    const log = logger.child({ containerId: containerId.slice(0, 12) });
    let spec: ManagedSpec | undefined;
    let resolved: ResolvedFile[] = [];
    let method: 'exec' | 'host' = 'exec';
    try {
      const details = await runtime.inspectContainer(containerId, { signal });
      if (!details.running) return;
      spec = parseManagedLabels(details.labels);
      if (!spec || (spec.files.length === 0 && spec.env.length === 0)) return;
      resolved = await resolveFiles(spec, signal);
      // The versions its dso:// environment values have now (set when it was created): a new
      // one can only reach it by a replacement.
      const previous = delivered.get(containerId);
      // Only for noticing a new version: a failure here never keeps the files from a container
      // (they are written, the check is logged, and the next one tries again).
      let env: DeliveredFile[] = [];
      let envUnknown = false;
      try {
        env = await envVersions(spec, signal);
      } catch (error) {
        if (signal.aborted || spec.files.length === 0) throw error;
        envUnknown = true;
        log.warn(
          {
            err: error,
            code: errorCode(error),
            causeCode: errorCode((error as { cause?: unknown }).cause),
          },
          'could not check the versions of its dso:// environment values; its files are delivered',
        );
      }
      const digest = digestOf(spec, resolved, details.user);
      const envDigest = envUnknown
        ? (previous?.envDigest ?? '')
        : createHash('sha256')
            .update(JSON.stringify(env.map((entry) => [entry.name, entry.version])))
            .digest('hex');
      if (
        trigger !== 'started' &&
        previous !== undefined &&
        previous.digest === digest &&
        previous.envDigest === envDigest &&
        previous.startedAt === details.startedAt
      ) {
        // Already there, same versions, same run of the container: a second event or a
        // reconciliation has no second effect. (A restarted agent still learns which host
        // folder is this container's, to empty it when the container stops.)
        const hostKey = hostKeyOf(details, spec.target);
        if (hostKey !== undefined) hostKeys.set(containerId, hostKey);
        log.debug({ trigger }, 'secrets up to date');
        const known = statuses.get(containerId);
        statuses.set(containerId, {
          ...known,
          id: containerId,
          lastAction: { trigger, at: Date.now(), outcome: 'up-to-date' },
        });
        return;
      }
      const files = resolved.map(({ name, content }) => ({ name, content }));
      const hostKey = hostKeyOf(details, spec.target);
      let result: { files: number; bytes: number };
      if (files.length === 0) {
        result = { files: 0, bytes: 0 };
      } else if (hostKey !== undefined && hostDirs !== undefined) {
        // The container bind-mounts its folder from the host tmpfs: written in place, no exec.
        const owner = spec.owner ?? (await ownerOf(containerId, details.user, signal));
        signal.throwIfAborted();
        result = hostDirs.write(hostKey, { files, mode: spec.mode, owner });
        hostKeys.set(containerId, hostKey);
      } else {
        result = await runtime.writeFiles(containerId, {
          target: spec.target,
          files,
          mode: spec.mode,
          owner: spec.owner,
          // Just inspected: the runtime need not inspect it again.
          containerUser: details.user,
          signal,
        });
      }
      method = hostKey === undefined ? 'exec' : 'host';
      delivered.set(containerId, { digest, envDigest, startedAt: details.startedAt });
      scheduleSave();
      consume(containerId, [
        ...spec.files.flatMap((file, index) => {
          const got = resolved[index];
          return file.reference.version || got === undefined
            ? []
            : [{ provider: got.provider, path: file.reference.path, version: got.version }];
        }),
        ...spec.env.flatMap((variable, index) => {
          const got = env[index];
          return variable.reference.version || got === undefined
            ? []
            : [{ provider: got.provider, path: variable.reference.path, version: got.version }];
        }),
      ]);
      gaveUp.delete(containerId);
      // New versions reached a container that was already running with the old ones: the
      // files are in place; now its policy tells it (a first delivery, a restart's, or an
      // agent restart with nothing changed is no rotation). A new environment value needs a
      // new container: a replacement, whatever the policy.
      const sameRun = previous !== undefined && previous.startedAt === details.startedAt;
      // Created with an older version than the current one (its dso.env-version.* labels):
      // replaced once, at first sight or when the versions move again, never in a loop.
      const createdStale =
        !envUnknown &&
        (previous === undefined || previous.envDigest !== envDigest) &&
        spec.env.some(
          (variable, index) =>
            variable.createdVersion !== undefined &&
            variable.createdVersion !== env[index]?.version,
        );
      const envChanged = createdStale || (sameRun && previous.envDigest !== envDigest);
      if (envChanged || (sameRun && previous.digest !== digest)) {
        if (rotations.has(containerId)) {
          // One at a time per container: the running one acts on files that now hold the new
          // versions too, and a replacement's new container is checked again on its own.
          log.info('rotation already running for this container; not started twice');
        } else {
          persistBefore.set(containerId, previous);
          const running = rotate(
            containerId,
            spec,
            [...resolved, ...env],
            envChanged,
            rotationsAbort.signal,
          ).finally(() => {
            rotations.delete(containerId);
            // Done, failed or rolled back: either way not to be redone by the next agent.
            if (!rotationsAbort.signal.aborted) persistBefore.delete(containerId);
            scheduleSave();
          });
          rotations.set(containerId, running);
        }
      }
      const now = Date.now();
      statuses.set(containerId, {
        id: containerId,
        files: resolved.map(({ name, reference, provider, version }) => ({
          name,
          reference,
          provider,
          version,
        })),
        ...(env.length === 0
          ? {}
          : {
              env: env.map(({ name, reference, provider, version }) => ({
                name,
                reference,
                provider,
                version,
              })),
            }),
        deliveredAt: now,
        lastAction: { trigger, at: now, outcome: 'delivered' },
      });
      const durationMs = Math.round((performance.now() - started) * 100) / 100;
      if (files.length > 0) metrics?.injection(method, 'ok', durationMs);
      emit({ type: 'delivered', at: now, containerId, trigger, files: files.length, method });
      for (const file of resolved) {
        audit?.record({
          actor: { kind: 'agent' },
          action: 'inject',
          reference: file.reference,
          provider: file.provider,
          version: file.version,
          containerId,
          outcome: 'ok',
          cacheHit: file.cacheHit,
          durationMs,
        });
      }
      log.info(
        { files: result.files, bytes: result.bytes, trigger, durationMs: Math.round(durationMs) },
        'secrets delivered',
      );
    } catch (error) {
      if (signal.aborted) return;
      const retry = isRetryable(error);
      metrics?.injection(method, 'error', performance.now() - started);
      const reference = (error as { details?: { reference?: unknown } }).details?.reference;
      statuses.set(containerId, {
        ...statuses.get(containerId),
        id: containerId,
        lastAction: {
          trigger,
          at: Date.now(),
          outcome: 'failed',
          code: errorCode((error as { cause?: unknown }).cause) ?? errorCode(error) ?? 'DSO_ERROR',
          ...(typeof reference === 'string' ? { reference } : {}),
        },
      });
      emit({
        type: 'delivery-failed',
        at: Date.now(),
        containerId,
        trigger,
        code: errorCode((error as { cause?: unknown }).cause) ?? errorCode(error) ?? 'DSO_ERROR',
        ...(typeof reference === 'string' ? { reference } : {}),
        retry,
      });
      if (typeof reference === 'string') {
        audit?.record({
          actor: { kind: 'agent' },
          action: 'inject',
          reference,
          provider: providerOf(reference),
          containerId,
          outcome: 'error',
          code: errorCode((error as { cause?: unknown }).cause) ?? errorCode(error) ?? 'DSO_ERROR',
        });
      }
      log.warn(
        {
          err: error,
          code: errorCode(error),
          // The provider's own code (not found, unauthorized, …) under the agent's wrapper.
          causeCode: errorCode((error as { cause?: unknown }).cause),
          target: spec?.target,
          trigger,
          attempt,
          retry,
        },
        'secrets not delivered',
      );
      if (retry) throw error;
    } finally {
      for (const file of resolved) file.content.fill(0);
    }
  }

  /**
   * Applies a container's rotation policy after its secrets changed: `files` does nothing more,
   * `signal` signals it, `hook` runs its command in it, `restart` restarts it (its next start
   * writes the files again), `replace` starts a new container beside it with its `dso://`
   * environment values resolved again, hands it the name once healthy, and rolls back
   * otherwise (the old container keeps serving). A new environment value always takes
   * `replace`. When an action fails, the next heavier one is tried, up to the container's
   * `dso.rotate.escalate` (or `rotation.escalateTo`). Actions across containers are bounded
   * (maxInFlight) and spread (jitter), so many consumers of one secret do not all restart at
   * once.
   */
  async function rotate(
    containerId: string,
    spec: ManagedSpec,
    secrets: ReadonlyArray<{ reference: string; provider: string; version: string }>,
    envChanged: boolean,
    signal: AbortSignal,
  ): Promise<void> {
    const chain = policyChain(spec, envChanged);
    const log = logger.child({ containerId: containerId.slice(0, 12) });
    const references = secrets.map(({ reference, provider, version }) => ({
      reference,
      provider,
      version,
    }));
    const record = (policy: LabelRotationPolicy, outcome: 'ok' | 'error', code?: string) => {
      for (const secret of references) {
        audit?.record({
          actor: { kind: 'agent' },
          action: 'rotate',
          ...secret,
          containerId,
          outcome,
          policy,
          ...(code === undefined ? {} : { code }),
        });
      }
    };
    if (chain[0] === 'files') {
      metrics?.rotation('files', 'ok', 0);
      record('files', 'ok');
      emit({ type: 'rotated', at: Date.now(), containerId, policy: 'files' });
      log.info({ policy: 'files' }, 'secrets rotated');
      return;
    }
    try {
      await sleep(Math.random() * rotation.jitterMs, signal);
      while (rotating >= rotation.maxInFlight) {
        signal.throwIfAborted();
        await new Promise<void>((resolve) => {
          rotationTurns.push(resolve);
          signal.addEventListener('abort', () => resolve(), { once: true });
        });
      }
      signal.throwIfAborted();
      rotating += 1;
      try {
        for (const [index, policy] of chain.entries()) {
          signal.throwIfAborted();
          const started = performance.now();
          try {
            await runAction(policy, containerId, spec, signal);
            metrics?.rotation(policy, 'ok', performance.now() - started);
            record(policy, 'ok');
            emit({ type: 'rotated', at: Date.now(), containerId, policy });
            log.info({ policy }, 'secrets rotated');
            return;
          } catch (error) {
            if (signal.aborted) return;
            const code = errorCode(error) ?? 'DSO_ERROR';
            const rolledBack =
              code === 'DSO_DOCKER_REPLACE_FAILED' &&
              (error as { details?: { rollback?: unknown } }).details?.rollback === 'done';
            metrics?.rotation(
              policy,
              rolledBack ? 'rolled_back' : 'error',
              performance.now() - started,
            );
            record(policy, 'error', code);
            emit({
              type: 'rotation-failed',
              at: Date.now(),
              containerId,
              policy,
              code,
              rolledBack,
            });
            const next = chain[index + 1];
            const details = (error as { details?: Record<string, unknown> }).details ?? {};
            // The files already hold the new versions: a container left as it is picks them up
            // at its next start or reload. Said loudly, not retried in a loop.
            log.warn(
              {
                err: error,
                code,
                policy,
                ...(rolledBack
                  ? { stage: details.stage, reason: details.reason, rollback: 'done' }
                  : {}),
                ...(next === undefined ? {} : { escalatingTo: next }),
              },
              rolledBack
                ? 'replacement rolled back: the old container keeps serving'
                : 'rotation action failed',
            );
          }
        }
      } finally {
        rotating -= 1;
        rotationTurns.shift()?.();
      }
    } catch (error) {
      if (signal.aborted) return;
      log.warn({ err: error, code: errorCode(error) }, 'rotation could not run');
    }
  }

  /**
   * The actions a rotation may take, lightest first: the container's policy (or the default;
   * `replace` for a new environment value), then each heavier one up to its escalation limit,
   * `hook` only when it has a hook.
   */
  function policyChain(spec: ManagedSpec, envChanged: boolean): LabelRotationPolicy[] {
    const first: LabelRotationPolicy = envChanged
      ? 'replace'
      : (spec.rotation?.policy ?? rotation.defaultPolicy);
    const last = spec.rotation?.escalateTo ?? rotation.escalateTo ?? first;
    const from = LABEL_ROTATION_POLICIES.indexOf(first);
    const to = Math.max(from, LABEL_ROTATION_POLICIES.indexOf(last));
    return LABEL_ROTATION_POLICIES.slice(from, to + 1).filter(
      (policy, index) =>
        index === 0 || (policy !== 'files' && (policy !== 'hook' || spec.rotation?.hook)),
    );
  }

  /** One rotation action on one container; throws when it failed. */
  async function runAction(
    policy: LabelRotationPolicy,
    containerId: string,
    spec: ManagedSpec,
    signal: AbortSignal,
  ): Promise<void> {
    switch (policy) {
      case 'files':
        return;
      case 'signal':
        await runtime.sendSignal(containerId, spec.rotation?.signal ?? rotation.signal, { signal });
        return;
      case 'hook': {
        const hook = spec.rotation?.hook;
        if (hook === undefined) {
          throw new DsoError(
            'DSO_AGENT_HOOK_FAILED',
            `container ${containerId.slice(0, 12)} has no ${LABELS.rotateHook} label: the hook policy has no command to run`,
          );
        }
        const result = await runtime.exec(containerId, {
          argv: hook,
          timeoutMs: rotation.hookTimeoutMs,
          maxOutputBytes: 4_096,
          signal,
        });
        if (result.exitCode !== 0) {
          throw new DsoError(
            'DSO_AGENT_HOOK_FAILED',
            `the rotation hook of container ${containerId.slice(0, 12)} exited ${result.exitCode}`,
            { exitCode: result.exitCode },
          );
        }
        return;
      }
      case 'restart':
        await runtime.restartContainer(containerId, {
          stopTimeoutMs: rotation.stopTimeoutMs,
          signal,
        });
        return;
      case 'replace':
        await replace(containerId, spec, signal);
        return;
    }
  }

  /**
   * Blue-green: a new container from the old one's configuration, its `dso://` variables
   * resolved again (values only in the create request's body), its files written once it
   * starts, named as the old one once healthy; any failure before that removes it and leaves the
   * old one serving (the runtime's replaceContainer). The old one is stopped and removed after.
   */
  async function replace(
    containerId: string,
    spec: ManagedSpec,
    signal: AbortSignal,
  ): Promise<void> {
    const values = await resolveEach(spec.env, signal);
    const env: Record<string, string> = {};
    // Which version each value has: the next check (of this agent or the next) compares them.
    const labels: Record<string, string> = {};
    try {
      const decoder = new TextDecoder('utf-8', { fatal: true });
      for (const { name, value, version } of values) {
        let text: string | undefined;
        try {
          text = decoder.decode(value.reveal());
        } catch {
          text = undefined;
        }
        if (text === undefined || text.includes('\0')) {
          // As `dso up` refuses it: an environment variable cannot carry these bytes.
          const entry = spec.env.find((variable) => variable.name === name);
          const reference = entry === undefined ? name : formatReference(entry.reference);
          throw new DsoError(
            'DSO_AGENT_ENV_VALUE_BINARY',
            `the new value of ${name} (${reference}) is not UTF-8 text without NUL bytes, which an environment variable cannot carry: deliver it as a file with dsofile://`,
            { variable: name, reference },
          );
        }
        env[name] = text;
        labels[`${LABELS.envVersionPrefix}${name}`] = version;
      }
    } finally {
      for (const { value } of values) value.dispose();
    }
    const result = await runtime.replaceContainer(containerId, {
      env,
      labels,
      health: { timeoutMs: rotation.healthTimeoutMs },
      stopTimeoutMs: rotation.stopTimeoutMs,
      hookTimeoutMs: rotation.hookTimeoutMs,
      // Its files before the health wait (the start event queues the same delivery; a second
      // one changes nothing).
      onStarted: async (newId, hookSignal) => {
        if (spec.files.length === 0) return;
        queue.add(newId, 'started');
        await waitDelivered(newId, hookSignal);
      },
      signal,
    });
    emit({ type: 'replaced', at: Date.now(), containerId, newContainerId: result.newId });
    // The old container is gone: its state with it.
    delivered.delete(containerId);
    consume(containerId, undefined);
    statuses.delete(containerId);
    logger.info(
      {
        containerId: containerId.slice(0, 12),
        newContainerId: result.newId.slice(0, 12),
        health: result.health,
        oldRemoved: result.oldRemoved,
        durationMs: Math.round(result.durationMs),
      },
      'container replaced',
    );
    if (!result.oldRemoved) {
      logger.warn(
        { err: result.cleanupError, containerId: containerId.slice(0, 12) },
        'the old container could not be removed: the next start of the agent finishes it',
      );
    }
  }

  /**
   * Resolves when `containerId` has had a delivery in its current run; throws when `signal`
   * aborts (the replacement's hook deadline): a delivery that failed may still be retried by
   * the queue within it.
   */
  async function waitDelivered(containerId: string, signal: AbortSignal): Promise<void> {
    while (!delivered.has(containerId)) {
      signal.throwIfAborted();
      await sleep(50, signal);
    }
  }

  /**
   * The host path key of a container that bind-mounts `<hostDirs.root>/<key>` at its target,
   * or undefined (exec path).
   */
  function hostKeyOf(details: ContainerDetails, target: string): string | undefined {
    if (hostDirs === undefined) return undefined;
    const bind = details.binds.find((mount) => mount.target === target);
    if (bind === undefined) return undefined;
    const prefix = `${hostDirs.root}/`;
    if (!bind.source.startsWith(prefix)) return undefined;
    const key = bind.source.slice(prefix.length);
    if (!isHostKey(hostDirs, key)) return undefined;
    if (!bind.readOnly) {
      // Writable, root in the container could swap the folder's entries under the agent's
      // writes (and so steer them): refused, with the fix.
      throw new DsoError(
        'DSO_AGENT_HOST_PATH_WRITABLE',
        `container ${details.id.slice(0, 12)} mounts its secrets folder ${bind.source} writable: mount it read-only (--mount type=bind,source=${bind.source},target=${target},readonly)`,
        { containerId: details.id },
      );
    }
    return key;
  }

  /** The numeric owner of a container's files: its user as the container itself maps it. */
  async function ownerOf(
    containerId: string,
    user: string,
    signal: AbortSignal,
  ): Promise<NumericOwner> {
    if (user === '' || user === 'root') return { uid: 0, gid: 0 };
    const numeric = /^(\d+):(\d+)$/.exec(user);
    if (numeric) return { uid: Number(numeric[1]), gid: Number(numeric[2]) };
    // A name, or a uid whose primary group is in the image's /etc/passwd.
    return runtime.resolveUser(containerId, { signal });
  }

  /**
   * Removes the host folders no container binds any more (removed while the agent was down, or
   * a destroy event lost), so no secret outlives its container on the host. A folder changed in
   * the last minute is left alone: a container being created may be about to bind it.
   */
  async function sweepHostFolders(signal: AbortSignal): Promise<void> {
    if (hostDirs === undefined) return;
    try {
      const all = await runtime.listContainers({
        label: `${LABELS.enable}=true`,
        all: true,
        signal,
      });
      const used = new Set<string>();
      const prefix = `${hostDirs.root}/`;
      for (const container of all) {
        for (const bind of container.binds ?? []) {
          if (bind.source.startsWith(prefix)) used.add(bind.source.slice(prefix.length));
        }
      }
      let removed = 0;
      for (const key of hostDirs.keys()) {
        if (used.has(key)) continue;
        const changedAt = statSync(hostDirs.pathOf(key), { throwIfNoEntry: false })?.ctimeMs;
        // Whole ms, as Date.now(): a folder made in this very millisecond is 0 ms old, not less.
        const ageMs = Date.now() - Math.floor(changedAt ?? Number.POSITIVE_INFINITY);
        if (!(ageMs >= hostFolderMinAgeMs)) continue;
        hostDirs.remove(key);
        removed += 1;
      }
      if (removed > 0)
        logger.info({ folders: removed }, 'host folders of removed containers deleted');
    } catch (error) {
      if (signal.aborted) return;
      logger.warn({ err: error, code: errorCode(error) }, 'could not clean the host path folders');
    }
  }

  /** Empties a container's host folder when it stops, so no secret outlives its run in it. */
  function clearHostFiles(containerId: string, destroyed: boolean): void {
    const key = hostKeys.get(containerId);
    if (key === undefined || hostDirs === undefined) return;
    if (destroyed) hostKeys.delete(containerId);
    // Another container sharing the folder keeps it.
    for (const [other, otherKey] of hostKeys) if (other !== containerId && otherKey === key) return;
    try {
      hostDirs.remove(key);
      // A stopped container keeps an empty folder (its bind mount needs it to start again,
      // and without `..data` its wait holds the application until the files are back).
      if (!destroyed) hostDirs.ensure(key);
    } catch (error) {
      logger.warn({ err: error, code: errorCode(error) }, 'could not clear a host secrets folder');
    }
  }

  /** The configured provider a reference names (or the default). */
  function providerOf(reference: string): string {
    const match = /^dso(?:file)?:\/\/([a-z][a-z0-9-]*):/.exec(reference);
    return match?.[1] ?? defaultProvider;
  }

  /**
   * One secret through the cache: one provider call however many containers want it at once,
   * and the last-known-good value while the provider is down (stale-if-error, within the
   * provider's maximum staleness). The value, field selected, is the caller's to dispose.
   */
  async function resolveOne(
    reference: SecretReference,
    signal: AbortSignal,
  ): Promise<{
    formatted: string;
    provider: string;
    version: string;
    value: SecretValue;
    cacheHit: boolean;
  }> {
    const providerName = reference.provider ?? defaultProvider;
    const provider = providers.get(providerName);
    const formatted = formatReference(reference);
    if (!provider) {
      throw new DsoError(
        'DSO_AGENT_PROVIDER_UNKNOWN',
        `${formatted} names provider "${providerName}", which is not configured (configured: ${[...providers.keys()].join(', ')})`,
        { reference: formatted },
      );
    }
    const version = reference.version;
    let result: CacheResult;
    let loaded = false;
    try {
      result = await cache.getOrLoad(
        cacheKey(providerName, reference.path, version),
        (loadSignal) => {
          loaded = true;
          return fetchSecret(providerName, provider, reference.path, version, loadSignal);
        },
        { signal },
      );
    } catch (error) {
      throw new DsoError('DSO_AGENT_RESOLVE_FAILED', `could not resolve ${formatted}`, {
        cause: error,
        reference: formatted,
      });
    }
    if (result.stale) {
      const maxStalenessMs = maxStaleness.get(providerName);
      if (maxStalenessMs !== undefined && clock.now() - result.expiresAt > maxStalenessMs) {
        result.value.dispose();
        throw new DsoError(
          'DSO_AGENT_RESOLVE_FAILED',
          `could not resolve ${formatted}: its provider is unavailable and the last known value is older than the provider's maxStalenessMs (${maxStalenessMs} ms)`,
          { reference: formatted, retryable: true },
        );
      }
      logger.warn(
        { reference: formatted, version: result.version },
        'provider unavailable, serving the last known value',
      );
    }
    let value: SecretValue;
    try {
      value = reference.field
        ? selectField(result.value, reference.field, reference.path)
        : result.value;
    } catch (error) {
      // Not JSON, or no such field: said with the reference, the value zeroed.
      result.value.dispose();
      throw new DsoError('DSO_AGENT_RESOLVE_FAILED', `could not resolve ${formatted}`, {
        cause: error,
        reference: formatted,
      });
    }
    redactor.register(value.reveal());
    if (value !== result.value) result.value.dispose();
    return {
      formatted,
      provider: providerName,
      version: result.version,
      value,
      cacheHit: !loaded,
    };
  }

  /** Each `dso.env.*` variable's reference and current version (values disposed at once). */
  async function envVersions(spec: ManagedSpec, signal: AbortSignal): Promise<DeliveredFile[]> {
    return (await resolveEach(spec.env, signal)).map((one) => {
      one.value.dispose();
      return {
        name: one.name,
        reference: one.formatted,
        provider: one.provider,
        version: one.version,
      };
    });
  }

  /**
   * Resolves each entry's reference in order through {@link resolveOne}; the values are the
   * caller's to dispose, and all are disposed when one fails.
   */
  async function resolveEach<T extends { name: string; reference: SecretReference }>(
    entries: readonly T[],
    signal: AbortSignal,
  ): Promise<Array<Awaited<ReturnType<typeof resolveOne>> & { name: string }>> {
    const resolved: Array<Awaited<ReturnType<typeof resolveOne>> & { name: string }> = [];
    try {
      for (const { name, reference } of entries) {
        resolved.push({ ...(await resolveOne(reference, signal)), name });
      }
      return resolved;
    } catch (error) {
      for (const one of resolved) one.value.dispose();
      throw error;
    }
  }

  /** One call to a provider, counted, its value registered with the redactor at once. */
  async function fetchSecret(
    providerName: string,
    provider: SecretProvider,
    path: string,
    version: string | undefined,
    signal: AbortSignal,
  ): Promise<{ value: SecretValue; version: string; provider: string }> {
    const callStarted = performance.now();
    let fetched: Awaited<ReturnType<SecretProvider['resolve']>>;
    try {
      fetched = await provider.resolve({ path, ...(version ? { version } : {}) }, { signal });
    } catch (error) {
      metrics?.providerCall(providerName, 'resolve', performance.now() - callStarted, error);
      throw error;
    }
    metrics?.providerCall(providerName, 'resolve', performance.now() - callStarted);
    // Registered before the value goes anywhere, so no later log line can carry it.
    redactor.register(fetched.value.reveal());
    return { value: fetched.value, version: fetched.version, provider: providerName };
  }

  /**
   * Asks the provider for a secret's current value past the cache and stores it there. A
   * provider that fails leaves the cached (last known good) value in place: rotating on
   * request never leaves new containers with nothing during an outage.
   * @returns whether the provider answered
   */
  async function refresh(
    providerName: string,
    path: string,
    signal: AbortSignal,
  ): Promise<boolean> {
    const provider = providers.get(providerName);
    if (provider === undefined) return false;
    try {
      const fetched = await fetchSecret(providerName, provider, path, undefined, signal);
      try {
        await cache.set(cacheKey(providerName, path), fetched);
      } finally {
        fetched.value.dispose();
      }
      return true;
    } catch (error) {
      logger.warn(
        { err: error, code: errorCode(error), reference: `${providerName}:${path}` },
        'could not ask the provider again; the cached value stays',
      );
      return false;
    }
  }

  async function resolveFiles(spec: ManagedSpec, signal: AbortSignal): Promise<ResolvedFile[]> {
    return (await resolveEach(spec.files, signal)).map((one) => {
      const file = {
        name: one.name,
        content: Buffer.from(one.value.reveal()),
        reference: one.formatted,
        provider: one.provider,
        version: one.version,
        cacheHit: one.cacheHit,
      };
      one.value.dispose();
      return file;
    });
  }

  async function enqueueRunningManaged(
    signal: AbortSignal,
    trigger: Exclude<DeliveryTrigger, 'started' | 'changed'>,
  ): Promise<number> {
    const listStarted = performance.now();
    let containers: Awaited<ReturnType<DockerRuntime['listContainers']>>;
    try {
      containers = await runtime.listContainers({ label: `${LABELS.enable}=true`, signal });
    } catch (error) {
      metrics?.reconciliation(trigger, 'error', performance.now() - listStarted);
      throw error;
    }
    metrics?.reconciliation(trigger, 'ok', performance.now() - listStarted);
    metrics?.managedContainers(containers.length);
    logger.info({ containers: containers.length, trigger }, 'managed containers found');
    const running = new Set(containers.map((container) => container.id));
    // Forget what was delivered to containers that are gone (a destroy event may be lost).
    for (const id of delivered.keys()) {
      if (running.has(id)) continue;
      delivered.delete(id);
      consume(id, undefined);
    }
    scheduleSave();
    for (const id of statuses.keys()) if (!running.has(id)) statuses.delete(id);
    for (const container of containers) queue.add(container.id, trigger);
    void sweepHostFolders(signal);
    // Ready once every managed container has been looked at once (the deliveries follow).
    health?.reconciled();
    return containers.length;
  }

  function onEvent(event: ContainerEvent): void {
    if (event.type === 'container.died') {
      clearHostFiles(event.id, false);
      return;
    }
    if (event.type === 'container.destroyed') {
      clearHostFiles(event.id, true);
      delivered.delete(event.id);
      scheduleSave();
      consume(event.id, undefined);
      gaveUp.delete(event.id);
      statuses.delete(event.id);
      return;
    }
    if (event.type !== 'container.started') return;
    if (event.labels[LABELS.enable] !== 'true') return;
    queue.add(event.id, 'started');
  }

  // Watches events until stopped. The runtime reconnects a broken stream itself, resumes after
  // the last event, drops the replay's duplicates, and says `resync` when events may have been
  // missed (a gap longer than the engine's buffer, or an engine restart): then every managed
  // container is listed again. Only when the engine stays unreachable does this end, with
  // DSO_AGENT_ENGINE_LOST, so the supervisor restarts the agent.
  async function watch(firstSinceMs: number): Promise<void> {
    const signal = stopping.signal;
    try {
      for await (const item of runtime.events({
        since: firstSinceMs,
        signal,
        reconnect: { maxAttempts: maxReconnects, baseDelayMs, maxDelayMs },
        onConnected: () => health?.eventsConnected(),
        onReconnecting: ({ attempt, delayMs, error }) => {
          health?.eventsLost();
          metrics?.eventsReconnecting();
          logger.warn(
            { err: error, code: error.code, attempt, delayMs },
            'events stream lost, reconnecting',
          );
        },
      })) {
        metrics?.eventReceived(item.type);
        if (item.type === 'resync') {
          logger.warn({ reason: item.reason }, 'events may have been missed, listing containers');
          // Not awaited: the stream must be drained promptly, the list runs beside it.
          void enqueueRunningManaged(signal, 'resync').catch((error: unknown) => {
            logger.warn(
              { err: error, code: errorCode(error) },
              'could not list managed containers',
            );
          });
          continue;
        }
        onEvent(item);
      }
    } catch (error) {
      if (signal.aborted) return;
      if (errorCode(error) === 'DSO_DOCKER_RECONNECT_FAILED') {
        throw new DsoError(
          'DSO_AGENT_ENGINE_LOST',
          `the engine's events stream failed ${maxReconnects} reconnects in a row; exiting so the supervisor restarts the agent`,
          { cause: error },
        );
      }
      throw error;
    }
  }

  /**
   * Finishes or undoes replacements a crash interrupted (the runtime's decision table: never
   * both containers removed, a new container that never proved itself never given the name).
   * A failure here is reported and the agent goes on: what is left stays recognisable and is
   * tried again at the next start.
   */
  async function recoverReplacements(): Promise<void> {
    try {
      const entries = await runtime.recoverReplacements({
        stopTimeoutMs: rotation.stopTimeoutMs,
        signal: stopping.signal,
      });
      for (const entry of entries) {
        const fields = {
          name: entry.name,
          oldContainerId: entry.oldId.slice(0, 12),
          newContainerId: entry.newId.slice(0, 12),
          action: entry.action,
          ...(entry.reason === undefined ? {} : { reason: entry.reason }),
        };
        if (entry.action === 'blocked') {
          logger.warn(
            { ...fields, err: entry.error },
            'an interrupted replacement needs a decision: both containers are left as they are',
          );
        } else {
          logger.info(fields, 'interrupted replacement recovered');
        }
      }
    } catch (error) {
      if (stopping.signal.aborted) return;
      logger.warn(
        { err: error, code: errorCode(error) },
        'could not check for interrupted replacements; tried again at the next start',
      );
    }
  }

  let done: Promise<void> = Promise.resolve();
  let started = false;
  let reconcileTimer: NodeJS.Timeout | undefined;
  let startedAt: number | undefined;
  let closing: Promise<void> | undefined;

  async function shutdown(): Promise<void> {
    const { inFlight, depth } = queue.stats();
    logger.info({ graceMs, inFlight, waiting: depth }, 'agent stopping');
    health?.stopping();
    stopping.abort(); // no more events or listing
    clearInterval(reconcileTimer);
    clearTimeout(trackTimer);
    await detector?.close();
    // Deliveries in flight get the grace period, then the queue aborts their signal and waits
    // for them to unwind, so nothing runs on after the owner closes the runtime and providers.
    const closeStarted = Date.now();
    const undone = await queue.close({ graceMs });
    if (undone.length > 0)
      logger.info({ containers: undone.length }, 'deliveries left for the next start');
    // Rotations get what is left of the grace period, then are aborted (a replacement before
    // its swap rolls back: the old container keeps serving) and awaited.
    if (rotations.size > 0) {
      const left = Math.max(0, graceMs - (Date.now() - closeStarted));
      logger.info({ rotations: rotations.size, graceMs: left }, 'waiting for rotations');
      const settled = Promise.allSettled([...rotations.values()]);
      await Promise.race([settled, sleep(left, new AbortController().signal)]);
      rotationsAbort.abort();
      await settled;
    }
    rotationsAbort.abort();
    clearTimeout(saveTimer);
    await flushState();
    await done.catch(() => {
      // Already reported through `done` to whoever awaits it.
    });
    if (ownCache) await cache.close();
  }

  const agent: Agent = {
    async start() {
      if (started) throw new TypeError('agent already started');
      started = true;
      startedAt = Date.now();
      if (options.statePath !== undefined) {
        const path = options.statePath;
        for (const [id, state] of await loadDeliveredState(path, (problem, error) =>
          logger.warn({ err: error, path, problem }, 'state file ignored: every container is new'),
        )) {
          delivered.set(id, state);
        }
      }
      // Subscribe before listing, from a moment before it, so a container that starts between
      // the two is seen by one or the other (twice is harmless: delivery is idempotent).
      const sinceMs = Date.now() - 1_000;
      done = watch(sinceMs);
      done.catch(() => {
        // The owner awaits `done`; this only keeps the rejection from being reported as unhandled
        // before it does.
      });
      await recoverReplacements();
      await enqueueRunningManaged(stopping.signal, 'startup');
      // The safety net behind the events: every managed container, checked on a timer.
      reconcileTimer = setInterval(() => {
        void enqueueRunningManaged(stopping.signal, 'periodic').catch((error: unknown) => {
          if (stopping.signal.aborted) return;
          logger.warn({ err: error, code: errorCode(error) }, 'could not list managed containers');
        });
      }, reconcileIntervalMs);
      reconcileTimer.unref();
    },
    get done() {
      return done;
    },
    idle: () => queue.idle(),
    status() {
      const queued = queue.stats();
      const cached = cache.stats();
      return {
        startedAt,
        containers: [...statuses.values()].map((status) => structuredClone(status)),
        queue: { depth: queued.depth, inFlight: queued.inFlight, shed: queued.shed },
        cache: {
          entries: cached.entries,
          hits: cached.hits,
          misses: cached.misses,
          staleServed: cached.staleServed,
        },
      };
    },
    async reconcile() {
      if (!started || stopping.signal.aborted) {
        throw new DsoError(
          'DSO_AGENT_NOT_RUNNING',
          'the agent is not running: nothing to reconcile',
        );
      }
      return { containers: await enqueueRunningManaged(stopping.signal, 'api') };
    },
    async rotate(selector = {}) {
      if (!started || stopping.signal.aborted) {
        throw new DsoError('DSO_AGENT_NOT_RUNNING', 'the agent is not running: nothing to rotate');
      }
      const containers = await runtime.listContainers({
        label: `${LABELS.enable}=true`,
        signal: stopping.signal,
      });
      const selected = containers.filter(
        (container) =>
          selector.containerId === undefined ||
          container.id === selector.containerId ||
          (selector.containerId.length >= 12 && container.id.startsWith(selector.containerId)),
      );
      if (selector.containerId !== undefined && selected.length === 0) {
        throw new DsoError(
          'DSO_AGENT_CONTAINER_UNKNOWN',
          `no running managed container has the id ${selector.containerId}: see \`dso status\` for the ids (12 characters at least)`,
          { containerId: selector.containerId },
        );
      }
      // Past the cache: every secret these containers use (not pinned to a version) is asked
      // again, and the answer replaces the cached value (a failure keeps it).
      const secrets = new Map<string, { provider: string; path: string; pinned: boolean }>();
      for (const container of selected) {
        let spec: ManagedSpec | undefined;
        try {
          spec = parseManagedLabels(container.labels);
        } catch {
          continue; // reported by its delivery
        }
        for (const { reference } of [...(spec?.files ?? []), ...(spec?.env ?? [])]) {
          const provider = reference.provider ?? defaultProvider;
          const key = `${provider}:${reference.path}`;
          const pinned = reference.version !== undefined && (secrets.get(key)?.pinned ?? true);
          secrets.set(key, { provider, path: reference.path, pinned });
        }
      }
      await Promise.all(
        [...secrets.values()]
          .filter(({ pinned }) => !pinned)
          .map(({ provider, path }) => refresh(provider, path, stopping.signal)),
      );
      for (const container of selected) queue.add(container.id, 'api');
      logger.info(
        { containers: selected.length, secrets: secrets.size },
        'rotation requested: secrets asked again',
      );
      return { containers: selected.length, secrets: secrets.size };
    },
    async resolveEnvironment(references, options = {}) {
      if (!started || stopping.signal.aborted) {
        throw new DsoError('DSO_AGENT_NOT_RUNNING', 'the agent is not running');
      }
      const signal = options.signal
        ? AbortSignal.any([options.signal, stopping.signal])
        : stopping.signal;
      const values: ResolvedEnvironmentValue[] = [];
      try {
        for (const reference of references) {
          const one = await resolveOne(reference, signal);
          values.push({
            reference: one.formatted,
            provider: one.provider,
            version: one.version,
            value: one.value,
          });
          audit?.record({
            actor: { kind: 'api' },
            action: 'env-resolve',
            reference: one.formatted,
            provider: one.provider,
            version: one.version,
            outcome: 'ok',
            cacheHit: one.cacheHit,
          });
        }
        return values;
      } catch (error) {
        for (const one of values) one.value.dispose();
        const reference = (error as { details?: { reference?: unknown } }).details?.reference;
        if (typeof reference === 'string') {
          audit?.record({
            actor: { kind: 'api' },
            action: 'env-resolve',
            reference,
            provider: providerOf(reference),
            outcome: 'error',
            code:
              errorCode((error as { cause?: unknown }).cause) ?? errorCode(error) ?? 'DSO_ERROR',
          });
        }
        throw error;
      }
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    close() {
      closing ??= shutdown();
      return closing;
    },
    [Symbol.asyncDispose]() {
      return agent.close();
    },
  };
  return agent;
}

/** Whether `key` names a key folder, by the runtime's own rule (`pathOf` refuses any other). */
function isHostKey(dirs: HostSecretDirs, key: string): boolean {
  try {
    dirs.pathOf(key);
    return true;
  } catch {
    return false;
  }
}

// Worth retrying: what may pass on its own (a provider's retryable error, an engine that timed
// out or could not be reached). A missing secret or a bad label waits for the next start.
const RETRYABLE_ENGINE_CODES = new Set([
  'DSO_DOCKER_TIMEOUT',
  'DSO_DOCKER_UNREACHABLE',
  'DSO_DOCKER_ENGINE_ERROR',
  'DSO_DOCKER_TARGET_BUSY',
]);

function isRetryable(error: unknown): boolean {
  for (let current = error, depth = 0; current && depth < 5; depth += 1) {
    const candidate = current as { retryable?: unknown; code?: unknown; cause?: unknown };
    if (candidate.retryable === true) return true;
    if ((candidate as { details?: { retryable?: unknown } }).details?.retryable === true)
      return true;
    if (typeof candidate.code === 'string' && RETRYABLE_ENGINE_CODES.has(candidate.code))
      return true;
    current = candidate.cause;
  }
  return false;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
