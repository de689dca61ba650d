// ---------------------------------------------------------------------------------------------
// Bound metric children and scrape-time sampling, for createAgentMetrics.
// ---------------------------------------------------------------------------------------------

/** The parts of prom-client's bound children the agent's metrics use. */
export interface Inc {
  inc(value?: number): void;
}
export interface Observe {
  observe(value: number): void;
}
export interface Settable {
  set(value: number): void;
}

/** A record of one bound child per label value; indexing it with a foreign value gives undefined. */
export function bindAll<K extends string, C>(
  values: readonly K[],
  bind: (value: K) => C,
): Readonly<Record<K, C>> {
  const children = Object.create(null) as Record<K, C>;
  for (const value of values) children[value] = bind(value);
  return children;
}

/** The child, incremented by 0: a counter shows 0 from the start, so rate() sees its first increment. */
export function zeroed<C extends Inc>(child: C): C {
  child.inc(0);
  return child;
}

/** `make()` on the first call, the same value after. */
export function lazy<T>(make: () => T): () => T {
  let made: T | undefined;
  return () => {
    made ??= make();
    return made;
  };
}

/** Observes a duration that is a finite number ≥ 0; anything else is dropped. */
export function observe(child: Observe | undefined, durationMs: number): void {
  // prom-client throws on NaN; a bad duration is the caller's bug, not worth a crash here.
  if (child && Number.isFinite(durationMs) && durationMs >= 0) child.observe(durationMs);
}

/**
 * prom-client calls a metric's `collect` (its documented `collect` configuration option) at the
 * start of every read of the metric; core's define helpers do not take that option, so it is
 * set on the metric they made, which is what prom-client's constructor does with it too.
 */
export function onCollect(metric: object, collect: () => void): void {
  (metric as { collect?: () => void }).collect = collect;
}

/** The source's current stats, or undefined when there is none or it throws. */
export function sample<T>(source: (() => T) | undefined): T | undefined {
  if (source === undefined) return undefined;
  try {
    return source();
  } catch {
    // A failing source leaves its metrics where they were; a scrape must not fail over it.
    return undefined;
  }
}

/** The counts a source reported at the last scrape. */
export type Baseline<K extends string> = Partial<Record<K, number>>;

/** A baseline of a new source: every count it reports is new. */
export function newBaseline<K extends string>(): Baseline<K> {
  return {};
}

/** Turns a cumulative count read from a source into counter increments. */
export function advance<K extends string>(
  counter: Inc,
  seen: Baseline<K>,
  key: K,
  stats: Readonly<Record<K, number>> | undefined,
): void {
  if (stats === undefined) return;
  const now = stats[key];
  if (!Number.isFinite(now) || now < 0) return;
  const before = seen[key] ?? 0;
  // A count that went down belongs to a new source: all of it is new.
  const delta = now >= before ? now - before : now;
  if (delta > 0) counter.inc(delta);
  seen[key] = now;
}
