import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { backoffDelay, onAbort } from '@dso/async';
import { SUPPORTED_PROVIDER_SDK_API_VERSIONS } from '../define-provider.js';
import {
  type CallOptions,
  OPTIONAL_OPERATIONS,
  type ProviderCapabilities,
  type ProviderHealth,
  type ResolvedSecret,
  type SecretChange,
  type SecretProvider,
  type SecretRequest,
  type SecretVersion,
} from '../provider.js';
import { ProviderError, toProviderError } from '../provider-error.js';
import { SecretValue } from '../secret-value.js';
import { Connection, type Outcome } from './connection.js';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  fromRpcError,
  type InitializeResult,
  isBase64,
  MIN_MAX_MESSAGE_BYTES,
  maxMessageBytesAdvice,
  PROTOCOL_VERSION,
} from './messages.js';

/** A call's deadline unless configured: 30 s. */
/** How long a restarted child must serve before its restart backoff starts over. */
const STABLE_CHILD_MS = 30_000;

export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** Consecutive failed calls after which the child is killed and replaced. */
export const DEFAULT_FAILURE_THRESHOLD = 5;
/** First restart delay; it doubles per failed restart, with jitter. */
export const DEFAULT_RESTART_BASE_DELAY_MS = 500;
/** Cap of the restart delay. */
export const DEFAULT_RESTART_MAX_DELAY_MS = 30_000;
/** The handshake's deadline is at least this long: a child's start may load a large SDK. */
export const MIN_START_TIMEOUT_MS = 10_000;
/** How much of one stderr line reaches the log. */
export const MAX_STDERR_LINE_BYTES = 8_192;

/** After `shutdown` (or SIGTERM), how long a child has before it is killed. */
const SHUTDOWN_GRACE_MS = 2_000;
const KILL_GRACE_MS = 2_000;
/** Log lines from one child: a burst of this many, then this many per second. */
const LOG_BURST = 200;
const LOG_LINES_PER_SECOND = 100;
const MAX_LOG_MESSAGE_CHARS = 8_192;
const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** One line for the host's log: from the provider (`log`), its stderr, or this host. */
export interface ProcessProviderLogEntry {
  level: 'debug' | 'info' | 'warn' | 'error';
  /** Untrusted text when `source` is not `host`: pass it through the redactor. */
  message: string;
  fields?: Record<string, unknown>;
  source: 'provider' | 'stderr' | 'host';
}

/** Options of {@link createProcessProvider}. */
export interface ProcessProviderOptions {
  /** The configured name, e.g. `prod-vault`: errors and log lines carry it. */
  name: string;
  /**
   * What the SDK's runner imports: a package name (resolved from `resolveFrom`) or an absolute
   * file path. Its default export (or export `provider`) is a ProviderDefinition. Give exactly
   * one of `module` and `command`: the child is then `[node, ...execArgv, runner, module]`.
   */
  module?: string;
  /**
   * The child's whole argv instead of the runner: a provider in any language that speaks
   * PROTOCOL.md, e.g. `['python3', '/opt/dso/provider.py']`. Give exactly one of `module` and
   * `command`. A relative path in it is relative to the working directory (`resolveFrom`).
   */
  command?: readonly string[];
  /** Directory the package name is resolved from (the operator's plugins folder), and the child's working directory. @default process.cwd() */
  resolveFrom?: string;
  /** The provider's configuration: sent in the `initialize` request on stdin, never in argv or env. */
  config: unknown;
  /** The child's whole environment. @default { PATH, HOME } of this process only */
  env?: Record<string, string>;
  /** Node arguments before the runner script, e.g. ['--conditions=@dso/source', '--import', 'tsx'] to run TypeScript sources unbuilt (tests). Only with `module`. @default [] */
  execArgv?: string[];
  /** Deadline of every call. @default 30_000 */
  callTimeoutMs?: number;
  /** Deadline of the handshake (process start, module import, provider creation). @default max(callTimeoutMs, 10_000) */
  startTimeoutMs?: number;
  /** Consecutive failed calls (timeouts, crashes, protocol errors) before the child is replaced. @default 5 */
  failureThreshold?: number;
  /** Restart backoff: doubles from `baseDelayMs` up to `maxDelayMs`, jittered. @default { baseDelayMs: 500, maxDelayMs: 30_000 } */
  restart?: { baseDelayMs?: number; maxDelayMs?: number };
  /**
   * The longest message (one JSON line) read from the child; a value must fit in it as base64
   * (see `maxSecretBytesFor`). @default 1_572_864 (carries a 1 MiB value)
   */
  maxMessageBytes?: number;
  /** Where log lines go; entries from the child are untrusted text, redact them. @default dropped */
  onLog?: (entry: ProcessProviderLogEntry) => void;
}

/** What {@link ProcessProvider.state} reports. */
export interface ProcessProviderState {
  /** `restarting` from the moment a child is given up until its replacement answered the handshake. */
  status: 'ready' | 'restarting' | 'closed';
  /** `open`: calls fail fast; `half-open`: one probe call is let through; `closed`: normal. */
  breaker: 'closed' | 'open' | 'half-open';
  pid: number | undefined;
  /** Children started after the first one. */
  restarts: number;
  consecutiveFailures: number;
  /** Calls sent to the current child and not yet answered. */
  inFlight: number;
}

/** A provider served by a child process; see {@link createProcessProvider}. */
export interface ProcessProvider extends SecretProvider {
  state(): ProcessProviderState;
  [Symbol.asyncDispose](): Promise<void>;
}

interface ResolvedOptions {
  name: string;
  command: string[];
  cwd: string;
  env: Record<string, string>;
  config: unknown;
  callTimeoutMs: number;
  startTimeoutMs: number;
  failureThreshold: number;
  baseDelayMs: number;
  maxDelayMs: number;
  maxMessageBytes: number;
  onLog: (entry: ProcessProviderLogEntry) => void;
}

interface WatchState {
  connection: Connection;
  changes: Map<string, string>;
  ended: boolean;
  error: ProviderError | undefined;
  wake: () => void;
}

/**
 * Starts a provider in a child process (the runner hosting `module`, or `command`) and returns
 * it as a {@link SecretProvider} whose capabilities and methods mirror what the child declared
 * in the handshake. Calls are pipelined by id; each has a deadline (`callTimeoutMs`, after which
 * `$/cancelRequest` is sent) and honours its AbortSignal. After `failureThreshold` consecutive
 * failures (timeouts, crashes, protocol errors: answers such as NOT_FOUND are not failures) or
 * any crash or protocol error, the child is killed (SIGTERM, then SIGKILL) and replaced after a
 * capped, jittered backoff; meanwhile a circuit breaker fails calls fast with
 * `DSO_PROVIDER_UNAVAILABLE`, then lets one probe call through (`health` when declared) before
 * closing again. `close()` shuts the child down and never leaves a process behind.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG for bad options, a module that is not a
 *   provider (or built for an unsupported SDK API version), or a configuration its schema refuses
 * @throws ProviderError DSO_PROVIDER_TIMEOUT when the child does not finish the handshake in time
 * @throws ProviderError DSO_PROVIDER_UNAVAILABLE when the child cannot be started or exits first
 * @example
 * const provider = await createProcessProvider({
 *   name: 'prod-vault',
 *   module: '@dso/provider-vault',
 *   resolveFrom: '/var/lib/dso/plugins',
 *   config: { address: 'https://vault:8200', auth: { method: 'token' } },
 *   env: { PATH: process.env.PATH ?? '', VAULT_TOKEN: token },
 *   onLog: (entry) => logger[entry.level](redact(entry.message), { source: entry.source }),
 * });
 * const { value, version } = await provider.resolve({ path: 'app/db' }, { signal });
 * await provider.close();
 */
export async function createProcessProvider(
  options: ProcessProviderOptions,
): Promise<ProcessProvider> {
  const host = new ProcessHost(resolveOptions(options));
  await host.start();
  return host.facade();
}

class ProcessHost {
  readonly #o: ResolvedOptions;
  #connection: Connection | undefined;
  #capabilities: ProviderCapabilities | undefined;
  #status: ProcessProviderState['status'] = 'restarting';
  #breaker: ProcessProviderState['breaker'] = 'closed';
  /** The connection whose half-open probe call is in flight. */
  #probeConnection: Connection | undefined;
  #restartTimer: NodeJS.Timeout | undefined;
  #restartAttempt = 0;
  /** When the breaker last closed: the backoff resets only once a child has held a while. */
  #recoveredAt: number | undefined;
  #nextAttemptAt = 0;
  #restarts = 0;
  #consecutiveFailures = 0;
  #lastFailure = 'a failure';
  readonly #dying = new Set<Promise<void>>();
  readonly #watches = new Map<string, WatchState>();
  #closing: Promise<void> | undefined;
  readonly #log: LogGate;

  constructor(options: ResolvedOptions) {
    this.#o = options;
    this.#log = new LogGate(options.onLog);
  }

  async start(): Promise<void> {
    const connection = this.#spawn();
    let result: InitializeResult;
    try {
      result = await this.#handshake(connection);
    } catch (error) {
      this.#connection = undefined;
      await connection.kill();
      throw error;
    }
    this.#capabilities = Object.freeze({ ...result.capabilities });
    this.#status = 'ready';
  }

  facade(): ProcessProvider {
    const name = this.#o.name;
    const capabilities = this.#capabilities!;
    const provider: ProcessProvider = {
      name,
      capabilities,
      resolve: (request, options) => this.#resolve(request, options),
      close: () => this.close(),
      state: () => this.state(),
      [Symbol.asyncDispose]: () => this.close(),
    };
    if (capabilities.list) provider.list = (prefix, options) => this.#list(prefix, options);
    if (capabilities.probe) provider.probe = (request, options) => this.#probe(request, options);
    if (capabilities.health) provider.health = (options) => this.#health(options);
    if (capabilities.watch) provider.watch = (paths, options) => this.#watch(paths, options);
    return provider;
  }

  state(): ProcessProviderState {
    return {
      status: this.#status,
      breaker: this.#breaker,
      pid: this.#connection?.pid,
      restarts: this.#restarts,
      consecutiveFailures: this.#consecutiveFailures,
      inFlight: this.#connection?.inFlight ?? 0,
    };
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#status = 'closed';
      clearTimeout(this.#restartTimer);
      this.#endWatches(undefined, undefined);
      const connection = this.#connection;
      this.#connection = undefined;
      if (connection) await connection.shutdown(SHUTDOWN_GRACE_MS);
      while (this.#dying.size > 0) await Promise.all([...this.#dying]);
      this.#log.flush();
    })();
    return this.#closing;
  }

  /** A method, not a field read: `close()` may run during any await. */
  #isClosed(): boolean {
    return this.#status === 'closed';
  }

  // ---- calls ---------------------------------------------------------------------------------

  async #resolve(request: SecretRequest, options?: CallOptions): Promise<ResolvedSecret> {
    const path = request?.path;
    const result = await this.#call(
      'resolve',
      { path, ...(request?.version === undefined ? {} : { version: request.version }) },
      options,
      path,
    );
    const { connection, value } = result;
    const encoded = (value as { value?: { base64?: unknown } } | null)?.value?.base64;
    const version = (value as { version?: unknown } | null)?.version;
    if (typeof encoded !== 'string' || !isBase64(encoded) || typeof version !== 'string') {
      throw this.#malformed(connection, 'resolve', path);
    }
    const bytes = Buffer.from(encoded, 'base64');
    try {
      return { value: SecretValue.fromBytes(bytes), version };
    } finally {
      bytes.fill(0);
    }
  }

  async #list(prefix: string | undefined, options?: CallOptions): Promise<string[]> {
    const { connection, value } = await this.#call(
      'list',
      prefix === undefined ? {} : { prefix },
      options,
      undefined,
    );
    const paths = (value as { paths?: unknown } | null)?.paths;
    if (!Array.isArray(paths) || !paths.every((path) => typeof path === 'string')) {
      throw this.#malformed(connection, 'list', undefined);
    }
    return paths;
  }

  async #probe(request: SecretRequest, options?: CallOptions): Promise<SecretVersion> {
    const path = request?.path;
    const { connection, value } = await this.#call(
      'probe',
      { path, ...(request?.version === undefined ? {} : { version: request.version }) },
      options,
      path,
    );
    const version = (value as { version?: unknown } | null)?.version;
    if (typeof version !== 'string') throw this.#malformed(connection, 'probe', path);
    return { version };
  }

  async #health(options?: CallOptions): Promise<ProviderHealth> {
    const { connection, value } = await this.#call('health', {}, options, undefined);
    return this.#checkHealth(connection, value);
  }

  #checkHealth(connection: Connection, value: unknown): ProviderHealth {
    const ok = (value as { ok?: unknown } | null)?.ok;
    const detail = (value as { detail?: unknown } | null)?.detail;
    if (typeof ok !== 'boolean' || (detail !== undefined && typeof detail !== 'string')) {
      throw this.#malformed(connection, 'health', undefined);
    }
    return detail === undefined ? { ok } : { ok, detail };
  }

  /**
   * One call through the breaker to the current child. Resolves with the child's result (and
   * the connection it came from, to blame it if the result is malformed); rejects with a
   * ProviderError.
   */
  async #call(
    method: string,
    params: unknown,
    options: CallOptions | undefined,
    path: string | undefined,
    onSettled?: (connection: Connection, outcome: Outcome) => void,
  ): Promise<{ connection: Connection; value: unknown }> {
    const signal = options?.signal;
    if (this.#status === 'closed') throw this.#closedError(method);
    if (signal?.aborted) throw this.#abortedError(method, signal.reason, path);
    const { connection, probe } = this.#admit(method, path);
    let outcome: Outcome;
    try {
      outcome = await connection.request(method, params, {
        timeoutMs: this.#o.callTimeoutMs,
        signal,
        onSettled: onSettled && ((settled) => onSettled(connection, settled)),
      });
    } finally {
      if (probe && this.#probeConnection === connection) this.#probeConnection = undefined;
    }
    return { connection, value: this.#settle(connection, method, path, outcome, signal) };
  }

  /** Maps an outcome to a result or a thrown ProviderError, and keeps the failure count. */
  #settle(
    connection: Connection,
    method: string,
    path: string | undefined,
    outcome: Outcome,
    signal: AbortSignal | undefined,
  ): unknown {
    const name = this.#o.name;
    const at = path === undefined ? '' : ` for ${path}`;
    const where = { provider: name, ...(path === undefined ? {} : { path }) };
    switch (outcome.type) {
      case 'result':
        this.#answered(connection);
        return outcome.result;
      case 'error':
        this.#answered(connection);
        throw fromRpcError(outcome.error, name, path);
      case 'timeout':
        this.#failed(connection, `${method} timed out`);
        throw new ProviderError(
          'DSO_PROVIDER_TIMEOUT',
          `provider ${name} did not answer ${method}${at} within ${this.#o.callTimeoutMs} ms ` +
            '(callTimeoutMs): the call was cancelled; retry, or raise callTimeoutMs for a slow store',
          where,
        );
      case 'aborted':
        throw this.#abortedError(method, outcome.reason ?? signal?.reason, path);
      case 'lost':
        throw new ProviderError(
          'DSO_PROVIDER_UNAVAILABLE',
          this.#status === 'closed'
            ? `provider ${name} was closed while ${method}${at} was in flight`
            : `provider ${name}'s process ${outcome.detail} while ${method}${at} was in flight: ` +
                'it is restarted automatically; retry',
          where,
        );
      case 'too-large':
        throw new ProviderError(
          'DSO_PROVIDER_TOO_LARGE',
          outcome.direction === 'answer'
            ? `provider ${name} answered ${method}${at} with a message over ${this.#o.maxMessageBytes} ` +
                `bytes (maxMessageBytes): ${maxMessageBytesAdvice(name, this.#o.maxMessageBytes)}`
            : `the ${method} request${at} is a ${outcome.bytes}-byte message, over the ` +
                `${connection.childMaxBytes}-byte limit of provider ${name}'s process: send less`,
          where,
        );
      default:
        throw new ProviderError(
          'DSO_PROVIDER_INTERNAL',
          `provider ${name} answered ${method}${at} with a malformed message (${outcome.reason}): ` +
            'its process was restarted; report this to the provider author',
          where,
        );
    }
  }

  /** The connection a call may use now, or a fast UNAVAILABLE while the breaker sheds calls. */
  #admit(method: string, path: string | undefined): { connection: Connection; probe: boolean } {
    const connection = this.#connection;
    const name = this.#o.name;
    const where = { provider: name, ...(path === undefined ? {} : { path }) };
    if (connection === undefined || this.#status !== 'ready' || this.#breaker === 'open') {
      const wait = Math.max(0, this.#nextAttemptAt - Date.now());
      const when =
        this.#restartTimer !== undefined && wait > 0
          ? `a new process starts in about ${wait} ms`
          : 'a new process is starting';
      throw new ProviderError(
        'DSO_PROVIDER_UNAVAILABLE',
        `provider ${name} is unavailable after ${this.#lastFailure}: calls fail fast until it ` +
          `recovers (${when}, then it retries by itself); retry ${method} later`,
        where,
      );
    }
    if (this.#breaker === 'half-open') {
      if (this.#probeConnection !== undefined) {
        throw new ProviderError(
          'DSO_PROVIDER_UNAVAILABLE',
          `provider ${name} is recovering after ${this.#lastFailure}: one probe call is checking ` +
            `its new process; retry ${method} in a moment`,
          where,
        );
      }
      this.#probeConnection = connection;
      return { connection, probe: true };
    }
    return { connection, probe: false };
  }

  #answered(connection: Connection): void {
    if (connection !== this.#connection) return;
    this.#consecutiveFailures = 0;
    if (this.#breaker === 'half-open') {
      this.#breaker = 'closed';
      // Not `#restartAttempt = 0` yet: a child that answers one call and then fails again
      // (a malformed frame, a crash on the next request) must keep backing off.
      this.#recoveredAt = Date.now();
      this.#log.host('info', 'provider recovered', { provider: this.#o.name, pid: connection.pid });
    }
  }

  #failed(connection: Connection, reason: string): void {
    if (connection !== this.#connection) return;
    this.#consecutiveFailures++;
    if (this.#breaker === 'half-open') {
      this.#reset(connection, `${reason} on the probe call`);
    } else if (this.#consecutiveFailures >= this.#o.failureThreshold) {
      this.#reset(
        connection,
        `${this.#consecutiveFailures} consecutive failures (last: ${reason})`,
      );
    }
  }

  #malformed(connection: Connection, method: string, path: string | undefined): ProviderError {
    this.#onProtocolError(connection, `the ${method} result has the wrong shape`);
    return new ProviderError(
      'DSO_PROVIDER_INTERNAL',
      `provider ${this.#o.name} answered ${method}${path === undefined ? '' : ` for ${path}`} with ` +
        'a malformed result: its process was restarted; report this to the provider author',
      { provider: this.#o.name, ...(path === undefined ? {} : { path }) },
    );
  }

  #closedError(method: string): ProviderError {
    return new ProviderError(
      'DSO_PROVIDER_INTERNAL',
      `provider ${this.#o.name} is closed: cannot ${method}`,
      { provider: this.#o.name },
    );
  }

  #abortedError(method: string, reason: unknown, path: string | undefined): ProviderError {
    return new ProviderError(
      'DSO_PROVIDER_TIMEOUT',
      `provider ${this.#o.name} ${method} call was aborted`,
      {
        provider: this.#o.name,
        ...(path === undefined ? {} : { path }),
        ...(reason === undefined ? {} : { cause: reason }),
      },
    );
  }

  // ---- watch ---------------------------------------------------------------------------------

  #watch(paths: readonly string[], options: { signal: AbortSignal }): AsyncIterable<SecretChange> {
    const host = this;
    const signal = options?.signal;
    return {
      [Symbol.asyncIterator]: () =>
        (async function* (): AsyncGenerator<SecretChange> {
          if (signal?.aborted) return;
          const state: WatchState = {
            connection: undefined as unknown as Connection,
            changes: new Map(),
            ended: false,
            error: undefined,
            wake: () => undefined,
          };
          let key: string | undefined;
          let subscription: unknown;
          // Registered as the answer is read: the child's first changes follow it at once.
          const register = (connection: Connection, outcome: Outcome) => {
            subscription = (outcome as { result?: { subscription?: unknown } }).result
              ?.subscription;
            if (outcome.type !== 'result') return;
            if (typeof subscription !== 'string' && typeof subscription !== 'number') return;
            if (connection !== host.#connection) return;
            state.connection = connection;
            key = String(subscription);
            host.#watches.set(key, state);
          };
          let started: { connection: Connection; value: unknown };
          try {
            started = await host.#call(
              'watch',
              { paths: [...paths] },
              { signal },
              undefined,
              register,
            );
          } catch (error) {
            if (signal?.aborted) return;
            throw error;
          }
          if (key === undefined) {
            if (typeof subscription !== 'string' && typeof subscription !== 'number') {
              throw host.#malformed(started.connection, 'watch', undefined);
            }
            throw host.#restartedError();
          }
          const stopWaking = onAbort(signal, () => state.wake());
          try {
            for (;;) {
              if (signal?.aborted) return;
              const next = state.changes.entries().next();
              if (!next.done) {
                const [path, version] = next.value;
                state.changes.delete(path);
                yield { path, version };
                continue;
              }
              if (state.ended) {
                if (state.error) throw state.error;
                return;
              }
              await new Promise<void>((resolve) => {
                state.wake = resolve;
              });
            }
          } finally {
            stopWaking();
            if (host.#watches.get(key) === state) host.#watches.delete(key);
            if (!state.ended && !state.connection.isLost) {
              // Best effort: if the child is gone its subscription went with it.
              void state.connection.request(
                'unwatch',
                { subscription },
                { timeoutMs: host.#o.callTimeoutMs },
              );
            }
          }
        })(),
    };
  }

  #restartedError(): ProviderError {
    return new ProviderError(
      'DSO_PROVIDER_UNAVAILABLE',
      `provider ${this.#o.name}'s process was restarted: its watches ended; watch again`,
      { provider: this.#o.name },
    );
  }

  #endWatches(connection: Connection | undefined, error: ProviderError | undefined): void {
    for (const [key, state] of this.#watches) {
      if (connection !== undefined && state.connection !== connection) continue;
      state.ended = true;
      state.error = error;
      this.#watches.delete(key);
      state.wake();
    }
  }

  #onNotification(connection: Connection, method: string, params: unknown): void {
    const object = (typeof params === 'object' && params !== null ? params : {}) as Record<
      string,
      unknown
    >;
    if (method === 'log') {
      const level = ['debug', 'info', 'warn', 'error'].includes(object.level as string)
        ? (object.level as ProcessProviderLogEntry['level'])
        : 'info';
      const fields =
        typeof object.fields === 'object' && object.fields !== null && !Array.isArray(object.fields)
          ? (object.fields as Record<string, unknown>)
          : undefined;
      this.#log.child({
        level,
        message: String(object.message ?? '').slice(0, MAX_LOG_MESSAGE_CHARS),
        ...(fields === undefined ? {} : { fields }),
        source: 'provider',
      });
      return;
    }
    if (method === 'watch/change' || method === 'watch/end') {
      const state = this.#watches.get(String(object.subscription));
      // A notification racing an unwatch, or for a subscription of a replaced child: dropped.
      if (state === undefined || state.connection !== connection) return;
      if (method === 'watch/change') {
        if (typeof object.path !== 'string' || typeof object.version !== 'string') {
          this.#onProtocolError(connection, 'a watch/change without a path and a version');
          return;
        }
        // Coalesced per path: a slow consumer sees each path's latest version, never a backlog.
        state.changes.set(object.path, object.version);
      } else {
        state.ended = true;
        state.error =
          object.error === undefined
            ? undefined
            : fromRpcError(object.error, this.#o.name, undefined);
        this.#watches.delete(String(object.subscription));
      }
      state.wake();
    }
    // Unknown notifications are ignored, as JSON-RPC says: a newer child may send more.
  }

  // ---- the child's life ----------------------------------------------------------------------

  #spawn(): Connection {
    const connection = new Connection({
      command: this.#o.command,
      cwd: this.#o.cwd,
      env: this.#o.env,
      maxMessageBytes: this.#o.maxMessageBytes,
      maxStderrLineBytes: MAX_STDERR_LINE_BYTES,
      killGraceMs: KILL_GRACE_MS,
      events: {
        onNotification: (source, method, params) => this.#onNotification(source, method, params),
        onProtocolError: (source, reason) => this.#onProtocolError(source, reason),
        onLost: (source, detail) => this.#onLost(source, detail),
        onStderr: (source, text, truncated) =>
          this.#log.child({
            level: 'info',
            message: truncated > 0 ? `${text} … [${truncated} more bytes not logged]` : text,
            fields: { pid: source.pid },
            source: 'stderr',
          }),
      },
    });
    this.#connection = connection;
    this.#log.host('debug', 'provider process started', {
      provider: this.#o.name,
      pid: connection.pid,
    });
    return connection;
  }

  async #handshake(connection: Connection): Promise<InitializeResult> {
    const name = this.#o.name;
    const outcome = await connection.request(
      'initialize',
      {
        protocolVersion: PROTOCOL_VERSION,
        sdkApiVersions: [...SUPPORTED_PROVIDER_SDK_API_VERSIONS],
        name,
        config: this.#o.config,
        maxMessageBytes: this.#o.maxMessageBytes,
      },
      { timeoutMs: this.#o.startTimeoutMs },
    );
    switch (outcome.type) {
      case 'result':
        break;
      case 'error':
        throw fromRpcError(outcome.error, name, undefined);
      case 'timeout':
        throw new ProviderError(
          'DSO_PROVIDER_TIMEOUT',
          `provider ${name}'s process did not answer initialize within ${this.#o.startTimeoutMs} ms ` +
            '(startTimeoutMs): check its stderr in the log, or raise startTimeoutMs',
          { provider: name },
        );
      case 'lost':
        throw new ProviderError(
          'DSO_PROVIDER_UNAVAILABLE',
          connection.startFailed
            ? `provider ${name}'s process ${outcome.detail}: correct its command (an absolute path to an executable file) or install the program`
            : `provider ${name}'s process ${outcome.detail} before answering initialize` +
                (connection.sawStderr
                  ? ': its stderr is in the log'
                  : ': it wrote nothing to stderr; run its command by hand to see why'),
          { provider: name },
        );
      default:
        throw new ProviderError(
          'DSO_PROVIDER_INTERNAL',
          `provider ${name}'s process broke the protocol during the handshake: ` +
            'it may not be a DSO provider, or not speak this protocol version',
          { provider: name },
        );
    }
    const result = outcome.result as Partial<InitializeResult> | null;
    if (result?.protocolVersion !== PROTOCOL_VERSION) {
      throw new ProviderError(
        'DSO_PROVIDER_INVALID_CONFIG',
        `provider ${name}'s process speaks protocol version ${String(result?.protocolVersion)}; ` +
          `this host speaks ${PROTOCOL_VERSION}: install a provider release for this DSO release`,
        { provider: name },
      );
    }
    if (!SUPPORTED_PROVIDER_SDK_API_VERSIONS.includes(result.sdkApiVersion as number)) {
      throw new ProviderError(
        'DSO_PROVIDER_INVALID_CONFIG',
        `provider ${name} (type ${String(result.type)}) was built for provider SDK API version ` +
          `${String(result.sdkApiVersion)}; this host supports ${SUPPORTED_PROVIDER_SDK_API_VERSIONS.join(', ')}: ` +
          'install a release of the provider built for it, or upgrade DSO',
        { provider: name },
      );
    }
    const declared = result.capabilities as Record<string, unknown> | undefined;
    if (
      typeof declared !== 'object' ||
      declared === null ||
      !OPTIONAL_OPERATIONS.every((operation) => typeof declared[operation] === 'boolean')
    ) {
      throw new ProviderError(
        'DSO_PROVIDER_INTERNAL',
        `provider ${name}'s process declared malformed capabilities in its handshake`,
        { provider: name },
      );
    }
    if (typeof result.maxMessageBytes === 'number' && result.maxMessageBytes > 0) {
      connection.childMaxBytes = result.maxMessageBytes;
    }
    return {
      protocolVersion: PROTOCOL_VERSION,
      sdkApiVersion: result.sdkApiVersion as number,
      type: String(result.type),
      capabilities: Object.fromEntries(
        OPTIONAL_OPERATIONS.map((operation) => [operation, declared[operation] === true]),
      ) as unknown as ProviderCapabilities,
      maxMessageBytes: connection.childMaxBytes,
    };
  }

  #onProtocolError(connection: Connection, reason: string): void {
    if (connection !== this.#connection) return;
    this.#log.host('error', 'provider protocol error', {
      provider: this.#o.name,
      pid: connection.pid,
      reason,
    });
    if (this.#status === 'closed' || this.#capabilities === undefined) {
      // During the first handshake: fail it now rather than at its deadline.
      connection.abandon(`broke the protocol (${reason})`);
      return;
    }
    this.#consecutiveFailures++;
    this.#reset(connection, `a protocol error (${reason})`);
  }

  #onLost(connection: Connection, detail: string): void {
    if (connection !== this.#connection || this.#status === 'closed') return;
    if (this.#capabilities === undefined) return; // the first handshake reports it
    this.#log.host('warn', 'provider process ended', {
      provider: this.#o.name,
      pid: connection.pid,
      detail,
    });
    this.#consecutiveFailures++;
    this.#reset(connection, `its process ${detail}`);
  }

  /** Gives up `connection`: fails its calls and watches, kills it, schedules a replacement. */
  #reset(connection: Connection, reason: string): void {
    if (connection !== this.#connection || this.#status === 'closed') return;
    this.#connection = undefined;
    this.#status = 'restarting';
    this.#breaker = 'open';
    this.#probeConnection = undefined;
    this.#lastFailure = reason;
    connection.abandon(`was stopped after ${reason}`);
    this.#endWatches(connection, this.#restartedError());
    const dying = connection.kill().finally(() => this.#dying.delete(dying));
    this.#dying.add(dying);
    // The backoff starts over only after the previous child served for a good while.
    if (this.#recoveredAt !== undefined && Date.now() - this.#recoveredAt >= STABLE_CHILD_MS) {
      this.#restartAttempt = 0;
    }
    this.#recoveredAt = undefined;
    this.#restartAttempt++;
    // Equal jitter: many hosts restarting at once do not move in step.
    const delayMs = Math.round(
      backoffDelay(this.#restartAttempt, {
        baseMs: this.#o.baseDelayMs,
        maxMs: this.#o.maxDelayMs,
        jitter: 'equal',
      }),
    );
    this.#nextAttemptAt = Date.now() + delayMs;
    this.#log.host('warn', 'provider process restarting', {
      provider: this.#o.name,
      pid: connection.pid,
      reason,
      delayMs,
      attempt: this.#restartAttempt,
    });
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = undefined;
      void this.#respawn();
    }, delayMs);
    // A pending restart alone does not keep the host process alive.
    this.#restartTimer.unref();
  }

  async #respawn(): Promise<void> {
    if (this.#status === 'closed') return;
    this.#restarts++;
    const connection = this.#spawn();
    let result: InitializeResult;
    try {
      result = await this.#handshake(connection);
    } catch (error) {
      if (this.#isClosed()) return;
      const failure = toProviderError(error, this.#o.name);
      this.#log.host('error', 'provider process failed to start', {
        provider: this.#o.name,
        pid: connection.pid,
        code: failure.code,
        reason: failure.message,
      });
      // A child that exited or broke the protocol was already counted and reset when it did.
      if (connection === this.#connection) {
        this.#consecutiveFailures++;
        this.#reset(connection, `a failed restart (${failure.code})`);
      }
      return;
    }
    if (connection !== this.#connection || this.#isClosed()) return;
    const before = this.#capabilities!;
    if (
      OPTIONAL_OPERATIONS.some((operation) => before[operation] !== result.capabilities[operation])
    ) {
      this.#log.host('error', 'provider process declared other capabilities after a restart', {
        provider: this.#o.name,
        pid: connection.pid,
      });
      this.#consecutiveFailures++;
      this.#reset(connection, 'a restart that declared other capabilities');
      return;
    }
    this.#status = 'ready';
    this.#breaker = 'half-open';
    this.#log.host('info', 'provider process ready', {
      provider: this.#o.name,
      pid: connection.pid,
      restarts: this.#restarts,
    });
    if (before.health) {
      // The probe: a health call decides whether the breaker closes, before any real call.
      this.#call('health', {}, undefined, undefined).then(
        ({ connection: source, value }) => {
          try {
            this.#checkHealth(source, value);
          } catch {
            // #checkHealth already reported the malformed answer as a protocol error.
          }
        },
        () => {
          // A failed probe was counted by #settle (timeout) or by the reset it caused.
        },
      );
    }
  }
}

/** Log lines from a child: bounded by a token bucket, drops counted and reported. */
class LogGate {
  readonly #sink: (entry: ProcessProviderLogEntry) => void;
  #tokens = LOG_BURST;
  #refilledAt = Date.now();
  #dropped = 0;
  #flushTimer: NodeJS.Timeout | undefined;

  constructor(sink: (entry: ProcessProviderLogEntry) => void) {
    this.#sink = sink;
  }

  host(
    level: ProcessProviderLogEntry['level'],
    message: string,
    fields: Record<string, unknown>,
  ): void {
    this.#emit({ level, message, fields, source: 'host' });
  }

  child(entry: ProcessProviderLogEntry): void {
    const now = Date.now();
    this.#tokens = Math.min(
      LOG_BURST,
      this.#tokens + ((now - this.#refilledAt) / 1_000) * LOG_LINES_PER_SECOND,
    );
    this.#refilledAt = now;
    if (this.#tokens < 1) {
      this.#dropped++;
      // Reported with the next line let through, or within a second if none comes.
      this.#flushTimer ??= setTimeout(() => this.flush(), 1_000).unref();
      return;
    }
    this.#tokens--;
    this.flush();
    this.#emit(entry);
  }

  flush(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    if (this.#dropped === 0) return;
    const dropped = this.#dropped;
    this.#dropped = 0;
    this.#emit({
      level: 'warn',
      message: 'provider log lines dropped',
      fields: { dropped, limitPerSecond: LOG_LINES_PER_SECOND },
      source: 'host',
    });
  }

  #emit(entry: ProcessProviderLogEntry): void {
    try {
      this.#sink(entry);
    } catch {
      // A failing log sink must not break the provider: the line is lost, nothing else.
    }
  }
}

function resolveOptions(options: ProcessProviderOptions): ResolvedOptions {
  const invalid = (message: string) =>
    new ProviderError('DSO_PROVIDER_INVALID_CONFIG', message, {
      ...(typeof options?.name === 'string' ? { provider: options.name } : {}),
    });
  if (typeof options !== 'object' || options === null) {
    throw invalid('createProcessProvider: options are required');
  }
  const { name } = options;
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) {
    throw invalid(
      `provider name ${JSON.stringify(name)} must be letters, digits, _ . - (at most 64)`,
    );
  }
  const positive = (value: number | undefined, fallback: number, what: string) => {
    if (value === undefined) return fallback;
    if (!Number.isInteger(value) || value <= 0) {
      throw invalid(
        `provider ${name}: ${what} must be a positive whole number, got ${String(value)}`,
      );
    }
    return value;
  };
  const callTimeoutMs = positive(options.callTimeoutMs, DEFAULT_CALL_TIMEOUT_MS, 'callTimeoutMs');
  const startTimeoutMs = positive(
    options.startTimeoutMs,
    Math.max(callTimeoutMs, MIN_START_TIMEOUT_MS),
    'startTimeoutMs',
  );
  const failureThreshold = positive(
    options.failureThreshold,
    DEFAULT_FAILURE_THRESHOLD,
    'failureThreshold',
  );
  const baseDelayMs = positive(
    options.restart?.baseDelayMs,
    DEFAULT_RESTART_BASE_DELAY_MS,
    'restart.baseDelayMs',
  );
  const maxDelayMs = positive(
    options.restart?.maxDelayMs,
    Math.max(DEFAULT_RESTART_MAX_DELAY_MS, baseDelayMs),
    'restart.maxDelayMs',
  );
  if (maxDelayMs < baseDelayMs) {
    throw invalid(`provider ${name}: restart.maxDelayMs must not be below restart.baseDelayMs`);
  }
  const maxMessageBytes = positive(
    options.maxMessageBytes,
    DEFAULT_MAX_MESSAGE_BYTES,
    'maxMessageBytes',
  );
  if (maxMessageBytes < MIN_MAX_MESSAGE_BYTES) {
    throw invalid(
      `provider ${name}: maxMessageBytes must be at least ${MIN_MAX_MESSAGE_BYTES}, got ${maxMessageBytes}`,
    );
  }
  const cwd = options.resolveFrom ?? process.cwd();
  if (typeof cwd !== 'string' || !isAbsolute(cwd)) {
    throw invalid(`provider ${name}: resolveFrom must be an absolute directory`);
  }
  if (!existsSync(cwd)) {
    throw invalid(`provider ${name}: resolveFrom ${cwd} does not exist: create the plugins folder`);
  }
  // One mechanism: a module becomes the command [node, ...execArgv, runner, module].
  let command: string[];
  if (options.command !== undefined && options.module !== undefined) {
    throw invalid(
      `provider ${name}: give either module (a JavaScript provider the SDK's runner hosts) or ` +
        'command (a child that speaks the protocol itself), not both',
    );
  }
  if (options.command !== undefined) {
    if (
      !Array.isArray(options.command) ||
      options.command.length === 0 ||
      !options.command.every((part) => typeof part === 'string' && part !== '')
    ) {
      throw invalid(
        `provider ${name}: command must be a non-empty array of non-empty strings, the child's ` +
          "argv, e.g. ['python3', '/opt/dso/provider.py']",
      );
    }
    if (options.execArgv !== undefined) {
      throw invalid(
        `provider ${name}: execArgv are Node arguments of the runner; with command, put the ` +
          "child's arguments in command itself",
      );
    }
    command = [...options.command];
  } else {
    if (typeof options.module !== 'string' || options.module === '') {
      throw invalid(
        `provider ${name}: give module (a package name or an absolute file of a JavaScript ` +
          "provider) or command (the argv of a child that speaks PROTOCOL.md, e.g. ['python3', '/opt/dso/provider.py'])",
      );
    }
    const execArgv = options.execArgv ?? [];
    const runner = findRunner();
    if (runner.endsWith('.ts') && !execArgv.some((argument) => argument.includes('tsx'))) {
      throw invalid(
        `provider ${name}: the provider runner is TypeScript source here (${runner}): build ` +
          "@dso/provider-sdk, or pass execArgv ['--conditions=@dso/source', '--import', 'tsx']",
      );
    }
    command = [process.execPath, ...execArgv, runner, options.module];
  }
  const env =
    options.env !== undefined
      ? { ...options.env }
      : Object.fromEntries(
          (['PATH', 'HOME'] as const).flatMap((key) => {
            const value = process.env[key];
            return value === undefined ? [] : [[key, value]];
          }),
        );
  return {
    name,
    command,
    cwd,
    env,
    config: options.config,
    callTimeoutMs,
    startTimeoutMs,
    failureThreshold,
    baseDelayMs,
    maxDelayMs,
    maxMessageBytes,
    onLog: options.onLog ?? (() => undefined),
  };
}

/**
 * The runner script beside this module: `dist/runner.js` in the built package (this code is
 * bundled into `dist/index.js`), `src/runner.ts` when run from source.
 */
function findRunner(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    join(here, 'runner.js'),
    join(here, '..', 'runner.ts'),
    join(here, '..', 'runner.js'),
  ];
  const found = candidates.find((candidate) => existsSync(candidate));
  if (found === undefined) {
    throw new ProviderError(
      'DSO_PROVIDER_INTERNAL',
      `the provider runner is missing (looked for ${candidates.join(', ')}): reinstall @dso/provider-sdk`,
    );
  }
  return found;
}
