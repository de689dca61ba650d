import { DsoError } from '@dso/core';
import { createChecks } from './change-detection/checks.js';
import { createDetectorContext } from './change-detection/context.js';
import { resolveDetectorOptions } from './change-detection/options.js';
import {
  createKeyState,
  createProviderState,
  isCovered,
  type KeyState,
  type ProviderState,
} from './change-detection/state.js';
import type {
  ChangeDetector,
  ChangeDetectorOptions,
  TrackedSecret,
} from './change-detection/types.js';
import { createWatches } from './change-detection/watches.js';

export {
  type ChangeDetector,
  type ChangeDetectorOptions,
  type ChangeDetectorStats,
  type ChangeSource,
  DEFAULT_CHECKS_IN_FLIGHT,
  DEFAULT_POLL_JITTER,
  DEFAULT_WATCH_REBUILD_DELAY_MS,
  DEFAULT_WATCH_RETRY_BASE_DELAY_MS,
  DEFAULT_WATCH_RETRY_MAX_DELAY_MS,
  DEFAULT_WATCH_SETTLE_MS,
  type DetectedChange,
  type MissingSecret,
  type SecretWatchKey,
  type TrackedSecret,
} from './change-detection/types.js';

/**
 * Detects rotations of the secrets in use, per provider, the cheapest way it can:
 *
 * - a provider that declares `watch` gets one watch over all its tracked paths (the contract
 *   watches many paths in one call), rebuilt when the set changes. A watch that ends or fails is
 *   opened again after a capped, jittered backoff; meanwhile its secrets are checked every
 *   interval, and once a watch is up again each secret it did not cover is checked once, so a
 *   change made while it was down, or before it took effect, is not missed;
 * - otherwise a provider that declares `probe` is asked for each secret's version every interval
 *   (metadata only);
 * - otherwise each secret is resolved every interval, its value registered with the redactor
 *   and disposed at once.
 *
 * At most `maxChecksInFlight` checks reach one provider at once, so ten thousand secrets do not
 * storm it. A version other than the baseline is reported once through `onChange`, and becomes
 * the baseline. Failures are logged with their code and the reference (`provider:path`), never a
 * value or a provider's message, and counted; the secret keeps being checked. A failure is
 * logged at `warn` when it first happens and at `debug` while it repeats, so a missing secret is
 * not reported every interval; a retryable one (an outage) is logged at `warn` once an interval
 * for all the provider's secrets, not once per secret.
 *
 * The parts live in `change-detection/`: the interval checks (`checks.ts`), the watches
 * (`watches.ts`), the per-provider and per-secret state (`state.ts`) and the failure-logging
 * rule (`failures.ts`). This file keeps the set of tracked secrets and the lifecycle.
 *
 * @example
 * const detector = createChangeDetector({
 *   providers, logger, redactor, metrics,
 *   pollIntervalMs: config.rotation.pollIntervalMs,
 *   onChange: ({ provider, path }) => void cache.invalidatePrefix(cacheKeyPrefix(provider, path)),
 * });
 * detector.track([{ provider: 'vault', path: 'app/db', version: '4' }]);
 * await detector.close();
 * @throws RangeError when an interval, the jitter or a bound is out of range
 */
export function createChangeDetector(options: ChangeDetectorOptions): ChangeDetector {
  const resolved = resolveDetectorOptions(options);
  const { providers, logger } = resolved;
  const context = createDetectorContext(resolved);
  const checks = createChecks(context);
  const watches = createWatches(context, checks);

  /** Per provider, created at its first tracked secret and kept (there are few). */
  const states = new Map<string, ProviderState>();
  /** Provider names already reported as not configured, so each is logged once. */
  const unknownLogged = new Set<string>();
  let closing: Promise<void> | undefined;

  function stateOf(name: string): ProviderState {
    let state = states.get(name);
    if (state === undefined) {
      const intervalMs = resolved.pollIntervalByProvider.get(name) ?? resolved.pollIntervalMs;
      state = createProviderState(
        name,
        providers.get(name)!,
        intervalMs,
        resolved.maxChecksInFlight,
      );
      states.set(name, state);
    }
    return state;
  }

  function untrack(key: KeyState): void {
    key.removed = true;
    context.clearTimer(key.timer);
    key.timer = undefined;
    key.running?.abort();
    key.leave?.abort();
    key.leave = undefined;
    key.queued = false;
    key.owner.keys.delete(key.path);
  }

  /** The entries of `secrets` by provider and path (the last version of a repeated one wins). */
  function group(secrets: Iterable<TrackedSecret>): Map<string, Map<string, string>> {
    const next = new Map<string, Map<string, string>>();
    for (const secret of secrets) {
      const { provider, path, version } = secret ?? ({} as TrackedSecret);
      if (typeof provider !== 'string' || typeof path !== 'string' || provider === '') {
        throw new TypeError('track() takes entries with a provider and a path (strings)');
      }
      if (typeof version !== 'string' || version === '') {
        throw new TypeError(`track(): ${provider}:${path} has no version (a non-empty string)`);
      }
      if (!providers.has(provider)) {
        if (!unknownLogged.has(provider)) {
          unknownLogged.add(provider);
          const error = new DsoError(
            'DSO_AGENT_PROVIDER_UNKNOWN',
            `${provider}:${path} names provider "${provider}", which is not configured (configured: ${[...providers.keys()].join(', ')}): its rotations are not detected; configure it or fix the reference`,
            { reference: `${provider}:${path}` },
          );
          logger.warn({ err: error, code: error.code }, 'secret not tracked');
        }
        continue;
      }
      let paths = next.get(provider);
      if (paths === undefined) {
        paths = new Map();
        next.set(provider, paths);
      }
      paths.set(path, version);
    }
    return next;
  }

  const detector: ChangeDetector = {
    track(secrets) {
      if (context.closed) return;
      const next = group(secrets);
      const changed = new Set<ProviderState>();
      for (const state of states.values()) {
        const paths = next.get(state.name);
        for (const key of [...state.keys.values()]) {
          if (paths?.has(key.path) === true) continue;
          untrack(key);
          changed.add(state);
        }
      }
      for (const [name, paths] of next) {
        const state = stateOf(name);
        for (const [path, version] of paths) {
          const known = state.keys.get(path);
          if (known !== undefined) {
            if (known.baseline === version) continue;
            known.baseline = version;
            known.epoch += 1;
            // A watched secret has no timer: compare the new baseline with the provider now.
            if (isCovered(known)) checks.check(known);
            continue;
          }
          const key = createKeyState(state, path, version);
          state.keys.set(path, key);
          changed.add(state);
          checks.startInterval(key);
        }
      }
      for (const state of changed) watches.sync(state);
    },

    stats() {
      let tracked = 0;
      let watched = 0;
      let probed = 0;
      let polled = 0;
      for (const state of states.values()) {
        for (const key of state.keys.values()) {
          tracked += 1;
          if (isCovered(key)) watched += 1;
          else if (state.check === 'probe') probed += 1;
          else polled += 1;
        }
      }
      const { changes, errors } = context.counts;
      return { tracked, watched, probed, polled, changes, errors };
    },

    close() {
      closing ??= (async () => {
        context.closed = true;
        for (const state of states.values()) {
          watches.stop(state);
          for (const key of [...state.keys.values()]) untrack(key);
        }
        // Every call and watch loop gives up at its abort, whether or not the provider listens.
        await context.idle();
      })();
      return closing;
    },

    [Symbol.asyncDispose]() {
      return detector.close();
    },
  };
  return detector;
}
