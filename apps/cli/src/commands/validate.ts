import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  checkFileAccess,
  checkLabels,
  DEFAULT_SECRETS_DIR,
  DsoError,
  errorCode,
  isDsoError,
  isReference,
  LABELS,
  parseManagedLabels,
  parseReference,
  parseVolumeOptions,
  resolveDsoPaths,
  suggestReference,
  VOLUME_DEFAULT_MODE,
  VOLUME_SETTINGS,
} from '@dso/core';
import { openVault, readKeyFile, resolveVaultKey } from '@dso/provider-local';
import type { Command } from 'commander';
import { type AgentClient, createAgentClient } from '../agent-client.js';
import { COMPOSE_FILE_NAMES, readComposeModel } from '../compose.js';
import { composeModel, detectCompose, query } from '../docker-cli.js';
import type { CliIo } from '../program.js';
import { localVaultSettings } from '../read-secret.js';

/** How bad a finding is: an `error` fails `dso validate`; a `warning` or `hint` does not. */
export type FindingSeverity = 'error' | 'warning' | 'hint';

/** One problem `dso validate` found, with what to do about it. */
export interface Finding {
  severity: FindingSeverity;
  /** Where: `<file> service <name>`, `volume <name>`, `container <name>`. */
  where: string;
  /** A `DSO_*` code. */
  code: string;
  /** What is wrong and what to do. */
  message: string;
}

/** Everything `dso validate` needs from outside, injected so tests need no engine or agent. */
export interface ValidateDependencies {
  cwd: string;
  /** Compose's merged model of these files (`config`), as it prints it. */
  composeModel(paths: readonly string[]): Promise<string>;
  exists(path: string): boolean;
  /** The agent, or undefined when none answers (then the local vault is asked). */
  agent(): AgentClient;
  /** The labels and tmpfs/mount targets of a container, by name or id. */
  inspectContainer(name: string): Promise<ContainerFacts>;
  /** The secret paths in the local vault, or a reason they cannot be read. */
  localPaths(): Promise<{ paths: Set<string> } | { unavailable: string }>;
}

/** What `dso validate <container>` reads of a container. */
export interface ContainerFacts {
  name: string;
  labels: Record<string, string>;
  /** Container paths of its tmpfs mounts. */
  tmpfs: string[];
  /** Container paths of its other mounts (binds and volumes). */
  mounts: string[];
}

/** One reference to look up, and where it was found. */
interface Wanted {
  reference: string;
  where: string;
}

/**
 * Adds `dso validate [compose files | container]`: checks labels (unknown `dso.*` labels with a
 * "did you mean"), references (grammar, near misses, and that each one resolves: the agent when
 * it runs, else the local vault), owner and mode, and the secrets' target; prints each problem
 * with its fix, and fails when any is an error.
 */
export function registerValidateCommand(
  program: Command,
  io: CliIo,
  dependencies: ValidateDependencies = defaultValidateDependencies(io),
): void {
  program
    .command('validate')
    .description(
      'check compose files (default: the one in this folder) or a container before running: labels, references (and that each one resolves), owner/mode, targets; each problem with its fix',
    )
    .argument('[targets...]', 'compose files, or one container name or id')
    .option('--json', 'print the findings as JSON')
    .option('--offline', 'do not ask the agent or the vault whether references resolve')
    .action(async (targets: string[], options: { json?: boolean; offline?: boolean }) => {
      const findings = await runValidate(targets, options, dependencies);
      const errors = findings.filter((finding) => finding.severity === 'error').length;
      if (options.json) {
        io.stdout.write(`${JSON.stringify({ ok: errors === 0, findings }, null, 2)}\n`);
      } else {
        for (const finding of findings) {
          io.stdout.write(
            `${finding.severity}: ${finding.where}: ${finding.message} (${finding.code})\n`,
          );
        }
        const others = findings.length - errors;
        io.stdout.write(
          errors === 0 && others === 0
            ? 'no problems found\n'
            : `${errors} ${errors === 1 ? 'error' : 'errors'}, ${others} ${others === 1 ? 'warning or hint' : 'warnings or hints'}\n`,
        );
      }
      if (errors > 0) {
        throw new DsoError(
          'DSO_CLI_VALIDATE_FAILED',
          `${errors} ${errors === 1 ? 'problem' : 'problems'} to fix before running (listed above)`,
        );
      }
    });
}

/**
 * The findings for `targets`: compose files (none: the default compose file of the folder), or
 * one name that is not a file, taken as a container.
 *
 * @throws DsoError DSO_CLI_COMPOSE_NOT_FOUND when no target is given and the folder has no compose file
 */
export async function runValidate(
  targets: readonly string[],
  options: { offline?: boolean },
  dependencies: ValidateDependencies,
): Promise<Finding[]> {
  const findings: Finding[] = [];
  const wanted: Wanted[] = [];
  const first = targets[0];
  if (
    targets.length === 1 &&
    first !== undefined &&
    !dependencies.exists(resolve(dependencies.cwd, first))
  ) {
    const container = await dependencies.inspectContainer(first);
    checkContainer(container, findings, wanted);
  } else {
    const paths =
      targets.length > 0
        ? targets.map((target) => resolve(dependencies.cwd, target))
        : defaultComposeFile(dependencies);
    await checkCompose(paths, dependencies, findings, wanted);
  }
  if (!options.offline) await checkResolvable(wanted, dependencies, findings);
  return findings;
}

function defaultComposeFile(dependencies: ValidateDependencies): string[] {
  for (const name of COMPOSE_FILE_NAMES) {
    const path = resolve(dependencies.cwd, name);
    if (dependencies.exists(path)) return [path];
  }
  throw new DsoError(
    'DSO_CLI_COMPOSE_NOT_FOUND',
    `no compose file in ${dependencies.cwd} (looked for ${COMPOSE_FILE_NAMES.join(', ')}): name the files, or a container, e.g. dso validate compose.yaml`,
  );
}

async function checkCompose(
  paths: readonly string[],
  dependencies: ValidateDependencies,
  findings: Finding[],
  wanted: Wanted[],
): Promise<void> {
  // Compose's own merged model: every file, `extends`, `.env` and interpolation as compose sees
  // them, every service whatever its profiles.
  const model = readComposeModel(await dependencies.composeModel(paths));
  const file = paths.length === 1 ? paths[0]! : `${paths.length} compose files`;
  for (const view of model.services) {
    const where = `${file} service ${view.name}`;
    const labels = Object.fromEntries(view.labels);
    checkLabelSet(labels, where, findings);
    let fileCount = 0;
    for (const [name, value] of view.environment) {
      if (value === null) continue;
      const at = `${where} environment ${name}`;
      if (checkReferenceText(value, at, findings, wanted) === 'dsofile') fileCount++;
    }
    for (const [key, value] of view.labels) {
      if (key.startsWith(LABELS.filePrefix) || key.startsWith(LABELS.envPrefix)) {
        if (isReference(value)) wanted.push({ reference: value, where: `${where} label ${key}` });
        if (key.startsWith(LABELS.filePrefix)) fileCount++;
      }
    }
    if (fileCount > 0) checkTarget(labels, view.tmpfs, view.volumeTargets, where, findings);
  }
  // A DSO volume's options are references and its owner and mode.
  for (const [name, volume] of Object.entries(model.volumes)) {
    if (volume === null || typeof volume !== 'object') continue;
    const { driver, driver_opts: options } = volume as {
      driver?: unknown;
      driver_opts?: unknown;
    };
    if (options === null || typeof options !== 'object') continue;
    const values = Object.values(options as Record<string, unknown>);
    const dsoLike =
      (typeof driver === 'string' && /^dso(?:$|[-:@])/.test(driver)) ||
      values.some(
        (value) =>
          typeof value === 'string' &&
          (isReference(value) || suggestReference(value) !== undefined),
      );
    if (!dsoLike) continue;
    const where = `${file} volume ${name}`;
    try {
      const spec = parseVolumeOptions(options as Record<string, unknown>);
      for (const file of spec.files) {
        const text = (options as Record<string, string>)[file.name]!;
        wanted.push({ reference: text, where: `${where} option ${file.name}` });
      }
    } catch (error) {
      findings.push(errorFinding(error, where));
    }
    for (const hint of checkFileAccess(options as Record<string, string>, {
      owner: VOLUME_SETTINGS.owner,
      mode: VOLUME_SETTINGS.mode,
      defaultMode: VOLUME_DEFAULT_MODE,
    })) {
      findings.push({ severity: 'hint', where, code: hint.code, message: hint.message });
    }
    for (const [key, value] of Object.entries(options as Record<string, unknown>)) {
      const meant = typeof value === 'string' ? suggestReference(value) : undefined;
      if (meant !== undefined) {
        findings.push({
          severity: 'error',
          where: `${where} option ${key}`,
          code: 'DSO_REFERENCE_NEAR_MISS',
          message: `${JSON.stringify(value)} is not a reference; did you mean ${key}=${meant}?`,
        });
      }
    }
  }
}

function checkContainer(container: ContainerFacts, findings: Finding[], wanted: Wanted[]): void {
  const where = `container ${container.name}`;
  checkLabelSet(container.labels, where, findings);
  if (container.labels[LABELS.enable] === 'true') {
    try {
      const spec = parseManagedLabels(container.labels);
      if (spec !== undefined) {
        for (const file of spec.files) {
          wanted.push({
            reference: container.labels[`${LABELS.filePrefix}${file.name}`]!,
            where: `${where} label ${LABELS.filePrefix}${file.name}`,
          });
        }
        for (const variable of spec.env) {
          wanted.push({
            reference: container.labels[`${LABELS.envPrefix}${variable.name}`]!,
            where: `${where} label ${LABELS.envPrefix}${variable.name}`,
          });
        }
        if (spec.files.length > 0)
          checkTarget(container.labels, container.tmpfs, container.mounts, where, findings, {
            container: true,
          });
      }
    } catch {
      // parseManagedLabels' refusal is a finding of checkLabelSet already.
    }
  }
}

/** Unknown labels, near misses and owner/mode hints; a refused label set is an error. */
function checkLabelSet(labels: Record<string, string>, where: string, findings: Finding[]): void {
  for (const warning of checkLabels(labels)) {
    findings.push({
      severity: warning.code === 'DSO_LABEL_ACCESS_HINT' ? 'hint' : 'error',
      where,
      code: warning.code,
      message: warning.message,
    });
  }
  const dso = Object.keys(labels).some((key) => key.startsWith('dso.'));
  if (!dso) return;
  try {
    // As the agent will read them once `dso up` (or the operator) opts the container in.
    parseManagedLabels({ ...labels, [LABELS.enable]: 'true' });
  } catch (error) {
    findings.push(errorFinding(error, where));
  }
}

/**
 * A value of an environment variable: a reference is parsed (and looked up later), a near miss
 * (`dsofile:/app/x`) is an error with what was meant, anything else is left alone (and never
 * quoted: it may be a value).
 */
function checkReferenceText(
  value: string,
  where: string,
  findings: Finding[],
  wanted: Wanted[],
): 'dso' | 'dsofile' | undefined {
  if (isReference(value)) {
    try {
      const reference = parseReference(value);
      wanted.push({ reference: value, where });
      return reference.scheme;
    } catch (error) {
      findings.push(errorFinding(error, where));
      return undefined;
    }
  }
  const meant = suggestReference(value);
  if (meant !== undefined) {
    findings.push({
      severity: 'error',
      where,
      code: 'DSO_REFERENCE_NEAR_MISS',
      message: `${JSON.stringify(value)} is not a reference and would reach the container as literal text; did you mean ${meant}?`,
    });
  }
  return undefined;
}

/** Files go to the target: a tmpfs there is fine, another mount there takes them elsewhere. */
function checkTarget(
  labels: Record<string, string>,
  tmpfs: readonly string[],
  mounts: readonly string[],
  where: string,
  findings: Finding[],
  options: { container?: boolean } = {},
): void {
  const target = labels[LABELS.target] ?? DEFAULT_SECRETS_DIR;
  const trim = (path: string) => path.replace(/\/+$/, '') || '/';
  if (tmpfs.map(trim).includes(target)) return;
  if (options.container) {
    // A running container's mount at the target may be its host-path folder (a read-only bind
    // the agent writes into); no mount at all is the agent's DSO_DOCKER_TARGET_NOT_TMPFS.
    if (!mounts.map(trim).includes(target)) {
      findings.push({
        severity: 'error',
        where,
        code: 'DSO_DOCKER_TARGET_NOT_TMPFS',
        message: `${target}, where the secret files go, is no tmpfs in this container, so the agent refuses to write there (it would be the container's disk): recreate it with --tmpfs ${target}, or use a DSO volume (--mount type=volume,volume-driver=dso,dst=${target},...)`,
      });
    }
    return;
  }
  if (mounts.map(trim).includes(target)) {
    findings.push({
      severity: 'warning',
      where,
      code: 'DSO_LABEL_TARGET_MOUNTED',
      message: `a volume or bind is mounted at ${target}, where the secret files go: unless it is a DSO volume, the files would be written into it (host disk for a bind); remove that mount, or set ${LABELS.target} to another directory`,
    });
  }
}

async function checkResolvable(
  wanted: readonly Wanted[],
  dependencies: ValidateDependencies,
  findings: Finding[],
): Promise<void> {
  if (wanted.length === 0) return;
  const unique = [...new Set(wanted.map((entry) => entry.reference))];
  const whereOf = (reference: string) =>
    wanted
      .filter((entry) => entry.reference === reference)
      .map((entry) => entry.where)
      .join(', ');
  let agentAnswer: Awaited<ReturnType<AgentClient['check']>> | undefined;
  let agentProblem: string | undefined;
  try {
    agentAnswer = await dependencies.agent().check(unique);
  } catch (error) {
    agentProblem = `${errorCode(error) ?? 'error'}: ${error instanceof Error ? error.message : String(error)}`;
  }
  if (agentAnswer !== undefined) {
    for (const checked of agentAnswer) {
      if (checked.code === undefined) continue;
      findings.push({
        severity: 'error',
        where: whereOf(checked.reference),
        code: checked.code,
        message: `${checked.reference} does not resolve: ${checked.error ?? checked.code}`,
      });
    }
    return;
  }
  // No agent: the local vault (references to other providers cannot be checked here).
  const local = await dependencies.localPaths();
  if ('unavailable' in local) {
    findings.push({
      severity: 'warning',
      where: 'references',
      code: 'DSO_CLI_VALIDATE_UNCHECKED',
      message: `could not check that the references resolve: the agent does not answer (${agentProblem}) and ${local.unavailable}; start the agent, or run with --offline`,
    });
    return;
  }
  for (const text of unique) {
    const reference = parseReference(text);
    if (reference.provider !== undefined && reference.provider !== 'local') continue;
    if (!local.paths.has(reference.path)) {
      findings.push({
        severity: 'error',
        where: whereOf(text),
        code: 'DSO_PROVIDER_NOT_FOUND',
        message: `${text}: no secret at ${reference.path} in the local vault; store it with \`dso secret set ${reference.path}\``,
      });
    }
  }
}

function errorFinding(error: unknown, where: string): Finding {
  if (!isDsoError(error)) throw error;
  return { severity: 'error', where, code: error.code, message: error.message };
}

/** The real engine (docker CLI), agent (its socket) and vault (dso.yaml's local provider). */
export function defaultValidateDependencies(io: CliIo): ValidateDependencies {
  return {
    cwd: process.cwd(),
    composeModel: async (paths) =>
      composeModel({
        compose: await detectCompose(io.env),
        args: paths.flatMap((path) => ['-f', path]),
        env: io.env,
        stderr: io.stderr,
      }),
    exists: (path) => existsSync(path),
    agent: () => createAgentClient({ socketPath: { env: io.env } }),
    inspectContainer: async (name) => {
      const result = await query('docker', ['container', 'inspect', name], io.env);
      if (result.error !== undefined || result.code !== 0) {
        throw new DsoError(
          'DSO_CLI_CONTAINER_UNKNOWN',
          `${JSON.stringify(name)} is neither a file nor a container on this engine (${result.stderr.split('\n')[0] || result.error?.message || `exit ${result.code}`}): give compose files, or a name or id from docker ps`,
          { container: name },
        );
      }
      const [details] = JSON.parse(result.stdout) as Array<{
        Name?: string;
        Config?: { Labels?: Record<string, string> | null };
        HostConfig?: { Tmpfs?: Record<string, string> | null };
        Mounts?: Array<{ Type?: string; Destination?: string }>;
      }>;
      const mounts = details?.Mounts ?? [];
      return {
        name: (details?.Name ?? name).replace(/^\//, ''),
        labels: details?.Config?.Labels ?? {},
        tmpfs: [
          ...Object.keys(details?.HostConfig?.Tmpfs ?? {}),
          ...mounts
            .filter((mount) => mount.Type === 'tmpfs')
            .map((mount) => mount.Destination ?? ''),
        ],
        mounts: mounts
          .filter((mount) => mount.Type !== 'tmpfs')
          .map((mount) => mount.Destination ?? ''),
      };
    },
    localPaths: async () => {
      try {
        const settings = await localVaultSettings(io.env);
        if (!existsSync(settings.vaultPath))
          return { unavailable: `there is no local vault at ${settings.vaultPath}` };
        const key =
          settings.keyFile !== undefined
            ? await readKeyFile(settings.keyFile)
            : await resolveVaultKey({
                env: io.env,
                defaultKeyFile: resolveDsoPaths(io.env).defaultKeyFile,
              });
        await using vault = await openVault({ path: settings.vaultPath, key });
        return { paths: new Set(await vault.list()) };
      } catch (error) {
        return {
          unavailable: `the local vault cannot be read (${errorCode(error) ?? (error instanceof Error ? error.message : String(error))})`,
        };
      }
    },
  };
}
