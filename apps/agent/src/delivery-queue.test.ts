import { createFakeClock, createLogger, createRedactor, DsoError } from '@dso/core';
import { describe, expect, it, vi } from 'vitest';
import type { DeliveryTrigger } from './agent-types.js';
import {
  createDeliveryQueue,
  gaveUpRetryDelayMs,
  mergeTriggers,
  retrySlots,
} from './delivery-queue.js';

const logger = createLogger({ level: 'silent', redactor: createRedactor() });

describe('mergeTriggers', () => {
  const triggers: DeliveryTrigger[] = [
    'started',
    'startup',
    'periodic',
    'resync',
    'api',
    'changed',
  ];

  it.each(triggers)('keeps a start coalesced with %s a start, in either order', (other) => {
    expect(mergeTriggers('started', other)).toBe('started');
    expect(mergeTriggers(other, 'started')).toBe('started');
  });

  it('lets the later trigger win between two that are not starts', () => {
    expect(mergeTriggers('periodic', 'changed')).toBe('changed');
    expect(mergeTriggers('changed', 'api')).toBe('api');
    expect(mergeTriggers('resync', 'periodic')).toBe('periodic');
  });
});

describe('gaveUpRetryDelayMs', () => {
  it('waits 30 s after the first give-up, doubling, at most 10 minutes', () => {
    expect([1, 2, 3, 4, 5, 6, 20].map(gaveUpRetryDelayMs)).toEqual([
      30_000, 60_000, 120_000, 240_000, 480_000, 600_000, 600_000,
    ]);
  });
});

describe('createDeliveryQueue', () => {
  it('delivers a start coalesced with a reconciliation as a start', async () => {
    const seen: DeliveryTrigger[] = [];
    let release!: () => void;
    const blocked = new Promise<void>((resolve) => {
      release = resolve;
    });
    const { queue } = createDeliveryQueue({
      deliver: async (id, trigger) => {
        seen.push(trigger);
        if (id === 'busy') await blocked;
      },
      concurrency: 1,
      clock: createFakeClock(),
      logger,
      stopping: new AbortController().signal,
    });
    queue.add('busy', 'periodic'); // holds the only worker
    queue.add('c1', 'started');
    queue.add('c1', 'periodic');
    release();
    await queue.idle();
    expect(seen).toEqual(['periodic', 'started']);
    await queue.close();
  });

  it('tries a container it gave up on again after the backoff, on its clock', async () => {
    const clock = createFakeClock();
    const triggers: DeliveryTrigger[] = [];
    let failing = true;
    const { queue } = createDeliveryQueue({
      deliver: async (_id, trigger) => {
        triggers.push(trigger);
        if (failing) throw new DsoError('DSO_TEST_DOWN', 'down', { retryable: true });
      },
      concurrency: 1,
      retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
      clock,
      logger,
      stopping: new AbortController().signal,
    });
    queue.add('c1', 'started');
    await queue.idle();
    expect(triggers).toEqual(['started']);
    failing = false;
    clock.advance(29_999);
    await queue.idle();
    expect(triggers).toEqual(['started']);
    clock.advance(1);
    await queue.idle();
    expect(triggers).toEqual(['started', 'resync']);
    await queue.close();
  });

  it('gives up at once on a failure that cannot pass, and tries it again on no timer', async () => {
    const clock = createFakeClock();
    const triggers: DeliveryTrigger[] = [];
    const { queue } = createDeliveryQueue({
      deliver: async (_id, trigger) => {
        triggers.push(trigger);
        throw new DsoError('DSO_TEST_NO_SHELL', 'the image has no shell');
      },
      concurrency: 1,
      retry: { maxAttempts: 5, baseDelayMs: 1, maxDelayMs: 1 },
      clock,
      logger,
      stopping: new AbortController().signal,
    });
    queue.add('c1', 'started');
    await queue.idle();
    clock.advance(1);
    await queue.idle();
    clock.advance(24 * 60 * 60_000);
    await queue.idle();
    expect(triggers).toEqual(['started']);
    expect(queue.stats()).toMatchObject({ failed: 1, retried: 0 });
    // Something changed (a start, a new version, dso reconcile): tried again.
    queue.add('c1', 'api');
    await queue.idle();
    expect(triggers).toEqual(['started', 'api']);
    await queue.close();
  });

  it('drops the timed re-try of a container once its failure cannot pass', async () => {
    const clock = createFakeClock();
    const triggers: DeliveryTrigger[] = [];
    let failure = new DsoError('DSO_TEST_DOWN', 'down', { retryable: true });
    const { queue } = createDeliveryQueue({
      deliver: async (_id, trigger) => {
        triggers.push(trigger);
        throw failure;
      },
      concurrency: 1,
      retry: { maxAttempts: 1 },
      clock,
      logger,
      stopping: new AbortController().signal,
    });
    queue.add('c1', 'started');
    await queue.idle(); // gave up: a re-try in 30 s
    failure = new DsoError('DSO_TEST_NO_SHELL', 'the image has no shell');
    queue.add('c1', 'api');
    await queue.idle(); // cannot pass: the re-try is dropped
    clock.advance(24 * 60 * 60_000);
    await queue.idle();
    expect(triggers).toEqual(['started', 'api']);
    await queue.close();
  });

  it('delivers to other containers while deliveries wait on a hung store outside their slots', async () => {
    const delivered: string[] = [];
    // A store that never answers: only the queue's close (its signal) ends the wait.
    const hung = (signal: AbortSignal) =>
      new Promise<never>((_, reject) => {
        signal.addEventListener('abort', () => reject(signal.reason), { once: true });
      });
    const { queue } = createDeliveryQueue({
      deliver: async (id, _trigger, signal, _attempt, outside) => {
        if (id.startsWith('hung')) await outside?.(() => hung(signal));
        delivered.push(id);
      },
      concurrency: 2,
      clock: createFakeClock(),
      logger,
      stopping: new AbortController().signal,
    });
    for (const id of ['hung-1', 'hung-2', 'hung-3', 'hung-4']) queue.add(id, 'started');
    const healthy = Array.from({ length: 100 }, (_, index) => `ok-${index}`);
    for (const id of healthy) queue.add(id, 'started');
    await vi.waitFor(() => expect(delivered).toHaveLength(100));
    expect(delivered).toEqual(healthy);
    expect(queue.stats()).toMatchObject({ inFlight: 4, outside: 4, depth: 0 });
    await queue.close({ graceMs: 0 });
  });

  it('leaves new containers engine slots while containers whose writes hang are retried', async () => {
    const clock = createFakeClock();
    const delivered: string[] = [];
    const hanging: Array<() => void> = [];
    const { queue } = createDeliveryQueue({
      // An exec that hangs until its deadline (here: until the test says), then times out.
      deliver: (id, _trigger, _signal, attempt) => {
        if (!id.startsWith('stuck')) {
          delivered.push(`${id}#${attempt}`);
          return Promise.resolve();
        }
        return new Promise<void>((_, reject) => {
          hanging.push(() =>
            reject(new DsoError('DSO_TEST_TIMEOUT', 'write timed out', { retryable: true })),
          );
        });
      },
      concurrency: 4,
      retry: { maxAttempts: 5, baseDelayMs: 10, maxDelayMs: 10, jitter: 'none' },
      clock,
      logger,
      stopping: new AbortController().signal,
    });
    for (const id of ['stuck-1', 'stuck-2', 'stuck-3', 'stuck-4']) queue.add(id, 'started');
    await vi.waitFor(() => expect(hanging).toHaveLength(4));
    // The first attempts hold every slot until their deadline: nothing could know sooner.
    for (const timeOut of hanging.splice(0)) timeOut();
    await vi.waitFor(() => expect(queue.stats().retrying).toBe(4));
    clock.advance(10);
    // Their retries hold two slots (retrySlots(4)); the other two serve new containers.
    await vi.waitFor(() => expect(hanging).toHaveLength(2));
    for (let index = 0; index < 10; index += 1) queue.add(`fresh-${index}`, 'started');
    await vi.waitFor(() => expect(delivered).toHaveLength(10));
    expect(hanging).toHaveLength(2);
    expect(retrySlots(4)).toBe(2);
    expect(retrySlots(1)).toBe(1);
    const closing = queue.close({ graceMs: 0 });
    for (const timeOut of hanging.splice(0)) timeOut();
    await closing;
  });
});
