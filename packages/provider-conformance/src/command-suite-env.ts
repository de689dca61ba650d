/** The environment variable carrying the command line's options to the suite file, as JSON. */
export const COMMAND_SUITE_ENV = 'DSO_CONFORMANCE_COMMAND_SUITE';

/** What `dso-provider-conformance` hands to its suite file (src/command-suite.ts). */
export interface CommandSuiteSettings {
  name: string;
  command: string[];
  cwd: string;
  /** Absolute path of the fixture module: its default export (or `fixture`) makes a fixture. */
  fixture: string;
}
