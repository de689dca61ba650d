import { timingSafeEqual } from 'node:crypto';
import { backoffDelay, createLimiter, pause, sleep } from '@dso/async';
import {
  type Clock,
  type ClockTimer,
  DsoError,
  errorCode,
  formatReference,
  LABEL_ROTATION_POLICIES,
  LABELS,
  type LabelRotationPolicy,
  type Logger,
  type ManagedSpec,
} from '@dso/core';
import type { DockerRuntime } from '@dso/docker-runtime';
import type { ContainerStatus, DeliveryTrigger, RotationOptions } from './agent-types.js';
import type { DeliveredState } from './delivered-state.js';
import type { DeliveredStore } from './delivered-store.js';
import type { AgentMetrics } from './observability.js';
import type { AuditSink, EventBus } from './reporting.js';
import type { SecretResolver } from './secrets.js';

/** {@link RotationOptions} with every default applied. */
export type RotationSettings = Required<Omit<RotationOptions, 'escalateTo'>> &
  Pick<RotationOptions, 'escalateTo'>;

/** Applies the defaults of {@link RotationOptions}. */
export function rotationSettings(options: RotationOptions = {}): RotationSettings {
  return {
    defaultPolicy: options.defaultPolicy ?? 'files',
    signal: options.signal ?? 'SIGHUP',
    maxInFlight: options.maxInFlight ?? 16,
    jitterMs: options.jitterMs ?? 5_000,
    hookTimeoutMs: options.hookTimeoutMs ?? 30_000,
    stopTimeoutMs: options.stopTimeoutMs ?? 10_000,
    healthTimeoutMs: options.healthTimeoutMs ?? 60_000,
    retryBaseDelayMs: options.retryBaseDelayMs ?? 30_000,
    retryMaxDelayMs: options.retryMaxDelayMs ?? 600_000,
    escalateTo: options.escalateTo,
  };
}

/**
 * The actions a rotation may take, lightest first: the container's policy (or the default;
 * `replace` for a new environment value), then each heavier one up to its escalation limit
 * (the container's `dso.rotate.escalate`, else `rotation.escalateTo`), `hook` only when it has
 * a hook, `files` never as an escalation.
 */
export function policyChain(
  spec: ManagedSpec,
  envChanged: boolean,
  settings: Pick<RotationSettings, 'defaultPolicy' | 'escalateTo'>,
): LabelRotationPolicy[] {
  const first: LabelRotationPolicy = envChanged
    ? 'replace'
    : (spec.rotation?.policy ?? settings.defaultPolicy);
  const last = spec.rotation?.escalateTo ?? settings.escalateTo ?? first;
  const from = LABEL_ROTATION_POLICIES.indexOf(first);
  const to = Math.max(from, LABEL_ROTATION_POLICIES.indexOf(last));
  return LABEL_ROTATION_POLICIES.slice(from, to + 1).filter(
    (policy, index) =>
      index === 0 || (policy !== 'files' && (policy !== 'hook' || spec.rotation?.hook)),
  );
}

/** A failed replacement waiting for its retry. */
interface RetryEntry {
  /** Attempts that failed so far. */
  attempt: number;
  /** The next retry's timer; undefined once it fired. */
  timer: ClockTimer | undefined;
  /** The last failure, as status shows it until the replacement happens. */
  failure?: { spec: ManagedSpec; code: string; message: string; at: number };
}

/** A secret a rotation concerns, as the audit trail records it. */
export interface RotatedSecret {
  reference: string;
  provider: string;
  version: string;
}

/** What rotation needs from the agent. */
export interface RotationContext {
  runtime: Pick<
    DockerRuntime,
    'sendSignal' | 'exec' | 'restartContainer' | 'replaceContainer' | 'recoverReplacements'
  >;
  secrets: Pick<SecretResolver, 'resolveEach'>;
  store: Pick<
    DeliveredStore,
    'waitFor' | 'holdForRotation' | 'releaseRotation' | 'scheduleSave' | 'delete' | 'get' | 'set'
  >;
  settings: RotationSettings;
  /** Queues a delivery to a replacement's new container once it starts. */
  requestDelivery(containerId: string): void;
  /** A replaced container is gone: forget what the agent knew of it. */
  onReplaced(oldContainerId: string): void;
  /**
   * Queues a check of a container whose replacement failed: its retry (the check finds the
   * `dso://` values still to deliver and starts the replacement again). @default requestDelivery
   */
  requestCheck?(containerId: string): void;
  /** The status of each consumer: a failed replacement is shown there. Absent: not shown. */
  statuses?: Map<string, ContainerStatus>;
  logger: Logger;
  audit: AuditSink;
  bus: EventBus;
  metrics?: AgentMetrics | undefined;
  clock: Clock;
  /** A number in [0, 1), for the jitter. @default Math.random */
  random?: () => number;
}

/** Runs containers' rotation policies beside the delivery queue. */
export interface Rotations {
  /**
   * Starts a container's rotation after its files changed (a new version), unless one runs for
   * it already (the running one acts on files that now hold the new versions too). `before` is
   * what the state file keeps for the container until the action finishes. A replacement that
   * failed waits for its retry (backoff) when a periodic check or a resync finds it again;
   * any other `trigger` (`dso rotate`, `dso reconcile`, a restart of the container or of the
   * agent, a new version) tries it at once.
   */
  start(
    containerId: string,
    spec: ManagedSpec,
    secrets: readonly RotatedSecret[],
    envChanged: boolean,
    before: DeliveredState | undefined,
    trigger?: DeliveryTrigger,
  ): void;
  /** Rotations running or waiting for their turn. */
  readonly size: number;
  /** A container is gone: its pending retry (of a failed replacement) is dropped. */
  forget(containerId: string): void;
  /**
   * Waits up to `graceMs` for the running rotations, then aborts them (a replacement before its
   * swap rolls back: the old container keeps serving) and waits for them to unwind.
   */
  close(graceMs: number): Promise<void>;
  /**
   * Finishes or undoes replacements a crash interrupted (the runtime's decision table). Never
   * throws: what is left stays recognisable and is tried again at the next start.
   */
  recoverInterrupted(signal: AbortSignal): Promise<void>;
}

/**
 * Rotation: `files` does nothing more, `signal` signals the container, `hook` runs its command
 * in it, `restart` restarts it (its next start writes the files again), `replace` starts a new
 * container beside it with its `dso://` values resolved again and hands it the name once
 * healthy (rolled back otherwise). A failed action is followed by the next heavier one in its
 * {@link policyChain}. Actions across containers are bounded (`maxInFlight`) and spread
 * (`jitterMs`), so many consumers of one secret do not all restart at once.
 *
 * @example
 * const rotations = createRotations({ runtime, secrets, store, settings: rotationSettings(), … });
 * rotations.start(containerId, spec, secrets, false, previous);
 */
export function createRotations(context: RotationContext): Rotations {
  const { runtime, settings, logger, audit, bus, metrics, clock, store } = context;
  const random = context.random ?? Math.random;
  /** Whole ms since the epoch, for events. */
  const now = () => Math.floor(clock.now());
  const limiter = createLimiter(settings.maxInFlight);
  const running = new Map<string, Promise<void>>();
  const aborting = new AbortController();
  /** Containers whose replacement failed: attempts so far, and the timer of the next one. */
  const retries = new Map<string, RetryEntry>();

  /** Whether the files just delivered hold the same values as before (new versions only). */
  function filesUnchanged(containerId: string, before: DeliveredState | undefined): boolean {
    const after = store.get(containerId);
    return (
      before?.valuesDigest !== undefined &&
      after?.valuesDigest === before.valuesDigest &&
      after.startedAt === before.startedAt
    );
  }

  /**
   * Whether each `dso://` variable's current value is the one the container was created with
   * (its `dso.env-version.*` version, asked for again): a provider that stores an identical
   * value as a new version then costs no replacement. Any doubt (no created version, a pinned
   * reference, a version the provider no longer has or does not honour) answers false.
   */
  async function envValuesUnchanged(spec: ManagedSpec, signal: AbortSignal): Promise<boolean> {
    if (
      spec.env.length === 0 ||
      spec.env.some(
        (variable) =>
          variable.createdVersion === undefined || variable.reference.version !== undefined,
      )
    ) {
      return false;
    }
    const held: Array<{ value: { dispose(): void } }> = [];
    try {
      const current = await context.secrets.resolveEach(spec.env, signal);
      held.push(...current);
      const created = await context.secrets.resolveEach(
        spec.env.map((variable) => ({
          name: variable.name,
          reference: { ...variable.reference, version: variable.createdVersion as string },
        })),
        signal,
      );
      held.push(...created);
      return spec.env.every((variable, index) => {
        const now = current[index];
        const then = created[index];
        if (now === undefined || then === undefined) return false;
        if (then.version !== variable.createdVersion) return false; // the pin was not honoured
        const a = now.value.reveal();
        const b = then.value.reveal();
        return a.byteLength === b.byteLength && timingSafeEqual(a, b);
      });
    } catch (error) {
      if (signal.aborted) throw error;
      return false; // cannot tell: the replacement decides
    } finally {
      for (const one of held) one.value.dispose();
    }
  }

  function clearRetry(containerId: string): void {
    const entry = retries.get(containerId);
    if (entry?.timer !== undefined) clock.clearTimeout(entry.timer);
    retries.delete(containerId);
  }

  /** Schedules the next check of a container whose replacement failed; returns its delay. */
  function scheduleRetry(containerId: string): number {
    const entry: RetryEntry = retries.get(containerId) ?? { attempt: 0, timer: undefined };
    if (entry.timer !== undefined) clock.clearTimeout(entry.timer);
    entry.attempt += 1;
    const delayMs = Math.round(
      backoffDelay(entry.attempt, {
        baseMs: settings.retryBaseDelayMs,
        maxMs: settings.retryMaxDelayMs,
        random,
      }),
    );
    entry.timer = clock.setTimeout(() => {
      entry.timer = undefined;
      if (aborting.signal.aborted) return;
      (context.requestCheck ?? context.requestDelivery)(containerId);
    }, delayMs);
    (entry.timer as { unref?: () => void }).unref?.();
    retries.set(containerId, entry);
    return delayMs;
  }

  /**
   * A replacement for new `dso://` values did not happen: the container still runs the old
   * ones. The state says so (its environment digest goes back to what it was before, so every
   * later check, `dso rotate`, `dso reconcile`, an agent restart or a restart of the container
   * finds the values still to deliver and replaces again), status shows the failure with what
   * to do, and a retry is scheduled with backoff. Returns the message.
   */
  function replacementFailed(
    containerId: string,
    spec: ManagedSpec,
    before: DeliveredState | undefined,
    error: unknown,
    code: string,
  ): string {
    keepEnvUndelivered(containerId, before);
    const retryInMs = scheduleRetry(containerId);
    const message = replacementFailureMessage(containerId, spec, error, code, retryInMs);
    const entry = retries.get(containerId);
    if (entry !== undefined) entry.failure = { spec, code, message, at: now() };
    showFailure(containerId);
    return message;
  }

  /** The state keeps the environment the container runs: its values are still to deliver. */
  function keepEnvUndelivered(containerId: string, before: DeliveredState | undefined): void {
    const state = store.get(containerId);
    if (state !== undefined) {
      store.set(containerId, { ...state, envDigest: before?.envDigest ?? '' });
    }
  }

  /**
   * Shows a container's last failed replacement in status: failed, with the message, and the
   * versions it runs (those it was created with, not the new ones).
   */
  function showFailure(containerId: string): void {
    const failure = retries.get(containerId)?.failure;
    const statuses = context.statuses;
    if (failure === undefined || statuses === undefined) return;
    const { spec, code, message, at } = failure;
    const known = statuses.get(containerId);
    statuses.set(containerId, {
      ...known,
      id: containerId,
      // What the container runs: the versions it was created with, not the new ones.
      ...(known?.env === undefined
        ? {}
        : {
            env: known.env.map((entry) => ({
              ...entry,
              version:
                spec.env.find((variable) => variable.name === entry.name)?.createdVersion ??
                'unknown',
            })),
          }),
      lastAction: {
        trigger: known?.lastAction.trigger ?? 'changed',
        at,
        outcome: 'failed',
        code,
        message,
      },
    });
  }

  async function rotate(
    containerId: string,
    spec: ManagedSpec,
    secrets: readonly RotatedSecret[],
    envVersionsChanged: boolean,
    before: DeliveredState | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    const log = logger.child({ containerId: containerId.slice(0, 12) });
    let envChanged = envVersionsChanged;
    let sameEnvValues = false;
    try {
      sameEnvValues = envChanged && (await envValuesUnchanged(spec, signal));
    } catch {
      return; // aborted by a shutdown: the next agent redoes the rotation
    }
    if (sameEnvValues) {
      // A provider stored an identical value as a new version: nothing to replace.
      log.info(
        { variables: spec.env.map((variable) => variable.name) },
        'new dso:// versions carry the values the container runs: not replaced',
      );
      clearRetry(containerId);
      if (filesUnchanged(containerId, before)) return;
      envChanged = false;
    }
    const chain = policyChain(spec, envChanged, settings);
    const record = (policy: LabelRotationPolicy, outcome: 'ok' | 'error', code?: string) => {
      for (const { reference, provider, version } of secrets) {
        audit.record({
          actor: { kind: 'agent' },
          action: 'rotate',
          reference,
          provider,
          version,
          containerId,
          outcome,
          policy,
          ...(code === undefined ? {} : { code }),
        });
      }
    };
    if (chain[0] === 'files') {
      metrics?.rotation('files', 'ok', 0);
      record('files', 'ok');
      bus.emit({ type: 'rotated', at: now(), containerId, policy: 'files' });
      log.info({ policy: 'files' }, 'secrets rotated');
      return;
    }
    try {
      await sleep(random() * settings.jitterMs, { signal, clock });
      await limiter.run(
        async () => {
          for (const [index, policy] of chain.entries()) {
            signal.throwIfAborted();
            const started = performance.now();
            try {
              await runAction(policy, containerId, spec, signal);
              clearRetry(containerId);
              metrics?.rotation(policy, 'ok', performance.now() - started);
              record(policy, 'ok');
              bus.emit({ type: 'rotated', at: now(), containerId, policy });
              log.info({ policy }, 'secrets rotated');
              return;
            } catch (error) {
              if (signal.aborted) return;
              const code = errorCode(error) ?? 'DSO_ERROR';
              const details = (error as { details?: Record<string, unknown> }).details ?? {};
              const rolledBack =
                code === 'DSO_DOCKER_REPLACE_FAILED' && details.rollback === 'done';
              metrics?.rotation(
                policy,
                rolledBack ? 'rolled_back' : 'error',
                performance.now() - started,
              );
              record(policy, 'error', code);
              const next = chain[index + 1];
              // New dso:// values not delivered: recorded as such, shown, and retried.
              const message =
                envChanged && next === undefined
                  ? replacementFailed(containerId, spec, before, error, code)
                  : undefined;
              bus.emit({
                type: 'rotation-failed',
                at: now(),
                containerId,
                policy,
                code,
                rolledBack,
                ...(message === undefined ? {} : { message }),
              });
              // The files already hold the new versions: a container left as it is picks them
              // up at its next start or reload. Said loudly, not retried in a loop.
              log.warn(
                {
                  err: error,
                  code,
                  policy,
                  ...(rolledBack
                    ? { stage: details.stage, reason: details.reason, rollback: 'done' }
                    : {}),
                  ...(next === undefined ? {} : { escalatingTo: next }),
                  ...(message === undefined ? {} : { advice: message }),
                },
                rolledBack
                  ? 'replacement rolled back: the old container keeps serving'
                  : 'rotation action failed',
              );
            }
          }
        },
        { signal },
      );
    } catch (error) {
      if (signal.aborted) return;
      log.warn({ err: error, code: errorCode(error) }, 'rotation could not run');
    }
  }

  /** One rotation action on one container; throws when it failed. */
  async function runAction(
    policy: LabelRotationPolicy,
    containerId: string,
    spec: ManagedSpec,
    signal: AbortSignal,
  ): Promise<void> {
    switch (policy) {
      case 'files':
        return;
      case 'signal':
        await runtime.sendSignal(containerId, spec.rotation?.signal ?? settings.signal, {
          signal,
        });
        return;
      case 'hook': {
        const hook = spec.rotation?.hook;
        if (hook === undefined) {
          throw new DsoError(
            'DSO_AGENT_HOOK_FAILED',
            `container ${containerId.slice(0, 12)} has no ${LABELS.rotateHook} label: the hook policy has no command to run`,
          );
        }
        const result = await runtime.exec(containerId, {
          argv: hook,
          timeoutMs: settings.hookTimeoutMs,
          maxOutputBytes: 4_096,
          signal,
        });
        if (result.exitCode !== 0) {
          throw new DsoError(
            'DSO_AGENT_HOOK_FAILED',
            `the rotation hook of container ${containerId.slice(0, 12)} exited ${result.exitCode}`,
            { exitCode: result.exitCode },
          );
        }
        return;
      }
      case 'restart':
        await runtime.restartContainer(containerId, {
          stopTimeoutMs: settings.stopTimeoutMs,
          signal,
        });
        return;
      case 'replace':
        await replace(containerId, spec, signal);
        return;
    }
  }

  /**
   * Blue-green: a new container from the old one's configuration, its `dso://` variables
   * resolved again (values only in the create request's body), its files written once it
   * starts, named as the old one once healthy; any failure before that removes it and leaves
   * the old one serving (the runtime's replaceContainer). The old one is stopped and removed.
   */
  async function replace(
    containerId: string,
    spec: ManagedSpec,
    signal: AbortSignal,
  ): Promise<void> {
    const { env, labels } = await environmentFor(spec, signal);
    const result = await runtime.replaceContainer(containerId, {
      env,
      labels,
      health: { timeoutMs: settings.healthTimeoutMs },
      stopTimeoutMs: settings.stopTimeoutMs,
      hookTimeoutMs: settings.hookTimeoutMs,
      // Its files before the health wait (the start event queues the same delivery; a second
      // one changes nothing).
      onStarted: async (newId, hookSignal) => {
        if (spec.files.length === 0) return;
        context.requestDelivery(newId);
        await store.waitFor(newId, hookSignal);
      },
      signal,
    });
    bus.emit({ type: 'replaced', at: now(), containerId, newContainerId: result.newId });
    // The old container is gone: its state with it.
    clearRetry(containerId);
    context.onReplaced(containerId);
    logger.info(
      {
        containerId: containerId.slice(0, 12),
        newContainerId: result.newId.slice(0, 12),
        health: result.health,
        oldRemoved: result.oldRemoved,
        durationMs: Math.round(result.durationMs),
      },
      'container replaced',
    );
    if (!result.oldRemoved) {
      logger.warn(
        { err: result.cleanupError, containerId: containerId.slice(0, 12) },
        'the old container could not be removed: the next start of the agent finishes it',
      );
    }
  }

  /**
   * A replacement's environment: each `dso://` variable's new value, and a
   * `dso.env-version.<NAME>` label with its version (the next check, of this agent or the
   * next, compares them).
   * @throws DsoError DSO_AGENT_ENV_VALUE_BINARY for a value an environment variable cannot carry
   */
  async function environmentFor(
    spec: ManagedSpec,
    signal: AbortSignal,
  ): Promise<{ env: Record<string, string>; labels: Record<string, string> }> {
    const values = await context.secrets.resolveEach(spec.env, signal);
    const env: Record<string, string> = {};
    const labels: Record<string, string> = {};
    try {
      const decoder = new TextDecoder('utf-8', { fatal: true });
      for (const { name, value, version } of values) {
        let text: string | undefined;
        try {
          text = decoder.decode(value.reveal());
        } catch {
          text = undefined; // not UTF-8: refused below, as a NUL byte is
        }
        if (text === undefined || text.includes('\0')) {
          // As `dso up` refuses it: an environment variable cannot carry these bytes.
          const entry = spec.env.find((variable) => variable.name === name);
          const reference = entry === undefined ? name : formatReference(entry.reference);
          throw new DsoError(
            'DSO_AGENT_ENV_VALUE_BINARY',
            `the new value of ${name} (${reference}) is not UTF-8 text without NUL bytes, which an environment variable cannot carry: deliver it as a file with dsofile://`,
            { variable: name, reference },
          );
        }
        env[name] = text;
        labels[`${LABELS.envVersionPrefix}${name}`] = version;
      }
    } finally {
      for (const { value } of values) value.dispose();
    }
    return { env, labels };
  }

  return {
    start(containerId, spec, secrets, envChanged, before, trigger) {
      if (running.has(containerId)) {
        // One at a time per container: the running one acts on files that now hold the new
        // versions too, and a replacement's new container is checked again on its own.
        logger.info(
          { containerId: containerId.slice(0, 12) },
          'rotation already running for this container; not started twice',
        );
        return;
      }
      if (
        envChanged &&
        retries.get(containerId)?.timer !== undefined &&
        (trigger === 'periodic' || trigger === 'resync')
      ) {
        // Its retry is scheduled (backoff): a periodic check does not hurry it. The check just
        // recorded the new versions: the state goes back to the values the container runs.
        logger.debug(
          { containerId: containerId.slice(0, 12), trigger },
          'failed replacement waits for its retry',
        );
        keepEnvUndelivered(containerId, before);
        // The delivery reports its files next (synchronously, after this call): the failure
        // stays what status shows until the replacement happens.
        queueMicrotask(() => showFailure(containerId));
        return;
      }
      if (envChanged && retries.get(containerId)?.failure !== undefined) {
        queueMicrotask(() => showFailure(containerId)); // as above, while the retry runs
      }
      if (!envChanged && filesUnchanged(containerId, before)) {
        // New versions, same values (a provider that versions identical values): the files
        // already hold what the application has, so no action (no restart for nothing).
        logger.info(
          { containerId: containerId.slice(0, 12) },
          'new versions carry the same values: no rotation action',
        );
        return;
      }
      store.holdForRotation(containerId, before);
      const run = rotate(containerId, spec, secrets, envChanged, before, aborting.signal).finally(
        () => {
          running.delete(containerId);
          // Done, failed or rolled back: not to be redone by the next agent. Aborted by a
          // shutdown: left for the next agent to redo.
          if (!aborting.signal.aborted) store.releaseRotation(containerId);
          else store.scheduleSave();
        },
      );
      running.set(containerId, run);
    },
    get size() {
      return running.size;
    },
    forget: clearRetry,
    async close(graceMs) {
      for (const id of [...retries.keys()]) clearRetry(id);
      if (running.size > 0) {
        logger.info({ rotations: running.size, graceMs }, 'waiting for rotations');
        const settled = Promise.allSettled([...running.values()]);
        const grace = new AbortController();
        await Promise.race([settled, pause(graceMs, { signal: grace.signal, clock })]);
        grace.abort();
        aborting.abort();
        await settled;
      }
      aborting.abort();
    },
    async recoverInterrupted(signal) {
      try {
        const entries = await runtime.recoverReplacements({
          stopTimeoutMs: settings.stopTimeoutMs,
          signal,
        });
        for (const entry of entries) {
          const fields = {
            name: entry.name,
            oldContainerId: entry.oldId.slice(0, 12),
            newContainerId: entry.newId.slice(0, 12),
            action: entry.action,
            ...(entry.reason === undefined ? {} : { reason: entry.reason }),
          };
          if (entry.action === 'blocked') {
            logger.warn(
              { ...fields, err: entry.error },
              'an interrupted replacement needs a decision: both containers are left as they are',
            );
          } else {
            logger.info(fields, 'interrupted replacement recovered');
          }
        }
      } catch (error) {
        if (signal.aborted) return;
        logger.warn(
          { err: error, code: errorCode(error) },
          'could not check for interrupted replacements; tried again at the next start',
        );
      }
    },
  };
}

/** Why a replacement failed, as `details.reason` of DSO_DOCKER_REPLACE_FAILED says it. */
const CANNOT_RUN_TWICE = new Set([
  'fixed-host-port',
  'fixed-ip',
  'fixed-mac-address',
  'network-dependents',
  'exited',
  'restarted',
]);

/**
 * What a failed replacement means for the operator: which values the container still runs,
 * when it is tried again, and what to do (references, versions and reasons; never a value).
 */
export function replacementFailureMessage(
  containerId: string,
  spec: Pick<ManagedSpec, 'env'>,
  error: unknown,
  code: string,
  retryInMs: number,
): string {
  const details = (error as { details?: Record<string, unknown> } | undefined)?.details ?? {};
  const reason = typeof details.reason === 'string' ? details.reason : undefined;
  const stage = typeof details.stage === 'string' ? details.stage : undefined;
  const running = spec.env
    .map(
      (variable) =>
        `${variable.name} ${formatReference(variable.reference)}${
          variable.createdVersion === undefined ? '' : ` version ${variable.createdVersion}`
        }`,
    )
    .join(', ');
  const cause =
    error instanceof Error ? error.message.slice(0, 300) : 'the replacement did not happen';
  let advice: string;
  if (reason !== undefined && CANNOT_RUN_TWICE.has(reason)) {
    advice =
      'a container that cannot run twice at once (a fixed host port or address, a fixed port on the host network) cannot be replaced beside itself, and a restart (dso.rotate=restart) keeps the environment it was created with: deliver the secret as a file (dsofile://, rotated in place without a new container), or recreate the container yourself (dso up) to give it the new value';
  } else if (reason === 'unhealthy' || reason === 'health-timeout') {
    advice =
      "the new container did not prove healthy within rotation.healthTimeoutMs: see its health check and the log tail in the agent's log";
  } else {
    advice = "see the agent's log for the cause";
  }
  return `the replacement of container ${containerId.slice(0, 12)} for its new dso:// values did not happen (${code}${
    reason === undefined ? '' : `, ${reason}${stage === undefined ? '' : ` at ${stage}`}`
  }: ${cause}); it still runs the old values (${running}); tried again in ${Math.ceil(
    retryInMs / 1_000,
  )} s with backoff, and at dso rotate, dso reconcile, an agent restart or its own restart; ${advice}`;
}
