import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DsoError, errorCode, resolveDsoPaths } from '@dso/core';
import {
  assertSecretPath,
  generateKeyFile,
  initVault,
  openVault,
  readKeyFile,
  resolveVaultKey,
  VAULT_KEY_FILE_ENV,
  VAULT_PASSPHRASE_ENV,
  type VaultKey,
  vaultKeyFromPassphrase,
} from '@dso/provider-local';
import { SecretValue } from '@dso/provider-sdk';
import { Command, CommanderError } from 'commander';
import { registerCompletionCommand } from './commands/completion.js';
import { registerComposeVerbCommands } from './commands/compose-verbs.js';
import { registerDoctorCommand } from './commands/doctor.js';
import { registerEventsCommand } from './commands/events.js';
import { registerPluginCommand } from './commands/plugin.js';
import { registerReconcileCommand } from './commands/reconcile.js';
import { registerRotateCommand } from './commands/rotate.js';
import { registerStatusCommand } from './commands/status.js';
import { registerUpCommand } from './commands/up.js';
import { registerValidateCommand } from './commands/validate.js';
import { registerVersionCommand } from './commands/version.js';
import { exitCodeFor } from './exit-codes.js';
import {
  type LocalVaultSettings,
  localVaultSettings,
  readHiddenLine,
  readSecretFromStream,
  valueTooLarge,
} from './read-secret.js';
import { versionLine } from './version.js';

/** What the CLI reads and writes besides its arguments; injected so tests need no process. */
export interface CliIo {
  env: NodeJS.ProcessEnv;
  stdin: NodeJS.ReadStream;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/**
 * Builds the `dso` command. Secret values are read from stdin or a hidden prompt, never from
 * argv, and never printed.
 */
export function createProgram(io: CliIo): Command {
  const print = (line: string) => io.stdout.write(`${line}\n`);
  const program = new Command('dso')
    .description(
      'DSO: secrets from secret stores into running Docker containers, never on host disk.',
    )
    .configureOutput({
      writeOut: (text) => io.stdout.write(text),
      writeErr: (text) => io.stderr.write(text),
    })
    .version(versionLine(), '-v, --version', "print the version of dso, Node's and the platform")
    .exitOverride()
    .showHelpAfterError();

  program
    .command('init')
    .description(
      'create the local encrypted vault (and its key file, unless DSO_VAULT_PASSPHRASE or DSO_VAULT_KEY_FILE is set)',
    )
    .option('--if-missing', 'do nothing when the vault already exists')
    .action(async (options: { ifMissing?: boolean }) => {
      const paths = resolveDsoPaths(io.env);
      // The vault the agent will read: dso.yaml's local provider, else the defaults.
      const settings = await localVaultSettings(io.env);
      const { vaultPath } = settings;
      if (existsSync(vaultPath)) {
        if (options.ifMissing) {
          print(`vault already exists: ${vaultPath}`);
          return;
        }
        // Checked before a key file is written, so a refused init leaves nothing behind.
        throw new DsoError(
          'DSO_VAULT_EXISTS',
          `a vault already exists at ${vaultPath}: keep it, or move it away to start over`,
        );
      }
      // The home holds the vault and maybe its key: readable by its owner only.
      await mkdir(dirname(vaultPath), { recursive: true, mode: 0o700 });
      await mkdir(paths.home, { recursive: true, mode: 0o700 });
      // Without a passphrase or key file of the operator's choosing, a new key file: the one
      // dso.yaml names, else beside the vault.
      const ownKey =
        settings.passphraseEnv !== undefined ||
        (settings.keyFile === undefined &&
          (io.env[VAULT_PASSPHRASE_ENV] || io.env[VAULT_KEY_FILE_ENV]));
      const newKeyFile = settings.keyFile ?? paths.defaultKeyFile;
      if (!ownKey && !existsSync(newKeyFile)) {
        await mkdir(dirname(newKeyFile), { recursive: true, mode: 0o700 });
        await generateKeyFile(newKeyFile);
        print(
          `created key file ${newKeyFile} (mode 0600): keep it safe, the vault cannot be read without it`,
        );
      }
      const key = await localVaultKey(io.env, settings);
      await using _vault = await initVault({ path: vaultPath, key });
      print(`created vault ${vaultPath} (mode 0600)`);
    });

  const secret = program.command('secret').description('store and list secrets in the local vault');

  secret
    .command('set')
    .description(
      'store a secret; the value comes from stdin, or a hidden prompt on a terminal, never from argv',
    )
    .argument('<path>', 'where to store it, e.g. app/db/password')
    .option('--keep-newline', 'keep a trailing newline read from stdin')
    // Extra arguments reach the action, which refuses them with the reason, not commander's
    // bare "too many arguments".
    .allowExcessArguments(true)
    .action(async (path: string, options: { keepNewline?: boolean }, command: Command) => {
      if (command.args.length > 1) throw valueInArgv(path);
      // Before any prompt: a bad path is said before the value is typed, not after.
      assertSecretPath(path);
      // Refused before anything is stored: a value the agent could not get is no use.
      const limit = await localVaultSettings(io.env);
      let bytes: Buffer;
      if (io.stdin.isTTY) {
        bytes = await readHiddenLine(`value for ${path}: `, io.stdin, io.stderr);
        if (bytes.byteLength === 0)
          throw new DsoError('DSO_CLI_VALUE_EMPTY', 'empty value: nothing stored');
        if (bytes.byteLength > limit.maxBytes) {
          const size = bytes.byteLength;
          bytes.fill(0);
          throw valueTooLarge(limit, size);
        }
      } else {
        bytes = await readSecretFromStream(io.stdin, {
          keepNewline: options.keepNewline ?? false,
          maxBytes: limit.maxBytes,
          limit,
        });
      }
      const value = SecretValue.fromBytes(bytes);
      bytes.fill(0);
      await using vault = await openLocalVault(io.env, limit);
      try {
        // The same value again is not a new version (consumers would restart for nothing).
        const { version, created } = await vault.put(path, value);
        print(
          created ? `stored ${path} (version ${version})` : `unchanged, still version ${version}`,
        );
      } finally {
        value.dispose();
      }
    });

  secret
    .command('list')
    .description('list stored secret paths (never values)')
    .argument('[prefix]', 'only paths under this prefix')
    .option('--json', 'print {"paths": [...]} as one JSON object')
    .action(async (prefix: string | undefined, options: { json?: boolean }) => {
      await using vault = await openLocalVault(io.env);
      const paths = await vault.list(prefix);
      if (options.json) print(JSON.stringify({ paths }));
      else for (const path of paths) print(path);
    });

  secret
    .command('rm')
    .description('delete a secret and all its versions')
    .argument('<path>', 'the secret to delete')
    .option('--if-exists', 'succeed when there is no secret at the path (nothing is deleted)')
    .action(async (path: string, options: { ifExists?: boolean }) => {
      assertSecretPath(path);
      await using vault = await openLocalVault(io.env);
      if (await vault.delete(path)) {
        print(`deleted ${path}`);
        return;
      }
      if (options.ifExists) {
        print(`no secret at ${path}: nothing to delete`);
        return;
      }
      throw new DsoError(
        'DSO_CLI_SECRET_NOT_FOUND',
        `no secret at ${path}: nothing deleted; \`dso secret list\` shows the stored paths (--if-exists accepts a missing one)`,
        { path },
      );
    });

  // Commands that talk to the running agent over its socket.
  registerStatusCommand(program, io);
  registerReconcileCommand(program, io);
  registerEventsCommand(program, io);
  registerRotateCommand(program, io);
  registerUpCommand(program, io);
  registerComposeVerbCommands(program, io);
  registerCompletionCommand(program, io);
  registerVersionCommand(program, io);
  registerValidateCommand(program, io);
  registerPluginCommand(program, io);
  registerDoctorCommand(program, io);

  return program;
}

/**
 * DSO_CLI_VALUE_IN_ARGV: a value after the path. It is not echoed: it is already in the
 * shell's history, and the message says so.
 */
function valueInArgv(path: string): DsoError {
  return new DsoError(
    'DSO_CLI_VALUE_IN_ARGV',
    `a secret value is never taken from the command line: other users see it in \`ps\` and the shell keeps it in its history (remove it from there). Nothing stored. Pipe it in: printf %s "$VALUE" | dso secret set ${path}, or run \`dso secret set ${path}\` on a terminal and type it at the hidden prompt`,
  );
}

/**
 * The vault's key as the agent's provider finds it: dso.yaml's `keyFile`, else its
 * `passphraseEnv`, else DSO_VAULT_PASSPHRASE / DSO_VAULT_KEY_FILE / `$DSO_HOME/vault.key`.
 */
async function localVaultKey(
  env: NodeJS.ProcessEnv,
  settings: LocalVaultSettings,
): Promise<VaultKey> {
  const { vaultPath } = settings;
  if (settings.keyFile !== undefined) return readKeyFile(settings.keyFile, { vaultPath });
  if (settings.passphraseEnv !== undefined) {
    const passphrase = env[settings.passphraseEnv];
    if (!passphrase) {
      throw new DsoError(
        'DSO_VAULT_KEY_MISSING',
        `no vault key: providers.${settings.provider}.config.passphraseEnv in ${settings.configFile ?? 'dso.yaml'} names ${settings.passphraseEnv}, which is not set; set it to the vault's passphrase`,
      );
    }
    return vaultKeyFromPassphrase(passphrase, `env ${settings.passphraseEnv}`);
  }
  return resolveVaultKey({ env, defaultKeyFile: resolveDsoPaths(env).defaultKeyFile, vaultPath });
}

async function openLocalVault(env: NodeJS.ProcessEnv, known?: LocalVaultSettings) {
  const settings = known ?? (await localVaultSettings(env));
  const { vaultPath } = settings;
  // Checked before the key, so a first-time user learns about `dso init`, not about keys.
  if (!existsSync(vaultPath)) {
    const where =
      settings.configFile === undefined
        ? 'or set DSO_HOME'
        : `it is providers.${settings.provider}.config.vaultPath in ${settings.configFile}, by default DSO_VAULT_PATH or $DSO_HOME/vault.dso`;
    throw new DsoError(
      'DSO_VAULT_NOT_FOUND',
      `no vault at ${vaultPath}: create it with \`dso init\` (${where})`,
    );
  }
  const key = await localVaultKey(env, settings);
  return openVault({ path: vaultPath, key, maxSecretBytes: settings.maxBytes });
}

/** How `runCli` presents itself. */
export interface RunCliOptions {
  /** The command name usage and help lines show (`docker dso` when run as a Docker CLI plugin). */
  name?: string;
}

/** Runs the CLI and returns its exit code; errors print as one line with their code. */
export async function runCli(
  argv: string[],
  io: CliIo,
  options: RunCliOptions = {},
): Promise<number> {
  const program = createProgram(io);
  if (options.name) program.name(options.name);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    // Commander has printed its own message (help and version exit 0, a usage error 2).
    if (error instanceof CommanderError) return exitCodeFor(error);
    const code = errorCode(error);
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`dso: ${message}${code ? ` (${code})` : ''}\n`);
    // One exit code per failure class (exit-codes.ts): a value in argv is a usage error, 2.
    return exitCodeFor(error);
  }
}
