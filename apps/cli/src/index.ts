/**
 * @dso/cli: the `dso` command line. Install it and run `dso --help`; import it to embed the
 * same commands in other tooling.
 *
 * @example
 * import { runCli } from '@dso/cli';
 * const code = await runCli(['secret', 'list'], { env: process.env, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
 */
export { renderCliReference } from './cli-reference.js';
export {
  type ArgumentModel,
  type CommandModel,
  describeProgram,
  type OptionModel,
} from './command-model.js';
export {
  COMPLETION_SHELLS,
  type CompletionShell,
  completionScript,
} from './commands/completion.js';
export {
  DOCKER_PLUGIN_COMMAND,
  DOCKER_PLUGIN_METADATA_COMMAND,
  DOCKER_PLUGIN_NAME,
  type DockerPluginInvocation,
  type DockerPluginMetadata,
  dockerPluginMetadata,
  parseDockerPluginArgs,
  runDockerPlugin,
} from './docker-plugin.js';
export {
  EXIT_CODE_TABLE,
  EXIT_CODES,
  type ExitClass,
  type ExitCodeRow,
  exitClassOf,
  exitCodeFor,
} from './exit-codes.js';
export { type CliIo, createProgram, type RunCliOptions, runCli } from './program.js';
export {
  localSecretLimit,
  MAX_SECRET_BYTES,
  readHiddenLine,
  readSecretFromStream,
  type SecretSizeLimit,
  valueTooLarge,
} from './read-secret.js';
export { CLI_VERSION, versionLine } from './version.js';
