import { type Clock, systemClock } from './clock.js';

/** {@link sleep}'s options. */
export interface SleepOptions {
  /** Ends the sleep early: it rejects with the signal's reason (at once when already aborted). */
  signal?: AbortSignal | undefined;
  /** Whose timer to wait on. @default systemClock */
  clock?: Clock;
  /**
   * Whether a pending sleep keeps the process alive (the system clock's timers only).
   * @default true
   */
  ref?: boolean;
}

/**
 * Waits `ms` on the clock's timer. Rejects with `signal.reason` when the signal aborts, and
 * clears its timer and listener either way, so neither outlives the wait.
 *
 * @example
 * await sleep(backoffDelay(attempt, { baseMs: 500, maxMs: 30_000 }), { signal });
 */
export function sleep(ms: number, options: SleepOptions = {}): Promise<void> {
  const { signal, clock = systemClock } = options;
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise<void>((resolve, reject) => {
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', abort);
      resolve();
    }, ms);
    if (options.ref === false) (timer as { unref?: () => void }).unref?.();
    function abort() {
      clock.clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener('abort', abort, { once: true });
  });
}

/**
 * Like {@link sleep}, but resolves (instead of rejecting) when `signal` aborts: for loops that
 * check the signal themselves after each wait. Resolves with whether the full time passed.
 *
 * @example
 * while (await pause(intervalMs, { signal })) poll();
 */
export async function pause(ms: number, options: SleepOptions = {}): Promise<boolean> {
  try {
    await sleep(ms, options);
    return true;
  } catch (error) {
    if (options.signal?.aborted) return false;
    throw error;
  }
}
