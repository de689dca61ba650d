import type { IncomingMessage, ServerResponse } from 'node:http';
import {
  AGENT_API_ROUTES,
  type AgentApiReconcileResult,
  type AgentApiRouteName,
  API_MAX_BODY_BYTES,
  errorCode,
  isDsoError,
  type Logger,
} from '@dso/core';
import type { Agent } from '../agent.js';
import { pathnameOf, readBody } from '../http/serve.js';
import type { AuditSink } from '../reporting.js';
import type { ResolveAllow } from '../resolve-allow.js';
import { handleCheck } from './check-route.js';
import type { EventStreams } from './events-stream.js';
import { handleResolve } from './resolve-route.js';
import { type Clean, INTERNAL_ERROR, parseBody, sendAgentError, sendJson } from './respond.js';
import { type ApiProviderInfo, toApiStatus } from './status.js';

/** What the routes read and call: the few things of the server each needs. */
export interface ApiRoutesContext {
  agent: Pick<Agent, 'status' | 'reconcile' | 'rotate' | 'resolveEnvironment' | 'checkReferences'>;
  allow: ResolveAllow;
  /** Where refusals of `POST /v1/resolve` are audited. */
  audit?: AuditSink | undefined;
  /** The provider a reference without one means. */
  defaultProvider?: string | undefined;
  /** The configured providers, read at each `GET /v1/status`. */
  providers?: () => ApiProviderInfo[];
  events: EventStreams;
  logger: Logger;
  clean: Clean;
}

/** The route a path names, by the contract's table. */
const ROUTE_OF_PATH: ReadonlyMap<string, AgentApiRouteName> = new Map(
  Object.entries(AGENT_API_ROUTES).map(([name, route]) => [
    route.path as string,
    name as AgentApiRouteName,
  ]),
);

/**
 * The API's request handler: every route of the contract's `AGENT_API_ROUTES`, and 404 for
 * another path, 405 with `Allow` for another method, 413 for a body over the route's
 * `maxBodyBytes` (a route that takes no body reads and drops a small one). Each request is
 * logged at debug when its response closes: method, route, status, duration; never the URL.
 */
export function createApiHandler(
  context: ApiRoutesContext,
): (request: IncomingMessage, response: ServerResponse) => Promise<void> {
  const { agent, logger, clean } = context;
  // One reconciliation at a time, however many callers ask: each lists every container.
  let reconciling: Promise<AgentApiReconcileResult> | undefined;

  return async (request, response) => {
    const started = performance.now();
    const name = ROUTE_OF_PATH.get(pathnameOf(request.url));
    const route = name === undefined ? undefined : AGENT_API_ROUTES[name];
    response.once('close', () => {
      // The route, never the URL: a query string or an unknown path is the caller's text.
      logger.debug(
        {
          method: request.method,
          route: route?.path ?? 'unknown',
          status: response.statusCode,
          durationMs: Math.round((performance.now() - started) * 100) / 100,
        },
        'api request',
      );
    });

    const takesBody = route !== undefined && 'request' in route;
    const limit = route?.maxBodyBytes ?? API_MAX_BODY_BYTES;
    const body = await readBody(request, limit, takesBody);
    if (body === undefined) {
      response.shouldKeepAlive = false;
      sendJson(
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
    if (name === undefined || route === undefined) {
      sendJson(response, 404, { error: 'not found', code: 'DSO_AGENT_API_NOT_FOUND' }, clean);
      return;
    }
    if (request.method !== route.method) {
      response.setHeader('Allow', route.method);
      sendJson(
        response,
        405,
        { error: `method not allowed: use ${route.method}`, code: 'DSO_AGENT_API_METHOD' },
        clean,
      );
      return;
    }
    switch (name) {
      case 'health':
        sendJson(response, route.status, { ok: true }, clean);
        return;
      case 'status':
        sendJson(response, route.status, toApiStatus(agent.status(), readProviders()), clean);
        return;
      case 'rotate':
        await rotate(body, response);
        return;
      case 'resolve':
        await handleResolve(context, body, response);
        return;
      case 'check':
        await handleCheck(context, body, response);
        return;
      case 'events':
        context.events.open(response);
        return;
      case 'reconcile':
        await reconcile(response);
        return;
    }
  };

  async function reconcile(response: ServerResponse): Promise<void> {
    try {
      if (reconciling !== undefined) logger.debug('reconcile already running, joined');
      reconciling ??= Promise.resolve()
        .then(() => agent.reconcile())
        .then(({ containers }) => ({ containers }))
        .finally(() => {
          reconciling = undefined;
        });
      sendJson(response, AGENT_API_ROUTES.reconcile.status, await reconciling, clean);
    } catch (error) {
      const code = errorCode(error);
      logger.warn({ err: error, code }, 'reconcile on request failed');
      if (isDsoError(error) && code !== undefined) {
        // A DsoError's message names references and ids and says what to do, never a value;
        // it is redacted all the same. Anything else stays in the log.
        sendJson(
          response,
          code === 'DSO_AGENT_NOT_RUNNING' ? 503 : 500,
          { error: error.message, code },
          clean,
        );
      } else {
        sendJson(response, 500, INTERNAL_ERROR, clean);
      }
    }
  }

  async function rotate(body: Buffer, response: ServerResponse): Promise<void> {
    const parsed = parseBody(body, AGENT_API_ROUTES.rotate);
    if (!parsed.ok) {
      sendJson(response, 400, parsed.error, clean);
      return;
    }
    const { containerId } = parsed.value;
    try {
      const result = await agent.rotate(containerId === undefined ? {} : { containerId });
      sendJson(
        response,
        AGENT_API_ROUTES.rotate.status,
        { containers: result.containers, secrets: result.secrets },
        clean,
      );
    } catch (error) {
      sendAgentError(response, error, {
        message: 'rotate on request failed',
        otherStatus: 500,
        logger,
        clean,
      });
    }
  }

  function readProviders(): ApiProviderInfo[] {
    if (context.providers === undefined) return [];
    try {
      return context.providers();
    } catch (error) {
      logger.warn({ err: error, code: errorCode(error) }, 'provider states unavailable');
      return [];
    }
  }
}
