import { describe, expect, it } from 'vitest';
import { createWorkQueue } from './work-queue.js';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

describe('createWorkQueue', () => {
  it('coalesces repeated adds of a waiting key into one run', async () => {
    const runs: string[] = [];
    const gate = deferred();
    const queue = createWorkQueue({
      concurrency: 1,
      worker: async (key) => {
        runs.push(key);
        if (key === 'a') await gate.promise;
      },
    });
    queue.add('a');
    queue.add('b');
    queue.add('b');
    queue.add('b');
    gate.resolve();
    await queue.idle();
    expect(runs).toEqual(['a', 'b']);
  });

  it('never runs one key twice at once, and reruns it once when added while running', async () => {
    let active = 0;
    let maxActive = 0;
    let runs = 0;
    const gate = deferred();
    const queue = createWorkQueue({
      concurrency: 4,
      worker: async () => {
        active += 1;
        maxActive = Math.max(maxActive, active);
        runs += 1;
        if (runs === 1) await gate.promise;
        active -= 1;
      },
    });
    queue.add('a');
    queue.add('a');
    queue.add('a');
    gate.resolve();
    await queue.idle();
    expect(maxActive).toBe(1);
    expect(runs).toBe(2);
  });

  it('runs at most `concurrency` keys at once', async () => {
    let active = 0;
    let maxActive = 0;
    const queue = createWorkQueue({
      concurrency: 2,
      worker: async () => {
        active += 1;
        maxActive = Math.max(maxActive, active);
        await Promise.resolve();
        active -= 1;
      },
    });
    for (const key of ['a', 'b', 'c', 'd', 'e']) queue.add(key);
    await queue.idle();
    expect(maxActive).toBe(2);
  });

  it('drops waiting work and takes no more after close', async () => {
    const runs: string[] = [];
    const gate = deferred();
    const queue = createWorkQueue({
      concurrency: 1,
      worker: async (key) => {
        runs.push(key);
        await gate.promise;
      },
    });
    queue.add('a');
    queue.add('b');
    const closing = queue.close(1_000);
    queue.add('c');
    gate.resolve();
    await closing;
    expect(runs).toEqual(['a']);
  });
});
