import { setMaxListeners } from 'node:events';
import {
  type BackoffJitter,
  backoffDelay,
  type Clock,
  type ClockTimer,
  systemClock,
} from '@dso/async';
import { DsoError } from './errors.js';

// The model is client-go's util/workqueue: a line of waiting keys (its "queue" + "dirty" set),
// the keys being worked on (its "processing" set) each with a dirty mark for an add that came
// in meanwhile, and rate-limited requeue (its "AddAfter"). Unlike client-go the queue calls the
// workers itself, and it is bounded: a full queue sheds its oldest waiting key and says which.

/** Workers an {@link EventQueue} runs at once when `concurrency` is not given. */
export const DEFAULT_QUEUE_CONCURRENCY = 4;
/** The most workers an {@link EventQueue} runs at once. */
export const MAX_QUEUE_CONCURRENCY = 32;
/** Keys an {@link EventQueue} holds waiting when `maxSize` is not given. */
export const DEFAULT_QUEUE_MAX_SIZE = 1000;
/** How long {@link EventQueue.close} lets running work finish when `graceMs` is not given. */
export const DEFAULT_QUEUE_CLOSE_GRACE_MS = 10_000;
/** The retry policy of an {@link EventQueue} when `retry` is not given, field by field. */
export const DEFAULT_QUEUE_RETRY: Readonly<Required<Omit<EventQueueRetryOptions, 'concurrency'>>> =
  Object.freeze({
    maxAttempts: 5,
    baseDelayMs: 100,
    maxDelayMs: 30_000,
    jitter: 'equal',
  });

/** What a worker is given besides the key and its item. */
export interface EventQueueWorkerContext {
  /**
   * Aborted when {@link EventQueue.close}'s grace period runs out; the reason is a
   * {@link DsoError} `DSO_QUEUE_CLOSED`. Pass it to every I/O call.
   */
  readonly signal: AbortSignal;
  /** 1 on the first run of this work, 2 on its first retry, and so on. */
  readonly attempt: number;
  /**
   * Runs `work` without holding one of the queue's `concurrency` workers: meanwhile another
   * key's work may start. The key stays running (an add for it still waits for this run to
   * end). When `work` settles, the run waits for a worker again, ahead of keys in line, and
   * then returns what `work` returned or throws what it threw. For waits that are not the
   * queue's bounded resource (a slow secret store, say), so they cannot hold every worker.
   * With `maxSize` keys already outside, `work` runs in the worker it holds.
   */
  outside<R>(work: () => Promise<R>): Promise<R>;
}

/**
 * Does the work for one key. Resolves when done; rejects (or throws) to have it retried.
 * Never runs twice at once for one key.
 */
export type EventQueueWorker<T> = (
  key: string,
  item: T,
  context: EventQueueWorkerContext,
) => Promise<void>;

/**
 * How the delay before a retry is drawn from its backoff `b = min(maxDelayMs, baseDelayMs ×
 * 2^(attempt−1))`: `'full'` anywhere in [0, b), `'equal'` in [b/2, b), `'none'` exactly b.
 */
export type RetryJitter = BackoffJitter;

/** When and how often failed work is tried again. */
export interface EventQueueRetryOptions {
  /**
   * Runs of one piece of work, the first included, before it is given up and reported to
   * `onFailed`. 1 means never retry.
   * @default 5
   */
  maxAttempts?: number;
  /**
   * The backoff after the first failure, doubled after each further one.
   * @default 100
   */
  baseDelayMs?: number;
  /**
   * The largest backoff.
   * @default 30_000
   */
  maxDelayMs?: number;
  /**
   * How the delay is drawn from the backoff (see {@link RetryJitter}). `'equal'` spreads
   * retries while still pausing at least half the backoff, so a failing dependency gets a rest.
   * @default 'equal'
   */
  jitter?: RetryJitter;
  /**
   * Retries (runs after the first) holding a worker at once, at most: a retry due while as many
   * hold one waits, and first runs pass it, so work that keeps failing slowly (a call that hangs
   * until its deadline) cannot hold every worker. A retry waiting `outside` holds none. From 1
   * to `concurrency`.
   * @default the queue's `concurrency` (no bound of their own)
   */
  concurrency?: number;
}

/** One run's times, for metrics: reported as each run ends. */
export interface EventQueueTiming {
  readonly key: string;
  /** The run's attempt number (1 for the first). */
  readonly attempt: number;
  /**
   * From the moment the work was ready to run to the moment its worker started: since the
   * first add that created it, since the add that came in while the key was running, or since
   * its retry delay ended.
   */
  readonly waitMs: number;
  /** From the worker's start to its end. */
  readonly runMs: number;
  /** `'ok'` when the worker resolved, `'error'` when it rejected or threw. */
  readonly outcome: 'ok' | 'error';
}

/** Options of {@link createEventQueue}. */
export interface EventQueueOptions<T> {
  /** Does the work for one key; see {@link EventQueueWorker}. */
  worker: EventQueueWorker<T>;
  /**
   * Workers at once, from 1 to {@link MAX_QUEUE_CONCURRENCY}.
   * @default 4
   */
  concurrency?: number;
  /**
   * Keys waiting at once: those in line for a worker plus those waiting out a retry delay.
   * A key that is running and was added again meanwhile is not counted (at most `concurrency`
   * of those, plus at most `maxSize` running `outside` a worker). When a new key arrives at a
   * full queue, the oldest waiting key is shed.
   * @default 1000
   */
  maxSize?: number;
  /**
   * Combines the item of an add with the item already waiting for that key.
   * @default the latest item wins: `(previous, next) => next`
   */
  merge?: (previous: T, next: T) => T;
  /** Retry policy; each field has its own default (see {@link DEFAULT_QUEUE_RETRY}). */
  retry?: EventQueueRetryOptions;
  /**
   * Given the keys shed because the queue was full, so their owner can reconcile them later.
   * Called after the add that shed them returns, once per microtask tick with every key shed in
   * that tick, oldest first.
   */
  onShed?: (keys: string[]) => void;
  /**
   * Whether a failure may pass if the work is tried again. One that may not is given up at
   * once (reported to `onFailed` without retries).
   * @default every failure is retried
   */
  retryable?: (error: unknown) => boolean;
  /**
   * Given a key whose work failed `attempts` times (its last error), when it is given up: after
   * `retry.maxAttempts` runs, or after one whose failure `retryable` says cannot pass.
   */
  onFailed?: (key: string, error: unknown, attempts: number) => void;
  /** Given each run's wait and run times as it ends. */
  onTiming?: (timing: EventQueueTiming) => void;
  /** @default {@link systemClock} */
  clock?: Clock;
  /**
   * Returns a number in [0, 1) for retry jitter.
   * @default Math.random
   */
  random?: () => number;
}

/** Options of {@link EventQueue.close}. */
export interface EventQueueCloseOptions {
  /**
   * How long running work may take to finish before the workers' signal is aborted.
   * @default 10_000
   */
  graceMs?: number;
}

/** Gauges and counters of an {@link EventQueue}, for metrics. Counters start at 0. */
export interface EventQueueStats {
  /** Keys waiting: in line for a worker or waiting out a retry delay (at most `maxSize`). */
  readonly depth: number;
  /** Those of `depth` waiting out a retry delay. */
  readonly retrying: number;
  /** Keys whose worker is running (those waiting {@link EventQueueWorkerContext.outside} included). */
  readonly inFlight: number;
  /** Those of `inFlight` running `outside` a worker, or waiting for a worker again after it. */
  readonly outside: number;
  /** Adds accepted, coalesced ones included. */
  readonly added: number;
  /** Adds folded into work already waiting for their key. */
  readonly coalesced: number;
  /** Keys shed because the queue was full (each also given to `onShed`). */
  readonly shed: number;
  /** Failed runs scheduled to be tried again. */
  readonly retried: number;
  /** Work given up after `maxAttempts` failed runs (each also given to `onFailed`). */
  readonly failed: number;
  /** Runs whose worker resolved. */
  readonly completed: number;
  /** Adds refused because the queue was closed. */
  readonly refused: number;
}

/** A bounded, keyed work queue; see {@link createEventQueue}. */
export interface EventQueue<T = void> {
  /**
   * Asks for `key` to be worked on with `item`. A key already waiting keeps its place in line
   * and its item is merged; a key that is running is run once more when it ends. Never throws
   * for a full queue (the oldest waiting key is shed instead).
   *
   * @returns false, doing nothing, once the queue is closed; true otherwise
   * @throws whatever `merge` throws, with the queue unchanged
   */
  add(key: string, item: T): boolean;
  /** The queue's gauges and counters now. */
  stats(): EventQueueStats;
  /** Resolves when no key waits, runs, or waits out a retry delay. */
  idle(): Promise<void>;
  /**
   * Stops the queue: refuses further adds, drops the waiting work, lets running work finish
   * for up to `graceMs`, then aborts the workers' signal and waits for every worker to settle
   * (a worker that ignores its signal holds `close()` open). Keys shed before the close reach
   * `onShed` before it resolves. Idempotent: later calls return the first call's promise.
   *
   * @returns the keys whose work was not done, for the owner to pick up at its next start:
   *   those waiting (or waiting out a retry delay) at close, those added while running, and
   *   those whose run failed during the shutdown (they are not retried; work on its last
   *   attempt goes to `onFailed` as usual). Not given to `onShed`, not counted as shed.
   * @throws RangeError when `graceMs` is negative or not finite
   */
  close(options?: EventQueueCloseOptions): Promise<string[]>;
  /** `close()` with the default grace period. */
  [Symbol.asyncDispose](): Promise<void>;
}

/** A key waiting: in line for a worker (`timer` undefined) or out a retry delay. */
interface Waiting<T> {
  readonly key: string;
  item: T;
  /** Runs of this work so far (0 before its first). */
  readonly attempts: number;
  /** When it joined the line for a worker. */
  readyAt: number;
  /** Its place across both lines (first runs, retries): lower is served first. */
  order: number;
  timer: ClockTimer | undefined;
}

/** A key whose worker is running. */
interface Running<T> {
  readonly item: T;
  readonly attempt: number;
  readonly readyAt: number;
  readonly startedAt: number;
  /** Added again while running: run once more afterwards, with `dirtyItem`. */
  dirty: boolean;
  dirtyItem: T | undefined;
  dirtySince: number;
  /** Calls of `outside` in progress: while above 0 the run holds no worker. */
  outsideCalls: number;
  /** Holds one of the `concurrency` workers (not while `outside`). */
  holding: boolean;
  /** The worker has settled: a late `outside` call takes no worker any more. */
  finished: boolean;
}

/**
 * Builds a bounded, keyed work queue, for events about things that have an id (containers):
 *
 * - Work is keyed. Adds for a key that is waiting coalesce into one run (items merged, latest
 *   wins by default) and the key keeps its place in line; keys are served first come, first
 *   served. An add for a key that is running marks it to run once more afterwards, never at
 *   the same time.
 * - At most `concurrency` workers run at once. A worker may wait for something that is not
 *   the queue's to bound `outside` its worker ({@link EventQueueWorkerContext.outside}): the
 *   worker goes to the next key meanwhile, and comes back to the run, ahead of the line, when
 *   the wait is over. One key still never runs twice at once.
 * - Bounded: at most `maxSize` keys wait. A new key arriving at a full queue sheds the oldest
 *   waiting key (the one waiting longest, for a worker or for a retry), counts it and hands it
 *   to `onShed`, so nothing is silently forgotten. A shed key added later is just work again.
 * - A worker that rejects is retried after a capped, jittered exponential backoff, up to
 *   `retry.maxAttempts` runs, then reported to `onFailed` (with any add that came in during its
 *   last run: the owner reconciles the key anyway). A failure `retryable` says cannot pass goes
 *   to `onFailed` at once. At most `retry.concurrency` retries hold a worker at once; a retry due beyond
 *   that waits while first runs go ahead, so work that fails slowly cannot hold every worker. Adds during the backoff coalesce into the
 *   retry and do not cut the delay short, so a burst of events cannot hammer what is failing.
 * - Workers never run inside `add`: dispatch happens on a microtask, which also lets a burst
 *   of adds in one tick coalesce. Worker failures go to `onFailed`, never out of the queue.
 *   Hooks (`retryable`, `onShed`, `onFailed`, `onTiming`) must not throw; one that does is a bug: the queue
 *   stays consistent and rethrows the error on a fresh microtask, where it is an uncaught
 *   exception, as an `EventEmitter` listener's would be.
 *
 * O(1) per add and per dispatch: insertion-ordered Maps are the line and the age order.
 *
 * @example
 * const queue = createEventQueue<DockerEvent>({
 *   concurrency: 8,
 *   worker: (containerId, event, { signal }) => deliver(containerId, event, { signal }),
 *   onShed: (ids) => reconcileLater(ids),
 *   onFailed: (id, error, attempts) =>
 *     logger.warn({ containerId: id, attempts, err: error }, 'secrets not delivered'),
 * });
 * for await (const event of runtime.events({ signal })) queue.add(event.id, event);
 * const unfinished = await queue.close({ graceMs: 5_000 });
 *
 * @throws TypeError when `worker` or a hook is not a function
 * @throws RangeError when a number is out of range: `concurrency` not an integer in 1..32,
 *   `maxSize` not a positive integer, `retry.maxAttempts` not a positive integer,
 *   `retry.concurrency` not an integer in 1..`concurrency`, a delay
 *   negative or not finite, `maxDelayMs` below `baseDelayMs`, an unknown `jitter`
 */
export function createEventQueue<T = void>(options: EventQueueOptions<T>): EventQueue<T> {
  const settings = resolveOptions(options);
  const { worker, concurrency, maxSize, merge, clock, random } = settings;
  const { maxAttempts, baseDelayMs, maxDelayMs, jitter } = settings.retry;
  const retryConcurrency = settings.retry.concurrency;
  const { onShed, onFailed, onTiming, retryable } = settings;

  // Every waiting key, in the order it started waiting: the head is the one to shed.
  const waiting = new Map<string, Waiting<T>>();
  // The keys of `waiting` in line for a worker (not in a retry delay), in the order served:
  // first runs, and retries whose delay is over (served only while fewer than
  // `retry.concurrency` retries hold a worker). `order` interleaves the two.
  const line = new Map<string, Waiting<T>>();
  const retryLine = new Map<string, Waiting<T>>();
  let nextOrder = 0;
  // Retries (runs after the first) holding a worker: one `outside` holds none, so a retry
  // waiting on something slow does not keep other retries from the workers.
  let retriesHolding = 0;
  const running = new Map<string, Running<T>>();
  // Workers held: running keys minus those `outside` (or waiting to come back from it).
  let held = 0;
  // Runs back from `outside`, waiting for a worker, first come first served: ahead of the line.
  const returning: Array<{ run: Running<T>; resolve: () => void }> = [];
  const controller = new AbortController();
  // Every run in flight (and every run waiting `outside`, up to maxSize) may listen on it: a
  // burst of containers waiting on one secret's load adds one listener each. Not a leak, so no
  // MaxListenersExceededWarning on the process's stderr.
  setMaxListeners(0, controller.signal);

  let added = 0;
  let coalesced = 0;
  let shed = 0;
  let retried = 0;
  let failed = 0;
  let completed = 0;
  let refused = 0;
  let outsideCount = 0;

  let shedBatch: string[] = [];
  let tickScheduled = false;
  let idleWaiters: Array<() => void> = [];
  let closed = false;
  let closing: Promise<string[]> | undefined;
  let finishClose: (() => void) | undefined;
  let graceTimer: ClockTimer | undefined;
  const unfinished = new Set<string>();

  const combine = (previous: T, next: T): T => (merge ? merge(previous, next) : next);
  // Times are read only for onTiming: without it, a reading per add and per run is wasted work
  // (performance.now() costs about as much as the rest of an add).
  const readClock = onTiming ? () => clock.now() : () => 0;

  const tick = () => {
    tickScheduled = false;
    flushShed();
    pump();
  };
  const schedule = () => {
    if (tickScheduled) return;
    tickScheduled = true;
    queueMicrotask(tick);
  };

  const flushShed = () => {
    if (shedBatch.length === 0) return;
    const keys = shedBatch;
    shedBatch = [];
    if (onShed) callHook(() => onShed(keys));
  };

  const checkIdle = () => {
    if (waiting.size > 0 || running.size > 0 || idleWaiters.length === 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  };

  /** Makes room for one more waiting key by shedding the oldest, when the queue is full. */
  const makeRoom = () => {
    if (waiting.size < maxSize) return;
    const oldest = waiting.values().next().value!;
    waiting.delete(oldest.key);
    if (oldest.timer === undefined) {
      line.delete(oldest.key);
      retryLine.delete(oldest.key);
    } else clock.clearTimeout(oldest.timer);
    shed += 1;
    shedBatch.push(oldest.key);
    schedule();
  };

  /** Puts a key that is neither waiting nor running in line for a worker. */
  const enqueue = (key: string, item: T, attempts: number, readyAt: number) => {
    makeRoom();
    const entry: Waiting<T> = {
      key,
      item,
      attempts,
      readyAt,
      order: nextOrder++,
      timer: undefined,
    };
    waiting.set(key, entry);
    line.set(key, entry);
    schedule();
  };

  /** Puts a key whose run failed into a retry delay. */
  const enqueueRetry = (key: string, item: T, attempts: number) => {
    makeRoom();
    const entry: Waiting<T> = { key, item, attempts, readyAt: 0, order: 0, timer: undefined };
    entry.timer = clock.setTimeout(() => {
      entry.timer = undefined;
      entry.readyAt = readClock();
      entry.order = nextOrder++;
      retryLine.set(key, entry);
      // Through a microtask like every dispatch, so no worker runs inside the clock's callback.
      schedule();
    }, retryDelay(attempts));
    waiting.set(key, entry);
  };

  const mayPass = (error: unknown): boolean => {
    if (retryable === undefined) return true;
    try {
      return retryable(error);
    } catch (hookError) {
      // A bug in the owner's predicate: retry as without one, and surface the bug.
      rethrowLater(hookError);
      return true;
    }
  };

  const retryDelay = (failedAttempt: number) =>
    backoffDelay(failedAttempt, { baseMs: baseDelayMs, maxMs: maxDelayMs, jitter, random });

  const pump = () => {
    while (held < concurrency && returning.length > 0) {
      // The first run back that may take a worker: a retry only within retry.concurrency.
      const index = returning.findIndex(({ run }) => run.finished || mayHold(run));
      if (index === -1) break;
      const [back] = returning.splice(index, 1);
      // A worker that settled without waiting for its `outside` call needs no worker now.
      if (back!.run.finished) continue;
      take(back!.run);
      back!.resolve();
    }
    while (held < concurrency) {
      const first = line.values().next().value;
      const retry = retriesHolding < retryConcurrency ? retryLine.values().next().value : undefined;
      const entry =
        first === undefined || (retry !== undefined && retry.order < first.order) ? retry : first;
      if (entry === undefined) break;
      (entry === first ? line : retryLine).delete(entry.key);
      waiting.delete(entry.key);
      start(entry.key, entry.item, entry.attempts + 1, entry.readyAt);
    }
  };

  const start = (key: string, item: T, attempt: number, readyAt: number) => {
    const run: Running<T> = {
      item,
      attempt,
      readyAt,
      startedAt: readClock(),
      dirty: false,
      dirtyItem: undefined,
      dirtySince: 0,
      outsideCalls: 0,
      holding: false,
      finished: false,
    };
    running.set(key, run);
    take(run);
    let result: Promise<void>;
    try {
      result = worker(key, item, {
        signal: controller.signal,
        attempt,
        outside: (work) => outside(run, work),
      });
    } catch (error) {
      // A worker that throws instead of rejecting has failed all the same.
      result = Promise.reject(error);
    }
    // Both outcomes are handled here, so no worker's rejection can go unhandled.
    Promise.resolve(result).then(
      () => finish(key, run, true, undefined),
      (error: unknown) => finish(key, run, false, error),
    );
  };

  /** {@link EventQueueWorkerContext.outside} for one run. */
  const outside = async <R>(run: Running<T>, work: () => Promise<R>): Promise<R> => {
    if (run.finished) return work();
    if (run.outsideCalls === 0) {
      // Bounded like the line: past maxSize keys outside, the run keeps its worker.
      if (outsideCount >= maxSize) return work();
      outsideCount += 1;
      release(run);
      // The freed worker goes to the next key, through a microtask like every dispatch.
      schedule();
    }
    run.outsideCalls += 1;
    try {
      return await work();
    } finally {
      run.outsideCalls -= 1;
      if (run.outsideCalls === 0) await comeBack(run);
    }
  };

  const release = (run: Running<T>) => {
    if (!run.holding) return;
    run.holding = false;
    held -= 1;
    if (run.attempt > 1) retriesHolding -= 1;
  };

  const take = (run: Running<T>) => {
    run.holding = true;
    held += 1;
    if (run.attempt > 1) retriesHolding += 1;
  };

  /** Whether a run may hold a worker besides those held now: a retry within its bound. */
  const mayHold = (run: Running<T>) => run.attempt === 1 || retriesHolding < retryConcurrency;

  /** Takes a worker again for a run back from `outside`: at once if one is free. */
  const comeBack = (run: Running<T>): Promise<void> | undefined => {
    outsideCount -= 1;
    if (run.finished) return undefined;
    // A closing queue starts nothing new, so it hands out no worker: let the run finish.
    if (closed || (held < concurrency && returning.length === 0 && mayHold(run))) {
      take(run);
      return undefined;
    }
    return new Promise<void>((resolve) => returning.push({ run, resolve }));
  };

  const finish = (key: string, run: Running<T>, ok: boolean, error: unknown) => {
    running.delete(key);
    run.finished = true;
    release(run);
    if (onTiming) {
      const endedAt = clock.now();
      const timing: EventQueueTiming = {
        key,
        attempt: run.attempt,
        waitMs: Math.max(0, run.startedAt - run.readyAt),
        runMs: Math.max(0, endedAt - run.startedAt),
        outcome: ok ? 'ok' : 'error',
      };
      callHook(() => onTiming(timing));
    }
    if (ok) {
      completed += 1;
      if (run.dirty) {
        if (closed) unfinished.add(key);
        else enqueue(key, run.dirtyItem as T, 0, run.dirtySince);
      }
    } else if (run.attempt >= maxAttempts || !mayPass(error)) {
      failed += 1;
      if (onFailed) callHook(() => onFailed(key, error, run.attempt));
    } else if (closed) {
      unfinished.add(key);
    } else {
      retried += 1;
      let item = run.item;
      if (run.dirty) {
        try {
          item = combine(run.item, run.dirtyItem as T);
        } catch (mergeError) {
          // Not the caller's add to throw from: keep the newest item and surface the bug.
          item = run.dirtyItem as T;
          rethrowLater(mergeError);
        }
      }
      enqueueRetry(key, item, run.attempt);
    }
    if (closed) {
      if (running.size === 0) finishClose?.();
    } else {
      pump();
    }
    checkIdle();
  };

  const queue: EventQueue<T> = {
    add(key, item) {
      if (closed) {
        refused += 1;
        return false;
      }
      if (typeof key !== 'string') {
        throw new TypeError(`event queue keys are strings, got ${typeof key}`);
      }
      const entry = waiting.get(key);
      if (entry !== undefined) {
        entry.item = combine(entry.item, item);
        added += 1;
        coalesced += 1;
        return true;
      }
      const run = running.get(key);
      if (run !== undefined) {
        if (run.dirty) {
          run.dirtyItem = combine(run.dirtyItem as T, item);
          coalesced += 1;
        } else {
          run.dirty = true;
          run.dirtyItem = item;
          run.dirtySince = readClock();
        }
        added += 1;
        return true;
      }
      added += 1;
      enqueue(key, item, 0, readClock());
      return true;
    },

    stats() {
      return {
        depth: waiting.size,
        retrying: waiting.size - line.size - retryLine.size,
        inFlight: running.size,
        outside: outsideCount,
        added,
        coalesced,
        shed,
        retried,
        failed,
        completed,
        refused,
      };
    },

    idle() {
      if (waiting.size === 0 && running.size === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },

    close(closeOptions = {}) {
      if (closing) return closing;
      const graceMs = closeOptions.graceMs ?? DEFAULT_QUEUE_CLOSE_GRACE_MS;
      checkDelay('graceMs', graceMs);
      closed = true;
      for (const entry of waiting.values()) {
        if (entry.timer !== undefined) clock.clearTimeout(entry.timer);
        unfinished.add(entry.key);
      }
      waiting.clear();
      line.clear();
      retryLine.clear();
      // Runs waiting to come back from `outside` finish without waiting for a worker.
      for (const back of returning.splice(0)) {
        if (back.run.finished) continue;
        take(back.run);
        back.resolve();
      }
      closing = new Promise<string[]>((resolve) => {
        finishClose = () => {
          finishClose = undefined;
          if (graceTimer !== undefined) clock.clearTimeout(graceTimer);
          // Keys shed just before the close still reach onShed before close() resolves.
          flushShed();
          resolve([...unfinished]);
        };
      });
      const abort = () => {
        graceTimer = undefined;
        controller.abort(
          new DsoError(
            'DSO_QUEUE_CLOSED',
            `event queue closed: running work did not finish within its ${graceMs} ms grace period`,
            { graceMs, inFlight: running.size },
          ),
        );
      };
      if (running.size === 0) finishClose!();
      else if (graceMs === 0) abort();
      else graceTimer = clock.setTimeout(abort, graceMs);
      checkIdle();
      return closing;
    },

    async [Symbol.asyncDispose]() {
      await queue.close();
    },
  };
  return queue;
}

interface ResolvedOptions<T> {
  worker: EventQueueWorker<T>;
  concurrency: number;
  maxSize: number;
  merge: ((previous: T, next: T) => T) | undefined;
  retry: Required<EventQueueRetryOptions>;
  retryable: ((error: unknown) => boolean) | undefined;
  onShed: ((keys: string[]) => void) | undefined;
  onFailed: ((key: string, error: unknown, attempts: number) => void) | undefined;
  onTiming: ((timing: EventQueueTiming) => void) | undefined;
  clock: Clock;
  random: () => number;
}

function resolveOptions<T>(options: EventQueueOptions<T>): ResolvedOptions<T> {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('createEventQueue needs an options object with a worker');
  }
  checkFunction('worker', options.worker, true);
  for (const name of ['merge', 'retryable', 'onShed', 'onFailed', 'onTiming', 'random'] as const) {
    checkFunction(name, options[name], false);
  }
  const concurrency = options.concurrency ?? DEFAULT_QUEUE_CONCURRENCY;
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > MAX_QUEUE_CONCURRENCY) {
    throw new RangeError(
      `event queue concurrency must be an integer from 1 to ${MAX_QUEUE_CONCURRENCY}, got ${concurrency}`,
    );
  }
  const maxSize = options.maxSize ?? DEFAULT_QUEUE_MAX_SIZE;
  if (!Number.isSafeInteger(maxSize) || maxSize < 1) {
    throw new RangeError(`event queue maxSize must be a positive integer, got ${maxSize}`);
  }
  const retry = {
    ...DEFAULT_QUEUE_RETRY,
    concurrency,
    ...stripUndefined(options.retry ?? {}),
  };
  if (!Number.isSafeInteger(retry.maxAttempts) || retry.maxAttempts < 1) {
    throw new RangeError(
      `event queue retry.maxAttempts must be a positive integer, got ${retry.maxAttempts}`,
    );
  }
  checkDelay('retry.baseDelayMs', retry.baseDelayMs);
  checkDelay('retry.maxDelayMs', retry.maxDelayMs);
  if (retry.maxDelayMs < retry.baseDelayMs) {
    throw new RangeError(
      `event queue retry.maxDelayMs (${retry.maxDelayMs}) must not be below retry.baseDelayMs (${retry.baseDelayMs})`,
    );
  }
  if (
    !Number.isInteger(retry.concurrency) ||
    retry.concurrency < 1 ||
    retry.concurrency > concurrency
  ) {
    throw new RangeError(
      `event queue retry.concurrency must be an integer from 1 to concurrency (${concurrency}), got ${retry.concurrency}`,
    );
  }
  if (retry.jitter !== 'full' && retry.jitter !== 'equal' && retry.jitter !== 'none') {
    throw new RangeError(
      `event queue retry.jitter must be 'full', 'equal' or 'none', got ${String(retry.jitter)}`,
    );
  }
  const clock = options.clock ?? systemClock;
  if (
    typeof clock !== 'object' ||
    clock === null ||
    typeof clock.now !== 'function' ||
    typeof clock.setTimeout !== 'function' ||
    typeof clock.clearTimeout !== 'function'
  ) {
    throw new TypeError('event queue clock must have now(), setTimeout() and clearTimeout()');
  }
  return {
    worker: options.worker,
    concurrency,
    maxSize,
    merge: options.merge,
    retry,
    retryable: options.retryable,
    onShed: options.onShed,
    onFailed: options.onFailed,
    onTiming: options.onTiming,
    clock,
    random: options.random ?? Math.random,
  };
}

function checkFunction(name: string, value: unknown, required: boolean) {
  if (value === undefined && !required) return;
  if (typeof value !== 'function') {
    throw new TypeError(`event queue ${name} must be a function, got ${typeof value}`);
  }
}

function checkDelay(name: string, value: number) {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new RangeError(`event queue ${name} must be a finite number of ms >= 0, got ${value}`);
  }
}

function stripUndefined<O extends object>(value: O): Partial<O> {
  return Object.fromEntries(
    Object.entries(value).filter(([, field]) => field !== undefined),
  ) as Partial<O>;
}

/** Runs an owner's hook; an error it throws must not leave the queue half-updated. */
function callHook(hook: () => void) {
  try {
    hook();
  } catch (error) {
    rethrowLater(error);
  }
}

function rethrowLater(error: unknown) {
  queueMicrotask(() => {
    throw error;
  });
}
