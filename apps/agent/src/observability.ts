import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlockList, isIP } from 'node:net';
import {
  type CacheStats,
  type Clock,
  DsoError,
  defineCounter,
  defineGauge,
  defineHistogram,
  type EventQueueStats,
  errorCode,
  type Logger,
  type MetricsRegistry,
  type Redactor,
  ROTATION_POLICIES,
  type RotationPolicy,
  systemClock,
} from '@dso/core';
import type { RuntimeEvent } from '@dso/docker-runtime';
import { PROVIDER_ERROR_CODES } from '@dso/provider-sdk';

// ---------------------------------------------------------------------------------------------
// Label values: small fixed sets, so no call can put a path, a value, a reference or a
// container's name or id into a label.
// ---------------------------------------------------------------------------------------------

/** The items of the engine's events stream, counted by `dso_events_received_total{type}`. */
export const AGENT_EVENT_TYPES = [
  'container.created',
  'container.started',
  'container.died',
  'container.destroyed',
  'container.renamed',
  'container.health',
  'resync',
] as const satisfies readonly RuntimeEvent['type'][];

/** One of {@link AGENT_EVENT_TYPES}. */
export type AgentEventType = (typeof AGENT_EVENT_TYPES)[number];

// Fails to compile when the runtime gains an event type this list lacks.
const _everyEventType: Exclude<RuntimeEvent['type'], AgentEventType> extends never ? true : never =
  true;
void _everyEventType;

/** `ok` when the work succeeded, `error` when it failed (the reason goes to the log). */
export const OUTCOMES = ['ok', 'error'] as const;
/** One of {@link OUTCOMES}. */
export type Outcome = (typeof OUTCOMES)[number];

/**
 * How a container's files were written: `exec` (one `docker exec` with a tar stream on its
 * stdin) or `host` (a host tmpfs directory bind-mounted into the container).
 */
export const INJECTION_METHODS = ['exec', 'host'] as const;
/** One of {@link INJECTION_METHODS}. */
export type InjectionMethod = (typeof INJECTION_METHODS)[number];

/** The provider operations timed by `dso_provider_call_duration_ms{provider,operation}`. */
export const PROVIDER_OPERATIONS = ['resolve', 'probe', 'list', 'watch', 'health'] as const;
/** One of {@link PROVIDER_OPERATIONS}. */
export type ProviderOperation = (typeof PROVIDER_OPERATIONS)[number];

/** A provider's circuit breaker: `closed` (calls pass), `half_open` (one trial call), `open`. */
export const BREAKER_STATES = ['closed', 'half_open', 'open'] as const;
/** One of {@link BREAKER_STATES}. */
export type BreakerState = (typeof BREAKER_STATES)[number];

/** How a rotation of one container ended: `rolled_back` when a replacement failed its check. */
export const ROTATION_OUTCOMES = ['ok', 'error', 'rolled_back'] as const;
/** One of {@link ROTATION_OUTCOMES}. */
export type RotationOutcome = (typeof ROTATION_OUTCOMES)[number];

/** What started a reconciliation of every managed container. */
export const RECONCILE_TRIGGERS = ['startup', 'periodic', 'resync', 'api'] as const;
/** One of {@link RECONCILE_TRIGGERS}. */
export type ReconcileTrigger = (typeof RECONCILE_TRIGGERS)[number];

/**
 * The label value that stands for anything outside a label's fixed set (an unknown provider
 * name, an error code no provider contract defines, a value an untyped caller passed).
 */
export const OTHER_LABEL_VALUE = 'other';

/** Distinct provider names given their own series when no list of providers is configured. */
export const MAX_PROVIDER_LABELS = 64;

// The config schema's rule for a provider's name: anything else is not a configured name.
const PROVIDER_NAME = /^[a-z][a-z0-9-]{0,62}$/;

const PROVIDER_ERROR_LABELS: readonly string[] = [...PROVIDER_ERROR_CODES, OTHER_LABEL_VALUE];

// ---------------------------------------------------------------------------------------------
// Metric names
// ---------------------------------------------------------------------------------------------

/**
 * Every metric {@link createAgentMetrics} defines, `dso_<subsystem>_<name>_<unit>`; each is
 * checked by core's `defineCounter`/`defineGauge`/`defineHistogram` when defined.
 */
export const AGENT_METRIC_NAMES = [
  'dso_events_received_total',
  'dso_events_reconnects_total',
  'dso_queue_depth_items',
  'dso_queue_inflight_items',
  'dso_queue_shed_total',
  'dso_queue_retries_total',
  'dso_queue_failures_total',
  'dso_injection_writes_total',
  'dso_injection_duration_ms',
  'dso_provider_calls_total',
  'dso_provider_errors_total',
  'dso_provider_call_duration_ms',
  'dso_provider_breakers_items',
  'dso_cache_hits_total',
  'dso_cache_misses_total',
  'dso_cache_evictions_total',
  'dso_cache_stale_served_total',
  'dso_cache_entries_items',
  'dso_cache_size_bytes',
  'dso_rotation_runs_total',
  'dso_rotation_duration_ms',
  'dso_rotation_changes_detected_total',
  'dso_rotation_tracked_items',
  'dso_reconcile_runs_total',
  'dso_reconcile_duration_ms',
  'dso_containers_managed_items',
] as const;

/** One of {@link AGENT_METRIC_NAMES}. */
export type AgentMetricName = (typeof AGENT_METRIC_NAMES)[number];

/** Buckets for work that spans many containers or a blue-green replacement: 10 ms to 10 min. */
export const LONG_DURATION_BUCKETS_MS: readonly number[] = Object.freeze([
  10, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000,
]);

/** What {@link AgentMetrics.trackQueue} reads at each scrape: the event queue's `stats()`. */
export type QueueSample = Pick<
  EventQueueStats,
  'depth' | 'inFlight' | 'shed' | 'retried' | 'failed'
>;

/** What {@link AgentMetrics.trackCache} reads at each scrape: the cache's `stats()`. */
export type CacheSample = Pick<
  CacheStats,
  'hits' | 'misses' | 'evictions' | 'expirations' | 'staleServed' | 'entries' | 'bytes'
>;

/** How a new version was noticed: a provider's watch, its version probe, or a resolve. */
export const CHANGE_SOURCES = ['watch', 'probe', 'poll'] as const;
/** One of {@link CHANGE_SOURCES}. */
export type ChangeSource = (typeof CHANGE_SOURCES)[number];

/** What {@link AgentMetrics.trackChangeDetector} reads at each scrape. */
export interface ChangeDetectorSample {
  watched: number;
  probed: number;
  polled: number;
}

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
}

// The parts of prom-client's bound children these methods use.
interface Inc {
  inc(value?: number): void;
}
interface Observe {
  observe(value: number): void;
}
interface Settable {
  set(value: number): void;
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

  return {
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

/** A record of one bound child per label value; indexing it with a foreign value gives undefined. */
function bindAll<K extends string, C>(
  values: readonly K[],
  bind: (value: K) => C,
): Readonly<Record<K, C>> {
  const children = Object.create(null) as Record<K, C>;
  for (const value of values) children[value] = bind(value);
  return children;
}

function zeroed<C extends Inc>(child: C): C {
  child.inc(0);
  return child;
}

function lazy<T>(make: () => T): () => T {
  let made: T | undefined;
  return () => {
    made ??= make();
    return made;
  };
}

function observe(child: Observe | undefined, durationMs: number): void {
  // prom-client throws on NaN; a bad duration is the caller's bug, not worth a crash here.
  if (child && Number.isFinite(durationMs) && durationMs >= 0) child.observe(durationMs);
}

/**
 * prom-client calls a metric's `collect` (its documented `collect` configuration option) at the
 * start of every read of the metric; core's define helpers do not take that option, so it is
 * set on the metric they made, which is what prom-client's constructor does with it too.
 */
function onCollect(metric: object, collect: () => void): void {
  (metric as { collect?: () => void }).collect = collect;
}

function sample<T>(source: (() => T) | undefined): T | undefined {
  if (source === undefined) return undefined;
  try {
    return source();
  } catch {
    // A failing source leaves its metrics where they were; a scrape must not fail over it.
    return undefined;
  }
}

type Baseline<K extends string> = Partial<Record<K, number>>;

function newBaseline<K extends string>(): Baseline<K> {
  return {};
}

/** Turns a cumulative count read from a source into counter increments. */
function advance<K extends string>(
  counter: Inc,
  seen: Baseline<K>,
  key: K,
  stats: Readonly<Record<K, number>> | undefined,
): void {
  if (stats === undefined) return;
  const now = stats[key];
  if (!Number.isFinite(now) || now < 0) return;
  const before = seen[key] ?? 0;
  // A count that went down belongs to a new source: all of it is new.
  const delta = now >= before ? now - before : now;
  if (delta > 0) counter.inc(delta);
  seen[key] = now;
}

// ---------------------------------------------------------------------------------------------
// Health and readiness
// ---------------------------------------------------------------------------------------------

/** One condition of a {@link HealthReport}: a fixed phrase and counts in `detail`, nothing else. */
export interface CheckResult {
  ok: boolean;
  /** Why it fails (or a count): built from codes and numbers, never a value, path or name. */
  detail?: string;
}

/**
 * What `/healthz` and `/readyz` answer from. The endpoint answers 200 when `ok` and every check
 * is ok, else 503 naming the failing checks.
 */
export interface HealthReport {
  ok: boolean;
  checks: Readonly<Record<string, CheckResult>>;
}

/** What `/readyz` answers from: the same shape as {@link HealthReport}. */
export type ReadyReport = HealthReport;

/** How long the events stream may stay down before `/healthz` fails. */
export const DEFAULT_EVENTS_DOWN_LIMIT_MS = 60_000;

/** Options of {@link createAgentHealth}. */
export interface AgentHealthOptions {
  /**
   * How long the engine's events stream may be down (reconnecting) before the agent reports
   * itself unhealthy. The agent exits by itself after its reconnect limit; this is for the
   * supervisor that watches `/healthz` in between.
   * @default DEFAULT_EVENTS_DOWN_LIMIT_MS
   */
  eventsDownLimitMs?: number;
  /** @default systemClock */
  clock?: Clock;
}

/**
 * The agent's liveness and readiness, fed by its lifecycle. Each method is cheap (a field
 * write) and safe to call repeatedly.
 */
export interface AgentHealth {
  /** The engine accepted the events subscription (the runtime's `onConnected`). */
  eventsConnected(): void;
  /** The events stream broke and is being reconnected (the runtime's `onReconnecting`). */
  eventsLost(): void;
  /** A reconciliation of every managed container finished (the first one makes the agent ready). */
  reconciled(): void;
  /** Shutdown began: `/readyz` answers 503 from now on. */
  stopping(): void;
  /**
   * Liveness: `events` fails once the stream has been down longer than the limit. The process
   * answering at all shows its event loop runs.
   */
  health(): HealthReport;
  /** Readiness: `watching` (events connected once), `reconciled` (first run done), `running`. */
  ready(): ReadyReport;
}

/**
 * Builds the agent's health state, for {@link startObservabilityServer}'s `health` and `ready`.
 *
 * @example
 * const health = createAgentHealth();
 * runtime.events({ signal, onConnected: health.eventsConnected, onReconnecting: health.eventsLost });
 * await startObservabilityServer({ address, registry, health: health.health, ready: health.ready });
 */
export function createAgentHealth(options: AgentHealthOptions = {}): AgentHealth {
  const clock = options.clock ?? systemClock;
  const limitMs = options.eventsDownLimitMs ?? DEFAULT_EVENTS_DOWN_LIMIT_MS;
  if (!Number.isFinite(limitMs) || limitMs < 0) {
    throw new RangeError(`eventsDownLimitMs must be a finite number ≥ 0, got ${String(limitMs)}`);
  }
  let connectedOnce = false;
  let downSince: number | undefined;
  let reconciledOnce = false;
  let stopping = false;

  return {
    eventsConnected() {
      connectedOnce = true;
      downSince = undefined;
    },
    eventsLost() {
      downSince ??= clock.now();
    },
    reconciled() {
      reconciledOnce = true;
    },
    stopping() {
      stopping = true;
    },
    health() {
      const downMs = downSince === undefined ? 0 : clock.now() - downSince;
      const events: CheckResult =
        downMs > limitMs
          ? {
              ok: false,
              detail: `events stream down for ${Math.round(downMs / 1_000)} s (limit ${Math.round(limitMs / 1_000)} s)`,
            }
          : downSince === undefined
            ? { ok: true }
            : { ok: true, detail: 'events stream reconnecting' };
      return { ok: events.ok, checks: { events } };
    },
    ready() {
      const checks: Record<string, CheckResult> = {
        watching: connectedOnce
          ? { ok: true }
          : { ok: false, detail: 'events stream not connected yet' },
        reconciled: reconciledOnce
          ? { ok: true }
          : { ok: false, detail: 'first reconciliation not finished' },
        running: stopping ? { ok: false, detail: 'shutting down' } : { ok: true },
      };
      return { ok: connectedOnce && reconciledOnce && !stopping, checks };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The HTTP server
// ---------------------------------------------------------------------------------------------

/** The longest wait for a request's headers. */
export const OBSERVABILITY_HEADERS_TIMEOUT_MS = 5_000;
/** The longest a whole request may take to arrive. */
export const OBSERVABILITY_REQUEST_TIMEOUT_MS = 10_000;
/** How long an idle kept-alive connection stays open. */
export const OBSERVABILITY_KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Connections open at once; more are refused by the kernel backlog and node. */
export const OBSERVABILITY_MAX_CONNECTIONS = 32;
/** How long `close()` lets a response in progress finish before cutting its connection. */
export const OBSERVABILITY_CLOSE_GRACE_MS = 2_000;
/** The longest `detail` a check reports; longer ones are cut. */
const MAX_DETAIL_CHARS = 200;
const MAX_CHECKS = 32;
const CHECK_NAME = /^[a-z][a-z0-9_.-]{0,63}$/;

/** Options of {@link startObservabilityServer}. */
export interface ObservabilityServerOptions {
  /**
   * `host:port` to listen on: `127.0.0.1:9464`, `[::1]:9464`, `localhost:9464` (bound as
   * 127.0.0.1). Port 0 picks a free port (see {@link ObservabilityServer.address}).
   */
  address: string;
  /** The registry `/metrics` exposes (from `createMetricsRegistry`). */
  registry: MetricsRegistry;
  /** Called for each `/healthz`; must be cheap and must not throw (a throw answers 503). */
  health: () => HealthReport;
  /** Called for each `/readyz`; must be cheap and must not throw (a throw answers 503). */
  ready: () => ReadyReport;
  /** Where a failed scrape or report is reported; nothing is logged per request. */
  logger?: Logger;
  /** Check details pass through it before they are sent. */
  redactor?: Redactor;
  /**
   * Listen on an address other than loopback. The endpoints need no authentication and tell a
   * reader the agent's activity, so this is for a host whose firewall is the boundary.
   * @default false
   */
  allowNonLoopback?: boolean;
}

/** A listening observability server. */
export interface ObservabilityServer extends AsyncDisposable {
  /** Where it listens, `host:port` with the actual port (`[::1]:port` for IPv6). */
  readonly address: string;
  /** Stops accepting, closes idle connections, lets responses in progress finish. Idempotent. */
  close(): Promise<void>;
}

/**
 * Serves `GET /metrics` (Prometheus text format), `GET /healthz` and `GET /readyz` (JSON: 200
 * when every check is ok, else 503 naming those that are not), 404 for any other path and 405
 * for any other method. Request bodies are never read; headers and requests have short
 * timeouts; connections are capped.
 *
 * @example
 * const server = await startObservabilityServer({
 *   address: config.metrics.address,
 *   registry,
 *   health: health.health,
 *   ready: health.ready,
 *   logger,
 * });
 * // on shutdown
 * await server.close();
 * @throws DsoError DSO_AGENT_METRICS_ADDRESS when `address` is not `host:port` or not loopback
 * @throws DsoError DSO_AGENT_METRICS_LISTEN_FAILED when the port cannot be bound (in use, denied)
 */
export async function startObservabilityServer(
  options: ObservabilityServerOptions,
): Promise<ObservabilityServer> {
  const { registry, logger } = options;
  const { host, port } = parseListenAddress(options.address, options.allowNonLoopback ?? false);

  const server = createServer(
    {
      requestTimeout: OBSERVABILITY_REQUEST_TIMEOUT_MS,
      headersTimeout: OBSERVABILITY_HEADERS_TIMEOUT_MS,
      // How often node checks the two timeouts above (its default is 30 s).
      connectionsCheckingInterval: 1_000,
      maxHeaderSize: 8 * 1024,
    },
    (request, response) => {
      void handle(request, response).catch((error: unknown) => {
        logger?.warn({ err: error, code: errorCode(error) }, 'observability request failed');
        if (!response.headersSent) send(response, 500, JSON_TYPE, '{"error":"internal"}');
        else response.destroy();
      });
    },
  );
  server.keepAliveTimeout = OBSERVABILITY_KEEP_ALIVE_TIMEOUT_MS;
  server.timeout = OBSERVABILITY_REQUEST_TIMEOUT_MS;
  server.maxHeadersCount = 64;
  server.maxRequestsPerSocket = 100;
  server.maxConnections = OBSERVABILITY_MAX_CONNECTIONS;

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    // A request with a body is answered without reading it, and its connection is not reused.
    if (request.headers['content-length'] !== undefined || request.headers['transfer-encoding']) {
      response.shouldKeepAlive = false;
    }
    const url = request.url ?? '/';
    const query = url.indexOf('?');
    const pathname = query === -1 ? url : url.slice(0, query);
    const route = ROUTES.has(pathname) ? pathname : undefined;
    if (route === undefined) {
      send(response, 404, JSON_TYPE, '{"error":"not found"}');
      return;
    }
    if (request.method !== 'GET') {
      response.shouldKeepAlive = false;
      response.setHeader('Allow', 'GET');
      send(response, 405, JSON_TYPE, '{"error":"method not allowed"}');
      return;
    }
    if (route === '/metrics') {
      let text: string;
      try {
        text = await registry.metrics();
      } catch (error) {
        logger?.warn({ err: error, code: errorCode(error) }, 'metrics collection failed');
        send(response, 500, JSON_TYPE, '{"error":"metrics collection failed"}');
        return;
      }
      send(response, 200, registry.contentType, text);
      return;
    }
    const report = route === '/healthz' ? options.health : options.ready;
    const { status, body } = renderReport(report, route, logger, options.redactor);
    send(response, status, JSON_TYPE, body);
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (error: NodeJS.ErrnoException) => {
      reject(
        new DsoError(
          'DSO_AGENT_METRICS_LISTEN_FAILED',
          `cannot listen on ${options.address} for metrics (${error.code ?? error.message}): free the port or set metrics.address`,
          { cause: error, address: options.address },
        ),
      );
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      resolve();
    });
  });
  server.on('error', (error) => {
    logger?.warn({ err: error, code: errorCode(error) }, 'observability server error');
  });

  const bound = server.address() as AddressInfo;
  const address =
    bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  logger?.info({ address }, 'observability server listening');

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      const force = setTimeout(() => server.closeAllConnections(), OBSERVABILITY_CLOSE_GRACE_MS);
      force.unref();
      server.close(() => {
        clearTimeout(force);
        resolve();
      });
      server.closeIdleConnections();
    });
    return closing;
  };
  return {
    address,
    close,
    [Symbol.asyncDispose]: close,
  };
}

const ROUTES = new Set(['/metrics', '/healthz', '/readyz']);
const JSON_TYPE = 'application/json; charset=utf-8';

function send(response: ServerResponse, status: number, type: string, body: string): void {
  response.writeHead(status, {
    'Content-Type': type,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  response.end(body);
}

/** The JSON answer of `/healthz` or `/readyz`: status, the checks, and the unmet ones' names. */
function renderReport(
  report: () => HealthReport,
  route: string,
  logger: Logger | undefined,
  redactor: Redactor | undefined,
): { status: number; body: string } {
  let result: HealthReport;
  try {
    result = report();
  } catch (error) {
    logger?.warn({ err: error, code: errorCode(error), route }, 'health report failed');
    return {
      status: 503,
      body: JSON.stringify({ status: 'fail', unmet: ['report'], checks: {} }),
    };
  }
  const checks: Record<string, CheckResult> = {};
  const unmet: string[] = [];
  let count = 0;
  for (const [name, check] of Object.entries(result?.checks ?? {})) {
    if (count++ >= MAX_CHECKS) break;
    // Check names are the agent's own fixed words; anything else is dropped, not echoed.
    if (!CHECK_NAME.test(name) || typeof check !== 'object' || check === null) continue;
    const ok = check.ok === true;
    if (!ok) unmet.push(name);
    const detail = cleanDetail(check.detail, redactor);
    checks[name] = detail === undefined ? { ok } : { ok, detail };
  }
  const ok = result?.ok === true && unmet.length === 0;
  return {
    status: ok ? 200 : 503,
    body: JSON.stringify(ok ? { status: 'ok', checks } : { status: 'fail', unmet, checks }),
  };
}

// A word with a slash in it: a file path, a reference, a socket or URL. Details are fixed
// phrases and counts; anything path-like that slipped in is not for an unauthenticated reader.
const PATH_LIKE = /\S*[/\\]\S*/g;

/** A check's detail as sent: one line, redacted, no path-like words, bounded. */
function cleanDetail(detail: unknown, redactor: Redactor | undefined): string | undefined {
  if (typeof detail !== 'string' || detail === '') return undefined;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is removed
  const flat = detail.replace(/[\u0000-\u001f\u007f]+/g, ' ');
  const redacted = (redactor ? redactor.redact(flat) : flat).replace(PATH_LIKE, '[path]');
  return redacted.length > MAX_DETAIL_CHARS
    ? `${redacted.slice(0, MAX_DETAIL_CHARS - 1)}…`
    : redacted;
}

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');
LOOPBACK.addSubnet('::ffff:127.0.0.0', 104, 'ipv6');

/**
 * `host:port` → where to listen. Only IP literals and `localhost` (bound as 127.0.0.1): a name
 * that resolves elsewhere cannot slip a public address in.
 */
function parseListenAddress(
  address: string,
  allowNonLoopback: boolean,
): { host: string; port: number } {
  const refuse = (why: string) =>
    new DsoError('DSO_AGENT_METRICS_ADDRESS', `metrics.address ${JSON.stringify(address)} ${why}`, {
      address,
    });
  if (typeof address !== 'string') throw refuse('is not a string');
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(address);
  if (match === null) {
    throw refuse('is not host:port: use 127.0.0.1:9464 or [::1]:9464');
  }
  const port = Number(match[3]);
  if (port > 65_535) throw refuse('has a port above 65535');
  const bracketed = match[1];
  const rawHost = bracketed ?? match[2]!;
  const host = rawHost.toLowerCase() === 'localhost' ? '127.0.0.1' : rawHost;
  const family = isIP(host);
  if (family === 0 || (bracketed !== undefined && family !== 6)) {
    if (allowNonLoopback && bracketed === undefined) return { host, port };
    throw refuse('names no IP address: use 127.0.0.1, [::1] or localhost');
  }
  if (!allowNonLoopback && !LOOPBACK.check(host, family === 6 ? 'ipv6' : 'ipv4')) {
    throw refuse(
      'is not a loopback address: metrics and health have no authentication, so the agent serves them on 127.0.0.1 or [::1] only',
    );
  }
  return { host, port };
}
