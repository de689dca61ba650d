import {
  Counter,
  type CounterConfiguration,
  collectDefaultMetrics,
  Gauge,
  type GaugeConfiguration,
  Histogram,
  type HistogramConfiguration,
  type MetricObjectWithValues,
  type MetricValue,
  Registry,
} from 'prom-client';
import type { Redactor } from './redaction.js';

/**
 * The shape of every DSO metric name: `dso_<subsystem>_<name>_<unit>`, lower case. The unit
 * rules on top of it are in {@link defineCounter}, {@link defineGauge}, {@link defineHistogram}.
 */
export const METRIC_NAME_PATTERN = /^dso_[a-z]+_[a-z0-9_]+$/;

/**
 * The units a gauge or a histogram name ends in. Durations are in `ms` like everywhere else in
 * DSO (`seconds` where a standard asks for it); `items` counts things a gauge goes up and down
 * by (`dso_queue_depth_items`). `_total` belongs to counters alone.
 */
export const METRIC_UNITS = ['ms', 'seconds', 'bytes', 'ratio', 'items'] as const;

/**
 * Words no label name may contain (as one of its `_`-separated words, singular or plural):
 * labels that would carry a secret's path, value or reference, a container's id or name, a key,
 * or anything else unbounded. Labels are for small fixed sets: `provider`, `operation`,
 * `outcome`, `code`.
 */
export const FORBIDDEN_LABEL_WORDS: readonly string[] = Object.freeze([
  'path',
  'value',
  'secret',
  'reference',
  'container',
  'name',
  'key',
  'id',
  'password',
  'token',
  'url',
  'uri',
]);

/**
 * Histogram buckets for latencies in milliseconds, from a cache hit (1 ms) to a slow provider
 * call that times out (30 s).
 */
export const DEFAULT_LATENCY_BUCKETS_MS: readonly number[] = Object.freeze([
  1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000,
]);

/**
 * prom-client's `Registry`, named here so that packages using these helpers need no import of
 * their own from prom-client.
 */
export type MetricsRegistry = Registry;

/** The prefix of the Node.js process metrics {@link collectProcessMetrics} registers. */
export const PROCESS_METRICS_PREFIX = 'dso_process_';

/** What {@link defineCounter} and {@link defineGauge} take. */
export interface MetricDefinition<L extends string = never> {
  /** `dso_<subsystem>_<name>_<unit>`, see {@link METRIC_NAME_PATTERN}. */
  name: string;
  /** One sentence: what is measured, in which unit. */
  help: string;
  /**
   * Label names, each a small fixed set of values (`provider`, `operation`, `outcome`).
   * @default []
   */
  labelNames?: readonly L[];
}

/** What {@link defineHistogram} takes. */
export interface HistogramDefinition<L extends string = never> extends MetricDefinition<L> {
  /**
   * Upper bounds of the buckets, increasing.
   * @default DEFAULT_LATENCY_BUCKETS_MS
   */
  buckets?: readonly number[];
}

/** Options of {@link createMetricsRegistry}. */
export interface MetricsRegistryOptions {
  /**
   * Labels and values added to every series of the registry (`{ instance: 'agent' }`); the
   * names are checked like any label's.
   */
  defaultLabels?: Readonly<Record<string, string>>;
  /**
   * Every exposition the registry produces (`metrics()`, `getSingleMetricAsString()`,
   * `getMetricsAsJSON()`) passes through `redactor.redact`: a registered value used as a label
   * value by mistake comes out as `[REDACTED]`.
   */
  redactor?: Redactor;
}

/**
 * Creates a registry of its own for DSO's metrics. Nothing in DSO registers on prom-client's
 * global `register`: two copies of a package, or two agents in one test process, would collide
 * there, and whoever serves the global registry would expose DSO's series unasked.
 *
 * @example
 * const registry = createMetricsRegistry({ redactor });
 * const resolved = defineCounter(registry, {
 *   name: 'dso_provider_resolves_total',
 *   help: 'Secrets resolved from providers, by provider and outcome.',
 *   labelNames: ['provider', 'outcome'],
 * });
 * resolved.inc({ provider: 'vault', outcome: 'ok' });
 * response.end(await registry.metrics());
 * @throws TypeError when a default label name is refused (see {@link FORBIDDEN_LABEL_WORDS})
 */
export function createMetricsRegistry(options: MetricsRegistryOptions = {}): MetricsRegistry {
  const registry =
    options.redactor === undefined ? new Registry() : new RedactingRegistry(options.redactor);
  if (options.defaultLabels !== undefined) {
    for (const label of Object.keys(options.defaultLabels)) checkLabelName('default labels', label);
    registry.setDefaultLabels({ ...options.defaultLabels });
  }
  return registry;
}

/**
 * A registry whose every exposition passes through a redactor. `Registry.merge` builds a plain
 * registry from the metrics, so merge the outputs instead.
 */
class RedactingRegistry extends Registry {
  readonly #redactor: Redactor;

  constructor(redactor: Redactor) {
    super();
    this.#redactor = redactor;
  }

  override async metrics(): Promise<string> {
    return this.#redactor.redact(await super.metrics());
  }

  override async getSingleMetricAsString(name: string): Promise<string> {
    return this.#redactor.redact(await super.getSingleMetricAsString(name));
  }

  override async getMetricsAsJSON(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    // Redaction keeps JSON valid: every registered value's JSON-escaped form is matched whole.
    return JSON.parse(this.#redactor.redact(JSON.stringify(await super.getMetricsAsJSON())));
  }
}

/**
 * Defines a counter on `registry`, and only there. The name ends in `_total`. Defining the
 * same counter (same name, labels) on the same registry again returns the one there.
 *
 * @example
 * const injected = defineCounter(registry, {
 *   name: 'dso_agent_injections_total',
 *   help: 'File sets written into containers, by outcome.',
 *   labelNames: ['outcome'],
 * });
 * injected.inc({ outcome: 'ok' });
 * @throws TypeError when the name or a label name breaks the naming rules, or another metric
 *   of that name is on the registry
 */
export function defineCounter<L extends string = never>(
  registry: MetricsRegistry,
  definition: MetricDefinition<L>,
): Counter<L> {
  const labelNames = checkDefinition(registry, definition, 'counter');
  if (!definition.name.endsWith('_total')) {
    throw new TypeError(`counter ${definition.name} must end in _total`);
  }
  const existing = reuse(registry, definition.name, Counter, labelNames);
  if (existing) return existing as Counter<L>;
  const configuration: CounterConfiguration<L> = {
    name: definition.name,
    help: definition.help,
    labelNames,
    registers: [registry],
  };
  return new Counter(configuration);
}

/**
 * Defines a gauge on `registry`, and only there. The name ends in a unit of
 * {@link METRIC_UNITS}. Defining the same gauge again returns the one there.
 *
 * @example
 * const depth = defineGauge(registry, {
 *   name: 'dso_queue_depth_items',
 *   help: 'Events waiting in the queue.',
 * });
 * depth.set(queue.size);
 * @throws TypeError when the name or a label name breaks the naming rules, or another metric
 *   of that name is on the registry
 */
export function defineGauge<L extends string = never>(
  registry: MetricsRegistry,
  definition: MetricDefinition<L>,
): Gauge<L> {
  const labelNames = checkDefinition(registry, definition, 'gauge');
  checkUnit(definition.name, 'gauge');
  const existing = reuse(registry, definition.name, Gauge, labelNames);
  if (existing) return existing as Gauge<L>;
  const configuration: GaugeConfiguration<L> = {
    name: definition.name,
    help: definition.help,
    labelNames,
    registers: [registry],
  };
  return new Gauge(configuration);
}

/**
 * Defines a histogram on `registry`, and only there, with {@link DEFAULT_LATENCY_BUCKETS_MS}
 * unless given buckets. The name ends in a unit of {@link METRIC_UNITS}. Defining the same
 * histogram again returns the one there.
 *
 * @example
 * const latency = defineHistogram(registry, {
 *   name: 'dso_provider_resolve_duration_ms',
 *   help: 'Time to resolve one secret from its provider, in milliseconds.',
 *   labelNames: ['provider', 'outcome'],
 * });
 * latency.observe({ provider: 'vault', outcome: 'ok' }, elapsedMs);
 * @throws TypeError when the name or a label name breaks the naming rules, the buckets are
 *   not increasing finite numbers, or another metric of that name is on the registry
 */
export function defineHistogram<L extends string = never>(
  registry: MetricsRegistry,
  definition: HistogramDefinition<L>,
): Histogram<L> {
  const labelNames = checkDefinition(registry, definition, 'histogram');
  checkUnit(definition.name, 'histogram');
  const buckets = [...(definition.buckets ?? DEFAULT_LATENCY_BUCKETS_MS)];
  if (
    buckets.length === 0 ||
    buckets.some((bound, i) => !Number.isFinite(bound) || (i > 0 && bound <= buckets[i - 1]!))
  ) {
    throw new TypeError(`histogram ${definition.name}: buckets must be increasing finite numbers`);
  }
  const existing = reuse(registry, definition.name, Histogram, labelNames);
  if (existing) return existing as Histogram<L>;
  const configuration: HistogramConfiguration<L> = {
    name: definition.name,
    help: definition.help,
    labelNames,
    buckets,
    registers: [registry],
  };
  return new Histogram(configuration);
}

/** Options of {@link collectProcessMetrics}. */
export interface ProcessMetricsOptions {
  /**
   * Sampling interval of the event-loop delay monitor, in milliseconds.
   * @default 10
   */
  eventLoopMonitoringPrecision?: number;
}

/**
 * Registers prom-client's Node.js process metrics (CPU, memory, heap, event-loop lag, GC,
 * handles, file descriptors) on `registry`, named `dso_process_<prom-client's name>`. They are
 * read when the registry is scraped; nothing runs in between but the event-loop delay monitor.
 * Call it once per registry.
 *
 * @example
 * const registry = createMetricsRegistry();
 * collectProcessMetrics(registry);
 * @throws TypeError when process metrics are already registered on `registry`
 */
export function collectProcessMetrics(
  registry: MetricsRegistry,
  options: ProcessMetricsOptions = {},
): void {
  if (registry.getSingleMetric(`${PROCESS_METRICS_PREFIX}process_cpu_seconds_total`)) {
    throw new TypeError('process metrics are already registered on this registry');
  }
  collectDefaultMetrics({
    register: registry,
    prefix: PROCESS_METRICS_PREFIX,
    ...(options.eventLoopMonitoringPrecision === undefined
      ? {}
      : { eventLoopMonitoringPrecision: options.eventLoopMonitoringPrecision }),
  });
}

type MetricKind = 'counter' | 'gauge' | 'histogram';

/** Checks the parts all metrics share and returns a fresh copy of the label names. */
function checkDefinition<L extends string>(
  registry: Registry,
  definition: MetricDefinition<L>,
  kind: MetricKind,
): L[] {
  if (!(registry instanceof Registry)) {
    throw new TypeError(`define a ${kind} on a Registry from createMetricsRegistry()`);
  }
  const { name, help } = definition;
  if (
    typeof name !== 'string' ||
    !METRIC_NAME_PATTERN.test(name) ||
    /__|_$/.test(name) ||
    // dso, subsystem, name, unit: at least four words.
    name.split('_').length < 4
  ) {
    throw new TypeError(
      `${kind} name ${JSON.stringify(name)} must look like dso_<subsystem>_<name>_<unit>: lower case letters, digits and single underscores`,
    );
  }
  if (typeof help !== 'string' || help.trim() === '') {
    throw new TypeError(`${kind} ${name} needs a help text`);
  }
  const labelNames = [...(definition.labelNames ?? [])];
  if (new Set(labelNames).size !== labelNames.length) {
    throw new TypeError(`${kind} ${name} lists a label twice`);
  }
  for (const label of labelNames) checkLabelName(`${kind} ${name}`, label);
  if (kind === 'histogram' && labelNames.includes('le' as L)) {
    throw new TypeError(`histogram ${name}: le is the bucket label and cannot be set`);
  }
  return labelNames;
}

function checkUnit(name: string, kind: MetricKind): void {
  if (name.endsWith('_total')) {
    throw new TypeError(`${kind} ${name} must not end in _total: that suffix means a counter`);
  }
  if (!METRIC_UNITS.some((unit) => name.endsWith(`_${unit}`))) {
    throw new TypeError(
      `${kind} ${name} must end in its unit: one of ${METRIC_UNITS.map((unit) => `_${unit}`).join(', ')}`,
    );
  }
}

function checkLabelName(owner: string, label: string): void {
  if (typeof label !== 'string' || !/^[a-z][a-z0-9_]*$/.test(label)) {
    throw new TypeError(
      `${owner}: label ${JSON.stringify(label)} must be lower case letters, digits and underscores`,
    );
  }
  const refused = label
    .split('_')
    .find(
      (word) =>
        FORBIDDEN_LABEL_WORDS.includes(word) ||
        FORBIDDEN_LABEL_WORDS.includes(word.replace(/s$/, '')),
    );
  if (refused !== undefined) {
    throw new TypeError(
      `${owner}: label "${label}" is refused: "${refused}" suggests a secret's path, value or reference, a container's id or name, or another unbounded value; a label takes a small fixed set of values (provider, operation, outcome), and per-item facts belong in log fields or the audit log`,
    );
  }
}

/** The metric of that name already on `registry` when it is the same definition; else throws. */
function reuse(
  registry: Registry,
  name: string,
  kind: typeof Counter | typeof Gauge | typeof Histogram,
  labelNames: readonly string[],
): unknown {
  const existing = registry.getSingleMetric(name) as { labelNames?: readonly string[] } | undefined;
  if (existing === undefined) return undefined;
  const same =
    existing instanceof kind &&
    JSON.stringify([...(existing.labelNames ?? [])].sort()) ===
      JSON.stringify([...labelNames].sort());
  if (!same) {
    throw new TypeError(`another metric named ${name} is already on this registry`);
  }
  return existing;
}
