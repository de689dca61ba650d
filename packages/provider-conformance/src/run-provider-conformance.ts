import {
  createProcessProvider,
  isProviderDefinition,
  OPTIONAL_OPERATIONS,
  type ProviderCapabilities,
} from '@dso/provider-sdk';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { CHECK_GROUPS, DEFAULT_CHECK_TIMEOUT_MS } from './checks/check.js';
import { checksFor } from './checks/index.js';
import {
  CONFORMANCE_START_TIMEOUT_MS,
  type ConformanceMode,
  type ConformanceSession,
  commandOpener,
  createSession,
  MODE_TITLES,
  openerFor,
  providerEnv,
} from './context.js';
import type {
  CommandConformanceOptions,
  ConformanceFixture,
  ModuleConformanceOptions,
  ProviderConformanceOptions,
} from './fixture.js';

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
  if (typeof options !== 'object' || options === null) {
    throw new TypeError(
      'runProviderConformance needs { name, definition, module, fixture } or { name, command, capabilities, fixture }',
    );
  }
  if (typeof options.name !== 'string' || options.name === '') {
    throw new TypeError('runProviderConformance: name must be a non-empty string');
  }
  if ('command' in options) {
    checkCommandOptions(options);
    const { capabilities } = options;
    describe(`${options.name}: provider conformance`, () => {
      describe(`${MODE_TITLES.process} (command)`, () => {
        const session = createSession({
          mode: 'process',
          capabilities,
          fixture: options.fixture,
          open: commandOpener(options),
        });
        registerChecks(session, capabilities, 'process');
      });
    });
    return;
  }
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
        registerChecks(session, definition.capabilities, mode);
      });
    }
  });
}

/** The `beforeAll`/`afterAll` of one half and its `describe`/`it` blocks, group by group. */
function registerChecks(
  session: ConformanceSession,
  capabilities: ProviderCapabilities,
  mode: ConformanceMode,
): void {
  beforeAll(() => session.start(), FIXTURE_TIMEOUT_MS);
  afterAll(() => session.stop(), FIXTURE_TIMEOUT_MS);
  const checks = checksFor({ capabilities, mode });
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
}

/** Options of {@link probeCommandCapabilities}. */
export interface ProbeCommandOptions {
  /** The child's argv. */
  command: string[];
  /** Its working directory. @default process.cwd() */
  cwd?: string;
  /** A fixture: its configuration and environment are used for the handshake, then it is closed. */
  fixture: () => Promise<ConformanceFixture>;
}

/**
 * Starts the child once, with a fixture's configuration, and returns the capabilities its
 * handshake declares: what a command's suite then tests (the CLI uses it; a test file may
 * `await` it at its top level and pass the result to {@link runProviderConformance}).
 *
 * @throws ProviderError when the child cannot start or refuses the configuration
 * @example
 * const capabilities = await probeCommandCapabilities({ command, fixture });
 * runProviderConformance({ name: 'pyfile', command, capabilities, fixture });
 */
export async function probeCommandCapabilities(
  options: ProbeCommandOptions,
): Promise<ProviderCapabilities> {
  const fixture = await options.fixture();
  try {
    const provider = await createProcessProvider({
      name: 'command-under-test',
      command: [...options.command],
      ...(options.cwd === undefined ? {} : { resolveFrom: options.cwd }),
      config: fixture.config,
      env: providerEnv(fixture),
      startTimeoutMs: CONFORMANCE_START_TIMEOUT_MS,
    });
    await provider.close();
    return { ...provider.capabilities };
  } finally {
    await fixture.close();
  }
}

function checkCommandOptions(options: CommandConformanceOptions): void {
  if (
    !Array.isArray(options.command) ||
    options.command.length === 0 ||
    !options.command.every((part) => typeof part === 'string' && part !== '')
  ) {
    throw new TypeError(
      "runProviderConformance: command must be the child's argv, a non-empty array of non-empty strings, e.g. ['python3', '/abs/provider.py']",
    );
  }
  const { capabilities } = options;
  if (
    typeof capabilities !== 'object' ||
    capabilities === null ||
    !OPTIONAL_OPERATIONS.every((operation) => typeof capabilities[operation] === 'boolean')
  ) {
    throw new TypeError(
      'runProviderConformance: capabilities must give list, watch, probe and health as booleans, as the child declares them (probeCommandCapabilities reads them)',
    );
  }
  if (typeof options.fixture !== 'function') {
    throw new TypeError(
      'runProviderConformance: fixture must be a function returning a fresh ConformanceFixture',
    );
  }
}

function checkOptions(options: ModuleConformanceOptions): void {
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
