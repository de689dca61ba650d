import {
  cacheKey,
  createMemoryCache,
  DsoError,
  errorCode,
  formatReference,
  systemClock,
} from '@dso/core';
import {
  type Agent,
  type AgentOptions,
  type CheckedReference,
  type ContainerStatus,
  DEFAULT_CONCURRENCY,
  DEFAULT_MAX_RECONNECTS,
  DEFAULT_RECONCILE_INTERVAL_MS,
  DEFAULT_RECONNECT_MAX_DELAY_MS,
  DEFAULT_SHUTDOWN_GRACE_MS,
  type ResolvedEnvironmentValue,
} from './agent-types.js';
import { createMissingReporter } from './change-detection/missing.js';
import { createChangeDetector } from './change-detector.js';
import { createConsumption } from './consumption.js';
import { createDeliveredStore } from './delivered-store.js';
import { createDelivery } from './delivery.js';
import { createDeliveryQueue } from './delivery-queue.js';
import { watchEngine } from './engine-watch.js';
import { createHostFolders } from './host-folders.js';
import { createLabelWarnings } from './label-warnings.js';
import { createLiteralReferences } from './literal-references.js';
import { createOutcomes } from './outcomes.js';
import { createReconciler } from './reconciler.js';
import { createAuditSink, createEventBus } from './reporting.js';
import { requestRotation } from './rotate-request.js';
import { createRotations, rotationSettings } from './rotation.js';
import { createSecretResolver, failedReference, failureCode } from './secrets.js';
import {
  createVolumeDriver,
  isVolumeConsumer,
  type VolumeDriver,
} from './volumes/volume-driver.js';

// The agent, as a table of contents. Each concern is a part in its own file, built here with
// the few things it needs:
//   secrets.ts         a secret's value: cache, providers, versions, staleness
//   delivery.ts        one container: inspect, resolve, compare, write, record, hand to rotation
//   delivery-queue.ts  deliveries keyed by container: coalescing, retries, giving up, shedding
//   rotation.ts        what a container does after new versions: policy chain, escalation,
//                      limits, jitter, replacement, recovery of interrupted replacements
//   consumption.ts     who consumes which version: the change detector's baselines
//   change-detector.ts noticing new versions between reconciliations
//   delivered-store.ts what was delivered to each container's run, kept across restarts
//   host-folders.ts    the host path's folders: written, emptied, swept
//   reconciler.ts      every managed container listed and checked, at start and periodically
//   rotate-request.ts  dso rotate: secrets asked again past the cache, their consumers checked
//   engine-watch.ts    the engine's events, routed to the parts above
//   reporting.ts       events for subscribers, and the audit trail that never throws
//   outcomes.ts        what happened to a consumer: status, events and audit, alike for all
//   volumes/           the volume driver: DSO volumes, a folder per mount written before the
//                      container starts, rewritten when versions change (queue keys volume:<id>)
export {
  type Agent,
  type AgentEvent,
  type AgentOptions,
  type AgentStatus,
  type CheckedReference,
  type ContainerStatus,
  DEFAULT_CONCURRENCY,
  DEFAULT_MAX_RECONNECTS,
  DEFAULT_RECONCILE_INTERVAL_MS,
  DEFAULT_RECONNECT_MAX_DELAY_MS,
  DEFAULT_SHUTDOWN_GRACE_MS,
  type DeliveredFile,
  type DeliveryTrigger,
  type ResolvedEnvironmentValue,
  type RotationOptions,
} from './agent-types.js';

/**
 * The most stopped containers status keeps (each until it is removed); past it, the ones whose
 * last action is oldest are dropped. Every entry is a few hundred bytes.
 */
export const MAX_STOPPED_STATUSES = 1_000;

/**
 * The agent: watches the engine's container events and, for every running container that
 * carries `dso.enable=true` and `dso.file.*` labels, writes those secrets as files into the
 * container's tmpfs (or its host folder), and rotates them when their versions change.
 *
 * @example
 * const agent = createAgent({ runtime, providers: new Map([['local', provider]]), logger, redactor });
 * await agent.start();
 * process.on('SIGTERM', () => agent.close());
 * await agent.done;
 */
export function createAgent(options: AgentOptions): Agent {
  const { runtime, providers, logger, redactor, metrics, health } = options;
  const clock = options.clock ?? systemClock;
  const ownCache = options.cache === undefined;
  const cache = options.cache ?? createMemoryCache();
  const defaultProvider = options.defaultProvider ?? 'local';
  const graceMs = options.shutdownGraceMs ?? DEFAULT_SHUTDOWN_GRACE_MS;
  const stopping = new AbortController();
  /** The last action per consumer, for status(): references and versions, never values. */
  const statuses = new Map<string, ContainerStatus>();
  const bus = createEventBus((id) => statuses.get(id));
  const audit = createAuditSink(options.audit, logger);

  const secrets = createSecretResolver({
    providers,
    defaultProvider,
    cache,
    redactor,
    logger,
    metrics,
    clock,
    maxStalenessMs: options.maxStalenessMs ?? new Map(),
  });
  const outcomes = createOutcomes({
    statuses,
    bus,
    audit,
    providerOf: (reference) => secrets.providerOf(reference),
    clock,
  });
  const store = createDeliveredStore({ statePath: options.statePath, clock, logger });
  const hostFolders = createHostFolders({
    hostDirs: options.hostDirs,
    runtime,
    logger,
    minAgeMs: options.hostFolderMinAgeMs ?? 60_000,
  });
  const detector =
    options.changeDetection === undefined
      ? undefined
      : createChangeDetector({
          providers,
          logger,
          redactor,
          clock,
          ...(metrics === undefined ? {} : { metrics }),
          pollIntervalMs: options.changeDetection.pollIntervalMs,
          ...(options.changeDetection.pollIntervalByProvider === undefined
            ? {}
            : { pollIntervalByProvider: options.changeDetection.pollIntervalByProvider }),
          onChange: (change) => {
            metrics?.changeDetected(change.source);
            // The cached value first, so the deliveries that follow ask the provider.
            void secrets.refresh(change.provider, change.path, stopping.signal).then(() => {
              if (stopping.signal.aborted) return;
              const consumers = consumption.consumersOf(change.provider, change.path);
              for (const id of consumers) queue.add(id, 'changed');
              logger.info(
                {
                  reference: `${change.provider}:${change.path}`,
                  version: change.version,
                  source: change.source,
                  containers: consumers.length,
                },
                'new secret version detected',
              );
            });
          },
          onMissing: (missing) => reportMissing(missing),
        });
  if (detector !== undefined) metrics?.trackChangeDetector(() => detector.stats());
  const consumption = createConsumption({ detector, clock, logger });
  const reportMissing = createMissingReporter({
    statuses,
    consumersOf: (provider, path) => consumption.consumersOf(provider, path),
    forgetCached: (provider, path) => {
      cache.delete(cacheKey(provider, path)).catch((error: unknown) => {
        logger.warn({ err: error, code: errorCode(error) }, 'could not drop a cached value');
      });
    },
    bus,
    audit,
    logger,
    clock,
  });

  /** A container is gone (or replaced): nothing the agent knew of it stays. */
  function forget(containerId: string): void {
    store.delete(containerId);
    secrets.letGo(containerId);
    consumption.record(containerId, undefined);
    statuses.delete(containerId);
    rotations.forget(containerId);
  }

  const rotation = rotationSettings(options.rotation);
  const rotations = createRotations({
    runtime,
    secrets,
    store,
    settings: rotation,
    requestDelivery: (containerId) => queue.add(containerId, 'started'),
    requestCheck: (containerId) => queue.add(containerId, 'changed'),
    statuses,
    onReplaced: forget,
    logger,
    audit,
    bus,
    metrics,
    clock,
  });
  const labelWarnings = createLabelWarnings({ statuses, bus, audit, logger, clock });
  const deliver = createDelivery({
    runtime,
    secrets,
    hostFolders,
    store,
    consumption,
    rotations,
    outcomes,
    onDelivered: (containerId) => deliveries.forgetFailures(containerId),
    logger,
    metrics,
    labelWarnings,
    defaultRotation: `${rotation.defaultPolicy}${rotation.defaultPolicy === 'signal' ? ` ${rotation.signal}` : ''}${rotation.escalateTo === undefined ? '' : `, escalates to ${rotation.escalateTo}`} (the agent's default: rotation in dso.yaml)`,
  });
  const volumeDriver: VolumeDriver | undefined =
    options.volumes === undefined
      ? undefined
      : createVolumeDriver({
          driverName: options.volumes.driverName,
          folders: options.volumes.folders,
          registry: { volumes: new Map(), mounts: new Map() },
          statePath: options.volumes.statePath,
          mountTimeoutMs: options.volumes.mountTimeoutMs,
          secrets,
          consumption,
          rotations,
          runtime,
          statuses,
          outcomes,
          redactor,
          logger,
          metrics,
          clock,
          stopping: stopping.signal,
        });
  // Containers started with dso:// text in their environment (a plain compose up): told loudly.
  const literal = createLiteralReferences({ runtime, statuses, bus, audit, logger, clock });
  const deliveries = createDeliveryQueue({
    // One queue for both kinds of consumer: containers by id, volume mounts by `volume:<id>`.
    deliver: (id, trigger, signal, attempt, outside) =>
      volumeDriver !== undefined && isVolumeConsumer(id)
        ? volumeDriver.deliver(id, trigger, signal, attempt, outside)
        : deliver(id, trigger, signal, attempt, outside),
    concurrency: options.concurrency ?? DEFAULT_CONCURRENCY,
    maxSize: options.queueMaxSize,
    retry: options.retry,
    clock,
    logger,
    stopping: stopping.signal,
  });
  const queue = deliveries.queue;
  metrics?.trackQueue(() => queue.stats());
  metrics?.trackCache(() => cache.stats());

  const reconciler = createReconciler({
    runtime,
    enqueue: (containerId, trigger) => queue.add(containerId, trigger),
    prune: (running, existing, signal) => {
      // Forget what was delivered to containers that stopped or are gone (a destroy event may
      // be lost): a new run starts with an empty tmpfs.
      for (const id of store.ids()) {
        if (running.has(id)) continue;
        store.delete(id);
        consumption.record(id, undefined);
      }
      // Status keeps a stopped container, in its state (`exited`), until it is removed.
      const stopped: ContainerStatus[] = [];
      for (const [id, status] of statuses) {
        if (isVolumeConsumer(id) || literal.reported(id) || labelWarnings.isUnmanaged(id)) continue;
        const state = existing.get(id);
        if (state === undefined) {
          statuses.delete(id);
        } else if (!running.has(id)) {
          if (status.state !== state) outcomes.stateChanged(id, state);
          stopped.push(status);
        }
      }
      // Bounded: past MAX_STOPPED_STATUSES stopped containers, the ones idle longest go.
      stopped.sort((a, b) => a.lastAction.at - b.lastAction.at);
      for (const status of stopped.slice(0, Math.max(0, stopped.length - MAX_STOPPED_STATUSES))) {
        statuses.delete(status.id);
      }
      void hostFolders.sweep(signal);
      void volumeDriver?.sweep();
    },
    moreConsumers: () => volumeDriver?.consumers() ?? [],
    unmanaged: (id, name, labels) => {
      labelWarnings.unmanaged(id, name, labels);
    },
    intervalMs: options.reconcileIntervalMs ?? DEFAULT_RECONCILE_INTERVAL_MS,
    clock,
    logger,
    metrics,
    health,
  });

  let done: Promise<void> = Promise.resolve();
  let started = false;
  let startedAt: number | undefined;
  let closing: Promise<void> | undefined;

  function assertRunning(what: string): void {
    if (!started || stopping.signal.aborted) {
      throw new DsoError('DSO_AGENT_NOT_RUNNING', `the agent is not running${what}`);
    }
  }

  async function shutdown(): Promise<void> {
    const { inFlight, depth } = queue.stats();
    logger.info({ graceMs, inFlight, waiting: depth }, 'agent stopping');
    health?.stopping();
    stopping.abort(); // no more events, listing or periodic reconciliation
    consumption.close();
    await detector?.close();
    // Deliveries in flight get the grace period, then the queue aborts their signal and waits
    // for them to unwind, so nothing runs on after the owner closes the runtime and providers.
    const closeStarted = clock.now();
    const undone = await queue.close({ graceMs });
    if (undone.length > 0) {
      logger.info({ containers: undone.length }, 'deliveries left for the next start');
    }
    // Rotations get what is left of the grace period, then are aborted and awaited.
    await rotations.close(Math.max(0, graceMs - (clock.now() - closeStarted)));
    await store.flush();
    await done.catch(() => {
      // Already reported through `done` to whoever awaits it.
    });
    if (ownCache) await cache.close();
  }

  const agent: Agent = {
    async start() {
      if (started) throw new TypeError('agent already started');
      started = true;
      startedAt = Math.floor(clock.now());
      await store.load();
      // Subscribe before listing, from a moment before it, so a container that starts between
      // the two is seen by one or the other (twice is harmless: delivery is idempotent). The
      // engine's `since` is wall-clock time.
      const sinceMs = Date.now() - 1_000;
      done = watchEngine(
        {
          runtime,
          handlers: {
            started: (id) => queue.add(id, 'started'),
            // Started without dso.enable=true: reported when it carries DSO labels (a typo).
            unmanagedStarted: (id, name, labels) => {
              labelWarnings.unmanaged(id, name, labels);
            },
            // A container binding a host path folder's owner's folder: the owner's next
            // delivery, now, judges it (refused when that container can write the folder).
            anyStarted: (id) => {
              void literal.check(id, stopping.signal);
              void hostFolders
                .ownersReachedBy(id, stopping.signal)
                .then((owners) => {
                  for (const owner of owners) queue.add(owner, 'resync');
                })
                .catch(() => {
                  // Never rejects (it logs its own failures); the next reconciliation judges.
                });
            },
            died: (id) => {
              hostFolders.clear(id, false);
              outcomes.stateChanged(id, 'exited');
            },
            destroyed: (id) => {
              hostFolders.clear(id, true);
              literal.forget(id);
              labelWarnings.forget(id);
              forget(id);
              deliveries.forgetFailures(id);
            },
            resync: () => {
              void reconciler.reconcile('resync', stopping.signal).catch((error: unknown) => {
                logger.warn(
                  { err: error, code: errorCode(error) },
                  'could not list managed containers',
                );
              });
            },
          },
          reconnect: {
            maxAttempts: options.maxReconnects ?? DEFAULT_MAX_RECONNECTS,
            baseDelayMs: options.reconnectBaseDelayMs ?? 500,
            maxDelayMs: options.reconnectMaxDelayMs ?? DEFAULT_RECONNECT_MAX_DELAY_MS,
          },
          logger,
          metrics,
          health,
        },
        sinceMs,
        stopping.signal,
      );
      done.catch(() => {
        // The owner awaits `done`; this only keeps the rejection from being reported as
        // unhandled before it does.
      });
      await rotations.recoverInterrupted(stopping.signal);
      await volumeDriver?.recover();
      await reconciler.reconcile('startup', stopping.signal);
      reconciler.startPeriodic(stopping.signal);
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
        ...(volumeDriver === undefined ? {} : { volumeDriver: volumeDriver.driverName }),
      };
    },
    async reconcile() {
      assertRunning(': nothing to reconcile');
      return { containers: await reconciler.reconcile('api', stopping.signal) };
    },
    async rotate(selector = {}) {
      assertRunning(': nothing to rotate');
      return requestRotation(
        { runtime, secrets, volumeDriver, defaultProvider, queue, logger, signal: stopping.signal },
        selector,
      );
    },
    async resolveEnvironment(references, resolveOptions = {}) {
      assertRunning('');
      const signal = resolveOptions.signal
        ? AbortSignal.any([resolveOptions.signal, stopping.signal])
        : stopping.signal;
      const values: ResolvedEnvironmentValue[] = [];
      try {
        for (const reference of references) {
          const one = await secrets.resolve(reference, signal);
          values.push({
            reference: one.formatted,
            provider: one.provider,
            version: one.version,
            value: one.value,
          });
          audit.record({
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
        const reference = failedReference(error);
        if (reference !== undefined) {
          audit.record({
            actor: { kind: 'api' },
            action: 'env-resolve',
            reference,
            provider: secrets.providerOf(reference),
            outcome: 'error',
            code: failureCode(error),
          });
        }
        throw error;
      }
    },
    async checkReferences(references, checkOptions = {}) {
      assertRunning('');
      const signal = checkOptions.signal
        ? AbortSignal.any([checkOptions.signal, stopping.signal])
        : stopping.signal;
      const checked: CheckedReference[] = [];
      for (const reference of references) {
        try {
          const one = await secrets.resolve(reference, signal);
          one.value.dispose();
          checked.push({ reference: one.formatted, provider: one.provider, version: one.version });
        } catch (error) {
          if (signal.aborted) throw error;
          const formatted = formatReference(reference);
          checked.push({
            reference: formatted,
            provider: secrets.providerOf(formatted),
            code: failureCode(error),
            // Provider and agent messages name references and ids, never a value.
            error: error instanceof Error ? error.message : String(error),
          });
        }
      }
      return checked;
    },
    subscribe: (listener) => bus.subscribe(listener),
    volumeDriver,
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
