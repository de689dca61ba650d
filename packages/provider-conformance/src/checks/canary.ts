import { selectField } from '@dso/provider-sdk';
import {
  ConformanceError,
  check,
  createCanary,
  eventually,
  findNeedle,
  leakNeedles,
  serialiseError,
  settle,
  unknownVersionLike,
  within,
} from '../assertions.js';
import { assertNoLeaks } from '../context.js';
import { type ConformanceCheck, expectResolved, PROMPT_MS } from './check.js';
import {
  duringFault,
  OVERSIZED_VALUE_BYTES,
  offeredFaults,
  RECOVERY_MS,
  SMALL_MAX_MESSAGE_BYTES,
} from './errors.js';
import { declaredCalls } from './lifecycle.js';

/** The fewest errors the canary check provokes from any provider: proof it is not vacuous. */
const MIN_PROVOKED_ERRORS = 6;

export const canaryChecks: ConformanceCheck[] = [
  {
    id: 'canary',
    group: 'canary',
    name: 'never shows a canary value in any error (message, stack, properties, cause chain) or log line, whatever path fails',
    timeoutMs: 30_000,
    async run(context) {
      const canary = createCanary();
      const canaryBytes = Buffer.from(canary);
      const logsBefore = context.logs.length;
      const errors: unknown[] = [];
      const provoke = async (promise: Promise<unknown>, ms = 8_000) => {
        const outcome = await within(settle(promise), ms, 'a call provoked by the canary check');
        if (!outcome.ok) {
          errors.push(outcome.error);
          context.record(outcome.error);
        }
      };

      const path = context.path('canary');
      const version = await context.put(path, canary);
      const jsonPath = context.path('canary-json');
      await context.put(jsonPath, JSON.stringify({ token: canary, nested: { token: canary } }));
      // Both opened at once: across the process boundary each one starts a child.
      const [provider, small] = await Promise.all([
        context.open(),
        context.mode === 'process'
          ? context.open({ maxMessageBytes: SMALL_MAX_MESSAGE_BYTES })
          : undefined,
      ]);
      const resolved = await provider.resolve({ path });
      expectResolved(resolved, canaryBytes, version, 'resolve of the canary');
      const json = await provider.resolve({ path: jsonPath });

      await provoke(provider.resolve({ path: context.path('missing') }));
      await provoke(provider.resolve({ path, version: unknownVersionLike(version, [version]) }));
      await provoke((async () => selectField(resolved.value, 'token', path))());
      await provoke((async () => selectField(json.value, 'missing', jsonPath))());
      await provoke((async () => selectField(json.value, 'token.deeper', jsonPath))());
      const aborted = new AbortController();
      aborted.abort();
      for (const [, call] of declaredCalls(provider, context, path)) {
        await provoke(call(aborted.signal));
      }
      if (context.capabilities.probe) {
        await provoke(provider.probe!({ path: context.path('missing') }));
      }
      for (const { code } of offeredFaults(context)) {
        await duringFault(context, code, async () => {
          for (const [, call] of declaredCalls(provider, context, path)) await provoke(call());
          await provoke(provider.resolve({ path: jsonPath }));
        });
        await eventually(
          () => provider.resolve({ path }),
          RECOVERY_MS,
          `resolve after the ${code} fault ended`,
        );
      }
      if (small !== undefined) {
        // Across the process boundary: an answer over maxMessageBytes, made of canaries, so
        // any excerpt of it a host might quote would show one.
        const large = context.path('canary-large');
        const repeats = Math.floor(OVERSIZED_VALUE_BYTES / canary.length);
        await context.put(large, canary.repeat(repeats));
        await provoke(small.resolve({ path: large }));
      }
      await within(provider.close(), 5_000, 'close()');
      for (const [, call] of declaredCalls(provider, context, path)) {
        await provoke(call(), PROMPT_MS);
      }

      check(
        errors.length >= MIN_PROVOKED_ERRORS,
        `the canary check provoked only ${errors.length} errors; expected at least ${MIN_PROVOKED_ERRORS}`,
      );
      const needles = leakNeedles(canaryBytes);
      for (const [index, error] of errors.entries()) {
        if (findNeedle(serialiseError(error), needles) !== undefined) {
          throw new ConformanceError(
            `provoked error #${index + 1} of ${errors.length} shows the canary value (in its message, stack, properties or cause chain); build messages from paths and names only`,
          );
        }
      }
      assertNoLeaks([canaryBytes], [], context.logs.slice(logsBefore), 'the canary value');
    },
  },
];
