import {
  createFakeClock,
  createLogger,
  createMemoryCache,
  createRedactor,
  isRetryable,
  type ManagedSpec,
} from '@dso/core';
import type { ContainerDetails } from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { type SecretProvider, SecretValue } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import type { ContainerStatus } from './agent-types.js';
import { createDeliveredStore } from './delivered-store.js';
import { createDelivery, digestOf, envDigestOf, rotationNeeded } from './delivery.js';
import { createHostFolders } from './host-folders.js';
import { createOutcomes } from './outcomes.js';
import { createAuditSink, createEventBus } from './reporting.js';
import { createSecretResolver } from './secrets.js';

const CANARY = 'canary-delivery-51c0';
const RUN = '2026-12-01T10:00:00.000000000Z';

function container(overrides: Partial<ContainerDetails> = {}): ContainerDetails {
  return {
    id: 'c1',
    name: 'c1',
    labels: { 'dso.enable': 'true', 'dso.file.db': 'dsofile://app/db' },
    running: true,
    state: 'running',
    startedAt: RUN,
    user: '',
    tmpfs: ['/run/secrets'],
    binds: [],
    volumes: [],
    image: 'x',
    ...overrides,
  };
}

/** One delivery function over the fake engine, with what a test inspects. */
function setup(details: ContainerDetails) {
  const clock = createFakeClock();
  const redactor = createRedactor();
  const logger = createLogger({ level: 'silent', redactor });
  const fake = createFakeRuntime({ containers: [details] });
  const provider: SecretProvider & { onResolve: () => void } = {
    name: 'local',
    capabilities: { list: false, watch: false, probe: false, health: false },
    onResolve: () => {},
    async resolve() {
      provider.onResolve();
      return { value: SecretValue.fromText(CANARY), version: '1' };
    },
    async close() {},
  };
  const secrets = createSecretResolver({
    providers: new Map([['local', provider]]),
    defaultProvider: 'local',
    cache: createMemoryCache({ clock }),
    redactor,
    logger,
    clock,
    maxStalenessMs: new Map(),
  });
  const store = createDeliveredStore({ clock, logger });
  const statuses = new Map<string, ContainerStatus>();
  const rotated: string[] = [];
  const deliver = createDelivery({
    runtime: fake.runtime,
    secrets,
    hostFolders: createHostFolders({ runtime: fake.runtime, logger, minAgeMs: 60_000 }),
    store,
    consumption: { record: () => {} },
    rotations: { start: (id, _spec, _secrets, envChanged) => rotated.push(`${id} ${envChanged}`) },
    outcomes: createOutcomes({
      statuses,
      bus: createEventBus(),
      audit: createAuditSink(undefined, logger),
      providerOf: () => 'local',
      clock,
    }),
    onDelivered: () => {},
    logger,
  });
  return { deliver, fake, store, statuses, rotated, provider };
}

const signal = new AbortController().signal;

describe('createDelivery: what is retried', () => {
  it('throws (so the queue retries) when the engine fails for a reason that may pass', async () => {
    const { deliver, fake, statuses } = setup(container());
    fake.failing.add('write');
    await expect(deliver('c1', 'started', signal, 1)).rejects.toMatchObject({
      code: 'DSO_DOCKER_ENGINE_ERROR',
    });
    expect(statuses.get('c1')?.lastAction).toMatchObject({ outcome: 'failed' });
  });

  it('reports and throws, not retryable, when the failure waits for a change (no tmpfs at the target)', async () => {
    const { deliver, fake, statuses } = setup(container({ tmpfs: [] }));
    const failure = await deliver('c1', 'started', signal, 1).catch((error: unknown) => error);
    // The queue asks the error: it gives up at once, with no retry on a timer.
    expect(failure).toMatchObject({ code: 'DSO_DOCKER_TARGET_NOT_TMPFS' });
    expect(isRetryable(failure)).toBe(false);
    expect(fake.writes).toEqual([]);
    expect(statuses.get('c1')?.lastAction).toMatchObject({
      outcome: 'failed',
      code: 'DSO_DOCKER_TARGET_NOT_TMPFS',
    });
  });
});

describe('createDelivery: engine slots', () => {
  it('resolves the secrets outside its engine slot, and writes once back in it', async () => {
    const { deliver, fake, provider } = setup(container());
    const steps: string[] = [];
    let outsideSlot = false;
    provider.onResolve = () => steps.push(outsideSlot ? 'resolve outside' : 'resolve in slot');
    await deliver('c1', 'started', signal, 1, async (work) => {
      outsideSlot = true;
      try {
        return await work();
      } finally {
        outsideSlot = false;
        steps.push(`back in slot, ${fake.writes.length} written`);
      }
    });
    expect(steps).toEqual(['resolve outside', 'back in slot, 0 written']);
    expect(fake.writes.map((write) => write.contents)).toEqual([[CANARY]]);
  });
});

describe('createDelivery: idempotence and rotation', () => {
  it('writes on a start, has no second effect on a reconciliation of the same run, and hands a new version to rotation', async () => {
    const { deliver, fake, store, rotated } = setup(container());
    await deliver('c1', 'started', signal, 1);
    expect(fake.writes.map((write) => write.contents)).toEqual([[CANARY]]);
    await deliver('c1', 'periodic', signal, 1);
    expect(fake.writes).toHaveLength(1);
    expect(rotated).toEqual([]);
    // What was delivered before differs (an older version): written, and rotated.
    const current = store.get('c1');
    store.set('c1', { ...current!, digest: '0'.repeat(64) });
    await deliver('c1', 'periodic', signal, 1);
    expect(fake.writes).toHaveLength(2);
    expect(rotated).toEqual(['c1 false']);
  });
});

describe('rotationNeeded', () => {
  const state = (digest: string, envDigest = 'e', startedAt = RUN) => ({
    digest,
    envDigest,
    startedAt,
  });
  const facts = {
    envUnknown: false,
    createdVersions: [] as Array<string | undefined>,
    envVersions: [] as Array<string | undefined>,
  };

  it('does not rotate a first delivery, a new run, or the same versions', () => {
    expect(rotationNeeded({ ...facts, previous: undefined, current: state('a') }).rotate).toBe(
      false,
    );
    const newRun = state('b', 'e', '2026-12-01T11:00:00Z');
    expect(rotationNeeded({ ...facts, previous: state('a'), current: newRun }).rotate).toBe(false);
    expect(rotationNeeded({ ...facts, previous: state('a'), current: state('a') }).rotate).toBe(
      false,
    );
  });

  it('rotates the same run with new file versions, and replaces for a new dso:// version', () => {
    expect(rotationNeeded({ ...facts, previous: state('a'), current: state('b') })).toEqual({
      rotate: true,
      envChanged: false,
    });
    expect(rotationNeeded({ ...facts, previous: state('a'), current: state('a', 'f') })).toEqual({
      rotate: true,
      envChanged: true,
    });
  });

  it('replaces once a container created with an older dso:// version, unless versions are unknown', () => {
    const stale = { ...facts, createdVersions: ['1'], envVersions: ['2'] };
    expect(rotationNeeded({ ...stale, previous: undefined, current: state('a') }).envChanged).toBe(
      true,
    );
    // Already seen with these versions: not again.
    expect(rotationNeeded({ ...stale, previous: state('a'), current: state('a') }).rotate).toBe(
      false,
    );
    expect(
      rotationNeeded({ ...stale, envUnknown: true, previous: undefined, current: state('a') })
        .rotate,
    ).toBe(false);
  });
});

describe('digests', () => {
  const spec = { target: '/run/secrets', mode: 0o400, owner: undefined } as Pick<
    ManagedSpec,
    'target' | 'mode' | 'owner'
  >;
  const file = { name: 'db', reference: 'dsofile://app/db', provider: 'local', version: '1' };

  it('changes with a version, the target or the user, and never holds a value', () => {
    const base = digestOf(spec, [file], '');
    expect(digestOf(spec, [{ ...file, version: '2' }], '')).not.toBe(base);
    expect(digestOf({ ...spec, target: '/run/other' }, [file], '')).not.toBe(base);
    expect(digestOf(spec, [file], '1000:1000')).not.toBe(base);
    expect(digestOf(spec, [file], '')).toBe(base);
    expect(envDigestOf([{ name: 'A', version: '1' }])).not.toBe(
      envDigestOf([{ name: 'A', version: '2' }]),
    );
  });
});
