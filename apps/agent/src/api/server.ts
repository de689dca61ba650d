import {
  API_HEADERS_TIMEOUT_MS,
  API_KEEP_ALIVE_TIMEOUT_MS,
  API_MAX_CONNECTIONS,
  API_REQUEST_TIMEOUT_MS,
  type Logger,
  type Redactor,
} from '@dso/core';
import type { Agent } from '../agent.js';
import { createHttpServer, type HttpConnectionStats } from '../http/serve.js';
import type { AuditSink } from '../reporting.js';
import { compileResolveAllow } from '../resolve-allow.js';
import { createEventStreams } from './events-stream.js';
import { INTERNAL_ERROR } from './respond.js';
import { createApiHandler } from './routes.js';
import { checkSocketPath, DEFAULT_GROUP_FILE, placeSocket, resolveGroup } from './socket-file.js';
import type { ApiProviderInfo } from './status.js';

// ---------------------------------------------------------------------------------------------
// The agent's API for the `dso` CLI: HTTP/1.1 over a unix socket, as the contract in @dso/core
// (`AGENT_API_ROUTES`) describes it. The socket's file permissions are the whole access control
// (owner root, group `api.socketGroup`, mode `api.socketMode`): anyone who can connect can call
// every route. Hence the rule "a caller can never make the agent load a provider or read a path
// with configuration of the caller's choosing": no route takes provider configuration or a file
// path. Most routes report what the agent already knows (references, versions, counts: never a
// value) or ask it to do what it does on its own anyway (reconcile, rotate).
//
// One route answers with values: `POST /v1/resolve` (resolve-route.ts). Who the caller is is not
// checked: the peer's uid/gid/pid would come from SO_PEERCRED, which Node does not expose
// without a native addon, so every member of `socketGroup` can read everything `api.resolveAllow`
// matches. The allow list is the policy, and the agent's owner writes it knowing that (the
// config's documentation says so).
//
// By job: server.ts (this: options and lifecycle), socket-file.ts (the socket's permissions and
// placement), routes.ts (dispatch and the small routes), resolve-route.ts, events-stream.ts,
// status.ts (the status as sent) and respond.ts (answers and request bodies), on the agent's
// hardened HTTP server (../http/serve.ts).
// ---------------------------------------------------------------------------------------------

/** How long `close()` lets a response in progress finish before cutting its connection. */
export const API_CLOSE_GRACE_MS = 2_000;

/**
 * The 503 of a connection opened while all {@link API_MAX_CONNECTIONS} have a request in
 * progress, or while the connections let in past them are all just opened (idle ones are closed
 * to make room, so this takes that many calls or streams, or a flood of new connections).
 */
const API_BUSY = {
  error: `the agent is busy: every connection of its API is in use (${API_MAX_CONNECTIONS} with a request in progress, or more just opened); try again in a moment, and if it lasts stop idle followers (dso events) or what else holds connections to its socket`,
  code: 'DSO_AGENT_API_BUSY',
};

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /** Absolute path of the socket (`api.socket`). Its directory is created 0755 if missing. */
  socketPath: string;
  /** Permission bits of the socket (`api.socketMode`), e.g. `0o660`. */
  socketMode: number;
  /** Group that owns the socket (`api.socketGroup`): a name from the group file or a gid. */
  socketGroup?: string | number;
  /** What the routes read and call. */
  agent: Pick<
    Agent,
    'status' | 'reconcile' | 'rotate' | 'resolveEnvironment' | 'checkReferences' | 'subscribe'
  >;
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
  /**
   * Where refusals are audited: a reference `POST /v1/resolve` refuses (`env-resolve`,
   * `denied`, with `DSO_AGENT_RESOLVE_DISABLED` or `DSO_AGENT_RESOLVE_DENIED`).
   */
  audit?: AuditSink;
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
  /** What its connection cap did so far (for `dso_http_connections_closed_total`). */
  connectionStats(): HttpConnectionStats;
}

/**
 * Serves the agent's API on a unix socket: every route of `AGENT_API_ROUTES` (`@dso/core`),
 * with the contract's limits. Errors are the contract's `AgentApiError`. No route takes provider
 * configuration or a path.
 *
 * The socket is never reachable with other permissions than `socketMode` and `socketGroup`
 * (socket-file.ts): it is bound in a private staging directory and linked into place, an agent
 * already serving the path is never replaced, and a socket file left by a crash is removed.
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
  const { socketPath, socketMode, agent, logger, redactor } = options;
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

  const clean = (text: string) => (redactor ? redactor.redact(text) : text);
  const events = createEventStreams({ agent, clean });
  const http = createHttpServer({
    name: 'api',
    handle: createApiHandler({
      agent,
      allow,
      audit: options.audit,
      defaultProvider: options.defaultProvider ?? 'local',
      ...(options.providers === undefined ? {} : { providers: options.providers }),
      events,
      logger,
      clean,
    }),
    internalError: JSON.stringify(INTERNAL_ERROR),
    busyBody: JSON.stringify(API_BUSY),
    logger,
    limits: {
      headersTimeoutMs: API_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: API_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: API_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: API_MAX_CONNECTIONS,
      closeGraceMs: API_CLOSE_GRACE_MS,
    },
    // An events stream has no end of its own: ended first, so close need not cut it.
    onClose: () => events.endAll(),
  });
  const socket = await placeSocket({
    socketPath,
    socketMode,
    ...(gid === undefined ? {} : { gid }),
    ...(options.socketGroup === undefined ? {} : { group: options.socketGroup }),
    listen: (path) => http.listen({ path }),
    stop: () => http.close(),
    logger,
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
      const stopped = http.close();
      // Listening stopped with server.close(): remove the name now, so that a caller meanwhile
      // reads "not running" and a new agent can take the path while these responses finish.
      await socket.remove();
      await stopped;
    })();
    return closing;
  };
  return {
    path: socketPath,
    close,
    connectionStats: http.connectionStats,
    [Symbol.asyncDispose]: close,
  };
}
