/**
 * @dso/core: DSO's shared core. The one parser of secret references, the container label
 * contract, exact-value redaction, a logger that redacts every line, and the base error class.
 *
 * @example
 * import { createLogger, createRedactor, parseManagedLabels } from '@dso/core';
 *
 * const redactor = createRedactor();
 * const logger = createLogger({ redactor, name: 'example' });
 *
 * const spec = parseManagedLabels({
 *   'dso.enable': 'true',
 *   'dso.file.db_password': 'dsofile://vault:app/db#password',
 * });
 * // spec: { target: '/run/secrets', mode: 0o400, files: [{ name: 'db_password', reference: … }] }
 *
 * redactor.register('correct-horse-battery');
 * logger.info({ files: spec?.files.length }, 'password is correct-horse-battery');
 * // {"level":30,…,"files":1,"msg":"password is [REDACTED]"}
 */

export {
  type Clock,
  type ClockTimer,
  createFakeClock,
  type FakeClock,
  type FakeClockOptions,
  systemClock,
} from '@dso/async';
export {
  AGENT_API_ROUTES,
  type AgentApiCheckedReference,
  type AgentApiCheckRequest,
  type AgentApiCheckResult,
  type AgentApiContainer,
  type AgentApiDelivered,
  type AgentApiDeliveryTrigger,
  type AgentApiError,
  type AgentApiEvent,
  type AgentApiEventLine,
  type AgentApiHealth,
  type AgentApiProvider,
  type AgentApiReconcileResult,
  type AgentApiResolvedValue,
  type AgentApiResolveRequest,
  type AgentApiResolveResult,
  type AgentApiRotateRequest,
  type AgentApiRotateResult,
  type AgentApiRoute,
  type AgentApiRouteName,
  type AgentApiStatus,
  API_ACTION_OUTCOMES,
  API_DELIVERY_TRIGGERS,
  API_EVENTS_HEARTBEAT_MS,
  API_EVENTS_MAX_BUFFERED_BYTES,
  API_HEADERS_TIMEOUT_MS,
  API_KEEP_ALIVE_TIMEOUT_MS,
  API_MAX_BODY_BYTES,
  API_MAX_CONNECTIONS,
  API_MAX_EVENT_STREAMS,
  API_MAX_PROVIDER_NAME_CHARS,
  API_MAX_PROVIDER_STATE_FIELDS,
  API_MAX_PROVIDER_STATE_STRING,
  API_MAX_RESOLVE_BODY_BYTES,
  API_MAX_RESOLVE_REFERENCES,
  API_PROVIDER_STATE_KEY,
  API_REQUEST_TIMEOUT_MS,
  API_RESOLVE_TIMEOUT_MS,
  API_SOCKET_ENV,
  agentApiCheckedReferenceSchema,
  agentApiCheckRequestSchema,
  agentApiCheckResultSchema,
  agentApiContainerSchema,
  agentApiDeliveredSchema,
  agentApiErrorSchema,
  agentApiEventLineSchema,
  agentApiEventSchema,
  agentApiHealthSchema,
  agentApiProviderSchema,
  agentApiProviderStateSchema,
  agentApiReconcileResultSchema,
  agentApiResolvedValueSchema,
  agentApiResolveRequestSchema,
  agentApiResolveResultSchema,
  agentApiRotateRequestSchema,
  agentApiRotateResultSchema,
  agentApiStatusSchema,
  DEFAULT_API_SOCKET,
  MAX_SOCKET_PATH_BYTES,
  resolveApiSocket,
} from './agent-api/contract.js';
export {
  AUDIT_ACTIONS,
  AUDIT_ACTOR_KINDS,
  AUDIT_OUTCOMES,
  type AuditAction,
  type AuditActor,
  type AuditActorKind,
  type AuditEntry,
  type AuditLineSink,
  type AuditLog,
  type AuditLogOptions,
  type AuditOutcome,
  type AuditRecord,
  createAuditLog,
  DEFAULT_AUDIT_MAX_BUFFERED_BYTES,
  parseAuditLine,
} from './audit.js';
export {
  CACHE_ERROR_CODES,
  type Cache,
  type CacheCallOptions,
  type CacheEntry,
  CacheError,
  type CacheErrorCode,
  type CacheLoader,
  type CacheResult,
  type CacheSetOptions,
  type CacheStats,
  cacheKey,
  cacheKeyPrefix,
  DEFAULT_CACHE_TTL_MS,
  type GetOrLoadOptions,
  type LoadedSecret,
} from './cache/cache.js';
export {
  CACHE_ENTRY_OVERHEAD_BYTES,
  createMemoryCache,
  DEFAULT_CACHE_MAX_BYTES,
  DEFAULT_CACHE_MAX_ENTRIES,
  DEFAULT_CACHE_SWEEP_INTERVAL_MS,
  DEFAULT_NEGATIVE_TTL_MS,
  DEFAULT_STALE_IF_ERROR_MS,
  type MemoryCacheOptions,
} from './cache/memory-cache.js';
export { Flight, SingleFlight, type SingleFlightOptions } from './cache/single-flight.js';
export { CONFIG_ENV_OVERRIDES, type ConfigEnvOverride } from './config/env.js';
export {
  DEFAULT_CONFIG_FILE_NAME,
  type LoadConfigOptions,
  type LoadedConfig,
  loadConfig,
  MAX_CONFIG_FILE_BYTES,
  type ParseConfigOptions,
  parseConfig,
} from './config/load.js';
export type { ConfigProblem } from './config/problems.js';
export { renderConfigReference } from './config/reference.js';
export {
  BUILTIN_PROVIDER_TYPES,
  COMMAND_PROVIDER_TYPE,
  configSchema,
  type DsoConfig,
  type ProviderConfig,
  ROTATION_POLICIES,
  type RotationPolicy,
} from './config/schema.js';
export { formatByteSize, formatDuration, parseByteSize, parseDuration } from './config/units.js';
export { DsoError, type DsoErrorOptions, errorCode, isDsoError, isRetryable } from './errors.js';
export {
  createEventQueue,
  DEFAULT_QUEUE_CLOSE_GRACE_MS,
  DEFAULT_QUEUE_CONCURRENCY,
  DEFAULT_QUEUE_MAX_SIZE,
  DEFAULT_QUEUE_RETRY,
  type EventQueue,
  type EventQueueCloseOptions,
  type EventQueueOptions,
  type EventQueueRetryOptions,
  type EventQueueStats,
  type EventQueueTiming,
  type EventQueueWorker,
  type EventQueueWorkerContext,
  MAX_QUEUE_CONCURRENCY,
  type RetryJitter,
} from './event-queue.js';
export {
  checkSecretFileName,
  DEFAULT_FILE_MODE,
  DEFAULT_SECRETS_DIR,
  LABEL_ROTATION_POLICIES,
  LABELS,
  type LabelRotationPolicy,
  MAX_FILE_NAME_LENGTH,
  MAX_OWNER_ID,
  type ManagedFile,
  type ManagedRotation,
  type ManagedSpec,
  parseManagedLabels,
  parseRotationLabels,
  parseVolumeOptions,
  toManagedLabels,
  VOLUME_DEFAULT_MODE,
  VOLUME_SETTINGS,
  type VolumeSpec,
} from './labels.js';
export {
  checkFileAccess,
  checkLabels,
  isKnownLabel,
  KNOWN_LABEL_KEYS,
  KNOWN_LABEL_PREFIXES,
  type LabelWarning,
  suggestLabel,
} from './labels-check.js';
export {
  createLogger,
  DEFAULT_LOG_LEVEL,
  LOG_FORMATS,
  LOG_LEVELS,
  type LogFormat,
  type Logger,
  type LoggerOptions,
} from './logger.js';
export {
  collectProcessMetrics,
  createMetricsRegistry,
  DEFAULT_LATENCY_BUCKETS_MS,
  defineCounter,
  defineGauge,
  defineHistogram,
  FORBIDDEN_LABEL_WORDS,
  type HistogramDefinition,
  METRIC_NAME_PATTERN,
  METRIC_UNITS,
  type MetricDefinition,
  type MetricsRegistry,
  type MetricsRegistryOptions,
  PROCESS_METRICS_PREFIX,
  type ProcessMetricsOptions,
} from './metrics.js';
export { type DsoPaths, resolveDsoPaths } from './paths.js';
export {
  createRedactor,
  DEFAULT_REDACTION_MIN_LENGTH,
  REDACTED,
  type RedactionLease,
  type Redactor,
  type RedactorOptions,
  type RedactorStats,
} from './redaction.js';
export {
  REDACTION_PATTERN_IDS,
  REDACTION_PATTERNS,
  type RedactionPattern,
  type RedactionPatternId,
} from './redaction-patterns.js';
export {
  formatReference,
  isReference,
  MAX_REFERENCE_LENGTH,
  parseReference,
  REFERENCE_SCHEMES,
  type ReferenceScheme,
  type SecretReference,
} from './references.js';
export { editDistance, suggestReference } from './references-near-miss.js';
export {
  DEFAULT_WAIT_FOR_SECRETS_TIMEOUT_MS,
  WAIT_FOR_SECRETS_EXIT_CODE,
  type WaitForSecretsOptions,
  waitForSecretsCommand,
} from './wait-for-secrets.js';
