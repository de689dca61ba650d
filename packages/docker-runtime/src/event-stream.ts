import { backoffDelay, onAbort } from '@dso/async';
import { DockerRuntimeError, isDockerRuntimeError } from './errors.js';
import {
  type ContainerEvent,
  type EventCursor,
  type EventsResync,
  parseEventCursor,
  type RuntimeEvent,
  sinceOf,
} from './events.js';

/** Default of {@link EventsReconnectOptions.maxAttempts}: the seed's figure. */
export const DEFAULT_EVENTS_MAX_RECONNECTS = 100;
/** Default of {@link EventsReconnectOptions.baseDelayMs}. */
export const DEFAULT_EVENTS_RECONNECT_BASE_DELAY_MS = 500;
/** Default of {@link EventsReconnectOptions.maxDelayMs}. */
export const DEFAULT_EVENTS_RECONNECT_MAX_DELAY_MS = 30_000;
/**
 * How long a resumed stream waits for the engine's replay to show the last event seen before
 * it reports a resync. The replay is written right after the subscription, so a healthy engine
 * answers in milliseconds; a late replay only costs a reconciliation, never a lost event.
 */
export const EVENTS_REPLAY_WAIT_MS = 1_000;
/**
 * How long a connection must stay up, delivering nothing, before it counts as restored (it
 * resets the failure count at once when it delivers an event). An engine that accepts and then
 * drops every connection is a failing engine, not a healthy quiet one.
 */
export const EVENTS_STABLE_CONNECTION_MS = 5_000;
/**
 * Event identities remembered for de-duplication: four times the engine's replay buffer (256
 * events of every type), so every event a replay can repeat is still remembered.
 */
export const EVENTS_DEDUP_WINDOW = 1_024;

/** How a broken events stream is reconnected. */
export interface EventsReconnectOptions {
  /**
   * Consecutive failed reconnects before the iteration fails with DSO_DOCKER_RECONNECT_FAILED.
   * A connection the engine accepted resets the count. `0` never reconnects.
   * @default 100
   */
  maxAttempts?: number;
  /** First delay; doubles per failure up to `maxDelayMs`, each drawn from [d/2, d]. @default 500 */
  baseDelayMs?: number;
  /** @default 30000 */
  maxDelayMs?: number;
}

/** Why the stream is reconnecting, for the owner's log. */
export interface EventsReconnecting {
  /** Consecutive failures so far, 1 for the first. */
  attempt: number;
  /** Wait before the next connection. */
  delayMs: number;
  /** What broke, never holding a secret: ids, endpoints, codes. */
  error: DockerRuntimeError;
}

/** One connection to the engine's events endpoint, as the runtime opens it. */
export type ConnectEvents = (request: {
  /** The engine's `since`, exact: `seconds.nanoseconds`; undefined for events from now on. */
  since: string | undefined;
  signal: AbortSignal;
  onConnected: () => void;
}) => AsyncIterable<ContainerEvent>;

/** What {@link resilientEvents} runs on; the runtime passes real time, tests a fake. */
export interface ResilientEventsDeps {
  connect: ConnectEvents;
  /** Resolves after `ms`, or early (without throwing) when `signal` aborts. */
  sleep: (ms: number, signal: AbortSignal) => Promise<void>;
  now: () => number;
  random: () => number;
}

/** The options {@link resilientEvents} reads. */
export interface ResilientEventsOptions {
  signal: AbortSignal;
  /** The engine's `since` for the first connection only (not verified). */
  since?: string | undefined;
  /** Resume after this event's cursor, verified: a resync is reported when the gap is lost. */
  resumeFrom?: string | undefined;
  reconnect?: EventsReconnectOptions | undefined;
  onConnected?: (() => void) | undefined;
  onReconnecting?: ((info: EventsReconnecting) => void) | undefined;
  /** @default EVENTS_REPLAY_WAIT_MS */
  replayWaitMs?: number;
  /** @default EVENTS_STABLE_CONNECTION_MS */
  stableConnectionMs?: number;
}

/** Engine failures a reconnect may cure; anything else (closed, bad request) ends the iteration. */
const RECONNECTABLE = new Set([
  'DSO_DOCKER_EVENTS_LOST',
  'DSO_DOCKER_UNREACHABLE',
  'DSO_DOCKER_TIMEOUT',
  'DSO_DOCKER_ENGINE_ERROR',
]);

/**
 * The events stream that loses nothing silently. Each connection resumes with `since` at the
 * last event seen; the engine replays from that instant inclusive, so the first event of a
 * sound replay is the one we saw last (or another at the very same nanosecond). The replay is
 * trusted only when it starts there: if it starts later, or nothing comes within
 * `replayWaitMs`, the last event was no longer in the engine's buffer (256 events of every type;
 * emptied by an engine restart) and a {@link EventsResync} is yielded before anything else.
 * Events already delivered are recognised by their cursor and dropped, so the overlap brings no
 * duplicates. Reconnects back off with capped, jittered exponential delays; after
 * `maxAttempts` consecutive failures the iteration throws DSO_DOCKER_RECONNECT_FAILED.
 */
export async function* resilientEvents(
  options: ResilientEventsOptions,
  deps: ResilientEventsDeps,
): AsyncGenerator<RuntimeEvent> {
  const { signal } = options;
  const policy = reconnectPolicy(options.reconnect);
  const replayWaitMs = options.replayWaitMs ?? EVENTS_REPLAY_WAIT_MS;
  const stableConnectionMs = options.stableConnectionMs ?? EVENTS_STABLE_CONNECTION_MS;
  let cursor: EventCursor | undefined =
    options.resumeFrom === undefined ? undefined : parseEventCursor(options.resumeFrom);
  const seen = new RecentKeys(EVENTS_DEDUP_WINDOW);
  if (cursor !== undefined) seen.add(cursor.key);
  let failures = 0;
  let firstConnection = true;

  while (!signal.aborted) {
    // Each connection resumes after the last event seen; the first may start from the
    // caller's `since` instead (not verifiable: there is no event to find in the replay).
    const resumeAt = cursor;
    const since =
      resumeAt !== undefined ? sinceOf(resumeAt) : firstConnection ? options.since : undefined;
    // Not the first connection, and nothing to resume after: whatever happened during the gap
    // cannot be replayed or proven, so the owner reconciles.
    const unverifiable = !firstConnection && resumeAt === undefined;
    firstConnection = false;
    let lastError: DockerRuntimeError | undefined;
    const connection = new AbortController();
    const stopLinking = onAbort(signal, () => connection.abort());
    const mailbox = new Mailbox<EventsResync>();
    let replay: 'none' | 'waiting' | 'done' = resumeAt === undefined ? 'none' : 'waiting';
    let replayTimer: ReturnType<typeof setTimeout> | undefined;
    let stableTimer: ReturnType<typeof setTimeout> | undefined;
    try {
      const stream = deps.connect({
        since,
        signal: connection.signal,
        onConnected: () => {
          // Restored once it has stayed up a while or delivered an event, not merely accepted.
          stableTimer = setTimeout(() => {
            failures = 0;
          }, stableConnectionMs);
          stableTimer.unref?.();
          options.onConnected?.();
          if (unverifiable) mailbox.push(resync('unverifiable', deps.now()));
          if (replay === 'waiting') {
            // No replay in time: the last event seen is gone from the engine's buffer (or the
            // engine is slow, which costs one needless reconciliation, never a lost event).
            replayTimer = setTimeout(() => {
              if (replay !== 'waiting') return;
              replay = 'done';
              mailbox.push(resync('unverifiable', deps.now()));
            }, replayWaitMs);
            replayTimer.unref?.();
          }
        },
      });
      for await (const event of interleave(stream, mailbox)) {
        if (event.type === 'resync') {
          yield event;
          continue;
        }
        failures = 0;
        if (replay === 'waiting' && resumeAt !== undefined) {
          replay = 'done';
          clearTimeout(replayTimer);
          // Sound replays start at the instant of the last event seen (inclusive `since`). Later
          // means it left the buffer; earlier can only be a clock set back across an engine
          // restart: either way continuity is unproven.
          if (event.timeNano !== resumeAt.timeNano) yield resync('gap', deps.now());
        }
        // The connection's callbacks have all run by now, and its replay is settled.
        if (replay !== 'waiting') mailbox.close();
        if (seen.has(event.cursor)) continue;
        seen.add(event.cursor);
        cursor = { timeNano: event.timeNano, key: event.cursor };
        yield event;
      }
      if (signal.aborted) return;
      lastError = new DockerRuntimeError(
        'DSO_DOCKER_EVENTS_LOST',
        'the engine ended the events stream',
        { reason: 'ended' },
      );
    } catch (error) {
      if (signal.aborted) return;
      if (!isDockerRuntimeError(error) || !RECONNECTABLE.has(error.code)) throw error;
      lastError = error;
    } finally {
      clearTimeout(replayTimer);
      clearTimeout(stableTimer);
      stopLinking();
      connection.abort();
    }

    failures += 1;
    if (failures > policy.maxAttempts) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_RECONNECT_FAILED',
        `the Docker Engine's events stream could not be restored after ${policy.maxAttempts} ` +
          'consecutive reconnects: check that the engine runs and answers (docker info), then ' +
          'restart the owner; it will reconcile every container',
        { attempts: failures - 1, cause: lastError },
      );
    }
    // Equal jitter: never below half the step, so a fleet of agents spreads out but still backs off.
    const delayMs = Math.round(
      backoffDelay(failures, {
        baseMs: policy.baseDelayMs,
        maxMs: policy.maxDelayMs,
        jitter: 'equal',
        random: deps.random,
      }),
    );
    options.onReconnecting?.({ attempt: failures, delayMs, error: lastError });
    await deps.sleep(delayMs, signal);
  }
}

function resync(reason: EventsResync['reason'], at: number): EventsResync {
  return { type: 'resync', reason, at };
}

/**
 * Items the connection's callbacks hand to the iteration (a resync), delivered as soon as they
 * are pushed, even while the stream itself is quiet.
 */
class Mailbox<T> {
  readonly #items: T[] = [];
  #wake: (() => void) | undefined;
  #open = true;

  /** False once nothing more can be pushed: reads then wait on the stream alone. */
  get open(): boolean {
    return this.#open;
  }

  /** Nothing more will be pushed (the connection's first event has been handled). */
  close(): void {
    this.#open = false;
  }

  push(item: T): void {
    this.#items.push(item);
    this.#wake?.();
  }

  /** Everything pushed so far, oldest first. */
  drain(): T[] {
    return this.#items.splice(0);
  }

  /** Resolves at the next push (at once if something is waiting). */
  next(): Promise<typeof MAIL> {
    if (this.#items.length > 0) return Promise.resolve(MAIL);
    return new Promise((resolve) => {
      this.#wake = () => {
        this.#wake = undefined;
        resolve(MAIL);
      };
    });
  }
}

const MAIL = Symbol('mail');

/** Yields the stream's events, and the mailbox's items as soon as they arrive. */
async function* interleave<T>(
  stream: AsyncIterable<ContainerEvent>,
  mailbox: Mailbox<T>,
): AsyncGenerator<ContainerEvent | T> {
  const iterator = stream[Symbol.asyncIterator]();
  let next: Promise<IteratorResult<ContainerEvent>> | undefined;
  try {
    for (;;) {
      yield* mailbox.drain();
      next ??= iterator.next();
      // Racing costs a promise per event: only while a resync may still be pushed.
      const winner = mailbox.open ? await Promise.race([next, mailbox.next()]) : await next;
      if (winner === MAIL) continue;
      next = undefined;
      // What was pushed while this event was on its way goes first (a resync precedes it).
      yield* mailbox.drain();
      if (winner.done) return;
      yield winner.value;
    }
  } finally {
    if (next === undefined) {
      await iterator.return?.();
    } else {
      // A read is still pending: an async generator queues return() behind it, and the read
      // ends only once the owner aborts the connection, which it does after we return. Close
      // the stream when the read settles instead of waiting for it here.
      next.then(
        () =>
          iterator.return?.().catch(() => {
            // Closing a stream that already failed: the failure was the abort, nothing to report.
          }),
        () => {
          // The connection was aborted under the read; the error is the abort, nothing to report.
        },
      );
    }
  }
}

function reconnectPolicy(
  options: EventsReconnectOptions | undefined,
): Required<EventsReconnectOptions> {
  const maxAttempts = options?.maxAttempts ?? DEFAULT_EVENTS_MAX_RECONNECTS;
  const baseDelayMs = options?.baseDelayMs ?? DEFAULT_EVENTS_RECONNECT_BASE_DELAY_MS;
  const maxDelayMs = options?.maxDelayMs ?? DEFAULT_EVENTS_RECONNECT_MAX_DELAY_MS;
  if (!Number.isInteger(maxAttempts) || maxAttempts < 0) {
    throw invalid('reconnect.maxAttempts must be a whole number, 0 or more');
  }
  if (!Number.isFinite(baseDelayMs) || baseDelayMs < 0) {
    throw invalid('reconnect.baseDelayMs must be a number of ms, 0 or more');
  }
  if (!Number.isFinite(maxDelayMs) || maxDelayMs < baseDelayMs) {
    throw invalid('reconnect.maxDelayMs must be a number of ms, at least baseDelayMs');
  }
  return { maxAttempts, baseDelayMs, maxDelayMs };
}

function invalid(message: string): DockerRuntimeError {
  return new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', message, { field: 'reconnect' });
}

/** A bounded set of the most recent keys, oldest forgotten first. */
class RecentKeys {
  readonly #keys = new Set<string>();

  constructor(readonly limit: number) {}

  has(key: string): boolean {
    return this.#keys.has(key);
  }

  add(key: string): void {
    this.#keys.add(key);
    if (this.#keys.size > this.limit) {
      const oldest = this.#keys.values().next().value as string;
      this.#keys.delete(oldest);
    }
  }
}
