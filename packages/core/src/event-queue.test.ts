import { createFakeClock, type FakeClock } from '@dso/async';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { isDsoError } from './errors.js';
import {
  createEventQueue,
  DEFAULT_QUEUE_CLOSE_GRACE_MS,
  DEFAULT_QUEUE_CONCURRENCY,
  DEFAULT_QUEUE_MAX_SIZE,
  DEFAULT_QUEUE_RETRY,
  type EventQueueOptions,
  type EventQueueTiming,
  MAX_QUEUE_CONCURRENCY,
} from './event-queue.js';

/**
 * Lets every pending microtask run (dispatch, worker settlement, hooks): one turn of the event
 * loop's check phase, after which the microtask queue is empty. Not a sleep: no time passes on
 * the fake clock, and nothing waits for a real timer.
 */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

interface Run<T> {
  key: string;
  item: T;
  attempt: number;
  signal: AbortSignal;
  /** Set once the run has resolved, rejected or been aborted. */
  done: boolean;
  resolve(): void;
  reject(error: unknown): void;
}

/**
 * A worker whose runs end only when the test says so. Records every run, and whether one key
 * was ever run twice at once; a run whose signal aborts rejects with the signal's reason.
 */
function controlledWorker<T = void>() {
  const runs: Array<Run<T>> = [];
  const active = new Set<string>();
  const state = { overlapped: false, maxActive: 0 };
  const worker: EventQueueOptions<T>['worker'] = (key, item, { signal, attempt }) =>
    new Promise<void>((resolve, reject) => {
      if (active.has(key)) state.overlapped = true;
      active.add(key);
      state.maxActive = Math.max(state.maxActive, active.size);
      const run: Run<T> = {
        key,
        item,
        attempt,
        signal,
        done: false,
        resolve: () => settle(() => resolve()),
        reject: (error) => settle(() => reject(error)),
      };
      const settle = (end: () => void) => {
        if (run.done) return;
        run.done = true;
        active.delete(key);
        end();
      };
      runs.push(run);
      signal.addEventListener('abort', () => run.reject(signal.reason), { once: true });
    });
  const pending = () => runs.filter((run) => !run.done);
  return { worker, runs, active, state, pending };
}

function setup<T = void>(options: Partial<EventQueueOptions<T>> = {}) {
  const clock = createFakeClock({ now: 0 });
  const control = controlledWorker<T>();
  const shed: string[][] = [];
  const failures: Array<{ key: string; error: unknown; attempts: number }> = [];
  const timings: EventQueueTiming[] = [];
  const queue = createEventQueue<T>({
    worker: control.worker,
    clock,
    onShed: (keys) => shed.push(keys),
    onFailed: (key, error, attempts) => failures.push({ key, error, attempts }),
    onTiming: (timing) => timings.push(timing),
    ...options,
  });
  return { queue, clock, shed, failures, timings, ...control };
}

describe('createEventQueue', () => {
  describe('keyed work', () => {
    it('coalesces repeated adds of a waiting key into one run with the latest item', async () => {
      const { queue, runs } = setup<string>({ concurrency: 1 });
      queue.add('a', 'a1');
      queue.add('b', 'b1');
      queue.add('b', 'b2');
      queue.add('b', 'b3');
      await flush();
      runs[0]!.resolve();
      await flush();
      runs[1]!.resolve();
      await queue.idle();
      expect(runs.map((run) => [run.key, run.item])).toEqual([
        ['a', 'a1'],
        ['b', 'b3'],
      ]);
      expect(queue.stats()).toMatchObject({ added: 4, coalesced: 2, completed: 2 });
    });

    it('combines coalesced items with the merge option', async () => {
      const { queue, runs } = setup<string[]>({
        merge: (previous, next) => [...previous, ...next],
      });
      queue.add('a', ['started']);
      queue.add('a', ['died']);
      queue.add('a', ['destroyed']);
      await flush();
      expect(runs.map((run) => run.item)).toEqual([['started', 'died', 'destroyed']]);
    });

    it('coalesces a burst of adds in one tick even when a worker is free', async () => {
      const { queue, runs } = setup({ concurrency: 4 });
      queue.add('a');
      queue.add('a');
      queue.add('a');
      expect(runs).toHaveLength(0); // workers never run inside add
      await flush();
      expect(runs).toHaveLength(1);
    });

    it('serves keys first come, first served, a re-added waiting key keeping its place', async () => {
      const { queue, runs } = setup({ concurrency: 1 });
      for (const key of ['a', 'b', 'c', 'd', 'b', 'a']) queue.add(key);
      for (let served = 0; served < 4; served += 1) {
        await flush();
        runs[served]!.resolve();
      }
      await queue.idle();
      expect(runs.map((run) => run.key)).toEqual(['a', 'b', 'c', 'd']);
    });

    it('reruns a key added while it runs once afterwards, never at the same time', async () => {
      const { queue, runs, state } = setup<number>({ concurrency: 4 });
      queue.add('a', 1);
      await flush();
      queue.add('a', 2);
      queue.add('a', 3);
      await flush();
      expect(runs).toHaveLength(1);
      runs[0]!.resolve();
      await flush();
      expect(runs.map((run) => run.item)).toEqual([1, 3]);
      runs[1]!.resolve();
      await queue.idle();
      expect(runs).toHaveLength(2);
      expect(state.overlapped).toBe(false);
      // The first add while running marks the key; the second folds into that mark.
      expect(queue.stats()).toMatchObject({ added: 3, coalesced: 1, completed: 2 });
    });

    it('puts a rerun at the back of the line, behind keys that waited meanwhile', async () => {
      const { queue, runs } = setup({ concurrency: 1 });
      queue.add('a');
      await flush();
      queue.add('b');
      queue.add('a');
      runs[0]!.resolve();
      await flush();
      runs[1]!.resolve();
      await flush();
      runs[2]!.resolve();
      await queue.idle();
      expect(runs.map((run) => run.key)).toEqual(['a', 'b', 'a']);
    });

    it('runs at most `concurrency` keys at once', async () => {
      const { queue, runs, state, pending } = setup({ concurrency: 3 });
      for (let index = 0; index < 10; index += 1) queue.add(`k${index}`);
      await flush();
      expect(queue.stats()).toMatchObject({ inFlight: 3, depth: 7 });
      while (pending().length > 0) {
        for (const run of pending()) run.resolve();
        await flush();
      }
      await queue.idle();
      expect(runs).toHaveLength(10);
      expect(state.maxActive).toBe(3);
    });

    it('treats a worker that throws synchronously as a failed run', async () => {
      const failures: unknown[] = [];
      const queue = createEventQueue({
        clock: createFakeClock(),
        retry: { maxAttempts: 1 },
        worker: () => {
          throw new Error('sync');
        },
        onFailed: (_key, error) => failures.push(error),
      });
      queue.add('a');
      await queue.idle();
      expect(failures).toEqual([new Error('sync')]);
    });
  });

  describe('bound and shedding', () => {
    it('sheds the oldest waiting key for a new one, counts it and reports it', async () => {
      const { queue, runs, shed } = setup({ concurrency: 1, maxSize: 2 });
      queue.add('running');
      await flush();
      queue.add('a');
      queue.add('b');
      expect(queue.add('c')).toBe(true);
      expect(queue.stats()).toMatchObject({ depth: 2, shed: 1 });
      expect(shed).toEqual([]); // reported after the add returns
      await flush();
      expect(shed).toEqual([['a']]);
      runs[0]!.resolve();
      await flush();
      runs[1]!.resolve();
      await flush();
      runs[2]!.resolve();
      await queue.idle();
      expect(runs.map((run) => run.key)).toEqual(['running', 'b', 'c']);
    });

    it('reports every key shed in one tick in one call, oldest first', async () => {
      const { queue, runs, shed } = setup({ maxSize: 1 });
      for (const key of ['a', 'b', 'c', 'd']) queue.add(key);
      await flush();
      expect(shed).toEqual([['a', 'b', 'c']]);
      expect(runs.map((run) => run.key)).toEqual(['d']);
    });

    it('does not shed for an add that coalesces, nor count a running key as waiting', async () => {
      const { queue, shed } = setup({ concurrency: 1, maxSize: 1 });
      queue.add('a');
      await flush();
      queue.add('a'); // running: marked to rerun, not waiting
      queue.add('b');
      queue.add('b');
      await flush();
      expect(shed).toEqual([]);
      expect(queue.stats()).toMatchObject({ depth: 1, inFlight: 1, shed: 0 });
    });

    it('runs a shed key again when it is added again', async () => {
      const { queue, runs, shed } = setup({ concurrency: 1, maxSize: 1 });
      queue.add('running');
      await flush();
      queue.add('a');
      queue.add('b');
      await flush();
      expect(shed).toEqual([['a']]);
      queue.add('a'); // sheds b
      runs[0]!.resolve();
      await flush();
      expect(runs.map((run) => run.key)).toEqual(['running', 'a']);
      expect(shed).toEqual([['a'], ['b']]);
    });

    it('sheds a key waiting out a retry delay when it is the oldest, cancelling its timer', async () => {
      const { queue, runs, clock, shed } = setup({ concurrency: 1, maxSize: 1 });
      queue.add('a');
      await flush();
      runs[0]!.reject(new Error('down'));
      await flush();
      expect(queue.stats()).toMatchObject({ depth: 1, retrying: 1 });
      expect(clock.pendingTimers).toBe(1);
      queue.add('b');
      await flush();
      expect(shed).toEqual([['a']]);
      expect(clock.pendingTimers).toBe(0);
      expect(runs.map((run) => run.key)).toEqual(['a', 'b']);
    });
  });

  describe('retries', () => {
    it('retries after exact capped, equal-jittered exponential delays, then reports', async () => {
      const { queue, runs, clock, failures } = setup({
        retry: { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 300, jitter: 'equal' },
        random: () => 0.5,
      });
      queue.add('a');
      await flush();
      // backoff b = min(300, 100 * 2^(n-1)); equal jitter: b/2 + 0.5 * b/2 = 0.75 b
      for (const [attempt, delay] of [
        [1, 75],
        [2, 150],
        [3, 225],
      ] as const) {
        expect(runs.map((run) => run.attempt)).toHaveLength(attempt);
        runs[attempt - 1]!.reject(new Error(`failure ${attempt}`));
        await flush();
        expect(queue.stats().retrying).toBe(1);
        clock.advance(delay - 1);
        await flush();
        expect(runs).toHaveLength(attempt);
        clock.advance(1);
        await flush();
        expect(runs).toHaveLength(attempt + 1);
        expect(runs[attempt]!.attempt).toBe(attempt + 1);
      }
      runs[3]!.reject(new Error('failure 4'));
      await queue.idle();
      expect(failures).toEqual([{ key: 'a', error: new Error('failure 4'), attempts: 4 }]);
      expect(queue.stats()).toMatchObject({ retried: 3, failed: 1, completed: 0, depth: 0 });
    });

    it('runs at most retry.concurrency retries at once, and first runs pass a waiting retry', async () => {
      const { queue, runs, clock } = setup({
        concurrency: 2,
        retry: { concurrency: 1, maxAttempts: 5, baseDelayMs: 10, jitter: 'none' },
      });
      queue.add('slow-1');
      queue.add('slow-2');
      await flush();
      runs[0]!.reject(new Error('timed out'));
      runs[1]!.reject(new Error('timed out'));
      await flush();
      clock.advance(10);
      await flush();
      // Both retries are due; one runs, the other waits although a worker is free.
      expect(runs.slice(2).map((run) => `${run.key}#${run.attempt}`)).toEqual(['slow-1#2']);
      queue.add('fresh');
      await flush();
      expect(runs.slice(2).map((run) => `${run.key}#${run.attempt}`)).toEqual([
        'slow-1#2',
        'fresh#1',
      ]);
      expect(queue.stats()).toMatchObject({ inFlight: 2, depth: 1, retrying: 0 });
      runs[2]!.resolve();
      await flush();
      expect(runs.slice(2).map((run) => `${run.key}#${run.attempt}`)).toEqual([
        'slow-1#2',
        'fresh#1',
        'slow-2#2',
      ]);
      runs[3]!.resolve();
      runs[4]!.resolve();
      await queue.idle();
    });

    it('does not count a retry waiting outside its worker against retry.concurrency', async () => {
      const clock = createFakeClock({ now: 0 });
      const started: string[] = [];
      const queue = createEventQueue({
        concurrency: 2,
        clock,
        retry: { concurrency: 1, maxAttempts: 3, baseDelayMs: 10, jitter: 'none' },
        worker: async (key, _item, { attempt, outside }) => {
          started.push(`${key}#${attempt}`);
          if (attempt === 1) throw new Error('timed out');
          // The hung key's retry waits on something slow, outside its worker.
          if (key === 'hung') await outside(() => new Promise<void>(() => {}));
        },
      });
      queue.add('hung');
      queue.add('slow');
      await flush();
      clock.advance(10);
      await flush();
      expect(started).toEqual(['hung#1', 'slow#1', 'hung#2', 'slow#2']);
      expect(queue.stats()).toMatchObject({ inFlight: 1, outside: 1, completed: 1 });
    });

    it('refuses a retry.concurrency above concurrency', () => {
      expect(() =>
        createEventQueue({ worker: async () => {}, concurrency: 2, retry: { concurrency: 3 } }),
      ).toThrow(/retry.concurrency must be an integer from 1 to concurrency \(2\), got 3/);
    });

    it('gives up at once, without retries, on a failure retryable says cannot pass', async () => {
      const permanent = Object.assign(new Error('no shell'), { permanent: true });
      const { queue, runs, clock, failures } = setup({
        retry: { maxAttempts: 5, baseDelayMs: 10, jitter: 'none' },
        retryable: (error) => !(error as { permanent?: boolean }).permanent,
      });
      queue.add('a');
      queue.add('b');
      await flush();
      runs[0]!.reject(permanent);
      runs[1]!.reject(new Error('engine down'));
      await flush();
      clock.advance(10);
      await flush();
      expect(failures).toEqual([{ key: 'a', error: permanent, attempts: 1 }]);
      expect(runs.map((run) => run.key)).toEqual(['a', 'b', 'b']);
      expect(queue.stats()).toMatchObject({ failed: 1, retried: 1 });
    });

    it.each([
      ['none', (): number => 0.9, [100, 200, 250]],
      ['full', (): number => 0.25, [25, 50, 62.5]],
      ['equal', (): number => 0, [50, 100, 125]],
    ] as const)(
      'draws %s-jittered delays from the capped backoff',
      async (jitter, random, delays) => {
        const { queue, runs, clock } = setup({
          retry: { maxAttempts: 4, baseDelayMs: 100, maxDelayMs: 250, jitter },
          random,
        });
        queue.add('a');
        await flush();
        for (const [index, delay] of delays.entries()) {
          runs[index]!.reject(new Error('down'));
          await flush();
          clock.advance(delay - 0.5);
          await flush();
          expect(runs).toHaveLength(index + 1);
          clock.advance(0.5);
          await flush();
          expect(runs).toHaveLength(index + 2);
        }
      },
    );

    it('uses the documented defaults: 5 attempts, 100 ms base, 30 s cap, equal jitter', () => {
      expect(DEFAULT_QUEUE_RETRY).toEqual({
        maxAttempts: 5,
        baseDelayMs: 100,
        maxDelayMs: 30_000,
        jitter: 'equal',
      });
      expect([DEFAULT_QUEUE_CONCURRENCY, MAX_QUEUE_CONCURRENCY, DEFAULT_QUEUE_MAX_SIZE]).toEqual([
        4, 32, 1000,
      ]);
      expect(DEFAULT_QUEUE_CLOSE_GRACE_MS).toBe(10_000);
    });

    it('folds an add during a retry delay into the retry without cutting the delay short', async () => {
      const { queue, runs, clock } = setup<number>({
        retry: { baseDelayMs: 100, jitter: 'none' },
      });
      queue.add('a', 1);
      await flush();
      runs[0]!.reject(new Error('down'));
      await flush();
      expect(queue.add('a', 2)).toBe(true);
      await flush();
      expect(runs).toHaveLength(1);
      expect(queue.stats()).toMatchObject({ coalesced: 1, retrying: 1 });
      clock.advance(100);
      await flush();
      expect(runs.map((run) => [run.item, run.attempt])).toEqual([
        [1, 1],
        [2, 2],
      ]);
    });

    it('retries a failed run with the item added while it ran', async () => {
      const { queue, runs, clock } = setup<number>({ retry: { baseDelayMs: 10, jitter: 'none' } });
      queue.add('a', 1);
      await flush();
      queue.add('a', 2);
      runs[0]!.reject(new Error('down'));
      await flush();
      clock.advance(10);
      await flush();
      expect(runs.map((run) => [run.item, run.attempt])).toEqual([
        [1, 1],
        [2, 2],
      ]);
      runs[1]!.resolve();
      await queue.idle();
      expect(runs).toHaveLength(2);
    });

    it('reports given-up work with an add that came in during its last run', async () => {
      const { queue, runs, failures } = setup({ retry: { maxAttempts: 1 } });
      queue.add('a');
      await flush();
      queue.add('a');
      runs[0]!.reject(new Error('down'));
      await queue.idle();
      expect(runs).toHaveLength(1);
      expect(failures.map((failure) => [failure.key, failure.attempts])).toEqual([['a', 1]]);
    });

    it('starts a fresh attempt count for work after a success', async () => {
      const { queue, runs, clock } = setup({ retry: { baseDelayMs: 10, jitter: 'none' } });
      queue.add('a');
      await flush();
      runs[0]!.reject(new Error('down'));
      await flush();
      clock.advance(10);
      await flush();
      runs[1]!.resolve();
      await flush();
      queue.add('a');
      await flush();
      expect(runs.map((run) => run.attempt)).toEqual([1, 2, 1]);
    });
  });

  describe('outside a worker', () => {
    /** A gate the test opens: `outside` work that waits on it holds no worker meanwhile. */
    function gate() {
      let open!: () => void;
      let fail!: (error: unknown) => void;
      const promise = new Promise<void>((resolve, reject) => {
        open = resolve;
        fail = reject;
      });
      return { promise, open, fail };
    }

    /** Runs per key: `wait` outside the worker, then `after` inside it; records the order. */
    function outsideSetup(options: Partial<EventQueueOptions<void>> = {}) {
      const clock = createFakeClock({ now: 0 });
      const log: string[] = [];
      const waits = new Map<string, ReturnType<typeof gate>>();
      const afters = new Map<string, ReturnType<typeof gate>>();
      const failures: Array<{ key: string; attempts: number }> = [];
      const queue = createEventQueue({
        concurrency: 1,
        clock,
        worker: async (key, _item, { outside }) => {
          log.push(`${key}:start`);
          const wait = gate();
          waits.set(key, wait);
          try {
            await outside(() => wait.promise);
          } finally {
            log.push(`${key}:back`);
          }
          const after = gate();
          afters.set(key, after);
          await after.promise;
          log.push(`${key}:end`);
        },
        onFailed: (key, _error, attempts) => failures.push({ key, attempts }),
        ...options,
      });
      return { queue, clock, log, waits, afters, failures };
    }

    it('starts the next key while a run waits outside its worker', async () => {
      const { queue, log, waits } = outsideSetup();
      queue.add('a');
      queue.add('b');
      await flush();
      // One worker, yet b started: a waits outside it.
      expect(log).toEqual(['a:start', 'b:start']);
      expect(queue.stats()).toMatchObject({ inFlight: 2, outside: 2, depth: 0 });
      waits.get('a')!.open();
      waits.get('b')!.open();
      await flush();
      expect(log).toEqual(['a:start', 'b:start', 'a:back']);
    });

    it('gives a run back from outside the next free worker, ahead of keys in line', async () => {
      const { queue, log, waits, afters } = outsideSetup();
      queue.add('a');
      queue.add('b');
      await flush();
      waits.get('a')!.open(); // a back: holds the worker
      await flush();
      queue.add('c'); // in line behind a
      waits.get('b')!.open(); // b back: waits for the worker, ahead of c
      await flush();
      expect(log).toEqual(['a:start', 'b:start', 'a:back']);
      afters.get('a')!.open();
      await flush();
      expect(log).toEqual(['a:start', 'b:start', 'a:back', 'a:end', 'b:back']);
      afters.get('b')!.open();
      await flush();
      expect(log.slice(5)).toEqual(['b:end', 'c:start']);
      waits.get('c')!.open();
      await flush();
      afters.get('c')!.open();
      await queue.idle();
      expect(queue.stats()).toMatchObject({ inFlight: 0, outside: 0, completed: 3 });
    });

    it('never runs a key twice at once while it waits outside', async () => {
      const { queue, log, waits, afters } = outsideSetup();
      queue.add('a');
      await flush();
      queue.add('a'); // a is running (outside): it runs once more afterwards
      await flush();
      expect(log).toEqual(['a:start']);
      waits.get('a')!.open();
      await flush();
      afters.get('a')!.open();
      await flush();
      expect(log).toEqual(['a:start', 'a:back', 'a:end', 'a:start']);
    });

    it('comes back into a worker when the outside work fails, then fails as usual', async () => {
      const { queue, log, waits, failures } = outsideSetup({ retry: { maxAttempts: 1 } });
      queue.add('a');
      queue.add('b');
      await flush();
      waits.get('a')!.fail(new Error('store down'));
      await flush();
      expect(log).toEqual(['a:start', 'b:start', 'a:back']);
      expect(failures).toEqual([{ key: 'a', attempts: 1 }]);
      expect(queue.stats()).toMatchObject({ inFlight: 1, outside: 1 });
    });

    it('keeps the worker once maxSize keys are outside', async () => {
      const { queue, log, waits, afters } = outsideSetup({ maxSize: 1 });
      queue.add('a');
      await flush();
      queue.add('b');
      await flush();
      // a is outside (the bound: 1); b waits outside holding the only worker.
      expect(log).toEqual(['a:start', 'b:start']);
      queue.add('c');
      await flush();
      expect(log).toEqual(['a:start', 'b:start']);
      expect(queue.stats()).toMatchObject({ inFlight: 2, outside: 1, depth: 1 });
      waits.get('b')!.open();
      await flush();
      afters.get('b')!.open();
      await flush();
      expect(log).toEqual(['a:start', 'b:start', 'b:back', 'b:end', 'c:start']);
      waits.get('a')!.open();
      waits.get('c')!.open();
      await flush();
      // c never left its worker; a comes back when c is done with it.
      expect(log.slice(5)).toEqual(['c:back']);
      afters.get('c')!.open();
      await flush();
      expect(log.slice(5)).toEqual(['c:back', 'c:end', 'a:back']);
      afters.get('a')!.open();
      await queue.idle();
      expect(queue.stats()).toMatchObject({ inFlight: 0, outside: 0, completed: 3 });
    });

    it('lets a run waiting to come back finish when the queue closes', async () => {
      const { queue, log, waits, afters } = outsideSetup();
      queue.add('a');
      queue.add('b');
      await flush();
      waits.get('a')!.open();
      waits.get('b')!.open(); // b waits for a's worker
      await flush();
      const closing = queue.close({ graceMs: 1_000 });
      await flush();
      expect(log).toEqual(['a:start', 'b:start', 'a:back', 'b:back']);
      afters.get('a')!.open();
      afters.get('b')!.open();
      await expect(closing).resolves.toEqual([]);
    });
  });

  describe('idle', () => {
    it('resolves at once when nothing waits or runs', async () => {
      const { queue } = setup();
      await expect(queue.idle()).resolves.toBeUndefined();
    });

    it('waits for work waiting out a retry delay', async () => {
      const { queue, runs, clock } = setup({ retry: { baseDelayMs: 50, jitter: 'none' } });
      let idle = false;
      queue.add('a');
      void queue.idle().then(() => {
        idle = true;
      });
      await flush();
      runs[0]!.reject(new Error('down'));
      await flush();
      expect(idle).toBe(false);
      clock.advance(50);
      await flush();
      expect(idle).toBe(false);
      runs[1]!.resolve();
      await flush();
      expect(idle).toBe(true);
    });
  });

  describe('close', () => {
    it('lets running work finish, drops waiting work and returns its keys', async () => {
      const { queue, runs } = setup({ concurrency: 1 });
      queue.add('a');
      queue.add('b');
      await flush();
      let result: string[] | undefined;
      void queue.close({ graceMs: 1_000 }).then((keys) => {
        result = keys;
      });
      expect(queue.add('c')).toBe(false);
      await flush();
      expect(result).toBeUndefined();
      runs[0]!.resolve();
      await flush();
      expect(result).toEqual(['b']);
      expect(runs[0]!.signal.aborted).toBe(false);
      expect(runs.map((run) => run.key)).toEqual(['a']);
      expect(queue.stats()).toMatchObject({ refused: 1, added: 2, depth: 0, inFlight: 0 });
    });

    it('lets every run in flight listen on its signal without a MaxListenersExceededWarning', async () => {
      const warnings: Error[] = [];
      const onWarning = (warning: Error) => warnings.push(warning);
      process.on('warning', onWarning);
      try {
        // Each run adds one abort listener to the one signal all runs share (the controlled
        // worker does, as a delivery waiting on a load does): 32 is past Node's default of 10.
        const { queue, runs } = setup({ concurrency: 32 });
        for (let index = 0; index < 32; index += 1) queue.add(`c${index}`);
        await flush();
        expect(runs).toHaveLength(32);
        for (const run of runs) run.resolve();
        await queue.idle();
        await flush();
        expect(warnings.map((warning) => warning.name)).not.toContain(
          'MaxListenersExceededWarning',
        );
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('aborts the workers when the grace period runs out, then waits for them', async () => {
      const { queue, runs, clock } = setup();
      queue.add('a');
      await flush();
      const closing = queue.close({ graceMs: 100 });
      clock.advance(99);
      await flush();
      expect(runs[0]!.signal.aborted).toBe(false);
      clock.advance(1);
      expect(runs[0]!.signal.aborted).toBe(true);
      const reason: unknown = runs[0]!.signal.reason;
      expect(isDsoError(reason) && reason.code).toBe('DSO_QUEUE_CLOSED');
      // The aborted run failed, and is not retried during a shutdown: it is unfinished.
      await expect(closing).resolves.toEqual(['a']);
      expect(queue.stats()).toMatchObject({ retried: 0, failed: 0, inFlight: 0 });
    });

    it('reports an aborted run that was its last attempt to onFailed, not as unfinished', async () => {
      const { queue, failures } = setup({ retry: { maxAttempts: 1 } });
      queue.add('a');
      await flush();
      await expect(queue.close({ graceMs: 0 })).resolves.toEqual([]);
      expect(failures.map((failure) => failure.key)).toEqual(['a']);
    });

    it('returns keys waiting out a retry delay and added while running, cancelling timers', async () => {
      const { queue, runs, clock } = setup({ concurrency: 2 });
      queue.add('retrying');
      queue.add('dirty');
      await flush();
      runs[0]!.reject(new Error('down'));
      queue.add('dirty');
      await flush();
      const closing = queue.close();
      expect(clock.pendingTimers).toBe(1); // the grace timer only
      runs[1]!.resolve();
      await expect(closing).resolves.toEqual(['retrying', 'dirty']);
      expect(clock.pendingTimers).toBe(0);
    });

    it('resolves at once when nothing runs, and is idempotent', async () => {
      const { queue } = setup();
      queue.add('a');
      const first = queue.close();
      expect(queue.close({ graceMs: 5 })).toBe(first);
      await expect(first).resolves.toEqual(['a']);
      await queue.idle();
    });

    it('reports keys shed just before the close to onShed before resolving', async () => {
      const { queue, shed } = setup({ maxSize: 1 });
      queue.add('a');
      queue.add('b');
      await expect(queue.close()).resolves.toEqual(['b']);
      expect(shed).toEqual([['a']]);
    });

    it('closes with the default grace period on Symbol.asyncDispose', async () => {
      const { queue, runs, clock } = setup();
      queue.add('a');
      await flush();
      const disposing = queue[Symbol.asyncDispose]();
      clock.advance(DEFAULT_QUEUE_CLOSE_GRACE_MS - 1);
      expect(runs[0]!.signal.aborted).toBe(false);
      clock.advance(1);
      expect(runs[0]!.signal.aborted).toBe(true);
      await expect(disposing).resolves.toBeUndefined();
      expect(queue.add('b')).toBe(false);
    });
  });

  describe('stats and timings', () => {
    it('reports each run’s wait and run times and outcome', async () => {
      const { queue, runs, clock, timings } = setup({
        concurrency: 1,
        retry: { baseDelayMs: 40, jitter: 'none' },
      });
      queue.add('a');
      queue.add('b');
      await flush();
      clock.advance(10);
      runs[0]!.resolve();
      await flush();
      clock.advance(5);
      runs[1]!.reject(new Error('down'));
      await flush();
      clock.advance(40);
      await flush();
      clock.advance(2);
      runs[2]!.resolve();
      await queue.idle();
      expect(timings).toEqual([
        { key: 'a', attempt: 1, waitMs: 0, runMs: 10, outcome: 'ok' },
        { key: 'b', attempt: 1, waitMs: 10, runMs: 5, outcome: 'error' },
        { key: 'b', attempt: 2, waitMs: 0, runMs: 2, outcome: 'ok' },
      ]);
    });

    it('measures a rerun’s wait from the add that came in while the key ran', async () => {
      const { queue, runs, clock, timings } = setup();
      queue.add('a');
      await flush();
      clock.advance(3);
      queue.add('a');
      clock.advance(7);
      runs[0]!.resolve();
      await flush();
      runs[1]!.resolve();
      await queue.idle();
      expect(timings.map((timing) => timing.waitMs)).toEqual([0, 7]);
    });

    it('counts gauges and every outcome', async () => {
      const { queue, runs, clock } = setup({
        concurrency: 1,
        maxSize: 2,
        retry: { maxAttempts: 2, baseDelayMs: 10, jitter: 'none' },
      });
      expect(queue.stats()).toEqual({
        depth: 0,
        retrying: 0,
        inFlight: 0,
        outside: 0,
        added: 0,
        coalesced: 0,
        shed: 0,
        retried: 0,
        failed: 0,
        completed: 0,
        refused: 0,
      });
      queue.add('a');
      await flush();
      queue.add('b');
      queue.add('b');
      queue.add('c');
      queue.add('d'); // sheds b
      expect(queue.stats()).toMatchObject({ depth: 2, inFlight: 1, added: 5, coalesced: 1 });
      runs[0]!.reject(new Error('down')); // a retries: sheds c
      await flush();
      runs[1]!.resolve(); // d
      await flush();
      clock.advance(10);
      await flush();
      runs[2]!.reject(new Error('down')); // a's second and last attempt
      await queue.idle();
      await queue.close();
      queue.add('e');
      expect(queue.stats()).toEqual({
        depth: 0,
        retrying: 0,
        inFlight: 0,
        outside: 0,
        added: 5,
        coalesced: 1,
        shed: 2,
        retried: 1,
        failed: 1,
        completed: 1,
        refused: 1,
      });
    });
  });

  describe('hooks and errors', () => {
    afterEach(() => {
      vi.restoreAllMocks();
    });

    it('stays consistent when a hook throws, rethrowing its error on a fresh microtask', async () => {
      const surfaced: unknown[] = [];
      const original = globalThis.queueMicrotask;
      vi.spyOn(globalThis, 'queueMicrotask').mockImplementation((callback) =>
        original(() => {
          try {
            callback();
          } catch (error) {
            surfaced.push(error);
          }
        }),
      );
      const { queue, runs } = setup({
        concurrency: 1,
        onTiming: () => {
          throw new Error('hook bug');
        },
      });
      queue.add('a');
      queue.add('b');
      await flush();
      runs[0]!.resolve();
      await flush();
      runs[1]!.resolve();
      await queue.idle();
      expect(runs.map((run) => run.key)).toEqual(['a', 'b']);
      expect(surfaced).toEqual([new Error('hook bug'), new Error('hook bug')]);
    });

    it('throws what merge throws from add, leaving the queue unchanged', async () => {
      const { queue, runs } = setup<number>({
        merge: (_previous, next) => {
          if (next < 0) throw new Error('bad item');
          return next;
        },
      });
      queue.add('a', 1);
      expect(() => queue.add('a', -1)).toThrow('bad item');
      expect(queue.stats()).toMatchObject({ added: 1, coalesced: 0, depth: 1 });
      await flush();
      expect(runs.map((run) => run.item)).toEqual([1]);
    });

    it('rejects a key that is not a string with a TypeError', () => {
      const { queue } = setup();
      expect(() => queue.add(42 as unknown as string)).toThrow(TypeError);
    });

    it.each([
      [{ concurrency: 0 }, /concurrency must be an integer from 1 to 32, got 0/],
      [{ concurrency: 33 }, /concurrency/],
      [{ concurrency: 1.5 }, /concurrency/],
      [{ maxSize: 0 }, /maxSize must be a positive integer/],
      [{ maxSize: Number.POSITIVE_INFINITY }, /maxSize/],
      [{ retry: { maxAttempts: 0 } }, /retry.maxAttempts/],
      [{ retry: { baseDelayMs: -1 } }, /retry.baseDelayMs/],
      [{ retry: { maxDelayMs: Number.NaN } }, /retry.maxDelayMs/],
      [{ retry: { baseDelayMs: 200, maxDelayMs: 100 } }, /must not be below/],
      [{ retry: { jitter: 'half' } }, /retry.jitter/],
    ])('rejects %o with a RangeError', (options, message) => {
      const make = () =>
        createEventQueue({
          worker: async () => {},
          ...(options as Partial<EventQueueOptions<void>>),
        });
      expect(make).toThrow(RangeError);
      expect(make).toThrow(message);
    });

    it.each([
      [{ worker: undefined }, /worker must be a function/],
      [{ onShed: 'yes' }, /onShed must be a function/],
      [{ clock: {} }, /clock must have/],
    ])('rejects %o with a TypeError', (options, message) => {
      const make = () =>
        createEventQueue({
          worker: async () => {},
          ...(options as unknown as Partial<EventQueueOptions<void>>),
        });
      expect(make).toThrow(TypeError);
      expect(make).toThrow(message);
    });

    it('rejects a negative grace period with a RangeError', () => {
      const { queue } = setup();
      expect(() => queue.close({ graceMs: -1 })).toThrow(RangeError);
    });
  });
});

// Model-based check over random sequences of operations: the queue never loses a key, never
// runs one key twice at once, never runs more than `concurrency` workers, never holds more than
// `maxSize` waiting keys, and always hands a worker the latest item added for its key.
describe('createEventQueue properties', () => {
  const KEYS = ['a', 'b', 'c', 'd', 'e', 'f'];
  const operation = fc.oneof(
    {
      weight: 4,
      arbitrary: fc.record({
        type: fc.constant('add' as const),
        keys: fc.array(fc.constantFrom(...KEYS), { minLength: 1, maxLength: 4 }),
      }),
    },
    {
      weight: 3,
      arbitrary: fc.record({
        type: fc.constant('settle' as const),
        index: fc.nat(7),
        ok: fc.boolean(),
      }),
    },
    {
      weight: 1,
      arbitrary: fc.record({
        type: fc.constant('advance' as const),
        ms: fc.integer({ min: 1, max: 60 }),
      }),
    },
  );
  const scenario = fc.record({
    concurrency: fc.integer({ min: 1, max: 3 }),
    maxSize: fc.integer({ min: 1, max: 4 }),
    maxAttempts: fc.integer({ min: 1, max: 3 }),
    retryConcurrency: fc.integer({ min: 1, max: 3 }),
    random: fc.double({ min: 0, max: 0.999, noNaN: true }),
    operations: fc.array(operation, { maxLength: 40 }),
    drainFirst: fc.boolean(),
  });

  it('never loses a key, never runs one twice at once, never exceeds its bounds', async () => {
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const clock: FakeClock = createFakeClock({ now: 0 });
        const control = controlledWorker<number>();
        const violations: string[] = [];
        let seq = 0;
        let items = 0;
        /** Per key: the seq and item of its last accepted add. */
        const lastAdd = new Map<string, { seq: number; item: number }>();
        /** Per key: every add before this seq has been run to completion or reported. */
        const accountedBefore = new Map<string, number>();
        const account = (key: string, before: number) =>
          accountedBefore.set(key, Math.max(accountedBefore.get(key) ?? 0, before));
        // Each add sheds at most one key, reported in order on the next tick: the seqs of the
        // adds that shed are matched to the keys onShed reports, in order.
        const shedAt: number[] = [];
        let shedReported = 0;
        let failedReported = 0;
        let completedRuns = 0;
        const runStartedAt = new Map<Run<number>, number>();

        const queue = createEventQueue<number>({
          concurrency: s.concurrency,
          maxSize: s.maxSize,
          retry: {
            maxAttempts: s.maxAttempts,
            baseDelayMs: 10,
            maxDelayMs: 40,
            jitter: 'full',
            concurrency: Math.min(s.retryConcurrency, s.concurrency),
          },
          random: () => s.random,
          clock,
          worker: (key, item, context) => {
            seq += 1;
            const started = control.worker(key, item, context);
            const run = control.runs.at(-1)!;
            runStartedAt.set(run, seq);
            if (control.active.size > s.concurrency) violations.push('concurrency exceeded');
            const retries = control.pending().filter((one) => one.attempt > 1).length;
            if (retries > Math.min(s.retryConcurrency, s.concurrency)) {
              violations.push('retry.concurrency exceeded');
            }
            if (item !== lastAdd.get(key)?.item) {
              violations.push(`${key} ran with ${item}, not its latest item`);
            }
            return started.then(() => {
              completedRuns += 1;
              account(key, runStartedAt.get(run)!);
            });
          },
          onShed: (keys) => {
            for (const key of keys) {
              seq += 1;
              account(key, shedAt.shift() ?? seq);
            }
            shedReported += keys.length;
          },
          onFailed: (key) => {
            seq += 1;
            failedReported += 1;
            account(key, seq);
          },
        });

        const checkBounds = () => {
          const stats = queue.stats();
          if (stats.depth > s.maxSize) violations.push(`depth ${stats.depth} > ${s.maxSize}`);
          if (stats.inFlight !== control.active.size) violations.push('inFlight is wrong');
        };
        const add = (key: string) => {
          const shedBefore = queue.stats().shed;
          seq += 1;
          items += 1;
          if (queue.add(key, items)) lastAdd.set(key, { seq, item: items });
          if (queue.stats().shed > shedBefore) shedAt.push(seq);
          checkBounds();
        };

        for (const op of s.operations) {
          if (op.type === 'add') {
            for (const key of op.keys) add(key);
          } else if (op.type === 'settle') {
            const pending = control.pending();
            const run = pending[op.index % Math.max(1, pending.length)];
            if (run) {
              if (op.ok) run.resolve();
              else run.reject(new Error('down'));
            }
          } else {
            clock.advance(op.ms);
          }
          await flush();
          checkBounds();
        }

        let unfinished: string[];
        if (s.drainFirst) {
          // Let every run succeed and every retry delay pass, until nothing is left.
          for (let round = 0; round < 200; round += 1) {
            const stats = queue.stats();
            if (stats.depth === 0 && stats.inFlight === 0) break;
            for (const run of control.pending()) run.resolve();
            clock.advance(40);
            await flush();
            checkBounds();
          }
          await queue.idle();
          unfinished = await queue.close();
          if (unfinished.length > 0) violations.push(`idle queue closed with ${unfinished}`);
        } else {
          const closing = queue.close({ graceMs: 5 });
          add(KEYS[0]!); // refused
          await flush();
          clock.advance(5);
          unfinished = await closing;
        }
        seq += 1;
        for (const key of unfinished) account(key, seq);

        const stats = queue.stats();
        expect(violations).toEqual([]);
        expect(control.state.overlapped).toBe(false);
        expect(stats).toMatchObject({
          depth: 0,
          inFlight: 0,
          shed: shedReported,
          failed: failedReported,
          completed: completedRuns,
        });
        for (const [key, { seq: addedAt }] of lastAdd) {
          expect(accountedBefore.get(key) ?? 0, `key ${key} was lost`).toBeGreaterThan(addedAt);
        }
      }),
      { numRuns: 150 },
    );
  });
});
