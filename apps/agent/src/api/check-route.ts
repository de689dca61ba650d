import type { ServerResponse } from 'node:http';
import {
  AGENT_API_ROUTES,
  API_RESOLVE_TIMEOUT_MS,
  isDsoError,
  type Logger,
  parseReference,
  type SecretReference,
} from '@dso/core';
import type { Agent, CheckedReference } from '../agent.js';
import { type Clean, parseBody, requestSignal, sendAgentError, sendJson } from './respond.js';

// ---------------------------------------------------------------------------------------------
// `POST /v1/check`, for `dso up`: are these references in their stores? Each one is looked up
// as a delivery would (cache, provider, version) and answered with its version or its failure;
// the value is disposed inside the agent and never leaves it. Hence `api.resolveAllow` does
// not apply: a caller learns what `dso status` would tell it about a container using the
// reference, no more.
// ---------------------------------------------------------------------------------------------

/** What {@link handleCheck} needs of the server. */
export interface CheckContext {
  agent: Pick<Agent, 'checkReferences'>;
  logger: Logger;
  clean: Clean;
}

/**
 * Answers `POST /v1/check` with `{ "references": ["dso://…", "dsofile://…"] }`: 200 with one
 * entry per reference (version, or code and message), 400 `DSO_AGENT_API_BAD_REQUEST` (or
 * `DSO_REFERENCE_INVALID`) for a body that is not what the route takes.
 */
export async function handleCheck(
  context: CheckContext,
  body: Buffer,
  response: ServerResponse,
): Promise<void> {
  const { agent, logger, clean } = context;
  const parsed = parseBody(body, AGENT_API_ROUTES.check);
  if (!parsed.ok) {
    sendJson(response, 400, parsed.error, clean);
    return;
  }
  const references: SecretReference[] = [];
  for (const [index, text] of parsed.value.references.entries()) {
    try {
      references.push(parseReference(text));
    } catch (error) {
      if (!isDsoError(error)) throw error;
      sendJson(
        response,
        400,
        { error: `references[${index}]: ${error.message}`, code: error.code },
        clean,
      );
      return;
    }
  }
  const signal = requestSignal(response, API_RESOLVE_TIMEOUT_MS);
  let checked: CheckedReference[];
  try {
    checked = await agent.checkReferences(references, { signal });
  } catch (error) {
    sendAgentError(response, error, {
      message: 'check on request failed',
      otherStatus: 502,
      logger,
      clean,
    });
    return;
  }
  if (response.destroyed) return;
  sendJson(response, AGENT_API_ROUTES.check.status, { references: checked }, clean);
  const failed = checked.filter((one) => one.code !== undefined);
  logger.info(
    {
      count: checked.length,
      failed: failed.slice(0, 20).map(({ reference, code }) => ({ reference, code })),
    },
    'references checked for a caller',
  );
}
