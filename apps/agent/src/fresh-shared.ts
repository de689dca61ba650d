/**
 * One read shared by every caller that asks while it waits, never one that began before a
 * caller asked: what a check needs when it must see everything that existed when it started
 * (the host path's "no container can write this folder"), without one read per caller.
 */

/** Reads a fresh value; every call gets the result of a read that began after it was made. */
export type FreshShared<T> = (signal: AbortSignal) => Promise<T>;

/** One read: the callers waiting for it and the means to stop it once none is left. */
interface Round<T> {
  /** Settles with the read's result; created when the round is, started later if queued. */
  result: Promise<T>;
  /** Starts the read (once). */
  start: () => void;
  started: boolean;
  /** Callers still waiting for this round. */
  waiters: number;
  controller: AbortController;
}

/**
 * Coalesces calls of `read` without weakening freshness: a call joins a read that has not
 * begun yet (the queued one) or, when none is in flight, starts one; it never joins the read in
 * flight, which began before it asked. So at most one read is in flight and one queued: a burst
 * of N calls costs about two reads, a lone call gets its own. All callers of one round get the
 * same value (treat it as read-only) or the same error.
 *
 * A caller whose signal aborts stops waiting (rejects with the signal's reason); the read itself
 * is aborted once no caller waits for it, and a queued read nobody waits for any more never
 * starts.
 *
 * @example
 * const listAll = createFreshShared((signal) => runtime.listContainers({ all: true, signal }));
 * const containers = await listAll(signal); // includes every container created before this call
 */
export function createFreshShared<T>(read: (signal: AbortSignal) => Promise<T>): FreshShared<T> {
  let inFlight: Round<T> | undefined;
  let queued: Round<T> | undefined;

  function newRound(): Round<T> {
    const controller = new AbortController();
    let begin!: () => void;
    const began = new Promise<void>((resolve) => {
      begin = resolve;
    });
    const round: Round<T> = {
      result: began.then(() => read(controller.signal)),
      start() {
        if (round.started) return;
        round.started = true;
        begin();
      },
      started: false,
      waiters: 0,
      controller,
    };
    const settle = () => {
      if (inFlight !== round) return;
      inFlight = undefined;
      const next = queued;
      queued = undefined;
      if (next !== undefined && next.waiters > 0) launch(next);
    };
    // Handled here whatever the outcome: every waiter may have left, and each waiter that has
    // not gets the error through its own race.
    round.result.then(settle, settle);
    return round;
  }

  function launch(round: Round<T>): void {
    inFlight = round;
    round.start();
  }

  return async function fresh(signal) {
    signal.throwIfAborted();
    let round: Round<T>;
    if (inFlight === undefined) {
      round = newRound();
      launch(round);
    } else {
      queued ??= newRound();
      round = queued;
    }
    round.waiters += 1;
    let onAbort: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
    });
    try {
      return await Promise.race([round.result, aborted]);
    } finally {
      if (onAbort !== undefined) signal.removeEventListener('abort', onAbort);
      round.waiters -= 1;
      if (signal.aborted && round.waiters === 0) {
        if (round.started) round.controller.abort(signal.reason);
        // A queued round nobody waits for is dropped when the one in flight settles.
      }
    }
  };
}
