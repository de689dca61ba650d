/**
 * @dso/cli: the `dso` command line. Install it and run `dso --help`; import it to embed the
 * same commands in other tooling.
 *
 * @example
 * import { runCli } from '@dso/cli';
 * const code = await runCli(['secret', 'list'], { env: process.env, stdin: process.stdin, stdout: process.stdout, stderr: process.stderr });
 */
export { type CliIo, createProgram, runCli } from './program.js';
export {
  localSecretLimit,
  MAX_SECRET_BYTES,
  readHiddenLine,
  readSecretFromStream,
  type SecretSizeLimit,
  valueTooLarge,
} from './read-secret.js';
