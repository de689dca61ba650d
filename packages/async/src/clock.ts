// A type-only brand: a ClockTimer is whatever the clock that made it returns, and only that
// clock can clear it. Nothing is emitted for it.
declare const CLOCK_TIMER: unique symbol;

/** An opaque handle to a timer set with {@link Clock.setTimeout}; pass it back to clear it. */
export interface ClockTimer {
  readonly [CLOCK_TIMER]: true;
}

/**
 * Time and timers, injected so that code which waits (queues, caches, retries) can be tested
 * with {@link createFakeClock} instead of real time.
 *
 * `now()` is in milliseconds since the Unix epoch and never goes backwards; durations are
 * differences of two `now()` readings.
 */
export interface Clock {
  /** Milliseconds since the Unix epoch, fractional, never decreasing. */
  now(): number;
  /**
   * Runs `callback` once, `delayMs` milliseconds from now (a negative or non-finite delay
   * means 0). The timer keeps a Node process alive, like the global `setTimeout`.
   */
  setTimeout(callback: () => void, delayMs: number): ClockTimer;
  /** Cancels a timer this clock set; a timer that already ran, or was cleared, is ignored. */
  clearTimeout(timer: ClockTimer): void;
}

// performance.now() is monotonic and sub-millisecond; anchored at timeOrigin it reads as epoch
// milliseconds. Date.now() would give whole milliseconds (too coarse for a queue's wait times)
// and can step backwards when the system time is set. The price: over a long uptime it may
// drift from Date.now() by whatever steps the system clock took meanwhile.
const timeOrigin = performance.timeOrigin;

/**
 * The real clock: `performance.timeOrigin + performance.now()` and the global timers. Its
 * {@link ClockTimer}s are Node `Timeout`s, so code that must not keep the process alive may
 * call `unref?.()` on one (a fake clock's timers have no `unref`).
 *
 * @example
 * const queue = createEventQueue({ worker, clock: systemClock }); // the default anyway
 */
export const systemClock: Clock = Object.freeze({
  now: () => timeOrigin + performance.now(),
  setTimeout: (callback: () => void, delayMs: number) =>
    setTimeout(callback, toDelay(delayMs)) as unknown as ClockTimer,
  clearTimeout: (timer: ClockTimer) => clearTimeout(timer as unknown as NodeJS.Timeout),
});

/** Where a {@link createFakeClock} starts. */
export interface FakeClockOptions {
  /**
   * The first reading of `now()`, in epoch milliseconds.
   * @default 1_735_689_600_000 (2025-01-01T00:00:00Z)
   */
  now?: number;
}

/** A {@link Clock} that moves only when told to: for tests. */
export interface FakeClock extends Clock {
  /**
   * Moves time forward by `ms`, running every timer that falls due on the way, earliest first
   * (timers due at the same time in the order they were set), with `now()` reading each timer's
   * due time while it runs. Timers set by those callbacks run too when they fall due within
   * the window. A callback that throws stops the advance there and the error propagates.
   *
   * @throws RangeError when `ms` is negative or not finite
   */
  advance(ms: number): void;
  /** How many timers are set and have not run or been cleared. */
  readonly pendingTimers: number;
}

/** The default start of a {@link createFakeClock}: 2025-01-01T00:00:00Z. */
const FAKE_CLOCK_START = Date.UTC(2025, 0, 1);

interface FakeTimer {
  readonly dueAt: number;
  readonly seq: number;
  readonly callback: () => void;
}

/**
 * Builds a {@link FakeClock}: `now()` stays put until {@link FakeClock.advance} moves it, and
 * timers run only inside `advance`, synchronously.
 *
 * @example
 * const clock = createFakeClock();
 * clock.setTimeout(() => console.log('fired'), 100);
 * clock.advance(99); // nothing
 * clock.advance(1); // fired
 */
export function createFakeClock(options: FakeClockOptions = {}): FakeClock {
  const start = options.now ?? FAKE_CLOCK_START;
  if (!Number.isFinite(start)) {
    throw new RangeError(`fake clock start must be a finite number, got ${start}`);
  }
  let now = start;
  let seq = 0;
  // Kept sorted by (dueAt, seq), so the next timer to run is always the first.
  const timers: FakeTimer[] = [];

  const insert = (timer: FakeTimer) => {
    let low = 0;
    let high = timers.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      const other = timers[middle]!;
      if (other.dueAt < timer.dueAt || (other.dueAt === timer.dueAt && other.seq < timer.seq)) {
        low = middle + 1;
      } else {
        high = middle;
      }
    }
    timers.splice(low, 0, timer);
  };

  return {
    now: () => now,
    setTimeout(callback, delayMs) {
      seq += 1;
      const timer: FakeTimer = { dueAt: now + toDelay(delayMs), seq, callback };
      insert(timer);
      return timer as unknown as ClockTimer;
    },
    clearTimeout(handle) {
      const index = timers.indexOf(handle as unknown as FakeTimer);
      if (index !== -1) timers.splice(index, 1);
    },
    advance(ms) {
      if (!Number.isFinite(ms) || ms < 0) {
        throw new RangeError(`fake clock can only advance by a finite, non-negative ms, got ${ms}`);
      }
      const target = now + ms;
      while (timers.length > 0 && timers[0]!.dueAt <= target) {
        const timer = timers.shift()!;
        now = Math.max(now, timer.dueAt);
        timer.callback();
      }
      now = target;
    },
    get pendingTimers() {
      return timers.length;
    },
  };
}

function toDelay(delayMs: number): number {
  return Number.isFinite(delayMs) && delayMs > 0 ? delayMs : 0;
}
