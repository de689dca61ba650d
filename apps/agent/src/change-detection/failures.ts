import { errorCode } from '@dso/core';
import { isProviderError } from '@dso/provider-sdk';
import { type KeyState, referenceOf } from './state.js';

/** How one failed check is logged: a level, the facts, and a message saying what to do. */
export interface FailureLogEntry {
  level: 'warn' | 'debug';
  /** Only the code: a provider's message or cause could quote what it was given. */
  fields: { reference: string; operation: 'probe' | 'resolve'; code: string; retryable: boolean };
  message: string;
}

/**
 * Records a failed check of `key` at `now` and says how to log it: at `warn` when it first
 * happens, at `debug` while it repeats, so a missing secret is not reported every interval.
 *
 * A failure of the secret alone (not retryable) repeats while its code stays the same, until
 * {@link noteRecovery}. A retryable one is an outage, which fails every secret of the provider
 * alike: one warning for all of them, at most once an interval while it lasts (throttling lets
 * some calls through, so a success does not end it).
 */
export function noteFailure(
  key: KeyState,
  operation: 'probe' | 'resolve',
  error: unknown,
  now: number,
): FailureLogEntry {
  const state = key.owner;
  const code = errorCode(error) ?? 'DSO_PROVIDER_INTERNAL';
  const retryable = isProviderError(error) ? error.retryable : false;
  const fields = { reference: referenceOf(key), operation, code, retryable };
  let first: boolean;
  if (retryable) {
    first = state.outageCode !== code || now - state.outageLoggedAt >= state.intervalMs;
    if (first) {
      state.outageCode = code;
      state.outageLoggedAt = now;
    }
  } else {
    first = key.lastErrorCode !== code;
    key.lastErrorCode = code;
  }
  const level = first ? 'warn' : 'debug';
  if (code === 'DSO_PROVIDER_NOT_FOUND') {
    return {
      level,
      fields,
      message: 'secret not found at its provider; still checked every interval',
    };
  }
  if (code === 'DSO_PROVIDER_UNAUTHORIZED') {
    return {
      level,
      fields,
      message: "provider refused a version check; check the provider's credentials",
    };
  }
  return { level, fields, message: 'secret version check failed; tried again next interval' };
}

/**
 * Records a successful check of `key`: true when the secret had failed on its own before (its
 * recovery is worth a line), false otherwise. The next failure is then logged at `warn` again.
 */
export function noteRecovery(key: KeyState): boolean {
  if (key.lastErrorCode === undefined) return false;
  key.lastErrorCode = undefined;
  return true;
}
