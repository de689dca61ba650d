import * as z from 'zod';
import { LABEL_ROTATION_POLICIES } from '../labels.js';
import { MAX_REFERENCE_LENGTH } from '../references.js';

// ---------------------------------------------------------------------------------------------
// The agent's API v1: HTTP/1.1 over a unix socket, served by `@dso/agent` and called by the `dso`
// CLI (and any tooling). This file is the one description of it both sides use: the routes, the
// schema of every body, the limits the server enforces and where the socket is. A change to the
// wire is a change here; the server's types and the client's parsing follow from it.
//
// Response schemas strip fields they do not name (zod's default), so a client built from them
// sees exactly v1. Request schemas are strict: a field the route does not take is a 400, so a
// caller can never slip provider configuration or a path in.
// ---------------------------------------------------------------------------------------------

/**
 * Where the agent's API listens when neither `api.socket` nor {@link API_SOCKET_ENV} says
 * otherwise (root's runtime folder). The default of `api.socket` in the configuration schema.
 */
export const DEFAULT_API_SOCKET = '/run/dso/agent.sock';

/**
 * The environment variable naming the agent's socket: the agent's override of `api.socket`, and
 * where clients look first. A non-root agent on the default path listens at
 * `$DSO_HOME/agent.sock` instead, so its clients need this variable.
 */
export const API_SOCKET_ENV = 'DSO_API_SOCKET';
/** The longest unix socket path: `sockaddr_un.sun_path` is 108 bytes on Linux, with its terminating NUL. */
export const MAX_SOCKET_PATH_BYTES = 107;

/**
 * The agent's socket as a client finds it: {@link API_SOCKET_ENV} when set and not empty, else
 * {@link DEFAULT_API_SOCKET}. Clients do not read dso.yaml: the agent's file sits in the
 * agent's `DSO_HOME`, is often readable by root only, and would fail a call over any unrelated
 * mistake in it.
 *
 * @example
 * const socketPath = resolveApiSocket(process.env);
 */
export function resolveApiSocket(env: Readonly<Record<string, string | undefined>>): string {
  const fromEnv = env[API_SOCKET_ENV];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_API_SOCKET;
}

// ---------------------------------------------------------------------------------------------
// Limits the server enforces
// ---------------------------------------------------------------------------------------------

/** The longest the server waits for a request's headers. */
export const API_HEADERS_TIMEOUT_MS = 5_000;
/** The longest a whole request may take to arrive. */
export const API_REQUEST_TIMEOUT_MS = 10_000;
/** How long an idle kept-alive connection stays open. */
export const API_KEEP_ALIVE_TIMEOUT_MS = 5_000;
/**
 * Connections open at once. At the cap a new connection closes the one idle the longest (no
 * request in progress, idle for 1 s at least; else it is let in past the cap, up to 224 more);
 * only when all have a request in progress, or that burst is used up too, is it answered 503
 * `DSO_AGENT_API_BUSY`. A connection must send its first request's headers within
 * {@link API_HEADERS_TIMEOUT_MS} of opening.
 */
export const API_MAX_CONNECTIONS = 32;
/** The largest request body of a route other than `POST /v1/resolve`. Larger is a 413. */
export const API_MAX_BODY_BYTES = 1024;
/** The most references one `POST /v1/resolve` may name. */
export const API_MAX_RESOLVE_REFERENCES = 256;
/** The largest body of `POST /v1/resolve`: its most references at their longest, and room for JSON. */
export const API_MAX_RESOLVE_BODY_BYTES =
  API_MAX_RESOLVE_REFERENCES * (MAX_REFERENCE_LENGTH + 8) + 1024;
/**
 * How long `POST /v1/resolve` may take once its request arrived: the providers' own deadline
 * (30 s by default) with room to spare. A client should wait a little longer than this.
 */
export const API_RESOLVE_TIMEOUT_MS = 60_000;
/** Between two `heartbeat` lines of `GET /v1/events` (under the socket's idle timeout). */
export const API_EVENTS_HEARTBEAT_MS = 5_000;
/** Event streams open at once (each holds one of the {@link API_MAX_CONNECTIONS}); more are a 503. */
export const API_MAX_EVENT_STREAMS = 8;
/** Unread bytes of an events stream past which its reader gets a `dropped` line and the end. */
export const API_EVENTS_MAX_BUFFERED_BYTES = 1024 * 1024;
/** The most `state` fields one provider reports in `GET /v1/status`; more are dropped. */
export const API_MAX_PROVIDER_STATE_FIELDS = 16;
/** The longest string `state` field of a provider; longer ones are dropped. */
export const API_MAX_PROVIDER_STATE_STRING = 64;
/** The name a provider `state` field may have; others are dropped. */
export const API_PROVIDER_STATE_KEY = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;
/** The longest provider name or type in `GET /v1/status`; longer ones are cut. */
export const API_MAX_PROVIDER_NAME_CHARS = 214;

// ---------------------------------------------------------------------------------------------
// Request bodies
// ---------------------------------------------------------------------------------------------

const CONTAINER_ID = /^[0-9a-f]{12,64}$/;

/** The body of `POST /v1/rotate`: every running managed container, or the one with `containerId`. */
export const agentApiRotateRequestSchema = z.strictObject({
  containerId: z
    .string()
    .regex(CONTAINER_ID, {
      error: 'must be a container id: 12 to 64 lowercase hex characters (see `dso status`)',
    })
    .optional(),
});
/** {@link agentApiRotateRequestSchema}'s data. */
export type AgentApiRotateRequest = z.infer<typeof agentApiRotateRequestSchema>;

/** The body of `POST /v1/resolve`: 1 to {@link API_MAX_RESOLVE_REFERENCES} `dso://` references. */
export const agentApiResolveRequestSchema = z.strictObject({
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
/** {@link agentApiResolveRequestSchema}'s data. */
export type AgentApiResolveRequest = z.infer<typeof agentApiResolveRequestSchema>;

/**
 * The body of `POST /v1/check`: 1 to {@link API_MAX_RESOLVE_REFERENCES} references, `dso://` or
 * `dsofile://`, to be looked up in their stores (for `dso up`, before it starts anything).
 */
export const agentApiCheckRequestSchema = agentApiResolveRequestSchema;
/** {@link agentApiCheckRequestSchema}'s data. */
export type AgentApiCheckRequest = z.infer<typeof agentApiCheckRequestSchema>;

// ---------------------------------------------------------------------------------------------
// Response bodies
// ---------------------------------------------------------------------------------------------

const count = z.number().int().min(0);
const epochMs = z.number();

/** What started a container's last delivery: `api` is a `dso reconcile` or `dso rotate`. */
export const API_DELIVERY_TRIGGERS = [
  'started',
  'startup',
  'periodic',
  'resync',
  'api',
  'changed',
] as const;
/** One of {@link API_DELIVERY_TRIGGERS}. */
export type AgentApiDeliveryTrigger = (typeof API_DELIVERY_TRIGGERS)[number];

/** How a container's last action ended; `missing`: a secret it consumes was removed from its store. */
export const API_ACTION_OUTCOMES = ['delivered', 'up-to-date', 'failed', 'missing'] as const;

/** One delivered file or environment variable: its reference and version, never its value. */
export const agentApiDeliveredSchema = z.object({
  /** The file's name, or the environment variable's. */
  name: z.string(),
  reference: z.string(),
  provider: z.string(),
  version: z.string(),
});
/** {@link agentApiDeliveredSchema}'s data. */
export type AgentApiDelivered = z.infer<typeof agentApiDeliveredSchema>;

/**
 * A problem in a container's labels that fails nothing but means something asked for is not
 * happening (`dso.flie.x` delivers nothing): the label, a code, the sentence with the fix, and
 * what was probably meant. A function, so the schema reads in the order of the status.
 */
function agentApiLabelWarningSchema() {
  return z.object({
    code: z.string(),
    label: z.string(),
    message: z.string(),
    suggestion: z.string().optional(),
  });
}

/** A failure as status shows it: when, what started it, its code and reference, reason and fix. */
export const agentApiFailureSchema = z.object({
  trigger: z.enum(API_DELIVERY_TRIGGERS),
  at: epochMs,
  code: z.string(),
  reference: z.string().optional(),
  /** One line: what happened and what to do (never a value). */
  message: z.string().optional(),
});
/** {@link agentApiFailureSchema}'s data. */
export type AgentApiFailure = z.infer<typeof agentApiFailureSchema>;

/** One container in `GET /v1/status`: references and versions, never a value. */
export const agentApiContainerSchema = z.object({
  id: z.string(),
  /** The container's name (without the leading `/`) once the agent inspected it. */
  name: z.string().optional(),
  /** The engine's state as the agent last saw it: `running`, `exited`, … */
  state: z.string().optional(),
  /** Its rotation policy as its `dso.rotate*` labels say it; absent: the configured default. */
  rotation: z.string().optional(),
  /** The files of the last successful delivery (absent before one). */
  files: z.array(agentApiDeliveredSchema).optional(),
  /** Its `dso://` environment variables (`name` is the variable) with their current versions. */
  env: z.array(agentApiDeliveredSchema).optional(),
  /** When that delivery happened, ms since the epoch. */
  deliveredAt: epochMs.optional(),
  lastAction: z.object({
    trigger: z.enum(API_DELIVERY_TRIGGERS),
    at: epochMs,
    outcome: z.enum(API_ACTION_OUTCOMES),
    /** For a failure: its code, and the reference it concerns (never a value). */
    code: z.string().optional(),
    reference: z.string().optional(),
    /** For a failure: what happened and what to do (never a value). */
    message: z.string().optional(),
  }),
  /** Its last failure, kept after a later success until the container is gone. */
  lastFailure: agentApiFailureSchema.optional(),
  /** What its labels got wrong without failing: unknown `dso.*` labels, near-miss references, owner/mode hints. */
  warnings: z.array(agentApiLabelWarningSchema()).optional(),
  /**
   * Environment variables it was started with whose value is `dso://`/`dsofile://` text: it was
   * created without dso up (a plain compose up); its last action says how to recreate it.
   */
  literalReferences: z.array(z.object({ variable: z.string(), reference: z.string() })).optional(),
});
/** {@link agentApiContainerSchema}'s data. */
export type AgentApiContainer = z.infer<typeof agentApiContainerSchema>;

/** A provider's self-report: a few scalar fields with short names (status, breaker, pid, …). */
export const agentApiProviderStateSchema = z
  .record(
    z.string().regex(API_PROVIDER_STATE_KEY),
    z.union([z.string().max(API_MAX_PROVIDER_STATE_STRING), z.number(), z.boolean(), z.null()]),
  )
  .refine((state) => Object.keys(state).length <= API_MAX_PROVIDER_STATE_FIELDS, {
    error: `must have at most ${API_MAX_PROVIDER_STATE_FIELDS} fields`,
  });

/** One configured provider in `GET /v1/status`. */
export const agentApiProviderSchema = z.object({
  /** The configured name, e.g. `local` or `prod-vault`. */
  name: z.string().max(API_MAX_PROVIDER_NAME_CHARS),
  /** The configured type: a built-in type or a package name. */
  type: z.string().max(API_MAX_PROVIDER_NAME_CHARS),
  state: agentApiProviderStateSchema.optional(),
});
/** {@link agentApiProviderSchema}'s data. */
export type AgentApiProvider = z.infer<typeof agentApiProviderSchema>;

/** The body of `GET /v1/status` (200). */
export const agentApiStatusSchema = z.object({
  /** When the agent started, ms since the epoch; null before it did. */
  startedAt: epochMs.nullable(),
  containers: z.array(agentApiContainerSchema),
  queue: z.object({ depth: count, inFlight: count, shed: count }),
  cache: z.object({ entries: count, hits: count, misses: count, staleServed: count }),
  providers: z.array(agentApiProviderSchema),
  /** The name of the volume driver the agent serves (`--mount ...,volume-driver=<name>`); absent when it serves none. */
  volumeDriver: z.string().optional(),
  /** The agent's version (its package's, as `dso-agent --version` prints it), for `dso doctor`. */
  version: z.string().optional(),
});
/** {@link agentApiStatusSchema}'s data. */
export type AgentApiStatus = z.infer<typeof agentApiStatusSchema>;

/** The body of `POST /v1/reconcile` (202). */
export const agentApiReconcileResultSchema = z.object({
  /** Managed containers queued for a check. */
  containers: count,
});
/** {@link agentApiReconcileResultSchema}'s data. */
export type AgentApiReconcileResult = z.infer<typeof agentApiReconcileResultSchema>;

/** The body of `POST /v1/rotate` (200). */
export const agentApiRotateResultSchema = z.object({
  /** Running managed containers selected (all of them without a `containerId`). */
  containers: count,
  /** Distinct secrets they use, each asked from its provider again, past the cache. */
  secrets: count,
});
/** {@link agentApiRotateResultSchema}'s data. */
export type AgentApiRotateResult = z.infer<typeof agentApiRotateResultSchema>;

/** One value of `POST /v1/resolve`. */
export const agentApiResolvedValueSchema = z.object({
  /** The reference as asked, formatted. */
  reference: z.string(),
  /** The provider that answered (the default one for a reference without a provider). */
  provider: z.string(),
  /** The version it answered with. */
  version: z.string(),
  /** The value's bytes, base64: the caller's to decode, use once and zero. */
  value: z.base64(),
});
/** {@link agentApiResolvedValueSchema}'s data. */
export type AgentApiResolvedValue = z.infer<typeof agentApiResolvedValueSchema>;

/** The body of `POST /v1/resolve` (200, `Cache-Control: no-store`): one value per reference, in order. */
export const agentApiResolveResultSchema = z.object({
  values: z.array(agentApiResolvedValueSchema).max(API_MAX_RESOLVE_REFERENCES),
});
/** {@link agentApiResolveResultSchema}'s data. */
export type AgentApiResolveResult = z.infer<typeof agentApiResolveResultSchema>;

/** One reference of `POST /v1/check`: its version when its store has it, else the failure (never a value). */
export const agentApiCheckedReferenceSchema = z.object({
  /** The reference as asked, formatted. */
  reference: z.string(),
  /** The provider asked (the default one for a reference without a provider). */
  provider: z.string(),
  /** The version the store has; absent when it could not answer. */
  version: z.string().optional(),
  /** When it could not: the code (e.g. `DSO_PROVIDER_NOT_FOUND`) and what to do. */
  code: z.string().optional(),
  error: z.string().optional(),
});
/** {@link agentApiCheckedReferenceSchema}'s data. */
export type AgentApiCheckedReference = z.infer<typeof agentApiCheckedReferenceSchema>;

/** The body of `POST /v1/check` (200): one entry per reference, in order. */
export const agentApiCheckResultSchema = z.object({
  references: z.array(agentApiCheckedReferenceSchema).max(API_MAX_RESOLVE_REFERENCES),
});
/** {@link agentApiCheckResultSchema}'s data. */
export type AgentApiCheckResult = z.infer<typeof agentApiCheckResultSchema>;

/** The body of `GET /v1/health` (200). */
export const agentApiHealthSchema = z.object({ ok: z.literal(true) });
/** {@link agentApiHealthSchema}'s data. */
export type AgentApiHealth = z.infer<typeof agentApiHealthSchema>;

/**
 * The body of every answer that is not 2xx: a message that says what to do, and a stable code
 * (the API's own `DSO_AGENT_*`, or the code of the agent's error, e.g. `DSO_REFERENCE_INVALID`).
 */
export const agentApiErrorSchema = z.object({ error: z.string(), code: z.string() });
/** {@link agentApiErrorSchema}'s data. */
export type AgentApiError = z.infer<typeof agentApiErrorSchema>;

// ---------------------------------------------------------------------------------------------
// GET /v1/events: one JSON line per event
// ---------------------------------------------------------------------------------------------

const containerEvent = {
  at: epochMs,
  containerId: z.string(),
  /** The container's name, when the agent knows it. */
  containerName: z.string().optional(),
  /** The engine's state of the container as the agent last saw it (`running`, `exited`, …). */
  containerState: z.string().optional(),
};

/**
 * One line of `GET /v1/events`, as the server sends it: the stream's own `subscribed`,
 * `heartbeat` and `dropped`, and the agent's events (ids, references, versions, policies and
 * codes, never a value).
 */
export const agentApiEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('subscribed'), at: epochMs }),
  z.object({ type: z.literal('heartbeat'), at: epochMs }),
  z.object({ type: z.literal('dropped'), at: epochMs, reason: z.string() }),
  z.object({
    type: z.literal('delivered'),
    ...containerEvent,
    trigger: z.enum(API_DELIVERY_TRIGGERS),
    files: count,
    /** How the files went: `exec` (into the container), `host` (its host folder), `volume` (a DSO volume's folder). */
    method: z.enum(['exec', 'host', 'volume']),
  }),
  z.object({
    type: z.literal('delivery-failed'),
    ...containerEvent,
    trigger: z.enum(API_DELIVERY_TRIGGERS),
    code: z.string(),
    reference: z.string().optional(),
    retry: z.boolean(),
    /** What happened and what to do (never a value). */
    message: z.string().optional(),
  }),
  z.object({
    type: z.literal('rotated'),
    ...containerEvent,
    policy: z.enum(LABEL_ROTATION_POLICIES),
  }),
  z.object({
    type: z.literal('rotation-failed'),
    ...containerEvent,
    policy: z.enum(LABEL_ROTATION_POLICIES),
    code: z.string(),
    rolledBack: z.boolean(),
    /** What happened and what to do (never a value). */
    message: z.string().optional(),
  }),
  z.object({
    /** A secret the container consumes was removed from its store. */
    type: z.literal('secret-missing'),
    ...containerEvent,
    reference: z.string(),
    code: z.string(),
    /** What happened and what to do (never a value). */
    message: z.string().optional(),
  }),
  z.object({ type: z.literal('replaced'), ...containerEvent, newContainerId: z.string() }),
  z.object({
    /** Its labels have a problem that fails nothing: {@link agentApiContainerSchema}'s `warnings`, one event each. */
    type: z.literal('label-warning'),
    ...containerEvent,
    code: z.string(),
    label: z.string(),
    message: z.string(),
    suggestion: z.string().optional(),
  }),
  z.object({
    /** Started with `dso://`/`dsofile://` text in its environment: created without dso up. */
    type: z.literal('literal-references'),
    ...containerEvent,
    variables: z.array(z.string()),
    code: z.string(),
    /** What happened and the command that fixes it. */
    message: z.string(),
  }),
]);
/** {@link agentApiEventSchema}'s data. */
export type AgentApiEvent = z.infer<typeof agentApiEventSchema>;

/**
 * What a client accepts as a line of `GET /v1/events`: a `type` and a time, other fields kept
 * as sent. Looser than {@link agentApiEventSchema} on purpose, so that a client shows an event
 * type newer than itself instead of failing.
 */
export const agentApiEventLineSchema = z.looseObject({ type: z.string(), at: epochMs });
/** {@link agentApiEventLineSchema}'s data. */
export type AgentApiEventLine = z.infer<typeof agentApiEventLineSchema>;

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/** One route of {@link AGENT_API_ROUTES}. */
export interface AgentApiRoute {
  readonly method: 'GET' | 'POST';
  /** The path; a query string is ignored. */
  readonly path: `/v1/${string}`;
  /** The status of a successful answer. */
  readonly status: 200 | 202;
  /** `application/json`, or `application/x-ndjson` for a stream of {@link agentApiEventSchema} lines. */
  readonly contentType: 'application/json; charset=utf-8' | 'application/x-ndjson; charset=utf-8';
  /** The largest request body; a route without `request` reads and drops one up to this size. */
  readonly maxBodyBytes: number;
  /** The request body's schema; absent when the route takes none. */
  readonly request?: z.ZodType;
  /** The request body's shape in words, quoted by a 400. */
  readonly requestShape?: string;
  /** Whether an empty request body means `{}` (else it is a 400). */
  readonly emptyBodyIsObject?: boolean;
  /** The successful answer's schema (of each line, for a stream). */
  readonly response: z.ZodType;
}

/**
 * Every route of the API v1. Any other path is a 404, another method a 405 with `Allow`, a body
 * over the route's `maxBodyBytes` a 413; errors are {@link agentApiErrorSchema}.
 *
 * @example
 * const { method, path, response } = AGENT_API_ROUTES.status;
 * const status = response.parse(JSON.parse(await call(method, path)));
 */
export const AGENT_API_ROUTES = {
  /** What the agent knows: containers with references, versions and last action; queue, cache, providers. */
  status: {
    method: 'GET',
    path: '/v1/status',
    status: 200,
    contentType: 'application/json; charset=utf-8',
    maxBodyBytes: API_MAX_BODY_BYTES,
    response: agentApiStatusSchema,
  },
  /** Queues every managed container for a check (one reconciliation, however many callers). */
  reconcile: {
    method: 'POST',
    path: '/v1/reconcile',
    status: 202,
    contentType: 'application/json; charset=utf-8',
    maxBodyBytes: API_MAX_BODY_BYTES,
    response: agentApiReconcileResultSchema,
  },
  /**
   * Asks the selected containers' secrets again past the cache, each rotated by its policy when
   * its version changed; 404 `DSO_AGENT_CONTAINER_UNKNOWN` for an id no running managed
   * container has.
   */
  rotate: {
    method: 'POST',
    path: '/v1/rotate',
    status: 200,
    contentType: 'application/json; charset=utf-8',
    maxBodyBytes: API_MAX_BODY_BYTES,
    request: agentApiRotateRequestSchema,
    requestShape: '{ "containerId"?: "<id>" }',
    emptyBodyIsObject: true,
    response: agentApiRotateResultSchema,
  },
  /**
   * Resolves `dso://` references `api.resolveAllow` allows: 403 `DSO_AGENT_RESOLVE_DISABLED`
   * while it is empty, 403 `DSO_AGENT_RESOLVE_DENIED` naming every reference it does not allow
   * (then nothing is resolved), 502 with the agent's code when a provider cannot answer.
   */
  resolve: {
    method: 'POST',
    path: '/v1/resolve',
    status: 200,
    contentType: 'application/json; charset=utf-8',
    maxBodyBytes: API_MAX_RESOLVE_BODY_BYTES,
    request: agentApiResolveRequestSchema,
    requestShape: '{ "references": ["dso://…"] }',
    emptyBodyIsObject: false,
    response: agentApiResolveResultSchema,
  },
  /**
   * Looks `dso://` and `dsofile://` references up in their stores and answers each one's
   * version or failure, never a value (so `api.resolveAllow` does not apply): for `dso up`, which
   * starts nothing while one is missing.
   */
  check: {
    method: 'POST',
    path: '/v1/check',
    status: 200,
    contentType: 'application/json; charset=utf-8',
    maxBodyBytes: API_MAX_RESOLVE_BODY_BYTES,
    request: agentApiCheckRequestSchema,
    requestShape: '{ "references": ["dso://…", "dsofile://…"] }',
    emptyBodyIsObject: false,
    response: agentApiCheckResultSchema,
  },
  /** Answers while the agent's API does. */
  health: {
    method: 'GET',
    path: '/v1/health',
    status: 200,
    contentType: 'application/json; charset=utf-8',
    maxBodyBytes: API_MAX_BODY_BYTES,
    response: agentApiHealthSchema,
  },
  /**
   * One JSON line per event from now on, a `heartbeat` every {@link API_EVENTS_HEARTBEAT_MS},
   * until the caller hangs up or the agent stops; 503 `DSO_AGENT_API_BUSY` past
   * {@link API_MAX_EVENT_STREAMS}.
   */
  events: {
    method: 'GET',
    path: '/v1/events',
    status: 200,
    contentType: 'application/x-ndjson; charset=utf-8',
    maxBodyBytes: API_MAX_BODY_BYTES,
    response: agentApiEventSchema,
  },
} as const satisfies Record<string, AgentApiRoute>;

/** A name of {@link AGENT_API_ROUTES}. */
export type AgentApiRouteName = keyof typeof AGENT_API_ROUTES;
