import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Deadline } from './deadline.js';

describe('Deadline', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('fires with cause timeout when the time passes', () => {
    const deadline = new Deadline({}, 1_000);
    vi.advanceTimersByTime(999);
    expect(deadline.signal.aborted).toBe(false);
    vi.advanceTimersByTime(1);
    expect(deadline.cause).toBe('timeout');
    expect(deadline.signal.aborted).toBe(true);
  });

  it('fires with cause caller or closed, whichever aborts first', () => {
    const caller = new AbortController();
    const closed = new AbortController();
    const deadline = new Deadline({ caller: caller.signal, closed: closed.signal }, 1_000);
    closed.abort();
    caller.abort();
    expect(deadline.cause).toBe('closed');
  });

  it('is already fired for an already aborted caller signal', () => {
    expect(new Deadline({ caller: AbortSignal.abort() }, 1_000).cause).toBe('caller');
  });

  it('stops timing after clearTimeout but still follows the caller', () => {
    const caller = new AbortController();
    const deadline = new Deadline({ caller: caller.signal }, 1_000);
    deadline.clearTimeout();
    vi.advanceTimersByTime(5_000);
    expect(deadline.signal.aborted).toBe(false);
    caller.abort();
    expect(deadline.cause).toBe('caller');
  });

  it('unlinks from the sources when disposed', () => {
    const caller = new AbortController();
    const deadline = new Deadline({ caller: caller.signal }, 1_000);
    deadline.dispose();
    caller.abort();
    vi.advanceTimersByTime(5_000);
    expect(deadline.signal.aborted).toBe(false);
  });
});
