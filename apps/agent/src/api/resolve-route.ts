import type { ServerResponse } from 'node:http';
import {
  AGENT_API_ROUTES,
  API_RESOLVE_TIMEOUT_MS,
  formatReference,
  isDsoError,
  type Logger,
  parseReference,
  type SecretReference,
} from '@dso/core';
import type { Agent, ResolvedEnvironmentValue } from '../agent.js';
import type { AuditSink } from '../reporting.js';
import type { ResolveAllow } from '../resolve-allow.js';
import {
  type Clean,
  parseBody,
  requestSignal,
  sendAgentError,
  sendJson,
  sendValues,
} from './respond.js';

// ---------------------------------------------------------------------------------------------
// `POST /v1/resolve`, the one route that answers with values, for `dso up`. A caller names
// references only, in the one grammar (`parseReference`): it picks among the providers the
// agent's owner configured and can pass neither a provider's configuration nor a path outside a
// provider's store. What it may read is `api.resolveAllow`, checked for every reference before
// anything is resolved; empty (the default) resolves nothing. The values are written once and
// disposed; neither they nor the body are ever logged.
// ---------------------------------------------------------------------------------------------

/** A provider name as the audit trail takes it (`createAuditLog`'s rule). */
const AUDIT_PROVIDER = /^[a-z][a-z0-9-]{0,62}$/;

/** What {@link handleResolve} needs of the server. */
export interface ResolveContext {
  agent: Pick<Agent, 'resolveEnvironment'>;
  allow: ResolveAllow;
  /** Where a refused reference is audited (`env-resolve`, `denied`); absent: not audited. */
  audit?: AuditSink | undefined;
  /** The provider a reference without one means, for its audit line. @default 'local' */
  defaultProvider?: string | undefined;
  logger: Logger;
  clean: Clean;
}

/**
 * Answers `POST /v1/resolve` with `{ "references": ["dso://…", …] }`: 200 with the values
 * (`Cache-Control: no-store`), 400 `DSO_AGENT_API_BAD_REQUEST` (or `DSO_REFERENCE_INVALID`)
 * for a body that is not what the route takes, 403 `DSO_AGENT_RESOLVE_DISABLED` while
 * `resolveAllow` is empty, 403 `DSO_AGENT_RESOLVE_DENIED` naming every reference no pattern
 * allows (then nothing is resolved), 502 with the agent's code when a provider cannot answer.
 */
export async function handleResolve(
  context: ResolveContext,
  body: Buffer,
  response: ServerResponse,
): Promise<void> {
  const { agent, allow, logger, clean } = context;
  const parsed = parseBody(body, AGENT_API_ROUTES.resolve);
  if (!parsed.ok) {
    sendJson(response, 400, parsed.error, clean);
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
      sendJson(
        response,
        400,
        { error: `references[${index}]: ${error.message}`, code: error.code },
        clean,
      );
      return;
    }
    if (reference.scheme !== 'dso') {
      sendJson(
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
  // Every refusal is audited: one `denied` line per distinct reference refused.
  const auditDenied = (refused: readonly SecretReference[], code: string) => {
    const seen = new Set<string>();
    for (const reference of refused) {
      const formatted = formatReference(reference);
      const provider = reference.provider ?? context.defaultProvider ?? 'local';
      // A provider name no configuration could have: its line would be refused; the log has it.
      if (seen.has(formatted) || !AUDIT_PROVIDER.test(provider)) continue;
      seen.add(formatted);
      context.audit?.record({
        actor: { kind: 'api' },
        action: 'env-resolve',
        reference: formatted,
        provider,
        outcome: 'denied',
        code,
      });
    }
  };
  // The policy, before anything is resolved: all allowed, or nothing happens.
  if (allow.empty) {
    auditDenied(references, 'DSO_AGENT_RESOLVE_DISABLED');
    sendJson(
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
  const refused = references.filter((reference) => !allow.allows(reference));
  const denied = [...new Set(refused.map(formatReference))];
  if (denied.length > 0) {
    auditDenied(refused, 'DSO_AGENT_RESOLVE_DENIED');
    const shown =
      denied.slice(0, 10).join(', ') +
      (denied.length > 10 ? ` and ${denied.length - 10} more` : '');
    logger.warn(
      { denied: denied.slice(0, 10), count: denied.length },
      'resolve refused by api.resolveAllow',
    );
    sendJson(
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
  const signal = requestSignal(response, API_RESOLVE_TIMEOUT_MS);
  let values: ResolvedEnvironmentValue[];
  try {
    values = await agent.resolveEnvironment(references, { signal });
  } catch (error) {
    sendAgentError(response, error, {
      message: 'resolve on request failed',
      otherStatus: 502,
      logger,
      clean,
    });
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
