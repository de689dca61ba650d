import { createHash } from 'node:crypto';
import {
  type EventQueueWorkerContext,
  errorCode,
  isRetryable,
  type Logger,
  type ManagedSpec,
  parseManagedLabels,
} from '@dso/core';
import { type DockerRuntime, type NumericOwner, swarmTaskOf } from '@dso/docker-runtime';
import type { DeliveredFile, DeliveryTrigger } from './agent-types.js';
import type { Consumption } from './consumption.js';
import type { DeliveredState } from './delivered-state.js';
import type { DeliveredStore } from './delivered-store.js';
import type { HostFolders } from './host-folders.js';
import type { LabelWarnings } from './label-warnings.js';
import type { AgentMetrics } from './observability.js';
import type { ContainerFacts, Outcomes } from './outcomes.js';
import type { Rotations } from './rotation.js';
import type { ResolvedFile, SecretResolver } from './secrets.js';

/**
 * A digest of what a delivery writes, minus the values: names, references, versions, target,
 * mode and owner. Equal digests mean equal files (versions identify values).
 */
export function digestOf(
  spec: Pick<ManagedSpec, 'target' | 'mode' | 'owner'>,
  files: ReadonlyArray<Pick<ResolvedFile, 'name' | 'reference' | 'provider' | 'version'>>,
  user: string,
): string {
  const hash = createHash('sha256');
  hash.update(JSON.stringify([spec.target, spec.mode, spec.owner ?? user]));
  for (const file of files) {
    hash.update(JSON.stringify([file.name, file.reference, file.provider, file.version]));
  }
  return hash.digest('hex');
}

/** A digest of the `dso://` variables' names and versions. */
export function envDigestOf(env: ReadonlyArray<Pick<DeliveredFile, 'name' | 'version'>>): string {
  return createHash('sha256')
    .update(JSON.stringify(env.map((entry) => [entry.name, entry.version])))
    .digest('hex');
}

/** What {@link rotationNeeded} compares. */
export interface DeliveryFacts {
  /** What was delivered before to this container (undefined: never, as far as the agent knows). */
  previous: DeliveredState | undefined;
  /** This run's start time and the digests of what is delivered now. */
  current: DeliveredState;
  /** The variables' versions could not be checked this time. */
  envUnknown: boolean;
  /** Each `dso.env.*` variable's version when the container was created (its labels). */
  createdVersions: ReadonlyArray<string | undefined>;
  /** Each variable's current version, in the same order. */
  envVersions: ReadonlyArray<string | undefined>;
}

/**
 * Whether a delivery follows new versions into a container that was already running with the
 * old ones (then its policy must tell it), and whether a `dso://` value changed (then only a
 * replacement can reach it). A first delivery, a restart's, or an agent restart with nothing
 * changed is no rotation. A container created with an older version than the current one (its
 * `dso.env-version.*` labels) is replaced once, at first sight or when the versions move
 * again, never in a loop.
 */
export function rotationNeeded(facts: DeliveryFacts): { rotate: boolean; envChanged: boolean } {
  const { previous, current } = facts;
  const sameRun = previous !== undefined && previous.startedAt === current.startedAt;
  const createdStale =
    !facts.envUnknown &&
    (previous === undefined || previous.envDigest !== current.envDigest) &&
    facts.createdVersions.some(
      (created, index) => created !== undefined && created !== facts.envVersions[index],
    );
  const envChanged = createdStale || (sameRun && previous.envDigest !== current.envDigest);
  return { rotate: envChanged || (sameRun && previous.digest !== current.digest), envChanged };
}

/** What delivery needs from the agent. */
export interface DeliveryContext {
  runtime: Pick<DockerRuntime, 'inspectContainer' | 'writeFiles' | 'resolveUser'>;
  secrets: SecretResolver;
  hostFolders: HostFolders;
  store: DeliveredStore;
  consumption: Pick<Consumption, 'record'>;
  rotations: Pick<Rotations, 'start'>;
  /** Status, events and audit of each delivery's outcome. */
  outcomes: Outcomes;
  /** A delivery succeeded: the container's give-up count starts over. */
  onDelivered(containerId: string): void;
  logger: Logger;
  metrics?: AgentMetrics | undefined;
  /** Unknown `dso.*` labels and near-miss references: status, event, log and audit. */
  labelWarnings?: LabelWarnings;
  /**
   * The rotation status names for a container without `dso.rotate*` labels, e.g.
   * `files (the agent's default: rotation in dso.yaml)`. Absent: none is named.
   */
  defaultRotation?: string;
}

/**
 * Runs a wait that is not engine work (a secret store's answer) without holding one of the
 * delivery queue's engine slots; resolves once the caller holds a slot again. The queue's
 * {@link EventQueueWorkerContext.outside}.
 */
export type OutsideSlot = <R>(work: () => Promise<R>) => Promise<R>;

/** Runs the work where it is: for a caller that has no slots to give back (tests, one-offs). */
export const IN_PLACE: OutsideSlot = (work) => work();

/**
 * Delivers one container's files: inspect, resolve, compare with what was delivered to this
 * run, write (host folder or exec), record, and hand new versions to rotation. The secrets are
 * resolved `outside` the engine slot the delivery holds, so a slow or hung store holds none:
 * it costs its own deliveries only (each provider has its own concurrency and deadline). A
 * failure is reported here, then thrown: the queue asks the error whether it may pass
 * ({@link isRetryable}) and retries it with backoff, or leaves it for the container's next
 * change.
 */
export type Deliver = (
  containerId: string,
  trigger: DeliveryTrigger,
  signal: AbortSignal,
  attempt: number,
  outside?: OutsideSlot,
) => Promise<void>;

/**
 * @example
 * const deliver = createDelivery({ runtime, secrets, hostFolders, store, … });
 * await deliver(containerId, 'started', signal, 1);
 */
export function createDelivery(context: DeliveryContext): Deliver {
  const { runtime, secrets, hostFolders, store, outcomes, logger, metrics } = context;

  /** The numeric owner of a container's files: its user as the container itself maps it. */
  async function ownerOf(
    containerId: string,
    user: string,
    signal: AbortSignal,
  ): Promise<NumericOwner> {
    if (user === '' || user === 'root') return { uid: 0, gid: 0 };
    const numeric = /^(\d+):(\d+)$/.exec(user);
    if (numeric) return { uid: Number(numeric[1]), gid: Number(numeric[2]) };
    // A name, or a uid whose primary group is in the image's /etc/passwd.
    return runtime.resolveUser(containerId, { signal });
  }

  /**
   * The versions its dso:// environment values have now (set when it was created): only for
   * noticing a new version. A failure never keeps the files from a container: they are
   * written, the check is logged, and the next one tries again.
   */
  async function envVersionsOf(
    spec: ManagedSpec,
    signal: AbortSignal,
    log: Logger,
  ): Promise<DeliveredFile[] | undefined> {
    try {
      return await secrets.versionsOf(spec.env, signal);
    } catch (error) {
      if (signal.aborted || spec.files.length === 0) throw error;
      log.warn(
        {
          err: error,
          code: errorCode(error),
          causeCode: errorCode((error as { cause?: unknown }).cause),
        },
        'could not check the versions of its dso:// environment values; its files are delivered',
      );
      return undefined;
    }
  }

  return async function deliver(containerId, trigger, signal, attempt, outside = IN_PLACE) {
    const started = performance.now();
    const log = logger.child({ containerId: containerId.slice(0, 12) });
    let spec: ManagedSpec | undefined;
    // For status, events and the audit line of a refusal: the container's name once inspected.
    let containerName: string | undefined;
    let facts: ContainerFacts | undefined;
    let resolved: ResolvedFile[] = [];
    let method: 'exec' | 'host' = 'exec';
    let warnings: ReturnType<LabelWarnings['check']> | undefined;
    try {
      const details = await runtime.inspectContainer(containerId, { signal });
      containerName = details.name;
      facts = { name: details.name, state: details.state };
      if (!details.running) return;
      warnings = context.labelWarnings?.check(containerId, details.name, details.labels);
      spec = parseManagedLabels(details.labels);
      facts = { ...facts, ...rotationOf(spec, context.defaultRotation) };
      if (!spec || (spec.files.length === 0 && spec.env.length === 0)) return;
      const managed = spec;
      // Waiting on providers holds no engine slot; `resolved` is set as soon as it exists, so
      // the values are zeroed below whatever happens next.
      const checked = await outside(async () => {
        resolved = await secrets.resolveFiles(managed.files, signal);
        return envVersionsOf(managed, signal, log);
      });
      const previous = store.get(containerId);
      const env = checked ?? [];
      const current: DeliveredState = {
        digest: digestOf(spec, resolved, details.user),
        envDigest: checked === undefined ? (previous?.envDigest ?? '') : envDigestOf(env),
        startedAt: details.startedAt,
        // In memory only: a new version with the same values needs no rotation action.
        valuesDigest: store.valuesDigestOf(resolved.map((file) => file.content)),
      };
      const hostKey = await hostFolders.keyOf(details, spec.target, signal);
      if (
        trigger !== 'started' &&
        previous !== undefined &&
        previous.digest === current.digest &&
        previous.envDigest === current.envDigest &&
        previous.startedAt === current.startedAt
      ) {
        // Already there, same versions, same run of the container: a second event or a
        // reconciliation has no second effect. (A restarted agent still learns which host
        // folder is this container's, to empty it when the container stops.)
        if (hostKey !== undefined) hostFolders.remember(containerId, hostKey);
        secrets.hold(
          containerId,
          resolved.map((file) => file.content),
        );
        log.debug({ trigger }, 'secrets up to date');
        outcomes.upToDate(containerId, trigger, {
          files: resolved,
          env,
          container: facts,
          // From the state file after an agent restart: when the files were written.
          ...(previous.deliveredAt === undefined ? {} : { deliveredAt: previous.deliveredAt }),
        });
        return;
      }
      const files = resolved.map(({ name, content }) => ({ name, content }));
      let result: { files: number; bytes: number };
      if (files.length === 0) {
        result = { files: 0, bytes: 0 };
      } else if (hostKey !== undefined) {
        // The container bind-mounts its folder from the host tmpfs: written in place, no exec.
        const owner = spec.owner ?? (await ownerOf(containerId, details.user, signal));
        signal.throwIfAborted();
        result = hostFolders.write(containerId, hostKey, { files, mode: spec.mode, owner });
      } else {
        result = await runtime.writeFiles(containerId, {
          target: spec.target,
          files,
          mode: spec.mode,
          owner: spec.owner,
          // Just inspected: the runtime need not inspect it again.
          containerUser: details.user,
          signal,
        });
      }
      method = hostKey === undefined ? 'exec' : 'host';
      store.set(containerId, current);
      // The container holds these values now (and no longer its previous ones): the redactor too.
      secrets.hold(
        containerId,
        files.map((file) => file.content),
      );
      context.consumption.record(containerId, [
        ...spec.files.flatMap((file, index) => {
          const got = resolved[index];
          return file.reference.version || got === undefined
            ? []
            : [{ provider: got.provider, path: file.reference.path, version: got.version }];
        }),
        ...spec.env.flatMap((variable, index) => {
          const got = env[index];
          return variable.reference.version || got === undefined
            ? []
            : [{ provider: got.provider, path: variable.reference.path, version: got.version }];
        }),
      ]);
      context.onDelivered(containerId);
      const { rotate, envChanged } = rotationNeeded({
        previous,
        current,
        envUnknown: checked === undefined,
        createdVersions: spec.env.map((variable) => variable.createdVersion),
        envVersions: spec.env.map((_, index) => env[index]?.version),
      });
      const durationMs = Math.round((performance.now() - started) * 100) / 100;
      if (files.length > 0) metrics?.injection(method, 'ok', durationMs);
      // Reported before a rotation starts, so `delivered` comes before that rotation's events.
      // The time the store stamped: status tells the same one after an agent restart.
      outcomes.delivered(
        containerId,
        trigger,
        resolved,
        method,
        env,
        facts,
        store.get(containerId)?.deliveredAt,
      );
      outcomes.written(resolved, { containerId }, durationMs);
      if (rotate) {
        context.rotations.start(
          containerId,
          spec,
          [...resolved, ...env],
          envChanged,
          previous,
          trigger,
          // A Swarm task is known by the labels just inspected, never by a later call that may fail.
          swarmTaskOf(details.labels),
        );
      }
      log.info(
        { files: result.files, bytes: result.bytes, trigger, durationMs: Math.round(durationMs) },
        'secrets delivered',
      );
    } catch (error) {
      if (signal.aborted) return;
      // The error says whether it may pass (an engine or provider that was unavailable).
      const retry = isRetryable(error);
      metrics?.injection(method, 'error', performance.now() - started);
      outcomes.failed(
        containerId,
        trigger,
        error,
        { containerId, ...(containerName === undefined ? {} : { containerName }) },
        facts === undefined ? {} : { container: facts },
      );
      log.warn(
        {
          err: error,
          code: errorCode(error),
          // The provider's own code (not found, unauthorized, …) under the agent's wrapper.
          causeCode: errorCode((error as { cause?: unknown }).cause),
          target: spec?.target,
          trigger,
          attempt,
          retry,
        },
        'secrets not delivered',
      );
      // Thrown either way: the queue retries what may pass, and gives up on the rest until
      // the container changes (see delivery-queue.ts).
      throw error;
    } finally {
      for (const file of resolved) file.content.fill(0);
      // After the outcome: a status the delivery just replaced gets its warnings back.
      if (warnings !== undefined) context.labelWarnings?.show(containerId, trigger, warnings);
    }
  };
}

/** A container's rotation policy as its labels say it, for status, else the agent's default. */
function rotationOf(
  spec: ManagedSpec | undefined,
  defaultRotation: string | undefined,
): { rotation?: string } {
  const rotation = spec?.rotation;
  if (rotation === undefined)
    return defaultRotation === undefined ? {} : { rotation: defaultRotation };
  const signal = rotation.signal === undefined ? '' : ` ${rotation.signal}`;
  const escalate = rotation.escalateTo === undefined ? '' : `, escalates to ${rotation.escalateTo}`;
  return { rotation: `${rotation.policy}${signal}${escalate}` };
}
