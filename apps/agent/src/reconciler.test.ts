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
    const reconciler = createReconciler({
      runtime: fake.runtime,
      enqueue: (id, trigger) => queued.push(`${id} ${trigger}`),
      prune: (running) => pruned.push([...running]),
      intervalMs: 1_000,
      clock,
      logger,
    });
    const stopping = new AbortController();
    expect(await reconciler.reconcile('startup', stopping.signal)).toBe(1);
    expect(queued).toEqual(['c1 startup']);
    expect(pruned).toEqual([['c1']]);
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
});
