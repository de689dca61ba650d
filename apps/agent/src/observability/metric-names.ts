import type { CacheStats, EventQueueStats } from '@dso/core';
import type { RuntimeEvent } from '@dso/docker-runtime';

// ---------------------------------------------------------------------------------------------
// The agent's metrics by name, and the values their labels take.
//
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
export const INJECTION_METHODS = ['exec', 'host', 'volume'] as const;
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

/** The agent's HTTP servers: its API socket and its metrics and health port. */
export const HTTP_SERVERS = ['api', 'observability'] as const;
/** One of {@link HTTP_SERVERS}. */
export type HttpServerName = (typeof HTTP_SERVERS)[number];

/**
 * Why a server cut a connection short: `evicted` (idle, closed for a new one at the cap),
 * `headers_timeout` (no request's headers within the deadline from its opening), `busy`
 * (answered 503: every connection had a request in progress).
 */
export const CONNECTION_CLOSE_REASONS = ['evicted', 'headers_timeout', 'busy'] as const;

/** What {@link AgentMetrics.trackHttpServer} reads at each scrape: the server's `connectionStats()`. */
export interface HttpConnectionSample {
  evicted: number;
  headersTimedOut: number;
  busy: number;
}

/**
 * The label value that stands for anything outside a label's fixed set (an unknown provider
 * name, an error code no provider contract defines, a value an untyped caller passed).
 */
export const OTHER_LABEL_VALUE = 'other';

/** Distinct provider names given their own series when no list of providers is configured. */
export const MAX_PROVIDER_LABELS = 64;

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
  'dso_http_connections_closed_total',
  'dso_agent_dumpable_items',
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
