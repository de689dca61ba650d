import { DsoError, errorCode } from '@dso/core';
import { EXIT_CODES } from './exit-codes.js';
import { type CliIo, runCli } from './program.js';
import { CLI_VERSION } from './version.js';

// ---------------------------------------------------------------------------------------------
// `docker dso …`: the Docker CLI plugin contract. Docker looks for an executable `docker-dso` in
// its plugin folders (~/.docker/cli-plugins, /usr/local/lib/docker/cli-plugins, …), asks it
// `docker-dso docker-cli-plugin-metadata` for a JSON description (for `docker --help`), and
// runs it with docker's own argv: its global flags first, then the plugin's name, then the rest
// (`docker -H unix:///x dso status` runs `docker-dso -H unix:///x dso status`).
// ---------------------------------------------------------------------------------------------

/** The plugin's name: the word after `docker`, and the executable's name after `docker-`. */
export const DOCKER_PLUGIN_NAME = 'dso';
/** The argument Docker passes to ask a plugin for its metadata. */
export const DOCKER_PLUGIN_METADATA_COMMAND = 'docker-cli-plugin-metadata';
/** The command name help and usage lines show when run as a plugin. */
export const DOCKER_PLUGIN_COMMAND = `docker ${DOCKER_PLUGIN_NAME}`;

/** What a plugin answers to `docker-cli-plugin-metadata` (schema 0.1.0, the only one). */
export interface DockerPluginMetadata {
  SchemaVersion: '0.1.0';
  Vendor: string;
  Version: string;
  ShortDescription: string;
}

export function dockerPluginMetadata(): DockerPluginMetadata {
  return {
    SchemaVersion: '0.1.0',
    Vendor: 'DSO',
    Version: CLI_VERSION,
    ShortDescription: 'Secrets from secret stores into running containers (the dso command)',
  };
}

/** How Docker called the plugin: for its metadata, or to run `dso` with these arguments. */
export type DockerPluginInvocation =
  | { kind: 'metadata' }
  | {
      kind: 'run';
      /** The `dso` arguments: everything after `dso`. */
      args: string[];
      /** Docker's global flags, as the environment variables docker and compose read. */
      env: Record<string, string>;
    };

// Docker's global flags (cli/flags/options.go) and where each goes. `env` flags become the
// variable docker, compose and dso read, so `dso up` talks to the engine docker was told to;
// `ignore` flags are docker's own logging; the TLS files have no variable of their own.
type GlobalFlag = { takesValue: boolean; env?: string; unsupported?: string };
const CERT_PATH_FIX =
  'set DOCKER_CERT_PATH to the folder holding ca.pem, cert.pem and key.pem instead';
const GLOBAL_FLAGS: Readonly<Record<string, GlobalFlag>> = {
  '--config': { takesValue: true, env: 'DOCKER_CONFIG' },
  '--context': { takesValue: true, env: 'DOCKER_CONTEXT' },
  '-c': { takesValue: true, env: 'DOCKER_CONTEXT' },
  '--host': { takesValue: true, env: 'DOCKER_HOST' },
  '-H': { takesValue: true, env: 'DOCKER_HOST' },
  '--log-level': { takesValue: true },
  '-l': { takesValue: true },
  '--debug': { takesValue: false },
  '-D': { takesValue: false },
  '--tls': { takesValue: false, env: 'DOCKER_TLS' },
  '--tlsverify': { takesValue: false, env: 'DOCKER_TLS_VERIFY' },
  '--tlscacert': { takesValue: true, unsupported: CERT_PATH_FIX },
  '--tlscert': { takesValue: true, unsupported: CERT_PATH_FIX },
  '--tlskey': { takesValue: true, unsupported: CERT_PATH_FIX },
};

/** Asked of `docker-dso` itself; docker answers these itself before any plugin runs. */
const STANDALONE_FLAGS = new Set(['-h', '--help', '-v', '--version']);

const usageError = (message: string) =>
  new DsoError(
    'DSO_CLI_DOCKER_PLUGIN_USAGE',
    `${message}: docker-dso is the Docker CLI plugin, run it as \`docker dso <command>\` (or run \`dso <command>\`)`,
  );

/**
 * Reads the argv Docker gives the plugin (without node and the script).
 *
 * @example
 * parseDockerPluginArgs(['-H', 'unix:///run/x.sock', 'dso', 'status']);
 * // { kind: 'run', args: ['status'], env: { DOCKER_HOST: 'unix:///run/x.sock' } }
 * @throws DsoError DSO_CLI_DOCKER_PLUGIN_USAGE when `dso` is not the command, or a global flag
 *   cannot be passed on
 */
export function parseDockerPluginArgs(argv: readonly string[]): DockerPluginInvocation {
  if (argv[0] === DOCKER_PLUGIN_METADATA_COMMAND) return { kind: 'metadata' };
  const env: Record<string, string> = {};
  let helpTopic = false;
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === DOCKER_PLUGIN_NAME) {
      const rest = argv.slice(i + 1);
      // `docker help dso [command]` runs `docker-dso help dso [command]`.
      const args = helpTopic ? (rest.length > 0 ? ['help', ...rest] : ['--help']) : rest;
      return { kind: 'run', args, env };
    }
    // Run directly (`docker-dso --help`, as a package check runs every bin): dso's own answer.
    if (STANDALONE_FLAGS.has(arg) && !helpTopic) return { kind: 'run', args: [arg], env };
    if (arg === 'help' && !helpTopic) {
      helpTopic = true;
      continue;
    }
    if (!arg.startsWith('-') || helpTopic) {
      throw usageError(`unexpected ${JSON.stringify(arg)} where docker passes \`dso\``);
    }
    // --flag=value, -Hvalue, -H=value, or the value in the next argument.
    const long = arg.startsWith('--');
    const equals = arg.indexOf('=');
    const name = long ? (equals > 0 ? arg.slice(0, equals) : arg) : arg.slice(0, 2);
    const flag = GLOBAL_FLAGS[name];
    if (!flag) throw usageError(`unknown docker option ${name}`);
    if (flag.unsupported) {
      throw new DsoError(
        'DSO_CLI_DOCKER_PLUGIN_FLAG',
        `docker dso cannot pass docker's ${name} on: ${flag.unsupported}`,
      );
    }
    let value: string;
    if (!flag.takesValue) {
      // pflag booleans: --tlsverify or --tlsverify=false.
      value = equals > 0 ? arg.slice(equals + 1) : 'true';
      if (value === 'false') continue;
      value = '1';
    } else if (long ? equals > 0 : arg.length > 2) {
      value = long ? arg.slice(equals + 1) : arg.slice(arg[2] === '=' ? 3 : 2);
    } else {
      const next = argv[i + 1];
      if (next === undefined) throw usageError(`docker option ${name} has no value`);
      value = next;
      i += 1;
    }
    if (flag.env) env[flag.env] = value;
  }
  throw usageError('no `dso` command in the arguments');
}

/**
 * Runs the plugin: answers Docker's metadata request, or runs `dso` with the arguments after
 * `dso` and Docker's global flags in the environment. Resolves with the exit code.
 *
 * @example
 * process.exitCode = await runDockerPlugin(process.argv.slice(2), io);
 */
export async function runDockerPlugin(argv: readonly string[], io: CliIo): Promise<number> {
  let invocation: DockerPluginInvocation;
  try {
    invocation = parseDockerPluginArgs(argv);
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`${DOCKER_PLUGIN_COMMAND}: ${message} (${errorCode(error)})\n`);
    return EXIT_CODES.usage;
  }
  if (invocation.kind === 'metadata') {
    io.stdout.write(`${JSON.stringify(dockerPluginMetadata(), null, 2)}\n`);
    return 0;
  }
  return runCli(
    invocation.args,
    { ...io, env: { ...io.env, ...invocation.env } },
    { name: DOCKER_PLUGIN_COMMAND },
  );
}
