import { chmod, chown, link, lstat, mkdir, mkdtemp, readFile, rm, unlink } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect } from 'node:net';
import { dirname, isAbsolute, join } from 'node:path';
import {
  DsoError,
  errorCode,
  formatReference,
  isDsoError,
  type Logger,
  MAX_REFERENCE_LENGTH,
  parseReference,
  type Redactor,
  type SecretReference,
} from '@dso/core';
import { z } from 'zod';
import type { Agent, AgentStatus, ContainerStatus, ResolvedEnvironmentValue } from './agent.js';
import { compileResolveAllow, type ResolveAllow } from './resolve-allow.js';

// ---------------------------------------------------------------------------------------------
// The agent's API for the `dso` CLI: HTTP/1.1 over a unix socket. The socket's file permissions
// are the whole access control (owner root, group `api.socketGroup`, mode `api.socketMode`):
// anyone who can connect can call every route. Hence the rule "a caller can never make the agent
// load a provider or read a path with configuration of the caller's choosing": no route takes
// provider configuration or a file path. Most routes report what the agent already knows
// (references, versions, counts: never a value) or ask it to do what it does on its own anyway
// (reconcile, rotate).
//
// One route answers with values: `POST /v1/resolve`, for `dso up`, which must put `dso://`
// values into a container's environment when it creates it. A caller names references only, in
// the one grammar (`parseReference`): it picks among the providers the agent's owner configured
// and can pass neither a provider's configuration nor a path outside a provider's store. What it
// may read is `api.resolveAllow`, checked for every reference before anything is resolved;
// empty (the default) resolves nothing. Who the caller is is not checked: the peer's uid/gid/pid
// would come from SO_PEERCRED, which Node does not expose without a native addon, so every member
// of `socketGroup` can read everything the allow list matches. The allow list is the policy, and
// the agent's owner writes it knowing that (the config's documentation says so).
// ---------------------------------------------------------------------------------------------

/** The longest wait for a request's headers. */
export const API_HEADERS_TIMEOUT_MS = 5_000;
/** The longest a whole request may take to arrive. */
export const API_REQUEST_TIMEOUT_MS = 10_000;
/** How long an idle kept-alive connection stays open. */
export const API_KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Connections open at once; more are refused. */
export const API_MAX_CONNECTIONS = 32;
/** Between two `heartbeat` lines of `GET /v1/events` (under the socket's idle timeout). */
export const API_EVENTS_HEARTBEAT_MS = 5_000;
/** Event streams open at once (each holds one of the {@link API_MAX_CONNECTIONS}). */
export const API_MAX_EVENT_STREAMS = 8;
/** Unread bytes of an events stream past which its reader is dropped. */
export const API_EVENTS_MAX_BUFFERED_BYTES = 1024 * 1024;
/** How long `close()` lets a response in progress finish before cutting its connection. */
export const API_CLOSE_GRACE_MS = 2_000;
/** The largest request body of a route other than `POST /v1/resolve`. Larger is a 413. */
export const API_MAX_BODY_BYTES = 1024;
/** The most references one `POST /v1/resolve` may name. */
export const API_MAX_RESOLVE_REFERENCES = 256;
/** The largest body of `POST /v1/resolve`: its most references at their longest, and room for JSON. */
export const API_MAX_RESOLVE_BODY_BYTES =
  API_MAX_RESOLVE_REFERENCES * (MAX_REFERENCE_LENGTH + 8) + 1024;
/**
 * How long `POST /v1/resolve` may take once its request arrived: the providers' own deadline
 * (30 s by default) with room to spare. The socket is kept open that long for it.
 */
export const API_RESOLVE_TIMEOUT_MS = 60_000;
/** How long start-up waits for an answer on an existing socket before calling it in use. */
export const API_PROBE_TIMEOUT_MS = 1_000;
/** The default place the group name of `api.socketGroup` is looked up. */
export const DEFAULT_GROUP_FILE = '/etc/group';

// sockaddr_un.sun_path is 108 bytes with its terminating NUL.
const MAX_SOCKET_PATH_BYTES = 107;
// The staged socket's path is `<dir>/.api-XXXXXX/s`: this many bytes after the directory.
const STAGED_SUFFIX_BYTES = '/.api-XXXXXX/s'.length;
// A provider's state is reported as at most this many scalar fields.
const MAX_STATE_FIELDS = 16;
const MAX_STATE_STRING = 64;
const STATE_KEY = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
const MAX_NAME_CHARS = 214;

/** A provider as the agent's owner describes it to {@link startApiServer}. */
export interface ApiProviderInfo {
  /** The configured name, e.g. `local` or `prod-vault`. */
  name: string;
  /** The configured type: a built-in type or a package name. */
  type: string;
  /**
   * What the provider reports about itself (a process provider's `state()`: status, breaker,
   * pid, restarts, …). Only scalar fields with short names are passed on; anything nested is
   * dropped, so a config object handed in by mistake cannot reach a caller.
   */
  state?: unknown;
}

/** One provider in {@link ApiStatus}. */
export interface ApiProvider {
  name: string;
  type: string;
  state?: Record<string, string | number | boolean | null>;
}

/** One container in {@link ApiStatus}: references and versions, never a value. */
export interface ApiContainer {
  id: string;
  files?: Array<{ name: string; reference: string; provider: string; version: string }>;
  /** Its `dso://` environment variables (`name` is the variable) with their current versions. */
  env?: Array<{ name: string; reference: string; provider: string; version: string }>;
  deliveredAt?: number;
  lastAction: ContainerStatus['lastAction'];
}

/**
 * The body of `GET /v1/status`. A contract of its own (`v1`), built field by field from
 * {@link AgentStatus}: a field added to the agent's status reaches callers only when it is
 * added here too.
 */
export interface ApiStatus {
  /** When the agent started, ms since the epoch; null before it did. */
  startedAt: number | null;
  containers: ApiContainer[];
  queue: AgentStatus['queue'];
  cache: AgentStatus['cache'];
  providers: ApiProvider[];
}

/** The body of `POST /v1/reconcile` (202). */
export interface ApiReconcileResult {
  /** Managed containers queued for a check. */
  containers: number;
}

/** The body of `POST /v1/rotate` (200). */
export interface ApiRotateResult {
  /** Running managed containers selected (all of them without a `containerId`). */
  containers: number;
  /** Distinct secrets they use, each asked from its provider again, past the cache. */
  secrets: number;
}

/** One value in {@link ApiResolveResult}. */
export interface ApiResolvedValue {
  /** The reference as asked, formatted. */
  reference: string;
  /** The provider that answered (the default one for a reference without a provider). */
  provider: string;
  /** The version it answered with. */
  version: string;
  /** The value's bytes, base64. */
  value: string;
}

/** The body of `POST /v1/resolve` (200): one value per reference asked, in the same order. */
export interface ApiResolveResult {
  values: ApiResolvedValue[];
}

/** The body of every answer that is not 2xx. */
export interface ApiErrorBody {
  error: string;
  code: string;
}

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /** Absolute path of the socket (`api.socket`). Its directory is created 0755 if missing. */
  socketPath: string;
  /** Permission bits of the socket (`api.socketMode`), e.g. `0o660`. */
  socketMode: number;
  /** Group that owns the socket (`api.socketGroup`): a name from the group file or a gid. */
  socketGroup?: string | number;
  /** What the routes read and call. */
  agent: Pick<Agent, 'status' | 'reconcile' | 'rotate' | 'resolveEnvironment' | 'subscribe'>;
  /**
   * `api.resolveAllow`: the `dso://` reference patterns `POST /v1/resolve` may resolve (grammar
   * in `resolve-allow.ts`). Empty: that route resolves nothing.
   * @default []
   */
  resolveAllow?: readonly string[];
  /** The provider a reference (or pattern) without one means. @default 'local' */
  defaultProvider?: string;
  /** The configured providers, read at each `GET /v1/status`. */
  providers?: () => ApiProviderInfo[];
  /** Requests are logged at debug (method, route, status, duration); failures at warn. */
  logger: Logger;
  /** Every string sent passes through it. */
  redactor?: Redactor;
  /** Where a group name is looked up. @default DEFAULT_GROUP_FILE */
  groupFile?: string;
}

/** A listening API server. */
export interface ApiServer extends AsyncDisposable {
  /** The socket's path. */
  readonly path: string;
  /**
   * Stops accepting, removes the socket file if it is still this server's (same inode), lets
   * responses in progress finish (then cuts them). Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Serves the agent's API on a unix socket:
 * - `GET /v1/status` → {@link ApiStatus} (200)
 * - `POST /v1/reconcile` → {@link ApiReconcileResult} (202): every managed container queued
 * - `POST /v1/rotate` with `{ "containerId"?: string }` → {@link ApiRotateResult} (200): the
 *   secrets of the selected containers asked again past the cache, each rotated by its policy
 *   when its version changed; 404 `DSO_AGENT_CONTAINER_UNKNOWN` for an id no running managed
 *   container has
 * - `POST /v1/resolve` with `{ "references": ["dso://…", …] }` (1 to
 *   {@link API_MAX_RESOLVE_REFERENCES}) → {@link ApiResolveResult} (200, `Cache-Control:
 *   no-store`): 403 `DSO_AGENT_RESOLVE_DISABLED` while `resolveAllow` is empty, 403
 *   `DSO_AGENT_RESOLVE_DENIED` naming every reference no pattern allows (then nothing is
 *   resolved), 502 with the agent's code when a provider cannot answer. The values are written
 *   once and disposed; neither they nor the body are ever logged.
 * - `GET /v1/health` → `{ ok: true }` (200)
 *
 * and 400 `DSO_AGENT_API_BAD_REQUEST` (or `DSO_REFERENCE_INVALID`) for a body that is not what
 * the route takes, 404 for another path, 405 for another method, 413 for a body over
 * {@link API_MAX_BODY_BYTES} ({@link API_MAX_RESOLVE_BODY_BYTES} for `/v1/resolve`); a route
 * that takes no body discards a small one unread. Errors are {@link ApiErrorBody}. No route takes
 * provider configuration or a path.
 *
 * The socket is never reachable with other permissions than `socketMode` and `socketGroup`: it
 * is bound inside a fresh 0700 directory beside its final path, given its mode and group there,
 * then hard-linked into place (a link fails when the name exists, so an agent already serving
 * the path is never replaced), and the staging directory removed. A socket file nothing answers
 * on (left by a crash) is removed first; one something answers on is refused.
 *
 * @example
 * const api = await startApiServer({
 *   socketPath: config.api.socket,
 *   socketMode: config.api.socketMode,
 *   socketGroup: config.api.socketGroup,
 *   agent,
 *   logger,
 *   redactor,
 * });
 * // on shutdown
 * await api.close();
 * @throws DsoError DSO_AGENT_API_IN_USE when something answers on the socket (another agent)
 * @throws DsoError DSO_AGENT_API_GROUP when the group is unknown or the agent may not give the socket to it
 * @throws DsoError DSO_AGENT_API_PATH_TAKEN when the path exists and is not a socket
 * @throws DsoError DSO_AGENT_API_SOCKET_PATH when the path is relative or too long
 * @throws DsoError DSO_AGENT_API_LISTEN_FAILED when the directory or socket cannot be created
 * @throws DsoError DSO_AGENT_RESOLVE_ALLOW_INVALID when a `resolveAllow` pattern is malformed
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { socketPath, socketMode, logger } = options;
  checkSocketPath(socketPath);
  // Compiled before anything is created: a bad pattern stops the start, with its fix.
  const allow = compileResolveAllow(options.resolveAllow ?? [], options.defaultProvider ?? 'local');
  if (!Number.isInteger(socketMode) || socketMode < 0 || socketMode > 0o777) {
    throw new RangeError(`socketMode must be permission bits 0..0o777, got ${String(socketMode)}`);
  }
  const gid =
    options.socketGroup === undefined
      ? undefined
      : await resolveGroup(options.socketGroup, options.groupFile ?? DEFAULT_GROUP_FILE);

  const directory = dirname(socketPath);
  // Created 0755 (less under a stricter umask) when missing; an existing one is left as it is.
  await mkdir(directory, { recursive: true, mode: 0o755 }).catch((error: unknown) => {
    throw listenFailed(socketPath, `cannot create its directory ${directory}`, error);
  });

  const server = createApiHttpServer(options, allow);
  // Why a staging directory rather than `listen` then `chmod`: between the two the socket would
  // exist with the umask's permissions, and a umask of 0 makes it world-writable. Changing the
  // process umask around `listen` would also change it for file writes running meanwhile on
  // libuv's threads. Inside a fresh 0700 directory nobody else can reach the socket whatever its
  // mode, and the link below publishes it with its final mode and group already set.
  const staging = await mkdtemp(join(directory, '.api-')).catch((error: unknown) => {
    throw listenFailed(socketPath, `cannot create a staging directory in ${directory}`, error);
  });
  const staged = join(staging, 's');
  let identity: FileIdentity;
  try {
    await listen(server, staged).catch((error: unknown) => {
      throw listenFailed(socketPath, 'cannot listen', error);
    });
    await chmod(staged, socketMode).catch((error: unknown) => {
      throw listenFailed(socketPath, 'cannot set the socket mode', error);
    });
    if (gid !== undefined) {
      await chown(staged, -1, gid).catch((error: unknown) => {
        throw new DsoError(
          'DSO_AGENT_API_GROUP',
          `cannot give the API socket to group ${String(options.socketGroup)} (gid ${gid}): the agent must run as root or be a member of that group`,
          { cause: error, group: options.socketGroup, gid },
        );
      });
    }
    identity = identityOf(await lstat(staged));
    await publish(staged, socketPath, logger);
  } catch (error) {
    await stopServer(server);
    throw error;
  } finally {
    // Removes the staged name only: a published socket lives on under its final name.
    await rm(staging, { recursive: true, force: true }).catch((error: unknown) => {
      logger.warn({ err: error, directory: staging }, 'could not remove the api staging directory');
    });
  }
  server.on('error', (error) => {
    logger.warn({ err: error, code: errorCode(error) }, 'api server error');
  });
  logger.info(
    {
      socket: socketPath,
      mode: `0${socketMode.toString(8)}`,
      ...(gid === undefined ? {} : { gid }),
    },
    'api listening',
  );

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      const stopped = stopServer(server);
      // Listening stopped with server.close(): remove the name now, so that a caller meanwhile
      // reads "not running" and a new agent can take the path while these responses finish.
      await removeIfOurs(socketPath, identity, logger);
      await stopped;
    })();
    return closing;
  };
  return {
    path: socketPath,
    close,
    [Symbol.asyncDispose]: close,
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

const ROUTES: ReadonlyMap<string, 'GET' | 'POST'> = new Map([
  ['/v1/status', 'GET'],
  ['/v1/reconcile', 'POST'],
  ['/v1/rotate', 'POST'],
  ['/v1/resolve', 'POST'],
  ['/v1/health', 'GET'],
  ['/v1/events', 'GET'],
]);
/** The routes that read their body; every other one discards it. */
const BODY_ROUTES = new Set(['/v1/rotate', '/v1/resolve']);
/** Statuses of the agent's own codes; any other DsoError is a 500 (a 502 for `/v1/resolve`). */
const STATUS_OF_CODE: ReadonlyMap<string, number> = new Map([
  ['DSO_AGENT_NOT_RUNNING', 503],
  ['DSO_AGENT_CONTAINER_UNKNOWN', 404],
]);
const CONTAINER_ID = /^[0-9a-f]{12,64}$/;
const RotateBody = z.strictObject({
  containerId: z
    .string()
    .regex(CONTAINER_ID, {
      error: 'must be a container id: 12 to 64 lowercase hex characters (see `dso status`)',
    })
    .optional(),
});
const ResolveBody = z.strictObject({
  references: z
    .array(
      z.string().max(MAX_REFERENCE_LENGTH, {
        error: `must be at most ${MAX_REFERENCE_LENGTH} characters`,
      }),
    )
    .min(1, { error: 'must name at least one reference' })
    .max(API_MAX_RESOLVE_REFERENCES, {
      error: `must name at most ${API_MAX_RESOLVE_REFERENCES} references: split the call`,
    }),
});
const JSON_TYPE = 'application/json; charset=utf-8';
const INTERNAL: ApiErrorBody = {
  error: 'internal error: see the agent log',
  code: 'DSO_AGENT_API_INTERNAL',
};

function createApiHttpServer(options: ApiServerOptions, allow: ResolveAllow): Server {
  const { agent, logger, redactor } = options;
  const clean = (text: string) => (redactor ? redactor.redact(text) : text);
  // One reconciliation at a time, however many callers ask: each lists every container.
  let reconciling: Promise<ApiReconcileResult> | undefined;
  /** Open `GET /v1/events` responses: ended first when the server closes. */
  const eventStreams = new Set<ServerResponse>();

  const server = createServer(
    {
      requestTimeout: API_REQUEST_TIMEOUT_MS,
      headersTimeout: API_HEADERS_TIMEOUT_MS,
      // How often node checks the two timeouts above (its default is 30 s).
      connectionsCheckingInterval: 1_000,
      maxHeaderSize: 8 * 1024,
    },
    (request, response) => {
      const started = performance.now();
      const route = routeOf(request.url);
      response.once('close', () => {
        // The route, never the URL: a query string or an unknown path is the caller's text.
        logger.debug(
          {
            method: request.method,
            route: route ?? 'unknown',
            status: response.statusCode,
            durationMs: Math.round((performance.now() - started) * 100) / 100,
          },
          'api request',
        );
      });
      void handle(request, response, route).catch((error: unknown) => {
        logger.warn({ err: error, code: errorCode(error) }, 'api request failed');
        if (!response.headersSent) send(response, 500, INTERNAL, clean);
        else response.destroy();
      });
    },
  );
  EVENT_STREAMS.set(server, eventStreams);
  server.keepAliveTimeout = API_KEEP_ALIVE_TIMEOUT_MS;
  server.timeout = API_REQUEST_TIMEOUT_MS;
  server.maxHeadersCount = 64;
  server.maxRequestsPerSocket = 100;
  server.maxConnections = API_MAX_CONNECTIONS;

  async function handle(
    request: IncomingMessage,
    response: ServerResponse,
    route: string | undefined,
  ): Promise<void> {
    const takesBody = route !== undefined && BODY_ROUTES.has(route);
    const limit = route === '/v1/resolve' ? API_MAX_RESOLVE_BODY_BYTES : API_MAX_BODY_BYTES;
    const body = await readBody(request, limit, takesBody);
    if (body === undefined) {
      response.shouldKeepAlive = false;
      send(
        response,
        413,
        {
          error: `request body over ${limit} bytes${takesBody ? '' : ': this route takes no body'}`,
          code: 'DSO_AGENT_API_BODY_TOO_LARGE',
        },
        clean,
      );
      return;
    }
    const method = route === undefined ? undefined : ROUTES.get(route);
    if (route === undefined || method === undefined) {
      send(response, 404, { error: 'not found', code: 'DSO_AGENT_API_NOT_FOUND' }, clean);
      return;
    }
    if (request.method !== method) {
      response.setHeader('Allow', method);
      send(
        response,
        405,
        { error: `method not allowed: use ${method}`, code: 'DSO_AGENT_API_METHOD' },
        clean,
      );
      return;
    }
    if (route === '/v1/health') {
      send(response, 200, { ok: true }, clean);
      return;
    }
    if (route === '/v1/status') {
      send(response, 200, toApiStatus(agent.status(), readProviders()), clean);
      return;
    }
    if (route === '/v1/rotate') {
      await handleRotate(body, response);
      return;
    }
    if (route === '/v1/resolve') {
      await handleResolve(body, response);
      return;
    }
    if (route === '/v1/events') {
      streamEvents(response);
      return;
    }
    try {
      if (reconciling !== undefined) logger.debug('reconcile already running, joined');
      reconciling ??= Promise.resolve()
        .then(() => agent.reconcile())
        .then(({ containers }) => ({ containers }))
        .finally(() => {
          reconciling = undefined;
        });
      send(response, 202, await reconciling, clean);
    } catch (error) {
      const code = errorCode(error);
      logger.warn({ err: error, code }, 'reconcile on request failed');
      if (isDsoError(error) && code !== undefined) {
        // A DsoError's message names references and ids and says what to do, never a value;
        // it is redacted all the same. Anything else stays in the log.
        send(
          response,
          code === 'DSO_AGENT_NOT_RUNNING' ? 503 : 500,
          { error: error.message, code },
          clean,
        );
      } else {
        send(response, 500, INTERNAL, clean);
      }
    }
  }

  async function handleRotate(body: Buffer, response: ServerResponse): Promise<void> {
    const parsed = parseBody(body, RotateBody, '{ "containerId"?: "<id>" }', true);
    if (!parsed.ok) {
      send(response, 400, parsed.error, clean);
      return;
    }
    const { containerId } = parsed.value;
    try {
      const result = await agent.rotate(containerId === undefined ? {} : { containerId });
      send(response, 200, { containers: result.containers, secrets: result.secrets }, clean);
    } catch (error) {
      sendAgentError(response, error, 'rotate on request failed', 500);
    }
  }

  /**
   * `GET /v1/events`: one JSON line per {@link AgentEvent} from now on (deliveries, failures
   * with their code and reference, rotations, replacements), a `heartbeat` line every
   * {@link API_EVENTS_HEARTBEAT_MS}, until the caller hangs up or the agent stops. A caller that
   * reads too slowly (over {@link API_EVENTS_MAX_BUFFERED_BYTES} unread) gets a `dropped` line
   * and the end of the stream, never a growing buffer. No event holds a value.
   */
  function streamEvents(response: ServerResponse): void {
    if (eventStreams.size >= API_MAX_EVENT_STREAMS) {
      // Each stream holds a connection: followers must not starve status, rotate or dso up.
      send(
        response,
        503,
        {
          error: `${API_MAX_EVENT_STREAMS} event streams are open already: stop one (dso events) and try again`,
          code: 'DSO_AGENT_API_BUSY',
        },
        clean,
      );
      return;
    }
    response.writeHead(200, {
      'Content-Type': 'application/x-ndjson; charset=utf-8',
      'Cache-Control': 'no-store',
    });
    const line = (event: object) => `${clean(JSON.stringify(event))}\n`;
    const stop = () => {
      unsubscribe();
      clearInterval(heartbeat);
      eventStreams.delete(response);
    };
    const unsubscribe = agent.subscribe((event) => {
      if (response.writableLength > API_EVENTS_MAX_BUFFERED_BYTES) {
        stop();
        response.end(line({ type: 'dropped', at: Date.now(), reason: 'reader too slow' }));
        return;
      }
      response.write(line(event));
    });
    const heartbeat = setInterval(
      () => response.write(line({ type: 'heartbeat', at: Date.now() })),
      API_EVENTS_HEARTBEAT_MS,
    );
    heartbeat.unref();
    eventStreams.add(response);
    response.once('close', stop);
    response.write(line({ type: 'subscribed', at: Date.now() }));
  }

  async function handleResolve(body: Buffer, response: ServerResponse): Promise<void> {
    const parsed = parseBody(body, ResolveBody, '{ "references": ["dso://…"] }', false);
    if (!parsed.ok) {
      send(response, 400, parsed.error, clean);
      return;
    }
    const references: SecretReference[] = [];
    for (const [index, text] of parsed.value.references.entries()) {
      let reference: SecretReference;
      try {
        reference = parseReference(text);
      } catch (error) {
        if (!isDsoError(error)) throw error;
        // The parser's message quotes a reference, never text that does not look like one.
        send(
          response,
          400,
          { error: `references[${index}]: ${error.message}`, code: error.code },
          clean,
        );
        return;
      }
      if (reference.scheme !== 'dso') {
        send(
          response,
          400,
          {
            error: `references[${index}] ${formatReference(reference)} is a file reference: the agent delivers dsofile:// references itself (container label dso.file.<name>); only dso:// references are resolved here`,
            code: 'DSO_AGENT_API_BAD_REQUEST',
          },
          clean,
        );
        return;
      }
      references.push(reference);
    }
    // The policy, before anything is resolved: all allowed, or nothing happens.
    if (allow.empty) {
      send(
        response,
        403,
        {
          error:
            'the agent resolves no dso:// reference for callers until api.resolveAllow lists what they may read: add patterns such as "dso://app/**" to api.resolveAllow in dso.yaml and restart the agent, or use dsofile:// references (delivered as files, no resolve needed)',
          code: 'DSO_AGENT_RESOLVE_DISABLED',
        },
        clean,
      );
      return;
    }
    const denied = [
      ...new Set(references.filter((reference) => !allow.allows(reference)).map(formatReference)),
    ];
    if (denied.length > 0) {
      const shown =
        denied.slice(0, 10).join(', ') +
        (denied.length > 10 ? ` and ${denied.length - 10} more` : '');
      logger.warn(
        { denied: denied.slice(0, 10), count: denied.length },
        'resolve refused by api.resolveAllow',
      );
      send(
        response,
        403,
        {
          error: `api.resolveAllow allows no pattern for ${shown}: add a pattern to api.resolveAllow in dso.yaml (e.g. "${denied[0]}") and restart the agent`,
          code: 'DSO_AGENT_RESOLVE_DENIED',
        },
        clean,
      );
      return;
    }
    // Cancelled when the caller goes away, and bounded: a provider that hangs must not hold the
    // connection forever. The socket's idle timeout is raised to match for this request only.
    const gone = new AbortController();
    response.once('close', () => gone.abort());
    response.setTimeout(API_RESOLVE_TIMEOUT_MS + 5_000);
    const signal = AbortSignal.any([gone.signal, AbortSignal.timeout(API_RESOLVE_TIMEOUT_MS)]);
    let values: ResolvedEnvironmentValue[];
    try {
      values = await agent.resolveEnvironment(references, { signal });
    } catch (error) {
      sendAgentError(response, error, 'resolve on request failed', 502);
      return;
    }
    try {
      if (response.destroyed) return;
      sendValues(response, values, clean);
      logger.info(
        {
          count: values.length,
          references: values.slice(0, 20).map(({ reference }) => reference),
          providers: [...new Set(values.map(({ provider }) => provider))],
        },
        'environment values resolved for a caller',
      );
    } finally {
      for (const { value } of values) value.dispose();
    }
  }

  /** Answers a failed agent call: its own code and message when it is a DsoError, else 500. */
  function sendAgentError(
    response: ServerResponse,
    error: unknown,
    message: string,
    otherStatus: number,
  ): void {
    const code = errorCode(error);
    logger.warn({ err: error, code }, message);
    if (response.destroyed) return;
    if (isDsoError(error) && code !== undefined) {
      // A DsoError's message names references and ids and says what to do, never a value; it is
      // redacted all the same. A cause with a code of its own (a provider's) is named after it.
      const causeCode = errorCode(error.cause);
      const causeText =
        causeCode !== undefined && error.cause instanceof Error && error.cause.message !== ''
          ? `: ${error.cause.message} (${causeCode})`
          : '';
      send(
        response,
        STATUS_OF_CODE.get(code) ?? otherStatus,
        { error: `${error.message}${causeText}`, code },
        clean,
      );
    } else {
      send(response, 500, INTERNAL, clean);
    }
  }

  function readProviders(): ApiProviderInfo[] {
    if (options.providers === undefined) return [];
    try {
      return options.providers();
    } catch (error) {
      logger.warn({ err: error, code: errorCode(error) }, 'provider states unavailable');
      return [];
    }
  }

  return server;
}

/** The known route a request's URL names (query string ignored), or undefined. */
function routeOf(url: string | undefined): string | undefined {
  const raw = url ?? '/';
  const query = raw.indexOf('?');
  const pathname = query === -1 ? raw : raw.slice(0, query);
  return ROUTES.has(pathname) ? pathname : undefined;
}

/**
 * Reads a request's body up to `limit` bytes: its bytes when `keep`, else an empty buffer (read
 * and dropped). Undefined when it is (or announces it is) larger: then it is left unread and the
 * connection is not reused.
 */
function readBody(
  request: IncomingMessage,
  limit: number,
  keep: boolean,
): Promise<Buffer | undefined> {
  const length = request.headers['content-length'];
  if (length === undefined && request.headers['transfer-encoding'] === undefined) {
    return Promise.resolve(Buffer.alloc(0));
  }
  if (length !== undefined && Number(length) > limit) return Promise.resolve(undefined);
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let bytes = 0;
    const done = (ok: boolean) => {
      request.off('data', onData);
      request.off('end', onEnd);
      request.off('error', onEnd);
      resolve(ok ? Buffer.concat(chunks) : undefined);
    };
    const onData = (chunk: Buffer) => {
      bytes += chunk.byteLength;
      if (bytes > limit) {
        request.pause();
        done(false);
        return;
      }
      if (keep) chunks.push(chunk);
    };
    // An aborted request ends here too; its answer then goes nowhere.
    const onEnd = () => done(bytes <= limit);
    request.on('data', onData);
    request.once('end', onEnd);
    request.once('error', onEnd);
  });
}

type Parsed<T> = { ok: true; value: T } | { ok: false; error: ApiErrorBody };

/**
 * A route's JSON body checked against its schema. The 400's message lists what is wrong by
 * field, never the caller's text (which may be anything, even a value sent by mistake).
 */
function parseBody<T>(
  body: Buffer,
  schema: z.ZodType<T>,
  shape: string,
  emptyIsObject: boolean,
): Parsed<T> {
  const bad = (problem: string): Parsed<T> => ({
    ok: false,
    error: { error: `${problem}; send ${shape}`, code: 'DSO_AGENT_API_BAD_REQUEST' },
  });
  let json: unknown;
  if (body.byteLength === 0) {
    if (!emptyIsObject) return bad('the request has no body');
    json = {};
  } else {
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      return bad('the request body is not JSON');
    }
  }
  const result = schema.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const problems = result.error.issues.slice(0, 5).map((issue) => {
    const where = issue.path.length === 0 ? 'the body' : issue.path.map(String).join('.');
    return `${where}: ${issue.message}`;
  });
  return bad(`the request body is not what this route takes (${problems.join('; ')})`);
}

/**
 * Writes the values of `POST /v1/resolve`. The values skip the redactor (they are the answer:
 * the redactor knows them, so it would blank them); every other string passes through it. The
 * body is one buffer, zeroed once written. (The base64 text made on the way is a V8 string,
 * which cannot be zeroed: it is dropped at once and left to the collector.)
 */
function sendValues(
  response: ServerResponse,
  values: readonly ResolvedEnvironmentValue[],
  clean: (text: string) => string,
): void {
  const parts = values.map(
    ({ reference, provider, version, value }) =>
      `{"reference":${JSON.stringify(clean(reference))},"provider":${JSON.stringify(clean(provider))},"version":${JSON.stringify(clean(version))},"value":"${value.reveal().toString('base64')}"}`,
  );
  const body = Buffer.from(`{"values":[${parts.join(',')}]}`, 'utf8');
  parts.length = 0;
  response.writeHead(200, {
    'Content-Type': JSON_TYPE,
    'Content-Length': body.byteLength,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  response.end(body, () => body.fill(0));
}

function send(
  response: ServerResponse,
  status: number,
  payload: unknown,
  clean: (text: string) => string,
): void {
  // Every string goes through the redactor one by one, so the JSON stays valid.
  const body = JSON.stringify(payload, (_key, value: unknown) =>
    typeof value === 'string' ? clean(value) : value,
  );
  response.writeHead(status, {
    'Content-Type': JSON_TYPE,
    'Content-Length': Buffer.byteLength(body),
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  response.end(body);
}

// ---------------------------------------------------------------------------------------------
// The status as sent
// ---------------------------------------------------------------------------------------------

function toApiStatus(status: AgentStatus, providers: ApiProviderInfo[]): ApiStatus {
  return {
    startedAt: status.startedAt ?? null,
    containers: status.containers.map(toApiContainer),
    queue: {
      depth: status.queue.depth,
      inFlight: status.queue.inFlight,
      shed: status.queue.shed,
    },
    cache: {
      entries: status.cache.entries,
      hits: status.cache.hits,
      misses: status.cache.misses,
      staleServed: status.cache.staleServed,
    },
    providers: providers.map(toApiProvider),
  };
}

function toApiContainer(container: ContainerStatus): ApiContainer {
  const { lastAction } = container;
  return {
    id: container.id,
    ...(container.files === undefined
      ? {}
      : {
          files: container.files.map(({ name, reference, provider, version }) => ({
            name,
            reference,
            provider,
            version,
          })),
        }),
    ...(container.env === undefined
      ? {}
      : {
          env: container.env.map(({ name, reference, provider, version }) => ({
            name,
            reference,
            provider,
            version,
          })),
        }),
    ...(container.deliveredAt === undefined ? {} : { deliveredAt: container.deliveredAt }),
    lastAction: {
      trigger: lastAction.trigger,
      at: lastAction.at,
      outcome: lastAction.outcome,
      ...(lastAction.code === undefined ? {} : { code: lastAction.code }),
      ...(lastAction.reference === undefined ? {} : { reference: lastAction.reference }),
    },
  };
}

function toApiProvider(provider: ApiProviderInfo): ApiProvider {
  const state = scalarFields(provider.state);
  return {
    name: String(provider.name).slice(0, MAX_NAME_CHARS),
    type: String(provider.type).slice(0, MAX_NAME_CHARS),
    ...(state === undefined ? {} : { state }),
  };
}

/** Up to {@link MAX_STATE_FIELDS} scalar fields with short names; anything else is dropped. */
function scalarFields(value: unknown): ApiProvider['state'] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const fields: Record<string, string | number | boolean | null> = {};
  let count = 0;
  for (const [key, field] of Object.entries(value)) {
    if (count >= MAX_STATE_FIELDS) break;
    if (!STATE_KEY.test(key)) continue;
    if (
      field === null ||
      typeof field === 'boolean' ||
      (typeof field === 'number' && Number.isFinite(field))
    ) {
      fields[key] = field;
    } else if (typeof field === 'string' && field.length <= MAX_STATE_STRING) {
      fields[key] = field;
    } else {
      continue;
    }
    count += 1;
  }
  return fields;
}

// ---------------------------------------------------------------------------------------------
// The socket file
// ---------------------------------------------------------------------------------------------

interface FileIdentity {
  dev: number;
  ino: number;
}

function identityOf(stats: { dev: number; ino: number }): FileIdentity {
  return { dev: stats.dev, ino: stats.ino };
}

function checkSocketPath(path: string): void {
  if (typeof path !== 'string' || !isAbsolute(path)) {
    throw new DsoError(
      'DSO_AGENT_API_SOCKET_PATH',
      `api.socket must be an absolute path, got ${JSON.stringify(path)}`,
      { socket: path },
    );
  }
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new DsoError(
      'DSO_AGENT_API_SOCKET_PATH',
      `api.socket ${path} is longer than ${MAX_SOCKET_PATH_BYTES} bytes, the limit of a unix socket path`,
      { socket: path },
    );
  }
  if (Buffer.byteLength(dirname(path)) + STAGED_SUFFIX_BYTES > MAX_SOCKET_PATH_BYTES) {
    throw new DsoError(
      'DSO_AGENT_API_SOCKET_PATH',
      `api.socket ${path} is in a directory too deep to stage the socket safely (its path must be at most ${MAX_SOCKET_PATH_BYTES - STAGED_SUFFIX_BYTES} bytes): choose a shorter path`,
      { socket: path },
    );
  }
}

/** A gid from a number, a numeric string, or a name in the group file. */
async function resolveGroup(group: string | number, groupFile: string): Promise<number> {
  if (typeof group === 'number' || /^\d+$/.test(group)) {
    const gid = Number(group);
    if (!Number.isSafeInteger(gid) || gid < 0 || gid > 4_294_967_294) {
      throw new DsoError('DSO_AGENT_API_GROUP', `api.socketGroup ${String(group)} is not a gid`, {
        group,
      });
    }
    return gid;
  }
  let text: string;
  try {
    text = await readFile(groupFile, 'utf8');
  } catch (error) {
    throw new DsoError(
      'DSO_AGENT_API_GROUP',
      `cannot read ${groupFile} to find group "${group}": give api.socketGroup as a numeric gid`,
      { cause: error, group },
    );
  }
  for (const line of text.split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  // Only the group file: a group from LDAP or another NSS source is given by its gid.
  throw new DsoError(
    'DSO_AGENT_API_GROUP',
    `group "${group}" (api.socketGroup) is not in ${groupFile}: create it (groupadd ${group}) or give its numeric gid`,
    { group },
  );
}

function listen(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ path }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** Each server's open events streams, which never end by themselves. */
const EVENT_STREAMS = new WeakMap<Server, Set<ServerResponse>>();

function stopServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) {
      resolve();
      return;
    }
    // An events stream has no end of its own: ended first, so close need not cut it.
    for (const stream of EVENT_STREAMS.get(server) ?? []) stream.end();
    const force = setTimeout(() => server.closeAllConnections(), API_CLOSE_GRACE_MS);
    force.unref();
    server.close(() => {
      clearTimeout(force);
      resolve();
    });
    server.closeIdleConnections();
  });
}

/**
 * Gives the staged socket its final name. `link` fails when the name exists, so of two agents
 * starting at once exactly one gets it; a name nothing answers on is removed and tried once more.
 */
async function publish(staged: string, target: string, logger: Logger): Promise<void> {
  for (let attempt = 0; ; attempt += 1) {
    try {
      await link(staged, target);
      return;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw listenFailed(target, 'cannot place the socket', error);
      }
      // Cleared once already and taken again meanwhile: another agent won the race.
      if (attempt > 0) throw inUse(target, 'another agent took it while this one started');
    }
    await removeStale(target, logger);
  }
}

/** Removes the socket at `path` when nothing answers on it; refuses anything else. */
async function removeStale(path: string, logger: Logger): Promise<void> {
  let before: Awaited<ReturnType<typeof lstat>>;
  try {
    before = await lstat(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw listenFailed(path, 'cannot inspect the existing file', error);
  }
  if (!before.isSocket()) {
    throw new DsoError(
      'DSO_AGENT_API_PATH_TAKEN',
      `${path} exists and is not a socket: move it away or set api.socket to another path`,
      { socket: path },
    );
  }
  const answer = await probe(path);
  if (answer === 'gone') return;
  if (answer === 'alive') throw inUse(path, 'an agent answers on it');
  if (answer === 'denied') {
    throw inUse(path, 'this agent may not connect to it to check whether another agent answers');
  }
  // Nothing listens: left behind by an agent that did not stop cleanly. Removed only if it is
  // still the file that was probed.
  const now = await lstat(path).catch(() => undefined);
  if (now === undefined || now.dev !== before.dev || now.ino !== before.ino) return;
  await unlink(path).catch((error: unknown) => {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw listenFailed(path, 'cannot remove the stale socket', error);
    }
  });
  logger.info({ socket: path }, 'stale api socket removed');
}

/** Whether something accepts connections on the socket at `path`. */
function probe(path: string): Promise<'alive' | 'dead' | 'gone' | 'denied'> {
  return new Promise((resolve) => {
    const socket = connect({ path });
    const finish = (answer: 'alive' | 'dead' | 'gone' | 'denied') => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answer);
    };
    // No answer in time (a full backlog, a stuck process) still means something holds it.
    const timer = setTimeout(() => finish('alive'), API_PROBE_TIMEOUT_MS);
    socket.once('connect', () => finish('alive'));
    socket.once('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED') finish('dead');
      else if (error.code === 'ENOENT') finish('gone');
      else if (error.code === 'EACCES' || error.code === 'EPERM') finish('denied');
      // EAGAIN (backlog full) and anything unknown: assume a listener rather than steal it.
      else finish('alive');
    });
  });
}

async function removeIfOurs(path: string, identity: FileIdentity, logger: Logger): Promise<void> {
  try {
    const now = await lstat(path);
    if (now.dev !== identity.dev || now.ino !== identity.ino) return; // another agent's now
    await unlink(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    logger.warn({ err: error, socket: path }, 'could not remove the api socket');
  }
}

function inUse(path: string, why: string): DsoError {
  return new DsoError(
    'DSO_AGENT_API_IN_USE',
    `the API socket ${path} is in use (${why}): stop the other agent, or set api.socket to another path`,
    { socket: path },
  );
}

function listenFailed(path: string, what: string, cause: unknown): DsoError {
  const reason = (cause as NodeJS.ErrnoException | undefined)?.code ?? String(cause);
  return new DsoError(
    'DSO_AGENT_API_LISTEN_FAILED',
    `${what} for the API socket ${path} (${reason}): check the directory's permissions or set api.socket`,
    { cause, socket: path },
  );
}
