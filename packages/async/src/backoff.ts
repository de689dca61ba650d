/**
 * How a backoff step is randomised. `none`: the capped step itself. `equal`: between half the
 * step and the step (never below half, so a fleet spreads out and still backs off). `full`:
 * anywhere from 0 to the step.
 */
export type BackoffJitter = 'none' | 'equal' | 'full';

/** {@link backoffDelay}'s policy. */
export interface BackoffOptions {
  /** The first step, in ms. */
  baseMs: number;
  /** The cap of a step, in ms. */
  maxMs: number;
  /** @default 'equal' */
  jitter?: BackoffJitter;
  /** A number in [0, 1). @default Math.random */
  random?: () => number;
}

/**
 * The delay before try `attempt + 1` after `attempt` failures in a row (1 for the first
 * failure): `baseMs` doubled per further failure, capped at `maxMs`, then jittered. The one
 * backoff formula of the project: reconnects, restarts, retries and polling all use it.
 *
 * @example
 * backoffDelay(1, { baseMs: 500, maxMs: 30_000, jitter: 'none' }); // 500
 * backoffDelay(4, { baseMs: 500, maxMs: 30_000, jitter: 'none' }); // 4_000
 * @throws RangeError when `attempt` is below 1 or a duration is negative
 */
export function backoffDelay(attempt: number, options: BackoffOptions): number {
  const { baseMs, maxMs, jitter = 'equal', random = Math.random } = options;
  if (!(attempt >= 1)) throw new RangeError(`backoff attempt must be 1 or more, got ${attempt}`);
  if (!(baseMs >= 0) || !(maxMs >= 0)) {
    throw new RangeError(`backoff durations must be 0 or more, got ${baseMs} and ${maxMs}`);
  }
  // 2 ** 30 already passes any cap a timer can wait for; beyond it the product overflows nothing.
  const step = Math.min(maxMs, baseMs * 2 ** Math.min(attempt - 1, 30));
  switch (jitter) {
    case 'none':
      return step;
    case 'full':
      return random() * step;
    case 'equal':
      return step / 2 + (random() * step) / 2;
  }
}
