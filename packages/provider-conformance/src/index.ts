/**
 * @dso/provider-conformance: the vitest suite every DSO provider runs unchanged, first-party
 * and third-party. It checks lifecycle, reads (text, binary, empty, 64 KiB, redaction), field
 * selection, versions, each error code, cancellation, a canary value that must never leak into
 * an error or a log line, list, watch, probe and health where declared (and their absence where
 * not), and concurrency; then all of it once more across the process boundary.
 *
 * @example
 * // src/conformance.test.ts of a provider package
 * import { runProviderConformance } from '@dso/provider-conformance';
 * import provider from './index.js';
 * import { startFakeStore } from './fake-store.js';
 *
 * runProviderConformance({
 *   name: 'my-store',
 *   definition: provider,
 *   module: new URL('./index.ts', import.meta.url).pathname,
 *   fixture: async () => {
 *     const store = await startFakeStore();
 *     return {
 *       config: { url: store.url },
 *       put: (path, value) => store.put(path, value),
 *       history: true,
 *       invalidConfigs: [{ url: 'not a url' }],
 *       close: () => store.close(),
 *     };
 *   },
 * });
 */
export {
  CONFORMANCE_FAULT_CODES,
  type CommandConformanceOptions,
  type ConformanceFaultCode,
  type ConformanceFixture,
  type ModuleConformanceOptions,
  type ProviderConformanceOptions,
  type StartConformanceFault,
} from './fixture.js';
export {
  type ProbeCommandOptions,
  probeCommandCapabilities,
  runProviderConformance,
} from './run-provider-conformance.js';
