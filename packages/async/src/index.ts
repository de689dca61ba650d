/**
 * @dso/async: the few asynchronous building blocks every DSO package uses, in one place so
 * they behave the same everywhere: an injectable clock (and a fake one for tests), an abortable
 * sleep, racing a promise against an `AbortSignal`, one backoff formula and an abortable
 * concurrency limiter. No dependencies.
 *
 * @example
 * import { abortable, backoffDelay, createLimiter, sleep, systemClock } from '@dso/async';
 *
 * const limiter = createLimiter(4);
 * for (let attempt = 1; ; attempt += 1) {
 *   try {
 *     return await limiter.run(() => abortable(connect(), signal), { signal });
 *   } catch (error) {
 *     if (attempt === 5) throw error;
 *     await sleep(backoffDelay(attempt, { baseMs: 100, maxMs: 5_000 }), { signal, clock: systemClock });
 *   }
 * }
 */

export { abortable, onAbort } from './abortable.js';
export { type BackoffJitter, type BackoffOptions, backoffDelay } from './backoff.js';
export {
  type Clock,
  type ClockTimer,
  createFakeClock,
  type FakeClock,
  type FakeClockOptions,
  systemClock,
} from './clock.js';
export { createLimiter, type Limiter } from './limiter.js';
export { pause, type SleepOptions, sleep } from './sleep.js';
