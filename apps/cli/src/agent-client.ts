import { readFile, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { dirname } from 'node:path';
import { DsoError, isDsoError } from '@dso/core';

/** Where the agent's API listens when neither `DSO_API_SOCKET` nor `api.socket` says otherwise. */
export const DEFAULT_API_SOCKET = '/run/dso/agent.sock';
/** The environment variable naming the socket (also the agent's override of `api.socket`). */
export const API_SOCKET_ENV = 'DSO_API_SOCKET';
/** How long one call to the agent may take, connection included. @default 5_000 */
export const DEFAULT_AGENT_TIMEOUT_MS = 5_000;
/** The largest answer read from the agent; a status of thousands of containers fits easily. */
export const MAX_AGENT_RESPONSE_BYTES = 16 * 1024 * 1024;
/**
 * How long `resolve` waits: the agent gives its providers up to 60 s for it (their own deadline
 * is 30 s by default), so the CLI waits a little longer than that. @default 65_000
 */
export const DEFAULT_RESOLVE_TIMEOUT_MS = 65_000;
/** The most references one `resolve` call may name (the agent's limit). */
export const MAX_RESOLVE_REFERENCES = 256;

/**
 * The agent's socket: `DSO_API_SOCKET`, else {@link DEFAULT_API_SOCKET}.
 *
 * The CLI does not read dso.yaml for `api.socket`: the agent's file sits in the agent's
 * `DSO_HOME` (root's /var/lib/dso), not the CLI user's, is often readable by root only since it
 * may hold provider credentials, and would make `dso status` fail on any unrelated mistake in
 * it. `DSO_API_SOCKET` is the same override the agent honours, so one variable serves both.
 */
export function resolveApiSocket(env: NodeJS.ProcessEnv): string {
  const fromEnv = env[API_SOCKET_ENV];
  return fromEnv !== undefined && fromEnv !== '' ? fromEnv : DEFAULT_API_SOCKET;
}

// ---------------------------------------------------------------------------------------------
// The wire format of the agent's API v1 (apps/agent/src/api-server.ts, `ApiStatus`). Repeated
// here because the CLI does not depend on the agent's package.
// ---------------------------------------------------------------------------------------------

/** One file as last delivered: its reference and version, never its value. */
export interface AgentApiFile {
  name: string;
  reference: string;
  provider: string;
  version: string;
}

/** What the agent last did for one container. */
export interface AgentApiContainer {
  id: string;
  files?: AgentApiFile[];
  /** Its `dso://` environment variables (`name` is the variable). */
  env?: AgentApiFile[];
  deliveredAt?: number;
  lastAction: {
    trigger: string;
    at: number;
    outcome: 'delivered' | 'up-to-date' | 'failed';
    code?: string;
    reference?: string;
  };
}

/** One configured provider, with what it reports about itself (breaker, pid, restarts, …). */
export interface AgentApiProvider {
  name: string;
  type: string;
  state?: Record<string, string | number | boolean | null>;
}

/** The answer of `GET /v1/status`. */
export interface AgentApiStatus {
  startedAt: number | null;
  containers: AgentApiContainer[];
  queue: { depth: number; inFlight: number; shed: number };
  cache: { entries: number; hits: number; misses: number; staleServed: number };
  providers: AgentApiProvider[];
}

/** The answer of `POST /v1/reconcile`. */
export interface AgentApiReconcile {
  containers: number;
}

/** The answer of `POST /v1/rotate`. */
export interface AgentApiRotate {
  /** Running managed containers selected. */
  containers: number;
  /** Distinct secrets they use, asked from their providers again. */
  secrets: number;
}

/**
 * One value of `POST /v1/resolve`. `value` is the secret's bytes: the caller's to use once and
 * zero (`value.fill(0)`); never print it.
 */
export interface AgentResolvedValue {
  reference: string;
  provider: string;
  version: string;
  value: Buffer;
}

/** Options of {@link createAgentClient}. */
export interface AgentClientOptions {
  /** The agent's socket (see {@link resolveApiSocket}). */
  socketPath: string;
  /** Longest wait for one call, connection included. @default DEFAULT_AGENT_TIMEOUT_MS */
  timeoutMs?: number;
  /** Where the socket's group name is looked up for a permission error. @default '/etc/group' */
  groupFile?: string;
}

/** Per-call options. */
export interface AgentCallOptions {
  signal?: AbortSignal;
}

/** The agent's API, as the CLI calls it. */
export interface AgentClient {
  /**
   * What the agent knows now: containers with references, versions and last action; queue,
   * cache and providers.
   */
  status(options?: AgentCallOptions): Promise<AgentApiStatus>;
  /** Asks the agent to check every managed container now; resolves with how many it queued. */
  reconcile(options?: AgentCallOptions): Promise<AgentApiReconcile>;
  /**
   * Asks the agent to fetch the secrets of every running managed container again, past its
   * cache (of one container with `containerId`: its full id or at least 12 characters of it),
   * and rotate any that changed by the container's policy.
   * @throws DsoError DSO_AGENT_CONTAINER_UNKNOWN when no running managed container has the id
   */
  rotate(selector?: { containerId?: string }, options?: AgentCallOptions): Promise<AgentApiRotate>;
  /**
   * Has the agent resolve `dso://` references (1 to {@link MAX_RESOLVE_REFERENCES}), for values
   * a container is created with. One value per reference, in order. Waits up to
   * {@link DEFAULT_RESOLVE_TIMEOUT_MS} (or `timeoutMs` when longer).
   * @throws DsoError DSO_AGENT_RESOLVE_DISABLED, DSO_AGENT_RESOLVE_DENIED when the agent's
   *   `api.resolveAllow` does not allow them (the message says what to add)
   * @throws DsoError DSO_AGENT_RESOLVE_FAILED when a provider cannot answer
   */
  resolve(references: readonly string[], options?: AgentCallOptions): Promise<AgentResolvedValue[]>;
  /**
   * Follows the agent's events (`GET /v1/events`): `onEvent` gets each line as sent (its `type`
   * and fields; heartbeats included), until the agent closes the stream (resolves), the
   * caller's signal aborts (resolves), or the connection fails (rejects).
   */
  events(onEvent: (event: AgentApiEvent) => void, options?: AgentCallOptions): Promise<void>;
}

/** One line of `GET /v1/events`: ids, references, versions, policies and codes, never a value. */
export type AgentApiEvent = { type: string; at: number } & Record<string, unknown>;

/**
 * A client of the agent's API on its unix socket. Every failure is a DsoError whose message
 * says what to do:
 *
 * @example
 * const agent = createAgentClient({ socketPath: resolveApiSocket(process.env) });
 * const { containers } = await agent.reconcile();
 * @throws DsoError DSO_CLI_AGENT_UNREACHABLE when no agent answers on the socket (or it is missing)
 * @throws DsoError DSO_CLI_AGENT_DENIED when the caller may not use the socket (names its group)
 * @throws DsoError DSO_CLI_AGENT_TIMEOUT when the agent does not answer in time
 * @throws DsoError DSO_CLI_AGENT_RESPONSE when the answer is not what the API promises
 * @throws DsoError DSO_CLI_AGENT_ABORTED when the caller's signal aborts the call
 * @throws DsoError the agent's own code (e.g. DSO_AGENT_NOT_RUNNING) when it refuses a call
 */
export function createAgentClient(options: AgentClientOptions): AgentClient {
  const settings = {
    socketPath: options.socketPath,
    timeoutMs: options.timeoutMs ?? DEFAULT_AGENT_TIMEOUT_MS,
    groupFile: options.groupFile ?? '/etc/group',
  };
  return {
    events(onEvent, call = {}) {
      return followEvents(settings, onEvent, call.signal);
    },
    async status(call = {}) {
      const body = await callAgent(settings, 'GET', '/v1/status', 200, call.signal);
      if (!isRecord(body) || !Array.isArray(body.containers) || !isRecord(body.queue)) {
        throw badAnswer(settings.socketPath, 'a status without containers or queue');
      }
      return body as unknown as AgentApiStatus;
    },
    async reconcile(call = {}) {
      const body = await callAgent(settings, 'POST', '/v1/reconcile', 202, call.signal);
      if (!isRecord(body) || typeof body.containers !== 'number') {
        throw badAnswer(settings.socketPath, 'a reconcile answer without a container count');
      }
      return { containers: body.containers };
    },
    async rotate(selector = {}, call = {}) {
      const request =
        selector.containerId === undefined ? {} : { containerId: selector.containerId };
      const body = await callAgent(settings, 'POST', '/v1/rotate', 200, call.signal, {
        body: JSON.stringify(request),
      });
      if (
        !isRecord(body) ||
        typeof body.containers !== 'number' ||
        typeof body.secrets !== 'number'
      ) {
        throw badAnswer(settings.socketPath, 'a rotate answer without container and secret counts');
      }
      return { containers: body.containers, secrets: body.secrets };
    },
    async resolve(references, call = {}) {
      if (references.length === 0) return [];
      if (references.length > MAX_RESOLVE_REFERENCES) {
        throw new DsoError(
          'DSO_CLI_RESOLVE_TOO_MANY',
          `${references.length} dso:// references in one go; the agent resolves at most ${MAX_RESOLVE_REFERENCES}: split the compose project`,
        );
      }
      const body = await callAgent(settings, 'POST', '/v1/resolve', 200, call.signal, {
        body: JSON.stringify({ references }),
        timeoutMs: Math.max(settings.timeoutMs, DEFAULT_RESOLVE_TIMEOUT_MS),
        secret: true,
      });
      const values = isRecord(body) ? body.values : undefined;
      if (!Array.isArray(values) || values.length !== references.length) {
        throw badAnswer(settings.socketPath, 'a resolve answer without one value per reference');
      }
      const resolved: AgentResolvedValue[] = [];
      for (const [index, entry] of values.entries()) {
        if (
          !isRecord(entry) ||
          entry.reference !== references[index] ||
          typeof entry.provider !== 'string' ||
          typeof entry.version !== 'string' ||
          typeof entry.value !== 'string' ||
          !BASE64.test(entry.value)
        ) {
          for (const done of resolved) done.value.fill(0);
          // Never quoted: the entry holds a value.
          throw badAnswer(
            settings.socketPath,
            `a resolve answer whose value ${index + 1} is malformed`,
          );
        }
        resolved.push({
          reference: entry.reference as string,
          provider: entry.provider,
          version: entry.version,
          value: Buffer.from(entry.value, 'base64'),
        });
      }
      return resolved;
    },
  };
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

interface Settings {
  socketPath: string;
  timeoutMs: number;
  groupFile: string;
}

async function callAgent(
  settings: Settings,
  method: 'GET' | 'POST',
  path: string,
  expected: number,
  signal: AbortSignal | undefined,
  extra: {
    /** A JSON request body. */
    body?: string;
    timeoutMs?: number;
    /** The answer holds values: no error may carry any of its text. */
    secret?: boolean;
  } = {},
): Promise<unknown> {
  const { socketPath } = settings;
  const timeoutMs = extra.timeoutMs ?? settings.timeoutMs;
  const timeout = AbortSignal.timeout(timeoutMs);
  const combined = signal === undefined ? timeout : AbortSignal.any([timeout, signal]);
  let answer: { status: number; text: string };
  try {
    answer = await new Promise((resolve, reject) => {
      const request = httpRequest(
        {
          socketPath,
          method,
          path,
          // One connection per call: nothing kept alive to hold the CLI's process open.
          agent: false,
          headers: {
            Accept: 'application/json',
            ...(extra.body === undefined
              ? {}
              : {
                  'Content-Type': 'application/json',
                  'Content-Length': String(Buffer.byteLength(extra.body)),
                }),
          },
          signal: combined,
        },
        (response) => {
          const chunks: Buffer[] = [];
          let bytes = 0;
          response.on('data', (chunk: Buffer) => {
            bytes += chunk.byteLength;
            if (bytes > MAX_AGENT_RESPONSE_BYTES) {
              response.destroy(
                badAnswer(socketPath, `more than ${MAX_AGENT_RESPONSE_BYTES} bytes`),
              );
              return;
            }
            chunks.push(chunk);
          });
          response.once('error', reject);
          response.once('end', () =>
            resolve({
              status: response.statusCode ?? 0,
              text: Buffer.concat(chunks).toString('utf8'),
            }),
          );
        },
      );
      request.once('error', reject);
      request.end(extra.body);
    });
  } catch (error) {
    if (timeout.aborted) {
      throw new DsoError(
        'DSO_CLI_AGENT_TIMEOUT',
        `the agent did not answer on ${socketPath} within ${formatSeconds(timeoutMs)}: check it with systemctl status dso-agent or its log`,
        { cause: error, socket: socketPath },
      );
    }
    if (signal?.aborted) {
      throw new DsoError(
        'DSO_CLI_AGENT_ABORTED',
        `the call to the agent on ${socketPath} was cancelled`,
        {
          cause: error,
          socket: socketPath,
        },
      );
    }
    throw await connectionError(error, settings);
  }

  let body: unknown;
  try {
    body = JSON.parse(answer.text);
  } catch (error) {
    // A JSON syntax error quotes the text it choked on: not kept when the text holds values.
    throw badAnswer(
      socketPath,
      `HTTP ${answer.status} with a body that is not JSON`,
      extra.secret ? undefined : error,
    );
  }
  if (answer.status !== expected) throw refusal(answer.status, body, socketPath);
  return body;
}

async function followEvents(
  settings: Settings,
  onEvent: (event: AgentApiEvent) => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { socketPath } = settings;
  try {
    await new Promise<void>((resolve, reject) => {
      const request = httpRequest(
        {
          socketPath,
          method: 'GET',
          path: '/v1/events',
          agent: false,
          headers: { Accept: 'application/x-ndjson' },
          ...(signal === undefined ? {} : { signal }),
        },
        (response) => {
          if (response.statusCode !== 200) {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.once('end', () => {
              let body: unknown;
              try {
                body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
              } catch {
                body = undefined;
              }
              reject(refusal(response.statusCode ?? 0, body, socketPath));
            });
            return;
          }
          let buffered = '';
          response.setEncoding('utf8');
          response.on('data', (text: string) => {
            buffered += text;
            for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
              const line = buffered.slice(0, end);
              buffered = buffered.slice(end + 1);
              let event: unknown;
              try {
                event = JSON.parse(line);
              } catch {
                response.destroy(badAnswer(socketPath, 'an events line that is not JSON'));
                return;
              }
              if (typeof (event as { type?: unknown })?.type === 'string') {
                onEvent(event as AgentApiEvent);
              }
            }
            if (buffered.length > MAX_AGENT_RESPONSE_BYTES) {
              response.destroy(badAnswer(socketPath, 'an events line that never ends'));
            }
          });
          response.once('error', reject);
          response.once('end', () => resolve());
        },
      );
      request.once('error', reject);
      request.end();
    });
  } catch (error) {
    if (signal?.aborted) return;
    if (isDsoError(error)) throw error;
    throw await connectionError(error, settings);
  }
}

/** What a failed connection means for the operator, and what to do about it. */
async function connectionError(error: unknown, settings: Settings): Promise<unknown> {
  const { socketPath } = settings;
  const code = (error as NodeJS.ErrnoException).code;
  const start = 'start it with dso-agent or systemctl start dso-agent';
  if (code === 'ENOENT' || code === 'ENOTDIR') {
    return new DsoError(
      'DSO_CLI_AGENT_UNREACHABLE',
      `the agent is not running (no socket at ${socketPath}): ${start}`,
      { cause: error, socket: socketPath },
    );
  }
  if (code === 'ECONNREFUSED') {
    return new DsoError(
      'DSO_CLI_AGENT_UNREACHABLE',
      `the agent is not running (nothing answers on ${socketPath}): ${start}`,
      { cause: error, socket: socketPath },
    );
  }
  if (code === 'EACCES' || code === 'EPERM') {
    const group = await owningGroup(socketPath, settings.groupFile);
    const join =
      group === undefined
        ? 'join the group that owns it'
        : group.name === undefined
          ? `join the group with gid ${group.gid}, which owns it`
          : `join its group: sudo usermod -aG ${group.name} "$USER", then log in again`;
    return new DsoError(
      'DSO_CLI_AGENT_DENIED',
      `permission denied on the agent's socket ${socketPath}: ${join} (or run dso as root)`,
      { cause: error, socket: socketPath, ...(group === undefined ? {} : { gid: group.gid }) },
    );
  }
  if (isDsoError(error)) return error;
  return new DsoError(
    'DSO_CLI_AGENT_UNREACHABLE',
    `cannot talk to the agent on ${socketPath} (${code ?? (error instanceof Error ? error.message : String(error))})`,
    { cause: error, socket: socketPath },
  );
}

/** The group of the socket, else of its directory when the socket cannot be examined. */
async function owningGroup(
  socketPath: string,
  groupFile: string,
): Promise<{ gid: number; name: string | undefined } | undefined> {
  for (const path of [socketPath, dirname(socketPath)]) {
    try {
      const { gid } = await stat(path);
      return { gid, name: await groupName(gid, groupFile) };
    } catch {
      // Not reachable either: try its directory, or say it without a name.
    }
  }
  return undefined;
}

async function groupName(gid: number, groupFile: string): Promise<string | undefined> {
  let text: string;
  try {
    text = await readFile(groupFile, 'utf8');
  } catch {
    return undefined; // then the message names the gid
  }
  for (const line of text.split('\n')) {
    const [name, , id] = line.split(':');
    if (id !== undefined && /^\d+$/.test(id) && Number(id) === gid && name) return name;
  }
  return undefined;
}

/** A non-2xx answer: the agent's `{ error, code }` when it sent one. */
function refusal(status: number, body: unknown, socketPath: string): DsoError {
  const sent = isRecord(body) ? body : {};
  const code =
    typeof sent.code === 'string' && /^DSO_[A-Z0-9_]{1,60}$/.test(sent.code)
      ? sent.code
      : 'DSO_CLI_AGENT_ERROR';
  const message =
    typeof sent.error === 'string' && sent.error !== ''
      ? printable(sent.error).slice(0, 500)
      : `the agent answered HTTP ${status}`;
  return new DsoError(code, message, { status, socket: socketPath });
}

function badAnswer(socketPath: string, what: string, cause?: unknown): DsoError {
  return new DsoError(
    'DSO_CLI_AGENT_RESPONSE',
    `unexpected answer from the agent on ${socketPath}: ${what} (are the agent and dso the same version?)`,
    { socket: socketPath, ...(cause === undefined ? {} : { cause }) },
  );
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function formatSeconds(ms: number): string {
  return ms % 1_000 === 0 ? `${ms / 1_000} s` : `${ms} ms`;
}

/** Text from the agent made safe for a terminal: control characters become `?`. */
export function printable(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced
  return text.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
}
