import { setTimeout as delay } from 'node:timers/promises';
import { check, describeError, isAbortOutcome, randomText, settle, within } from '../assertions.js';
import { type ConformanceCheck, expectResolved, firstWatchStep, PROMPT_MS } from './check.js';
import { declaredCalls } from './lifecycle.js';
import { LARGE_VALUE_BYTES } from './reads.js';

/**
 * When the mid-call aborts fire, in ms after the call starts: at once, and a little later, so
 * some land while the call is in flight whatever the store's speed.
 */
export const ABORT_DELAYS_MS: readonly number[] = [0, 1, 5, 20];

export const cancellationChecks: ConformanceCheck[] = [
  {
    id: 'aborted',
    group: 'cancellation',
    name: 'rejects every call given an already-aborted signal promptly, with DSO_PROVIDER_TIMEOUT or an AbortError',
    async run(context) {
      const path = context.path('value');
      await context.put(path, randomText(32));
      const provider = await context.shared();
      const controller = new AbortController();
      controller.abort();
      for (const [operation, call] of declaredCalls(provider, context, path)) {
        const what = `${operation} with an aborted signal`;
        const error = await within(
          context.rejection(call(controller.signal), what),
          PROMPT_MS,
          what,
        );
        check(
          isAbortOutcome(error, controller.signal),
          `${what} rejected with ${describeError(error)}; it must be DSO_PROVIDER_TIMEOUT or an AbortError`,
        );
      }
      if (context.capabilities.watch) {
        const step = await within(
          settle(firstWatchStep(provider, [path], controller.signal)),
          PROMPT_MS,
          'watch with an aborted signal',
        );
        if (!step.ok) context.record(step.error);
        check(
          step.ok ? step.value.done === true : isAbortOutcome(step.error, controller.signal),
          `watch with an aborted signal ${step.ok ? 'yielded a change' : `failed with ${describeError(step.error)}`}; its iteration must end`,
        );
      }
    },
  },
  {
    id: 'abort',
    group: 'cancellation',
    name: 'settles a call aborted mid-flight within 1 s (DSO_PROVIDER_TIMEOUT, an AbortError, or its result), and serves the next call',
    async run(context) {
      const path = context.path('value');
      const value = Buffer.from(randomText(LARGE_VALUE_BYTES));
      const version = await context.put(path, value);
      const provider = await context.shared();
      for (const delayMs of ABORT_DELAYS_MS) {
        for (const [operation, call] of declaredCalls(provider, context, path)) {
          const controller = new AbortController();
          const started = call(controller.signal);
          // Not a wait for a condition: the abort is meant to land at this point of the call.
          await delay(delayMs);
          controller.abort();
          const what = `${operation} aborted ${delayMs} ms after it started`;
          const outcome = await within(settle(started), PROMPT_MS, what);
          if (!outcome.ok) {
            context.record(outcome.error);
            check(
              isAbortOutcome(outcome.error, controller.signal),
              `${what} rejected with ${describeError(outcome.error)}; it must be DSO_PROVIDER_TIMEOUT or an AbortError`,
            );
          }
        }
      }
      expectResolved(await provider.resolve({ path }), value, version, 'the call after the aborts');
    },
  },
];
