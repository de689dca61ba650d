import { abortable } from '@dso/async';
import { errorCode } from '@dso/core';
import { ProviderError } from '@dso/provider-sdk';
import type { DetectorContext } from './context.js';
import { noteFailure, noteRecovery } from './failures.js';
import { isCovered, type KeyState, type ProviderState, referenceOf } from './state.js';
import type { ChangeSource, DetectedChange } from './types.js';

/** The interval checks of secrets no watch covers (probes, or resolves), and change reports. */
export interface Checks {
  /** Starts a secret's interval checks, its first anywhere in the first interval. */
  startInterval(key: KeyState): void;
  /** Checks one secret now, or as soon as its provider has a free slot. */
  check(key: KeyState): void;
  /** A version seen for a secret: reported through `onChange` once when it is not the baseline. */
  report(key: KeyState, version: string, source: ChangeSource): void;
}

/**
 * The delay to a secret's next check: between `(1 - jitter)` and all of its interval, so checks
 * spread and a change is still seen within one interval.
 */
export function nextCheckDelay(intervalMs: number, jitter: number, random: () => number): number {
  return intervalMs * (1 - jitter * random());
}

/**
 * Checks of secrets on their intervals: at most `maxChecksInFlight` per provider at once (the
 * rest queue in order), each on a fresh timer once it ends, and rechecked at once when asked
 * for while one ran.
 */
export function createChecks(context: DetectorContext): Checks {
  const { options, counts } = context;
  const { clock, logger, metrics, random, redactor, onChange } = options;

  function startInterval(key: KeyState): void {
    if (key.timer !== undefined || key.running || key.queued || isCovered(key)) return;
    key.timer = context.setTimer(() => fire(key), key.owner.intervalMs * random());
  }

  function fire(key: KeyState): void {
    key.timer = undefined;
    check(key);
  }

  function check(key: KeyState): void {
    if (context.closed || key.removed) return;
    if (key.running !== undefined) {
      // Its result may predate what asked for this one: check again once it is back.
      key.recheck = true;
      return;
    }
    if (key.queued) return;
    context.clearTimer(key.timer);
    key.timer = undefined;
    // At most maxChecksInFlight per provider: the rest wait in line, in order; untrack() and
    // close() take a waiting secret out of line through `leave`.
    const leave = new AbortController();
    key.queued = true;
    key.leave = leave;
    context.run(
      key.owner.limiter
        .run(
          () => {
            key.queued = false;
            key.leave = undefined;
            return runCheck(key);
          },
          { signal: leave.signal },
        )
        .catch(() => {
          // Taken out of line (untracked or closed): nothing ran, nothing to report.
        }),
    );
  }

  async function runCheck(key: KeyState): Promise<void> {
    const state = key.owner;
    const controller = new AbortController();
    const epoch = key.epoch;
    const operation = state.check === 'probe' ? 'probe' : 'resolve';
    key.running = controller;
    const started = clock.now();
    try {
      const version = await checkOnce(state, key.path, controller.signal);
      metrics?.providerCall(state.name, operation, clock.now() - started);
      if (controller.signal.aborted || key.removed || context.closed) return;
      if (noteRecovery(key)) {
        logger.info({ reference: referenceOf(key) }, 'secret version readable again');
      }
      // The baseline moved while the call ran (a watch reported, or track() was called): this
      // answer may be older than it, so it decides nothing. A recheck follows when one was asked.
      if (key.epoch !== epoch) return;
      report(key, version, state.check);
    } catch (error) {
      if (controller.signal.aborted || context.closed) return;
      metrics?.providerCall(state.name, operation, clock.now() - started, error);
      counts.errors += 1;
      const entry = noteFailure(key, operation, error, clock.now());
      logger[entry.level](entry.fields, entry.message);
      // Gone from its store while in use: said once (noteFailure warns once per code), so its
      // consumers are shown missing rather than up to date.
      if (entry.level === 'warn' && entry.fields.code === 'DSO_PROVIDER_NOT_FOUND') {
        reportMissing(key, entry.fields.code);
      }
    } finally {
      key.running = undefined;
      if (!context.closed && !key.removed) {
        if (key.recheck) {
          key.recheck = false;
          check(key);
        } else if (!isCovered(key) && key.timer === undefined && !key.queued) {
          key.timer = context.setTimer(
            () => fire(key),
            nextCheckDelay(state.intervalMs, options.jitter, random),
          );
        }
      }
    }
  }

  /**
   * The current version of `path`: a probe, or a resolve whose value is disposed at once. Gives
   * up at the signal whether or not the provider listens to it, so close() is never held up.
   */
  async function checkOnce(state: ProviderState, path: string, signal: AbortSignal) {
    const { provider } = state;
    let version: unknown;
    if (state.check === 'probe') {
      const probe = provider.probe!.bind(provider);
      version = (await abortable(probe({ path }, { signal }), signal))?.version;
    } else {
      const call = provider.resolve({ path }, { signal });
      let resolved: Awaited<typeof call>;
      try {
        resolved = await abortable(call, signal);
      } catch (error) {
        // Answered after we gave up: never looked at, only zeroed.
        if (signal.aborted)
          void call.then(
            (late) => late?.value?.dispose?.(),
            () => undefined,
          );
        throw error;
      }
      try {
        // Known to the redactor while it lives, forgotten with it: a value only looked at for
        // its version must not stay registered (each version of a rotating secret would).
        const lease = redactor?.register(resolved.value.reveal());
        if (lease !== undefined) resolved.value.onDispose(() => lease.release());
      } finally {
        resolved.value.dispose();
      }
      version = resolved.version;
    }
    if (typeof version !== 'string' || version === '') {
      throw new ProviderError(
        'DSO_PROVIDER_INTERNAL',
        `provider ${state.name} answered a ${state.check === 'probe' ? 'probe' : 'resolve'} of ${path} without a version: fix or upgrade the provider`,
        { provider: state.name, path },
      );
    }
    return version;
  }

  function reportMissing(key: KeyState, code: string): void {
    try {
      options.onMissing?.({ provider: key.owner.name, path: key.path, code });
    } catch (error) {
      // As for onChange: the handler's own error could quote anything; its code is enough.
      logger.error(
        {
          code: 'DSO_AGENT_CHANGE_HANDLER_FAILED',
          causeCode: errorCode(error),
          reference: referenceOf(key),
        },
        'missing-secret handler threw; fix the handler',
      );
    }
  }

  function report(key: KeyState, version: string, source: ChangeSource): void {
    if (version === key.baseline) return;
    key.baseline = version;
    key.epoch += 1;
    counts.changes += 1;
    const change: DetectedChange = { provider: key.owner.name, path: key.path, version, source };
    logger.info({ reference: referenceOf(key), version, source }, 'secret version changed');
    try {
      onChange(change);
    } catch (error) {
      // The handler's own error is not logged: it is the agent's code, and its message or cause
      // could quote anything. Its code, if it has one, is enough to find it.
      logger.error(
        {
          code: 'DSO_AGENT_CHANGE_HANDLER_FAILED',
          causeCode: errorCode(error),
          reference: referenceOf(key),
          version,
        },
        'change handler threw; the change is not reported again, fix the handler',
      );
    }
  }

  return { startInterval, check, report };
}
