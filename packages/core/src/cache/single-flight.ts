import { onAbort } from '@dso/async';

// The flight and waiter bookkeeping both caches share: one load per key however many callers
// ask meanwhile, each caller free to leave on its own signal, the load aborted when the last one
// leaves. What a load does and how it ends (store, fall back on a stale value) stays with each
// cache.

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: unknown): void;
  /** Stops listening to the waiter's signal. */
  release(): void;
}

/**
 * One load in flight for a key, shared by every caller that asks for the key meanwhile. A cache
 * extends it with what its load needs (a TTL, Redis key names, a lease) and registers it in a
 * {@link SingleFlight}.
 */
export class Flight<T> {
  /** The key being loaded. */
  readonly key: string;
  /** Aborts the load: when every caller left, or the cache closed. */
  readonly controller = new AbortController();
  /**
   * Set when the key was written, deleted or invalidated meanwhile, every caller left, or the
   * cache closed: the result still reaches its waiters but is not stored.
   */
  detached = false;
  readonly #waiters = new Set<Waiter<T>>();

  constructor(key: string) {
    this.key = key;
  }

  /** Callers waiting for this load now. */
  get waiting(): number {
    return this.#waiters.size;
  }

  /**
   * Hands every waiter its own result, made by `resultFor` once per waiter and synchronously
   * (so nothing can run between two of them), and lets them go.
   */
  resolveEach(resultFor: () => T): void {
    for (const waiter of this.#waiters) {
      waiter.release();
      waiter.resolve(resultFor());
    }
    this.#waiters.clear();
  }

  /** Rejects every waiter with `error` and lets them go. */
  rejectEach(error: unknown): void {
    for (const waiter of this.#waiters) {
      waiter.release();
      waiter.reject(error);
    }
    this.#waiters.clear();
  }

  /**
   * Takes every waiter off this flight, so no later result reaches them, and returns what
   * rejects them: for a close that answers its callers only once its own cleanup is done.
   */
  takeWaiters(): (error: unknown) => void {
    const taken = [...this.#waiters];
    this.#waiters.clear();
    return (error) => {
      for (const waiter of taken) {
        waiter.release();
        waiter.reject(error);
      }
    };
  }

  /** Adds a waiter; see {@link SingleFlight.wait}. */
  join(signal: AbortSignal | undefined, onLastLeft: () => void): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const waiter: Waiter<T> = { resolve, reject, release: () => {} };
      this.#waiters.add(waiter);
      waiter.release = onAbort(signal, (reason) => {
        this.#waiters.delete(waiter);
        reject(reason);
        if (this.#waiters.size === 0) onLastLeft();
      });
    });
  }
}

/** {@link SingleFlight}'s options. */
export interface SingleFlightOptions<F> {
  /**
   * Called when every waiter of `flight` left, after it was detached, dropped from the registry
   * and its load aborted: to free what the load held (a lease).
   */
  onAbandon?: (flight: F) => void;
}

/**
 * The loads in flight of a cache, one per key. Callers join a flight with {@link wait} and may
 * leave on their own signal; when the last one leaves the flight is abandoned: detached and its
 * load aborted, so the next caller starts a fresh one.
 *
 * @example
 * const flights = new SingleFlight<CacheResult, Flight<CacheResult>>();
 * let flight = flights.get(key);
 * if (flight === undefined) {
 *   flight = flights.start(new Flight(key));
 *   load(flight.controller.signal).then(
 *     (value) => { flights.retire(flight); flight.resolveEach(() => copyOf(value)); },
 *     (error) => { flights.retire(flight); flight.rejectEach(error); },
 *   );
 * }
 * return flights.wait(flight, signal);
 */
export class SingleFlight<T, F extends Flight<T> = Flight<T>> {
  readonly #flights = new Map<string, F>();
  readonly #onAbandon: ((flight: F) => void) | undefined;

  constructor(options: SingleFlightOptions<F> = {}) {
    this.#onAbandon = options.onAbandon;
  }

  /** The flight loading `key`, if any. */
  get(key: string): F | undefined {
    return this.#flights.get(key);
  }

  /** The flights in the order they started. */
  values(): IterableIterator<F> {
    return this.#flights.values();
  }

  /** Registers `flight` as the load of its key (replacing none: call {@link get} first). */
  start(flight: F): F {
    this.#flights.set(flight.key, flight);
    return flight;
  }

  /** Drops `flight` from the registry if it is still the load of its key: it is ending. */
  retire(flight: F): void {
    if (this.#flights.get(flight.key) === flight) this.#flights.delete(flight.key);
  }

  /**
   * Stops the load in flight for `key` (if any) from being joined or stored; its waiters still
   * get its result. Returns the flight.
   */
  detach(key: string): F | undefined {
    const flight = this.#flights.get(key);
    if (flight === undefined) return undefined;
    flight.detached = true;
    this.#flights.delete(key);
    return flight;
  }

  /**
   * Waits for `flight`'s result. Rejects with `signal.reason` when the signal aborts (at once
   * when it already has), and when that leaves the flight without waiters, abandons it.
   */
  wait(flight: F, signal: AbortSignal | undefined): Promise<T> {
    return flight.join(signal, () => this.#abandon(flight));
  }

  /**
   * Ends every flight for a close: detached, its load aborted with `reason`, and dropped from
   * the registry. Returns them; their waiters are still on them.
   */
  closeAll(reason: unknown): F[] {
    const flights = [...this.#flights.values()];
    this.#flights.clear();
    for (const flight of flights) {
      flight.detached = true;
      flight.controller.abort(reason);
    }
    return flights;
  }

  #abandon(flight: F) {
    this.retire(flight);
    flight.detached = true;
    flight.controller.abort();
    this.#onAbandon?.(flight);
  }
}
