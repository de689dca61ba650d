import type { ServerResponse } from 'node:http';
import { type AgentApiError, errorCode, isDsoError, type Logger } from '@dso/core';
import type { z } from 'zod';
import type { ResolvedEnvironmentValue } from '../agent.js';
import { JSON_CONTENT_TYPE, sendBody } from '../http/serve.js';

// ---------------------------------------------------------------------------------------------
// How the API answers: every string through the redactor, request bodies checked against the
// contract's schemas with problems named by field (never the caller's text), and the agent's
// errors by their code.
// ---------------------------------------------------------------------------------------------

/** A text as sent: through the redactor when there is one. */
export type Clean = (text: string) => string;

/** The answer to a failure with no code of its own: its details stay in the log. */
export const INTERNAL_ERROR: AgentApiError = {
  error: 'internal error: see the agent log',
  code: 'DSO_AGENT_API_INTERNAL',
};

/** Statuses of the agent's own codes; any other DsoError is a route's `otherStatus`. */
const STATUS_OF_CODE: ReadonlyMap<string, number> = new Map([
  ['DSO_AGENT_NOT_RUNNING', 503],
  ['DSO_AGENT_CONTAINER_UNKNOWN', 404],
]);

/** Answers `payload` as JSON, each of its strings passed through `clean` one by one. */
export function sendJson(
  response: ServerResponse,
  status: number,
  payload: unknown,
  clean: Clean,
): void {
  // Every string goes through the redactor one by one, so the JSON stays valid.
  const body = JSON.stringify(payload, (_key, value: unknown) =>
    typeof value === 'string' ? clean(value) : value,
  );
  sendBody(response, status, JSON_CONTENT_TYPE, body);
}

/**
 * Writes the values of `POST /v1/resolve` (the contract's `agentApiResolveResultSchema`). The
 * values skip the redactor (they are the answer: the redactor knows them, so it would blank
 * them); every other string passes through it. The body is one buffer, zeroed once written.
 * (The base64 text made on the way is a V8 string, which cannot be zeroed: it is dropped at once
 * and left to the collector.)
 */
export function sendValues(
  response: ServerResponse,
  values: readonly ResolvedEnvironmentValue[],
  clean: Clean,
): void {
  const parts = values.map(
    ({ reference, provider, version, value }) =>
      `{"reference":${JSON.stringify(clean(reference))},"provider":${JSON.stringify(clean(provider))},"version":${JSON.stringify(clean(version))},"value":"${value.reveal().toString('base64')}"}`,
  );
  const body = Buffer.from(`{"values":[${parts.join(',')}]}`, 'utf8');
  parts.length = 0;
  sendBody(response, 200, JSON_CONTENT_TYPE, body, () => body.fill(0));
}

/**
 * Answers a failed agent call: its own code and message when it is a DsoError (with the status
 * of its code, else `otherStatus`), else 500 {@link INTERNAL_ERROR}. Logged at warn as `message`.
 */
export function sendAgentError(
  response: ServerResponse,
  error: unknown,
  options: { message: string; otherStatus: number; logger: Logger; clean: Clean },
): void {
  const { logger, clean } = options;
  const code = errorCode(error);
  logger.warn({ err: error, code }, options.message);
  if (response.destroyed) return;
  if (isDsoError(error) && code !== undefined) {
    // A DsoError's message names references and ids and says what to do, never a value; it is
    // redacted all the same. A cause with a code of its own (a provider's) is named after it.
    const causeCode = errorCode(error.cause);
    const causeText =
      causeCode !== undefined && error.cause instanceof Error && error.cause.message !== ''
        ? `: ${error.cause.message} (${causeCode})`
        : '';
    sendJson(
      response,
      STATUS_OF_CODE.get(code) ?? options.otherStatus,
      { error: `${error.message}${causeText}`, code },
      clean,
    );
  } else {
    sendJson(response, 500, INTERNAL_ERROR, clean);
  }
}

/** A checked request body, or the 400 to answer. */
export type Parsed<T> = { ok: true; value: T } | { ok: false; error: AgentApiError };

/** What {@link parseBody} checks a body against: a route of the contract that takes one. */
export interface BodyRoute<T> {
  request: z.ZodType<T>;
  requestShape: string;
  emptyBodyIsObject: boolean;
}

/**
 * A route's JSON body checked against its schema. The 400's message lists what is wrong by
 * field, never the caller's text (which may be anything, even a value sent by mistake).
 */
export function parseBody<T>(body: Buffer, route: BodyRoute<T>): Parsed<T> {
  const bad = (problem: string): Parsed<T> => ({
    ok: false,
    error: { error: `${problem}; send ${route.requestShape}`, code: 'DSO_AGENT_API_BAD_REQUEST' },
  });
  let json: unknown;
  if (body.byteLength === 0) {
    if (!route.emptyBodyIsObject) return bad('the request has no body');
    json = {};
  } else {
    try {
      json = JSON.parse(body.toString('utf8'));
    } catch {
      return bad('the request body is not JSON');
    }
  }
  const result = route.request.safeParse(json);
  if (result.success) return { ok: true, value: result.data };
  const problems = result.error.issues.slice(0, 5).map((issue) => {
    const where = issue.path.length === 0 ? 'the body' : issue.path.map(String).join('.');
    return `${where}: ${issue.message}`;
  });
  return bad(`the request body is not what this route takes (${problems.join('; ')})`);
}

/**
 * The signal of a request that calls providers: aborted when the caller goes away or after
 * `timeoutMs`, so a store that hangs cannot hold the connection forever. The socket's idle
 * timeout is raised to match, for this request only.
 */
export function requestSignal(response: ServerResponse, timeoutMs: number): AbortSignal {
  const gone = new AbortController();
  response.once('close', () => gone.abort());
  response.setTimeout(timeoutMs + 5_000);
  return AbortSignal.any([gone.signal, AbortSignal.timeout(timeoutMs)]);
}
