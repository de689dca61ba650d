/** {@link createLimiter}'s result. */
export interface Limiter {
  /**
   * Runs `task` once fewer than `concurrency` tasks run, in the order callers asked. A caller
   * whose `signal` aborts while it waits leaves the line at once (rejected with the reason) and
   * leaves no listener behind; a task that started is the caller's to stop through its signal.
   */
  run<T>(task: () => Promise<T>, options?: { signal?: AbortSignal | undefined }): Promise<T>;
  /** Tasks running now. */
  readonly active: number;
  /** Callers waiting for a turn. */
  readonly waiting: number;
}

/**
 * A first-come first-served concurrency limit (a counting semaphore) whose waits can be
 * abandoned.
 *
 * @example
 * const limiter = createLimiter(16);
 * await limiter.run(() => restart(container), { signal });
 * @throws RangeError when `concurrency` is not a whole number of at least 1
 */
export function createLimiter(concurrency: number): Limiter {
  if (!Number.isInteger(concurrency) || concurrency < 1) {
    throw new RangeError(`concurrency must be a whole number of at least 1, got ${concurrency}`);
  }
  let active = 0;
  const line = new Set<() => void>();

  function release(): void {
    active -= 1;
    const next = line.values().next();
    if (!next.done) {
      line.delete(next.value);
      next.value();
    }
  }

  function acquire(signal: AbortSignal | undefined): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    if (active < concurrency) {
      active += 1;
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      const turn = () => {
        signal?.removeEventListener('abort', leave);
        active += 1;
        resolve();
      };
      function leave() {
        line.delete(turn);
        reject(signal?.reason);
      }
      line.add(turn);
      signal?.addEventListener('abort', leave, { once: true });
    });
  }

  return {
    async run(task, options = {}) {
      await acquire(options.signal);
      try {
        return await task();
      } finally {
        release();
      }
    },
    get active() {
      return active;
    },
    get waiting() {
      return line.size;
    },
  };
}
