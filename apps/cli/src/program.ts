import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { DsoError, errorCode, resolveDsoPaths } from '@dso/core';
import {
  generateKeyFile,
  initVault,
  openVault,
  resolveVaultKey,
  VAULT_KEY_FILE_ENV,
  VAULT_PASSPHRASE_ENV,
} from '@dso/provider-local';
import { SecretValue } from '@dso/provider-sdk';
import { Command, CommanderError } from 'commander';
import { registerEventsCommand } from './commands/events.js';
import { registerReconcileCommand } from './commands/reconcile.js';
import { registerRotateCommand } from './commands/rotate.js';
import { registerStatusCommand } from './commands/status.js';
import { registerUpCommand } from './commands/up.js';
import {
  localSecretLimit,
  readHiddenLine,
  readSecretFromStream,
  valueTooLarge,
} from './read-secret.js';

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
      if (existsSync(paths.vaultPath)) {
        if (options.ifMissing) {
          print(`vault already exists: ${paths.vaultPath}`);
          return;
        }
        // Checked before a key file is written, so a refused init leaves nothing behind.
        throw new DsoError(
          'DSO_VAULT_EXISTS',
          `a vault already exists at ${paths.vaultPath}: keep it, or move it away to start over`,
        );
      }
      // The home holds the vault and maybe its key: readable by its owner only.
      await mkdir(dirname(paths.vaultPath), { recursive: true, mode: 0o700 });
      await mkdir(paths.home, { recursive: true, mode: 0o700 });
      // Without a passphrase or key file of the operator's choosing, a new key file beside the vault.
      const ownKey = io.env[VAULT_PASSPHRASE_ENV] || io.env[VAULT_KEY_FILE_ENV];
      if (!ownKey && !existsSync(paths.defaultKeyFile)) {
        await generateKeyFile(paths.defaultKeyFile);
        print(
          `created key file ${paths.defaultKeyFile} (mode 0600): keep it safe, the vault cannot be read without it`,
        );
      }
      const key = await resolveVaultKey({ env: io.env, defaultKeyFile: paths.defaultKeyFile });
      await using _vault = await initVault({ path: paths.vaultPath, key });
      print(`created vault ${paths.vaultPath} (mode 0600)`);
    });

  const secret = program.command('secret').description('store and list secrets in the local vault');

  secret
    .command('set')
    .description(
      'store a secret; the value comes from stdin, or a hidden prompt on a terminal, never from argv',
    )
    .argument('<path>', 'where to store it, e.g. app/db/password')
    .option('--keep-newline', 'keep a trailing newline read from stdin')
    .action(async (path: string, options: { keepNewline?: boolean }) => {
      // Refused before anything is stored: a value the agent could not get is no use.
      const limit = await localSecretLimit(io.env);
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
      await using vault = await openLocalVault(io.env, limit.maxBytes);
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
    .action(async (prefix?: string) => {
      await using vault = await openLocalVault(io.env);
      for (const path of await vault.list(prefix)) print(path);
    });

  secret
    .command('rm')
    .description('delete a secret and all its versions')
    .argument('<path>', 'the secret to delete')
    .action(async (path: string) => {
      await using vault = await openLocalVault(io.env);
      await vault.delete(path);
      print(`deleted ${path}`);
    });

  // Commands that talk to the running agent over its socket.
  registerStatusCommand(program, io);
  registerReconcileCommand(program, io);
  registerEventsCommand(program, io);
  registerRotateCommand(program, io);
  registerUpCommand(program, io);

  return program;
}

async function openLocalVault(env: NodeJS.ProcessEnv, maxSecretBytes?: number) {
  const { vaultPath, defaultKeyFile } = resolveDsoPaths(env);
  // Checked before the key, so a first-time user learns about `dso init`, not about keys.
  if (!existsSync(vaultPath)) {
    throw new DsoError(
      'DSO_VAULT_NOT_FOUND',
      `no vault at ${vaultPath}: create it with \`dso init\` (or set DSO_HOME)`,
    );
  }
  const key = await resolveVaultKey({ env, defaultKeyFile });
  return openVault({
    path: vaultPath,
    key,
    ...(maxSecretBytes === undefined ? {} : { maxSecretBytes }),
  });
}

/** Runs the CLI and returns its exit code; errors print as one line with their code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const program = createProgram(io);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version exit 0; a usage error (unknown command, missing or extra argument) is 2.
      return error.exitCode === 0 ? 0 : 2;
    }
    const code = errorCode(error);
    const message = error instanceof Error ? error.message : String(error);
    io.stderr.write(`dso: ${message}${code ? ` (${code})` : ''}\n`);
    return 1;
  }
}
