import { createHmac, randomBytes } from 'node:crypto';
import { onAbort } from '@dso/async';
import type { Clock, ClockTimer, Logger } from '@dso/core';
import { type DeliveredState, loadDeliveredState, saveDeliveredState } from './delivered-state.js';

/** How long changes are gathered before the state file is written. */
export const STATE_SAVE_DELAY_MS = 500;

/** What the delivered-state store needs from the agent. */
export interface DeliveredStoreContext {
  /** The state file; absent: kept in memory only. */
  statePath?: string | undefined;
  clock: Clock;
  logger: Logger;
}

/**
 * What was last delivered to each container's current run (digests and the run's start: no
 * value), kept across restarts in the state file, so that a version that changed while the
 * agent was down is rotated at its next start and an interrupted rotation is redone.
 */
export interface DeliveredStore {
  get(containerId: string): DeliveredState | undefined;
  /** Records a delivery (stamped with the time unless it has one); the file follows shortly. */
  set(containerId: string, state: DeliveredState): void;
  /** Forgets a container (gone, or replaced); the file follows shortly. */
  delete(containerId: string): void;
  ids(): string[];
  /**
   * While a container's rotation runs, the file keeps `before` for it (undefined: nothing), so
   * a crash before the action finished leaves it to redo at the next start.
   */
  holdForRotation(containerId: string, before: DeliveredState | undefined): void;
  /** The rotation finished (done, failed or rolled back): the file may keep the new state. */
  releaseRotation(containerId: string): void;
  /**
   * Resolves once `containerId` has a delivery recorded; rejects with the signal's reason when
   * it aborts first.
   */
  waitFor(containerId: string, signal: AbortSignal): Promise<void>;
  /** Reads the state file (a problem with it is logged: every container is then new). */
  load(): Promise<void>;
  /** Writes the file soon (coalesced), when there is one. */
  scheduleSave(): void;
  /** Writes the file now (after any save in progress); never rejects. */
  flush(): Promise<void>;
  /**
   * A digest of a delivery's values, in order, keyed by a random key this store keeps in memory
   * only (so nothing outside this process can test a guess against it): equal digests mean
   * equal values. Never written to the state file.
   */
  valuesDigestOf(values: readonly Uint8Array[]): string;
}

/**
 * @example
 * const store = createDeliveredStore({ statePath: '/var/lib/dso/agent-state.json', clock, logger });
 * await store.load();
 */
export function createDeliveredStore(context: DeliveredStoreContext): DeliveredStore {
  const { statePath, clock, logger } = context;
  const delivered = new Map<string, DeliveredState>();
  const heldBefore = new Map<string, DeliveredState | undefined>();
  const waiters = new Map<string, Set<() => void>>();
  let timer: ClockTimer | undefined;
  let saving: Promise<void> = Promise.resolve();
  const valuesKey = randomBytes(32);

  const store: DeliveredStore = {
    get: (containerId) => delivered.get(containerId),
    valuesDigestOf(values) {
      const hmac = createHmac('sha256', valuesKey);
      for (const value of values) {
        // Length-prefixed, so ['ab', 'c'] and ['a', 'bc'] differ.
        hmac.update(`${value.byteLength}:`);
        hmac.update(value);
      }
      return hmac.digest('hex');
    },
    set(containerId, state) {
      // Stamped: after an agent restart, status still tells when the files were written.
      delivered.set(containerId, {
        ...state,
        deliveredAt: state.deliveredAt ?? Math.floor(clock.now()),
      });
      for (const wake of waiters.get(containerId) ?? []) wake();
      waiters.delete(containerId);
      store.scheduleSave();
    },
    delete(containerId) {
      delivered.delete(containerId);
      store.scheduleSave();
    },
    ids: () => [...delivered.keys()],
    holdForRotation(containerId, before) {
      heldBefore.set(containerId, before);
    },
    releaseRotation(containerId) {
      heldBefore.delete(containerId);
      store.scheduleSave();
    },
    waitFor(containerId, signal) {
      if (delivered.has(containerId)) return Promise.resolve();
      if (signal.aborted) return Promise.reject(signal.reason);
      return new Promise<void>((resolve, reject) => {
        const set = waiters.get(containerId) ?? new Set();
        waiters.set(containerId, set);
        const stop = onAbort(signal, (reason) => {
          set.delete(wake);
          if (set.size === 0) waiters.delete(containerId);
          reject(reason);
        });
        function wake() {
          stop();
          resolve();
        }
        set.add(wake);
      });
    },
    async load() {
      if (statePath === undefined) return;
      const loaded = await loadDeliveredState(statePath, (problem, error) =>
        logger.warn(
          { err: error, path: statePath, problem },
          'state file ignored: every container is new',
        ),
      );
      for (const [id, state] of loaded) delivered.set(id, state);
    },
    scheduleSave() {
      if (statePath === undefined || timer !== undefined) return;
      timer = clock.setTimeout(() => {
        timer = undefined;
        void store.flush();
      }, STATE_SAVE_DELAY_MS);
      (timer as { unref?: () => void }).unref?.();
    },
    flush() {
      if (timer !== undefined) clock.clearTimeout(timer);
      timer = undefined;
      if (statePath === undefined) return Promise.resolve();
      const snapshot: Array<[string, DeliveredState]> = [];
      for (const [id, state] of delivered) {
        const kept = heldBefore.has(id) ? heldBefore.get(id) : state;
        if (kept !== undefined) snapshot.push([id, kept]);
      }
      saving = saving
        .then(() => saveDeliveredState(statePath, snapshot))
        .catch((error: unknown) => {
          logger.warn(
            { err: error, path: statePath },
            'could not save what was delivered; tried again later',
          );
        });
      return saving;
    },
  };
  return store;
}
