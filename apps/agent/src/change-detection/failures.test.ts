import { ProviderError } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { noteFailure, noteRecovery } from './failures.js';
import { createKeyState, createProviderState, type KeyState } from './state.js';

const INTERVAL = 1_000;

/** Secrets of one provider that probes, checked every second. */
function keysOf(...paths: string[]): KeyState[] {
  const state = createProviderState(
    'store',
    {
      name: 'store',
      capabilities: { list: false, watch: false, probe: true, health: false },
      resolve: async () => {
        throw new Error('not called');
      },
      probe: async () => ({ version: '1' }),
      close: async () => {},
    },
    INTERVAL,
    8,
  );
  return paths.map((path) => {
    const key = createKeyState(state, path, '1');
    state.keys.set(path, key);
    return key;
  });
}

const notFound = new ProviderError('DSO_PROVIDER_NOT_FOUND', 'gone', { provider: 'store' });
const unavailable = new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'down', { provider: 'store' });

describe('noteFailure', () => {
  it('warns at the first failure of a secret and logs repeats of the same code at debug', () => {
    const [key] = keysOf('app/db');
    const levels = [0, 1_000, 2_000].map((now) => noteFailure(key!, 'probe', notFound, now).level);
    expect(levels).toEqual(['warn', 'debug', 'debug']);
    const denied = new ProviderError('DSO_PROVIDER_UNAUTHORIZED', 'no', { provider: 'store' });
    expect(noteFailure(key!, 'probe', denied, 3_000)).toMatchObject({
      level: 'warn',
      message: "provider refused a version check; check the provider's credentials",
    });
  });

  it('warns again after the secret was readable in between', () => {
    const [key] = keysOf('app/db');
    noteFailure(key!, 'probe', notFound, 0);
    expect(noteRecovery(key!)).toBe(true);
    expect(noteRecovery(key!)).toBe(false);
    expect(noteFailure(key!, 'probe', notFound, 1_000).level).toBe('warn');
  });

  it('warns once an interval for an outage across all of the provider secrets', () => {
    const [a, b, c] = keysOf('a', 'b', 'c');
    const level = (key: KeyState, now: number) => noteFailure(key, 'probe', unavailable, now).level;
    expect([level(a!, 0), level(b!, 100), level(c!, 200)]).toEqual(['warn', 'debug', 'debug']);
    expect(level(a!, INTERVAL - 1)).toBe('debug');
    expect(level(b!, INTERVAL)).toBe('warn');
    // An outage is not the secret's own failure: a success afterwards has nothing to report.
    expect(noteRecovery(a!)).toBe(false);
  });

  it('logs the code and the reference, never the message or cause, and calls a bare error internal', () => {
    const [key] = keysOf('app/db');
    const entry = noteFailure(key!, 'resolve', new Error('backend quoted s3cr3t'), 0);
    expect(entry).toEqual({
      level: 'warn',
      fields: {
        reference: 'store:app/db',
        operation: 'resolve',
        code: 'DSO_PROVIDER_INTERNAL',
        retryable: false,
      },
      message: 'secret version check failed; tried again next interval',
    });
    expect(JSON.stringify(entry)).not.toContain('s3cr3t');
  });
});
