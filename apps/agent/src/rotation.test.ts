import {
  createFakeClock,
  createLogger,
  createRedactor,
  type ManagedSpec,
  parseManagedLabels,
} from '@dso/core';
import type { ContainerDetails } from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from './agent-types.js';
import { createDeliveredStore } from './delivered-store.js';
import { createAuditSink, createEventBus } from './reporting.js';
import { createRotations, policyChain, rotationSettings } from './rotation.js';

const specOf = (labels: Record<string, string>) =>
  parseManagedLabels({
    'dso.enable': 'true',
    'dso.file.db': 'dsofile://app/db',
    ...labels,
  }) as ManagedSpec;

describe('policyChain', () => {
  const defaults = rotationSettings();

  it('is the policy alone without an escalation limit', () => {
    expect(policyChain(specOf({ 'dso.rotate': 'signal' }), false, defaults)).toEqual(['signal']);
    expect(policyChain(specOf({}), false, defaults)).toEqual(['files']);
  });

  it('climbs to the container’s limit, skipping hook without a hook command', () => {
    const spec = specOf({ 'dso.rotate': 'signal', 'dso.rotate.escalate': 'replace' });
    expect(policyChain(spec, false, defaults)).toEqual(['signal', 'restart', 'replace']);
    const hooked: ManagedSpec = {
      ...spec,
      rotation: { policy: 'signal', escalateTo: 'restart', hook: ['reload'] },
    };
    expect(policyChain(hooked, false, defaults)).toEqual(['signal', 'hook', 'restart']);
  });

  it('uses the configured default policy and limit, the label winning', () => {
    const settings = rotationSettings({ defaultPolicy: 'signal', escalateTo: 'restart' });
    expect(policyChain(specOf({}), false, settings)).toEqual(['signal', 'restart']);
    const label = specOf({ 'dso.rotate': 'restart', 'dso.rotate.escalate': 'replace' });
    expect(policyChain(label, false, settings)).toEqual(['restart', 'replace']);
  });

  it('always replaces for a new dso:// value', () => {
    expect(policyChain(specOf({ 'dso.rotate': 'signal' }), true, rotationSettings())).toEqual([
      'replace',
    ]);
  });
});

function setup(ids: string[], settings = rotationSettings({ jitterMs: 1_000, maxInFlight: 1 })) {
  const clock = createFakeClock();
  const logger = createLogger({ level: 'silent', redactor: createRedactor() });
  const containers = ids.map(
    (id): ContainerDetails => ({
      id,
      name: id,
      labels: {},
      running: true,
      state: 'running',
      startedAt: '2026-12-01T10:00:00Z',
      user: '',
      tmpfs: ['/run/secrets'],
      binds: [],
      volumes: [],
      image: 'x',
    }),
  );
  const fake = createFakeRuntime({ containers });
  const bus = createEventBus();
  const events: AgentEvent[] = [];
  bus.subscribe((event) => events.push(event));
  const rotations = createRotations({
    runtime: fake.runtime,
    secrets: { resolveEach: async () => [] },
    store: createDeliveredStore({ clock, logger }),
    settings,
    requestDelivery: () => {},
    onReplaced: () => {},
    logger,
    audit: createAuditSink(undefined, logger),
    bus,
    clock,
    random: () => 0.5,
  });
  return { clock, fake, rotations, events };
}

/** Lets pending promise callbacks run. */
const settle = async () => {
  for (let i = 0; i < 10; i += 1) await new Promise<void>((resolve) => setImmediate(resolve));
};

describe('createRotations', () => {
  it('waits its jitter on the clock, then acts', async () => {
    const { clock, fake, rotations } = setup(['c1']);
    rotations.start('c1', specOf({ 'dso.rotate': 'signal' }), [], false, undefined);
    await settle();
    clock.advance(499);
    await settle();
    expect(fake.actions).toEqual([]);
    clock.advance(1);
    await settle();
    expect(fake.actions).toEqual(['signal c1 SIGHUP']);
    await rotations.close(0);
  });

  it('runs at most maxInFlight actions at once', async () => {
    const { clock, fake, rotations } = setup(['c1', 'c2']);
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const restart = fake.runtime.restartContainer;
    fake.runtime.restartContainer = async (id, options) => {
      await held;
      return restart(id, options);
    };
    const spec = specOf({ 'dso.rotate': 'restart' });
    rotations.start('c1', spec, [], false, undefined);
    rotations.start('c2', spec, [], false, undefined);
    clock.advance(500);
    await settle();
    expect(fake.actions).toEqual([]); // c1 holds the only turn inside restartContainer
    release();
    await settle();
    expect(fake.actions).toEqual(['restart c1', 'restart c2']);
    await rotations.close(0);
  });

  it('escalates after a failed action and reports each step', async () => {
    const { clock, fake, rotations, events } = setup(['c1']);
    fake.failing.add('signal');
    rotations.start(
      'c1',
      specOf({ 'dso.rotate': 'signal', 'dso.rotate.escalate': 'restart' }),
      [],
      false,
      undefined,
    );
    clock.advance(500);
    await settle();
    expect(fake.actions).toEqual(['signal c1 SIGHUP', 'restart c1']);
    expect(events.map((event) => `${event.type} ${'policy' in event ? event.policy : ''}`)).toEqual(
      ['rotation-failed signal', 'rotated restart'],
    );
    await rotations.close(0);
  });

  it('starts no second rotation for a container while one runs', async () => {
    const { clock, fake, rotations } = setup(['c1']);
    const spec = specOf({ 'dso.rotate': 'signal' });
    rotations.start('c1', spec, [], false, undefined);
    rotations.start('c1', spec, [], false, undefined);
    expect(rotations.size).toBe(1);
    clock.advance(500);
    await settle();
    expect(fake.actions).toEqual(['signal c1 SIGHUP']);
    await rotations.close(0);
  });

  it('aborts a rotation still waiting when closed with no grace left', async () => {
    const { clock, fake, rotations } = setup(['c1']);
    rotations.start('c1', specOf({ 'dso.rotate': 'signal' }), [], false, undefined);
    const closing = rotations.close(0);
    clock.advance(0); // the grace period, on the rotations' clock
    await closing;
    expect(rotations.size).toBe(0);
    expect(fake.actions).toEqual([]);
  });
});
