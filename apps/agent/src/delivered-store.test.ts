import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFakeClock, createLogger, createRedactor } from '@dso/core';
import { afterEach, describe, expect, it } from 'vitest';
import { createDeliveredStore, STATE_SAVE_DELAY_MS } from './delivered-store.js';

const logger = createLogger({ level: 'silent', redactor: createRedactor() });
const ID = 'a'.repeat(64);
const state = (digest: string) => ({
  digest: digest.repeat(64),
  envDigest: '',
  startedAt: '2026-12-01T10:00:00Z',
});
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function stored(path: string): Promise<Record<string, { digest: string }>> {
  return JSON.parse(await readFile(path, 'utf8')).containers;
}

describe('createDeliveredStore', () => {
  it('saves shortly after a change, on its clock, and keeps the state before a running rotation', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dso-store-'));
    dirs.push(dir);
    const statePath = join(dir, 'agent-state.json');
    const clock = createFakeClock();
    const store = createDeliveredStore({ statePath, clock, logger });
    store.set(ID, state('1'));
    expect(clock.pendingTimers).toBe(1);
    clock.advance(STATE_SAVE_DELAY_MS);
    await store.flush();
    expect((await stored(statePath))[ID]?.digest).toBe('1'.repeat(64));
    // A rotation runs: the file keeps what was there before it until it finishes.
    store.holdForRotation(ID, state('1'));
    store.set(ID, state('2'));
    await store.flush();
    expect((await stored(statePath))[ID]?.digest).toBe('1'.repeat(64));
    store.releaseRotation(ID);
    await store.flush();
    expect((await stored(statePath))[ID]?.digest).toBe('2'.repeat(64));
    // Reloaded by the next agent.
    const next = createDeliveredStore({ statePath, clock, logger });
    await next.load();
    expect(next.get(ID)?.digest).toBe('2'.repeat(64));
  });

  it('wakes a waiter when the container gets its delivery, and lets it give up', async () => {
    const store = createDeliveredStore({ clock: createFakeClock(), logger });
    const waiting = store.waitFor(ID, new AbortController().signal);
    store.set(ID, state('1'));
    await expect(waiting).resolves.toBeUndefined();
    const controller = new AbortController();
    const abandoned = store.waitFor('b'.repeat(64), controller.signal);
    controller.abort(new Error('deadline'));
    await expect(abandoned).rejects.toThrow('deadline');
  });

  it('digests values with a key of its own: equal values equal, any change or split differs', () => {
    const store = createDeliveredStore({ clock: createFakeClock(), logger });
    const other = createDeliveredStore({ clock: createFakeClock(), logger });
    const bytes = (text: string) => new TextEncoder().encode(text);
    const digest = store.valuesDigestOf([bytes('ab'), bytes('c')]);
    expect(store.valuesDigestOf([bytes('ab'), bytes('c')])).toBe(digest);
    expect(store.valuesDigestOf([bytes('a'), bytes('bc')])).not.toBe(digest);
    expect(store.valuesDigestOf([bytes('ab'), bytes('d')])).not.toBe(digest);
    // Another store (another agent run) has another key: nothing to compare across processes.
    expect(other.valuesDigestOf([bytes('ab'), bytes('c')])).not.toBe(digest);
  });
});
