import {
  type Clock,
  type ClockTimer,
  DsoError,
  errorCode,
  type Logger,
  type Redactor,
  systemClock,
} from '@dso/core';
import {
  isProviderError,
  ProviderError,
  type SecretChange,
  type SecretProvider,
} from '@dso/provider-sdk';
import type { AgentMetrics } from './observability.js';

/** Checks of one provider's secrets running at once (probes or resolves). @default 8 */
export const DEFAULT_CHECKS_IN_FLIGHT = 8;
/** Fraction of a poll interval by which checks are spread. @default 0.1 */
export const DEFAULT_POLL_JITTER = 0.1;
/**
 * How long a new watch runs before it is trusted: then the watch it replaces is closed and each
 * secret it newly covers is checked once. @default 1_000
 */
export const DEFAULT_WATCH_SETTLE_MS = 1_000;
/** How long changes to the set of watched paths collect before the watch is rebuilt. @default 5_000 */
export const DEFAULT_WATCH_REBUILD_DELAY_MS = 5_000;
/** First delay before a watch that ended or failed is opened again. @default 1_000 */
export const DEFAULT_WATCH_RETRY_BASE_DELAY_MS = 1_000;
/** Cap of the delay before a watch is opened again. @default 60_000 */
export const DEFAULT_WATCH_RETRY_MAX_DELAY_MS = 60_000;

/**
 * One secret whose changes are detected: a provider's name and a path in it. A version-pinned
 * reference (`dso://vault:app/db@3`) never changes, so the caller does not track it.
 */
export interface SecretWatchKey {
  provider: string;
  path: string;
}

/** A secret in use, with the version its consumers were last given: the baseline. */
export interface TrackedSecret extends SecretWatchKey {
  version: string;
}

/** How a change was noticed: the provider's watch, a version probe, or a full resolve (poll). */
export type ChangeSource = 'watch' | 'probe' | 'poll';

/**
 * A secret now has a version other than its baseline. Named apart from the SDK's
 * `SecretChange` (what a provider's watch yields, without provider or source).
 */
export interface DetectedChange extends SecretWatchKey {
  version: string;
  source: ChangeSource;
}

/** Counts for status and metrics. */
export interface ChangeDetectorStats {
  /** Secrets tracked (of configured providers). */
  tracked: number;
  /** Secrets covered now by a provider's watch that is up. */
  watched: number;
  /** Secrets checked with `probe` every interval (their provider has no watch, or it is down). */
  probed: number;
  /** Secrets checked with `resolve` every interval (their provider can neither watch nor probe, or its watch is down). */
  polled: number;
  /** Changes reported through `onChange` since creation. */
  changes: number;
  /** Failed checks and failed watches since creation. */
  errors: number;
}

/** Options of {@link createChangeDetector}. */
export interface ChangeDetectorOptions {
  /** The agent's providers by name; keys of other providers are not tracked (logged once). */
  providers: ReadonlyMap<string, SecretProvider>;
  logger: Logger;
  /** Time between two checks of a secret whose provider cannot watch (`rotation.pollIntervalMs`). */
  pollIntervalMs: number;
  /** Per provider, an interval replacing `pollIntervalMs` (a provider's `pollIntervalMs`). */
  pollIntervalByProvider?: ReadonlyMap<string, number>;
  /**
   * Called once per change, synchronously: the agent invalidates its cache and queues the
   * consumers. Must not throw (a throw is logged, and the change is not reported again).
   */
  onChange: (change: DetectedChange) => void;
  /** Values the poll fallback resolves are registered here before anything else happens to them. */
  redactor?: Redactor;
  /** Provider calls (`probe`, `resolve`, `watch`) are counted and timed here; none when absent. */
  metrics?: Pick<AgentMetrics, 'providerCall'>;
  /**
   * Checks are spread: each waits between `(1 - jitter)` and all of its interval, so a change is
   * seen within one interval (plus the call's own time). A secret's first check falls anywhere in
   * its first interval, so secrets tracked together (at start) spread over the whole interval.
   * @default DEFAULT_POLL_JITTER (0.1)
   */
  jitter?: number;
  /** Checks of one provider at once; more wait their turn. @default DEFAULT_CHECKS_IN_FLIGHT (8) */
  maxChecksInFlight?: number;
  /** @default DEFAULT_WATCH_SETTLE_MS */
  watchSettleMs?: number;
  /** @default DEFAULT_WATCH_REBUILD_DELAY_MS */
  watchRebuildDelayMs?: number;
  /** @default DEFAULT_WATCH_RETRY_BASE_DELAY_MS */
  watchRetryBaseDelayMs?: number;
  /** @default DEFAULT_WATCH_RETRY_MAX_DELAY_MS */
  watchRetryMaxDelayMs?: number;
  /** @default systemClock */
  clock?: Clock;
  /** Uniform in [0, 1), for jitter. @default Math.random */
  random?: () => number;
}

/** Notices new versions of the secrets in use: see {@link createChangeDetector}. */
export interface ChangeDetector extends AsyncDisposable {
  /**
   * The set of secrets in use now, each with the version its consumers were last given (the
   * baseline). Replaces the previous set: watches and checks start for new secrets and stop for
   * those no longer in it. A secret already tracked keeps its watch and timer; a different
   * baseline replaces the one it had (when its provider watches it, it is checked once at
   * once, since no timer would compare it). When one secret appears more than once, the last
   * entry's version is its baseline. Ignored after {@link ChangeDetector.close}.
   * @throws TypeError for an entry without a provider, a path and a version (strings)
   */
  track(secrets: Iterable<TrackedSecret>): void;
  /** What is being watched and checked now, and what was found since creation. */
  stats(): ChangeDetectorStats;
  /** Stops every watch and timer and cancels calls in flight; resolves once none runs. Idempotent. */
  close(): Promise<void>;
}

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
  const { providers, logger, onChange, redactor, metrics } = options;
  const clock = options.clock ?? systemClock;
  const random = options.random ?? Math.random;
  const jitter = options.jitter ?? DEFAULT_POLL_JITTER;
  const maxInFlight = options.maxChecksInFlight ?? DEFAULT_CHECKS_IN_FLIGHT;
  const settleMs = options.watchSettleMs ?? DEFAULT_WATCH_SETTLE_MS;
  const rebuildDelayMs = options.watchRebuildDelayMs ?? DEFAULT_WATCH_REBUILD_DELAY_MS;
  const retryBaseMs = options.watchRetryBaseDelayMs ?? DEFAULT_WATCH_RETRY_BASE_DELAY_MS;
  const retryMaxMs = options.watchRetryMaxDelayMs ?? DEFAULT_WATCH_RETRY_MAX_DELAY_MS;
  checkInterval('pollIntervalMs', options.pollIntervalMs);
  for (const [name, ms] of options.pollIntervalByProvider ?? []) {
    checkInterval(`pollIntervalByProvider(${name})`, ms);
  }
  if (!(Number.isFinite(jitter) && jitter >= 0 && jitter < 1)) {
    throw new RangeError(`jitter must be a fraction in [0, 1), got ${jitter}`);
  }
  if (!(Number.isInteger(maxInFlight) && maxInFlight >= 1)) {
    throw new RangeError(`maxChecksInFlight must be a positive integer, got ${maxInFlight}`);
  }
  checkInterval('watchSettleMs', settleMs, true);
  checkInterval('watchRebuildDelayMs', rebuildDelayMs, true);
  checkInterval('watchRetryBaseDelayMs', retryBaseMs);
  checkInterval('watchRetryMaxDelayMs', retryMaxMs);

  /** Per provider, created at its first tracked secret and kept (there are few). */
  const states = new Map<string, ProviderState>();
  /** Provider names already reported as not configured, so each is logged once. */
  const unknownLogged = new Set<string>();
  /** Checks and watch loops running, so close() can wait for them. */
  const tasks = new Set<Promise<void>>();
  let changes = 0;
  let errors = 0;
  let closed = false;
  let closing: Promise<void> | undefined;

  function setTimer(callback: () => void, delayMs: number): ClockTimer {
    const timer = clock.setTimeout(callback, delayMs);
    // A detector's timers never keep the process alive: the agent's lifetime is its own.
    (timer as { unref?: () => void }).unref?.();
    return timer;
  }

  function clearTimer(timer: ClockTimer | undefined): void {
    if (timer !== undefined) clock.clearTimeout(timer);
  }

  function stateOf(name: string, provider: SecretProvider): ProviderState {
    let state = states.get(name);
    if (state === undefined) {
      const canWatch = provider.capabilities.watch && typeof provider.watch === 'function';
      const canProbe = provider.capabilities.probe && typeof provider.probe === 'function';
      state = {
        name,
        provider,
        canWatch,
        check: canProbe ? 'probe' : 'poll',
        intervalMs: options.pollIntervalByProvider?.get(name) ?? options.pollIntervalMs,
        keys: new Map(),
        inFlight: 0,
        waiting: new Set(),
        watch: undefined,
        covering: undefined,
        watchTimer: undefined,
        retrying: false,
        watchFailures: 0,
        outageCode: undefined,
        outageLoggedAt: Number.NEGATIVE_INFINITY,
      };
      states.set(name, state);
    }
    return state;
  }

  // ---- checks (probe, or resolve) -------------------------------------------------------------

  function covered(key: KeyState): boolean {
    return key.owner.covering?.paths.has(key.path) === true;
  }

  /** The delay to a secret's next check: between (1 - jitter) and all of its interval. */
  function nextDelay(state: ProviderState): number {
    return state.intervalMs * (1 - jitter * random());
  }

  /** Starts a secret's interval checks, its first anywhere in the first interval. */
  function startInterval(key: KeyState): void {
    if (key.timer !== undefined || key.running || key.queued || covered(key)) return;
    key.timer = setTimer(() => fire(key), key.owner.intervalMs * random());
  }

  function fire(key: KeyState): void {
    key.timer = undefined;
    check(key);
  }

  /** Checks one secret now, or as soon as its provider has a free slot. */
  function check(key: KeyState): void {
    if (closed || key.removed) return;
    if (key.running !== undefined) {
      // Its result may predate what asked for this one: check again once it is back.
      key.recheck = true;
      return;
    }
    if (key.queued) return;
    const state = key.owner;
    if (state.inFlight >= maxInFlight) {
      key.queued = true;
      state.waiting.add(key);
      return;
    }
    clearTimer(key.timer);
    key.timer = undefined;
    run(runCheck(key));
  }

  function run(work: Promise<void>): void {
    const task = work
      .catch((error: unknown) => {
        // Checks and watch loops handle their own failures: reaching here is a bug.
        logger.error(
          { code: 'DSO_AGENT_CHANGE_DETECTOR_FAILED', causeCode: errorCode(error) },
          'change detection failed unexpectedly; please report it',
        );
      })
      .finally(() => tasks.delete(task));
    tasks.add(task);
  }

  async function runCheck(key: KeyState): Promise<void> {
    const state = key.owner;
    const controller = new AbortController();
    const epoch = key.epoch;
    const operation = state.check === 'probe' ? 'probe' : 'resolve';
    state.inFlight += 1;
    key.running = controller;
    const started = clock.now();
    try {
      const version = await checkOnce(state, key.path, controller.signal);
      metrics?.providerCall(state.name, operation, clock.now() - started);
      if (controller.signal.aborted || key.removed || closed) return;
      recovered(key);
      // The baseline moved while the call ran (a watch reported, or track() was called): this
      // answer may be older than it, so it decides nothing. A recheck follows when one was asked.
      if (key.epoch !== epoch) return;
      report(key, version, state.check);
    } catch (error) {
      if (controller.signal.aborted || closed) return;
      metrics?.providerCall(state.name, operation, clock.now() - started, error);
      failed(key, operation, error);
    } finally {
      state.inFlight -= 1;
      key.running = undefined;
      drain(state);
      if (!closed && !key.removed) {
        if (key.recheck) {
          key.recheck = false;
          check(key);
        } else if (!covered(key) && key.timer === undefined && !key.queued) {
          key.timer = setTimer(() => fire(key), nextDelay(state));
        }
      }
    }
  }

  /** The current version of `path`: a probe, or a resolve whose value is disposed at once. */
  async function checkOnce(state: ProviderState, path: string, signal: AbortSignal) {
    const { provider } = state;
    let version: unknown;
    if (state.check === 'probe') {
      const probe = provider.probe!.bind(provider);
      version = (await untilAborted(probe({ path }, { signal }), signal))?.version;
    } else {
      const resolved = await untilAborted(
        provider.resolve({ path }, { signal }),
        signal,
        // Answered after we gave up: never looked at, only zeroed.
        (late) => late?.value?.dispose?.(),
      );
      try {
        redactor?.register(resolved.value.reveal());
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

  function drain(state: ProviderState): void {
    while (!closed && state.inFlight < maxInFlight && state.waiting.size > 0) {
      const key = state.waiting.values().next().value as KeyState;
      state.waiting.delete(key);
      key.queued = false;
      check(key);
    }
  }

  function report(key: KeyState, version: string, source: ChangeSource): void {
    if (version === key.baseline) return;
    key.baseline = version;
    key.epoch += 1;
    changes += 1;
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

  function recovered(key: KeyState): void {
    if (key.lastErrorCode === undefined) return;
    logger.info({ reference: referenceOf(key) }, 'secret version readable again');
    key.lastErrorCode = undefined;
  }

  function failed(key: KeyState, operation: 'probe' | 'resolve', error: unknown): void {
    errors += 1;
    const state = key.owner;
    const code = errorCode(error) ?? 'DSO_PROVIDER_INTERNAL';
    const retryable = isProviderError(error) ? error.retryable : false;
    // Only the code: a provider's message or cause could quote what it was given.
    const fields = { reference: referenceOf(key), operation, code, retryable };
    let first: boolean;
    if (retryable) {
      // An outage fails every secret of the provider alike: one warning for all of them, at
      // most once an interval while it lasts (throttling lets some calls through, so a success
      // does not end it).
      const now = clock.now();
      first = state.outageCode !== code || now - state.outageLoggedAt >= state.intervalMs;
      if (first) {
        state.outageCode = code;
        state.outageLoggedAt = now;
      }
    } else {
      first = key.lastErrorCode !== code;
      key.lastErrorCode = code;
    }
    const level = first ? 'warn' : 'debug';
    if (code === 'DSO_PROVIDER_NOT_FOUND') {
      logger[level](fields, 'secret not found at its provider; still checked every interval');
    } else if (code === 'DSO_PROVIDER_UNAUTHORIZED') {
      logger[level](fields, "provider refused a version check; check the provider's credentials");
    } else {
      logger[level](fields, 'secret version check failed; tried again next interval');
    }
  }

  // ---- watches ----------------------------------------------------------------------------------

  /** After the provider's set of tracked paths changed: open, rebuild or stop its watch. */
  function syncWatch(state: ProviderState): void {
    if (!state.canWatch || closed) return;
    if (state.keys.size === 0) {
      stopWatches(state);
      return;
    }
    // A retry is pending: it opens the watch over the set as it is then.
    if (state.retrying) return;
    if (state.watch === undefined) {
      openWatch(state);
      return;
    }
    if (sameSet(state.watch.paths, state.keys) || state.watchTimer !== undefined) return;
    state.watchTimer = setTimer(() => {
      state.watchTimer = undefined;
      if (closed || state.keys.size === 0) return;
      if (state.watch !== undefined && sameSet(state.watch.paths, state.keys)) return;
      openWatch(state);
    }, rebuildDelayMs);
  }

  function openWatch(state: ProviderState): void {
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
    watchRun.settleTimer = setTimer(() => settle(state, watchRun), settleMs);
    run(consume(state, watchRun));
  }

  /** A watch that has run `settleMs` without failing now covers its paths. */
  function settle(state: ProviderState, watchRun: WatchRun): void {
    watchRun.settleTimer = undefined;
    if (closed || watchRun.ended || state.watch !== watchRun) return;
    const previous = state.covering;
    state.covering = watchRun;
    if (previous !== undefined && previous !== watchRun) abortRun(previous);
    for (const key of state.keys.values()) {
      if (!watchRun.paths.has(key.path)) continue;
      clearTimer(key.timer);
      key.timer = undefined;
      // Not covered before: a change made before this watch took effect is found now.
      if (previous?.paths.has(key.path) !== true) check(key);
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
          const next = await untilAborted(iterator.next(), signal);
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
    clearTimer(watchRun.settleTimer);
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
    watchLost(state, watchRun, failedWith, failure);
  }

  function onWatchChange(state: ProviderState, change: SecretChange): void {
    if (closed) return;
    if (typeof change?.path !== 'string' || typeof change.version !== 'string') return;
    if (change.version === '') return;
    const key = state.keys.get(change.path);
    if (key === undefined) return;
    report(key, change.version, 'watch');
  }

  /** A watch ended or failed on its own: checks take over until it is open again. */
  function watchLost(
    state: ProviderState,
    watchRun: WatchRun,
    failedWith: boolean,
    failure: unknown,
  ): void {
    if (state.watch === watchRun) state.watch = undefined;
    const wasCovering = state.covering === watchRun;
    if (wasCovering) state.covering = undefined;
    if (failedWith) errors += 1;
    if (closed || state.keys.size === 0) return;
    // A watch that stayed up longer than the longest backoff starts the backoff over.
    if (clock.now() - watchRun.startedAt >= retryMaxMs) state.watchFailures = 0;
    state.watchFailures += 1;
    const delayMs =
      Math.min(retryMaxMs, retryBaseMs * 2 ** Math.min(state.watchFailures - 1, 30)) *
      (0.5 + 0.5 * random());
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
      clearTimer(state.watchTimer);
      state.retrying = true;
      state.watchTimer = setTimer(() => {
        state.watchTimer = undefined;
        state.retrying = false;
        if (!closed && state.keys.size > 0) openWatch(state);
      }, delayMs);
    }
    if (wasCovering) for (const key of state.keys.values()) startInterval(key);
  }

  function abortRun(watchRun: WatchRun): void {
    clearTimer(watchRun.settleTimer);
    watchRun.settleTimer = undefined;
    watchRun.controller.abort();
  }

  function stopWatches(state: ProviderState): void {
    clearTimer(state.watchTimer);
    state.watchTimer = undefined;
    state.retrying = false;
    if (state.watch !== undefined) abortRun(state.watch);
    if (state.covering !== undefined) abortRun(state.covering);
    state.watch = undefined;
    state.covering = undefined;
  }

  // ---- the set of secrets -----------------------------------------------------------------------

  function untrack(key: KeyState): void {
    key.removed = true;
    clearTimer(key.timer);
    key.timer = undefined;
    key.running?.abort();
    if (key.queued) key.owner.waiting.delete(key);
    key.queued = false;
    key.owner.keys.delete(key.path);
  }

  const detector: ChangeDetector = {
    track(secrets) {
      if (closed) return;
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
        const state = stateOf(name, providers.get(name)!);
        for (const [path, version] of paths) {
          const known = state.keys.get(path);
          if (known !== undefined) {
            if (known.baseline === version) continue;
            known.baseline = version;
            known.epoch += 1;
            // A watched secret has no timer: compare the new baseline with the provider now.
            if (covered(known)) check(known);
            continue;
          }
          const key: KeyState = {
            owner: state,
            path,
            baseline: version,
            epoch: 0,
            timer: undefined,
            running: undefined,
            queued: false,
            recheck: false,
            removed: false,
            lastErrorCode: undefined,
          };
          state.keys.set(path, key);
          changed.add(state);
          startInterval(key);
        }
      }
      for (const state of changed) syncWatch(state);
    },

    stats() {
      let tracked = 0;
      let watched = 0;
      let probed = 0;
      let polled = 0;
      for (const state of states.values()) {
        for (const key of state.keys.values()) {
          tracked += 1;
          if (covered(key)) watched += 1;
          else if (state.check === 'probe') probed += 1;
          else polled += 1;
        }
      }
      return { tracked, watched, probed, polled, changes, errors };
    },

    close() {
      closing ??= (async () => {
        closed = true;
        for (const state of states.values()) {
          stopWatches(state);
          for (const key of [...state.keys.values()]) untrack(key);
          state.waiting.clear();
        }
        // Every call and watch loop gives up at its abort, whether or not the provider listens.
        await Promise.allSettled([...tasks]);
      })();
      return closing;
    },

    [Symbol.asyncDispose]() {
      return detector.close();
    },
  };
  return detector;
}

interface ProviderState {
  readonly name: string;
  readonly provider: SecretProvider;
  readonly canWatch: boolean;
  /** How a secret is checked while no watch covers it. */
  readonly check: 'probe' | 'poll';
  readonly intervalMs: number;
  readonly keys: Map<string, KeyState>;
  /** Checks running now. */
  inFlight: number;
  /** Secrets waiting for a free slot, in order. */
  readonly waiting: Set<KeyState>;
  /** The newest watch: the one covering, or one settling to replace it. */
  watch: WatchRun | undefined;
  /** The watch that has settled and covers its paths now. */
  covering: WatchRun | undefined;
  /** A rebuild, or a retry after a failure. */
  watchTimer: ClockTimer | undefined;
  /** `watchTimer` is a retry after a failure (a rebuild would not shorten it). */
  retrying: boolean;
  watchFailures: number;
  /** The last retryable code logged for the provider, and when: one line for all its secrets. */
  outageCode: string | undefined;
  outageLoggedAt: number;
}

interface KeyState {
  readonly owner: ProviderState;
  readonly path: string;
  baseline: string;
  /** Bumped when the baseline changes, so an answer older than the change decides nothing. */
  epoch: number;
  timer: ClockTimer | undefined;
  running: AbortController | undefined;
  queued: boolean;
  /** Asked for while a check was running: check again when it ends. */
  recheck: boolean;
  removed: boolean;
  /** The code of the last check that failed for this secret alone (not retryable), until one succeeds. */
  lastErrorCode: string | undefined;
}

interface WatchRun {
  readonly controller: AbortController;
  readonly paths: ReadonlySet<string>;
  readonly startedAt: number;
  settleTimer: ClockTimer | undefined;
  ended: boolean;
}

function referenceOf(key: KeyState): string {
  return `${key.owner.name}:${key.path}`;
}

function sameSet(a: ReadonlySet<string>, b: ReadonlyMap<string, unknown>): boolean {
  if (a.size !== b.size) return false;
  for (const item of a) if (!b.has(item)) return false;
  return true;
}

function checkInterval(name: string, ms: number, zeroAllowed = false): void {
  if (!(Number.isFinite(ms) && (zeroAllowed ? ms >= 0 : ms > 0))) {
    throw new RangeError(
      `${name} must be a finite number of ms ${zeroAllowed ? 'of 0 or more' : 'above 0'}, got ${ms}`,
    );
  }
}

/**
 * `promise`, or a rejection with the signal's reason as soon as it fires, so a provider that
 * ignores its signal cannot hold close() up. What it yields after that goes to `onLate`.
 */
function untilAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal,
  onLate?: (value: T) => void,
): Promise<T> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const onAbort = () => {
      if (settled) return;
      settled = true;
      reject(signal.reason);
    };
    promise.then(
      (value) => {
        if (settled) {
          onLate?.(value);
          return;
        }
        settled = true;
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
}
