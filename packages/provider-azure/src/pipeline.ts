import { AsyncLocalStorage } from 'node:async_hooks';
import type { SecretClientOptions } from '@azure/keyvault-secrets';
import { RetryAfterTooLongError, retryAfterMs } from './azure-error.js';

// The pipeline types, taken from the SDK's own options so no transitive package is imported.
type AdditionalPolicy = NonNullable<SecretClientOptions['additionalPolicies']>[number];
type Policy = AdditionalPolicy['policy'];

/** The provider call a request belongs to: its caller's signal. */
interface CallScope {
  signal: AbortSignal | undefined;
}

/**
 * Carries each provider call's AbortSignal to every HTTP request the SDK makes for it. The SDK
 * passes `abortSignal` to a call's first request but not to the `nextLink` pages a listing
 * fetches afterwards; a pipeline policy fills it in from the call's async context.
 */
export class CallContext {
  readonly #storage = new AsyncLocalStorage<CallScope>();

  /** Runs `body` as part of the call that `signal` cancels. */
  run<T>(signal: AbortSignal | undefined, body: () => Promise<T>): Promise<T> {
    return this.#storage.run({ signal }, body);
  }

  /** The signal of the call running now, if any. */
  get signal(): AbortSignal | undefined {
    return this.#storage.getStore()?.signal;
  }
}

/**
 * A per-call policy: every request gets the running call's AbortSignal (when it has none) and
 * a deadline of `timeoutMs` (when it has none).
 */
export function requestDefaultsPolicy(
  context: CallContext | undefined,
  timeoutMs: number,
): AdditionalPolicy {
  const policy: Policy = {
    name: 'dsoRequestDefaults',
    sendRequest(request, next) {
      const signal = context?.signal;
      if (request.abortSignal === undefined && signal !== undefined) request.abortSignal = signal;
      if (!(request.timeout > 0)) request.timeout = timeoutMs;
      return next(request);
    },
  };
  return { policy, position: 'perCall' };
}

/**
 * A per-retry policy (it runs inside the SDK's retry loop): a 429 or 503 whose `Retry-After`
 * asks for more than `maxWaitMs` fails the call at once instead of letting the SDK sleep that
 * long, which could outlast the host's 30 s deadline.
 */
export function retryAfterCapPolicy(maxWaitMs: number): AdditionalPolicy {
  const policy: Policy = {
    name: 'dsoRetryAfterCap',
    async sendRequest(request, next) {
      const response = await next(request);
      if (response.status === 429 || response.status === 503) {
        const wait = retryAfterMs(response.headers);
        if (wait !== undefined && wait > maxWaitMs) {
          throw new RetryAfterTooLongError(
            response.status,
            wait,
            errorCodeOf(response.bodyAsText),
            response.headers.get('x-ms-request-id'),
          );
        }
      }
      return response;
    },
  };
  return { policy, position: 'perRetry' };
}

/** `error.code` of a Key Vault error body; nothing else of the body is read. */
function errorCodeOf(body: string | null | undefined): string | undefined {
  if (typeof body !== 'string' || body.length > 64 * 1024) return undefined;
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } })?.error?.code;
    return typeof code === 'string' ? code.slice(0, 64) : undefined;
  } catch {
    // Not JSON: the status alone says what happened.
    return undefined;
  }
}
