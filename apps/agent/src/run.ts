import { join } from 'node:path';
import {
  API_SOCKET_ENV,
  type AuditLog,
  type Cache,
  collectProcessMetrics,
  createAuditLog,
  createLogger,
  createMemoryCache,
  createMetricsRegistry,
  createRedactor,
  DEFAULT_API_SOCKET,
  type DsoConfig,
  errorCode,
  type Logger,
  loadConfig,
  type Redactor,
  resolveDsoPaths,
} from '@dso/core';
import {
  createDockerRuntime,
  createHostSecretDirs,
  type HostSecretDirs,
} from '@dso/docker-runtime';
import type { ProcessProvider } from '@dso/provider-sdk';
import { createAgent } from './agent.js';
import { startApiServer } from './api/server.js';
import { type AuditFile, openAuditFile } from './audit-file.js';
import { protectFromCoreDumps } from './core-dumps.js';
import {
  createAgentHealth,
  createAgentMetrics,
  startObservabilityServer,
} from './observability.js';
import { startProviders } from './providers.js';
import { createAuditSink } from './reporting.js';
import { createVolumeFolders, type VolumeFolders } from './volumes/folders.js';
import { startVolumePluginServer } from './volumes/plugin-server.js';

const USAGE = `Usage: dso-agent [--help | --version]

Runs the DSO agent in the foreground: watches the Docker Engine and writes the secrets named by
a container's dso.file.* labels into its tmpfs. Stops cleanly on SIGTERM or SIGINT.

Configuration: $DSO_CONFIG, else $DSO_HOME/dso.yaml when it exists, else the defaults
(see docs/config.md). Environment:
  DSO_CONFIG             the configuration file
  DSO_HOME               state folder (default /var/lib/dso as root, ~/.local/share/dso otherwise)
  DSO_VAULT_PATH         local vault file (default $DSO_HOME/vault.dso)
  DSO_VAULT_PASSPHRASE   vault passphrase, or
  DSO_VAULT_KEY_FILE     vault key file (default $DSO_HOME/vault.key)
  DOCKER_HOST, DSO_LOG_LEVEL, DSO_LOG_FORMAT (json|pretty), …  per-host overrides of dso.yaml
`;

/**
 * The agent's entry point: loads the configuration, builds every long-lived object from it,
 * runs the agent until SIGTERM/SIGINT, closes everything in reverse order, and returns the
 * exit code (0 stopped, 1 failed, 2 bad arguments or configuration).
 */
export async function runAgentMain(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write(`dso-agent: unknown argument ${JSON.stringify(argv[0])}\n\n${USAGE}`);
    return 2;
  }

  // First of all, before any secret is read: a core dump of the agent would hold every one.
  const dumps = protectFromCoreDumps();
  const redactor = createRedactor();
  let config: DsoConfig;
  let warnings: string[];
  let configPath: string | undefined;
  let logger: Logger;
  try {
    ({ config, warnings, path: configPath } = await loadConfig({ env }));
    logger = createLogger({
      level: config.log.level,
      format: config.log.format,
      redactor,
      name: 'dso-agent',
    });
  } catch (error) {
    // Configuration messages quote keys, paths and types, never values.
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(
      `dso-agent: ${message}${errorCode(error) ? ` (${errorCode(error)})` : ''}\n`,
    );
    return 2;
  }
  for (const warning of warnings) logger.warn({ config: configPath }, warning);
  if (dumps.protected) {
    logger.info(
      { nonDumpable: dumps.nonDumpable, coreLimitZero: dumps.coreLimitZero },
      'core dumps of the agent are off',
    );
  } else {
    logger.warn(
      { nonDumpable: false, coredumpFilterZero: dumps.filtered, missing: dumps.missing },
      'core dumps of the agent are possible',
    );
  }

  const fail = (error: unknown): number => {
    logger.fatal(expectedFailure(error), 'agent stopped');
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`dso-agent: ${redactor.redact(message)}\n`);
    return 1;
  };

  const stopping = new AbortController();
  const health = createAgentHealth();
  // `on`, not `once`: a second signal (a terminal's Ctrl-C reaches every process in the group,
  // and wrappers forward it too) must not fall back to the default handler and kill the agent
  // in the middle of its graceful stop.
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping.signal.aborted) {
      logger.info({ signal }, 'signal received, already stopping');
      return;
    }
    logger.info({ signal }, 'signal received');
    health.stopping();
    stopping.abort();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  // SIGHUP reopens the audit trail's file; without one it is logged and ignored (never the
  // default action, which would kill the agent).
  let onReload = () => logger.info('SIGHUP received: nothing to reopen');
  const onHangup = () => onReload();
  process.on('SIGHUP', onHangup);

  const closers: Array<() => Promise<void>> = [];
  try {
    // Each provider's maximum staleness (its own, else the cache's): the cache keeps stale
    // entries as long as the longest of them, the agent refuses any older than its provider's.
    const maxStalenessMs = new Map(
      Object.entries(config.providers).map(([name, entry]) => [
        name,
        entry.maxStalenessMs ?? config.cache.staleIfErrorMs,
      ]),
    );
    const cache = await openCache(config, maxStalenessMs, env, logger, redactor);
    closers.push(() => cache.close());
    const opened = await openAuditLog(config, redactor);
    const audit = opened?.log;
    if (opened !== undefined) {
      closers.push(async () => {
        await opened.log.close();
        await opened.file?.close();
      });
    }
    if (opened?.file !== undefined) {
      const file = opened.file;
      // logrotate's postrotate (or `systemctl reload dso-agent`) sends SIGHUP: a new file.
      onReload = () => {
        file.reopen().then(
          () => logger.info({ path: config.audit.path }, 'audit trail reopened'),
          (error: unknown) =>
            logger.error(
              { err: error, code: errorCode(error) },
              'could not reopen the audit trail; still writing the previous file',
            ),
        );
      };
    }
    // Metrics on an injected registry (never the global one), health and readiness.
    const registry = createMetricsRegistry({ redactor });
    // 100 ms event-loop-delay sampling: the default 10 ms alone costs ~0.5 % of a core while
    // idle (BENCHMARKS.md), ten times what the rest of the idle agent does.
    collectProcessMetrics(registry, { eventLoopMonitoringPrecision: 100 });
    const providers = await startProviders(config, {
      env: withDefaultVaultKey(env),
      logger,
    });
    for (const provider of providers.values()) closers.push(() => provider.close());
    const metrics = createAgentMetrics(registry, { providers: providers.keys() });
    metrics.dumpable(!dumps.protected);
    if (config.metrics.enabled) {
      const server = await startObservabilityServer({
        address: config.metrics.address,
        registry,
        health: () => health.health(),
        ready: () => health.ready(),
        logger,
        redactor,
      });
      closers.push(() => server.close());
      metrics.trackHttpServer('observability', () => server.connectionStats());
      logger.info({ address: server.address }, 'metrics and health listening');
    }
    const runtime = await createDockerRuntime({
      host: config.docker.host,
      allowInsecureTcp: config.docker.allowInsecureTcp,
      tlsVerify: config.docker.tlsVerify,
      ...(config.docker.tlsCertPath === undefined
        ? {}
        : { tlsCertPath: config.docker.tlsCertPath }),
      connectTimeoutMs: config.docker.connectTimeoutMs,
      requestTimeoutMs: config.docker.requestTimeoutMs,
      writeTimeoutMs: config.docker.writeTimeoutMs,
      signal: stopping.signal,
    });
    closers.push(() => runtime.close());
    logger.info(
      {
        engine: runtime.engineVersion,
        engineKind: runtime.engineKind,
        api: runtime.apiVersion,
        config: configPath ?? '(defaults)',
        providers: [...providers.keys()],
      },
      'agent starting',
    );

    const hostDirs = openHostDirs(config, logger);
    const volumeFolders = await openVolumeFolders(config, logger);
    const { queue, docker } = config;
    const agent = createAgent({
      runtime,
      providers,
      cache,
      maxStalenessMs,
      // Digests of what each container run was given (no value): rotations survive restarts.
      statePath: join(resolveDsoPaths(env).home, 'agent-state.json'),
      ...(hostDirs === undefined ? {} : { hostDirs }),
      ...(volumeFolders === undefined
        ? {}
        : {
            volumes: {
              folders: volumeFolders,
              driverName: config.volumes.driverName,
              mountTimeoutMs: config.volumes.mountTimeoutMs,
              // Volumes and mounts (references and digests, no value): they survive restarts.
              statePath: join(resolveDsoPaths(env).home, 'volumes.json'),
            },
          }),
      changeDetection: {
        pollIntervalMs: config.rotation.pollIntervalMs,
        pollIntervalByProvider: new Map(
          Object.entries(config.providers).flatMap(([name, entry]) =>
            entry.pollIntervalMs === undefined ? [] : [[name, entry.pollIntervalMs] as const],
          ),
        ),
      },
      defaultProvider: config.defaultProvider,
      logger,
      redactor,
      concurrency: queue.concurrency,
      queueMaxSize: queue.maxSize,
      retry: queue.retry,
      maxReconnects: docker.reconnect.maxAttempts,
      reconnectBaseDelayMs: docker.reconnect.baseDelayMs,
      reconnectMaxDelayMs: docker.reconnect.maxDelayMs,
      shutdownGraceMs: config.shutdownGraceMs,
      reconcileIntervalMs: config.reconcile.intervalMs,
      ...(audit === undefined ? {} : { audit }),
      metrics,
      health,
      rotation: {
        defaultPolicy: config.rotation.defaultPolicy,
        ...(config.rotation.escalateTo === undefined
          ? {}
          : { escalateTo: config.rotation.escalateTo }),
        healthTimeoutMs: config.rotation.healthTimeoutMs,
        signal: config.rotation.signal,
        maxInFlight: config.rotation.maxInFlight,
        jitterMs: config.rotation.jitterMs,
        hookTimeoutMs: config.rotation.hookTimeoutMs,
        stopTimeoutMs: config.rotation.stopTimeoutMs,
      },
    });
    closers.push(() => agent.close());
    // The CLI's socket: up before start() so `dso status` answers during start-up; closers run
    // in reverse, so it closes before the agent does.
    const api = await startApiServer({
      socketPath: apiSocketPath(config, env),
      socketMode: config.api.socketMode,
      ...(config.api.socketGroup === undefined ? {} : { socketGroup: config.api.socketGroup }),
      agent,
      ...(audit === undefined ? {} : { audit: createAuditSink(audit, logger) }),
      resolveAllow: config.api.resolveAllow,
      defaultProvider: config.defaultProvider,
      providers: () =>
        [...providers].map(([name, provider]) => ({
          name,
          type: config.providers[name]?.type ?? 'unknown',
          state: (provider as Partial<ProcessProvider>).state?.(),
        })),
      logger,
      redactor,
    });
    closers.push(() => api.close());
    metrics.trackHttpServer('api', () => api.connectionStats());
    stopping.signal.addEventListener('abort', () => void agent.close(), { once: true });
    if (stopping.signal.aborted) return 0;
    await agent.start();
    // After start: the volumes the previous agent knew are loaded before the engine asks.
    if (agent.volumeDriver !== undefined) {
      try {
        const plugin = await startVolumePluginServer({ driver: agent.volumeDriver, logger });
        closers.push(() => plugin.close());
        // On a Swarm node: the engine lists a socket-discovered plugin only once it has used
        // it, and a manager places no task that needs the driver on a node that does not list
        // it. Elsewhere nothing is asked: an engine that has used a plugin asks it again at
        // every volume looked up by name, and retries for ~15 s when the agent is down.
        const driverName = agent.volumeDriver.driverName;
        const announce = async () => {
          if (!(await runtime.swarmNodeActive())) return;
          await runtime.listVolumes({ driver: driverName });
          logger.info({ driver: driverName }, 'volume driver announced to the swarm node');
        };
        await announce().catch((error: unknown) => {
          logger.warn(
            { err: error, code: errorCode(error) },
            'the engine did not load the volume driver yet; it does at the first container that uses it',
          );
        });
      } catch (error) {
        // Another agent serves this driver on this host: this one goes on without it.
        if (errorCode(error) !== 'DSO_VOLUME_SOCKET_IN_USE') throw error;
        logger.error(expectedFailure(error), 'volume driver not served');
      }
    }
    logger.info('agent ready');
    await agent.done;
    logger.info('agent stopped');
    return 0;
  } catch (error) {
    // Stopped during start-up: the abort surfaces as DSO_DOCKER_ABORTED or similar; that is a
    // clean stop, not a failure.
    if (stopping.signal.aborted) {
      logger.info('agent stopped');
      return 0;
    }
    return fail(error);
  } finally {
    // Reverse start order: the agent, the engine connection, the providers, the cache.
    for (const close of closers.reverse()) {
      await close().catch((error: unknown) => logger.warn({ err: error }, 'close failed'));
    }
    process.removeListener('SIGTERM', onSignal);
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGHUP', onHangup);
    logger.flush();
  }
}

/**
 * The configured cache: in this process's memory, or Redis shared by several agents (values
 * sealed with the key from `DSO_CACHE_KEY`, `DSO_CACHE_KEY_FILE` or `$DSO_HOME/cache.key`
 * before they leave the process). Stale entries are kept as long as the longest maximum
 * staleness of any provider.
 */
async function openCache(
  config: DsoConfig,
  maxStalenessMs: ReadonlyMap<string, number>,
  env: NodeJS.ProcessEnv,
  logger: Logger,
  redactor: Redactor,
): Promise<Cache> {
  const staleIfErrorMs = Math.max(config.cache.staleIfErrorMs, ...maxStalenessMs.values());
  if (config.cache.backend === 'memory') {
    return createMemoryCache({
      ttlMs: config.cache.ttlMs,
      maxEntries: config.cache.maxEntries,
      maxBytes: config.cache.maxBytes,
      staleIfErrorMs,
      negativeTtlMs: config.cache.negativeTtlMs,
      // Each entry holds its value in the redactor, given back when the entry leaves.
      redactor,
    });
  }
  // Loaded only for this backend: ioredis is ~15 MB of RSS an agent on the memory cache (the
  // default) would hold for nothing.
  const { createRedisCache, loadCacheEncryptionKey } = await import('@dso/cache-redis');
  const { key, source } = await loadCacheEncryptionKey({
    env,
    keyFile: join(resolveDsoPaths(env).home, 'cache.key'),
  });
  try {
    const cache = createRedisCache({
      ...config.cache.redis,
      ttlMs: config.cache.ttlMs,
      staleIfErrorMs,
      negativeTtlMs: config.cache.negativeTtlMs,
      encryptionKey: key,
      logger,
    });
    logger.info({ keyPrefix: config.cache.redis.keyPrefix, key: source }, 'cache on redis');
    return cache;
  } finally {
    key.dispose();
  }
}

/**
 * The fields that log a failure the operator can expect and fix (a coded DsoError, e.g. a root
 * that is not a tmpfs, an engine that does not answer): its code, its message, which says the
 * fix, and its cause's message; no stack, which would only bury that sentence at every start.
 * Anything else keeps its stack under `err`.
 */
export function expectedFailure(error: unknown): Record<string, unknown> {
  const code = errorCode(error);
  if (code === undefined || !(error instanceof Error)) return { err: error, code };
  // The underlying failure's words (ECONNREFUSED, EACCES) still help; its stack does not.
  const { cause } = error;
  return {
    code,
    reason: error.message,
    ...(cause instanceof Error ? { cause: cause.message } : {}),
  };
}

/**
 * The host path's folders when the agent shares the host with the engine (a unix socket) and
 * `hostPath.enabled`; undefined (exec only) otherwise, or when the root cannot be used (not a
 * tmpfs, no permission), which is said once at start.
 */
function openHostDirs(config: DsoConfig, logger: Logger): HostSecretDirs | undefined {
  if (!config.hostPath.enabled) return undefined;
  if (!config.docker.host.startsWith('unix://')) {
    logger.info(
      { host: config.docker.host },
      'host path off: the engine is remote, files are written by exec',
    );
    return undefined;
  }
  try {
    const dirs = createHostSecretDirs({ root: config.hostPath.root });
    logger.info({ root: dirs.root }, 'host path on for containers that bind-mount it');
    return dirs;
  } catch (error) {
    logger.warn(
      { ...expectedFailure(error), root: config.hostPath.root },
      'host path off: files are written by exec (hostPath.enabled: false in dso.yaml turns it off quietly)',
    );
    return undefined;
  }
}

/**
 * The volume driver's folders when the agent shares the host with the engine and
 * `volumes.enabled`; undefined otherwise, or when `volumes.root` cannot be made a private
 * tmpfs, which is said once at start (containers that use the driver then fail to start).
 */
async function openVolumeFolders(
  config: DsoConfig,
  logger: Logger,
): Promise<VolumeFolders | undefined> {
  if (!config.volumes.enabled) return undefined;
  if (!config.docker.host.startsWith('unix://')) {
    logger.info({ host: config.docker.host }, 'volume driver off: the engine is remote');
    return undefined;
  }
  try {
    const folders = await createVolumeFolders({
      root: config.volumes.root,
      tmpfsSize: config.volumes.tmpfsSize,
    });
    logger.info({ root: folders.root, driver: config.volumes.driverName }, 'volume driver on');
    return folders;
  } catch (error) {
    logger.warn(
      { ...expectedFailure(error), root: config.volumes.root },
      'volume driver off: containers that mount DSO volumes will not start',
    );
    return undefined;
  }
}

/**
 * The audit trail: appended to `audit.path` (created 0600 in a 0700 folder if missing), or
 * standard output for `-`. The file rotates itself at `audit.maxFileBytes`, keeping
 * `audit.maxFiles`, and is opened again on SIGHUP for an external logrotate (see the README).
 */
async function openAuditLog(
  config: DsoConfig,
  redactor: Redactor,
): Promise<{ log: AuditLog; file?: AuditFile } | undefined> {
  if (!config.audit.enabled) return undefined;
  if (config.audit.path === '-') {
    return {
      log: createAuditLog({
        destination: { write: (line: string) => process.stdout.write(line) },
        redactor,
      }),
    };
  }
  const file = await openAuditFile(config.audit.path, {
    maxFileBytes: config.audit.maxFileBytes,
    maxFiles: config.audit.maxFiles,
  });
  return { log: createAuditLog({ destination: file.sink, redactor }), file };
}

/**
 * The agent's environment, plus `DSO_VAULT_KEY_FILE=$DSO_HOME/vault.key` when no vault key is
 * set (the key `dso init` writes): the local provider reads its key only from its environment.
 */
function withDefaultVaultKey(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  if (env.DSO_VAULT_PASSPHRASE || env.DSO_VAULT_KEY_FILE) return env;
  return { ...env, DSO_VAULT_KEY_FILE: resolveDsoPaths(env).defaultKeyFile };
}

/**
 * The API socket: as configured, except that a non-root agent on the default path (under
 * /run, root's) listens in its own DSO_HOME instead; `DSO_API_SOCKET` tells the CLI.
 */
function apiSocketPath(config: DsoConfig, env: NodeJS.ProcessEnv): string {
  const runningAsRoot = process.getuid?.() === 0;
  if (runningAsRoot || config.api.socket !== DEFAULT_API_SOCKET || env[API_SOCKET_ENV]) {
    return config.api.socket;
  }
  return join(resolveDsoPaths(env).home, 'agent.sock');
}
