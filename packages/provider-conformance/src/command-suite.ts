// The test file the `dso-provider-conformance` command runs under vitest: the suite against a
// child given as a command. Its options come from the command line through the environment
// (COMMAND_SUITE_ENV), since vitest runs this file in a worker of its own.
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { COMMAND_SUITE_ENV, type CommandSuiteSettings } from './command-suite-env.js';
import type { ConformanceFixture } from './fixture.js';
import { probeCommandCapabilities, runProviderConformance } from './run-provider-conformance.js';

const raw = process.env[COMMAND_SUITE_ENV];
if (raw === undefined) {
  throw new TypeError(
    `command-suite runs under dso-provider-conformance, which sets ${COMMAND_SUITE_ENV}: run that command`,
  );
}
const settings = JSON.parse(raw) as CommandSuiteSettings;
if (!isAbsolute(settings.fixture)) throw new TypeError('the fixture path must be absolute');
const module = (await import(pathToFileURL(settings.fixture).href)) as Record<string, unknown>;
const fixture = (module.default ?? module.fixture) as () => Promise<ConformanceFixture>;
if (typeof fixture !== 'function') {
  throw new TypeError(
    `the fixture module ${settings.fixture} must export a function returning a ConformanceFixture (as default or as \`fixture\`)`,
  );
}
const capabilities = await probeCommandCapabilities({
  command: settings.command,
  cwd: settings.cwd,
  fixture,
});
runProviderConformance({
  name: settings.name,
  command: settings.command,
  cwd: settings.cwd,
  capabilities,
  fixture,
});
