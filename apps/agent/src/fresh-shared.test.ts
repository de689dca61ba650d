import { describe, expect, it } from 'vitest';
import { createFreshShared } from './fresh-shared.js';

/** A read whose calls are held until the test settles them, each answering what it began with. */
function heldReads() {
  let version = 0;
  const calls: Array<{
    began: number;
    signal: AbortSignal;
    resolve: () => void;
    reject: (error: Error) => void;
  }> = [];
  const read = (signal: AbortSignal) =>
    new Promise<number>((resolve, reject) => {
      const began = version;
      calls.push({ began, signal, resolve: () => resolve(began), reject });
    });
  return {
    read,
    calls,
    /** Something changes on the "engine": reads that begin from now on see it. */
    change() {
      version += 1;
      return version;
    },
  };
}

/** Lets every pending promise callback run. */
async function settled() {
  for (let i = 0; i < 10; i += 1) await Promise.resolve();
}

const never = new AbortController().signal;

describe('createFreshShared', () => {
  it('gives a lone caller its own read', async () => {
    const reads = heldReads();
    const fresh = createFreshShared(reads.read);
    const first = fresh(never);
    await settled();
    expect(reads.calls).toHaveLength(1);
    reads.calls[0]?.resolve();
    expect(await first).toBe(0);
    reads.change();
    const second = fresh(never);
    await settled();
    expect(reads.calls).toHaveLength(2);
    reads.calls[1]?.resolve();
    expect(await second).toBe(1);
  });

  it('shares one read among every caller that arrives while another is in flight', async () => {
    const reads = heldReads();
    const fresh = createFreshShared(reads.read);
    const first = fresh(never);
    await settled();
    const burst = Array.from({ length: 50 }, () => fresh(new AbortController().signal));
    await settled();
    // The 50 wait for one queued read, not started while the first is in flight.
    expect(reads.calls).toHaveLength(1);
    reads.calls[0]?.resolve();
    expect(await first).toBe(0);
    await settled();
    expect(reads.calls).toHaveLength(2);
    reads.calls[1]?.resolve();
    expect(await Promise.all(burst)).toEqual(Array.from({ length: 50 }, () => 0));
    expect(reads.calls).toHaveLength(2);
  });

  it('never gives a caller a read that began before it asked', async () => {
    const reads = heldReads();
    const fresh = createFreshShared(reads.read);
    const early = fresh(never);
    await settled();
    // The read in flight began before this change; a caller after it must see it.
    const changed = reads.change();
    const late = fresh(never);
    await settled();
    reads.calls[0]?.resolve();
    expect(await early).toBe(0);
    await settled();
    expect(reads.calls[1]?.began).toBe(changed);
    reads.calls[1]?.resolve();
    expect(await late).toBe(changed);
  });

  it('gives every caller of a failed read its error, and the next caller a new read', async () => {
    const reads = heldReads();
    const fresh = createFreshShared(reads.read);
    const first = fresh(never);
    await settled();
    const sharers = [fresh(never), fresh(never)];
    reads.calls[0]?.resolve();
    await first;
    await settled();
    reads.calls[1]?.reject(new Error('engine gone'));
    for (const sharer of sharers) await expect(sharer).rejects.toThrow('engine gone');
    const next = fresh(never);
    await settled();
    expect(reads.calls).toHaveLength(3);
    reads.calls[2]?.resolve();
    expect(await next).toBe(0);
  });

  it('stops waiting when its signal aborts, and aborts the read only once nobody waits', async () => {
    const reads = heldReads();
    const fresh = createFreshShared(reads.read);
    const one = new AbortController();
    const two = new AbortController();
    const first = fresh(one.signal);
    const second = fresh(two.signal);
    await settled();
    // The first caller started a read; the second waits for the next one (queued).
    one.abort(new Error('caller one gone'));
    await expect(first).rejects.toThrow('caller one gone');
    expect(reads.calls[0]?.signal.aborted).toBe(true);
    await settled();
    // The queued read, which the second waits for, starts once the aborted one settles.
    reads.calls[0]?.reject(new Error('aborted'));
    await settled();
    expect(reads.calls).toHaveLength(2);
    expect(reads.calls[1]?.signal.aborted).toBe(false);
    reads.calls[1]?.resolve();
    expect(await second).toBe(0);
  });

  it('never starts a queued read whose callers all left', async () => {
    const reads = heldReads();
    const fresh = createFreshShared(reads.read);
    const first = fresh(never);
    await settled();
    const gone = new AbortController();
    const queued = fresh(gone.signal);
    gone.abort(new Error('left'));
    await expect(queued).rejects.toThrow('left');
    reads.calls[0]?.resolve();
    await first;
    await settled();
    expect(reads.calls).toHaveLength(1);
  });

  it('rejects at once for a signal already aborted, starting no read', async () => {
    const reads = heldReads();
    const fresh = createFreshShared(reads.read);
    await expect(fresh(AbortSignal.abort(new Error('stopped')))).rejects.toThrow('stopped');
    expect(reads.calls).toHaveLength(0);
  });
});
