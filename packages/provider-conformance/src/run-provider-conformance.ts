import { isProviderDefinition } from '@dso/provider-sdk';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { CHECK_GROUPS, DEFAULT_CHECK_TIMEOUT_MS } from './checks/check.js';
import { checksFor } from './checks/index.js';
import { type ConformanceMode, createSession, MODE_TITLES, openerFor } from './context.js';
import type { ProviderConformanceOptions } from './fixture.js';

/** The halves, in the order they run. */
const MODES: readonly ConformanceMode[] = ['in-process', 'process'];

/** How long a fixture may take to start or close. */
const FIXTURE_TIMEOUT_MS = 30_000;

/**
 * Registers the conformance suite for one provider type: vitest `describe`/`it` blocks that
 * run every check twice, in process (`createProvider`) and across the process boundary
 * (`createProcessProvider`, the child importing `options.module`). Only the capabilities the
 * definition declares are tested, and the undeclared ones are asserted absent: there is no
 * switch to skip a test. Call it at the top level of a test file.
 *
 * @throws TypeError when an option is missing or malformed (a programming error in the test file)
 * @example
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
export function runProviderConformance(options: ProviderConformanceOptions): void {
  checkOptions(options);
  const { definition } = options;
  describe(`${options.name}: provider conformance`, () => {
    for (const mode of MODES) {
      describe(MODE_TITLES[mode], () => {
        const session = createSession({
          mode,
          definition,
          fixture: options.fixture,
          open: openerFor(mode, options),
        });
        beforeAll(() => session.start(), FIXTURE_TIMEOUT_MS);
        afterAll(() => session.stop(), FIXTURE_TIMEOUT_MS);
        const checks = checksFor({ capabilities: definition.capabilities, mode });
        for (const group of CHECK_GROUPS) {
          const inGroup = checks.filter((check) => check.group === group);
          if (inGroup.length === 0) continue;
          describe(group, () => {
            for (const check of inGroup) {
              it(
                check.name,
                () => session.run(check, check.id),
                check.timeoutMs ?? DEFAULT_CHECK_TIMEOUT_MS,
              );
            }
          });
        }
      });
    }
  });
}

function checkOptions(options: ProviderConformanceOptions): void {
  if (typeof options !== 'object' || options === null) {
    throw new TypeError('runProviderConformance needs { name, definition, module, fixture }');
  }
  if (typeof options.name !== 'string' || options.name === '') {
    throw new TypeError('runProviderConformance: name must be a non-empty string');
  }
  if (!isProviderDefinition(options.definition)) {
    throw new TypeError(
      'runProviderConformance: definition must be the result of defineProvider() (what the provider package exports)',
    );
  }
  if (typeof options.module !== 'string' || options.module === '') {
    throw new TypeError(
      "runProviderConformance: module must name what the child imports: an absolute path (new URL('./index.ts', import.meta.url).pathname) or a package name",
    );
  }
  if (typeof options.fixture !== 'function') {
    throw new TypeError(
      'runProviderConformance: fixture must be a function returning a fresh ConformanceFixture',
    );
  }
  if (options.execArgv !== undefined && !options.execArgv.every((arg) => typeof arg === 'string')) {
    throw new TypeError('runProviderConformance: execArgv must be an array of strings');
  }
}
