import { randomText } from '../assertions.js';
import { type ConformanceCheck, expectResolved } from './check.js';

/** Calls in flight at once in the concurrency check, spread over {@link CONCURRENT_PATHS} paths. */
export const CONCURRENT_CALLS = 64;
export const CONCURRENT_PATHS = 8;

export const concurrencyChecks: ConformanceCheck[] = [
  {
    id: 'concurrent',
    group: 'concurrency',
    name: `resolves ${CONCURRENT_CALLS} calls in flight at once over ${CONCURRENT_PATHS} paths, each with its own path's value and version`,
    async run(context) {
      const stored = await Promise.all(
        Array.from({ length: CONCURRENT_PATHS }, async (_, index) => {
          const path = context.path(`p${index}`);
          const value = Buffer.from(`${index}-${randomText(32 + index * 100)}`);
          return { path, value, version: await context.put(path, value) };
        }),
      );
      const provider = await context.shared();
      const results = await Promise.all(
        Array.from({ length: CONCURRENT_CALLS }, (_, call) => {
          const secret = stored[call % CONCURRENT_PATHS]!;
          return provider.resolve({ path: secret.path }).then((resolved) => ({ secret, resolved }));
        }),
      );
      for (const [call, { secret, resolved }] of results.entries()) {
        expectResolved(
          resolved,
          secret.value,
          secret.version,
          `concurrent call #${call + 1} (${secret.path})`,
        );
      }
    },
  },
];
