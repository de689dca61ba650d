import type { ConformanceFixture, StartConformanceFault } from '../fixture.js';
import { type MemoryStoreFailure, startMemoryStore } from './memory-store.js';

/** Options of {@link createMemoryFixture}. */
export interface MemoryFixtureOptions {
  /** Whether the store keeps superseded versions. @default true */
  history?: boolean;
  /** Whether the fixture offers the three faults. @default true */
  faults?: boolean;
}

/**
 * A conformance fixture on a fresh example memory store: the model of what a provider's author
 * writes (start the store, point a configuration at it, say how to put, what history it keeps,
 * which configurations are invalid and which faults it can make).
 *
 * @example
 * runProviderConformance({ name: 'memory', definition: memoryProvider, module, fixture: () => createMemoryFixture() });
 */
export async function createMemoryFixture(
  options: MemoryFixtureOptions = {},
): Promise<ConformanceFixture> {
  const { history = true, faults = true } = options;
  const store = await startMemoryStore({ history });
  const fault =
    (status: MemoryStoreFailure): StartConformanceFault =>
    async () => {
      store.fail(status);
      return async () => store.fail(undefined);
    };
  return {
    config: { url: store.url },
    // The token reaches the provider through its environment, as a real credential would.
    env: { DSO_MEMORY_STORE_TOKEN: store.token },
    put: async (path, value) => store.put(path, value),
    history,
    invalidConfigs: [
      { url: 'not-a-url-s3ntinel' },
      { url: store.url, tokenEnv: 'lower-case-s3ntinel' },
      { url: store.url, unknownSetting: 'unknown-s3ntinel' },
    ],
    ...(faults
      ? {
          faults: {
            DSO_PROVIDER_UNAUTHORIZED: fault(401),
            DSO_PROVIDER_THROTTLED: fault(429),
            DSO_PROVIDER_UNAVAILABLE: fault(503),
          },
        }
      : {}),
    close: () => store.close(),
  };
}
