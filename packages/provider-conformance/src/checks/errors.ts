import {
  ConformanceError,
  check,
  describeError,
  eventually,
  expectProviderError,
  findNeedle,
  randomText,
  serialiseError,
  stringsIn,
  within,
} from '../assertions.js';
import type { ConformanceContext } from '../context.js';
import { CONFORMANCE_FAULT_CODES, type ConformanceFaultCode } from '../fixture.js';
import { type ConformanceCheck, expectResolved } from './check.js';

/** Whether each fault's code may pass on its own, as the SDK defines it. */
export const FAULT_RETRYABLE: Readonly<Record<ConformanceFaultCode, boolean>> = Object.freeze({
  DSO_PROVIDER_UNAUTHORIZED: false,
  DSO_PROVIDER_THROTTLED: true,
  DSO_PROVIDER_UNAVAILABLE: true,
});

/** How long a provider may take to serve again once a fault has ended. */
export const RECOVERY_MS = 5_000;

/**
 * The largest message the host accepts in the TOO_LARGE check: the smallest limit a host
 * allows (64 KiB).
 */
export const SMALL_MAX_MESSAGE_BYTES = 64 * 1024;
/**
 * The value served in the TOO_LARGE check: 64 KiB, the most every fixture promises to hold
 * (AWS Secrets Manager's own limit), so every store can serve it; its answer is over
 * {@link SMALL_MAX_MESSAGE_BYTES} however the protocol encodes it, since the envelope adds to it.
 */
export const OVERSIZED_VALUE_BYTES = 64 * 1024;

/** The faults the fixture offers, in a fixed order. */
export function offeredFaults(context: ConformanceContext) {
  return CONFORMANCE_FAULT_CODES.flatMap((code) => {
    const start = context.fixture.faults?.[code];
    return start === undefined ? [] : [{ code, start }];
  });
}

/** Runs `body` while the fixture's `code` fault is on, ending the fault whatever happens. */
export async function duringFault<T>(
  context: ConformanceContext,
  code: ConformanceFaultCode,
  body: () => Promise<T>,
): Promise<T> {
  const start = context.fixture.faults?.[code];
  if (start === undefined) throw new ConformanceError(`the fixture offers no ${code} fault`);
  const end = await start();
  try {
    return await body();
  } finally {
    await end();
  }
}

export const errorChecks: ConformanceCheck[] = [
  {
    id: 'config',
    group: 'errors',
    name: 'refuses each invalid configuration with DSO_PROVIDER_INVALID_CONFIG, quoting none of its values',
    // One after another, each with room to start a child: across the process boundary every
    // configuration costs a process start, which a loaded machine (CI) makes slow, not wrong.
    timeoutMs: 120_000,
    async run(context) {
      const logsBefore = context.logs.length;
      for (const [index, config] of context.fixture.invalidConfigs.entries()) {
        const what = `invalid configuration #${index + 1}`;
        const error = expectProviderError(
          await within(context.rejection(context.open({ config }), what), 30_000, what),
          'DSO_PROVIDER_INVALID_CONFIG',
          what,
        );
        check(
          error.retryable === false,
          `${what}: DSO_PROVIDER_INVALID_CONFIG must not be retryable`,
        );
        const shown = findNeedle(serialiseError(error), stringsIn(config));
        check(
          shown === undefined,
          `${what}: the error quotes the configuration value ${JSON.stringify(shown)}; name the setting, never its value`,
        );
      }
      const values = context.fixture.invalidConfigs.flatMap((config) => stringsIn(config));
      const logged = context.logs
        .slice(logsBefore)
        .find((line) => findNeedle(JSON.stringify(line), values) !== undefined);
      check(
        logged === undefined,
        'a log line quotes a value of an invalid configuration; name the setting, never its value',
      );
    },
  },
  {
    id: 'faults',
    group: 'errors',
    name: 'maps each fault the fixture offers to its code and retryable flag, and serves again once it ends',
    timeoutMs: 30_000,
    async run(context) {
      const path = context.path('value');
      const value = Buffer.from(randomText(32));
      const version = await context.put(path, value);
      const provider = await context.open();
      expectResolved(await provider.resolve({ path }), value, version, 'resolve before any fault');
      for (const { code } of offeredFaults(context)) {
        const error = await duringFault(context, code, async () =>
          expectProviderError(
            await within(
              context.rejection(provider.resolve({ path }), `resolve during ${code}`),
              8_000,
              `resolve during the ${code} fault`,
            ),
            code,
            `resolve during the ${code} fault`,
          ),
        );
        check(
          error.retryable === FAULT_RETRYABLE[code],
          `${code} must have retryable ${FAULT_RETRYABLE[code]}, it has ${error.retryable}`,
        );
        await eventually(
          async () =>
            expectResolved(
              await provider.resolve({ path }),
              value,
              version,
              `resolve after ${code}`,
            ),
          RECOVERY_MS,
          `resolve after the ${code} fault ended`,
        );
      }
    },
  },
  {
    id: 'toolarge',
    group: 'errors',
    name: "rejects a value over the host's maxMessageBytes with DSO_PROVIDER_TOO_LARGE, and the next call works",
    applies: ({ mode }) => mode === 'process',
    async run(context) {
      const large = context.path('large');
      await context.put(large, randomText(OVERSIZED_VALUE_BYTES));
      const small = context.path('small');
      const smallValue = Buffer.from(randomText(32));
      const smallVersion = await context.put(small, smallValue);
      const provider = await context.open({ maxMessageBytes: SMALL_MAX_MESSAGE_BYTES });
      const error = expectProviderError(
        await within(
          context.rejection(provider.resolve({ path: large }), 'resolve of an oversized value'),
          8_000,
          'resolve of an oversized value',
        ),
        'DSO_PROVIDER_TOO_LARGE',
        `resolve of a ${OVERSIZED_VALUE_BYTES}-byte value with maxMessageBytes ${SMALL_MAX_MESSAGE_BYTES}`,
      );
      check(error.retryable === false, 'DSO_PROVIDER_TOO_LARGE must not be retryable');
      const next = await provider.resolve({ path: small }).catch((caught: unknown) => {
        context.record(caught);
        throw new ConformanceError(
          `the call after TOO_LARGE failed with ${describeError(caught)}; one oversized answer must not break the provider`,
          { cause: caught },
        );
      });
      expectResolved(next, smallValue, smallVersion, 'the call after TOO_LARGE');
    },
  },
];
