import type { ClockTimer } from '@dso/async';
import { errorCode } from '@dso/core';
import type { ResolvedDetectorOptions } from './options.js';

/**
 * What the detector's parts (checks, watches, the set of secrets) share: its options, whether
 * it is closed, its timers, the work close() waits for, and its counts. Each part sees this
 * and nothing of the others but what it is handed.
 */
export interface DetectorContext {
  readonly options: ResolvedDetectorOptions;
  /** Set once by close(): nothing starts afterwards, and late answers decide nothing. */
  closed: boolean;
  /** Changes reported, and checks and watches failed, since creation. */
  readonly counts: { changes: number; errors: number };
  /** A timer on the injected clock that never keeps the process alive. */
  setTimer(callback: () => void, delayMs: number): ClockTimer;
  clearTimer(timer: ClockTimer | undefined): void;
  /** Runs a check or a watch loop so that {@link DetectorContext.idle} waits for it. */
  run(work: Promise<void>): void;
  /** Resolves once every check and watch loop that {@link DetectorContext.run} started has ended. */
  idle(): Promise<void>;
}

export function createDetectorContext(options: ResolvedDetectorOptions): DetectorContext {
  const { clock, logger } = options;
  const tasks = new Set<Promise<void>>();
  return {
    options,
    closed: false,
    counts: { changes: 0, errors: 0 },
    setTimer(callback, delayMs) {
      const timer = clock.setTimeout(callback, delayMs);
      // A detector's timers never keep the process alive: the agent's lifetime is its own.
      (timer as { unref?: () => void }).unref?.();
      return timer;
    },
    clearTimer(timer) {
      if (timer !== undefined) clock.clearTimeout(timer);
    },
    run(work) {
      const task = work
        .catch((error: unknown) => {
          // Checks and watch loops handle their own failures: reaching here is a bug.
          logger.error(
            { code: 'DSO_AGENT_CHANGE_DETECTOR_FAILED', causeCode: errorCode(error) },
            'change detection failed unexpectedly; please report it',
          );
        })
        .finally(() => tasks.delete(task));
      tasks.add(task);
    },
    async idle() {
      await Promise.allSettled([...tasks]);
    },
  };
}
