import { onAbort } from '@dso/async';

/** Why a {@link Deadline} fired. */
export type DeadlineCause = 'timeout' | 'caller' | 'closed';

/**
 * One AbortSignal for one call that fires on the caller's signal, the runtime's close, or a
 * timeout, and remembers which. Listeners and the timer are removed by {@link dispose}, so
 * long-lived signals (the runtime's) do not collect listeners from finished calls.
 */
export class Deadline {
  readonly #controller = new AbortController();
  readonly #cleanups: Array<() => void> = [];
  #timer: NodeJS.Timeout | undefined;
  #cause: DeadlineCause | undefined;

  constructor(
    sources: { caller?: AbortSignal | undefined; closed?: AbortSignal | undefined },
    timeoutMs?: number,
  ) {
    this.#link(sources.closed, 'closed');
    this.#link(sources.caller, 'caller');
    if (timeoutMs !== undefined && this.#cause === undefined) {
      this.#timer = setTimeout(() => this.#fire('timeout'), timeoutMs);
      // Never keep the process alive only to time a call out.
      this.#timer.unref();
    }
  }

  /** Aborts when any source does. */
  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  /** What fired first, or `undefined` while nothing has. */
  get cause(): DeadlineCause | undefined {
    return this.#cause;
  }

  /** Stops the timer, keeping the caller and close links (a stream outlives its connect deadline). */
  clearTimeout(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Stops the timer and unlinks every source. */
  dispose(): void {
    this.clearTimeout();
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
  }

  #link(source: AbortSignal | undefined, cause: DeadlineCause): void {
    this.#cleanups.push(onAbort(source, () => this.#fire(cause)));
  }

  #fire(cause: DeadlineCause): void {
    if (this.#cause !== undefined) return;
    this.#cause = cause;
    this.clearTimeout();
    this.#controller.abort(new DeadlineAbort(cause));
  }
}

/** The abort reason a {@link Deadline} uses; never leaves this package. */
export class DeadlineAbort extends Error {
  constructor(readonly deadlineCause: DeadlineCause) {
    super(`aborted: ${deadlineCause}`);
    this.name = 'AbortError';
  }
}
