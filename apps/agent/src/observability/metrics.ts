import {
  defineCounter,
  defineGauge,
  defineHistogram,
  errorCode,
  type MetricsRegistry,
  ROTATION_POLICIES,
  type RotationPolicy,
} from '@dso/core';
import { PROVIDER_ERROR_CODES } from '@dso/provider-sdk';
import {
  advance,
  type Baseline,
  bindAll,
  type Inc,
  lazy,
  newBaseline,
  type Observe,
  observe,
  onCollect,
  type Settable,
  sample,
  zeroed,
} from './metric-children.js';
import {
  AGENT_EVENT_TYPES,
  type AgentEventType,
  BREAKER_STATES,
  type BreakerState,
  type CacheSample,
  CHANGE_SOURCES,
  type ChangeDetectorSample,
  type ChangeSource,
  CONNECTION_CLOSE_REASONS,
  HTTP_SERVERS,
  type HttpConnectionSample,
  type HttpServerName,
  INJECTION_METHODS,
  type InjectionMethod,
  LONG_DURATION_BUCKETS_MS,
  MAX_PROVIDER_LABELS,
  OTHER_LABEL_VALUE,
  OUTCOMES,
  type Outcome,
  PROVIDER_OPERATIONS,
  type ProviderOperation,
  type QueueSample,
  RECONCILE_TRIGGERS,
  type ReconcileTrigger,
  ROTATION_OUTCOMES,
  type RotationOutcome,
} from './metric-names.js';

// The config schema's rule for a provider's name: anything else is not a configured name.
const PROVIDER_NAME = /^[a-z][a-z0-9-]{0,62}$/;

const PROVIDER_ERROR_LABELS: readonly string[] = [...PROVIDER_ERROR_CODES, OTHER_LABEL_VALUE];

/** Options of {@link createAgentMetrics}. */
export interface AgentMetricsOptions {
  /**
   * The configured providers' names. When given, only these get series of their own (any other
   * name is counted as `other`) and their breakers start out `closed`. Without it, any name
   * that follows the config's rule for provider names does, up to {@link MAX_PROVIDER_LABELS}.
   */
  providers?: Iterable<string>;
}

/**
 * The agent's instruments, as methods that take only fixed label values (a provider name is a
 * configured name, checked). Per-event calls allocate nothing of their own: every label
 * combination's child is bound once, up front or at a provider's first call.
 */
export interface AgentMetrics {
  /** One item read from the engine's events stream (`container.*` or `resync`). */
  eventReceived(type: AgentEventType): void;
  /** One attempt to reconnect the events stream (call it from `onReconnecting`). */
  eventsReconnecting(): void;
  /**
   * Reads the queue's `stats()` at each scrape: depth, in flight, and the shed, retried and
   * given-up counts since. Replaces any earlier source.
   */
  trackQueue(stats: () => QueueSample): void;
  /**
   * Reads the cache's `stats()` at each scrape: hits, misses, evictions (`capacity` or
   * `expired`), stale values served, entries and bytes. Replaces any earlier source.
   */
  trackCache(stats: () => CacheSample): void;
  /** One container's file set written (or not), and how long it took. */
  injection(method: InjectionMethod, outcome: Outcome, durationMs: number): void;
  /**
   * One call to a provider and how long it took; with `error`, a failure counted under its
   * provider code (`DSO_PROVIDER_*`, anything else `other`).
   */
  providerCall(
    provider: string,
    operation: ProviderOperation,
    durationMs: number,
    error?: unknown,
  ): void;
  /** The state a provider's circuit breaker is now in. */
  breakerState(provider: string, state: BreakerState): void;
  /** One container rotated under `policy`, and how long it took. */
  rotation(policy: RotationPolicy, outcome: RotationOutcome, durationMs: number): void;
  /** A new version of a secret in use was noticed, and how. */
  changeDetected(source: ChangeSource): void;
  /** Reads the change detector's `stats()` at each scrape: secrets watched, probed, polled. */
  trackChangeDetector(stats: () => ChangeDetectorSample): void;
  /** One reconciliation of every managed container, and how long it took. */
  reconciliation(trigger: ReconcileTrigger, outcome: Outcome, durationMs: number): void;
  /** How many running containers the agent manages now (the last reconciliation's count). */
  managedContainers(count: number): void;
  /**
   * Reads a server's `connectionStats()` at each scrape: connections closed idle for a new one,
   * cut at the headers deadline, answered busy. Replaces any earlier source of that server.
   */
  trackHttpServer(server: HttpServerName, stats: () => HttpConnectionSample): void;
  /** Whether a core dump of the agent is possible (see `protectFromCoreDumps`): 1, else 0. */
  dumpable(possible: boolean): void;
}

interface ProviderSeries {
  calls: Readonly<Record<ProviderOperation, Readonly<Record<Outcome, Inc>>>>;
  durations: Readonly<Record<ProviderOperation, Observe>>;
  errors: Readonly<Record<string, Inc>>;
  breakers: Readonly<Record<BreakerState, Settable>>;
}
interface InjectionChild {
  count: Inc;
  duration: Observe;
}
interface RotationChild {
  outcomes: Readonly<Record<RotationOutcome, Inc>>;
  duration: Observe;
}
interface ReconcileChild {
  outcomes: Readonly<Record<Outcome, Inc>>;
  duration: Observe;
}

/**
 * Defines the agent's metrics on `registry` (see {@link AGENT_METRIC_NAMES}) and returns the
 * methods that record them. Calling it twice on one registry records into the same series
 * (the queue and cache sources read at a scrape are then the latest instance's).
 *
 * Labels are fixed sets (`type`, `method`, `outcome`, `operation`, `code`, `state`, `policy`,
 * `trigger`, `reason`) plus `provider`, a configured provider's name; a value outside its set
 * is recorded as `other`. Nothing here takes a path, a reference, a value, or a container.
 *
 * @example
 * const registry = createMetricsRegistry({ redactor });
 * collectProcessMetrics(registry);
 * const metrics = createAgentMetrics(registry, { providers: providers.keys() });
 * metrics.trackQueue(() => queue.stats());
 * metrics.providerCall('vault', 'resolve', 12.5);
 * @throws TypeError when another metric of one of these names is already on `registry`
 */
export function createAgentMetrics(
  registry: MetricsRegistry,
  options: AgentMetricsOptions = {},
): AgentMetrics {
  const eventsReceived = defineCounter(registry, {
    name: 'dso_events_received_total',
    help: 'Items read from the engine events stream, by type (container.* events and resync).',
    labelNames: ['type'],
  });
  const eventsReconnects = defineCounter(registry, {
    name: 'dso_events_reconnects_total',
    help: 'Attempts to reconnect the engine events stream.',
  });
  const queueDepth = defineGauge(registry, {
    name: 'dso_queue_depth_items',
    help: 'Containers waiting in the delivery queue, retries included.',
  });
  const queueInFlight = defineGauge(registry, {
    name: 'dso_queue_inflight_items',
    help: 'Containers whose delivery is running.',
  });
  const queueShed = defineCounter(registry, {
    name: 'dso_queue_shed_total',
    help: 'Containers dropped from a full queue (each is reconciled later).',
  });
  const queueRetries = defineCounter(registry, {
    name: 'dso_queue_retries_total',
    help: 'Failed deliveries scheduled to be tried again.',
  });
  const queueFailures = defineCounter(registry, {
    name: 'dso_queue_failures_total',
    help: 'Deliveries given up after their last attempt.',
  });
  const injections = defineCounter(registry, {
    name: 'dso_injection_writes_total',
    help: 'File sets written into containers, by method (exec or host) and outcome.',
    labelNames: ['method', 'outcome'],
  });
  const injectionDuration = defineHistogram(registry, {
    name: 'dso_injection_duration_ms',
    help: 'Time to write one container file set, in milliseconds, by method and outcome.',
    labelNames: ['method', 'outcome'],
  });
  const providerCalls = defineCounter(registry, {
    name: 'dso_provider_calls_total',
    help: 'Calls to providers, by provider, operation and outcome.',
    labelNames: ['provider', 'operation', 'outcome'],
  });
  const providerErrors = defineCounter(registry, {
    name: 'dso_provider_errors_total',
    help: 'Failed provider calls, by provider and error code.',
    labelNames: ['provider', 'code'],
  });
  const providerDuration = defineHistogram(registry, {
    name: 'dso_provider_call_duration_ms',
    help: 'Time of one provider call, in milliseconds, by provider and operation.',
    labelNames: ['provider', 'operation'],
  });
  const providerBreakers = defineGauge(registry, {
    name: 'dso_provider_breakers_items',
    help: "A provider's circuit breaker: 1 for the state it is in (closed, half_open, open), 0 for the others.",
    labelNames: ['provider', 'state'],
  });
  const cacheHits = defineCounter(registry, {
    name: 'dso_cache_hits_total',
    help: 'Cache lookups answered by a fresh entry.',
  });
  const cacheMisses = defineCounter(registry, {
    name: 'dso_cache_misses_total',
    help: 'Cache lookups that found no fresh entry.',
  });
  const cacheEvictions = defineCounter(registry, {
    name: 'dso_cache_evictions_total',
    help: 'Cache entries removed, by reason: capacity (to respect the bounds) or expired.',
    labelNames: ['reason'],
  });
  const cacheStale = defineCounter(registry, {
    name: 'dso_cache_stale_served_total',
    help: 'Lookups answered by a stale entry because the provider failed.',
  });
  const cacheEntries = defineGauge(registry, {
    name: 'dso_cache_entries_items',
    help: 'Entries in the cache.',
  });
  const cacheBytes = defineGauge(registry, {
    name: 'dso_cache_size_bytes',
    help: 'Bytes held by the cache.',
  });
  const rotations = defineCounter(registry, {
    name: 'dso_rotation_runs_total',
    help: 'Containers rotated, by policy and outcome.',
    labelNames: ['policy', 'outcome'],
  });
  const rotationDuration = defineHistogram(registry, {
    name: 'dso_rotation_duration_ms',
    help: 'Time to rotate one container, in milliseconds, by policy.',
    labelNames: ['policy'],
    buckets: LONG_DURATION_BUCKETS_MS,
  });
  const changesDetected = defineCounter(registry, {
    name: 'dso_rotation_changes_detected_total',
    help: 'New versions of secrets in use noticed between reconciliations, by how: watch, probe or poll.',
    labelNames: ['source'],
  });
  const tracked = defineGauge(registry, {
    name: 'dso_rotation_tracked_items',
    help: 'Secrets in use checked for new versions, by mode: watched, probed, polled.',
    labelNames: ['mode'],
  });
  const reconciles = defineCounter(registry, {
    name: 'dso_reconcile_runs_total',
    help: 'Reconciliations of every managed container, by trigger and outcome.',
    labelNames: ['trigger', 'outcome'],
  });
  const reconcileDuration = defineHistogram(registry, {
    name: 'dso_reconcile_duration_ms',
    help: 'Time of one reconciliation, in milliseconds, by trigger.',
    labelNames: ['trigger'],
    buckets: LONG_DURATION_BUCKETS_MS,
  });
  const managed = defineGauge(registry, {
    name: 'dso_containers_managed_items',
    help: 'Running containers the agent manages.',
  });
  const connectionsClosed = defineCounter(registry, {
    name: 'dso_http_connections_closed_total',
    help: 'Connections the API or observability server cut short, by reason: evicted (idle, closed for a new one at the cap), headers_timeout (no request headers in time from its opening), busy (answered 503, every connection in use).',
    labelNames: ['server', 'reason'],
  });
  const dumpable = defineGauge(registry, {
    name: 'dso_agent_dumpable_items',
    help: '1 when a core dump of the agent is possible (it could not make itself non-dumpable and the core size limit is not 0), else 0.',
  });

  // Children bound once. Counters start at 0 so that rate() sees the first increment.
  const eventChildren = bindAll(AGENT_EVENT_TYPES, (type) => zeroed(eventsReceived.labels(type)));
  const eventOther = lazy(() => eventsReceived.labels(OTHER_LABEL_VALUE));
  const injectionChildren = bindAll(INJECTION_METHODS, (method) =>
    bindAll(OUTCOMES, (outcome) => ({
      count: zeroed(injections.labels(method, outcome)),
      duration: injectionDuration.labels(method, outcome),
    })),
  );
  const rotationChildren = bindAll(ROTATION_POLICIES, (policy) => ({
    outcomes: bindAll(ROTATION_OUTCOMES, (outcome) => zeroed(rotations.labels(policy, outcome))),
    duration: rotationDuration.labels(policy),
  }));
  const reconcileChildren = bindAll(RECONCILE_TRIGGERS, (trigger) => ({
    outcomes: bindAll(OUTCOMES, (outcome) => zeroed(reconciles.labels(trigger, outcome))),
    duration: reconcileDuration.labels(trigger),
  }));
  const changeChildren = bindAll(CHANGE_SOURCES, (source) =>
    zeroed(changesDetected.labels(source)),
  );
  let detectorSource: (() => ChangeDetectorSample) | undefined;
  onCollect(tracked, () => {
    const stats = sample(detectorSource);
    if (!stats) return;
    tracked.labels('watched').set(stats.watched);
    tracked.labels('probed').set(stats.probed);
    tracked.labels('polled').set(stats.polled);
  });
  const evictedCapacity = cacheEvictions.labels('capacity');
  const evictedExpired = cacheEvictions.labels('expired');

  const configured =
    options.providers === undefined ? undefined : new Set<string>(options.providers);
  const providerSeries = new Map<string, ProviderSeries>();
  const bindProvider = (provider: string): ProviderSeries => ({
    calls: bindAll(PROVIDER_OPERATIONS, (operation) =>
      bindAll(OUTCOMES, (outcome) => providerCalls.labels(provider, operation, outcome)),
    ),
    durations: bindAll(PROVIDER_OPERATIONS, (operation) =>
      providerDuration.labels(provider, operation),
    ),
    errors: bindAll(PROVIDER_ERROR_LABELS, (code) => providerErrors.labels(provider, code)),
    breakers: bindAll(BREAKER_STATES, (state) => providerBreakers.labels(provider, state)),
  });
  const otherProvider = lazy(() => bindProvider(OTHER_LABEL_VALUE));
  const accepts = (provider: string): boolean =>
    typeof provider === 'string' &&
    PROVIDER_NAME.test(provider) &&
    (configured !== undefined
      ? configured.has(provider)
      : providerSeries.size < MAX_PROVIDER_LABELS);
  /** The series of a provider name, or `other`'s when it is no configured name. */
  const seriesOf = (provider: string): ProviderSeries => {
    const known = providerSeries.get(provider);
    if (known) return known;
    // Names that fall back to `other` are not remembered, so the map stays bounded.
    if (!accepts(provider)) return otherProvider();
    const series = bindProvider(provider);
    providerSeries.set(provider, series);
    return series;
  };
  const setBreaker = (series: ProviderSeries, state: BreakerState) => {
    for (const candidate of BREAKER_STATES)
      series.breakers[candidate].set(candidate === state ? 1 : 0);
  };
  if (configured !== undefined) {
    for (const provider of configured) {
      if (accepts(provider)) setBreaker(seriesOf(provider), 'closed');
    }
  }

  // Sampled at scrape time: nothing runs per queue operation or cache lookup.
  let queueSource: (() => QueueSample) | undefined;
  let cacheSource: (() => CacheSample) | undefined;
  let queueSeen = newBaseline<'shed' | 'retried' | 'failed'>();
  let cacheSeen = newBaseline<'hits' | 'misses' | 'evictions' | 'expirations' | 'staleServed'>();
  const sampleQueue = (): QueueSample | undefined => sample(queueSource);
  const sampleCache = (): CacheSample | undefined => sample(cacheSource);
  onCollect(queueDepth, () => {
    const stats = sampleQueue();
    if (stats) queueDepth.set(stats.depth);
  });
  onCollect(queueInFlight, () => {
    const stats = sampleQueue();
    if (stats) queueInFlight.set(stats.inFlight);
  });
  onCollect(queueShed, () => advance(queueShed, queueSeen, 'shed', sampleQueue()));
  onCollect(queueRetries, () => advance(queueRetries, queueSeen, 'retried', sampleQueue()));
  onCollect(queueFailures, () => advance(queueFailures, queueSeen, 'failed', sampleQueue()));
  onCollect(cacheHits, () => advance(cacheHits, cacheSeen, 'hits', sampleCache()));
  onCollect(cacheMisses, () => advance(cacheMisses, cacheSeen, 'misses', sampleCache()));
  onCollect(cacheStale, () => advance(cacheStale, cacheSeen, 'staleServed', sampleCache()));
  onCollect(cacheEvictions, () => {
    const stats = sampleCache();
    advance(evictedCapacity, cacheSeen, 'evictions', stats);
    advance(evictedExpired, cacheSeen, 'expirations', stats);
  });
  onCollect(cacheEntries, () => {
    const stats = sampleCache();
    if (stats) cacheEntries.set(stats.entries);
  });
  onCollect(cacheBytes, () => {
    const stats = sampleCache();
    if (stats) cacheBytes.set(stats.bytes);
  });

  // Per server: its source and what it reported at the last scrape.
  const httpSources = new Map<
    HttpServerName,
    {
      stats: () => HttpConnectionSample;
      seen: Baseline<keyof HttpConnectionSample>;
      children: Readonly<Record<(typeof CONNECTION_CLOSE_REASONS)[number], Inc>>;
    }
  >();
  onCollect(connectionsClosed, () => {
    for (const { stats, seen, children } of httpSources.values()) {
      const sampled = sample(stats);
      advance(children.evicted, seen, 'evicted', sampled);
      advance(children.headers_timeout, seen, 'headersTimedOut', sampled);
      advance(children.busy, seen, 'busy', sampled);
    }
  });

  return {
    trackHttpServer(server, stats) {
      if (!HTTP_SERVERS.includes(server)) return;
      httpSources.set(server, {
        stats,
        seen: newBaseline(),
        children: bindAll(CONNECTION_CLOSE_REASONS, (reason) =>
          zeroed(connectionsClosed.labels(server, reason)),
        ),
      });
    },
    dumpable(possible) {
      dumpable.set(possible ? 1 : 0);
    },
    eventReceived(type) {
      // Typed callers pass a known type; an untyped one's foreign value is counted as `other`.
      const child: Inc | undefined = eventChildren[type];
      (child ?? eventOther()).inc();
    },
    eventsReconnecting() {
      eventsReconnects.inc();
    },
    changeDetected(source) {
      const child: Inc | undefined = changeChildren[source];
      child?.inc();
    },
    trackChangeDetector(stats) {
      detectorSource = stats;
    },
    trackQueue(stats) {
      queueSource = stats;
      queueSeen = newBaseline();
    },
    trackCache(stats) {
      cacheSource = stats;
      cacheSeen = newBaseline();
    },
    injection(method, outcome, durationMs) {
      const byOutcome: Readonly<Record<Outcome, InjectionChild>> | undefined =
        injectionChildren[method];
      const child: InjectionChild | undefined = byOutcome?.[outcome];
      if (!child) return;
      child.count.inc();
      observe(child.duration, durationMs);
    },
    providerCall(provider, operation, durationMs, error) {
      const series = seriesOf(provider);
      const outcome: Outcome = error === undefined ? 'ok' : 'error';
      const calls: Readonly<Record<Outcome, Inc>> | undefined = series.calls[operation];
      if (!calls) return;
      calls[outcome].inc();
      observe(series.durations[operation], durationMs);
      if (error !== undefined) {
        const code = errorCode(error);
        (series.errors[code ?? OTHER_LABEL_VALUE] ?? series.errors[OTHER_LABEL_VALUE]!).inc();
      }
    },
    breakerState(provider, state) {
      const series = seriesOf(provider);
      if (!BREAKER_STATES.includes(state)) return;
      setBreaker(series, state);
    },
    rotation(policy, outcome, durationMs) {
      const child: RotationChild | undefined = rotationChildren[policy];
      const count: Inc | undefined = child?.outcomes[outcome];
      if (!child || !count) return;
      count.inc();
      observe(child.duration, durationMs);
    },
    reconciliation(trigger, outcome, durationMs) {
      const child: ReconcileChild | undefined = reconcileChildren[trigger];
      const count: Inc | undefined = child?.outcomes[outcome];
      if (!child || !count) return;
      count.inc();
      observe(child.duration, durationMs);
    },
    managedContainers(count) {
      if (Number.isFinite(count) && count >= 0) managed.set(count);
    },
  };
}
