/**
 * A small keyed work queue: work for one key coalesces while it waits, one worker per key at a
 * time, at most `concurrency` keys at once, keys served first-come first-served.
 *
 * This is the agent's stopgap until `@dso/core` ships the full keyed event queue (bounds,
 * shedding, retries, metrics); its interface is kept narrow so the swap is local.
 */
export interface WorkQueue {
  /** Asks for `key` to be processed; a no-op when it already waits. */
  add(key: string): void;
  /** Resolves when nothing waits or runs. */
  idle(): Promise<void>;
  /** Stops taking work; waits for what runs, up to `graceMs`. */
  close(graceMs: number): Promise<void>;
  readonly depth: number;
  readonly inFlight: number;
}

/** How a {@link WorkQueue} runs its work. */
export interface WorkQueueOptions {
  concurrency: number;
  /** Processes one key; must not throw (failures are the worker's to report). */
  worker: (key: string) => Promise<void>;
}

/**
 * Builds a {@link WorkQueue}.
 *
 * @example
 * const queue = createWorkQueue({ concurrency: 4, worker: (id) => deliver(id) });
 * queue.add(containerId);
 * await queue.idle();
 */
export function createWorkQueue({ concurrency, worker }: WorkQueueOptions): WorkQueue {
  const waiting = new Set<string>(); // insertion order = FIFO across keys
  const running = new Set<string>();
  const rerun = new Set<string>(); // keys added again while running
  let closed = false;
  let idleWaiters: Array<() => void> = [];

  const settleIdle = () => {
    if (waiting.size > 0 || running.size > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  };

  const pump = () => {
    for (const key of waiting) {
      if (running.size >= concurrency) break;
      if (running.has(key)) continue;
      waiting.delete(key);
      running.add(key);
      void worker(key)
        .catch(() => {
          // The worker reports its own failures (see WorkQueueOptions.worker); a rejection here
          // must not become an unhandled rejection that ends the process.
        })
        .finally(() => {
          running.delete(key);
          if (rerun.delete(key) && !closed) waiting.add(key);
          pump();
          settleIdle();
        });
    }
  };

  return {
    add(key) {
      if (closed) return;
      if (running.has(key)) rerun.add(key);
      else waiting.add(key);
      pump();
    },
    idle() {
      if (waiting.size === 0 && running.size === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    async close(graceMs) {
      closed = true;
      waiting.clear();
      rerun.clear();
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        this.idle(),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, graceMs);
        }),
      ]);
      clearTimeout(timer);
    },
    get depth() {
      return waiting.size;
    },
    get inFlight() {
      return running.size;
    },
  };
}
