import { existsSync } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AGENT_API_ROUTES,
  type AgentApiCheckedReference,
  type AgentApiEventLine,
  type AgentApiReconcileResult,
  type AgentApiRotateRequest,
  type AgentApiRotateResult,
  type AgentApiRoute,
  type AgentApiStatus,
  API_MAX_RESOLVE_REFERENCES,
  API_RESOLVE_TIMEOUT_MS,
  API_SOCKET_ENV,
  agentApiErrorSchema,
  agentApiEventLineSchema,
  DEFAULT_API_SOCKET,
  DsoError,
  errorCode,
  isDsoError,
  loadConfig,
  resolveDsoPaths,
} from '@dso/core';

// ---------------------------------------------------------------------------------------------
// The CLI's client of the agent's API v1. The routes, the bodies and their schemas, the limits
// and the socket's default are the contract in @dso/core (`AGENT_API_ROUTES`): every answer is
// parsed with its route's schema, so an agent and a CLI that disagree fail loudly
// (DSO_CLI_AGENT_RESPONSE) instead of printing half an answer. The CLI does not depend on the
// agent's package.
// ---------------------------------------------------------------------------------------------

/** How long one call to the agent may take, connection included. @default 5_000 */
export const DEFAULT_AGENT_TIMEOUT_MS = 5_000;
/** The largest answer read from the agent; a status of thousands of containers fits easily. */
export const MAX_AGENT_RESPONSE_BYTES = 16 * 1024 * 1024;
/**
 * How long `resolve` waits: the agent gives its providers up to `API_RESOLVE_TIMEOUT_MS` (60 s)
 * for it (their own deadline is 30 s by default), so the CLI waits a little longer than that.
 * @default 65_000
 */
export const DEFAULT_RESOLVE_TIMEOUT_MS = API_RESOLVE_TIMEOUT_MS + 5_000;

/**
 * One value of `POST /v1/resolve`, decoded. `value` is the secret's bytes: the caller's to use
 * once and zero (`value.fill(0)`); never print it.
 */
export interface AgentResolvedValue {
  reference: string;
  provider: string;
  version: string;
  value: Buffer;
}

/** Where the agent's socket is, and what said so (for messages and `dso doctor`). */
export interface AgentSocket {
  path: string;
  /**
   * `DSO_API_SOCKET`; `dso.yaml` (its `api.socket`); `DSO_HOME` (a non-root agent on the default
   * path listens at `$DSO_HOME/agent.sock`); `default` (`/run/dso/agent.sock`).
   */
  source: 'DSO_API_SOCKET' | 'dso.yaml' | 'DSO_HOME' | 'default';
  /** The `dso.yaml` read, when one was. */
  configFile?: string;
}

/**
 * Finds the agent's socket the way the agent chooses it, so that `dso` and `dso-agent` meet
 * with the same environment and the same `dso.yaml`: `DSO_API_SOCKET`, else `api.socket` of
 * `dso.yaml` (`$DSO_CONFIG`, else `$DSO_HOME/dso.yaml`), else the default `/run/dso/agent.sock`
 * or, for a caller other than root when that does not exist, `$DSO_HOME/agent.sock` where a
 * non-root agent listens instead. A `dso.yaml` this user may not read (root's, 0600) is skipped:
 * the default applies, as for the agent's operators in its group. `dso.yaml` is read even when
 * `DSO_API_SOCKET` is set, so a `DSO_CONFIG` naming no file fails here as it stops the agent.
 *
 * @example
 * const { path } = await findAgentSocket(process.env);
 * @throws DsoError DSO_CONFIG_INVALID, DSO_CONFIG_INSECURE, DSO_CONFIG_NOT_FOUND when `dso.yaml`
 *   is broken (the agent would not start with it either; the message says what to fix)
 */
export async function findAgentSocket(
  env: Readonly<Record<string, string | undefined>>,
  options: { uid?: number; exists?: (path: string) => boolean } = {},
): Promise<AgentSocket> {
  // Read even when DSO_API_SOCKET names the socket: a configuration the agent would refuse (a
  // DSO_CONFIG that does not exist, an invalid file) is refused here too, by the same loadConfig.
  let configFile: string | undefined;
  let configured: string | undefined;
  try {
    const loaded = await loadConfig({ env });
    configFile = loaded.path;
    configured = loaded.config.api.socket;
  } catch (error) {
    // Unreadable by this user: its operators use the default socket, as before dso.yaml was read.
    if (errorCode(error) !== 'DSO_CONFIG_UNREADABLE') throw error;
  }
  const found = configFile === undefined ? {} : { configFile };
  const fromEnv = env[API_SOCKET_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    return { path: fromEnv, source: 'DSO_API_SOCKET', ...found };
  }
  if (configFile !== undefined && configured !== undefined && configured !== DEFAULT_API_SOCKET) {
    return { path: configured, source: 'dso.yaml', configFile };
  }
  const exists = options.exists ?? existsSync;
  if ((options.uid ?? process.getuid?.() ?? 0) !== 0 && !exists(DEFAULT_API_SOCKET)) {
    const own = join(resolveDsoPaths(env).home, 'agent.sock');
    if (exists(own)) return { path: own, source: 'DSO_HOME', ...found };
  }
  return { path: DEFAULT_API_SOCKET, source: 'default', ...found };
}

/** Options of {@link createAgentClient}. */
export interface AgentClientOptions {
  /**
   * The agent's socket; or the environment to find it in with {@link findAgentSocket} (looked
   * up at the first call).
   */
  socketPath: string | { env: Readonly<Record<string, string | undefined>> };
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
  reconcile(options?: AgentCallOptions): Promise<AgentApiReconcileResult>;
  /**
   * Asks the agent to fetch the secrets of every running managed container again, past its
   * cache (of one container with `containerId`: its full id or at least 12 characters of it),
   * and rotate any that changed by the container's policy.
   * @throws DsoError DSO_AGENT_CONTAINER_UNKNOWN when no running managed container has the id
   */
  rotate(
    selector?: AgentApiRotateRequest,
    options?: AgentCallOptions,
  ): Promise<AgentApiRotateResult>;
  /**
   * Has the agent resolve `dso://` references (1 to `API_MAX_RESOLVE_REFERENCES`), for values
   * a container is created with. One value per reference, in order. Waits up to
   * {@link DEFAULT_RESOLVE_TIMEOUT_MS} (or `timeoutMs` when longer).
   * @throws DsoError DSO_CLI_RESOLVE_TOO_MANY for more references than the agent takes
   * @throws DsoError DSO_AGENT_RESOLVE_DISABLED, DSO_AGENT_RESOLVE_DENIED when the agent's
   *   `api.resolveAllow` does not allow them (the message says what to add)
   * @throws DsoError DSO_AGENT_RESOLVE_FAILED when a provider cannot answer
   */
  resolve(references: readonly string[], options?: AgentCallOptions): Promise<AgentResolvedValue[]>;
  /**
   * Has the agent look references (`dso://` and `dsofile://`, 1 to `API_MAX_RESOLVE_REFERENCES`)
   * up in their stores: one entry per reference, in order, with its version or the failure's
   * code and message; never a value.
   * @throws DsoError DSO_CLI_RESOLVE_TOO_MANY for more references than the agent takes
   */
  check(
    references: readonly string[],
    options?: AgentCallOptions,
  ): Promise<AgentApiCheckedReference[]>;
  /**
   * Follows the agent's events (`GET /v1/events`): `onEvent` gets each line as sent (its `type`
   * and fields; heartbeats included, and types newer than this CLI), until the agent closes the
   * stream (resolves), the caller's signal aborts (resolves), or the connection fails (rejects).
   */
  events(onEvent: (event: AgentApiEventLine) => void, options?: AgentCallOptions): Promise<void>;
}

/**
 * A client of the agent's API on its unix socket. Every failure is a DsoError whose message
 * says what to do:
 *
 * @example
 * const agent = createAgentClient({ socketPath: { env: process.env } });
 * const { containers } = await agent.reconcile();
 * @throws DsoError DSO_CLI_AGENT_UNREACHABLE when no agent answers on the socket (or it is missing)
 * @throws DsoError DSO_CLI_AGENT_DENIED when the caller may not use the socket (names its group)
 * @throws DsoError DSO_CLI_AGENT_TIMEOUT when the agent does not answer in time
 * @throws DsoError DSO_CLI_AGENT_BUSY when the agent stayed busy (503 `DSO_AGENT_API_BUSY`, or the
 *   connection cut before an answer) through every attempt of {@link AGENT_BUSY_RETRY_DELAYS_MS}
 * @throws DsoError DSO_CLI_AGENT_RESPONSE when the answer is not what the API promises
 * @throws DsoError DSO_CLI_AGENT_ABORTED when the caller's signal aborts the call
 * @throws DsoError the agent's own code (e.g. DSO_AGENT_NOT_RUNNING) when it refuses a call
 */
export function createAgentClient(options: AgentClientOptions): AgentClient {
  const { socketPath } = options;
  let found: Promise<Settings> | undefined;
  const settingsOf = (): Promise<Settings> => {
    found ??= (
      typeof socketPath === 'string'
        ? Promise.resolve(socketPath)
        : findAgentSocket(socketPath.env).then((socket) => socket.path)
    ).then((path) => ({
      socketPath: path,
      timeoutMs: options.timeoutMs ?? DEFAULT_AGENT_TIMEOUT_MS,
      groupFile: options.groupFile ?? '/etc/group',
    }));
    return found;
  };
  return {
    async events(onEvent, call = {}) {
      return followEvents(await settingsOf(), onEvent, call.signal);
    },
    async status(call = {}) {
      const settings = await settingsOf();
      const route = AGENT_API_ROUTES.status;
      return answerOf(route, await callAgent(settings, route, call.signal), settings.socketPath);
    },
    async reconcile(call = {}) {
      const settings = await settingsOf();
      const route = AGENT_API_ROUTES.reconcile;
      return answerOf(route, await callAgent(settings, route, call.signal), settings.socketPath);
    },
    async rotate(selector = {}, call = {}) {
      const settings = await settingsOf();
      const route = AGENT_API_ROUTES.rotate;
      const request: AgentApiRotateRequest =
        selector.containerId === undefined ? {} : { containerId: selector.containerId };
      const body = await callAgent(settings, route, call.signal, {
        body: JSON.stringify(request),
      });
      return answerOf(route, body, settings.socketPath);
    },
    async check(references, call = {}) {
      if (references.length === 0) return [];
      const settings = await settingsOf();
      if (references.length > API_MAX_RESOLVE_REFERENCES) {
        throw new DsoError(
          'DSO_CLI_RESOLVE_TOO_MANY',
          `${references.length} references in one go; the agent checks at most ${API_MAX_RESOLVE_REFERENCES}: split the compose project`,
        );
      }
      const route = AGENT_API_ROUTES.check;
      const body = await callAgent(settings, route, call.signal, {
        body: JSON.stringify({ references }),
        timeoutMs: Math.max(settings.timeoutMs, DEFAULT_RESOLVE_TIMEOUT_MS),
      });
      return answerOf(route, body, settings.socketPath).references;
    },
    async resolve(references, call = {}) {
      if (references.length === 0) return [];
      const settings = await settingsOf();
      if (references.length > API_MAX_RESOLVE_REFERENCES) {
        throw new DsoError(
          'DSO_CLI_RESOLVE_TOO_MANY',
          `${references.length} dso:// references in one go; the agent resolves at most ${API_MAX_RESOLVE_REFERENCES}: split the compose project`,
        );
      }
      const route = AGENT_API_ROUTES.resolve;
      const body = await callAgent(settings, route, call.signal, {
        body: JSON.stringify({ references }),
        timeoutMs: Math.max(settings.timeoutMs, DEFAULT_RESOLVE_TIMEOUT_MS),
        secret: true,
      });
      return decodeValues(body, references, settings.socketPath);
    },
  };
}

/**
 * A 2xx answer checked against its route's schema. The problems are named by field and the
 * schema's words, never by the answer's text.
 */
function answerOf<T>(
  route: Pick<AgentApiRoute, 'method' | 'path'> & { response: ResponseSchema<T> },
  body: unknown,
  socketPath: string,
): T {
  const parsed = route.response.safeParse(body);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.slice(0, 3).map((issue) => {
    const where = issue.path.length === 0 ? 'the body' : issue.path.map(String).join('.');
    return `${where}: ${issue.message}`;
  });
  throw badAnswer(
    socketPath,
    `an answer to ${route.method} ${route.path} that is not what the API promises (${problems.join('; ')})`,
  );
}

/**
 * The values of `POST /v1/resolve`, checked against the contract and the references asked (one
 * each, in order) before any is decoded. An error never carries the answer's text or a cause
 * built from it: the answer holds values.
 */
function decodeValues(
  body: unknown,
  references: readonly string[],
  socketPath: string,
): AgentResolvedValue[] {
  const values = isRecord(body) ? body.values : undefined;
  if (!Array.isArray(values) || values.length !== references.length) {
    throw badAnswer(socketPath, 'a resolve answer without one value per reference');
  }
  const parsed = AGENT_API_ROUTES.resolve.response.safeParse(body);
  const malformed = parsed.success
    ? parsed.data.values.findIndex((entry, index) => entry.reference !== references[index])
    : Number(parsed.error.issues.find((issue) => issue.path[0] === 'values')?.path[1] ?? 0);
  if (!parsed.success || malformed !== -1) {
    // Never quoted: the entry holds a value.
    throw badAnswer(socketPath, `a resolve answer whose value ${malformed + 1} is malformed`);
  }
  return parsed.data.values.map(({ reference, provider, version, value }) => ({
    reference,
    provider,
    version,
    value: Buffer.from(value, 'base64'),
  }));
}

/** What {@link answerOf} uses of a route's response schema (a zod schema of the contract). */
interface ResponseSchema<T> {
  safeParse(value: unknown):
    | { success: true; data: T }
    | {
        success: false;
        error: { issues: ReadonlyArray<{ path: readonly PropertyKey[]; message: string }> };
      };
}

interface Settings {
  socketPath: string;
  timeoutMs: number;
  groupFile: string;
}

/**
 * Pauses before each new attempt of a call the agent was too busy for: it answered 503
 * `DSO_AGENT_API_BUSY` (every connection of its API was in use), or closed the
 * connection before answering (it closes the longest-idle connection at its cap, and a call
 * that lost that race sees a reset). Four attempts in about 1.5 s, within the call's timeout.
 */
export const AGENT_BUSY_RETRY_DELAYS_MS: readonly number[] = [100, 400, 1_000];

/** The codes of a connection the agent closed before it answered: worth a new attempt. */
const CUT_OFF = new Set(['ECONNRESET', 'EPIPE']);

/**
 * One call, tried again after {@link AGENT_BUSY_RETRY_DELAYS_MS} while the agent is busy: the
 * answer's JSON when its status is the route's, else its refusal. The calls are safe to repeat
 * (status and resolve read; reconcile and rotate queue work the agent does once anyway).
 */
async function callAgent(
  settings: Settings,
  route: AgentApiRoute,
  signal: AbortSignal | undefined,
  extra: Parameters<typeof callAgentOnce>[3] = {},
): Promise<unknown> {
  const timeoutMs = extra.timeoutMs ?? settings.timeoutMs;
  const deadline = AbortSignal.timeout(timeoutMs);
  for (let attempt = 0; ; attempt++) {
    try {
      return await callAgentOnce(settings, route, signal, { ...extra, deadline, timeoutMs });
    } catch (error) {
      const code = isDsoError(error) ? error.code : undefined;
      const busy =
        code === 'DSO_AGENT_API_BUSY' ||
        (code === 'DSO_CLI_AGENT_UNREACHABLE' && CUT_OFF.has(causeCode(error) ?? ''));
      const delay = AGENT_BUSY_RETRY_DELAYS_MS[attempt];
      if (!busy || signal?.aborted || deadline.aborted) throw error;
      if (delay === undefined) throw busyError(error, settings.socketPath, attempt + 1);
      try {
        await sleep(delay, undefined, {
          signal: signal === undefined ? deadline : AbortSignal.any([deadline, signal]),
        });
      } catch {
        // The deadline or the caller's signal ended the pause: the busy answer is what happened.
        throw busyError(error, settings.socketPath, attempt + 1);
      }
    }
  }
}

function causeCode(error: unknown): string | undefined {
  const cause = (error as { cause?: unknown }).cause;
  return (cause as NodeJS.ErrnoException | undefined)?.code;
}

/** The agent stayed busy through every attempt: say so, and what to do. */
function busyError(last: unknown, socketPath: string, attempts: number): DsoError {
  const cut = causeCode(last);
  const what =
    cut !== undefined && CUT_OFF.has(cut)
      ? `closed the connection before answering (${cut})`
      : 'answered that every connection of its API is in use';
  return new DsoError(
    'DSO_CLI_AGENT_BUSY',
    `the agent on ${socketPath} is busy: it ${what}, ${attempts} time${attempts === 1 ? '' : 's'}; try again in a moment, and if it lasts look for clients holding its socket (ss -xp | grep ${socketPath}) or stop idle followers (dso events)`,
    { cause: last, socket: socketPath, attempts },
  );
}

/** One call on a fresh connection: the answer's JSON when its status is the route's, else its refusal. */
async function callAgentOnce(
  settings: Settings,
  route: AgentApiRoute,
  signal: AbortSignal | undefined,
  extra: {
    /** A JSON request body. */
    body?: string;
    timeoutMs?: number;
    /** The answer holds values: no error may carry any of its text. */
    secret?: boolean;
    /** The whole call's deadline, shared by its attempts. */
    deadline?: AbortSignal;
  } = {},
): Promise<unknown> {
  const { socketPath } = settings;
  const timeoutMs = extra.timeoutMs ?? settings.timeoutMs;
  const timeout = extra.deadline ?? AbortSignal.timeout(timeoutMs);
  const combined = signal === undefined ? timeout : AbortSignal.any([timeout, signal]);
  let answer: { status: number; text: string };
  try {
    answer = await new Promise((resolve, reject) => {
      const request = httpRequest(
        {
          socketPath,
          method: route.method,
          path: route.path,
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
  if (answer.status !== route.status) throw refusal(answer.status, body, socketPath);
  return body;
}

async function followEvents(
  settings: Settings,
  onEvent: (event: AgentApiEventLine) => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  const { socketPath } = settings;
  const route = AGENT_API_ROUTES.events;
  try {
    await new Promise<void>((resolve, reject) => {
      const request = httpRequest(
        {
          socketPath,
          method: route.method,
          path: route.path,
          agent: false,
          headers: { Accept: 'application/x-ndjson' },
          ...(signal === undefined ? {} : { signal }),
        },
        (response) => {
          if (response.statusCode !== route.status) {
            const chunks: Buffer[] = [];
            response.on('data', (chunk: Buffer) => chunks.push(chunk));
            response.once('end', () => {
              let body: unknown;
              try {
                body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
              } catch {
                body = undefined; // then the refusal names the status alone
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
              // A line without a type and a time is skipped; a type newer than this CLI is not.
              const parsed = agentApiEventLineSchema.safeParse(event);
              if (parsed.success) onEvent(parsed.data);
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

/** A non-2xx answer: the agent's `{ error, code }` (the contract's error body) when it sent one. */
function refusal(status: number, body: unknown, socketPath: string): DsoError {
  const parsed = agentApiErrorSchema.partial().safeParse(body);
  const sent = parsed.success ? parsed.data : {};
  const code =
    sent.code !== undefined && /^DSO_[A-Z0-9_]{1,60}$/.test(sent.code)
      ? sent.code
      : 'DSO_CLI_AGENT_ERROR';
  const message =
    sent.error !== undefined && sent.error !== ''
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

/**
 * How a consumer of the agent is shown to people: a container by its short id (12), a DSO
 * volume mount (`volume:<name>:<mount id>`) as `volume <name>` (an anonymous volume's 64-hex
 * name shortened to 12).
 *
 * @example
 * consumerLabel('volume:app-secrets:4f…'); // 'volume app-secrets'
 */
export function consumerLabel(id: string): string {
  if (!id.startsWith('volume:')) return id.slice(0, 12);
  const name = id.slice('volume:'.length, id.lastIndexOf(':'));
  return `volume ${/^[0-9a-f]{64}$/.test(name) ? name.slice(0, 12) : name}`;
}
