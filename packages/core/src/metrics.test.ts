import { Counter, Gauge, Histogram, Registry, register } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import {
  collectProcessMetrics,
  createMetricsRegistry,
  DEFAULT_LATENCY_BUCKETS_MS,
  defineCounter,
  defineGauge,
  defineHistogram,
  FORBIDDEN_LABEL_WORDS,
} from './metrics.js';
import { createRedactor, REDACTED } from './redaction.js';

const CANARY = 'canary-9d41c7-never-in-metrics';

describe('metrics helpers', () => {
  afterEach(() => {
    // Every test checks that nothing reached the global registry.
    expect(register.getMetricsAsArray()).toHaveLength(0);
  });

  it('registers counters, gauges and histograms on the given registry only', async () => {
    const registry = createMetricsRegistry();
    const other = createMetricsRegistry();
    const counter = defineCounter(registry, {
      name: 'dso_provider_resolves_total',
      help: 'Secrets resolved.',
      labelNames: ['provider', 'outcome'],
    });
    const gauge = defineGauge(registry, { name: 'dso_queue_depth_items', help: 'Queued events.' });
    const histogram = defineHistogram(registry, {
      name: 'dso_provider_resolve_duration_ms',
      help: 'Resolve latency.',
      labelNames: ['provider'],
    });
    counter.inc({ provider: 'vault', outcome: 'ok' });
    gauge.set(3);
    histogram.observe({ provider: 'vault' }, 12);

    expect(registry).toBeInstanceOf(Registry);
    expect(counter).toBeInstanceOf(Counter);
    expect(gauge).toBeInstanceOf(Gauge);
    expect(histogram).toBeInstanceOf(Histogram);
    const text = await registry.metrics();
    expect(text).toContain('dso_provider_resolves_total{provider="vault",outcome="ok"} 1');
    expect(text).toContain('dso_queue_depth_items 3');
    expect(text).toContain('dso_provider_resolve_duration_ms_bucket{le="25",provider="vault"} 1');
    expect(other.getMetricsAsArray()).toHaveLength(0);
  });

  it('gives histograms millisecond latency buckets by default, and takes others', async () => {
    const registry = createMetricsRegistry();
    defineHistogram(registry, { name: 'dso_cache_get_duration_ms', help: 'Cache reads.' });
    defineHistogram(registry, {
      name: 'dso_agent_payload_bytes',
      help: 'Bytes written.',
      buckets: [1024, 65_536],
    });
    const [latency, size] = await registry.getMetricsAsJSON();
    const bounds = (metric: typeof latency) =>
      metric!.values
        .filter((v) => (v as { metricName?: string }).metricName?.endsWith('_bucket'))
        .map((v) => v.labels.le);
    expect(bounds(latency)).toEqual([...DEFAULT_LATENCY_BUCKETS_MS, '+Inf']);
    expect(bounds(size)).toEqual([1024, 65_536, '+Inf']);
  });

  it('returns the metric already defined when the definition is the same', () => {
    const registry = createMetricsRegistry();
    const definition = { name: 'dso_agent_events_total', help: 'Events.', labelNames: ['type'] };
    expect(defineCounter(registry, definition)).toBe(defineCounter(registry, definition));
    expect(() => defineCounter(registry, { ...definition, labelNames: ['outcome'] })).toThrow(
      /another metric named dso_agent_events_total/,
    );
    expect(() => defineGauge(registry, { name: 'dso_agent_events_total', help: 'x' })).toThrow(
      TypeError,
    );
  });

  it.each([
    ['agent_events_total', 'no dso_ prefix'],
    ['dso_events_total', 'no subsystem'],
    ['dso_Agent_events_total', 'upper case'],
    ['dso_agent_events__total', 'double underscore'],
    ['dso_agent-events_total', 'a dash'],
    ['dso_agent_events_total_', 'a trailing underscore'],
  ])('rejects the name %s (%s)', (name) => {
    expect(() => defineCounter(createMetricsRegistry(), { name, help: 'x' })).toThrow(TypeError);
  });

  it('requires counters to end in _total and others to end in a unit', () => {
    const registry = createMetricsRegistry();
    expect(() => defineCounter(registry, { name: 'dso_agent_event_count', help: 'x' })).toThrow(
      /must end in _total/,
    );
    expect(() => defineGauge(registry, { name: 'dso_agent_events_total', help: 'x' })).toThrow(
      /means a counter/,
    );
    expect(() => defineGauge(registry, { name: 'dso_queue_depth_level', help: 'x' })).toThrow(
      /must end in its unit: one of _ms, _seconds, _bytes, _ratio, _items/,
    );
    expect(() =>
      defineHistogram(registry, { name: 'dso_agent_resolve_latency', help: 'x' }),
    ).toThrow(/must end in its unit/);
    expect(() =>
      defineHistogram(registry, { name: 'dso_agent_wait_seconds', help: 'x', buckets: [2, 1] }),
    ).toThrow(/increasing/);
    expect(() => defineCounter(registry, { name: 'dso_agent_runs_total', help: ' ' })).toThrow(
      /help/,
    );
  });

  it.each([
    'path',
    'value',
    'secret',
    'reference',
    'container',
    'container_id',
    'container_name',
    'name',
    'key',
    'id',
    'secret_path',
    'cache_keys',
    'request_id',
    'image_name',
    'password',
    'token_kind',
    'url',
  ])('refuses the label %s with a TypeError that says why', (label) => {
    const define = () =>
      defineCounter(createMetricsRegistry(), {
        name: 'dso_agent_events_total',
        help: 'x',
        labelNames: [label],
      });
    expect(define).toThrow(TypeError);
    expect(define).toThrow(/is refused: .* a small fixed set of values/);
  });

  it('accepts the usual low-cardinality labels', () => {
    const labels = ['provider', 'operation', 'outcome', 'code', 'scheme', 'type', 'cache'];
    for (const word of labels) expect(FORBIDDEN_LABEL_WORDS).not.toContain(word);
    defineCounter(createMetricsRegistry(), {
      name: 'dso_agent_events_total',
      help: 'x',
      labelNames: labels,
    });
  });

  it('rejects malformed label names, repeated labels and le on histograms', () => {
    const registry = createMetricsRegistry();
    const counter = (labelNames: string[]) => () =>
      defineCounter(registry, { name: 'dso_agent_x_total', help: 'x', labelNames });
    expect(counter(['Provider'])).toThrow(TypeError);
    expect(counter(['__provider'])).toThrow(TypeError);
    expect(counter(['provider', 'provider'])).toThrow(/twice/);
    expect(() =>
      defineHistogram(registry, { name: 'dso_agent_x_ms', help: 'x', labelNames: ['le'] }),
    ).toThrow(/le is the bucket label/);
  });

  it('checks default label names and adds them to every series', async () => {
    expect(() => createMetricsRegistry({ defaultLabels: { container_id: 'x' } })).toThrow(
      TypeError,
    );
    const registry = createMetricsRegistry({ defaultLabels: { instance: 'agent-1' } });
    defineCounter(registry, { name: 'dso_agent_runs_total', help: 'Runs.' }).inc();
    expect(await registry.metrics()).toContain('dso_agent_runs_total{instance="agent-1"} 1');
  });

  it('never exposes a registered value, even one misused as a label value', async () => {
    const redactor = createRedactor();
    redactor.register(CANARY);
    const registry = createMetricsRegistry({ redactor });
    const counter = defineCounter(registry, {
      name: 'dso_provider_resolves_total',
      help: 'Secrets resolved.',
      labelNames: ['provider', 'outcome'],
    });
    counter.inc({ provider: CANARY, outcome: `quoted "${CANARY}"` });
    counter.inc({ provider: 'vault', outcome: 'ok' });
    const text = await registry.metrics();
    expect(text).not.toContain(CANARY);
    expect(text).toContain(`provider="${REDACTED}"`);
    expect(text).toContain('dso_provider_resolves_total{provider="vault",outcome="ok"} 1');
    expect(await registry.getSingleMetricAsString('dso_provider_resolves_total')).not.toContain(
      CANARY,
    );
    const json = await registry.getMetricsAsJSON();
    expect(JSON.stringify(json)).not.toContain(CANARY);
    expect(json[0]!.values[0]!.labels.provider).toBe(REDACTED);
  });

  it('shows what a registry without a redactor would expose', async () => {
    // The counterpart of the test above: without the redactor the canary does come out, so
    // that test is not passing for some other reason.
    const registry = createMetricsRegistry();
    defineCounter(registry, {
      name: 'dso_provider_resolves_total',
      help: 'x',
      labelNames: ['provider'],
    }).inc({ provider: CANARY });
    expect(await registry.metrics()).toContain(CANARY);
  });

  it('registers process metrics under dso_process_ on the given registry, once', async () => {
    const registry = createMetricsRegistry();
    collectProcessMetrics(registry);
    const names = registry.getMetricsAsArray().map((metric) => metric.name);
    expect(names).toContain('dso_process_process_cpu_seconds_total');
    expect(names).toContain('dso_process_nodejs_eventloop_lag_seconds');
    expect(names.every((name) => name.startsWith('dso_process_'))).toBe(true);
    expect(await registry.metrics()).toContain('dso_process_process_resident_memory_bytes');
    expect(() => collectProcessMetrics(registry)).toThrow(/already registered/);
  });

  it('refuses something that is not a Registry', () => {
    expect(() =>
      defineCounter({} as Registry, { name: 'dso_agent_runs_total', help: 'x' }),
    ).toThrow(TypeError);
  });
});
