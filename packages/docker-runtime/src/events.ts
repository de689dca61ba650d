import { DOCKER_DIALECT, type EventDialect } from './engine-dialect.js';
import { DockerRuntimeError } from './errors.js';

/** The container health states a `container.health` event reports. */
export type ContainerHealth = 'starting' | 'healthy' | 'unhealthy';

/**
 * A container lifecycle event from the engine, past tense and dotted.
 *
 * `labels` are the container's labels as the engine attaches them to the event (its own `name`
 * and `image` attributes, a `die`'s `exitCode` and a `rename`'s `oldName` are moved to their own
 * fields).
 */
export type ContainerEvent = {
  type:
    | 'container.created'
    | 'container.started'
    | 'container.died'
    | 'container.destroyed'
    | 'container.renamed'
    | 'container.health';
  /** Full container id. */
  id: string;
  /** When the engine emitted it, ms since the epoch. */
  at: number;
  /** The engine's `timeNano`, exact, as a decimal string (a JSON number would lose precision). */
  timeNano: string;
  /**
   * Names this event exactly (time, container, action): pass the last one you handled as
   * `resumeFrom` to resume after it with nothing lost or repeated. Opaque; not secret.
   */
  cursor: string;
  labels: Record<string, string>;
  /** The container's name, without the leading `/` (for `container.renamed`, the new name). */
  name: string;
  /** The image reference the container was created from. */
  image: string;
  /** For `container.died`: the main process's exit code. */
  exitCode?: number;
  /** For `container.renamed`: the name before, without the leading `/`. */
  oldName?: string;
  /**
   * For `container.health`: the state the healthcheck reached, when the engine says it (Docker
   * does; Podman 4.3 only says a check ran: inspect the container for its state).
   */
  health?: ContainerHealth;
};

/**
 * Told by {@link DockerRuntime.events} when events may have been missed: the stream broke and
 * the engine could no longer replay the gap (it keeps only its last 256 events, and none across
 * its own restart), or nothing had been seen yet to resume after. Reconcile everything: list the
 * containers and compare. Events after it are delivered as usual.
 */
export type EventsResync = {
  type: 'resync';
  /**
   * `gap`: the last event seen is no longer in the engine's buffer; `unverifiable`: nothing had
   * been seen to resume after (or the replay did not come), so continuity cannot be proven.
   */
  reason: 'gap' | 'unverifiable';
  /** When the gap was detected, ms since the epoch. */
  at: number;
};

/** What {@link DockerRuntime.events} yields. */
export type RuntimeEvent = ContainerEvent | EventsResync;

/**
 * The container actions the runtime reads, in Docker's words, and the event type each becomes.
 * Another engine's names for them are mapped in its dialect (engine-dialect.ts).
 */
export const CONTAINER_ACTIONS = {
  create: 'container.created',
  start: 'container.started',
  die: 'container.died',
  destroy: 'container.destroyed',
  rename: 'container.renamed',
  health_status: 'container.health',
} as const satisfies Record<string, ContainerEvent['type']>;

/** One of {@link CONTAINER_ACTIONS}' keys: an action in the runtime's own words. */
export type ContainerAction = keyof typeof CONTAINER_ACTIONS;

const HEALTH_STATES = new Set<string>(['starting', 'healthy', 'unhealthy']);

/** Attributes the engine adds to a container event that are not labels. */
const ENGINE_ATTRIBUTES = new Set(['name', 'image']);
const ACTION_ATTRIBUTES: Record<string, Set<string>> = {
  die: new Set(['exitCode', 'execDuration']),
  rename: new Set(['oldName']),
};

/**
 * Longest line (in UTF-16 code units, about bytes for the engine's ASCII JSON) accepted from the
 * events stream; a longer one ends the stream as lost rather than growing a buffer without bound.
 */
export const MAX_EVENT_LINE_LENGTH = 1024 * 1024;

/**
 * Splits a stream of text into lines, holding at most `maxLineLength` of an unfinished line.
 *
 * @throws DockerRuntimeError DSO_DOCKER_EVENTS_LOST when a line exceeds the bound
 */
export class LineSplitter {
  #partial = '';

  constructor(readonly maxLineLength: number = MAX_EVENT_LINE_LENGTH) {}

  push(text: string): string[] {
    const parts = (this.#partial + text).split('\n');
    this.#partial = parts.pop() ?? '';
    if (this.#partial.length > this.maxLineLength) {
      this.#partial = '';
      throw new DockerRuntimeError(
        'DSO_DOCKER_EVENTS_LOST',
        `an engine event exceeded ${this.maxLineLength} characters; the events stream was dropped, reconcile`,
        { reason: 'line-too-long' },
      );
    }
    return parts.map((line) => line.trim()).filter((line) => line.length > 0);
  }

  /** The unterminated rest, if any. */
  rest(): string {
    return this.#partial.trim();
  }
}

interface RawEvent {
  Type?: unknown;
  Action?: unknown;
  id?: unknown;
  time?: unknown;
  Actor?: { ID?: unknown; Attributes?: unknown };
}

/**
 * Parses one line of `/events` into a {@link ContainerEvent}, reading the engine's action names
 * and attributes through its dialect; `undefined` for events of other types or actions (the
 * subscription filters them, this double-checks).
 *
 * @throws DockerRuntimeError DSO_DOCKER_EVENTS_LOST when the line is not an engine event
 */
export function parseContainerEvent(
  line: string,
  dialect: EventDialect = DOCKER_DIALECT.events,
): ContainerEvent | undefined {
  let raw: RawEvent;
  try {
    raw = JSON.parse(line) as RawEvent;
  } catch (error) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_EVENTS_LOST',
      'the engine sent an events line that is not JSON; the events stream was dropped, reconcile',
      { reason: 'malformed', cause: error },
    );
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  if (raw.Type !== 'container' || typeof raw.Action !== 'string') return undefined;
  // Docker's `health_status: healthy` carries its state in the action itself.
  const [engineAction = '', detail] = raw.Action.split(': ', 2);
  const action = Object.hasOwn(dialect.actions, engineAction)
    ? dialect.actions[engineAction]
    : undefined;
  if (action === undefined) return undefined;
  const type = CONTAINER_ACTIONS[action];
  if (action === 'health_status') {
    // A state in the action is read whatever the dialect expects (a later Podman may add
    // one); an action without one is kept only where the engine never sends one (Podman 4.3).
    if (detail !== undefined && !HEALTH_STATES.has(detail)) return undefined;
    if (detail === undefined && dialect.healthState === 'action') return undefined;
  }
  const id = typeof raw.Actor?.ID === 'string' ? raw.Actor.ID : raw.id;
  if (typeof id !== 'string' || id === '') return undefined;

  // JSON.parse rounds timeNano (~1.7e18 > 2^53): read the digits from the text itself.
  const timeNano =
    /"timeNano"\s*:\s*(\d+)/.exec(line)?.[1] ??
    (typeof raw.time === 'number' ? `${Math.trunc(raw.time)}000000000` : '0');
  // ms since the epoch: the digits without their last six (no BigInt needed).
  const at = timeNano.length > 6 ? Number(timeNano.slice(0, -6)) : 0;

  const attributes =
    typeof raw.Actor?.Attributes === 'object' && raw.Actor.Attributes !== null
      ? (raw.Actor.Attributes as Record<string, unknown>)
      : {};
  const labels: Record<string, string> = {};
  for (const [key, value] of Object.entries(attributes)) {
    if (typeof value !== 'string' || ENGINE_ATTRIBUTES.has(key)) continue;
    if (dialect.engineAttributes.has(key)) continue;
    if (ACTION_ATTRIBUTES[action]?.has(key)) continue;
    labels[key] = value;
  }
  const event: ContainerEvent = {
    type,
    id,
    at,
    timeNano,
    cursor: formatCursor(timeNano, id, action, detail),
    labels,
    name: typeof attributes.name === 'string' ? attributes.name : '',
    image: typeof attributes.image === 'string' ? attributes.image : '',
  };
  if (action === 'die' && typeof attributes.exitCode === 'string') {
    const exitCode = Number(attributes.exitCode);
    if (Number.isInteger(exitCode)) event.exitCode = exitCode;
  }
  if (action === 'rename' && typeof attributes.oldName === 'string') {
    event.oldName = attributes.oldName.replace(/^\//, '');
  }
  if (action === 'health_status' && detail !== undefined) event.health = detail as ContainerHealth;
  return event;
}

/** A parsed {@link ContainerEvent.cursor}. */
export interface EventCursor {
  timeNano: string;
  /** The whole cursor, which is also the event's identity for de-duplication. */
  key: string;
}

const CURSOR_PATTERN = /^(\d{1,20})~([A-Za-z0-9]{1,128})~([a-z_]{1,32})(?:~([a-z]{1,16}))?$/;

function formatCursor(timeNano: string, id: string, action: string, detail?: string): string {
  return detail === undefined
    ? `${timeNano}~${id}~${action}`
    : `${timeNano}~${id}~${action}~${detail}`;
}

/**
 * Reads a cursor given back as `resumeFrom`.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST when it is not one this package made
 */
export function parseEventCursor(cursor: string): EventCursor {
  const match = typeof cursor === 'string' ? CURSOR_PATTERN.exec(cursor) : null;
  if (match === null) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      'resumeFrom must be the cursor of an event this runtime delivered (event.cursor)',
      { field: 'resumeFrom' },
    );
  }
  return { timeNano: match[1] as string, key: cursor };
}

/**
 * `seconds.nanoseconds` of this cursor's event: replaying from there on (inclusive) starts at
 * it. The runtime turns it into the engine's own `since` through its dialect.
 */
export function sinceOf(cursor: EventCursor): string {
  const digits = cursor.timeNano.padStart(10, '0');
  return `${digits.slice(0, -9)}.${digits.slice(-9)}`;
}

/**
 * Turns `since` into seconds with up to nine decimals (the runtime hands that to the engine
 * through its dialect, exactly as Docker reads it).
 * A number below 1e11 is unix seconds, anything larger is ms (1e11 s is the year 5138);
 * a string must already be `seconds[.fraction]`.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST for a negative, non-finite or malformed value
 */
export function toEngineSince(since: number | string): string {
  if (typeof since === 'string') {
    if (!/^\d+(\.\d{1,9})?$/.test(since)) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_INVALID_REQUEST',
        `since ${JSON.stringify(since)} must be unix seconds, optionally with up to 9 decimals`,
        { field: 'since' },
      );
    }
    return since;
  }
  if (!Number.isFinite(since) || since < 0) {
    throw new DockerRuntimeError(
      'DSO_DOCKER_INVALID_REQUEST',
      'since must be a non-negative number of seconds or ms',
      { field: 'since' },
    );
  }
  if (since < 1e11) return Number.isInteger(since) ? String(since) : since.toFixed(9);
  const ms = Math.trunc(since);
  return `${Math.trunc(ms / 1000)}.${String(ms % 1000).padStart(3, '0')}`;
}
