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
import {
  type DockerRuntime,
  SWARM_DEFAULT_RESTART_DELAY_MS,
  type SwarmService,
  type SwarmTask,
  swarmTaskOf,
} from '@dso/docker-runtime';
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
    | 'sendSignal'
    | 'exec'
    | 'restartContainer'
    | 'stopContainer'
    | 'replaceContainer'
    | 'recoverReplacements'
    | 'inspectContainer'
    | 'listContainers'
    | 'inspectSwarmService'
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
   * agent, a new version) tries it at once. `task` is the Swarm task the container runs, read
   * from the labels the caller just inspected ({@link swarmTaskOf}); undefined for any other
   * container. A task is never restarted in place: were one passed without it, the runtime
   * refuses its restart (DSO_DOCKER_RESTART_REFUSED).
   */
  start(
    containerId: string,
    spec: ManagedSpec,
    secrets: readonly RotatedSecret[],
    envChanged: boolean,
    before: DeliveredState | undefined,
    trigger?: DeliveryTrigger,
    task?: SwarmTask,
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
 * in it, `restart` restarts it (its next start writes the files again; a Swarm task is stopped
 * instead, and Swarm starts the task that replaces it: see {@link taskRestartRefusal}; a
 * service's tasks on this node one at a time), `replace` starts a new
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
  /** Per Swarm service: the end of the last task restart queued, so they run one at a time. */
  const serviceTurns = new Map<string, Promise<void>>();

  /**
   * Runs `task` after every earlier call for the same key has finished (`undefined`: at once).
   * A service's tasks are stopped one at a time, each after the last one's replacement ran.
   */
  async function inTurn(key: string | undefined, task: () => Promise<void>): Promise<void> {
    if (key === undefined) return task();
    const previous = serviceTurns.get(key) ?? Promise.resolve();
    const mine = previous.then(task, task);
    const settled = mine.then(
      () => undefined,
      () => undefined,
    );
    serviceTurns.set(key, settled);
    try {
      await mine;
    } finally {
      if (serviceTurns.get(key) === settled) serviceTurns.delete(key);
    }
  }

  /**
   * `restart` on a Swarm task: a restarted task container would run on beside the task Swarm
   * starts in its place (Swarm sees its task end), so the agent stops it and Swarm's restart
   * policy starts the replacement, to which the agent delivers as it starts. Refused (before
   * anything is stopped) when this node can tell that Swarm would not replace it. Waits for
   * the replacement to run on this node, at most the service's restart delay plus
   * `healthTimeoutMs` (it may run on another node). Returns what was done, by names.
   * @throws DsoError DSO_AGENT_TASK_RESTART_REFUSED when the service's restart policy would not
   *   replace a stopped task, or could not be read (a manager that did not answer): nothing
   *   stopped
   */
  async function restartTask(
    containerId: string,
    task: SwarmTask,
    signal: AbortSignal,
  ): Promise<string> {
    let service: SwarmService | undefined;
    try {
      service = await runtime.inspectSwarmService(task.serviceId, { signal });
    } catch (error) {
      if (signal.aborted) throw error;
      throw new DsoError('DSO_AGENT_TASK_RESTART_REFUSED', taskPolicyUnknown(task, error), {
        cause: error,
        task: task.taskName,
        service: task.serviceName,
      });
    }
    const refusal = taskRestartRefusal(task, service);
    if (refusal !== undefined) {
      throw new DsoError('DSO_AGENT_TASK_RESTART_REFUSED', refusal, {
        task: task.taskName,
        service: task.serviceName,
      });
    }
    await runtime.stopContainer(containerId, { stopTimeoutMs: settings.stopTimeoutMs, signal });
    const waitMs =
      (service?.restart.delayMs ?? SWARM_DEFAULT_RESTART_DELAY_MS) + settings.healthTimeoutMs;
    const replacement = await replacementOf(task, waitMs, signal);
    return taskRestartMessage(task, service, replacement, waitMs);
  }

  /** The task that took `task`'s slot, once it runs on this node; undefined after `waitMs`. */
  async function replacementOf(
    task: SwarmTask,
    waitMs: number,
    signal: AbortSignal,
  ): Promise<SwarmTask | undefined> {
    const deadline = clock.now() + waitMs;
    for (;;) {
      try {
        const listed = await runtime.listContainers({
          label: `com.docker.swarm.service.id=${task.serviceId}`,
          signal,
        });
        for (const container of listed) {
          const other = swarmTaskOf(container.labels);
          if (
            container.state === 'running' &&
            other?.slot === task.slot &&
            other.taskId !== task.taskId
          ) {
            return other;
          }
        }
      } catch (error) {
        if (signal.aborted) throw error;
        // The engine did not answer this time: asked again until the deadline.
      }
      const left = deadline - clock.now();
      if (left <= 0) return undefined;
      await sleep(Math.min(REPLACEMENT_POLL_MS, left), { signal, clock });
    }
  }

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
    task: SwarmTask | undefined,
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
    const record = (
      policy: LabelRotationPolicy,
      outcome: 'ok' | 'error' | 'refused',
      code?: string,
      task?: SwarmTask,
      reason?: string,
    ) => {
      for (const { reference, provider, version } of secrets) {
        audit.record({
          actor: { kind: 'agent' },
          action: 'rotate',
          reference,
          provider,
          version,
          containerId,
          // A task's container is named after its task (`web.1.<task id>`).
          ...(task === undefined ? {} : { containerName: task.taskName }),
          outcome,
          policy,
          ...(code === undefined ? {} : { code }),
          ...(reason === undefined ? {} : { reason: reason.slice(0, 300) }),
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
      // A Swarm task's restart waits for those of its service's other tasks on this node.
      const turn = chain.includes('restart') ? task?.serviceId : undefined;
      await inTurn(turn, async () => {
        await limiter.run(
          async () => {
            for (const [index, policy] of chain.entries()) {
              signal.throwIfAborted();
              const started = performance.now();
              try {
                const done = await runAction(policy, containerId, spec, signal, task);
                clearRetry(containerId);
                metrics?.rotation(policy, 'ok', performance.now() - started);
                record(policy, 'ok', undefined, task);
                bus.emit({
                  type: 'rotated',
                  at: now(),
                  containerId,
                  policy,
                  ...(done === undefined ? {} : { message: done }),
                });
                if (done !== undefined) {
                  showDone(containerId, done);
                  log.info(
                    { policy, task: task?.taskName, service: task?.serviceName, action: done },
                    'swarm task stopped; Swarm replaces it',
                  );
                } else {
                  log.info({ policy }, 'secrets rotated');
                }
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
                // Refused by what the container is (a Swarm task Swarm would not replace, or
                // would not let be replaced): recorded as a refusal, its message shown.
                const refusal = refusalOf(error, code);
                record(policy, refusal === undefined ? 'error' : 'refused', code, task, refusal);
                const next = chain[index + 1];
                // New dso:// values not delivered: recorded as such, shown, and retried.
                const message =
                  envChanged && next === undefined
                    ? replacementFailed(containerId, spec, before, error, code)
                    : refusal;
                if (refusal !== undefined && message === refusal) {
                  showRefusal(containerId, code, refusal);
                }
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
      });
    } catch (error) {
      if (signal.aborted) return;
      log.warn({ err: error, code: errorCode(error) }, 'rotation could not run');
    }
  }

  /** A stopped task's status says what was done (its state turns `exited` as it stops). */
  function showDone(containerId: string, message: string): void {
    const known = context.statuses?.get(containerId);
    if (known === undefined) return;
    context.statuses?.set(containerId, { ...known, lastAction: { ...known.lastAction, message } });
  }

  /** A refused action shows in status as a failure with its code and what to do. */
  function showRefusal(containerId: string, code: string, message: string): void {
    const statuses = context.statuses;
    if (statuses === undefined) return;
    const known = statuses.get(containerId);
    const failure = { trigger: known?.lastAction.trigger ?? ('changed' as const), at: now(), code };
    statuses.set(containerId, {
      ...known,
      id: containerId,
      lastAction: { ...failure, outcome: 'failed', message },
      lastFailure: { ...failure, message },
    });
  }

  /**
   * One rotation action on one container; throws when it failed. Returns what was done when it
   * says more than the policy (a Swarm task stopped, by names).
   */
  async function runAction(
    policy: LabelRotationPolicy,
    containerId: string,
    spec: ManagedSpec,
    signal: AbortSignal,
    task: SwarmTask | undefined,
  ): Promise<string | undefined> {
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
        if (task !== undefined) return restartTask(containerId, task, signal);
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
    start(containerId, spec, secrets, envChanged, before, trigger, task) {
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
      const run = rotate(
        containerId,
        spec,
        secrets,
        envChanged,
        before,
        task,
        aborting.signal,
      ).finally(() => {
        running.delete(containerId);
        // Done, failed or rolled back: not to be redone by the next agent. Aborted by a
        // shutdown: left for the next agent to redo.
        if (!aborting.signal.aborted) store.releaseRotation(containerId);
        else store.scheduleSave();
      });
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

/** How often a task restart asks the engine whether the stopped task's replacement runs. */
const REPLACEMENT_POLL_MS = 500;

/**
 * Why stopping a Swarm task for `dso.rotate=restart` would not be safe, or undefined when it is.
 * Swarm replaces a stopped task only under the restart condition `any` (its default):
 * `on-failure` leaves a task that exits 0 on SIGTERM ended, `none` any task. And only while
 * the service has restart attempts left: with `--restart-max-attempts` set, each stop uses
 * one, and once they are used up a stopped task stays ended. Either way the service would run
 * a replica short. A worker node cannot read the service (`service` undefined): the restart
 * goes ahead, and the README says to keep Swarm's defaults there.
 */
export function taskRestartRefusal(
  task: SwarmTask,
  service: SwarmService | undefined,
): string | undefined {
  if (service === undefined) return undefined;
  const { condition, maxAttempts } = service.restart;
  const flags: string[] = [];
  const policy: string[] = [];
  if (condition !== 'any') {
    flags.push('--restart-condition any');
    policy.push(`restart condition ${condition}`);
  }
  if (maxAttempts > 0) {
    flags.push('--restart-max-attempts 0');
    policy.push(`restart max attempts ${maxAttempts}`);
  }
  if (flags.length === 0) return undefined;
  const why =
    condition !== 'any'
      ? 'Swarm would not replace a task the agent stops'
      : 'each stop uses one of its restart attempts, and once they are used up Swarm would not replace a task the agent stops';
  return `dso.rotate=restart refused on task ${task.taskName} of Swarm service ${task.serviceName} (${policy.join(', ')}): run docker service update ${flags.join(' ')} ${task.serviceName}, or use dso.rotate=signal, hook or files; ${why}, and the service would run a replica short`;
}

/**
 * The message of a task restart refused because the manager did not say the service's restart
 * policy (a timeout, an engine error): a task is stopped only when Swarm is known to replace it.
 */
export function taskPolicyUnknown(task: SwarmTask, error: unknown): string {
  const code = errorCode(error) ?? 'DSO_ERROR';
  const cause = error instanceof Error ? error.message : String(error);
  return `dso.rotate=restart not done on task ${task.taskName} of Swarm service ${task.serviceName}: run dso rotate once the engine answers; the restart policy of the service could not be read (${code}: ${cause}), and a task is stopped only when Swarm is known to replace it (nothing was stopped)`;
}

/**
 * What a task restart did, by names: the task stopped, its service, and the task that took its
 * place on this node (or that none did in `waitMs`, and why that may be).
 */
export function taskRestartMessage(
  task: SwarmTask,
  service: SwarmService | undefined,
  replacement: SwarmTask | undefined,
  waitMs: number,
): string {
  const done = `stopped task ${task.taskName} of service ${task.serviceName}; Swarm replaces it`;
  if (replacement !== undefined) return `${done} (task ${replacement.taskName} runs)`;
  return `${done} (no replacement ran on this node within ${Math.ceil(waitMs / 1_000)} s: Swarm may have placed it on another node${
    service === undefined
      ? ", or the service's restart condition is not any (this worker node cannot read it)"
      : ''
  })`;
}

/**
 * The message of a rotation action refused for what the container is, to show and audit as a
 * refusal: a Swarm task's restart Swarm would not follow, or its replacement (a service owns
 * its tasks). Undefined for any other failure.
 */
export function refusalOf(error: unknown, code: string): string | undefined {
  const details = (error as { details?: Record<string, unknown> } | undefined)?.details ?? {};
  if (!(error instanceof Error)) return undefined;
  if (code === 'DSO_AGENT_TASK_RESTART_REFUSED') return error.message;
  if (code === 'DSO_DOCKER_RESTART_REFUSED' && details.reason === 'swarm-task') {
    return `${error.message}; nothing was stopped (dso.rotate=restart stops a task the agent knows by its labels as one: run dso reconcile)`;
  }
  if (code === 'DSO_DOCKER_REPLACE_FAILED' && details.reason === 'swarm-task') {
    return `${error.message}: dso.rotate=replace never runs on a Swarm task (its service owns its containers); use dso.rotate=restart (the agent stops the task and Swarm starts a new one, which gets the new files), signal, hook or files`;
  }
  return undefined;
}
