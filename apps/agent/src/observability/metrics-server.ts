import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { BlockList, isIP } from 'node:net';
import { DsoError, errorCode, type Logger, type MetricsRegistry, type Redactor } from '@dso/core';
import {
  createHttpServer,
  type HttpConnectionStats,
  hasBody,
  JSON_CONTENT_TYPE,
  pathnameOf,
  sendBody,
} from '../http/serve.js';
import type { CheckResult, HealthReport, ReadyReport } from './health.js';

// ---------------------------------------------------------------------------------------------
// The metrics and health server: `/metrics`, `/healthz`, `/readyz` on a loopback port, on the
// agent's hardened HTTP server (../http/serve.ts).
// ---------------------------------------------------------------------------------------------

/** The longest wait for a request's headers. */
export const OBSERVABILITY_HEADERS_TIMEOUT_MS = 5_000;
/** The longest a whole request may take to arrive. */
export const OBSERVABILITY_REQUEST_TIMEOUT_MS = 10_000;
/** How long an idle kept-alive connection stays open. */
export const OBSERVABILITY_KEEP_ALIVE_TIMEOUT_MS = 5_000;
/**
 * Connections open at once: at the cap a new one closes the one idle the longest, and is
 * answered 503 only when every one has a request in progress (../http/serve.ts).
 */
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
  /** What its connection cap did so far (for `dso_http_connections_closed_total`). */
  connectionStats(): HttpConnectionStats;
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

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    // A request with a body is answered without reading it, and its connection is not reused.
    if (hasBody(request)) response.shouldKeepAlive = false;
    const pathname = pathnameOf(request.url);
    const route = ROUTES.has(pathname) ? pathname : undefined;
    if (route === undefined) {
      sendBody(response, 404, JSON_CONTENT_TYPE, '{"error":"not found"}');
      return;
    }
    if (request.method !== 'GET') {
      response.shouldKeepAlive = false;
      response.setHeader('Allow', 'GET');
      sendBody(response, 405, JSON_CONTENT_TYPE, '{"error":"method not allowed"}');
      return;
    }
    if (route === '/metrics') {
      let text: string;
      try {
        text = await registry.metrics();
      } catch (error) {
        logger?.warn({ err: error, code: errorCode(error) }, 'metrics collection failed');
        sendBody(response, 500, JSON_CONTENT_TYPE, '{"error":"metrics collection failed"}');
        return;
      }
      sendBody(response, 200, registry.contentType, text);
      return;
    }
    const report = route === '/healthz' ? options.health : options.ready;
    const { status, body } = renderReport(report, route, logger, options.redactor);
    sendBody(response, status, JSON_CONTENT_TYPE, body);
  }

  const http = createHttpServer({
    name: 'observability',
    handle,
    internalError: '{"error":"internal"}',
    busyBody: '{"error":"busy: every connection is in use; try again"}',
    ...(logger === undefined ? {} : { logger }),
    limits: {
      headersTimeoutMs: OBSERVABILITY_HEADERS_TIMEOUT_MS,
      requestTimeoutMs: OBSERVABILITY_REQUEST_TIMEOUT_MS,
      keepAliveTimeoutMs: OBSERVABILITY_KEEP_ALIVE_TIMEOUT_MS,
      maxConnections: OBSERVABILITY_MAX_CONNECTIONS,
      closeGraceMs: OBSERVABILITY_CLOSE_GRACE_MS,
    },
  });
  await http.listen({ host, port }).catch((error: NodeJS.ErrnoException) => {
    throw new DsoError(
      'DSO_AGENT_METRICS_LISTEN_FAILED',
      `cannot listen on ${options.address} for metrics (${error.code ?? error.message}): free the port or set metrics.address`,
      { cause: error, address: options.address },
    );
  });

  const bound = http.server.address() as AddressInfo;
  const address =
    bound.family === 'IPv6' ? `[${bound.address}]:${bound.port}` : `${bound.address}:${bound.port}`;
  logger?.info({ address }, 'observability server listening');

  return {
    address,
    close: http.close,
    connectionStats: http.connectionStats,
    [Symbol.asyncDispose]: http.close,
  };
}

const ROUTES = new Set(['/metrics', '/healthz', '/readyz']);

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
