import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { COMMAND_SUITE_ENV, type CommandSuiteSettings } from './command-suite-env.js';

/** The usage text of `dso-provider-conformance`. */
export const CONFORMANCE_CLI_USAGE = `Usage: dso-provider-conformance --fixture <file> [options] -- <command> [args...]

Runs the DSO provider conformance suite against a provider child in any language: <command>
and its args are the child's argv (it speaks PROTOCOL.md of @dso/provider-sdk), started as
the agent starts a \`type: command\` provider. The capabilities its handshake declares decide
which tests run.

Options:
  --fixture <file>      a JavaScript module whose default export returns a ConformanceFixture
                        (the store the suite writes to through put(), the provider's config,
                        invalid configs, faults): the one part the suite needs in JavaScript
  --cwd <dir>           the child's working directory (default: the current one)
  --name <name>         the suite's title (default: the command's last argument)
  --report-json <file>  also write vitest's JSON report there
  -h, --help            this text

Exit codes: 0 every test passed, 1 a test failed, 2 usage error.`;

/** The parsed command line, or a usage error. */
export type ConformanceCliArgs =
  | {
      help?: false;
      command: string[];
      fixture: string;
      cwd: string;
      name: string;
      reportJson: string | undefined;
    }
  | { help: true };

/**
 * Parses `dso-provider-conformance`'s arguments; relative paths are resolved from `cwd`.
 *
 * @throws TypeError with the fix when an argument is missing or unknown (exit code 2)
 */
export function parseConformanceArgs(argv: readonly string[], cwd: string): ConformanceCliArgs {
  const separator = argv.indexOf('--');
  const options = separator < 0 ? argv : argv.slice(0, separator);
  const command = separator < 0 ? [] : argv.slice(separator + 1);
  if (options.includes('-h') || options.includes('--help')) return { help: true };
  const values = new Map<string, string>();
  for (let index = 0; index < options.length; index++) {
    const option = options[index] as string;
    if (!['--fixture', '--cwd', '--name', '--report-json'].includes(option)) {
      throw new TypeError(
        `unknown argument ${JSON.stringify(option)}: put the child's command after --, e.g. -- python3 provider.py`,
      );
    }
    const value = options[index + 1];
    if (value === undefined || value === '') throw new TypeError(`${option} needs a value`);
    values.set(option, value);
    index++;
  }
  if (command.length === 0 || command.some((part) => part === '')) {
    throw new TypeError("the child's command is missing: end with -- <command> [args...]");
  }
  const fixture = values.get('--fixture');
  if (fixture === undefined) {
    throw new TypeError(
      '--fixture <file> is required: a module whose default export returns a ConformanceFixture (see the README)',
    );
  }
  const base = resolve(cwd, values.get('--cwd') ?? '.');
  return {
    command,
    fixture: resolve(cwd, fixture),
    cwd: base,
    name: values.get('--name') ?? (command.at(-1) as string),
    reportJson:
      values.get('--report-json') === undefined
        ? undefined
        : resolve(cwd, values.get('--report-json') as string),
  };
}

/**
 * `dso-provider-conformance`: runs the suite against a command under vitest (a peer
 * dependency) and resolves to the exit code.
 *
 * @example
 * process.exitCode = await runConformanceCli(process.argv.slice(2));
 */
export async function runConformanceCli(
  argv: readonly string[],
  io: { out: (text: string) => void; err: (text: string) => void } = {
    out: (text) => process.stdout.write(text),
    err: (text) => process.stderr.write(text),
  },
): Promise<number> {
  let args: ConformanceCliArgs;
  try {
    args = parseConformanceArgs(argv, process.cwd());
  } catch (error) {
    io.err(`dso-provider-conformance: ${(error as Error).message}\n\n${CONFORMANCE_CLI_USAGE}\n`);
    return 2;
  }
  if (args.help === true) {
    io.out(`${CONFORMANCE_CLI_USAGE}\n`);
    return 0;
  }
  if (!existsSync(args.fixture)) {
    io.err(`dso-provider-conformance: the fixture ${args.fixture} does not exist\n`);
    return 2;
  }
  const here = dirname(fileURLToPath(import.meta.url));
  // dist/command-suite.js in the built package, src/command-suite.ts from source.
  const suite = ['command-suite.js', 'command-suite.ts']
    .map((file) => join(here, file))
    .find((file) => existsSync(file));
  if (suite === undefined) {
    io.err('dso-provider-conformance: its command-suite file is missing: reinstall the package\n');
    return 1;
  }
  const settings: CommandSuiteSettings = {
    name: args.name,
    command: args.command,
    cwd: args.cwd,
    fixture: args.fixture,
  };
  // Read by the suite file in vitest's worker, which inherits this environment.
  process.env[COMMAND_SUITE_ENV] = JSON.stringify(settings);
  const { startVitest } = await import('vitest/node');
  const vitest = await startVitest('test', [], {
    root: dirname(suite),
    config: false,
    include: [suite.slice(dirname(suite).length + 1)],
    exclude: [],
    watch: false,
    reporters: args.reportJson === undefined ? ['default'] : ['default', 'json'],
    ...(args.reportJson === undefined ? {} : { outputFile: { json: args.reportJson } }),
    // The suite gives each check its own timeout; hooks start and stop the fixture and child.
    hookTimeout: 60_000,
  });
  const failed = vitest.state.getCountOfFailedTests();
  const errors = vitest.state.getUnhandledErrors().length;
  await vitest.close();
  const files = vitest.state.getFiles();
  const broken = files.some((file) => file.result?.state === 'fail');
  return failed > 0 || errors > 0 || broken || files.length === 0 ? 1 : 0;
}
