import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { abortable, onAbort } from './abortable.js';
import { backoffDelay } from './backoff.js';
import { createFakeClock } from './clock.js';
import { createLimiter } from './limiter.js';
import { pause, sleep } from './sleep.js';

/** Lets every pending promise callback run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

/** How many 'abort' listeners a signal holds. */
const listenerCount = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

/** A promise and its resolve, for a gate a test opens. */
function gate() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('sleep', () => {
  it('resolves when the clock reaches the delay, not before', async () => {
    const clock = createFakeClock({ now: 0 });
    let done = false;
    void sleep(100, { clock }).then(() => {
      done = true;
    });
    clock.advance(99);
    await settle();
    expect(done).toBe(false);
    clock.advance(1);
    await settle();
    expect(done).toBe(true);
  });

  it('rejects with the reason when the signal aborts, and clears its timer and listener', async () => {
    const clock = createFakeClock({ now: 0 });
    const controller = new AbortController();
    const waiting = sleep(1_000, { clock, signal: controller.signal });
    expect(clock.pendingTimers).toBe(1);
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    expect(clock.pendingTimers).toBe(0);
    expect(listenerCount(controller.signal)).toBe(0);
  });

  it('rejects at once, setting no timer, when the signal has already aborted', async () => {
    const clock = createFakeClock({ now: 0 });
    await expect(
      sleep(10, { clock, signal: AbortSignal.abort(new Error('gone')) }),
    ).rejects.toThrow('gone');
    expect(clock.pendingTimers).toBe(0);
  });

  it('leaves no listener on a long-lived signal after it resolves', async () => {
    const clock = createFakeClock({ now: 0 });
    const controller = new AbortController();
    for (let i = 0; i < 5; i += 1) {
      const waiting = sleep(10, { clock, signal: controller.signal });
      clock.advance(10);
      await waiting;
    }
    expect(listenerCount(controller.signal)).toBe(0);
  });
});

describe('pause', () => {
  it('resolves true after the full time and false when aborted', async () => {
    const clock = createFakeClock({ now: 0 });
    const full = pause(5, { clock });
    clock.advance(5);
    expect(await full).toBe(true);
    const controller = new AbortController();
    const cut = pause(5, { clock, signal: controller.signal });
    controller.abort();
    expect(await cut).toBe(false);
    expect(await pause(5, { clock, signal: AbortSignal.abort() })).toBe(false);
  });
});

describe('abortable', () => {
  it('settles like the promise when the signal never aborts', async () => {
    const controller = new AbortController();
    await expect(abortable(Promise.resolve(7), controller.signal)).resolves.toBe(7);
    await expect(abortable(Promise.reject(new Error('no')), controller.signal)).rejects.toThrow(
      'no',
    );
    expect(listenerCount(controller.signal)).toBe(0);
  });

  it('rejects with the reason as soon as the signal aborts', async () => {
    const controller = new AbortController();
    const never = new Promise<number>(() => {});
    const waiting = abortable(never, controller.signal);
    controller.abort(new Error('late'));
    await expect(waiting).rejects.toThrow('late');
  });

  it('rejects at once when the signal has already aborted (and swallows the late rejection)', async () => {
    const late = Promise.reject(new Error('unobserved'));
    await expect(abortable(late, AbortSignal.abort(new Error('already')))).rejects.toThrow(
      'already',
    );
  });

  it('passes the promise through when there is no signal', async () => {
    await expect(abortable(Promise.resolve('x'), undefined)).resolves.toBe('x');
  });
});

describe('onAbort', () => {
  it('calls back once, for the first of several signals, and stops listening to the rest', () => {
    const a = new AbortController();
    const b = new AbortController();
    const reasons: unknown[] = [];
    onAbort([a.signal, undefined, b.signal], (reason) => reasons.push(reason));
    b.abort('b');
    a.abort('a');
    expect(reasons).toEqual(['b']);
    expect(listenerCount(a.signal)).toBe(0);
  });

  it('calls back at once when a signal has already aborted', () => {
    const reasons: unknown[] = [];
    onAbort(AbortSignal.abort('now'), (reason) => reasons.push(reason));
    expect(reasons).toEqual(['now']);
  });

  it('never calls back once stopped', () => {
    const controller = new AbortController();
    let called = false;
    const stop = onAbort(controller.signal, () => {
      called = true;
    });
    stop();
    controller.abort();
    expect(called).toBe(false);
    expect(listenerCount(controller.signal)).toBe(0);
  });
});

describe('backoffDelay', () => {
  const policy = { baseMs: 100, maxMs: 1_000 };

  it('doubles from the base per failure and stops at the cap', () => {
    const steps = [1, 2, 3, 4, 5, 50, 10_000].map((attempt) =>
      backoffDelay(attempt, { ...policy, jitter: 'none' }),
    );
    expect(steps).toEqual([100, 200, 400, 800, 1_000, 1_000, 1_000]);
  });

  it('keeps equal jitter within half the step and the step', () => {
    expect(backoffDelay(3, { ...policy, random: () => 0 })).toBe(200);
    expect(backoffDelay(3, { ...policy, random: () => 0.999_999 })).toBeCloseTo(400, 2);
  });

  it('spreads full jitter from 0 to the step', () => {
    expect(backoffDelay(3, { ...policy, jitter: 'full', random: () => 0 })).toBe(0);
    expect(backoffDelay(3, { ...policy, jitter: 'full', random: () => 0.5 })).toBe(200);
  });

  it('rejects an attempt below 1 or a negative duration', () => {
    expect(() => backoffDelay(0, policy)).toThrow(RangeError);
    expect(() => backoffDelay(1, { baseMs: -1, maxMs: 1 })).toThrow(RangeError);
  });
});

describe('createLimiter', () => {
  it('runs at most `concurrency` tasks at once, the rest in the order they asked', async () => {
    const limiter = createLimiter(2);
    const started: number[] = [];
    const gates = [0, 1, 2, 3].map(() => gate());
    const runs = gates.map((gate, index) =>
      limiter.run(async () => {
        started.push(index);
        await gate.promise;
        return index;
      }),
    );
    await settle();
    expect(started).toEqual([0, 1]);
    expect({ active: limiter.active, waiting: limiter.waiting }).toEqual({ active: 2, waiting: 2 });
    gates[1]?.resolve();
    await settle();
    expect(started).toEqual([0, 1, 2]);
    for (const each of gates) each.resolve();
    expect(await Promise.all(runs)).toEqual([0, 1, 2, 3]);
    expect({ active: limiter.active, waiting: limiter.waiting }).toEqual({ active: 0, waiting: 0 });
  });

  it('lets an aborted waiter leave the line without taking a turn or leaving a listener', async () => {
    const limiter = createLimiter(1);
    const open = gate();
    const first = limiter.run(() => open.promise);
    const controller = new AbortController();
    let ran = false;
    const second = limiter.run(
      async () => {
        ran = true;
      },
      { signal: controller.signal },
    );
    controller.abort(new Error('gave up'));
    await expect(second).rejects.toThrow('gave up');
    expect(limiter.waiting).toBe(0);
    expect(listenerCount(controller.signal)).toBe(0);
    open.resolve();
    await first;
    expect(ran).toBe(false);
    expect(limiter.active).toBe(0);
  });

  it('frees the turn of a task that throws', async () => {
    const limiter = createLimiter(1);
    await expect(limiter.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(limiter.run(async () => 'next')).resolves.toBe('next');
  });

  it('refuses a concurrency below 1', () => {
    expect(() => createLimiter(0)).toThrow(RangeError);
  });
});
