import { DsoError } from './errors.js';

/** Default of {@link WaitForSecretsOptions.timeoutMs}. */
export const DEFAULT_WAIT_FOR_SECRETS_TIMEOUT_MS = 60_000;
/** Exit code of the wait when the files did not arrive in time (EX_SOFTWARE is 70). */
export const WAIT_FOR_SECRETS_EXIT_CODE = 70;

/** Polls of the first second, 10 ms apart; later ones are 100 ms apart. */
const FAST_STEPS = 100;

/** Options of {@link waitForSecretsCommand}. */
export interface WaitForSecretsOptions {
  /**
   * How long the container waits for its files before it exits with
   * {@link WAIT_FOR_SECRETS_EXIT_CODE} (rather than run its application without them).
   * @default 60000
   */
  timeoutMs?: number;
}

/**
 * How DSO guarantees that an application never starts before its secret files exist: the
 * container's command is wrapped in a wait, run by the image's own `sh` (which the exec path
 * needs anyway), for `<target>/..data`, the link the atomic write swaps in last. The agent
 * writes the files when it sees the container start; the wait then ends and `exec`s the
 * application, which replaces the shell (same pid, same signals). The target travels as `$0`
 * and the command as `"$@"`: nothing is interpolated into the script. Use the result as the
 * container's entrypoint + command (compose: `entrypoint` and `command`; `docker run
 * --entrypoint sh … -c …`).
 *
 * @throws DsoError DSO_WAIT_INVALID for a target that is not an absolute path, an empty command
 *   or a timeout out of range
 * @example
 * waitForSecretsCommand('/run/secrets', ['node', 'server.js']);
 * // ['sh', '-c', 'i=0; until [ -e "$0/..data" ] …; exec "$@"', '/run/secrets', 'node', 'server.js']
 */
export function waitForSecretsCommand(
  target: string,
  command: readonly string[],
  options: WaitForSecretsOptions = {},
): string[] {
  if (typeof target !== 'string' || !/^\/[A-Za-z0-9._\-/]*$/.test(target)) {
    throw new DsoError('DSO_WAIT_INVALID', 'the secrets target must be an absolute path');
  }
  if (
    !Array.isArray(command) ||
    command.length === 0 ||
    command.some((arg) => typeof arg !== 'string')
  ) {
    throw new DsoError(
      'DSO_WAIT_INVALID',
      'the command to run once the secrets exist must be a non-empty list of strings',
    );
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_WAIT_FOR_SECRETS_TIMEOUT_MS;
  if (!Number.isInteger(timeoutMs) || timeoutMs < 100 || timeoutMs > 24 * 3_600_000) {
    throw new DsoError(
      'DSO_WAIT_INVALID',
      'timeoutMs must be a whole number of ms from 100 to 24 h',
    );
  }
  // 10 ms steps for the first second (files usually arrive within ~100 ms of the start, so the
  // application sees them at most 10 ms late), then 100 ms steps (fewer wake-ups while a
  // provider is down). Fractional sleep works in busybox, coreutils and toybox.
  const fast = Math.min(FAST_STEPS, Math.ceil(timeoutMs / 10));
  const steps = fast + Math.ceil(Math.max(0, timeoutMs - fast * 10) / 100);
  const script =
    `i=0; until [ -e "$0/..data" ]; do i=$((i+1)); ` +
    `[ "$i" -le ${steps} ] || { echo "dso: secret files did not arrive in $0 within ${timeoutMs} ms" >&2; exit ${WAIT_FOR_SECRETS_EXIT_CODE}; }; ` +
    `if [ "$i" -le ${fast} ]; then sleep 0.01; else sleep 0.1; fi; done; exec "$@"`;
  return ['sh', '-c', script, target, ...command];
}
