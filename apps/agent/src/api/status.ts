import {
  type AgentApiContainer,
  type AgentApiProvider,
  type AgentApiStatus,
  API_MAX_PROVIDER_NAME_CHARS,
  API_MAX_PROVIDER_STATE_FIELDS,
  API_MAX_PROVIDER_STATE_STRING,
  API_PROVIDER_STATE_KEY,
} from '@dso/core';
import type { AgentStatus, ContainerStatus } from '../agent.js';
import { AGENT_VERSION } from '../version.js';

// ---------------------------------------------------------------------------------------------
// The status as sent: the contract's `AgentApiStatus`, built field by field from the agent's
// status, so a field added to the agent's status reaches callers only when the contract (in
// @dso/core) has it too.
// ---------------------------------------------------------------------------------------------

/** A provider as the agent's owner describes it to `startApiServer`. */
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

/** The body of `GET /v1/status` for the agent's status and its providers. */
export function toApiStatus(status: AgentStatus, providers: ApiProviderInfo[]): AgentApiStatus {
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
    ...(status.volumeDriver === undefined ? {} : { volumeDriver: status.volumeDriver }),
    version: AGENT_VERSION,
  };
}

function toApiContainer(container: ContainerStatus): AgentApiContainer {
  const { lastAction } = container;
  const { lastFailure } = container;
  return {
    id: container.id,
    ...(container.name === undefined ? {} : { name: container.name }),
    ...(container.state === undefined ? {} : { state: container.state }),
    ...(container.rotation === undefined ? {} : { rotation: container.rotation }),
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
      ...(lastAction.message === undefined ? {} : { message: lastAction.message }),
    },
    ...(lastFailure === undefined
      ? {}
      : {
          lastFailure: {
            trigger: lastFailure.trigger,
            at: lastFailure.at,
            code: lastFailure.code,
            ...(lastFailure.reference === undefined ? {} : { reference: lastFailure.reference }),
            ...(lastFailure.message === undefined ? {} : { message: lastFailure.message }),
          },
        }),
    ...(container.warnings === undefined || container.warnings.length === 0
      ? {}
      : {
          warnings: container.warnings.map(({ code, label, message, suggestion }) => ({
            code,
            label,
            message,
            ...(suggestion === undefined ? {} : { suggestion }),
          })),
        }),
    ...(container.literalReferences === undefined
      ? {}
      : { literalReferences: container.literalReferences.map((entry) => ({ ...entry })) }),
  };
}

function toApiProvider(provider: ApiProviderInfo): AgentApiProvider {
  const state = scalarFields(provider.state);
  return {
    name: String(provider.name).slice(0, API_MAX_PROVIDER_NAME_CHARS),
    type: String(provider.type).slice(0, API_MAX_PROVIDER_NAME_CHARS),
    ...(state === undefined ? {} : { state }),
  };
}

/** Up to {@link API_MAX_PROVIDER_STATE_FIELDS} scalar fields with short names; anything else is dropped. */
function scalarFields(value: unknown): AgentApiProvider['state'] {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return undefined;
  const fields: Record<string, string | number | boolean | null> = {};
  let count = 0;
  for (const [key, field] of Object.entries(value)) {
    if (count >= API_MAX_PROVIDER_STATE_FIELDS) break;
    if (!API_PROVIDER_STATE_KEY.test(key)) continue;
    if (
      field === null ||
      typeof field === 'boolean' ||
      (typeof field === 'number' && Number.isFinite(field))
    ) {
      fields[key] = field;
    } else if (typeof field === 'string' && field.length <= API_MAX_PROVIDER_STATE_STRING) {
      fields[key] = field;
    } else {
      continue;
    }
    count += 1;
  }
  return fields;
}
