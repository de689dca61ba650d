import { abortable, backoffDelay } from '@dso/async';
import { errorCode } from '@dso/core';
import type { SecretChange } from '@dso/provider-sdk';
import type { Checks } from './checks.js';
import type { DetectorContext } from './context.js';
import { type ProviderState, sameSet, type WatchRun } from './state.js';

/** One watch per provider that can watch, over all its tracked paths. */
export interface Watches {
  /** After the provider's set of tracked paths changed: open, rebuild or stop its watch. */
  sync(state: ProviderState): void;
  /** Stops the provider's watches and any pending rebuild or retry. */
  stop(state: ProviderState): void;
}

/**
 * The provider's watch, kept over its tracked paths: rebuilt `watchRebuildDelayMs` after the
 * set changes, trusted once up `watchSettleMs` (then each path it newly covers is checked once),
 * and opened again after a capped, jittered backoff when it ends or fails, with `checks` taking
 * over meanwhile.
 */
export function createWatches(context: DetectorContext, checks: Checks): Watches {
  const { options, counts } = context;
  const { clock, logger, metrics, random } = options;
  const retryMaxMs = options.watchRetryMaxDelayMs;

  function sync(state: ProviderState): void {
    if (!state.canWatch || context.closed) return;
    if (state.keys.size === 0) {
      stop(state);
      return;
    }
    // A retry is pending: it opens the watch over the set as it is then.
    if (state.retrying) return;
    if (state.watch === undefined) {
      open(state);
      return;
    }
    if (sameSet(state.watch.paths, state.keys) || state.watchTimer !== undefined) return;
    state.watchTimer = context.setTimer(() => {
      state.watchTimer = undefined;
      if (context.closed || state.keys.size === 0) return;
      if (state.watch !== undefined && sameSet(state.watch.paths, state.keys)) return;
      open(state);
    }, options.watchRebuildDelayMs);
  }

  function open(state: ProviderState): void {
    const superseded = state.watch;
    // A newer watch that has not settled yet is replaced outright; the one covering now stays
    // until the new one settles, so there is no gap.
    if (superseded !== undefined && superseded !== state.covering) abortRun(superseded);
    const watchRun: WatchRun = {
      controller: new AbortController(),
      paths: new Set(state.keys.keys()),
      startedAt: clock.now(),
      settleTimer: undefined,
      ended: false,
    };
    state.watch = watchRun;
    watchRun.settleTimer = context.setTimer(() => settle(state, watchRun), options.watchSettleMs);
    context.run(consume(state, watchRun));
  }

  /** A watch that has run `watchSettleMs` without failing now covers its paths. */
  function settle(state: ProviderState, watchRun: WatchRun): void {
    watchRun.settleTimer = undefined;
    if (context.closed || watchRun.ended || state.watch !== watchRun) return;
    const previous = state.covering;
    state.covering = watchRun;
    if (previous !== undefined && previous !== watchRun) abortRun(previous);
    for (const key of state.keys.values()) {
      if (!watchRun.paths.has(key.path)) continue;
      context.clearTimer(key.timer);
      key.timer = undefined;
      // Not covered before: a change made before this watch took effect is found now.
      if (previous?.paths.has(key.path) !== true) checks.check(key);
    }
  }

  async function consume(state: ProviderState, watchRun: WatchRun): Promise<void> {
    const { signal } = watchRun.controller;
    let failure: unknown;
    let failedWith = false;
    try {
      const iterable = state.provider.watch!([...watchRun.paths], { signal });
      const iterator = iterable[Symbol.asyncIterator]();
      try {
        for (;;) {
          // Gives up at the signal even when the provider does not listen, so close() is never
          // held up by it.
          const next = await abortable(iterator.next(), signal);
          if (next.done) break;
          onWatchChange(state, next.value);
        }
      } finally {
        // The provider ends its iteration when the signal aborts; return() covers one that
        // does not listen, without waiting for it.
        if (signal.aborted) void Promise.resolve(iterator.return?.()).catch(() => undefined);
      }
    } catch (error) {
      failure = error;
      failedWith = true;
    }
    watchRun.ended = true;
    context.clearTimer(watchRun.settleTimer);
    watchRun.settleTimer = undefined;
    if (signal.aborted) {
      metrics?.providerCall(state.name, 'watch', clock.now() - watchRun.startedAt);
      return;
    }
    metrics?.providerCall(
      state.name,
      'watch',
      clock.now() - watchRun.startedAt,
      failedWith ? failure : undefined,
    );
    lost(state, watchRun, failedWith, failure);
  }

  function onWatchChange(state: ProviderState, change: SecretChange): void {
    if (context.closed) return;
    if (typeof change?.path !== 'string' || typeof change.version !== 'string') return;
    if (change.version === '') return;
    const key = state.keys.get(change.path);
    if (key === undefined) return;
    checks.report(key, change.version, 'watch');
  }

  /** A watch ended or failed on its own: checks take over until it is open again. */
  function lost(state: ProviderState, watchRun: WatchRun, failedWith: boolean, failure: unknown) {
    if (state.watch === watchRun) state.watch = undefined;
    const wasCovering = state.covering === watchRun;
    if (wasCovering) state.covering = undefined;
    if (failedWith) counts.errors += 1;
    if (context.closed || state.keys.size === 0) return;
    // A watch that stayed up longer than the longest backoff starts the backoff over.
    if (clock.now() - watchRun.startedAt >= retryMaxMs) state.watchFailures = 0;
    state.watchFailures += 1;
    const delayMs = backoffDelay(state.watchFailures, {
      baseMs: options.watchRetryBaseDelayMs,
      maxMs: retryMaxMs,
      jitter: 'equal',
      random,
    });
    const fields = {
      provider: state.name,
      code: failedWith ? (errorCode(failure) ?? 'DSO_PROVIDER_INTERNAL') : undefined,
      paths: watchRun.paths.size,
      attempt: state.watchFailures,
      retryInMs: Math.round(delayMs),
    };
    logger.warn(
      fields,
      failedWith
        ? 'watch failed; checking its secrets every interval until it is open again'
        : 'watch ended; checking its secrets every interval until it is open again',
    );
    if (state.watch === undefined) {
      context.clearTimer(state.watchTimer);
      state.retrying = true;
      state.watchTimer = context.setTimer(() => {
        state.watchTimer = undefined;
        state.retrying = false;
        if (!context.closed && state.keys.size > 0) open(state);
      }, delayMs);
    }
    if (wasCovering) for (const key of state.keys.values()) checks.startInterval(key);
  }

  function abortRun(watchRun: WatchRun): void {
    context.clearTimer(watchRun.settleTimer);
    watchRun.settleTimer = undefined;
    watchRun.controller.abort();
  }

  function stop(state: ProviderState): void {
    context.clearTimer(state.watchTimer);
    state.watchTimer = undefined;
    state.retrying = false;
    if (state.watch !== undefined) abortRun(state.watch);
    if (state.covering !== undefined) abortRun(state.covering);
    state.watch = undefined;
    state.covering = undefined;
  }

  return { sync, stop };
}
