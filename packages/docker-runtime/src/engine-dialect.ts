/**
 * Where the engines that speak Docker's Engine API differ, in one place. The runtime talks to
 * Docker Engine 20.10+ and to Podman 4.3+'s Docker-compatible service; every difference
 * between them (event names, event times, what inspect and list return, error texts) is
 * described here, and the operation modules ask the dialect instead of testing the engine's
 * name themselves.
 */
import type { ContainerAction } from './events.js';

/** Which engine answers: read once from `/version` when the runtime connects. */
export type EngineKind = 'docker' | 'podman';

/** What the runtime knows of the engine it speaks to, and how that engine differs. */
export interface EngineDialect {
  readonly kind: EngineKind;
  /** For messages: `Docker 20.10.24+dfsg1`, `Podman 4.3.1`. */
  readonly display: string;
  /** How its container events are asked for and read. */
  readonly events: EventDialect;
  /**
   * Reads an engine's error reply as one of the failures the runtime names with its own code
   * (`undefined`: none of them, an engine error as such).
   */
  classifyFailure(reply: EngineFailureReply): EngineFailure | undefined;
  /** How its container inspect, list and healthchecks differ (clone-and-replace reads them). */
  readonly containers: ContainerDialect;
}

/**
 * How an engine's container records differ from Docker's, and from what its own create takes.
 * Clone-and-replace builds a create body from an inspect, so each difference here is one a
 * clone would otherwise copy wrongly or have refused.
 */
export interface ContainerDialect {
  /**
   * A limit's name as inspect reports it → the name create takes. Podman reports
   * `RLIMIT_NOFILE` and refuses it at create (`invalid ulimit type`); it takes `nofile`.
   */
  ulimitName(inspected: string): string;
  /**
   * A `HostConfig.Tmpfs` options string as inspect reports it → one create takes. Podman
   * reports its `U` option (the tmpfs belongs to the container's user) as `uid=N,gid=M` once
   * the container ran, and its create refuses `uid=` and `gid=`: they become `U` again.
   */
  tmpfsOptions(inspected: string): string;
  /**
   * Inspect's `Config.Env` holds `HOSTNAME=<hostname>` the engine wrote itself (Podman): a
   * clone that gets its own hostname must not carry the old one's in its environment.
   */
  readonly hostnameInEnv: boolean;
  /**
   * The list (`GET /containers/json`) carries `HostConfig.NetworkMode` (Docker). Podman's
   * carries no `HostConfig`: containers sharing another's network namespace are found by
   * inspecting the ones that could be (no network of their own).
   */
  readonly listHasNetworkMode: boolean;
  /**
   * `engine`: the engine runs healthchecks on its own (Docker). `on-request`: Podman runs them
   * from systemd timers, which a host without systemd never fires (the status stays `starting`);
   * the runtime runs the check itself while it waits for health, through libpod's
   * `GET /libpod/containers/{id}/healthcheck`, at the check's own interval.
   */
  readonly healthchecks: 'engine' | 'on-request';
}

const DOCKER_CONTAINERS: ContainerDialect = {
  ulimitName: (inspected) => inspected,
  tmpfsOptions: (inspected) => inspected,
  hostnameInEnv: false,
  listHasNetworkMode: true,
  healthchecks: 'engine',
};

const PODMAN_CONTAINERS: ContainerDialect = {
  ulimitName: (inspected) =>
    inspected.startsWith('RLIMIT_') ? inspected.slice('RLIMIT_'.length).toLowerCase() : inspected,
  tmpfsOptions: podmanTmpfsOptions,
  hostnameInEnv: true,
  listHasNetworkMode: false,
  healthchecks: 'on-request',
};

/** How an engine's `/events` differ: subscription, action names, attributes, health, `since`. */
export interface EventDialect {
  /** The `event` filter values that subscribe to every action the runtime reads. */
  readonly subscribe: readonly string[];
  /** An action as the engine's events carry it → the runtime's own name for it. */
  readonly actions: Readonly<Record<string, ContainerAction>>;
  /** Attributes the engine adds to every container event besides `name` and `image`: not labels. */
  readonly engineAttributes: ReadonlySet<string>;
  /**
   * `action`: a health event states the health the check reached (`health_status: healthy`);
   * `none`: it only says a check ran, and the state must be read by inspect.
   */
  readonly healthState: 'action' | 'none';
  /**
   * The engine's `since` query value that replays from `exact` (`seconds.nanoseconds`, as an
   * event's `timeNano`) on, that instant included.
   */
  since(exact: string): string;
}

/** The parts of an engine's error the dialect reads: the HTTP status and the JSON body. */
export interface EngineFailureReply {
  statusCode: number | undefined;
  /** The body's `message`. */
  message: string | undefined;
  /** Podman's body also names the underlying error on its own: `container state improper`. */
  cause: string | undefined;
}

/** A failure the runtime names with its own code, whichever engine's words reported it. */
export type EngineFailure = 'container-not-found' | 'container-not-running' | 'user-unresolved';

/** The parts of `GET /version` the dialect reads. */
export interface EngineVersionReply {
  Version?: string;
  Components?: Array<{ Name?: string; Version?: string }> | null;
}

// The user (or group) lookup of runc's libcontainer: the same words from both engines when a
// container starts, and from Podman's exec (Docker's exec prints them and exits 126).
const USER_UNRESOLVED = /^unable to find (user|group) /;
const PODMAN_UNKNOWN_USER = /\b(user|group): unknown (user|group) error looking up /;

const DOCKER_EVENTS: EventDialect = {
  subscribe: ['create', 'start', 'die', 'destroy', 'rename', 'health_status'],
  actions: {
    create: 'create',
    start: 'start',
    die: 'die',
    destroy: 'destroy',
    rename: 'rename',
    health_status: 'health_status',
  },
  engineAttributes: new Set(),
  healthState: 'action',
  // Docker parses `seconds.nanoseconds` exactly and replays from that instant inclusive.
  since: (exact) => exact,
};

const PODMAN_EVENTS: EventDialect = {
  // Podman's filter matches its own names: `died` (its stream still says `die`), and `remove`
  // for what Docker calls `destroy`. `die` and `destroy` would match nothing.
  subscribe: ['create', 'start', 'died', 'remove', 'rename', 'health_status'],
  actions: {
    create: 'create',
    start: 'start',
    die: 'die',
    died: 'die',
    remove: 'destroy',
    rename: 'rename',
    health_status: 'health_status',
  },
  engineAttributes: new Set(['containerExitCode', 'podId']),
  // Podman 4.3's `health_status` has no `: <state>`; its `HealthStatus` field is the state from
  // before the check it reports (recorded: fail, fail, pass reads starting, starting, unhealthy).
  healthState: 'none',
  since: podmanSince,
};

/** Docker's dialect, also the rules for errors met before the engine is known. */
export const DOCKER_DIALECT: EngineDialect = {
  kind: 'docker',
  display: 'Docker',
  events: DOCKER_EVENTS,
  containers: DOCKER_CONTAINERS,
  classifyFailure: ({ statusCode, message }) => {
    if (statusCode === 404) return 'container-not-found';
    if (statusCode === 409) return 'container-not-running';
    if (statusCode === 500 && message !== undefined && USER_UNRESOLVED.test(message)) {
      return 'user-unresolved';
    }
    return undefined;
  },
};

const PODMAN_DIALECT: EngineDialect = {
  kind: 'podman',
  display: 'Podman',
  events: PODMAN_EVENTS,
  containers: PODMAN_CONTAINERS,
  classifyFailure: ({ statusCode, message, cause }) => {
    if (statusCode === 404) return 'container-not-found';
    // An exec in a paused container: 409, as Docker.
    if (statusCode === 409) return 'container-not-running';
    if (statusCode !== 500) return undefined;
    // A container removed while the call ran: `does not exist in database: no such container`.
    if (cause === 'no such container') return 'container-not-found';
    // What Docker answers with 409 (exec, kill, pause in a container that is not running).
    if (cause === 'container state improper') return 'container-not-running';
    if (
      cause === 'no matching entries in passwd file' ||
      cause === 'no matching entries in group file' ||
      (message !== undefined && USER_UNRESOLVED.test(message)) ||
      // Its archive GET resolves the container's user first: `determining run uid: user:
      // unknown user error looking up user "app"`.
      PODMAN_UNKNOWN_USER.test(cause ?? message ?? '')
    ) {
      return 'user-unresolved';
    }
    return undefined;
  },
};

/**
 * Tells Docker from Podman by `/version`: Podman's compatible service lists a component
 * named `Podman Engine` (Docker's lists `Engine`, `containerd`, `runc`, `docker-init`).
 */
export function detectEngineDialect(version: EngineVersionReply): EngineDialect {
  const podman = version.Components?.find((component) => component.Name === 'Podman Engine');
  if (podman !== undefined) {
    return {
      ...PODMAN_DIALECT,
      display: `Podman ${podman.Version ?? version.Version ?? 'unknown'}`,
    };
  }
  return { ...DOCKER_DIALECT, display: `Docker ${version.Version ?? 'unknown'}` };
}

/** Podman's tmpfs options with the `uid=`/`gid=` its `U` became turned back into `U`. */
function podmanTmpfsOptions(inspected: string): string {
  const options = inspected.split(',');
  const owner = options.findIndex((option) => /^(uid|gid)=/.test(option));
  if (owner === -1) return inspected;
  const kept = options.map((option, index) =>
    index === owner && !options.includes('U') ? 'U' : option,
  );
  return kept.filter((option) => !/^(uid|gid)=/.test(option)).join(',');
}

/**
 * Podman reads a decimal `since` through a float64 (about 240 ns off at today's times) and
 * replays only events strictly after it, so the event a resume starts from was dropped or
 * kept by chance. An RFC 3339 time is read to the nanosecond: one nanosecond before `exact`
 * replays from `exact` on, inclusive, as Docker does.
 */
function podmanSince(exact: string): string {
  const [seconds = '0', fraction = ''] = exact.split('.');
  const nanos = BigInt(seconds) * 1_000_000_000n + BigInt(fraction.padEnd(9, '0') || '0') - 1n;
  if (nanos < 0n) return '1970-01-01T00:00:00Z';
  const wholeSeconds = nanos / 1_000_000_000n;
  const day = new Date(Number(wholeSeconds) * 1_000).toISOString().slice(0, 19);
  return `${day}.${String(nanos % 1_000_000_000n).padStart(9, '0')}Z`;
}
