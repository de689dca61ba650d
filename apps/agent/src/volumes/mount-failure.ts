import { isDsoError, type Redactor } from '@dso/core';

/**
 * What `docker run` shows when a Mount fails: the reference, its code, the reason (a
 * provider's or the field selection's message, redacted) and what to do.
 */
export function mountFailure(
  name: string,
  error: unknown,
  reference: string | undefined,
  code: string,
  redactor: Pick<Redactor, 'redact'>,
): string {
  const cause = (error as { cause?: unknown }).cause;
  const reason = redactor.redact(
    cause instanceof Error
      ? cause.message
      : isDsoError(error)
        ? error.message
        : 'its files could not be written',
  );
  if (reference === undefined) return `DSO volume ${name}: ${reason} (${code})`;
  const fix =
    code === 'DSO_PROVIDER_NOT_FOUND'
      ? 'store it (dso secret set) or fix the reference; a missing secret is remembered for cache.negativeTtlMs (10 s by default), and dso rotate asks again at once'
      : code === 'DSO_AGENT_PROVIDER_UNKNOWN'
        ? "name a provider configured in the agent's dso.yaml"
        : "see the agent's log for more";
  return `DSO volume ${name}: could not resolve ${reference} (${code}): ${reason}; the container was not started: ${fix}`;
}
