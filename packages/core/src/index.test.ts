import { describe, expect, it } from 'vitest';
import * as core from './index.js';

describe('@dso/core', () => {
  it('exports exactly its documented runtime API', () => {
    expect(Object.keys(core).sort()).toEqual([
      'AUDIT_ACTIONS',
      'AUDIT_ACTOR_KINDS',
      'AUDIT_OUTCOMES',
      'BUILTIN_PROVIDER_TYPES',
      'CACHE_ENTRY_OVERHEAD_BYTES',
      'CACHE_ERROR_CODES',
      'CONFIG_ENV_OVERRIDES',
      'CacheError',
      'DEFAULT_AUDIT_MAX_BUFFERED_BYTES',
      'DEFAULT_CACHE_MAX_BYTES',
      'DEFAULT_CACHE_MAX_ENTRIES',
      'DEFAULT_CACHE_SWEEP_INTERVAL_MS',
      'DEFAULT_CACHE_TTL_MS',
      'DEFAULT_CONFIG_FILE_NAME',
      'DEFAULT_FILE_MODE',
      'DEFAULT_LATENCY_BUCKETS_MS',
      'DEFAULT_LOG_LEVEL',
      'DEFAULT_NEGATIVE_TTL_MS',
      'DEFAULT_QUEUE_CLOSE_GRACE_MS',
      'DEFAULT_QUEUE_CONCURRENCY',
      'DEFAULT_QUEUE_MAX_SIZE',
      'DEFAULT_QUEUE_RETRY',
      'DEFAULT_REDACTION_MIN_LENGTH',
      'DEFAULT_SECRETS_DIR',
      'DEFAULT_STALE_IF_ERROR_MS',
      'DEFAULT_WAIT_FOR_SECRETS_TIMEOUT_MS',
      'DsoError',
      'FORBIDDEN_LABEL_WORDS',
      'Flight',
      'LABELS',
      'LABEL_ROTATION_POLICIES',
      'LOG_LEVELS',
      'MAX_CONFIG_FILE_BYTES',
      'MAX_FILE_NAME_LENGTH',
      'MAX_OWNER_ID',
      'MAX_QUEUE_CONCURRENCY',
      'MAX_REFERENCE_LENGTH',
      'METRIC_NAME_PATTERN',
      'METRIC_UNITS',
      'PROCESS_METRICS_PREFIX',
      'REDACTED',
      'REDACTION_PATTERNS',
      'REDACTION_PATTERN_IDS',
      'REFERENCE_SCHEMES',
      'ROTATION_POLICIES',
      'SingleFlight',
      'WAIT_FOR_SECRETS_EXIT_CODE',
      'cacheKey',
      'cacheKeyPrefix',
      'checkSecretFileName',
      'collectProcessMetrics',
      'configSchema',
      'createAuditLog',
      'createEventQueue',
      'createFakeClock',
      'createLogger',
      'createMemoryCache',
      'createMetricsRegistry',
      'createRedactor',
      'defineCounter',
      'defineGauge',
      'defineHistogram',
      'errorCode',
      'formatByteSize',
      'formatDuration',
      'formatReference',
      'isDsoError',
      'isReference',
      'isRetryable',
      'loadConfig',
      'parseAuditLine',
      'parseByteSize',
      'parseConfig',
      'parseDuration',
      'parseManagedLabels',
      'parseReference',
      'renderConfigReference',
      'resolveDsoPaths',
      'systemClock',
      'toManagedLabels',
      'waitForSecretsCommand',
    ]);
  });

  it('runs the example at the top of index.ts', () => {
    const lines: string[] = [];
    const redactor = core.createRedactor();
    const logger = core.createLogger({
      redactor,
      name: 'example',
      destination: { write: (line: string) => void lines.push(line) },
    });
    const spec = core.parseManagedLabels({
      'dso.enable': 'true',
      'dso.file.db_password': 'dsofile://vault:app/db#password',
    });
    redactor.register('correct-horse-battery');
    logger.info({ files: spec?.files.length }, 'password is correct-horse-battery');
    expect(JSON.parse(lines[0]!)).toMatchObject({
      files: 1,
      msg: 'password is [REDACTED]',
      name: 'example',
    });
  });
});
