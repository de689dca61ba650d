/**
 * Clone-and-replace: recreate a container with changed environment beside the old one, switch
 * to it once healthy, roll back otherwise; and recovery of replacements a crash interrupted.
 *
 * Every intermediate state is recognisable from what the engine holds. The new container N
 * carries three labels ({@link REPLACE_LABELS}): the old container's full id, the name it
 * replaces, and a generation. Temporary names are derived from the old id, so recovery (and a
 * second replace) can tell "created, not swapped" from "swapped, old not removed yet":
 *
 * | step                        | old O                       | new N                        |
 * | --------------------------- | --------------------------- | ---------------------------- |
 * | before                      | `NAME`, running             | —                            |
 * | 1 create, start, health     | `NAME`, running             | `NAME-dso-next-<O:12>`       |
 * | 2 rename O                  | `NAME-dso-old-<O:12>`       | `NAME-dso-next-<O:12>`       |
 * | 3 rename N (committed)      | `NAME-dso-old-<O:12>`       | `NAME`                       |
 * | 4 stop, remove O            | —                           | `NAME`                       |
 *
 * A rollback walks back the same way (O renamed back first, N removed last), so it too only
 * passes through rows of this table.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { abortable } from '@dso/async';
import { createRedactor, DEFAULT_REDACTION_MIN_LENGTH, type Redactor } from '@dso/core';
import type Docker from 'dockerode';
import { assertContainerId } from './container-id.js';
import { Deadline } from './deadline.js';
import { DockerStreamDemuxer, TailBuffer } from './demux.js';
import type { EngineContext } from './engine-context.js';
import { type ContainerDialect, DOCKER_DIALECT } from './engine-dialect.js';
import { toEngineError } from './engine-errors.js';
import { DockerRuntimeError, isDockerRuntimeError } from './errors.js';
import { SWARM_TASK_ID_LABEL } from './swarm.js';

/** The labels a replacement container carries; any inherited from the old one are replaced. */
export const REPLACE_LABELS = Object.freeze({
  /** The full id of the container it replaces. */
  of: 'dso.replace.of',
  /** The name it takes over (the old container's name when the replacement began). */
  name: 'dso.replace.name',
  /** 1 for the first replacement of a container, the old one's generation + 1 after that. */
  generation: 'dso.replace.generation',
} as const);

/** Default for {@link ReplaceHealthOptions.timeoutMs}. */
export const DEFAULT_REPLACE_HEALTH_TIMEOUT_MS = 60_000;
/** Default for {@link ReplaceHealthOptions.runningForMs}. */
export const DEFAULT_REPLACE_RUNNING_FOR_MS = 5_000;
/** Default for {@link ReplaceRequest.stopTimeoutMs} and {@link RecoverReplacementsOptions}. */
export const DEFAULT_REPLACE_STOP_TIMEOUT_MS = 10_000;
/** Default for {@link ReplaceRequest.hookTimeoutMs}. */
export const DEFAULT_REPLACE_HOOK_TIMEOUT_MS = 30_000;
/** Default for {@link ReplaceRequest.logTailBytes}. */
export const DEFAULT_REPLACE_LOG_TAIL_BYTES = 4_096;

/** How often the new container is inspected while waiting for it. */
const POLL_INTERVAL_MS = 100;
/** Containers inspected at once to find network dependents where the list does not say. */
const DEPENDENT_INSPECTS_AT_ONCE = 8;
/** A healthcheck's interval when it sets none (the engines' default, 30 s). */
const DEFAULT_HEALTH_INTERVAL_MS = 30_000;
/** Lines of the new container's log read on failure (then bounded by bytes). */
const LOG_TAIL_LINES = 200;
/** Container names are kept within this, the common limit of tools that show them. */
const MAX_NAME_LENGTH = 255;
const FULL_ID = /^[0-9a-f]{64}$/;
const ENV_NAME = /^[^=\0]+$/;

/** How {@link DockerRuntime.replaceContainer} decides that the new container is fit to serve. */
export interface ReplaceHealthOptions {
  /**
   * For a container with a healthcheck (its own or its image's, not `NONE`): how long it may
   * take to report `healthy`.
   * @default 60000
   */
  timeoutMs?: number;
  /**
   * For a container without a healthcheck: how long it must keep running (not restarting, not
   * restarted) after start. `0` only checks that it runs once started.
   * @default 5000
   */
  runningForMs?: number;
}

/** How {@link DockerRuntime.replaceContainer} recreates a container. */
export interface ReplaceRequest {
  /**
   * Environment changes: a string sets the variable (in place when it exists, appended
   * otherwise), `null` removes it. Values go only into the new container's `Config.Env`.
   * @default no change
   */
  env?: Record<string, string | null>;
  /**
   * Label changes for the new container: a string sets it, `null` removes it. Labels are
   * visible to anyone who can inspect: never a value. `dso.replace.*` are the runtime's own.
   * @default no change
   */
  labels?: Record<string, string | null>;
  health?: ReplaceHealthOptions;
  /**
   * Grace given to the old container's main process between its stop signal and SIGKILL.
   * Rounded up to whole seconds (the engine's unit).
   * @default 10000
   */
  stopTimeoutMs?: number;
  /**
   * Called after the new container is created, before it starts (for example to fill a host
   * directory it bind-mounts). A throw, or running past `hookTimeoutMs`, rolls back.
   */
  onCreated?: (newId: string, signal: AbortSignal) => Promise<void>;
  /**
   * Called once the new container has started, before the health wait (for example to write
   * its secret files by exec). A throw, or running past `hookTimeoutMs`, rolls back.
   */
  onStarted?: (newId: string, signal: AbortSignal) => Promise<void>;
  /**
   * Bound on each hook; its signal aborts then.
   * @default 30000
   */
  hookTimeoutMs?: number;
  /**
   * Most characters of the new container's log tail (and of its last health output) kept in
   * a failure's `details`, after every value of its environment was redacted. `0` keeps none.
   * @default 4096
   */
  logTailBytes?: number;
  /** Aborts the replacement before its swap (rolling back); after the swap it completes. */
  signal?: AbortSignal;
}

/** What a finished replacement did. */
export interface ReplaceResult {
  oldId: string;
  newId: string;
  /** The name the new container now has (the old one's). */
  name: string;
  /** The new container's {@link REPLACE_LABELS.generation}. */
  generation: number;
  /** How the new container proved itself: its healthcheck, or running for `runningForMs`. */
  health: 'healthy' | 'running';
  /**
   * False when stopping or removing the old container failed after the swap: the new one
   * serves, the old one may still run under its temporary name until
   * {@link DockerRuntime.recoverReplacements} (or a retry of it) removes it.
   */
  oldRemoved: boolean;
  /** Why the old container was not removed (DSO_DOCKER_REPLACE_FAILED, stage `cleanup`). */
  cleanupError?: DockerRuntimeError;
  durationMs: number;
}

/** Where a replacement failed: `details.stage` of DSO_DOCKER_REPLACE_FAILED. */
export type ReplaceStage =
  | 'inspect'
  | 'plan'
  | 'create'
  | 'on-created'
  | 'start'
  | 'on-started'
  | 'health'
  | 'swap'
  | 'cleanup';

/** Why a replacement failed: `details.reason` of DSO_DOCKER_REPLACE_FAILED. */
export type ReplaceFailureReason =
  /** A replacement of this container is running or was interrupted: run recovery first. */
  | 'replace-pending'
  /** It publishes a fixed host port; two copies cannot bind it at once. */
  | 'fixed-host-port'
  /** It has a fixed IP address on a network; two copies cannot hold it at once. */
  | 'fixed-ip'
  /** It has a fixed MAC address; two copies on one network would fight over it. */
  | 'fixed-mac-address'
  /** Other containers use its network namespace (`--network container:<it>`). */
  | 'network-dependents'
  /** It is a swarm task: its service owns it. */
  | 'swarm-task'
  /** The image tag moved between the check and the create. */
  | 'image-changed'
  | 'hook-failed'
  /** The new container stopped (or was removed) before it proved healthy. */
  | 'exited'
  /** The new container was restarted (restart policy) before it proved healthy. */
  | 'restarted'
  | 'unhealthy'
  | 'health-timeout'
  /** The engine refused or failed a call; `cause` says how. */
  | 'engine-error';

/** Options of {@link DockerRuntime.recoverReplacements}. */
export interface RecoverReplacementsOptions {
  /**
   * Grace for an old container that recovery stops (a replacement that had swapped).
   * @default 10000
   */
  stopTimeoutMs?: number;
  signal?: AbortSignal;
}

/** What {@link DockerRuntime.recoverReplacements} did with one interrupted replacement. */
export interface ReplaceRecovery {
  /** The name being replaced (from {@link REPLACE_LABELS.name}). */
  name: string;
  oldId: string;
  newId: string;
  /**
   * `finished`: the new container holds the name and the old one is gone. `undone`: the old
   * container holds the name and the new one is gone. `blocked`: nothing could safely be done
   * (see `reason`); both are left as they are.
   */
  action: 'finished' | 'undone' | 'blocked';
  /**
   * Why it is blocked: `name-taken`, `old-renamed`, `labels-invalid`, `engine-error`, or
   * `new-unproven` (the old container is gone and the new one is not running, or not healthy by
   * its healthcheck: it never passed its health wait, so it is not given the name unasked).
   */
  reason?: string;
  /** The engine failure behind `engine-error`. */
  error?: DockerRuntimeError;
}

// ---------------------------------------------------------------------------------------------
// Pure planning: no engine, unit-tested.
// ---------------------------------------------------------------------------------------------

/** A replacement request, validated, with defaults applied. */
export interface ResolvedReplaceRequest {
  env: Array<[name: string, value: string | null]>;
  labels: Array<[key: string, value: string | null]>;
  healthTimeoutMs: number;
  runningForMs: number;
  stopTimeoutMs: number;
  hookTimeoutMs: number;
  logTailBytes: number;
  onCreated: ReplaceRequest['onCreated'];
  onStarted: ReplaceRequest['onStarted'];
  signal: AbortSignal | undefined;
}

/**
 * Validates a request and applies the defaults. Messages name variables, never their values.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_REQUEST
 */
export function resolveReplaceRequest(request: ReplaceRequest): ResolvedReplaceRequest {
  if (typeof request !== 'object' || request === null) {
    throw invalid('request', 'the replace request must be an object');
  }
  const env: Array<[string, string | null]> = [];
  if (request.env !== undefined) {
    if (typeof request.env !== 'object' || request.env === null || Array.isArray(request.env)) {
      throw invalid('env', 'env must be an object of variable names to a string or null');
    }
    for (const [name, value] of Object.entries(request.env)) {
      if (!ENV_NAME.test(name)) {
        throw invalid(
          'env',
          `environment variable name ${JSON.stringify(name)} is empty or holds "=" or NUL`,
        );
      }
      if (value !== null && typeof value !== 'string') {
        throw invalid('env', `environment variable ${name} must be a string or null`);
      }
      if (typeof value === 'string' && value.includes('\0')) {
        throw invalid('env', `the value of environment variable ${name} holds a NUL byte`);
      }
      env.push([name, value]);
    }
  }
  const labels: Array<[string, string | null]> = [];
  if (request.labels !== undefined) {
    if (
      typeof request.labels !== 'object' ||
      request.labels === null ||
      Array.isArray(request.labels)
    ) {
      throw invalid('labels', 'labels must be an object of label keys to a string or null');
    }
    for (const [key, value] of Object.entries(request.labels)) {
      if (key === '' || key.startsWith('dso.replace.') || key.includes('\0')) {
        throw invalid(
          'labels',
          `label ${JSON.stringify(key)} cannot be set: empty, holding NUL, or one of the runtime's own dso.replace.* labels`,
        );
      }
      if (value !== null && (typeof value !== 'string' || value.includes('\0'))) {
        throw invalid('labels', `label ${key} must be a string without NUL, or null`);
      }
      labels.push([key, value]);
    }
  }
  for (const hook of ['onCreated', 'onStarted'] as const) {
    if (request[hook] !== undefined && typeof request[hook] !== 'function') {
      throw invalid(hook, `${hook} must be a function`);
    }
  }
  return {
    env,
    labels,
    healthTimeoutMs: duration(
      request.health?.timeoutMs,
      DEFAULT_REPLACE_HEALTH_TIMEOUT_MS,
      'health.timeoutMs',
      1,
    ),
    runningForMs: duration(
      request.health?.runningForMs,
      DEFAULT_REPLACE_RUNNING_FOR_MS,
      'health.runningForMs',
      0,
    ),
    stopTimeoutMs: duration(
      request.stopTimeoutMs,
      DEFAULT_REPLACE_STOP_TIMEOUT_MS,
      'stopTimeoutMs',
      0,
    ),
    hookTimeoutMs: duration(
      request.hookTimeoutMs,
      DEFAULT_REPLACE_HOOK_TIMEOUT_MS,
      'hookTimeoutMs',
      1,
    ),
    logTailBytes: duration(request.logTailBytes, DEFAULT_REPLACE_LOG_TAIL_BYTES, 'logTailBytes', 0),
    onCreated: request.onCreated,
    onStarted: request.onStarted,
    signal: request.signal,
  };
}

/**
 * Applies environment changes to a `KEY=value` list: a changed variable keeps its place (later
 * duplicates of it are dropped), a removed one disappears, a new one is appended in the order
 * given. Entries without `=` are matched by their whole text.
 */
export function applyEnvChanges(
  env: readonly string[] | null | undefined,
  changes: ReadonlyArray<readonly [string, string | null]>,
): string[] {
  const wanted = new Map(changes);
  const done = new Set<string>();
  const result: string[] = [];
  for (const entry of env ?? []) {
    const equals = entry.indexOf('=');
    const key = equals === -1 ? entry : entry.slice(0, equals);
    if (!wanted.has(key)) {
      result.push(entry);
      continue;
    }
    if (done.has(key)) continue;
    done.add(key);
    const value = wanted.get(key);
    if (typeof value === 'string') result.push(`${key}=${value}`);
  }
  for (const [key, value] of wanted) {
    if (!done.has(key) && typeof value === 'string') result.push(`${key}=${value}`);
  }
  return result;
}

/**
 * The temporary names of a replacement of `oldId` named `name`. Derived from the old id, so
 * they are the same for every attempt: the engine's unique names then refuse a second
 * concurrent replacement of one container, from any process, at create.
 */
export function replacementNames(name: string, oldId: string): { next: string; old: string } {
  const tag = oldId.slice(0, 12);
  const fit = (suffix: string) => `${name.slice(0, MAX_NAME_LENGTH - suffix.length)}${suffix}`;
  return { next: fit(`-dso-next-${tag}`), old: fit(`-dso-old-${tag}`) };
}

/** True when a container's effective healthcheck runs (present, and not `NONE`). */
export function hasHealthcheck(healthcheck: Docker.HealthConfig | null | undefined): boolean {
  const test = healthcheck?.Test;
  return Array.isArray(test) && test.length > 0 && test[0] !== 'NONE';
}

/** What {@link planReplacement} needs beside the old container's inspect. */
export interface PlanInput {
  env: ReadonlyArray<readonly [string, string | null]>;
  /** Label changes: a string sets, `null` removes (never `dso.replace.*`). */
  labels?: ReadonlyArray<readonly [string, string | null]>;
  /** The image to create from: the old `Config.Image` if it still names the old image id, else that id. */
  image: string;
  /** Names of containers that share the old one's network namespace. */
  networkDependents?: readonly string[];
  /**
   * How the engine's inspect differs from what its create takes (limit names, an environment
   * entry it wrote itself).
   * @default Docker's
   */
  dialect?: ContainerDialect;
}

/** One network the new container joins after create (the engine takes one at create). */
export interface ExtraNetwork {
  network: string;
  endpoint: Docker.EndpointSettings;
}

/** Everything needed to create the new container. */
export interface ReplacePlan {
  /** The old container's name, which the new one takes over. */
  name: string;
  oldId: string;
  /** The new container's name until the swap. */
  nextName: string;
  /** The old container's name from the swap until it is removed. */
  oldTempName: string;
  generation: number;
  /** The create body (without the name). Holds environment values: never log it. */
  body: Docker.ContainerCreateOptions;
  extraNetworks: ExtraNetwork[];
  healthcheck: boolean;
}

type Json = Record<string, unknown>;

/**
 * Builds the new container's create body from the old one's inspect.
 *
 * Copied: the whole `Config` (the engine's merged view of image and run options: Cmd,
 * Entrypoint, User, WorkingDir, ExposedPorts, Healthcheck, StopSignal, StopTimeout, Tty,
 * Volumes, labels...) and the whole `HostConfig` (binds, mounts, tmpfs, resources, restart
 * policy, capabilities, security options, log config, volumes-from...), and one endpoint per
 * network (aliases, links, driver options). Changed: `Env` (the request's changes), `Image`
 * (as given), the {@link REPLACE_LABELS} (inherited ones replaced), `Hostname` (dropped when
 * it is the engine's default, the old id's first 12 characters, or the network namespace is
 * another container's), the old id's automatic network alias (dropped), `ContainerIDFile`
 * (dropped, a client-side setting), limit names and tmpfs options (as the engine's create
 * takes them: Podman's inspect says `RLIMIT_NOFILE` and `uid=1000,gid=1000`, its create takes
 * `nofile` and `U`), and on an engine that writes
 * `HOSTNAME=<hostname>` into `Config.Env` itself (Podman), that entry when the hostname is
 * dropped. Anonymous volumes of the old container are mounted into the new one by their volume
 * name, so their data carries over instead of starting empty.
 *
 * @throws DockerRuntimeError DSO_DOCKER_REPLACE_FAILED, stage `plan`, when the container cannot
 *   run twice at once: a fixed host port, IP or MAC address, a network namespace others share,
 *   or a swarm task
 */
export function planReplacement(old: Docker.ContainerInspectInfo, input: PlanInput): ReplacePlan {
  const name = (old.Name ?? '').replace(/^\//, '');
  const oldId = old.Id;
  const dialect = input.dialect ?? DOCKER_DIALECT.containers;
  const names = replacementNames(name, oldId);
  const config = structuredClone((old.Config ?? {}) as unknown as Json);
  const hostConfig = structuredClone((old.HostConfig ?? {}) as unknown as Json);
  const labels = { ...((config.Labels as Record<string, string> | null) ?? {}) };
  const refuse = (reason: ReplaceFailureReason, message: string, facts: Json = {}) =>
    new DockerRuntimeError('DSO_DOCKER_REPLACE_FAILED', message, {
      stage: 'plan',
      reason,
      containerId: oldId,
      name,
      ...facts,
    });
  const restartInstead = 'blue-green replacement runs two copies at once: use the restart policy';

  if (labels[SWARM_TASK_ID_LABEL] !== undefined) {
    throw refuse(
      'swarm-task',
      `container ${name} is a swarm task: update its service instead of replacing it`,
    );
  }
  const fixedPorts = fixedHostPorts(hostConfig.PortBindings);
  if (fixedPorts.length > 0) {
    throw refuse(
      'fixed-host-port',
      `container ${name} publishes fixed host port(s) ${fixedPorts.join(', ')}; ${restartInstead}, ` +
        'or publish without a host port (-p <container port>) behind a proxy',
      { ports: fixedPorts },
    );
  }
  if (typeof config.MacAddress === 'string' && config.MacAddress !== '') {
    throw refuse(
      'fixed-mac-address',
      `container ${name} has a fixed MAC address; ${restartInstead}`,
    );
  }
  if ((input.networkDependents ?? []).length > 0) {
    throw refuse(
      'network-dependents',
      `container(s) ${input.networkDependents?.join(', ')} use the network namespace of ` +
        `container ${name}, and would lose it with the old container; ${restartInstead}`,
      { dependents: [...(input.networkDependents ?? [])] },
    );
  }

  const networkMode = typeof hostConfig.NetworkMode === 'string' ? hostConfig.NetworkMode : '';
  const sharedNamespace =
    networkMode === 'none' || networkMode === 'host' || networkMode.startsWith('container:');
  const endpoints: ExtraNetwork[] = [];
  if (!sharedNamespace) {
    const networks = (old.NetworkSettings?.Networks ?? {}) as Record<string, Json>;
    for (const [network, settings] of Object.entries(networks)) {
      const ipam = (settings.IPAMConfig ?? null) as Json | null;
      const fixedIp = [ipam?.IPv4Address, ipam?.IPv6Address].filter(
        (address) => typeof address === 'string' && address !== '',
      );
      if (fixedIp.length > 0) {
        throw refuse(
          'fixed-ip',
          `container ${name} has fixed address ${fixedIp.join(', ')} on network ${network}; ${restartInstead}`,
          { network },
        );
      }
      const endpoint: Docker.EndpointSettings = {};
      const aliases = ((settings.Aliases as string[] | null) ?? []).filter(
        // The engine adds the short id as an alias itself; the new one gets its own.
        (alias) => alias !== oldId.slice(0, 12),
      );
      if (aliases.length > 0) endpoint.Aliases = aliases;
      const links = (settings.Links as string[] | null) ?? [];
      if (links.length > 0) endpoint.Links = links;
      const linkLocal = (ipam?.LinkLocalIPs as string[] | undefined) ?? [];
      if (linkLocal.length > 0) endpoint.IPAMConfig = { LinkLocalIPs: linkLocal };
      const driverOpts = settings.DriverOpts as Record<string, string> | null | undefined;
      if (driverOpts && Object.keys(driverOpts).length > 0) endpoint.DriverOpts = driverOpts;
      endpoints.push({ network, endpoint });
    }
  }
  // The engine (API < 1.44) takes one endpoint at create: the network of NetworkMode.
  const primaryName = networkMode === 'default' || networkMode === '' ? 'bridge' : networkMode;
  const primaryIndex = endpoints.findIndex(
    ({ network }) =>
      network === primaryName ||
      String(
        (old.NetworkSettings?.Networks?.[network] as { NetworkID?: string } | undefined)
          ?.NetworkID ?? '',
      ).startsWith(primaryName),
  );
  const primary = primaryIndex === -1 ? undefined : endpoints.splice(primaryIndex, 1)[0];

  for (const [key, value] of input.labels ?? []) {
    if (value === null) delete labels[key];
    else labels[key] = value;
  }
  for (const key of Object.keys(labels)) if (key.startsWith('dso.replace.')) delete labels[key];
  const previous = Number.parseInt(old.Config?.Labels?.[REPLACE_LABELS.generation] ?? '0', 10);
  const generation = (Number.isSafeInteger(previous) && previous > 0 ? previous : 0) + 1;
  labels[REPLACE_LABELS.of] = oldId;
  labels[REPLACE_LABELS.name] = name;
  labels[REPLACE_LABELS.generation] = String(generation);

  let env = (config.Env as string[] | null) ?? [];
  if (config.Hostname === oldId.slice(0, 12) || networkMode.startsWith('container:')) {
    // The engine wrote this entry from the hostname the new container will not have.
    if (dialect.hostnameInEnv && typeof config.Hostname === 'string') {
      env = env.filter((entry) => entry !== `HOSTNAME=${config.Hostname}`);
    }
    delete config.Hostname;
  }
  if (networkMode.startsWith('container:')) delete config.Domainname;
  delete hostConfig.ContainerIDFile;
  if (typeof hostConfig.Tmpfs === 'object' && hostConfig.Tmpfs !== null) {
    hostConfig.Tmpfs = Object.fromEntries(
      Object.entries(hostConfig.Tmpfs as Record<string, string>).map(([target, options]) => [
        target,
        dialect.tmpfsOptions(options),
      ]),
    );
  }
  if (Array.isArray(hostConfig.Ulimits)) {
    hostConfig.Ulimits = (hostConfig.Ulimits as Docker.Ulimit[]).map((limit) =>
      typeof limit.Name === 'string' ? { ...limit, Name: dialect.ulimitName(limit.Name) } : limit,
    );
  }
  hostConfig.Mounts = carryAnonymousVolumes(old, hostConfig);

  const body = {
    ...config,
    Image: input.image,
    Env: applyEnvChanges(env, input.env),
    Labels: labels,
    HostConfig: hostConfig,
    ...(primary === undefined
      ? {}
      : { NetworkingConfig: { EndpointsConfig: { [primary.network]: primary.endpoint } } }),
  } as Docker.ContainerCreateOptions;
  return {
    name,
    oldId,
    nextName: names.next,
    oldTempName: names.old,
    generation,
    body,
    extraNetworks: endpoints,
    healthcheck: hasHealthcheck(body.Healthcheck),
  };
}

/** `container/proto → ip:port` for every binding with a fixed (non-zero) host port. */
function fixedHostPorts(bindings: unknown): string[] {
  const fixed: string[] = [];
  if (typeof bindings !== 'object' || bindings === null) return fixed;
  for (const [port, list] of Object.entries(bindings as Record<string, unknown>)) {
    if (!Array.isArray(list)) continue;
    for (const binding of list as Array<{ HostIp?: string; HostPort?: string }>) {
      const hostPort = binding?.HostPort ?? '';
      if (hostPort !== '' && hostPort !== '0') {
        fixed.push(`${port} → ${binding.HostIp ? `${binding.HostIp}:` : ''}${hostPort}`);
      }
    }
  }
  return fixed;
}

/**
 * `HostConfig.Mounts` for the new container, with every anonymous volume of the old one (an
 * image `VOLUME`, `-v /path`, or `--mount type=volume` without a source) named by its volume,
 * so both containers mount the same data. Named volumes and binds are already named; volumes
 * that come only through `VolumesFrom` are left to it.
 */
function carryAnonymousVolumes(
  old: Docker.ContainerInspectInfo,
  hostConfig: Json,
): Docker.MountSettings[] {
  const mounts = structuredClone((hostConfig.Mounts as Docker.MountSettings[] | null) ?? []);
  const bound = new Set(
    ((hostConfig.Binds as string[] | null) ?? []).map((bind) => bind.split(':')[1] ?? ''),
  );
  const declared = new Set(Object.keys(old.Config?.Volumes ?? {}));
  for (const mount of old.Mounts ?? []) {
    if (mount.Type !== 'volume' || !mount.Name || bound.has(mount.Destination)) continue;
    const explicit = mounts.find((entry) => entry.Target === mount.Destination);
    if (explicit !== undefined) {
      if (explicit.Type === 'volume' && !explicit.Source) explicit.Source = mount.Name;
      continue;
    }
    if (!declared.has(mount.Destination)) continue;
    mounts.push({
      Type: 'volume',
      Source: mount.Name,
      Target: mount.Destination,
      ReadOnly: mount.RW === false,
    });
  }
  return mounts;
}

/**
 * Names of the containers that use the old one's network namespace (`--network
 * container:<it>`), stopped ones included: removing the old container would take their network
 * away (Docker), or is refused while they exist (Podman). Read from the list where it carries
 * the network mode; else (Podman's list has no `HostConfig`) by inspecting only the containers
 * that could be such a dependent: those the list shows without a network of their own, a few
 * at a time. `networkModeOf` answers undefined for a container that is gone.
 */
export async function findNetworkDependents(
  old: { Id: string; Name?: string },
  all: readonly Docker.ContainerInfo[],
  dialect: ContainerDialect,
  networkModeOf: (id: string) => Promise<string | undefined>,
): Promise<string[]> {
  const name = nameOf(old);
  const shares = (mode: string | undefined) =>
    mode === `container:${old.Id}` || mode === `container:${name}`;
  const display = (info: Docker.ContainerInfo) => (info.Names?.[0] ?? info.Id).replace(/^\//, '');
  const dependents: string[] = [];
  const candidates: Docker.ContainerInfo[] = [];
  for (const info of all) {
    if (info.Id === old.Id) continue;
    const mode = info.HostConfig?.NetworkMode;
    if (mode !== undefined || dialect.listHasNetworkMode) {
      if (shares(mode)) dependents.push(display(info));
    } else if (Object.keys(info.NetworkSettings?.Networks ?? {}).length === 0) {
      candidates.push(info);
    }
  }
  for (let index = 0; index < candidates.length; index += DEPENDENT_INSPECTS_AT_ONCE) {
    const batch = candidates.slice(index, index + DEPENDENT_INSPECTS_AT_ONCE);
    const modes = await Promise.all(batch.map((info) => networkModeOf(info.Id)));
    batch.forEach((info, at) => {
      if (shares(modes[at])) dependents.push(display(info));
    });
  }
  return dependents;
}

/** What recovery does with one replacement it found. */
export type RecoveryStep =
  /** Complete (N holds the name, O is gone), or N is not ours to touch: nothing to do. */
  | { kind: 'skip' }
  /** Swap done, O still there under its temporary name: stop and remove it. */
  | { kind: 'remove-old' }
  /** Swap not done, O still there: give O its name back (when renamed), then remove N. */
  | { kind: 'undo'; renameOld: boolean }
  /** O is gone and N still has its temporary name: give N the name. */
  | { kind: 'rename-new' }
  | { kind: 'blocked'; reason: 'old-renamed' };

/**
 * The recovery decision table, from what the engine holds: the new container's name, the name
 * it replaces, and the old container (its name) if it still exists. Never removes both.
 */
export function decideRecovery(input: {
  newName: string;
  name: string;
  oldId: string;
  oldName: string | undefined;
}): RecoveryStep {
  const temp = replacementNames(input.name, input.oldId);
  if (input.newName === input.name) {
    if (input.oldName === undefined) return { kind: 'skip' };
    if (input.oldName === temp.old) return { kind: 'remove-old' };
    // Renamed by someone after the swap: theirs to remove, not ours.
    return { kind: 'blocked', reason: 'old-renamed' };
  }
  if (input.newName === temp.next) {
    if (input.oldName === undefined) return { kind: 'rename-new' };
    return { kind: 'undo', renameOld: input.oldName === temp.old };
  }
  // Renamed by someone, or the old side of a newer replacement (whose own labels say so).
  return { kind: 'skip' };
}

// ---------------------------------------------------------------------------------------------
// The engine side.
// ---------------------------------------------------------------------------------------------

/** Old container ids with a replacement running in this runtime (held by its context). */
function inFlightOf(context: EngineContext): Set<string> {
  return context.replacing;
}

/** A failure inside a stage, turned into the thrown error once the rollback has run. */
class StageFailure extends Error {
  constructor(
    readonly stage: ReplaceStage,
    readonly reason: ReplaceFailureReason,
    readonly summary: string,
    readonly facts: Json = {},
    readonly original?: unknown,
  ) {
    super(summary);
  }
}

interface RollbackOutcome {
  complete: boolean;
  oldRunning: boolean | undefined;
  error?: DockerRuntimeError;
}

/**
 * See {@link DockerRuntime.replaceContainer} for the contract.
 */
export async function replaceContainer(
  context: EngineContext,
  id: string,
  request: ReplaceRequest,
): Promise<ReplaceResult> {
  const startedAt = performance.now();
  context.assertOpen('replace container');
  assertContainerId(id);
  const options = resolveReplaceRequest(request);
  return new Replacement(context, options).run(id, startedAt);
}

class Replacement {
  readonly #context: EngineContext;
  readonly #options: ResolvedReplaceRequest;
  /** The caller's signal and close: aborts every step before the swap. */
  readonly #operation: Deadline;
  #stage: ReplaceStage = 'inspect';
  #plan: ReplacePlan | undefined;
  #newId: string | undefined;
  /** The create answered 409: the container under the temporary name is someone else's. */
  #createConflict = false;
  /** For the new container's own output (log tail, health output): see {@link redactorFor}. */
  #redactor: Redactor | undefined;
  /** For engine messages, which quote names and ids, never env: values of 4+ characters. */
  #engineRedactor: Redactor | undefined;

  constructor(context: EngineContext, options: ResolvedReplaceRequest) {
    this.#context = context;
    this.#options = options;
    this.#operation = new Deadline({ caller: options.signal, closed: context.closed });
  }

  async run(id: string, startedAt: number): Promise<ReplaceResult> {
    const inFlight = inFlightOf(this.#context);
    let claimed: string | undefined;
    try {
      const old = await this.#call('inspect container', id, (signal) =>
        this.#context.docker.getContainer(id).inspect({ abortSignal: signal }),
      );
      const name = nameOf(old);
      if (!old.State?.Running || old.State.Paused || old.State.Restarting) {
        throw new DockerRuntimeError(
          'DSO_DOCKER_CONTAINER_NOT_RUNNING',
          `container ${name} is ${old.State?.Status ?? 'not running'}: replace needs a running ` +
            'container (start it first, or recreate it yourself)',
          { containerId: old.Id, state: old.State?.Status },
        );
      }
      if (inFlight.has(old.Id)) {
        throw pending(old.Id, name, `a replacement of container ${name} is already running`);
      }
      inFlight.add(old.Id);
      claimed = old.Id;
      return await this.#replace(old, startedAt);
    } catch (error) {
      throw this.#outsideStages(error);
    } finally {
      if (claimed !== undefined) inFlight.delete(claimed);
      this.#operation.dispose();
    }
  }

  async #replace(old: Docker.ContainerInspectInfo, startedAt: number): Promise<ReplaceResult> {
    const docker = this.#context.docker;
    const name = nameOf(old);
    try {
      const all = await this.#call('list containers', undefined, (signal) =>
        docker.listContainers({ all: true, abortSignal: signal }),
      );
      await this.#assertNotPending(old, all);
      const networkDependents = await this.#networkDependents(old, all);
      const image = await this.#imageFor(old);

      this.#stage = 'plan';
      const plan = planReplacement(old, {
        env: this.#options.env,
        labels: this.#options.labels,
        image,
        networkDependents,
        dialect: this.#context.dialect.containers,
      });
      this.#plan = plan;
      this.#redactor = redactorFor(plan.body.Env ?? [], this.#options.env, 'strict');
      this.#engineRedactor = redactorFor(plan.body.Env ?? [], this.#options.env, 'usual');

      this.#stage = 'create';
      this.#newId = await this.#create(plan);
      if (image !== old.Image) {
        const created = await this.#call('inspect container', this.#newId, (signal) =>
          docker.getContainer(this.#newId as string).inspect({ abortSignal: signal }),
        );
        if (created.Image !== old.Image) {
          throw new StageFailure(
            'create',
            'image-changed',
            `image ${image} was retagged while the new container was created`,
            { image },
          );
        }
      }
      for (const { network, endpoint } of plan.extraNetworks) {
        await this.#call(`connect container to network ${network}`, undefined, (signal) =>
          docker.getNetwork(network).connect({
            Container: this.#newId,
            EndpointConfig: endpoint,
            abortSignal: signal,
          } as Docker.NetworkConnectOptions),
        );
      }
      const newId = this.#newId;

      this.#stage = 'on-created';
      await this.#hook(this.#options.onCreated, newId);
      this.#stage = 'start';
      await this.#call('start container', newId, (signal) =>
        docker.getContainer(newId).start({ abortSignal: signal }),
      );
      const started = await this.#call('inspect container', newId, (signal) =>
        docker.getContainer(newId).inspect({ abortSignal: signal }),
      );
      this.#stage = 'on-started';
      await this.#hook(this.#options.onStarted, newId);
      this.#stage = 'health';
      const health = await this.#waitFit(newId, started, plan.healthcheck);

      // Past this check the caller's abort no longer rolls back: the swap is two short renames
      // run to completion, and once the new container holds the name the replacement is done.
      this.#operation.signal.throwIfAborted();
      this.#stage = 'swap';
      await this.#rename(old.Id, plan.oldTempName);
      await this.#rename(newId, plan.name);

      this.#stage = 'cleanup';
      let cleanupError: DockerRuntimeError | undefined;
      try {
        await stopAndRemove(this.#context, old.Id, this.#options.stopTimeoutMs, old.HostConfig, {
          closed: this.#context.closed,
        });
      } catch (error) {
        cleanupError = new DockerRuntimeError(
          'DSO_DOCKER_REPLACE_FAILED',
          `container ${name} was replaced by ${short(newId)}, but the old container ` +
            `${short(old.Id)} (now ${plan.oldTempName}) was not removed: recoverReplacements ` +
            'removes it',
          {
            stage: 'cleanup',
            reason: 'engine-error',
            containerId: old.Id,
            newId,
            name,
            cause: this.#scrub(error),
          },
        );
      }
      return {
        oldId: old.Id,
        newId,
        name,
        generation: plan.generation,
        health,
        oldRemoved: cleanupError === undefined,
        ...(cleanupError === undefined ? {} : { cleanupError }),
        durationMs: Math.round((performance.now() - startedAt) * 100) / 100,
      };
    } catch (error) {
      if (this.#stage === 'cleanup') throw error;
      const rollback = await this.#rollback(old);
      throw this.#failure(error, old, rollback);
    }
  }

  /** Refuses a container that is one side of an unfinished replacement. */
  async #assertNotPending(
    old: Docker.ContainerInspectInfo,
    all: Docker.ContainerInfo[],
  ): Promise<void> {
    const name = nameOf(old);
    const labels = old.Config?.Labels ?? {};
    const ofId = labels[REPLACE_LABELS.of];
    const ofName = labels[REPLACE_LABELS.name];
    if (ofId !== undefined && ofName !== undefined && FULL_ID.test(ofId)) {
      if (name === replacementNames(ofName, ofId).next) {
        throw pending(
          old.Id,
          name,
          `container ${name} is the new side of an interrupted replacement of ${ofName}`,
        );
      }
      if (name === ofName && all.some((info) => info.Id === ofId)) {
        throw pending(
          old.Id,
          name,
          `the old container ${short(ofId)} of the previous replacement of ${name} still exists ` +
            '(remove it if it was kept on purpose)',
        );
      }
    }
    const next = all.find((info) => info.Labels?.[REPLACE_LABELS.of] === old.Id);
    if (next !== undefined) {
      throw pending(
        old.Id,
        name,
        `a replacement of container ${name} (new container ${short(next.Id)}) is running ` +
          'elsewhere or was interrupted',
      );
    }
  }

  /** See {@link findNetworkDependents}; inspects under this operation's signal. */
  #networkDependents(
    old: Docker.ContainerInspectInfo,
    all: Docker.ContainerInfo[],
  ): Promise<string[]> {
    return findNetworkDependents(old, all, this.#context.dialect.containers, async (id) => {
      try {
        const inspected = await this.#call('inspect container', id, (signal) =>
          this.#context.docker.getContainer(id).inspect({ abortSignal: signal }),
        );
        return inspected.HostConfig?.NetworkMode;
      } catch (error) {
        // Removed since the list: it depends on nothing any more.
        if (isGone(error)) return undefined;
        throw error;
      }
    });
  }

  /**
   * The image to create from: `Config.Image` as written while it still names the old
   * container's image id (so `docker ps` and tools keep showing the tag), else that id (a tag
   * moved since must not change the code that runs).
   */
  async #imageFor(old: Docker.ContainerInspectInfo): Promise<string> {
    const reference = old.Config?.Image ?? '';
    if (reference === '' || reference === old.Image) return old.Image;
    try {
      const image = await this.#call('inspect image', undefined, (signal) =>
        // dockerode's image inspect takes no signal: stop waiting for it instead.
        abortable(this.#context.docker.getImage(reference).inspect(), signal),
      );
      return image.Id === old.Image ? reference : old.Image;
    } catch (error) {
      if (statusOf(error) === 404) return old.Image;
      throw error;
    }
  }

  async #create(plan: ReplacePlan): Promise<string> {
    try {
      return await this.#call('create container', undefined, (signal) =>
        createContainer(this.#context.docker, plan.nextName, plan.body, signal),
      );
    } catch (error) {
      if (statusOf(error) === 409) {
        this.#createConflict = true;
        throw new StageFailure(
          'create',
          'replace-pending',
          `a container named ${plan.nextName} already exists: an earlier replacement of ` +
            `${plan.name} was interrupted; run recoverReplacements first`,
          { nextName: plan.nextName },
          error,
        );
      }
      throw error;
    }
  }

  async #hook(
    hook: ((newId: string, signal: AbortSignal) => Promise<void>) | undefined,
    newId: string,
  ): Promise<void> {
    if (hook === undefined) return;
    const deadline = new Deadline({ caller: this.#operation.signal }, this.#options.hookTimeoutMs);
    try {
      await abortable(
        Promise.resolve().then(() => hook(newId, deadline.signal)),
        deadline.signal,
      );
    } catch (error) {
      if (this.#operation.signal.aborted) throw error;
      const timedOut = deadline.cause === 'timeout';
      throw new StageFailure(
        this.#stage,
        'hook-failed',
        timedOut
          ? `the ${this.#stage} hook took longer than ${this.#options.hookTimeoutMs} ms`
          : `the ${this.#stage} hook failed`,
        { timedOut },
        error,
      );
    } finally {
      deadline.dispose();
    }
  }

  /**
   * Waits until the new container proves fit: `healthy` by its healthcheck, or running
   * (same start, no restart) for `runningForMs`. Fails early when it stops, restarts, or turns
   * unhealthy.
   */
  async #waitFit(
    newId: string,
    started: Docker.ContainerInspectInfo,
    healthcheck: boolean,
  ): Promise<'healthy' | 'running'> {
    const { healthTimeoutMs, runningForMs } = this.#options;
    const deadline = new Deadline(
      { caller: this.#operation.signal },
      healthcheck ? healthTimeoutMs : undefined,
    );
    const begin = performance.now();
    // Where the engine runs no healthcheck on its own (Podman without systemd), this wait runs
    // it, the first time one interval after start, as an engine would.
    const checkIntervalMs = healthIntervalMs(this.#plan?.body.Healthcheck);
    const runsChecks =
      healthcheck && this.#context.dialect.containers.healthchecks === 'on-request';
    let nextCheckAt = begin + checkIntervalMs;
    let info = started;
    try {
      for (;;) {
        const state = info.State;
        if (
          state.StartedAt !== started.State.StartedAt ||
          info.RestartCount !== started.RestartCount ||
          state.Restarting
        ) {
          throw await this.#unfit('restarted', 'the new container was restarted', newId, info);
        }
        if (!state.Running) {
          throw await this.#unfit(
            'exited',
            `the new container exited with code ${state.ExitCode}`,
            newId,
            info,
          );
        }
        if (healthcheck) {
          const status = state.Health?.Status;
          if (status === 'healthy') return 'healthy';
          if (status === 'unhealthy') {
            throw await this.#unfit('unhealthy', 'the new container became unhealthy', newId, info);
          }
        } else if (performance.now() - begin >= runningForMs) {
          return 'running';
        }
        const wait = healthcheck
          ? POLL_INTERVAL_MS
          : Math.max(1, Math.min(POLL_INTERVAL_MS, runningForMs - (performance.now() - begin)));
        await delay(wait, undefined, { signal: deadline.signal });
        if (runsChecks && performance.now() >= nextCheckAt) {
          await this.#runHealthcheck(newId, deadline.signal);
          nextCheckAt = performance.now() + checkIntervalMs;
        }
        try {
          info = await this.#call(
            'inspect container',
            newId,
            (signal) => this.#context.docker.getContainer(newId).inspect({ abortSignal: signal }),
            deadline.signal,
          );
        } catch (error) {
          if (!isGone(error) || deadline.signal.aborted) throw error;
          // Gone (auto-remove after it exited): nothing left to read.
          throw new StageFailure('health', 'exited', 'the new container exited and was removed');
        }
      }
    } catch (error) {
      if (deadline.cause === 'timeout' && !(error instanceof StageFailure)) {
        throw await this.#unfit(
          'health-timeout',
          `the new container was not healthy within ${healthTimeoutMs} ms ` +
            `(status ${info.State.Health?.Status ?? 'unknown'})`,
          newId,
          info,
        );
      }
      throw error;
    } finally {
      deadline.dispose();
    }
  }

  /** {@link dialHealthcheck} under the health wait's deadline. */
  async #runHealthcheck(newId: string, caller: AbortSignal): Promise<void> {
    try {
      await this.#call(
        'run healthcheck',
        newId,
        (signal) => dialHealthcheck(this.#context, newId, signal),
        caller,
      );
    } catch (error) {
      // Stopped or gone: the next inspect says so, with the facts.
      if (caller.aborted || !stoppedOrGone(error)) throw error;
    }
  }

  /** A health-stage failure with the facts an operator needs: exit code, health, log tail. */
  async #unfit(
    reason: ReplaceFailureReason,
    summary: string,
    newId: string,
    info: Docker.ContainerInspectInfo,
  ): Promise<StageFailure> {
    const facts: Json = {
      state: info.State.Status,
      restartCount: info.RestartCount,
    };
    if (!info.State.Running) {
      facts.exitCode = info.State.ExitCode;
      if (info.State.OOMKilled) facts.oomKilled = true;
    }
    const health = info.State.Health;
    if (health !== undefined) {
      facts.healthStatus = health.Status;
      facts.failingStreak = health.FailingStreak;
      const last = health.Log?.at(-1);
      if (last !== undefined && this.#options.logTailBytes > 0) {
        facts.healthExitCode = last.ExitCode;
        facts.healthOutput = this.#redact(last.Output ?? '');
      }
    }
    if (this.#options.logTailBytes > 0) {
      const tail = await this.#logTail(newId);
      if (tail !== undefined) facts.logTail = tail;
    }
    return new StageFailure('health', reason, summary, facts);
  }

  /**
   * The tail of the new container's log (stdout and stderr in order), every value of its
   * environment redacted, bounded by `logTailBytes`. Read with slack before redacting, so a
   * value cut by the bound is still whole when it is matched. Undefined when unreadable.
   */
  async #logTail(newId: string): Promise<string | undefined> {
    const limit = this.#options.logTailBytes;
    const longest = Math.max(0, ...(this.#plan?.body.Env ?? []).map((entry) => entry.length));
    const tail = new TailBuffer(limit + Math.min(1024 * 1024, 8 * longest + 1024));
    try {
      const raw = (await cleanupCall(this.#context, 'read container logs', (signal) =>
        this.#context.docker.getContainer(newId).logs({
          stdout: true,
          stderr: true,
          follow: false,
          tail: LOG_TAIL_LINES,
          abortSignal: signal,
        }),
      )) as unknown as Buffer;
      new DockerStreamDemuxer(tail, tail).push(Buffer.from(raw));
    } catch {
      // The log is a diagnostic: the failure is reported without it.
      return undefined;
    }
    return this.#redact(tail.toString());
  }

  /** Redacts every value of the new environment, then keeps the last `logTailBytes` chars. */
  #redact(text: string): string {
    const redacted = this.#redactor?.redact(text) ?? text;
    return redacted.slice(-this.#options.logTailBytes);
  }

  /**
   * Walks back to "old container under its name, no new container", through states recovery
   * recognises: the old one gets its name back before the new one (whose labels point at it)
   * is removed. Runs on its own short deadlines: the caller's signal may be what aborted.
   */
  async #rollback(old: Docker.ContainerInspectInfo): Promise<RollbackOutcome> {
    const plan = this.#plan;
    if (plan === undefined) return { complete: true, oldRunning: old.State.Running };
    const docker = this.#context.docker;
    let oldRunning: boolean | undefined;
    try {
      // An aborted or timed-out create may still have created it: find it by its name.
      const newRef = this.#newId ?? (this.#createConflict ? undefined : plan.nextName);
      let newInfo = newRef === undefined ? undefined : await inspectIfExists(this.#context, newRef);
      if (
        newInfo !== undefined &&
        (newInfo.Config?.Labels?.[REPLACE_LABELS.of] !== old.Id ||
          newInfo.Config?.Labels?.[REPLACE_LABELS.generation] !== String(plan.generation))
      ) {
        newInfo = undefined; // Not ours.
      }
      const oldInfo = await inspectIfExists(this.#context, old.Id);
      oldRunning = oldInfo?.State.Running;
      if (oldInfo !== undefined && nameOf(oldInfo) === plan.oldTempName) {
        if (newInfo !== undefined && nameOf(newInfo) === plan.name) {
          await cleanupCall(this.#context, 'rename container', (signal) =>
            docker.getContainer(newInfo?.Id as string).rename({
              name: plan.nextName,
              abortSignal: signal,
            }),
          );
        }
        await cleanupCall(this.#context, 'rename container', (signal) =>
          docker.getContainer(old.Id).rename({ name: plan.name, abortSignal: signal }),
        );
      }
      if (newInfo !== undefined) await removeContainer(this.#context, newInfo.Id, true);
      return { complete: true, oldRunning };
    } catch (error) {
      return { complete: false, oldRunning, error: this.#scrub(error) as DockerRuntimeError };
    }
  }

  /** The error thrown for a failure before the swap completed, after its rollback. */
  #failure(
    error: unknown,
    old: Docker.ContainerInspectInfo,
    rollback: RollbackOutcome,
  ): DockerRuntimeError {
    const name = nameOf(old);
    const touched = this.#stage !== 'inspect' && this.#stage !== 'plan';
    const aftermath = !touched
      ? `${name} was left as it was`
      : rollback.complete
        ? `the new container was removed and ${name} ` +
          (rollback.oldRunning === false ? 'has stopped on its own' : 'still runs')
        : `the rollback did not finish (${rollback.error?.message ?? 'unknown'}): ` +
          'recoverReplacements completes it';
    const facts = {
      stage: this.#stage,
      containerId: old.Id,
      name,
      ...(this.#newId === undefined ? {} : { newId: this.#newId }),
      ...(touched
        ? {
            rollback: rollback.complete ? 'done' : 'incomplete',
            oldRunning: rollback.oldRunning,
            ...(rollback.error === undefined ? {} : { rollbackError: rollback.error }),
          }
        : {}),
    };
    const cause = this.#operation.cause;
    if (cause === 'caller' || cause === 'closed') {
      return new DockerRuntimeError(
        cause === 'caller' ? 'DSO_DOCKER_ABORTED' : 'DSO_DOCKER_CLOSED',
        `replacing container ${name} ${cause === 'caller' ? 'was aborted' : 'stopped: the docker runtime was closed'} ` +
          `at stage ${this.#stage}; ${aftermath}`,
        { ...facts, cause: this.#scrub(error) },
      );
    }
    if (error instanceof StageFailure) {
      return new DockerRuntimeError(
        'DSO_DOCKER_REPLACE_FAILED',
        `replacing container ${name} failed at stage ${error.stage}: ${error.summary}; ${aftermath}`,
        {
          ...facts,
          stage: error.stage,
          reason: error.reason,
          ...error.facts,
          ...(error.original === undefined ? {} : { cause: this.#scrub(error.original) }),
        },
      );
    }
    if (isDockerRuntimeError(error) && error.code === 'DSO_DOCKER_REPLACE_FAILED') return error;
    const scrubbed = this.#scrub(error);
    return new DockerRuntimeError(
      'DSO_DOCKER_REPLACE_FAILED',
      `replacing container ${name} failed at stage ${this.#stage}: ` +
        `${scrubbed instanceof Error ? scrubbed.message : 'unknown error'}; ${aftermath}`,
      { ...facts, reason: 'engine-error', cause: scrubbed },
    );
  }

  /** Errors from before any container was created (inspect, checks): no rollback needed. */
  #outsideStages(error: unknown): unknown {
    if (isDockerRuntimeError(error)) return error;
    if (error instanceof StageFailure) {
      return new DockerRuntimeError('DSO_DOCKER_REPLACE_FAILED', error.summary, {
        stage: error.stage,
        reason: error.reason,
        ...error.facts,
      });
    }
    return error;
  }

  /**
   * An engine error with every value of the new environment redacted from its message, and
   * the raw client error (which quotes the engine's reply) dropped: defence in depth, as the
   * engine quotes names and ids, and the create sends env in its body only. Other errors (a
   * hook's own) are kept as they are.
   */
  #scrub(error: unknown): unknown {
    if (!isDockerRuntimeError(error)) return error;
    const redactor = this.#engineRedactor;
    if (redactor === undefined) return error;
    const { cause: _raw, ...details } = error.details as Json;
    return new DockerRuntimeError(error.code, redactor.redact(error.message), details);
  }

  async #rename(id: string, name: string): Promise<void> {
    // Not under the caller's signal: an aborted rename may still have happened on the engine.
    await cleanupCall(this.#context, `rename container ${short(id)} to ${name}`, (signal) =>
      this.#context.docker.getContainer(id).rename({ name, abortSignal: signal }),
    );
  }

  /** One engine call under the request timeout and this operation's signal. */
  #call<T>(
    operation: string,
    containerId: string | undefined,
    call: (signal: AbortSignal) => Promise<T>,
    caller: AbortSignal = this.#operation.signal,
  ): Promise<T> {
    return this.#context.request(operation, caller, containerId, call);
  }
}

/** A healthcheck's interval in ms (the engine's 30 s when it sets none). */
function healthIntervalMs(healthcheck: Docker.HealthConfig | undefined): number {
  const nanoseconds = healthcheck?.Interval ?? 0;
  return nanoseconds > 0 ? nanoseconds / 1_000_000 : DEFAULT_HEALTH_INTERVAL_MS;
}

/** The name of the old container, which every message uses (never a value). */
function nameOf(info: { Name?: string; Id: string }): string {
  return (info.Name ?? '').replace(/^\//, '') || short(info.Id);
}

function short(id: string): string {
  return id.slice(0, 12);
}

function statusOf(error: unknown): number | undefined {
  if (!isDockerRuntimeError(error)) return undefined;
  const status = error.details.statusCode;
  return typeof status === 'number' ? status : undefined;
}

/**
 * The container (or image) is not there: HTTP 404, or what the engine's dialect reads as
 * not found (Podman answers 500 `no such container` for one removed while the call ran).
 */
function isGone(error: unknown): boolean {
  return (
    statusOf(error) === 404 ||
    (isDockerRuntimeError(error) && error.code === 'DSO_DOCKER_CONTAINER_NOT_FOUND')
  );
}

function pending(containerId: string, name: string, what: string): DockerRuntimeError {
  return new DockerRuntimeError(
    'DSO_DOCKER_REPLACE_FAILED',
    `${what}: run recoverReplacements to finish or undo it, then replace again`,
    { stage: 'inspect', reason: 'replace-pending', containerId, name },
  );
}

/**
 * A redactor for the new container's environment. `usual`: every value of at least the
 * project's minimum length (unchanged `dso://` values are secrets too). `strict`, for the
 * container's own output, where an application may well print its environment: also every
 * value the request set, however short (the caller chose to write it), at the cost of
 * shredding a log tail where a short value such as `1` occurs.
 */
function redactorFor(
  env: readonly string[],
  changes: ReadonlyArray<readonly [string, string | null]>,
  mode: 'strict' | 'usual',
): Redactor {
  const redactor = createRedactor({ minLength: 1 });
  const register = (value: string, minLength: number) => {
    if (value.length >= minLength) redactor.register(value);
    // A log tail is cut at line boundaries: each line of a multi-line value must match alone.
    if (value.includes('\n')) {
      for (const line of value.split('\n')) {
        if (line.length >= Math.max(minLength, DEFAULT_REDACTION_MIN_LENGTH)) {
          redactor.register(line);
        }
      }
    }
  };
  if (mode === 'strict') {
    for (const [, value] of changes) if (typeof value === 'string') register(value, 1);
  }
  for (const entry of env) {
    const equals = entry.indexOf('=');
    if (equals !== -1) register(entry.slice(equals + 1), DEFAULT_REDACTION_MIN_LENGTH);
  }
  return redactor;
}

/**
 * `POST /containers/create` with the name in the query and the configuration in the body
 * only. dockerode's `createContainer(options)` also copies every option into the URL's query
 * string, where environment values would reach the engine's debug log and any proxy's access
 * log; its `_query`/`_body` split avoids that.
 */
export async function createContainer(
  docker: Docker,
  name: string,
  body: Docker.ContainerCreateOptions,
  signal: AbortSignal,
): Promise<string> {
  const container = await docker.createContainer({
    _query: { name },
    _body: body,
    abortSignal: signal,
  } as unknown as Docker.ContainerCreateOptions);
  return container.id;
}

/**
 * What may cut a cleanup call short besides its timeout. A rollback links nothing: it must run
 * even when the caller's abort is what started it. The post-swap cleanup links the runtime's
 * close (recovery finishes it later); recovery links its caller's signal and close.
 */
interface CleanupLinks {
  caller?: AbortSignal | undefined;
  closed?: AbortSignal | undefined;
}

/** One engine call on its own deadline (request timeout, or `timeoutMs`), not the caller's. */
async function cleanupCall<T>(
  context: EngineContext,
  operation: string,
  call: (signal: AbortSignal) => Promise<T>,
  links: CleanupLinks = {},
  timeoutMs: number = context.settings.requestTimeoutMs,
  /**
   * The container an inspect or stop is about: its absence is then read in the engine's words
   * (DSO_DOCKER_CONTAINER_NOT_FOUND). Not for a rename or remove, whose 409 means a conflict.
   */
  containerId?: string,
): Promise<T> {
  const deadline = new Deadline(links, timeoutMs);
  try {
    return await call(deadline.signal);
  } catch (error) {
    throw toEngineError(error, {
      operation,
      endpoint: context.host,
      deadlineCause: deadline.cause,
      timeoutMs,
      dialect: context.dialect,
      ...(containerId === undefined ? {} : { containerId }),
    });
  } finally {
    deadline.dispose();
  }
}

async function inspectIfExists(
  context: EngineContext,
  ref: string,
  links: CleanupLinks = {},
): Promise<Docker.ContainerInspectInfo | undefined> {
  try {
    return await cleanupCall(
      context,
      `inspect container ${ref}`,
      (signal) => context.docker.getContainer(ref).inspect({ abortSignal: signal }),
      links,
      context.settings.requestTimeoutMs,
      ref,
    );
  } catch (error) {
    if (isGone(error)) return undefined;
    throw error;
  }
}

/**
 * `GET /libpod/containers/{id}/healthcheck` (Podman): runs the container's healthcheck once,
 * and the engine records the result in its health state as a scheduled run would. For engines
 * whose healthchecks run only when asked ({@link ContainerDialect.healthchecks} `on-request`).
 */
function dialHealthcheck(
  context: EngineContext,
  id: string,
  signal: AbortSignal,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    context.docker.modem.dial(
      {
        path: `/libpod/containers/${id}/healthcheck?`,
        method: 'GET',
        options: {},
        abortSignal: signal,
        statusCodes: {
          200: true,
          404: 'no such container',
          409: 'container has no healthcheck or is not running',
          500: 'server error',
        },
      },
      (error: unknown, data: unknown) => (error ? reject(error) : resolve(data)),
    );
  });
}

/** The container is gone, or not running (in the engine's words). */
function stoppedOrGone(error: unknown): boolean {
  return (
    isGone(error) ||
    (isDockerRuntimeError(error) && error.code === 'DSO_DOCKER_CONTAINER_NOT_RUNNING')
  );
}

/** Force-removes a container; gone already (or being removed by auto-remove) is success. */
async function removeContainer(
  context: EngineContext,
  id: string,
  anonymousVolumes: boolean,
  links: CleanupLinks = {},
): Promise<void> {
  try {
    await cleanupCall(
      context,
      `remove container ${short(id)}`,
      (signal) =>
        context.docker.getContainer(id).remove({
          force: true,
          // Named volumes, and the old container's anonymous ones (mounted by name into the
          // new one), are never removed by this.
          v: anonymousVolumes,
          abortSignal: signal,
        } as Docker.ContainerRemoveOptions),
      links,
    );
  } catch (error) {
    const status = statusOf(error);
    if (status === 404) return;
    if (status !== 409) throw error;
    // 409: a removal is already in progress (auto-remove). Wait for it to finish.
    const until = performance.now() + context.settings.requestTimeoutMs;
    while ((await inspectIfExists(context, id, links)) !== undefined) {
      if (performance.now() > until) throw error;
      await delay(POLL_INTERVAL_MS);
    }
  }
}

/** Stops a container with a grace period, then removes it (keeping its volumes). */
async function stopAndRemove(
  context: EngineContext,
  id: string,
  stopTimeoutMs: number,
  hostConfig: Docker.HostConfig | undefined,
  links: CleanupLinks,
): Promise<void> {
  const seconds = Math.ceil(stopTimeoutMs / 1000);
  try {
    await cleanupCall(
      context,
      `stop container ${short(id)}`,
      (signal) => context.docker.getContainer(id).stop({ t: seconds, abortSignal: signal }),
      links,
      seconds * 1000 + context.settings.requestTimeoutMs,
      id,
    );
  } catch (error) {
    // Gone: already removed (auto-remove after the stop).
    if (isGone(error)) return;
    // 304 (Docker), or not running in the engine's words (Podman): already stopped.
    const stopped =
      statusOf(error) === 304 ||
      (isDockerRuntimeError(error) && error.code === 'DSO_DOCKER_CONTAINER_NOT_RUNNING');
    if (!stopped) throw error;
  }
  if (hostConfig?.AutoRemove === true) {
    // The engine removes it itself after the stop; wait for that rather than race it.
    const until = performance.now() + context.settings.requestTimeoutMs;
    while ((await inspectIfExists(context, id, links)) !== undefined) {
      if (performance.now() > until) break;
      await delay(POLL_INTERVAL_MS);
    }
  }
  await removeContainer(context, id, false, links);
}

/**
 * See {@link DockerRuntime.recoverReplacements} for the contract.
 */
export async function recoverReplacements(
  context: EngineContext,
  options: RecoverReplacementsOptions = {},
): Promise<ReplaceRecovery[]> {
  context.assertOpen('recover replacements');
  const stopTimeoutMs = duration(
    options.stopTimeoutMs,
    DEFAULT_REPLACE_STOP_TIMEOUT_MS,
    'stopTimeoutMs',
    0,
  );
  const listed = await context.request('list containers', options.signal, undefined, (signal) =>
    context.docker.listContainers({
      all: true,
      filters: { label: [REPLACE_LABELS.of] },
      abortSignal: signal,
    }),
  );
  const inFlight = inFlightOf(context);
  const results: ReplaceRecovery[] = [];
  const links: CleanupLinks = { caller: options.signal, closed: context.closed };
  const stopped = () => {
    const closed = context.closed.aborted;
    return new DockerRuntimeError(
      closed ? 'DSO_DOCKER_CLOSED' : 'DSO_DOCKER_ABORTED',
      `recovering replacements ${closed ? 'stopped: the docker runtime was closed' : 'was aborted'}` +
        ` after ${results.length} of ${listed.length}; every container is left in a state the ` +
        'next run recognises',
      { done: [...results] },
    );
  };
  for (const info of listed) {
    if (options.signal?.aborted || context.closed.aborted) throw stopped();
    const labels = info.Labels ?? {};
    const oldId = labels[REPLACE_LABELS.of] ?? '';
    const name = labels[REPLACE_LABELS.name] ?? '';
    const newId = info.Id;
    const newName = (info.Names?.[0] ?? '').replace(/^\//, '');
    if (!FULL_ID.test(oldId) || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
      results.push({ name, oldId, newId, action: 'blocked', reason: 'labels-invalid' });
      continue;
    }
    // A replacement running in this runtime is not interrupted: leave it to finish.
    if (inFlight.has(oldId)) continue;
    const entry = { name, oldId, newId };
    try {
      const old = await inspectIfExists(context, oldId, links);
      const step = decideRecovery({
        newName,
        name,
        oldId,
        oldName: old === undefined ? undefined : nameOf(old),
      });
      const outcome = await applyRecovery(context, step, entry, stopTimeoutMs, old, links);
      if (outcome !== undefined) results.push({ ...entry, ...outcome });
    } catch (error) {
      if (options.signal?.aborted || context.closed.aborted) throw stopped();
      results.push({
        ...entry,
        action: 'blocked',
        reason: 'engine-error',
        error: isDockerRuntimeError(error)
          ? error
          : new DockerRuntimeError('DSO_DOCKER_ENGINE_ERROR', 'recovery step failed', {
              cause: error,
            }),
      });
    }
  }
  return results;
}

async function applyRecovery(
  context: EngineContext,
  step: RecoveryStep,
  entry: { name: string; oldId: string; newId: string },
  stopTimeoutMs: number,
  old: Docker.ContainerInspectInfo | undefined,
  links: CleanupLinks,
): Promise<Pick<ReplaceRecovery, 'action' | 'reason'> | undefined> {
  const docker = context.docker;
  const rename = async (id: string, name: string): Promise<boolean> => {
    try {
      await cleanupCall(
        context,
        `rename container ${short(id)} to ${name}`,
        (signal) => docker.getContainer(id).rename({ name, abortSignal: signal }),
        links,
      );
      return true;
    } catch (error) {
      if (statusOf(error) === 409) return false;
      throw error;
    }
  };
  switch (step.kind) {
    case 'skip':
      return undefined;
    case 'blocked':
      return { action: 'blocked', reason: step.reason };
    case 'remove-old':
      await stopAndRemove(context, entry.oldId, stopTimeoutMs, old?.HostConfig, links);
      return { action: 'finished' };
    case 'rename-new': {
      // Only a container that is serving gets the name: this one never passed its health wait.
      let fresh = await inspectIfExists(context, entry.newId, links);
      // By its healthcheck when it has one. Podman reports a `Health` (status '') without one.
      const unproven = () =>
        fresh?.State?.Running !== true ||
        (hasHealthcheck(fresh?.Config?.Healthcheck) && fresh?.State?.Health?.Status !== 'healthy');
      if (
        unproven() &&
        fresh?.State?.Running === true &&
        context.dialect.containers.healthchecks === 'on-request'
      ) {
        // No engine schedule runs its check (Podman without systemd): run it once, then look.
        try {
          await cleanupCall(
            context,
            'run healthcheck',
            (signal) => dialHealthcheck(context, entry.newId, signal),
            links,
            context.settings.requestTimeoutMs,
            entry.newId,
          );
        } catch (error) {
          if (!stoppedOrGone(error)) throw error;
        }
        fresh = await inspectIfExists(context, entry.newId, links);
      }
      if (unproven()) {
        return { action: 'blocked', reason: 'new-unproven' };
      }
      return (await rename(entry.newId, entry.name))
        ? { action: 'finished' }
        : { action: 'blocked', reason: 'name-taken' };
    }
    case 'undo':
      // The old one gets its name back first: if that fails, the new one (whose labels point
      // at the old one) stays, so the state remains recognisable.
      if (step.renameOld && !(await rename(entry.oldId, entry.name))) {
        return { action: 'blocked', reason: 'name-taken' };
      }
      await removeContainer(context, entry.newId, true, links);
      return { action: 'undone' };
  }
}

function invalid(field: string, message: string): DockerRuntimeError {
  return new DockerRuntimeError('DSO_DOCKER_INVALID_REQUEST', message, { field });
}

function duration(value: unknown, fallback: number, field: string, minimum: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < minimum) {
    throw invalid(
      field,
      `${field} must be a number of at least ${minimum}${minimum === 0 ? '' : ' (ms)'}`,
    );
  }
  return value;
}
