// The agent's observability, by job under ./observability/: the metric names and label sets
// (metric-names.ts), the instruments (metrics.ts, with metric-children.ts), liveness and
// readiness (health.ts), and the `/metrics`, `/healthz`, `/readyz` server (metrics-server.ts).
// This module is the one import path the rest of the agent uses for them.

export {
  type AgentHealth,
  type AgentHealthOptions,
  type CheckResult,
  createAgentHealth,
  DEFAULT_EVENTS_DOWN_LIMIT_MS,
  type HealthReport,
  type ReadyReport,
} from './observability/health.js';
export {
  AGENT_EVENT_TYPES,
  AGENT_METRIC_NAMES,
  type AgentEventType,
  type AgentMetricName,
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
} from './observability/metric-names.js';
export {
  type AgentMetrics,
  type AgentMetricsOptions,
  createAgentMetrics,
} from './observability/metrics.js';
export {
  OBSERVABILITY_CLOSE_GRACE_MS,
  OBSERVABILITY_HEADERS_TIMEOUT_MS,
  OBSERVABILITY_KEEP_ALIVE_TIMEOUT_MS,
  OBSERVABILITY_MAX_CONNECTIONS,
  OBSERVABILITY_REQUEST_TIMEOUT_MS,
  type ObservabilityServer,
  type ObservabilityServerOptions,
  startObservabilityServer,
} from './observability/metrics-server.js';
