import {
  createFakeClock,
  createLogger,
  createRedactor,
  type ManagedSpec,
  parseManagedLabels,
} from '@dso/core';
import { type ContainerDetails, DockerRuntimeError, swarmTaskOf } from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { SecretValue } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import type { AgentEvent, ContainerStatus } from './agent-types.js';
import { createDeliveredStore } from './delivered-store.js';
import { createAuditSink, createEventBus } from './reporting.js';
import {
  createRotations,
  policyChain,
  type RotationContext,
  rotationSettings,
  taskPolicyUnknown,
  taskRestartMessage,
  taskRestartRefusal,
} from './rotation.js';

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

function setup(
  ids: string[],
  settings = rotationSettings({ jitterMs: 1_000, maxInFlight: 1 }),
  secrets: RotationContext['secrets'] = { resolveEach: async () => [] },
) {
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
  const store = createDeliveredStore({ clock, logger });
  const statuses = new Map<string, ContainerStatus>();
  const checks: string[] = [];
  const rotations = createRotations({
    runtime: fake.runtime,
    secrets,
    store,
    settings,
    requestDelivery: () => {},
    requestCheck: (id) => checks.push(id),
    statuses,
    onReplaced: () => {},
    logger,
    audit: createAuditSink(undefined, logger),
    bus,
    clock,
    random: () => 0.5,
  });
  return { clock, fake, rotations, events, store, statuses, checks };
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

  describe('a replacement for new dso:// values that did not happen', () => {
    const envSpec = () =>
      parseManagedLabels({
        'dso.enable': 'true',
        'dso.env.API_KEY': 'dso://app/api',
        'dso.env-version.API_KEY': '1',
      }) as ManagedSpec;
    const before = { digest: 'a'.repeat(64), envDigest: 'old', startedAt: 't0' };
    const exited = () =>
      new DockerRuntimeError('DSO_DOCKER_REPLACE_FAILED', 'the new container exited (code 1)', {
        stage: 'health',
        reason: 'exited',
        rollback: 'done',
      });

    function failingReplace() {
      const context = setup(['c1'], rotationSettings({ jitterMs: 0 }));
      const { fake, store, statuses } = context;
      let failures = 0;
      const replace = fake.runtime.replaceContainer;
      fake.runtime.replaceContainer = async (id, request) => {
        if (failures > 0) {
          failures -= 1;
          fake.actions.push(`replace ${id}`);
          throw exited();
        }
        return replace(id, request);
      };
      // What a check records before it starts the rotation: the new versions.
      store.set('c1', { ...before, envDigest: 'new' });
      statuses.set('c1', {
        id: 'c1',
        env: [{ name: 'API_KEY', reference: 'dso://app/api', provider: 'local', version: '2' }],
        lastAction: { trigger: 'changed', at: 0, outcome: 'delivered' },
      });
      return { ...context, failNext: (count: number) => (failures = count) };
    }

    it('is not recorded as delivered, and status shows it failed with what to do', async () => {
      const { clock, rotations, store, statuses, events, failNext } = failingReplace();
      failNext(1);
      rotations.start('c1', envSpec(), [], true, before);
      await settle();
      clock.advance(0);
      await settle();
      // The state keeps the environment the container runs, so every later check replaces again.
      expect(store.get('c1')?.envDigest).toBe('old');
      const status = statuses.get('c1');
      expect(status?.lastAction).toMatchObject({
        outcome: 'failed',
        code: 'DSO_DOCKER_REPLACE_FAILED',
      });
      expect(status?.env?.[0]?.version).toBe('1');
      const message = status?.lastAction.message ?? '';
      expect(message).toContain('API_KEY dso://app/api version 1');
      expect(message).toContain('exited at health');
      expect(message).toContain('cannot run twice at once');
      expect(message).toContain('dsofile://');
      expect(message).toContain('tried again in 23 s');
      expect(events.find((event) => event.type === 'rotation-failed')).toMatchObject({
        rolledBack: true,
        message,
      });
      await rotations.close(0);
    });

    it('is tried again with backoff until it happens, then no more', async () => {
      const { clock, rotations, checks, store, fake, failNext } = failingReplace();
      failNext(2);
      rotations.start('c1', envSpec(), [], true, before);
      await settle();
      clock.advance(0);
      await settle();
      // backoffDelay, equal jitter at random 0.5: 0.75 of 30 s, then of 60 s.
      clock.advance(22_499);
      expect(checks).toEqual([]);
      clock.advance(1);
      expect(checks).toEqual(['c1']);
      store.set('c1', { ...before, envDigest: 'new' }); // the check records the new versions again
      rotations.start('c1', envSpec(), [], true, before);
      await settle();
      clock.advance(0);
      await settle();
      clock.advance(44_999);
      expect(checks).toEqual(['c1']);
      clock.advance(1);
      expect(checks).toEqual(['c1', 'c1']);
      rotations.start('c1', envSpec(), [], true, before);
      await settle();
      clock.advance(0);
      await settle();
      expect(fake.actions).toEqual(['replace c1', 'replace c1', 'replace c1']);
      clock.advance(3_600_000);
      expect(checks).toEqual(['c1', 'c1']); // replaced: nothing more to retry
      await rotations.close(0);
    });

    it('waits for its retry when a periodic check finds it, keeping state and status truthful', async () => {
      const { clock, rotations, store, statuses, fake, failNext } = failingReplace();
      failNext(1);
      rotations.start('c1', envSpec(), [], true, before);
      await settle();
      clock.advance(0);
      await settle();
      // A periodic check records the new versions and reports its files, then asks again.
      store.set('c1', { ...before, envDigest: 'new' });
      rotations.start('c1', envSpec(), [], true, before, 'periodic');
      statuses.set('c1', {
        id: 'c1',
        env: [{ name: 'API_KEY', reference: 'dso://app/api', provider: 'local', version: '2' }],
        lastAction: { trigger: 'periodic', at: 1, outcome: 'delivered' },
      });
      await settle();
      expect(fake.actions).toEqual(['replace c1']); // not again before its backoff
      expect(store.get('c1')?.envDigest).toBe('old');
      expect(statuses.get('c1')?.lastAction.outcome).toBe('failed');
      expect(statuses.get('c1')?.env?.[0]?.version).toBe('1');
      // dso reconcile (api) does not wait.
      rotations.start('c1', envSpec(), [], true, before, 'api');
      await settle();
      clock.advance(0);
      await settle();
      expect(fake.actions).toEqual(['replace c1', 'replace c1']);
      await rotations.close(0);
    });

    it('drops the retry of a container that is gone', async () => {
      const { clock, rotations, checks, failNext } = failingReplace();
      failNext(1);
      rotations.start('c1', envSpec(), [], true, before);
      await settle();
      clock.advance(0);
      await settle();
      rotations.forget('c1');
      clock.advance(3_600_000);
      expect(checks).toEqual([]);
      await rotations.close(0);
    });
  });

  describe('new versions carrying the same values', () => {
    it('take no action when the files hold the same values as before', async () => {
      const { clock, fake, rotations, store, events } = setup(['c1']);
      const digest = store.valuesDigestOf([new TextEncoder().encode('same')]);
      const before = {
        digest: 'a'.repeat(64),
        envDigest: '',
        startedAt: 't0',
        valuesDigest: digest,
      };
      store.set('c1', { ...before, digest: 'b'.repeat(64) }); // new versions, same values
      rotations.start('c1', specOf({ 'dso.rotate': 'restart' }), [], false, before);
      expect(rotations.size).toBe(0);
      clock.advance(1_000);
      await settle();
      expect(fake.actions).toEqual([]);
      expect(events).toEqual([]);
      // Different values: the policy runs.
      store.set('c1', {
        ...before,
        digest: 'c'.repeat(64),
        valuesDigest: store.valuesDigestOf([new TextEncoder().encode('other')]),
      });
      rotations.start('c1', specOf({ 'dso.rotate': 'restart' }), [], false, before);
      clock.advance(1_000);
      await settle();
      expect(fake.actions).toEqual(['restart c1']);
      await rotations.close(0);
    });

    it('replace no container whose new dso:// version has the value it was created with', async () => {
      const values: Record<string, string> = { '1': 'same', '2': 'same' };
      const secrets: RotationContext['secrets'] = {
        resolveEach: async (entries) =>
          entries.map(({ name, reference }) => {
            const version = reference.version ?? '2';
            return {
              name,
              version,
              value: SecretValue.fromText(values[version] ?? ''),
              formatted: 'dso://app/api',
              provider: 'local',
              cacheHit: false,
            };
          }),
      };
      const { clock, fake, rotations } = setup(['c1'], rotationSettings({ jitterMs: 0 }), secrets);
      const spec = parseManagedLabels({
        'dso.enable': 'true',
        'dso.env.API_KEY': 'dso://app/api',
        'dso.env-version.API_KEY': '1',
      }) as ManagedSpec;
      rotations.start('c1', spec, [], true, undefined);
      await settle();
      clock.advance(0);
      await settle();
      expect(fake.actions).toEqual([]);
      values['2'] = 'different';
      rotations.start('c1', spec, [], true, undefined);
      await settle();
      clock.advance(0);
      await settle();
      expect(fake.actions).toEqual(['replace c1']);
      await rotations.close(0);
    });
  });
});

describe('dso.rotate=restart on a Swarm task', () => {
  const service = (condition: 'any' | 'on-failure' | 'none', maxAttempts = 0) => ({
    id: 'svc1',
    name: 'web',
    restart: { condition, delayMs: 5_000, maxAttempts },
  });
  const taskLabels = (slot: number, taskId: string) => ({
    'com.docker.swarm.service.id': 'svc1',
    'com.docker.swarm.service.name': 'web',
    'com.docker.swarm.task.id': taskId,
    'com.docker.swarm.task.name': `web.${slot}.${taskId}`,
  });
  const taskContainer = (id: string, slot: number, taskId: string): ContainerDetails => ({
    id,
    name: `web.${slot}.${taskId}`,
    labels: { 'dso.enable': 'true', ...taskLabels(slot, taskId) },
    running: true,
    state: 'running',
    startedAt: '2026-12-01T10:00:00Z',
    user: '',
    tmpfs: ['/run/secrets'],
    binds: [],
    volumes: [],
    image: 'x',
  });
  const secret = { reference: 'dsofile://app/db', provider: 'local', version: '2' };

  /** Two tasks of service `web` on this node (`a`, `b`); `services` as a manager knows them. */
  function taskSetup(
    services?: Record<string, ReturnType<typeof service>>,
    inspectSwarmService?: RotationContext['runtime']['inspectSwarmService'],
  ) {
    const clock = createFakeClock();
    const logger = createLogger({ level: 'silent', redactor: createRedactor() });
    const fake = createFakeRuntime({
      containers: [taskContainer('a', 1, 'ta'), taskContainer('b', 2, 'tb')],
      ...(services === undefined ? {} : { services }),
    });
    const bus = createEventBus();
    const events: AgentEvent[] = [];
    bus.subscribe((event) => events.push(event));
    const audits: Array<Record<string, unknown>> = [];
    const statuses = new Map<string, ContainerStatus>();
    for (const id of ['a', 'b']) {
      statuses.set(id, { id, lastAction: { trigger: 'changed', at: 0, outcome: 'delivered' } });
    }
    const rotations = createRotations({
      runtime:
        inspectSwarmService === undefined ? fake.runtime : { ...fake.runtime, inspectSwarmService },
      secrets: { resolveEach: async () => [] },
      store: createDeliveredStore({ clock, logger }),
      settings: rotationSettings({ jitterMs: 0, healthTimeoutMs: 10_000 }),
      requestDelivery: () => {},
      statuses,
      onReplaced: () => {},
      logger,
      audit: { record: (entry) => audits.push(entry as Record<string, unknown>) },
      bus,
      clock,
      random: () => 0,
    });
    /** What Swarm does after a stop: a new task in the same slot, running. */
    const replace = (id: string, slot: number, taskId: string) =>
      fake.start(taskContainer(id, slot, taskId));
    /** As the delivery starts it: the task read from the labels it just inspected. */
    const start = (id: string, spec = restartSpec()) =>
      rotations.start(id, spec, [secret], false, undefined, 'changed', taskOf(id));
    const taskOf = (id: string) => swarmTaskOf(fake.get(id)?.labels ?? {});
    return { clock, fake, rotations, events, audits, statuses, replace, start };
  }
  const restartSpec = () => specOf({ 'dso.rotate': 'restart' });

  it('stops the task (never restarts it) and names the task, its service and its replacement', async () => {
    const { clock, fake, rotations, events, audits, statuses, replace, start } = taskSetup({
      svc1: service('any'),
    });
    start('a');
    clock.advance(0);
    await settle();
    expect(fake.actions).toEqual(['stop a']);
    expect(fake.get('a')?.running).toBe(false);
    // Swarm's restart delay passes, then its replacement runs on this node.
    clock.advance(500);
    await settle();
    expect(events.some((event) => event.type === 'rotated')).toBe(false);
    replace('a2', 1, 'ta2');
    clock.advance(500);
    await settle();
    const message = 'stopped task web.1.ta of service web; Swarm replaces it (task web.1.ta2 runs)';
    expect(events.find((event) => event.type === 'rotated')).toMatchObject({
      containerId: 'a',
      policy: 'restart',
      message,
    });
    expect(audits).toEqual([
      expect.objectContaining({
        action: 'rotate',
        outcome: 'ok',
        policy: 'restart',
        containerId: 'a',
        containerName: 'web.1.ta',
      }),
    ]);
    expect(statuses.get('a')?.lastAction.message).toBe(message);
    expect(fake.actions).not.toContain('restart a');
    await rotations.close(0);
  });

  it('stops a service’s tasks one at a time: the next once the last one’s replacement runs', async () => {
    const { clock, fake, rotations, replace, start } = taskSetup({ svc1: service('any') });
    start('a');
    start('b');
    clock.advance(0);
    await settle();
    expect(fake.actions).toEqual(['stop a']);
    clock.advance(5_000);
    await settle();
    expect(fake.actions).toEqual(['stop a']); // b still serves while a's slot is empty
    replace('a2', 1, 'ta2');
    clock.advance(500);
    await settle();
    expect(fake.actions).toEqual(['stop a', 'stop b']);
    expect(fake.get('b')?.running).toBe(false);
    replace('b2', 2, 'tb2');
    clock.advance(500);
    await settle();
    expect(rotations.size).toBe(0);
    await rotations.close(0);
  });

  it('goes on after the restart delay plus healthTimeoutMs when no replacement runs on this node, and says so', async () => {
    // A worker node: the service's policy cannot be read, the stop goes ahead.
    const { clock, fake, rotations, events, start } = taskSetup();
    start('a');
    start('b');
    clock.advance(0);
    await settle();
    expect(fake.actions).toEqual(['stop a']);
    for (let waited = 0; waited < 15_000; waited += 500) {
      clock.advance(500);
      await settle();
    }
    expect(fake.actions).toEqual(['stop a', 'stop b']);
    const rotated = events.find((event) => event.type === 'rotated' && event.containerId === 'a');
    expect(rotated).toMatchObject({ policy: 'restart' });
    const message = rotated?.type === 'rotated' ? (rotated.message ?? '') : '';
    expect(message).toContain('stopped task web.1.ta of service web; Swarm replaces it');
    expect(message).toContain('no replacement ran on this node within 15 s');
    expect(message).toContain('this worker node cannot read it');
    // b's wait is cut short by the shutdown (its grace on the rotations' clock).
    const closing = rotations.close(0);
    clock.advance(0);
    await closing;
  });

  it.each(['on-failure', 'none'] as const)(
    'refuses to stop a task whose service restarts it only %s, with the fix',
    async (condition) => {
      const { clock, fake, rotations, events, audits, statuses, start } = taskSetup({
        svc1: service(condition),
      });
      start('a');
      clock.advance(0);
      await settle();
      expect(fake.actions).toEqual([]);
      expect(fake.get('a')?.running).toBe(true);
      const failed = events.find((event) => event.type === 'rotation-failed');
      expect(failed).toMatchObject({ code: 'DSO_AGENT_TASK_RESTART_REFUSED', policy: 'restart' });
      const message = failed?.type === 'rotation-failed' ? (failed.message ?? '') : '';
      expect(message).toContain(
        `task web.1.ta of Swarm service web (restart condition ${condition})`,
      );
      expect(message).toContain('docker service update --restart-condition any web');
      expect(statuses.get('a')?.lastAction).toMatchObject({
        outcome: 'failed',
        code: 'DSO_AGENT_TASK_RESTART_REFUSED',
        message,
      });
      expect(audits).toEqual([
        expect.objectContaining({
          outcome: 'refused',
          code: 'DSO_AGENT_TASK_RESTART_REFUSED',
          containerName: 'web.1.ta',
          reason: message.slice(0, 300),
        }),
      ]);
      await rotations.close(0);
    },
  );

  it('refuses dso.rotate=replace on a task and says what to use instead', async () => {
    const { clock, fake, rotations, events, statuses, start } = taskSetup();
    start('a', specOf({ 'dso.rotate': 'replace' }));
    clock.advance(0);
    await settle();
    expect(fake.actions).toEqual(['replace a']);
    expect(fake.get('a')?.running).toBe(true);
    const failed = events.find((event) => event.type === 'rotation-failed');
    expect(failed).toMatchObject({ code: 'DSO_DOCKER_REPLACE_FAILED', rolledBack: false });
    const message = failed?.type === 'rotation-failed' ? (failed.message ?? '') : '';
    expect(message).toContain('is a swarm task');
    expect(message).toContain('use dso.rotate=restart');
    expect(statuses.get('a')?.lastAction).toMatchObject({ outcome: 'failed', message });
    await rotations.close(0);
  });

  it('refuses to stop a task whose service sets --restart-max-attempts, with the fix first', async () => {
    const { clock, fake, rotations, events, audits, start } = taskSetup({
      svc1: service('any', 3),
    });
    start('a');
    clock.advance(0);
    await settle();
    expect(fake.actions).toEqual([]);
    expect(fake.get('a')?.running).toBe(true);
    const failed = events.find((event) => event.type === 'rotation-failed');
    expect(failed).toMatchObject({ code: 'DSO_AGENT_TASK_RESTART_REFUSED', policy: 'restart' });
    const message = failed?.type === 'rotation-failed' ? (failed.message ?? '') : '';
    expect(message).toContain(
      'task web.1.ta of Swarm service web (restart max attempts 3): run docker service update --restart-max-attempts 0 web',
    );
    expect(message).toContain('once they are used up');
    expect(audits).toEqual([expect.objectContaining({ outcome: 'refused', policy: 'restart' })]);
    await rotations.close(0);
  });

  it('fails the restart of a task, stopping and restarting nothing, when the service cannot be read', async () => {
    const timeout = new DockerRuntimeError(
      'DSO_DOCKER_TIMEOUT',
      'inspect swarm service svc1 took longer than 30000 ms at unix:///var/run/docker.sock',
    );
    const { clock, fake, rotations, events, statuses, start } = taskSetup(undefined, async () => {
      throw timeout;
    });
    start('a', specOf({ 'dso.rotate': 'restart', 'dso.rotate.escalate': 'replace' }));
    clock.advance(0);
    await settle();
    // Escalated to replace, which a task refuses too: nothing stopped, nothing restarted.
    expect(fake.actions).toEqual(['replace a']);
    expect(fake.get('a')?.running).toBe(true);
    const failed = events.filter((event) => event.type === 'rotation-failed');
    expect(failed[0]).toMatchObject({
      code: 'DSO_AGENT_TASK_RESTART_REFUSED',
      policy: 'restart',
    });
    const message = failed[0]?.type === 'rotation-failed' ? (failed[0].message ?? '') : '';
    expect(message).toBe(taskPolicyUnknown(swarmTaskOf(fake.get('a')?.labels ?? {})!, timeout));
    expect(message).toContain('run dso rotate once the engine answers');
    expect(message).toContain('DSO_DOCKER_TIMEOUT');
    expect(message).toContain('nothing was stopped');
    expect(failed[1]).toMatchObject({ code: 'DSO_DOCKER_REPLACE_FAILED', policy: 'replace' });
    expect(statuses.get('a')?.lastAction.outcome).toBe('failed');
    await rotations.close(0);
  });

  it('never restarts a task in place, even when no task was passed: the runtime refuses it', async () => {
    const { clock, fake, rotations, events } = taskSetup({ svc1: service('any') });
    rotations.start('a', restartSpec(), [secret], false, undefined);
    clock.advance(0);
    await settle();
    expect(fake.get('a')?.running).toBe(true);
    expect(fake.get('a')?.startedAt).toBe('2026-12-01T10:00:00Z');
    expect(fake.actions).not.toContain('stop a');
    const failed = events.find((event) => event.type === 'rotation-failed');
    expect(failed).toMatchObject({ code: 'DSO_DOCKER_RESTART_REFUSED', policy: 'restart' });
    const message = failed?.type === 'rotation-failed' ? (failed.message ?? '') : '';
    expect(message).toContain('is a Swarm task: stop it and let its service replace it');
    await rotations.close(0);
  });

  it('restarts a container that is no task as before', async () => {
    const { clock, fake, rotations } = setup(['c1'], rotationSettings({ jitterMs: 0 }));
    rotations.start('c1', restartSpec(), [], false, undefined);
    clock.advance(0);
    await settle();
    expect(fake.actions).toEqual(['restart c1']);
    await rotations.close(0);
  });
});

describe('taskRestartRefusal and taskRestartMessage', () => {
  const task = {
    taskId: 't1',
    taskName: 'web.1.t1',
    serviceId: 's',
    serviceName: 'web',
    slot: 'web.1',
  };
  const withCondition = (condition: 'any' | 'on-failure' | 'none') => ({
    id: 's',
    name: 'web',
    restart: { condition, delayMs: 5_000, maxAttempts: 0 },
  });

  it('lets a stop go ahead under condition any, and where the node cannot tell', () => {
    expect(taskRestartRefusal(task, withCondition('any'))).toBeUndefined();
    expect(taskRestartRefusal(task, undefined)).toBeUndefined();
    expect(taskRestartRefusal(task, withCondition('none'))).toContain('a replica short');
  });

  it('refuses a limit on restart attempts, and names both fixes when both are needed', () => {
    const limited = (condition: 'any' | 'on-failure', maxAttempts: number) => ({
      ...withCondition(condition),
      restart: { condition, delayMs: 5_000, maxAttempts },
    });
    expect(taskRestartRefusal(task, limited('any', 0))).toBeUndefined();
    expect(taskRestartRefusal(task, limited('any', 1))).toContain(
      '(restart max attempts 1): run docker service update --restart-max-attempts 0 web',
    );
    expect(taskRestartRefusal(task, limited('on-failure', 2))).toContain(
      '(restart condition on-failure, restart max attempts 2): run docker service update --restart-condition any --restart-max-attempts 0 web',
    );
  });

  it('names the replacement, or says why none was seen', () => {
    expect(
      taskRestartMessage(task, undefined, { ...task, taskId: 't2', taskName: 'web.1.t2' }, 1),
    ).toBe('stopped task web.1.t1 of service web; Swarm replaces it (task web.1.t2 runs)');
    const manager = taskRestartMessage(task, withCondition('any'), undefined, 65_000);
    expect(manager).toContain('within 65 s: Swarm may have placed it on another node)');
    expect(manager).not.toContain('worker');
  });
});
