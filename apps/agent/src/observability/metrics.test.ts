import { createMetricsRegistry, METRIC_NAME_PATTERN, type MetricsRegistry } from '@dso/core';
import { ProviderError } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { AGENT_EVENT_TYPES, AGENT_METRIC_NAMES, MAX_PROVIDER_LABELS } from './metric-names.js';
import { type AgentMetrics, createAgentMetrics } from './metrics.js';

/** A metric's exposition lines (samples only), for exact comparisons. */
async function samples(registry: MetricsRegistry, name: string): Promise<string[]> {
  const text = await registry.getSingleMetricAsString(name);
  return text.split('\n').filter((line) => line !== '' && !line.startsWith('#'));
}

describe('createAgentMetrics', () => {
  it('defines every listed metric, and only those, each with a name core accepts', async () => {
    const registry = createMetricsRegistry();
    createAgentMetrics(registry);
    const defined = registry.getMetricsAsArray().map((metric) => metric.name);
    expect(defined.sort()).toEqual([...AGENT_METRIC_NAMES].sort());
    const text = await registry.metrics();
    for (const name of AGENT_METRIC_NAMES) {
      expect(name).toMatch(METRIC_NAME_PATTERN);
      expect(text).toContain(`# TYPE ${name} `);
      const type = /# TYPE (\S+) (\S+)/.exec(
        text.split('\n').find((line) => line.startsWith(`# TYPE ${name} `))!,
      )![2];
      if (type === 'counter') expect(name).toMatch(/_total$/);
      else expect(name).toMatch(/_(ms|seconds|bytes|ratio|items)$/);
    }
  });

  it('counts the connections each HTTP server cut short, by reason, from its stats at each scrape', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    const api = { evicted: 3, headersTimedOut: 1, busy: 0 };
    metrics.trackHttpServer('api', () => api);
    expect(await samples(registry, 'dso_http_connections_closed_total')).toEqual([
      'dso_http_connections_closed_total{server="api",reason="evicted"} 3',
      'dso_http_connections_closed_total{server="api",reason="headers_timeout"} 1',
      'dso_http_connections_closed_total{server="api",reason="busy"} 0',
    ]);
    api.busy = 2;
    expect(await samples(registry, 'dso_http_connections_closed_total')).toContain(
      'dso_http_connections_closed_total{server="api",reason="busy"} 2',
    );
  });

  it('says whether a core dump of the agent is possible', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.dumpable(true);
    expect(await samples(registry, 'dso_agent_dumpable_items')).toEqual([
      'dso_agent_dumpable_items 1',
    ]);
    metrics.dumpable(false);
    expect(await samples(registry, 'dso_agent_dumpable_items')).toEqual([
      'dso_agent_dumpable_items 0',
    ]);
  });

  it('can be created twice on one registry and records into the same series', async () => {
    const registry = createMetricsRegistry();
    createAgentMetrics(registry).eventsReconnecting();
    createAgentMetrics(registry).eventsReconnecting();
    expect(await samples(registry, 'dso_events_reconnects_total')).toEqual([
      'dso_events_reconnects_total 2',
    ]);
  });

  it('counts events by type, with every type present from the start', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.eventReceived('container.started');
    metrics.eventReceived('container.started');
    metrics.eventReceived('resync');
    const lines = await samples(registry, 'dso_events_received_total');
    expect(lines).toContain('dso_events_received_total{type="container.started"} 2');
    expect(lines).toContain('dso_events_received_total{type="resync"} 1');
    expect(lines).toContain('dso_events_received_total{type="container.died"} 0');
    expect(lines).toHaveLength(AGENT_EVENT_TYPES.length);
  });

  it('records injections, rotations and reconciliations with their durations', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.injection('exec', 'ok', 80);
    metrics.injection('host', 'error', 3);
    metrics.rotation('restart', 'rolled_back', 4_000);
    metrics.reconciliation('startup', 'ok', 1_200);
    metrics.managedContainers(7);

    const injections = await samples(registry, 'dso_injection_writes_total');
    expect(injections).toContain('dso_injection_writes_total{method="exec",outcome="ok"} 1');
    expect(injections).toContain('dso_injection_writes_total{method="host",outcome="error"} 1');
    expect(injections).toContain('dso_injection_writes_total{method="host",outcome="ok"} 0');
    expect(await samples(registry, 'dso_injection_duration_ms')).toContain(
      'dso_injection_duration_ms_bucket{le="100",method="exec",outcome="ok"} 1',
    );
    expect(await samples(registry, 'dso_rotation_runs_total')).toContain(
      'dso_rotation_runs_total{policy="restart",outcome="rolled_back"} 1',
    );
    expect(await samples(registry, 'dso_rotation_duration_ms')).toContain(
      'dso_rotation_duration_ms_sum{policy="restart"} 4000',
    );
    expect(await samples(registry, 'dso_reconcile_runs_total')).toContain(
      'dso_reconcile_runs_total{trigger="startup",outcome="ok"} 1',
    );
    expect(await samples(registry, 'dso_reconcile_duration_ms')).toContain(
      'dso_reconcile_duration_ms_count{trigger="startup"} 1',
    );
    expect(await samples(registry, 'dso_containers_managed_items')).toEqual([
      'dso_containers_managed_items 7',
    ]);
  });

  it('records provider calls by outcome, errors by provider code, and breaker states', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry, { providers: ['vault', 'local'] });
    metrics.providerCall('vault', 'resolve', 12);
    metrics.providerCall(
      'vault',
      'resolve',
      30_001,
      new ProviderError('DSO_PROVIDER_TIMEOUT', 'deadline passed', { provider: 'vault' }),
    );
    metrics.providerCall('vault', 'probe', 2, new Error('no code at all'));
    metrics.breakerState('vault', 'open');

    const calls = await samples(registry, 'dso_provider_calls_total');
    expect(calls).toContain(
      'dso_provider_calls_total{provider="vault",operation="resolve",outcome="ok"} 1',
    );
    expect(calls).toContain(
      'dso_provider_calls_total{provider="vault",operation="resolve",outcome="error"} 1',
    );
    expect(calls).toContain(
      'dso_provider_calls_total{provider="vault",operation="probe",outcome="error"} 1',
    );
    const errors = await samples(registry, 'dso_provider_errors_total');
    expect(errors).toEqual([
      'dso_provider_errors_total{provider="vault",code="DSO_PROVIDER_TIMEOUT"} 1',
      'dso_provider_errors_total{provider="vault",code="other"} 1',
    ]);
    expect(await samples(registry, 'dso_provider_call_duration_ms')).toContain(
      'dso_provider_call_duration_ms_count{provider="vault",operation="resolve"} 2',
    );
    const breakers = await samples(registry, 'dso_provider_breakers_items');
    expect(breakers).toContain('dso_provider_breakers_items{provider="vault",state="open"} 1');
    expect(breakers).toContain('dso_provider_breakers_items{provider="vault",state="closed"} 0');
    // Configured providers start out closed.
    expect(breakers).toContain('dso_provider_breakers_items{provider="local",state="closed"} 1');
  });

  it('counts a provider name outside the configured list as other', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry, { providers: ['vault'] });
    metrics.providerCall('my-app-container', 'resolve', 1);
    metrics.providerCall('/run/secrets/db', 'resolve', 1);
    const calls = await samples(registry, 'dso_provider_calls_total');
    expect(calls).toEqual([
      'dso_provider_calls_total{provider="other",operation="resolve",outcome="ok"} 2',
    ]);
  });

  it('without a list, takes names that follow the config rule, up to a bound', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.providerCall('app/db/password', 'resolve', 1);
    metrics.providerCall('dso://vault:app/db#password', 'resolve', 1);
    for (let i = 0; i < MAX_PROVIDER_LABELS + 10; i += 1) {
      metrics.providerCall(`p${i}`, 'resolve', 1);
    }
    const providers = new Set(
      (await samples(registry, 'dso_provider_calls_total')).map(
        (line) => /provider="([^"]*)"/.exec(line)![1],
      ),
    );
    expect(providers.size).toBe(MAX_PROVIDER_LABELS + 1);
    expect(providers).toContain('other');
    expect(providers).toContain('p0');
    expect(providers).not.toContain(`p${MAX_PROVIDER_LABELS}`);
  });

  it('takes only fixed label values: a path or a container name does not type-check, and is counted as other at run time', async () => {
    const registry = createMetricsRegistry();
    const metrics: AgentMetrics = createAgentMetrics(registry);
    // @ts-expect-error an event type is one of AGENT_EVENT_TYPES
    metrics.eventReceived('/var/run/secrets/db');
    // @ts-expect-error an outcome is ok or error
    metrics.injection('exec', 'my-app-container', 1);
    // @ts-expect-error a method is exec or host
    metrics.injection('/run/secrets', 'ok', 1);
    // @ts-expect-error an operation is one of PROVIDER_OPERATIONS
    metrics.providerCall('vault', 'app/db/password', 1);
    // @ts-expect-error a rotation policy is one of ROTATION_POLICIES
    metrics.rotation('web-1', 'ok', 1);
    // @ts-expect-error a trigger is one of RECONCILE_TRIGGERS
    metrics.reconciliation('4f1c2a9e0b7d', 'ok', 1);
    // @ts-expect-error a breaker state is closed, half_open or open
    metrics.breakerState('vault', 'dso://vault:app/db');

    const text = await registry.metrics();
    for (const foreign of ['/var/run', 'my-app-container', '/run/secrets', 'app/db', 'web-1']) {
      expect(text).not.toContain(foreign);
    }
    expect(text).not.toContain('4f1c2a9e0b7d');
    expect(text).toContain('dso_events_received_total{type="other"} 1');
  });

  it('samples the queue and the cache when scraped, turning their running counts into counters', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    const queue = { depth: 3, inFlight: 2, shed: 5, retried: 1, failed: 0 };
    const cache = {
      hits: 10,
      misses: 4,
      evictions: 2,
      expirations: 1,
      staleServed: 3,
      entries: 6,
      bytes: 4_096,
    };
    metrics.trackQueue(() => queue);
    metrics.trackCache(() => cache);
    const text = await registry.metrics();
    expect(text).toContain('dso_queue_depth_items 3');
    expect(text).toContain('dso_queue_inflight_items 2');
    expect(text).toContain('dso_queue_shed_total 5');
    expect(text).toContain('dso_queue_retries_total 1');
    expect(text).toContain('dso_cache_hits_total 10');
    expect(text).toContain('dso_cache_misses_total 4');
    expect(text).toContain('dso_cache_evictions_total{reason="capacity"} 2');
    expect(text).toContain('dso_cache_evictions_total{reason="expired"} 1');
    expect(text).toContain('dso_cache_stale_served_total 3');
    expect(text).toContain('dso_cache_entries_items 6');
    expect(text).toContain('dso_cache_size_bytes 4096');

    queue.depth = 0;
    queue.shed = 8;
    cache.hits = 15;
    const again = await registry.metrics();
    expect(again).toContain('dso_queue_depth_items 0');
    expect(again).toContain('dso_queue_shed_total 8');
    expect(again).toContain('dso_cache_hits_total 15');

    // A new source starts from its own zero: its counts add to the counters.
    metrics.trackQueue(() => ({ depth: 1, inFlight: 0, shed: 2, retried: 0, failed: 0 }));
    expect(await registry.metrics()).toContain('dso_queue_shed_total 10');
  });

  it('keeps the last values when a tracked source throws', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    let broken = false;
    metrics.trackQueue(() => {
      if (broken) throw new Error('queue closed');
      return { depth: 4, inFlight: 1, shed: 0, retried: 0, failed: 0 };
    });
    expect(await registry.metrics()).toContain('dso_queue_depth_items 4');
    broken = true;
    expect(await registry.metrics()).toContain('dso_queue_depth_items 4');
  });

  it('ignores durations that are not finite non-negative numbers', async () => {
    const registry = createMetricsRegistry();
    const metrics = createAgentMetrics(registry);
    metrics.injection('exec', 'ok', Number.NaN);
    metrics.injection('exec', 'ok', -1);
    metrics.managedContainers(Number.POSITIVE_INFINITY);
    expect(await samples(registry, 'dso_injection_writes_total')).toContain(
      'dso_injection_writes_total{method="exec",outcome="ok"} 2',
    );
    expect(await registry.getSingleMetricAsString('dso_injection_duration_ms')).not.toContain(
      '_count{method="exec"',
    );
    expect(await samples(registry, 'dso_containers_managed_items')).toEqual([
      'dso_containers_managed_items 0',
    ]);
  });
});
