import { createFakeClock, createLogger, createRedactor } from '@dso/core';
import type { ContainerDetails } from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { describe, expect, it } from 'vitest';
import { createReconciler } from './reconciler.js';

const logger = createLogger({ level: 'silent', redactor: createRedactor() });
const managed = (id: string, running = true): ContainerDetails => ({
  id,
  name: id,
  labels: { 'dso.enable': 'true' },
  running,
  state: running ? 'running' : 'exited',
  startedAt: '2026-12-01T10:00:00Z',
  user: '',
  tmpfs: [],
  binds: [],
  volumes: [],
  image: 'x',
});

describe('createReconciler', () => {
  it('queues every running managed container and prunes the rest, then again each interval', async () => {
    const clock = createFakeClock();
    const fake = createFakeRuntime({ containers: [managed('c1'), managed('c2', false)] });
    const queued: string[] = [];
    const pruned: string[][] = [];
    const existing: Array<[string, string]>[] = [];
    const unmanaged: string[] = [];
    const reconciler = createReconciler({
      runtime: fake.runtime,
      enqueue: (id, trigger) => queued.push(`${id} ${trigger}`),
      prune: (running, all) => {
        pruned.push([...running]);
        existing.push([...all]);
      },
      unmanaged: (id) => unmanaged.push(id),
      intervalMs: 1_000,
      clock,
      logger,
    });
    const stopping = new AbortController();
    expect(await reconciler.reconcile('startup', stopping.signal)).toBe(1);
    expect(queued).toEqual(['c1 startup']);
    expect(pruned).toEqual([['c1']]);
    // Stopped ones exist (status keeps them, exited), and are not queued.
    expect(existing).toEqual([
      [
        ['c1', 'running'],
        ['c2', 'exited'],
      ],
    ]);
    // At start-up the running containers without dso.enable=true are looked at: none here.
    expect(unmanaged).toEqual([]);
    reconciler.startPeriodic(stopping.signal);
    clock.advance(999);
    await expect.poll(() => queued.length).toBe(1);
    clock.advance(1);
    await expect.poll(() => queued).toEqual(['c1 startup', 'c1 periodic']);
    clock.advance(1_000);
    await expect.poll(() => queued.length).toBe(3);
    stopping.abort();
    expect(clock.pendingTimers).toBe(0);
  });

  it('looks at running unmanaged containers at start-up and after a resync, not periodically', async () => {
    const plain = { ...managed('p1'), labels: { 'dso.enabel': 'true' } };
    const fake = createFakeRuntime({ containers: [managed('c1'), plain] });
    const unmanaged: string[] = [];
    const reconciler = createReconciler({
      runtime: fake.runtime,
      enqueue: () => {},
      prune: () => {},
      unmanaged: (id, name, labels) => unmanaged.push(`${id} ${name} ${Object.keys(labels)}`),
      intervalMs: 1_000,
      clock: createFakeClock(),
      logger,
    });
    const signal = new AbortController().signal;
    await reconciler.reconcile('startup', signal);
    expect(unmanaged).toEqual(['p1 p1 dso.enabel']);
    await reconciler.reconcile('periodic', signal);
    expect(unmanaged).toHaveLength(1);
    await reconciler.reconcile('resync', signal);
    expect(unmanaged).toHaveLength(2);
  });
});
