import { getEventListeners } from 'node:events';
import { describe, expect, it } from 'vitest';
import { Flight, SingleFlight } from './single-flight.js';

/** How many 'abort' listeners a signal holds. */
const listenerCount = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;

/** Records whether a promise settled, and how, without awaiting it. */
function track<T>(promise: Promise<T>) {
  const state: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  promise.then(
    (value) => Object.assign(state, { settled: true, value }),
    (error: unknown) => Object.assign(state, { settled: true, error }),
  );
  return state;
}

/** Lets every pending promise callback run. */
const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('SingleFlight', () => {
  it('keeps one flight per key until it is retired', () => {
    const flights = new SingleFlight<string>();
    const flight = flights.start(new Flight('k'));
    expect(flights.get('k')).toBe(flight);
    expect([...flights.values()]).toEqual([flight]);
    flights.retire(flight);
    expect(flights.get('k')).toBeUndefined();
  });

  it('retires only the flight that is still the load of its key', () => {
    const flights = new SingleFlight<string>();
    const old = flights.start(new Flight('k'));
    flights.detach('k');
    const fresh = flights.start(new Flight('k'));
    flights.retire(old);
    expect(flights.get('k')).toBe(fresh);
  });

  it('gives every waiter its own result, made once each', async () => {
    const flights = new SingleFlight<{ n: number }>();
    const flight = flights.start(new Flight('k'));
    const a = flights.wait(flight, undefined);
    const b = flights.wait(flight, undefined);
    expect(flight.waiting).toBe(2);
    let made = 0;
    flight.resolveEach(() => ({ n: ++made }));
    const results = await Promise.all([a, b]);
    expect(results.map((r) => r.n).sort()).toEqual([1, 2]);
    expect(flight.waiting).toBe(0);
  });

  it('rejects every waiter with the error and removes their abort listeners', async () => {
    const flights = new SingleFlight<string>();
    const flight = flights.start(new Flight('k'));
    const controller = new AbortController();
    const a = flights.wait(flight, controller.signal);
    const b = flights.wait(flight, controller.signal);
    expect(listenerCount(controller.signal)).toBe(2);
    flight.rejectEach(new Error('load failed'));
    await expect(a).rejects.toThrow('load failed');
    await expect(b).rejects.toThrow('load failed');
    expect(listenerCount(controller.signal)).toBe(0);
  });

  it('lets one waiter leave on its signal while the load runs on for the others', async () => {
    const abandoned: string[] = [];
    const flights = new SingleFlight<string>({ onAbandon: (f) => abandoned.push(f.key) });
    const flight = flights.start(new Flight('k'));
    const leaving = new AbortController();
    const left = flights.wait(flight, leaving.signal);
    const staying = track(flights.wait(flight, undefined));
    leaving.abort(new Error('caller left'));
    await expect(left).rejects.toThrow('caller left');
    expect(flight.controller.signal.aborted).toBe(false);
    expect(flight.detached).toBe(false);
    expect(abandoned).toEqual([]);
    flight.resolveEach(() => 'value');
    await settle();
    expect(staying).toEqual({ settled: true, value: 'value' });
  });

  it('abandons the flight when its last waiter leaves: detached, dropped, its load aborted', async () => {
    const abandoned: Flight<string>[] = [];
    const flights = new SingleFlight<string>({ onAbandon: (f) => abandoned.push(f) });
    const flight = flights.start(new Flight('k'));
    const a = new AbortController();
    const b = new AbortController();
    const first = flights.wait(flight, a.signal);
    const second = flights.wait(flight, b.signal);
    a.abort(new Error('a'));
    b.abort(new Error('b'));
    await expect(first).rejects.toThrow('a');
    await expect(second).rejects.toThrow('b');
    expect(flight.controller.signal.aborted).toBe(true);
    expect(flight.detached).toBe(true);
    expect(flights.get('k')).toBeUndefined();
    expect(abandoned).toEqual([flight]);
  });

  it('rejects at once, and abandons, a waiter whose signal has already aborted', async () => {
    const flights = new SingleFlight<string>();
    const flight = flights.start(new Flight('k'));
    await expect(flights.wait(flight, AbortSignal.abort(new Error('gone')))).rejects.toThrow(
      'gone',
    );
    expect(flight.waiting).toBe(0);
    expect(flight.controller.signal.aborted).toBe(true);
    expect(flights.get('k')).toBeUndefined();
  });

  it('detaches a flight: no longer joinable, its waiters still answered', async () => {
    const flights = new SingleFlight<string>();
    const flight = flights.start(new Flight('k'));
    const waiting = flights.wait(flight, undefined);
    expect(flights.detach('k')).toBe(flight);
    expect(flights.detach('k')).toBeUndefined();
    expect(flight.detached).toBe(true);
    expect(flights.get('k')).toBeUndefined();
    expect(flight.controller.signal.aborted).toBe(false);
    flight.resolveEach(() => 'late');
    await expect(waiting).resolves.toBe('late');
  });

  it('closes every flight: detached, aborted with the reason, and returned with its waiters', async () => {
    const flights = new SingleFlight<string>();
    const one = flights.start(new Flight('a'));
    const two = flights.start(new Flight('b'));
    const waiting = flights.wait(one, undefined);
    const reason = new Error('closed');
    expect(flights.closeAll(reason)).toEqual([one, two]);
    expect([...flights.values()]).toEqual([]);
    for (const flight of [one, two]) {
      expect(flight.detached).toBe(true);
      expect(flight.controller.signal.reason).toBe(reason);
    }
    expect(one.waiting).toBe(1);
    one.rejectEach(reason);
    await expect(waiting).rejects.toBe(reason);
  });
});

describe('Flight.takeWaiters', () => {
  it('takes the waiters off so no later result reaches them, and rejects them when told', async () => {
    const flights = new SingleFlight<string>();
    const flight = flights.start(new Flight('k'));
    const controller = new AbortController();
    const waiting = track(flights.wait(flight, controller.signal));
    const reject = flight.takeWaiters();
    expect(flight.waiting).toBe(0);
    flight.resolveEach(() => 'too late');
    await settle();
    expect(waiting.settled).toBe(false);
    reject(new Error('closed'));
    await settle();
    expect(waiting).toMatchObject({ settled: true, error: new Error('closed') });
    expect(listenerCount(controller.signal)).toBe(0);
  });
});
