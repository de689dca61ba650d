import { errorCode, isDsoError } from '@dso/core';
import { CommanderError } from 'commander';

/**
 * `dso`'s exit codes, one per failure class, so a script can tell "the agent is down, try later"
 * from "that secret does not exist" without parsing messages. Every error still prints its own
 * `DSO_*` code on stderr; the exit code is its class.
 *
 * Shells keep 126, 127 and 128+n for themselves; 130 is what they report for Ctrl-C, and a
 * cancelled prompt says the same.
 */
export const EXIT_CODES = {
  /** It worked (also `--help`, `--version`). */
  ok: 0,
  /** A failure with no class: an unexpected error, or an agent and a CLI that disagree. */
  failure: 1,
  /** Bad usage: an unknown command or option, a missing or extra argument, a value in argv. */
  usage: 2,
  /** Refused input: a path, reference, label, value, compose file or configuration that is not valid. */
  invalid: 3,
  /** Something named does not exist: a secret, container, vault, compose file, image, tool. */
  notFound: 4,
  /** Not allowed, or in the way: a permission, a policy (`api.resolveAllow`), a vault or key that exists already, a conflict. */
  refused: 5,
  /** The agent cannot take the call now: not running, busy, stopping, too slow. Try again later. */
  unavailable: 6,
  /** A secret store failed: a provider is unreachable, slow, throttled or refuses the credentials; the vault cannot be read. */
  store: 7,
  /** The Docker engine failed, or compose could not be run (a compose that ran and failed: its own code). */
  docker: 8,
  /** Cancelled (Ctrl-C at a prompt or during a call). */
  cancelled: 130,
} as const;

/** A failure class: a key of {@link EXIT_CODES}. */
export type ExitClass = keyof typeof EXIT_CODES;

/** One row of the documented exit code table (`dso --help`'s footer, README, docs/cli.md). */
export interface ExitCodeRow {
  code: number;
  name: ExitClass;
  meaning: string;
  /** Typical `DSO_*` codes of the class. */
  examples: string[];
}

/** The table, in code order: what each exit code means and the error codes that lead to it. */
export const EXIT_CODE_TABLE: readonly ExitCodeRow[] = [
  { code: 0, name: 'ok', meaning: 'success (also `--help` and `--version`)', examples: [] },
  {
    code: 1,
    name: 'failure',
    meaning:
      'an unexpected failure with no class below (a bug, or an agent and a CLI of different versions)',
    examples: ['DSO_CLI_AGENT_RESPONSE', 'DSO_AGENT_API_INTERNAL'],
  },
  {
    code: 2,
    name: 'usage',
    meaning:
      'bad usage: unknown command or option, missing or extra argument, a secret value given as an argument',
    examples: ['DSO_CLI_VALUE_IN_ARGV'],
  },
  {
    code: 3,
    name: 'invalid',
    meaning:
      'invalid input: a secret path, reference, label, value, compose file or configuration is refused',
    examples: [
      'DSO_REFERENCE_INVALID',
      'DSO_CLI_COMPOSE_INVALID',
      'DSO_CLI_VALUE_TOO_LARGE',
      'DSO_CONFIG_INVALID',
    ],
  },
  {
    code: 4,
    name: 'notFound',
    meaning:
      'not found: a secret, container, vault, compose file, image or tool named does not exist',
    examples: [
      'DSO_PROVIDER_NOT_FOUND',
      'DSO_VAULT_NOT_FOUND',
      'DSO_AGENT_CONTAINER_UNKNOWN',
      'DSO_CLI_COMPOSE_NOT_FOUND',
    ],
  },
  {
    code: 5,
    name: 'refused',
    meaning:
      "refused: no permission (the agent's socket, a key file), a policy (`api.resolveAllow`), something that exists already or conflicts",
    examples: [
      'DSO_CLI_AGENT_DENIED',
      'DSO_AGENT_RESOLVE_DENIED',
      'DSO_VAULT_EXISTS',
      'DSO_VAULT_WRONG_KEY',
    ],
  },
  {
    code: 6,
    name: 'unavailable',
    meaning: 'the agent is not running, busy, stopping or too slow: start it, or try again later',
    examples: [
      'DSO_CLI_AGENT_UNREACHABLE',
      'DSO_CLI_AGENT_BUSY',
      'DSO_CLI_AGENT_TIMEOUT',
      'DSO_AGENT_NOT_RUNNING',
    ],
  },
  {
    code: 7,
    name: 'store',
    meaning:
      'a secret store failed: a provider is unreachable, slow, throttled or refuses its credentials, or the vault cannot be read',
    examples: ['DSO_AGENT_RESOLVE_FAILED', 'DSO_PROVIDER_UNAVAILABLE', 'DSO_VAULT_CORRUPT'],
  },
  {
    code: 8,
    name: 'docker',
    meaning:
      "the Docker engine failed, or compose could not be run at all (not installed). When compose runs and fails, `dso up`, `dso down` and the other compose verbs exit with compose's own exit code (DSO_CLI_COMPOSE_FAILED), its output above",
    examples: ['DSO_CLI_COMPOSE_MISSING', 'DSO_CLI_DOCKER_FAILED', 'DSO_DOCKER_UNREACHABLE'],
  },
  {
    code: 130,
    name: 'cancelled',
    meaning: 'cancelled with Ctrl-C',
    examples: ['DSO_CLI_CANCELLED'],
  },
];

// Codes whose class their name does not say (or says otherwise); checked before the rules below.
const BY_CODE: Readonly<Record<string, ExitClass>> = {
  DSO_CLI_VALUE_IN_ARGV: 'usage',
  DSO_CLI_DOCKER_PLUGIN_USAGE: 'usage', // docker-dso run without `dso` as its command
  DSO_CLI_DOCKER_PLUGIN_FLAG: 'usage', // a docker global flag the plugin cannot pass on (--tlscacert...)
  DSO_CLI_CANCELLED: 'cancelled',
  DSO_CLI_AGENT_ABORTED: 'cancelled',
  DSO_CLI_AGENT_UNREACHABLE: 'unavailable',
  DSO_CLI_AGENT_BUSY: 'unavailable',
  DSO_CLI_AGENT_TIMEOUT: 'unavailable',
  DSO_AGENT_NOT_RUNNING: 'unavailable',
  DSO_AGENT_API_BUSY: 'unavailable',
  DSO_AGENT_ENGINE_LOST: 'unavailable',
  DSO_CLI_AGENT_RESPONSE: 'failure',
  DSO_CLI_DOCTOR_FAILED: 'failure', // the clock or Node failed (else its first check's class: exitCodeFor)
  DSO_CLI_VALIDATE_FAILED: 'invalid', // what it checked is not valid: each finding printed
  DSO_CLI_CONTAINER_AMBIGUOUS: 'invalid', // a name or id prefix that matches several
  DSO_CLI_AGENT_ERROR: 'failure',
  DSO_AGENT_API_INTERNAL: 'failure',
  DSO_AGENT_API_NOT_FOUND: 'failure', // a route this agent does not have: versions differ
  DSO_AGENT_API_METHOD: 'failure',
  DSO_AGENT_API_BAD_REQUEST: 'invalid',
  DSO_AGENT_API_BODY_TOO_LARGE: 'invalid',
  DSO_AGENT_RESOLVE_DISABLED: 'refused',
  DSO_AGENT_RESOLVE_FAILED: 'store',
  DSO_AGENT_PROVIDER_NOT_INSTALLED: 'notFound',
  DSO_API_FORBIDDEN: 'refused',
  DSO_VAULT_WRONG_KEY: 'refused',
  DSO_VAULT_LOCKED: 'refused',
  DSO_VAULT_TOO_LARGE: 'invalid',
  DSO_VAULT_KEY_CONFLICT: 'invalid', // a passphrase and a key file both set: choose one
  DSO_LABEL_UNKNOWN: 'invalid', // a dso.* label with a typo, not a missing thing
  DSO_CLI_VALUE_EMPTY: 'invalid',
  DSO_CLI_VALUE_TOO_LARGE: 'invalid',
  DSO_CLI_UP_CONFLICT: 'invalid', // the service's own dso.* label contradicts its environment
  DSO_CLI_UP_FILE_NAME: 'invalid',
  DSO_CLI_UP_VALUE_BINARY: 'invalid',
  DSO_CLI_UP_NO_COMMAND: 'invalid',
  DSO_CLI_UP_STDIN: 'invalid',
  DSO_CLI_RESOLVE_TOO_MANY: 'invalid',
  DSO_CLI_PLUGIN_SDK_MISMATCH: 'invalid', // a plugin built for an SDK this DSO does not supply
  DSO_CLI_PLUGIN_INSTALL_FAILED: 'invalid', // npm refused the package (a conflict, a failing script): its lines say why
  DSO_CLI_COMPOSE_FAILED: 'docker', // when compose ran: its own exit code (composeExitCode)
  DSO_CLI_COMPOSE_MISSING: 'docker', // compose could not be run at all: 8, not compose's code
  DSO_CLI_COMPOSE_PIPE: 'docker',
  DSO_CLI_DOCKER_FAILED: 'docker',
  DSO_PROVIDER_NOT_FOUND: 'notFound',
  DSO_PROVIDER_INVALID_CONFIG: 'invalid',
  DSO_PROVIDER_TOO_LARGE: 'invalid',
};

// Then the name: first what its last words say, then its area, then (for the CLI's and the
// agent's own codes) being slow or away. First match wins, so a provider's `…_TIMEOUT` is the
// store's failure and the engine's `…_PERMISSION_DENIED` is a refusal.
const BY_NAME: ReadonlyArray<readonly [RegExp, ExitClass]> = [
  [/_(NOT_FOUND|UNKNOWN|MISSING|NOT_INSTALLED)$/, 'notFound'],
  [/_(INVALID|INVALID_[A-Z0-9_]+|NEAR_MISS|INSECURE|UNREADABLE)$/, 'invalid'],
  [/_(DENIED|PERMISSIONS|FORBIDDEN|EXISTS|CONFLICT|IN_USE|TAKEN)$/, 'refused'],
  [/^DSO_(DOCKER|VOLUME)_/, 'docker'],
  [/^DSO_(PROVIDER|VAULT|CACHE)_/, 'store'],
  [/^DSO_(CONFIG|REFERENCE|LABEL)_/, 'invalid'],
  [/_(TIMEOUT|BUSY|UNREACHABLE|UNAVAILABLE|NOT_RUNNING)$/, 'unavailable'],
];

// An agent code this CLI does not know (a newer agent): its HTTP status says the class.
const BY_STATUS: Readonly<Record<number, ExitClass>> = {
  400: 'invalid',
  403: 'refused',
  404: 'notFound',
  409: 'refused',
  413: 'invalid',
  422: 'invalid',
  503: 'unavailable',
};

/**
 * The class of a `DSO_*` error code: the code's own entry, else what its name says (`…_NOT_FOUND`,
 * `…_INVALID`, `DSO_PROVIDER_…`), else `failure`. A provider's or the engine's `…_TIMEOUT` is the
 * store's or the engine's class, not `unavailable` (which is the agent's).
 *
 * @example
 * exitClassOf('DSO_VAULT_NOT_FOUND'); // 'notFound'
 */
export function exitClassOf(code: string): ExitClass {
  const known = BY_CODE[code];
  if (known !== undefined) return known;
  for (const [pattern, exitClass] of BY_NAME) if (pattern.test(code)) return exitClass;
  return 'failure';
}

/**
 * Compose's own exit code, carried by DSO_CLI_COMPOSE_FAILED as `exitCode`: `dso up`, `dso down`
 * and the other compose verbs end as compose ended, like a wrapper should.
 */
function composeExitCode(error: unknown): number | undefined {
  const exitCode = isDsoError(error) ? error.details.exitCode : undefined;
  return typeof exitCode === 'number' &&
    Number.isInteger(exitCode) &&
    exitCode > 0 &&
    exitCode < 256
    ? exitCode
    : undefined;
}

/**
 * The exit code `dso` ends with after `error` (see {@link EXIT_CODE_TABLE}): 0 for help and
 * version, 2 for commander's usage errors, else the class of the error's `DSO_*` code; an agent
 * code with no class of its own is classed by the HTTP status it came with; anything else is 1.
 *
 * @example
 * } catch (error) {
 *   return exitCodeFor(error);
 * }
 */
export function exitCodeFor(error: unknown): number {
  if (error instanceof CommanderError)
    return error.exitCode === 0 ? EXIT_CODES.ok : EXIT_CODES.usage;
  // An error that sums up others (dso doctor's failed checks) takes the class of the one named.
  if (isDsoError(error) && typeof error.details.classOf === 'string')
    return EXIT_CODES[exitClassOf(error.details.classOf)];
  const code = errorCode(error);
  if (code === undefined) return EXIT_CODES.failure;
  const composeExit = code === 'DSO_CLI_COMPOSE_FAILED' ? composeExitCode(error) : undefined;
  if (composeExit !== undefined) return composeExit;
  const exitClass = exitClassOf(code);
  if (exitClass === 'failure' && isDsoError(error) && !(code in BY_CODE)) {
    const status = error.details.status;
    const byStatus = typeof status === 'number' ? BY_STATUS[status] : undefined;
    if (byStatus !== undefined) return EXIT_CODES[byStatus];
  }
  return EXIT_CODES[exitClass];
}
