import { describe, expect, it } from 'vitest';
import { createFakeClock, systemClock } from './clock.js';

describe('createFakeClock', () => {
  it('starts at 2025-01-01 by default, or where told, and stays put', () => {
    expect(createFakeClock().now()).toBe(Date.UTC(2025, 0, 1));
    const clock = createFakeClock({ now: 1_000 });
    expect(clock.now()).toBe(1_000);
    expect(clock.now()).toBe(1_000);
  });

  it('runs a timer only once time reaches its due time', () => {
    const clock = createFakeClock({ now: 0 });
    const fired: number[] = [];
    clock.setTimeout(() => fired.push(clock.now()), 100);
    clock.advance(99);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual([100]);
    clock.advance(1_000);
    expect(fired).toEqual([100]);
    expect(clock.now()).toBe(1_100);
  });

  it('runs due timers earliest first, ties in the order set, each at its due time', () => {
    const clock = createFakeClock({ now: 0 });
    const fired: string[] = [];
    clock.setTimeout(() => fired.push(`c@${clock.now()}`), 30);
    clock.setTimeout(() => fired.push(`a@${clock.now()}`), 10);
    clock.setTimeout(() => fired.push(`b1@${clock.now()}`), 20);
    clock.setTimeout(() => fired.push(`b2@${clock.now()}`), 20);
    clock.advance(25);
    expect(fired).toEqual(['a@10', 'b1@20', 'b2@20']);
    expect(clock.now()).toBe(25);
    expect(clock.pendingTimers).toBe(1);
  });

  it('runs timers set by a callback when they fall due within the same advance', () => {
    const clock = createFakeClock({ now: 0 });
    const fired: number[] = [];
    clock.setTimeout(() => {
      fired.push(clock.now());
      clock.setTimeout(() => fired.push(clock.now()), 5);
      clock.setTimeout(() => fired.push(clock.now()), 50);
    }, 10);
    clock.advance(20);
    expect(fired).toEqual([10, 15]);
    clock.advance(40);
    expect(fired).toEqual([10, 15, 60]);
  });

  it('treats a zero, negative or non-finite delay as due now, run by advance(0)', () => {
    const clock = createFakeClock({ now: 0 });
    let runs = 0;
    clock.setTimeout(() => runs++, 0);
    clock.setTimeout(() => runs++, -5);
    clock.setTimeout(() => runs++, Number.NaN);
    expect(runs).toBe(0);
    clock.advance(0);
    expect(runs).toBe(3);
  });

  it('never runs a cleared timer, and ignores clearing one twice', () => {
    const clock = createFakeClock({ now: 0 });
    let runs = 0;
    const timer = clock.setTimeout(() => runs++, 10);
    clock.setTimeout(() => runs++, 10);
    clock.clearTimeout(timer);
    clock.clearTimeout(timer);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(10);
    expect(runs).toBe(1);
    expect(clock.pendingTimers).toBe(0);
  });

  it('stops at a timer that throws and leaves the rest for the next advance', () => {
    const clock = createFakeClock({ now: 0 });
    const fired: number[] = [];
    clock.setTimeout(() => {
      throw new Error('boom');
    }, 10);
    clock.setTimeout(() => fired.push(clock.now()), 20);
    expect(() => clock.advance(30)).toThrow('boom');
    expect(clock.now()).toBe(10);
    clock.advance(20);
    expect(fired).toEqual([20]);
  });

  it('rejects a negative or non-finite advance with a RangeError', () => {
    const clock = createFakeClock();
    expect(() => clock.advance(-1)).toThrow(RangeError);
    expect(() => clock.advance(Number.POSITIVE_INFINITY)).toThrow(RangeError);
    expect(() => createFakeClock({ now: Number.NaN })).toThrow(RangeError);
  });
});

describe('systemClock', () => {
  it('reads epoch milliseconds that never decrease', () => {
    const first = systemClock.now();
    const second = systemClock.now();
    expect(Math.abs(first - Date.now())).toBeLessThan(1_000);
    expect(second).toBeGreaterThanOrEqual(first);
  });

  it('runs a timer and never one that was cleared', async () => {
    const order: string[] = [];
    const cleared = systemClock.setTimeout(() => order.push('cleared'), 0);
    systemClock.clearTimeout(cleared);
    await new Promise<void>((resolve) => {
      systemClock.setTimeout(() => {
        order.push('ran');
        resolve();
      }, 0);
    });
    expect(order).toEqual(['ran']);
  });
});
