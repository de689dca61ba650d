import { stat } from 'node:fs/promises';
import { type AgentApiStatus, DsoError, errorCode, loadConfig, resolveApiSocket } from '@dso/core';
import type { Command } from 'commander';
import packageJson from '../../package.json' with { type: 'json' };
import { type AgentSocket, createAgentClient, findAgentSocket } from '../agent-client.js';
import { query } from '../docker-cli.js';
import type { CliIo } from '../program.js';

/** How a check ended: `ok`, a `warning` (works, but worth a look), or an `error` (broken). */
export type CheckOutcome = 'ok' | 'warning' | 'error';

/** One line of `dso doctor`: what was checked, what was found, and what to do when it is not ok. */
export interface DoctorCheck {
  /** Short and stable: `engine`, `agent`, `socket`, `delivery`, `labels`, `resolve-allow`, `provider <name>`, `clock`, `versions`. */
  name: string;
  outcome: CheckOutcome;
  /** What was found (versions, paths, counts; never a value). */
  detail: string;
  /** What to do, when the outcome is not `ok`. */
  fix?: string;
  /**
   * For an `error`: the `DSO_*` code of the failure, whose exit class (docs/cli.md) `dso doctor`
   * exits with when this is the first failed check (none for the clock and Node: exit 1).
   */
  code?: string;
}

/** The oldest Node the CLI and agent are built for (`engines.node`). */
export const MIN_NODE_VERSION = '20.19.0';
/** A clock further than this from the engine's makes rotation and staleness decisions wrong. */
export const MAX_CLOCK_SKEW_MS = 5_000;

/** What `dso doctor` looks at, injected so tests need no engine, agent or socket. */
export interface DoctorDependencies {
  env: NodeJS.ProcessEnv;
  /** Where the agent's socket is (as `dso status` finds it), or why it cannot be told. */
  agentSocket(): Promise<AgentSocket | { error: string }>;
  /**
   * `docker version` and the engine's clock; an error's text when it does not answer. `name`
   * says which engine answers on the Docker API: `Docker` (the default) or `Podman`.
   */
  engine(): Promise<
    | { name?: 'Docker' | 'Podman'; version: string; apiVersion: string; systemTime?: string }
    | { error: string }
  >;
  /** The agent's status; throws the client's DsoError when it does not answer. */
  agentStatus(): Promise<AgentApiStatus>;
  /** The socket file's type, mode, owner and group, or undefined when missing. */
  socketFile(
    path: string,
  ): Promise<{ socket: boolean; mode: number; uid: number; gid: number } | undefined>;
  /** This process's uid and groups (the caller of the socket). */
  identity(): { uid: number; groups: number[] };
  /** `api.resolveAllow` of dso.yaml, or why it cannot be read. */
  resolveAllow(): Promise<{ patterns: string[]; file: string | undefined } | { error: string }>;
  now(): number;
  nodeVersion: string;
}

/**
 * Adds `dso doctor`: checks the engine, the agent, its socket's permissions, how files are
 * delivered (volume driver or tmpfs), `api.resolveAllow`, the providers, the clock and versions;
 * prints each with its fix, and fails when any is an error, with the exit code of the first
 * failed check's class (its `code`).
 */
export function registerDoctorCommand(
  program: Command,
  io: CliIo,
  dependencies: DoctorDependencies = defaultDoctorDependencies(io),
): void {
  program
    .command('doctor')
    .description(
      'check the setup: engine, agent, socket permissions, volume driver or tmpfs, resolveAllow, providers, clock, versions; each problem with its fix. Exits 0 when none failed (warnings included), else with the class of the first failed check in the order printed: 8 engine, 6 agent not answering or no socket, 5 socket not usable by you, 7 a provider down, 1 clock or Node',
    )
    .option('--json', 'print the checks as JSON')
    .action(async (options: { json?: boolean }) => {
      const checks = await runDoctor(dependencies);
      const errors = checks.filter((check) => check.outcome === 'error').length;
      if (options.json) {
        io.stdout.write(`${JSON.stringify({ ok: errors === 0, checks }, null, 2)}\n`);
      } else {
        const mark = { ok: 'ok  ', warning: 'warn', error: 'FAIL' } as const;
        for (const check of checks) {
          io.stdout.write(`${mark[check.outcome]} ${check.name}: ${check.detail}\n`);
          if (check.fix !== undefined) io.stdout.write(`     fix: ${check.fix}\n`);
        }
      }
      const first = checks.find((check) => check.outcome === 'error');
      if (first !== undefined) {
        throw new DsoError(
          'DSO_CLI_DOCTOR_FAILED',
          `${errors} ${errors === 1 ? 'check' : 'checks'} failed (each with its fix above); the first, ${first.name}, gives the exit code`,
          // The exit code is the class of the first failure's own code (exit-codes.ts).
          first.code === undefined ? {} : { classOf: first.code },
        );
      }
    });
}

/** Every check, in the order a person would fix them: engine first, versions last. */
export async function runDoctor(dependencies: DoctorDependencies): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const engine = await dependencies.engine();
  if ('error' in engine) {
    checks.push({
      name: 'engine',
      outcome: 'error',
      detail: `the Docker engine does not answer (${engine.error})`,
      code: 'DSO_CLI_DOCKER_FAILED',
      fix: 'start it (systemctl start docker), check DOCKER_HOST, or add yourself to the docker group (sudo usermod -aG docker $USER, then log in again)',
    });
  } else {
    checks.push({
      name: 'engine',
      outcome: 'ok',
      detail: `${engine.name ?? 'Docker'} ${engine.version} (API ${engine.apiVersion})`,
    });
  }

  const socket = await dependencies.agentSocket();
  // A dso.yaml that cannot be read is the resolve-allow check's to report; the default applies.
  const socketPath = 'error' in socket ? resolveApiSocket(dependencies.env) : socket.path;
  const socketFrom =
    'error' in socket || socket.source === 'default'
      ? ''
      : socket.source === 'dso.yaml'
        ? ` (api.socket in ${socket.configFile ?? 'dso.yaml'})`
        : socket.source === 'DSO_HOME'
          ? " (a non-root agent's, in DSO_HOME)"
          : ' (DSO_API_SOCKET)';
  let status: AgentApiStatus | undefined;
  try {
    status = await dependencies.agentStatus();
    checks.push({
      name: 'agent',
      outcome: 'ok',
      detail: `${status.version === undefined ? '' : `dso-agent ${status.version} `}running on ${socketPath}${socketFrom}${status.startedAt === null ? '' : ` since ${new Date(status.startedAt).toISOString()}`}, ${status.containers.length} managed ${status.containers.length === 1 ? 'consumer' : 'consumers'}`,
    });
  } catch (error) {
    const code = errorCode(error);
    checks.push({
      name: 'agent',
      outcome: 'error',
      detail: `no answer on ${socketPath}${socketFrom} (${code ?? (error instanceof Error ? error.message : String(error))})`,
      code: code ?? 'DSO_CLI_AGENT_ERROR',
      fix:
        code === 'DSO_CLI_AGENT_DENIED'
          ? 'you may not use its socket: see the socket check below'
          : `start it (dso-agent, or systemctl start dso-agent); if it listens elsewhere, set api.socket in dso.yaml (or DSO_API_SOCKET) to its socket`,
    });
  }

  checks.push(await socketCheck(socketPath, dependencies));

  if (status !== undefined) {
    checks.push(
      status.volumeDriver === undefined
        ? {
            name: 'delivery',
            outcome: 'warning',
            detail:
              'the agent serves no volume driver: files go into a tmpfs in each container by docker exec (the image needs sh and tar, and the container a tmpfs at the target)',
            fix: 'set volumes.enabled: true in dso.yaml and restart the agent (as root) for DSO volumes, which need neither',
          }
        : {
            name: 'delivery',
            outcome: 'ok',
            // Podman has no volume-driver in --mount: a named volume, which its containers.conf
            // must route to the agent's socket (README, "Podman").
            detail:
              'error' in engine || engine.name !== 'Podman'
                ? `volume driver "${status.volumeDriver}" served (--mount type=volume,volume-driver=${status.volumeDriver},...); tmpfs and exec for other containers`
                : `volume driver "${status.volumeDriver}" served (podman volume create --driver ${status.volumeDriver} -o <file>=dsofile://<ref> <volume>, then -v <volume>:/run/secrets; containers.conf needs ${status.volumeDriver} = "/run/docker/plugins/${status.volumeDriver}.sock" under [engine.volume_plugins]); tmpfs and exec for other containers`,
          },
    );
  }

  if (status !== undefined) {
    // The agent's label warnings (typos, near misses, owner/mode hints), and the one ownership
    // rule that breaks servers whose workers run as another user.
    const warned = status.containers.filter((entry) => (entry.warnings ?? []).length > 0);
    const names = warned.map((entry) => entry.name ?? entry.id.slice(0, 12));
    checks.push(
      warned.length > 0
        ? {
            name: 'labels',
            outcome: 'warning',
            detail: `${warned.length} managed ${warned.length === 1 ? 'container has' : 'containers have'} label warnings: ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''}`,
            fix: `dso status ${names[0]} shows each with its fix (an unknown dso.* label with what was meant, or an owner and mode that lock readers out)`,
          }
        : {
            name: 'labels',
            outcome: 'ok',
            detail:
              'no label warnings; files are mode 0400 owned by each container\'s user unless dso.owner/dso.mode say otherwise (a server whose workers run as another user, e.g. nginx: dso.owner=0:33 dso.mode=0440; see the README, "Ownership and modes")',
          },
    );
  }

  const allow = await dependencies.resolveAllow();
  if ('error' in allow) {
    checks.push({
      name: 'resolve-allow',
      outcome: 'warning',
      detail: `cannot read dso.yaml (${allow.error})`,
      fix: "fix dso.yaml, or set DSO_CONFIG to the agent's file",
    });
  } else if (allow.patterns.length === 0) {
    checks.push({
      name: 'resolve-allow',
      outcome: 'warning',
      detail: `api.resolveAllow is empty${allow.file === undefined ? ' (no dso.yaml)' : ` in ${allow.file}`}: dso:// environment values are refused (dsofile:// files work)`,
      fix: "to let dso up resolve dso:// values, list the references it may resolve, e.g. api.resolveAllow: ['dso://app/*']",
    });
  } else {
    checks.push({
      name: 'resolve-allow',
      outcome: 'ok',
      detail: `dso:// values may be resolved for ${allow.patterns.join(', ')}`,
    });
  }

  for (const provider of status?.providers ?? []) {
    const state = provider.state ?? {};
    const down = state.status === 'closed' || state.breaker === 'open';
    const shaky = state.status === 'restarting' || state.breaker === 'half-open';
    const facts = Object.entries(state)
      .filter(([key]) => key === 'status' || key === 'breaker' || key === 'restarts')
      .map(([key, value]) => `${key} ${String(value)}`)
      .join(', ');
    checks.push({
      name: `provider ${provider.name}`,
      outcome: down ? 'error' : shaky ? 'warning' : 'ok',
      ...(down ? { code: 'DSO_PROVIDER_UNAVAILABLE' } : {}),
      detail: `${provider.type}${facts === '' ? '' : `: ${facts}`}`,
      ...(down || shaky
        ? {
            fix: `its store does not answer: check its address and credentials in dso.yaml (providers.${provider.name}), and the agent's log`,
          }
        : {}),
    });
  }

  const now = dependencies.now();
  const engineTime =
    'error' in engine || engine.systemTime === undefined
      ? Number.NaN
      : Date.parse(engine.systemTime);
  if (new Date(now).getUTCFullYear() < 2024) {
    checks.push({
      name: 'clock',
      outcome: 'error',
      detail: `this host's clock says ${new Date(now).toISOString()}`,
      fix: 'set the time (timedatectl set-ntp true): versions, staleness and audit times depend on it',
    });
  } else if (Number.isFinite(engineTime) && Math.abs(engineTime - now) > MAX_CLOCK_SKEW_MS) {
    checks.push({
      name: 'clock',
      outcome: 'warning',
      detail: `this host and the engine differ by ${Math.round(Math.abs(engineTime - now) / 1000)} s`,
      fix: 'synchronise both clocks (timedatectl set-ntp true)',
    });
  } else {
    checks.push({
      name: 'clock',
      outcome: 'ok',
      detail: Number.isFinite(engineTime)
        ? `within ${MAX_CLOCK_SKEW_MS / 1000} s of the engine's`
        : new Date(now).toISOString(),
    });
  }

  const nodeOk = compareVersions(dependencies.nodeVersion, MIN_NODE_VERSION) >= 0;
  checks.push({
    name: 'versions',
    outcome: nodeOk ? 'ok' : 'error',
    detail: `dso ${packageJson.version}${status?.version === undefined ? '' : `, dso-agent ${status.version}`}, node ${dependencies.nodeVersion}${'error' in engine ? '' : `, ${engine.name ?? 'Docker'} ${engine.version}`}`,
    ...(nodeOk ? {} : { fix: `install Node ${MIN_NODE_VERSION} or newer` }),
  });
  return checks;
}

async function socketCheck(path: string, dependencies: DoctorDependencies): Promise<DoctorCheck> {
  const file = await dependencies.socketFile(path);
  if (file === undefined) {
    return {
      name: 'socket',
      outcome: 'error',
      detail: `${path} does not exist`,
      code: 'DSO_CLI_AGENT_UNREACHABLE',
      fix: "start the agent (dso finds a non-root agent's $DSO_HOME/agent.sock by itself); if it listens elsewhere, set api.socket in dso.yaml, or DSO_API_SOCKET",
    };
  }
  if (!file.socket) {
    return {
      name: 'socket',
      outcome: 'error',
      detail: `${path} is not a socket`,
      code: 'DSO_CLI_AGENT_UNREACHABLE',
      fix: 'remove it and restart the agent, or set api.socket to another path',
    };
  }
  const mode = `0${(file.mode & 0o777).toString(8).padStart(3, '0')}`;
  if ((file.mode & 0o002) !== 0) {
    return {
      name: 'socket',
      outcome: 'warning',
      detail: `${path} is mode ${mode}: every user of this host may ask the agent for secrets`,
      fix: 'set api.socketMode: "0660" and api.socketGroup to the operators\' group in dso.yaml',
    };
  }
  const me = dependencies.identity();
  const may =
    me.uid === 0 ||
    (me.uid === file.uid && (file.mode & 0o600) === 0o600) ||
    (me.groups.includes(file.gid) && (file.mode & 0o060) === 0o060);
  if (!may) {
    return {
      name: 'socket',
      outcome: 'error',
      detail: `${path} (mode ${mode}, owner ${file.uid}, group ${file.gid}) is not usable by uid ${me.uid}`,
      code: 'DSO_CLI_AGENT_DENIED',
      fix: `add yourself to group ${file.gid} (sudo usermod -aG $(getent group ${file.gid} | cut -d: -f1) $USER, then log in again), or run as root`,
    };
  }
  return {
    name: 'socket',
    outcome: 'ok',
    detail: `${path} (mode ${mode}, group ${file.gid}) usable by uid ${me.uid}`,
  };
}

function compareVersions(a: string, b: string): number {
  const parts = (text: string) =>
    text
      .replace(/^v/, '')
      .split('.')
      .map((part) => Number.parseInt(part, 10) || 0);
  const [x, y] = [parts(a), parts(b)];
  for (let index = 0; index < 3; index++) {
    const difference = (x[index] ?? 0) - (y[index] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/** The real engine (docker CLI), agent (its socket), socket file and dso.yaml. */
export function defaultDoctorDependencies(io: CliIo): DoctorDependencies {
  return {
    env: io.env,
    agentSocket: () =>
      findAgentSocket(io.env).catch((error: unknown) => ({
        error: errorCode(error) ?? (error instanceof Error ? error.message : String(error)),
      })),
    engine: async () => {
      const version = await query('docker', ['version', '--format', '{{json .Server}}'], io.env);
      if (version.error !== undefined) return { error: `docker: ${version.error.message}` };
      if (version.code !== 0) {
        return {
          error: version.stderr.trim().split('\n')[0] || `docker version exited ${version.code}`,
        };
      }
      const server = JSON.parse(version.stdout) as {
        Version?: string;
        ApiVersion?: string;
        Components?: Array<{ Name?: string }> | null;
      } | null;
      const info = await query('docker', ['info', '--format', '{{json .SystemTime}}'], io.env);
      let systemTime: string | undefined;
      try {
        systemTime = info.code === 0 ? (JSON.parse(info.stdout) as string) : undefined;
      } catch {
        // No engine time: the clock check falls back to this host's alone.
        systemTime = undefined;
      }
      return {
        // Podman's compatible service lists a component of that name (as the runtime reads it).
        name: server?.Components?.some((part) => part.Name === 'Podman Engine')
          ? 'Podman'
          : 'Docker',
        version: server?.Version ?? 'unknown',
        apiVersion: server?.ApiVersion ?? 'unknown',
        ...(systemTime === undefined ? {} : { systemTime }),
      };
    },
    agentStatus: () => createAgentClient({ socketPath: { env: io.env } }).status(),
    socketFile: async (path) => {
      try {
        const file = await stat(path);
        return { socket: file.isSocket(), mode: file.mode, uid: file.uid, gid: file.gid };
      } catch {
        // Missing or unreadable: both are "does not exist" to the caller, with the same fix.
        return undefined;
      }
    },
    identity: () => ({ uid: process.getuid?.() ?? -1, groups: process.getgroups?.() ?? [] }),
    resolveAllow: async () => {
      try {
        const { config, path } = await loadConfig({ env: io.env });
        return { patterns: [...config.api.resolveAllow], file: path };
      } catch (error) {
        return {
          error: errorCode(error) ?? (error instanceof Error ? error.message : String(error)),
        };
      }
    },
    now: () => Date.now(),
    nodeVersion: process.versions.node,
  };
}
