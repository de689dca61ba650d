import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { ListenOptions, Socket } from 'node:net';
import { errorCode, type Logger } from '@dso/core';

// ---------------------------------------------------------------------------------------------
// The one way the agent serves HTTP: its API (a unix socket) and its metrics and health (a
// loopback port) both run on it. Everything a server open to local callers needs is here, so
// neither can forget part of it: short header and request timeouts, capped headers, requests
// per connection and connections, a handler failure answered without its details, and a close
// that stops accepting, closes idle connections and cuts the rest after a grace period.
//
// Connections are capped without letting idle or slow clients lock others out (node's own
// `maxConnections` drops the NEW connection, so 40 idle sockets made every `dso status` fail):
// a connection must complete its first request's headers within `headersTimeoutMs` of opening;
// at the cap, the connection idle the longest (no request in progress) is closed to make room,
// one that never completed a request (sent nothing, or is still sending its headers) before one
// kept alive after its answer. A connection idle for less than `evictAfterMs` is never closed
// for a new one: between its opening and the parsing of its request a caller's connection looks
// like an unused one, and clients that re-open every connection closed would otherwise push it
// out before its request is read. Then the new connection is let in past the cap, up to
// `connectionBurst` more. Only when every connection has a request in progress, or the burst is
// used up too, is the new one answered 503 with `busyBody`.
// ---------------------------------------------------------------------------------------------

/** What a {@link createHttpServer} server enforces. */
export interface HttpServerLimits {
  /** The longest wait for a request's headers; for a connection's first, from when it opened. */
  headersTimeoutMs: number;
  /** The longest a whole request may take to arrive; also the idle timeout of its socket. */
  requestTimeoutMs: number;
  /** How long an idle kept-alive connection stays open. */
  keepAliveTimeoutMs: number;
  /**
   * Connections open at once. At the cap a new connection closes the one idle the longest (no
   * request in progress) and idle for `evictAfterMs`; when every one has a request in progress
   * (or `connectionBurst` more are open too), it is answered 503.
   */
  maxConnections: number;
  /**
   * How long a connection must have been idle (since it opened, or since its last answer) to
   * be closed for a new one at the cap.
   */
  evictAfterMs: number;
  /**
   * Connections let in past `maxConnections` while no idle connection is old enough to close;
   * past those, a new connection is answered 503.
   */
  connectionBurst: number;
  /** How long `close()` lets a response in progress finish before cutting its connection. */
  closeGraceMs: number;
  /** The largest request head (request line and headers). */
  maxHeaderBytes: number;
  /** Headers read from one request; more are ignored. */
  maxHeadersCount: number;
  /** Requests served on one kept-alive connection before it is closed. */
  maxRequestsPerSocket: number;
}

/** The limits of both agent servers unless they say otherwise. */
export const DEFAULT_HTTP_LIMITS: Readonly<HttpServerLimits> = Object.freeze({
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  maxConnections: 32,
  evictAfterMs: 1_000,
  connectionBurst: 224,
  closeGraceMs: 2_000,
  maxHeaderBytes: 8 * 1024,
  maxHeadersCount: 64,
  maxRequestsPerSocket: 100,
});

/** The content type of every JSON answer. */
export const JSON_CONTENT_TYPE = 'application/json; charset=utf-8';

/** Options of {@link createHttpServer}. */
export interface HttpServerOptions {
  /** Names the server in its log lines: `<name> request failed`, `<name> server error`. */
  name: string;
  /** Answers one request. A throw is logged and answered 500 with {@link internalError}. */
  handle(request: IncomingMessage, response: ServerResponse): Promise<void>;
  /** The JSON body of a 500 for a request whose handler threw: never the error's text. */
  internalError: string;
  /**
   * The JSON body of the 503 sent on a connection opened while every connection has a request
   * in progress: it should say what to do (try again, stop a stream).
   * @default BUSY_BODY
   */
  busyBody?: string;
  logger?: Logger;
  /** Any limit other than {@link DEFAULT_HTTP_LIMITS}. */
  limits?: Partial<HttpServerLimits>;
  /** Ends what never ends by itself (an events stream) when `close()` begins. */
  onClose?: () => void;
}

/** A hardened HTTP server, not yet listening. */
export interface HttpServer extends AsyncDisposable {
  /** Node's server, for its address. */
  readonly server: Server;
  /** What the connection cap did so far. */
  connectionStats(): HttpConnectionStats;
  /**
   * Listens on a unix socket (`{ path }`) or a port (`{ host, port }`). Rejects with the
   * system's error, for the caller to explain.
   */
  listen(target: ListenOptions): Promise<void>;
  /**
   * Ends the `onClose` streams, stops accepting, closes idle connections, lets responses in
   * progress finish for `closeGraceMs`, then cuts them. Idempotent: every call returns the
   * first call's promise.
   */
  close(): Promise<void>;
}

/** What a server's connection cap did: for tests, status and metrics. */
export interface HttpConnectionStats {
  /** Connections open now, counted against `maxConnections`. */
  open: number;
  /** Idle connections closed to make room for a new one. */
  evicted: number;
  /** Connections answered 503: every connection had a request in progress, or the burst was used up. */
  busy: number;
  /** Connections closed because their first request's headers were not in within `headersTimeoutMs`. */
  headersTimedOut: number;
}

/** The default {@link HttpServerOptions.busyBody}. */
export const BUSY_BODY = JSON.stringify({
  error: 'the server is busy: every connection is in use; try again shortly',
});

/** One open connection, as the cap sees it. */
interface Connection {
  /** Requests in progress (an answer not finished yet). */
  active: number;
  /** Whether it ever completed a request's headers. */
  requested: boolean;
  /**
   * When it last had no request in progress: opened, or its last answer finished
   * (`performance.now()`, monotonic).
   */
  idleSince: number;
  deadline: NodeJS.Timeout;
}

/** Whether idle `a` is closed before idle `b` at the cap: unused first, then the longest idle. */
function closesBefore(a: Connection, b: Connection): boolean {
  if (a.requested !== b.requested) return !a.requested;
  return a.idleSince < b.idleSince;
}

/**
 * A server with {@link DEFAULT_HTTP_LIMITS} (or `limits`) whose handler failures are logged
 * and answered 500 without their details.
 *
 * @example
 * const http = createHttpServer({ name: 'api', handle, internalError: '{"error":"internal"}', logger });
 * await http.listen({ path: socketPath });
 * // on shutdown
 * await http.close();
 */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const { name, logger } = options;
  const limits: HttpServerLimits = { ...DEFAULT_HTTP_LIMITS, ...options.limits };
  const busyBody = options.busyBody ?? BUSY_BODY;
  const connections = new Map<Socket, Connection>();
  // Connections that arrived when all were busy: answered 503 at their first request, then closed.
  const refused = new WeakSet<Socket>();
  const stats = { evicted: 0, busy: 0, headersTimedOut: 0 };
  let warnedBusy = false;

  const admit = (socket: Socket): void => {
    if (connections.size >= limits.maxConnections) {
      const now = performance.now();
      let idle = 0;
      // The longest idle of those that never completed a request (a client that holds a
      // connection without using it), else of the kept-alive ones: a kept-alive client reuses its
      // connection without knowing it was closed, and would see its next request fail.
      let victim: Socket | undefined;
      let best: Connection | undefined;
      for (const [candidate, connection] of connections) {
        if (connection.active !== 0) continue;
        idle++;
        if (now - connection.idleSince < limits.evictAfterMs) continue;
        if (best === undefined || closesBefore(connection, best)) {
          best = connection;
          victim = candidate;
        }
      }
      const roomPastCap =
        idle > 0 && connections.size < limits.maxConnections + limits.connectionBurst;
      if (victim === undefined && !roomPastCap) {
        stats.busy++;
        refused.add(socket);
        if (!warnedBusy) {
          warnedBusy = true;
          logger?.warn(
            { maxConnections: limits.maxConnections },
            `${name} busy: every connection is in use, new ones are answered 503`,
          );
        }
        // It gets its 503 when its request arrives; one that sends none is cut at the deadline.
        const cut = setTimeout(() => socket.destroy(), limits.headersTimeoutMs);
        cut.unref();
        socket.once('close', () => clearTimeout(cut));
        return;
      }
      if (victim !== undefined) {
        stats.evicted++;
        forget(victim);
        victim.destroy();
      }
    }
    const deadline = setTimeout(() => {
      const connection = connections.get(socket);
      if (connection !== undefined && !connection.requested) {
        stats.headersTimedOut++;
        forget(socket);
        socket.destroy();
      }
    }, limits.headersTimeoutMs);
    deadline.unref();
    connections.set(socket, {
      active: 0,
      requested: false,
      idleSince: performance.now(),
      deadline,
    });
    socket.once('close', () => forget(socket));
  };
  const forget = (socket: Socket): void => {
    const connection = connections.get(socket);
    if (connection === undefined) return;
    clearTimeout(connection.deadline);
    connections.delete(socket);
  };

  const server = createServer(
    {
      requestTimeout: limits.requestTimeoutMs,
      headersTimeout: limits.headersTimeoutMs,
      // How often node checks the two timeouts above (its default is 30 s).
      connectionsCheckingInterval: 1_000,
      maxHeaderSize: limits.maxHeaderBytes,
    },
    (request, response) => {
      const socket = request.socket;
      if (refused.has(socket)) {
        response.shouldKeepAlive = false;
        sendBody(response, 503, JSON_CONTENT_TYPE, busyBody);
        return;
      }
      const connection = connections.get(socket);
      if (connection !== undefined) {
        connection.requested = true;
        clearTimeout(connection.deadline);
        connection.active++;
        response.once('close', () => {
          connection.active--;
          connection.idleSince = performance.now();
        });
      }
      void options.handle(request, response).catch((error: unknown) => {
        logger?.warn({ err: error, code: errorCode(error) }, `${name} request failed`);
        if (!response.headersSent)
          sendBody(response, 500, JSON_CONTENT_TYPE, options.internalError);
        else response.destroy();
      });
    },
  );
  server.keepAliveTimeout = limits.keepAliveTimeoutMs;
  server.timeout = limits.requestTimeoutMs;
  server.maxHeadersCount = limits.maxHeadersCount;
  server.maxRequestsPerSocket = limits.maxRequestsPerSocket;
  // The cap is admit()'s; node's own (which drops new connections) only bounds the sockets that
  // are being closed or answered 503 on top of it.
  server.maxConnections = (limits.maxConnections + limits.connectionBurst) * 2;
  // Before node's own listener, so that a slot is free before the new connection is parsed.
  server.prependListener('connection', admit);

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      if (!server.listening) {
        resolve();
        return;
      }
      options.onClose?.();
      const force = setTimeout(() => server.closeAllConnections(), limits.closeGraceMs);
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
    server,
    connectionStats: () => ({ open: connections.size, ...stats }),
    listen(target) {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(target, () => {
          server.off('error', reject);
          server.on('error', (error) => {
            logger?.warn({ err: error, code: errorCode(error) }, `${name} server error`);
          });
          resolve();
        });
      });
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Answers with `body` and the headers every answer carries: its type and length, `no-store`
 * and `nosniff`. `onWritten` runs once the body was handed to the socket (to zero a buffer).
 */
export function sendBody(
  response: ServerResponse,
  status: number,
  contentType: string,
  body: string | Buffer,
  onWritten?: () => void,
): void {
  response.writeHead(status, {
    'Content-Type': contentType,
    'Content-Length': typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength,
    'Cache-Control': 'no-store',
    'X-Content-Type-Options': 'nosniff',
  });
  if (onWritten === undefined) response.end(body);
  else response.end(body, onWritten);
}

/** A request URL's path without its query string: routes never see the caller's query. */
export function pathnameOf(url: string | undefined): string {
  const raw = url ?? '/';
  const query = raw.indexOf('?');
  return query === -1 ? raw : raw.slice(0, query);
}

/** Whether a request announces a body (a length or a transfer encoding). */
export function hasBody(request: IncomingMessage): boolean {
  return (
    request.headers['content-length'] !== undefined ||
    request.headers['transfer-encoding'] !== undefined
  );
}

/**
 * Reads a request's body up to `limit` bytes: its bytes when `keep`, else an empty buffer (read
 * and dropped). Undefined when it is (or announces it is) larger: then it is left unread and the
 * caller should not reuse the connection.
 */
export function readBody(
  request: IncomingMessage,
  limit: number,
  keep: boolean,
): Promise<Buffer | undefined> {
  if (!hasBody(request)) return Promise.resolve(Buffer.alloc(0));
  const length = request.headers['content-length'];
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
