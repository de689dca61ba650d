import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { DsoError, loadConfig, resolveDsoPaths } from '@dso/core';
import {
  DEFAULT_MAX_MESSAGE_BYTES,
  maxMessageBytesAdvice,
  maxSecretBytesFor,
} from '@dso/provider-sdk';

/**
 * The largest value `dso secret set` accepts by default: what the provider protocol's default
 * `maxMessageBytes` carries after base64, 1,130,496 bytes (so 1 MiB works end to end).
 */
export const MAX_SECRET_BYTES = maxSecretBytesFor(DEFAULT_MAX_MESSAGE_BYTES);

/** How large a value `dso secret set` stores, and the setting that raises it. */
export interface SecretSizeLimit {
  /** The largest value, in bytes. */
  maxBytes: number;
  /** The configured provider that serves the local vault to the agent. */
  provider: string;
  /** Its `maxMessageBytes`, which sets `maxBytes`. */
  maxMessageBytes: number;
}

/**
 * The local vault the CLI works on, as the agent sees it: its file, where its key comes from
 * and how large a value its provider carries, all from `dso.yaml`.
 */
export interface LocalVaultSettings extends SecretSizeLimit {
  /** The vault file. */
  vaultPath: string;
  /** The provider's `keyFile`, when `dso.yaml` names one. */
  keyFile?: string;
  /** The provider's `passphraseEnv`, when `dso.yaml` names one. */
  passphraseEnv?: string;
  /** The configuration file read, when there is one. */
  configFile?: string;
}

/**
 * The local vault the agent reads, from the same `dso.yaml` (`$DSO_CONFIG`, else
 * `$DSO_HOME/dso.yaml`): the `local` provider that is the default provider, else the one whose
 * vault is `DSO_VAULT_PATH` (or `$DSO_HOME/vault.dso`), else the first `local` provider. With
 * `DSO_VAULT_PATH` set, only the provider naming that file; a file no provider names is used
 * with the environment's key. Without a `local` provider: the environment's defaults.
 *
 * @throws DsoError DSO_CONFIG_* when `dso.yaml` cannot be read
 */
export async function localVaultSettings(env: NodeJS.ProcessEnv): Promise<LocalVaultSettings> {
  const { config, path: configFile } = await loadConfig({ env });
  const fromFile = configFile === undefined ? {} : { configFile };
  const defaultVault = resolve(resolveDsoPaths(env).vaultPath);
  const locals = Object.entries(config.providers).filter(([, entry]) => entry.type === 'local');
  const namesDefaultVault = ([, entry]: (typeof locals)[number]) => {
    const path = entry.config.vaultPath;
    return typeof path === 'string' && resolve(path) === defaultVault;
  };
  const chosen = env.DSO_VAULT_PATH
    ? locals.find(namesDefaultVault)
    : (locals.find(([name]) => name === config.defaultProvider) ??
      locals.find(namesDefaultVault) ??
      locals[0]);
  if (chosen === undefined) {
    return {
      vaultPath: defaultVault,
      provider: 'local',
      maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
      maxBytes: maxSecretBytesFor(DEFAULT_MAX_MESSAGE_BYTES),
      ...fromFile,
    };
  }
  const [name, entry] = chosen;
  const text = (key: string) => {
    const value = entry.config[key];
    return typeof value === 'string' && value !== '' ? value : undefined;
  };
  const keyFile = text('keyFile');
  const passphraseEnv = text('passphraseEnv');
  return {
    vaultPath: resolve(text('vaultPath') ?? defaultVault),
    ...(keyFile === undefined ? {} : { keyFile }),
    ...(passphraseEnv === undefined ? {} : { passphraseEnv }),
    provider: name,
    maxMessageBytes: entry.maxMessageBytes,
    maxBytes: maxSecretBytesFor(entry.maxMessageBytes),
    ...fromFile,
  };
}

/**
 * The largest value the agent can get from the local vault: what its provider's messages carry
 * (`providers.<name>.maxMessageBytes` in `dso.yaml`, after base64). `dso secret set` refuses a
 * larger value before storing it, so a value stored is a value the agent can deliver.
 *
 * @throws DsoError DSO_CONFIG_* when `dso.yaml` cannot be read
 */
export async function localSecretLimit(env: NodeJS.ProcessEnv): Promise<SecretSizeLimit> {
  const { maxBytes, provider, maxMessageBytes } = await localVaultSettings(env);
  return { maxBytes, provider, maxMessageBytes };
}

/** DSO_CLI_VALUE_TOO_LARGE: the limit, and the setting that raises it. */
export function valueTooLarge(limit: SecretSizeLimit, valueBytes?: number): DsoError {
  return new DsoError(
    'DSO_CLI_VALUE_TOO_LARGE',
    `the value is ${valueBytes === undefined ? 'larger than' : `${valueBytes} bytes, over`} ` +
      `${limit.maxBytes} bytes, the largest provider ${limit.provider} can carry to the agent: ` +
      `nothing stored; ${maxMessageBytesAdvice(limit.provider, limit.maxMessageBytes, valueBytes)}`,
  );
}

/**
 * Reads a secret value from a pipe: every byte up to end of input, at most `maxBytes`. One
 * trailing newline (`\n` or `\r\n`) is dropped unless `keepNewline`, since `echo` adds one.
 *
 * @throws DsoError DSO_CLI_VALUE_TOO_LARGE past `maxBytes` (with `limit`'s setting in the
 *   message); DSO_CLI_VALUE_EMPTY when nothing was read
 */
export async function readSecretFromStream(
  input: Readable,
  {
    maxBytes = MAX_SECRET_BYTES,
    keepNewline = false,
    limit,
  }: { maxBytes?: number; keepNewline?: boolean; limit?: SecretSizeLimit } = {},
): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  const tooLarge = () =>
    valueTooLarge(
      limit ?? {
        maxBytes,
        provider: 'local',
        maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
      },
    );
  try {
    for await (const chunk of input) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
      size += buffer.byteLength;
      chunks.push(buffer);
      // Room for the trailing newline dropped below.
      if (size > maxBytes + 2) throw tooLarge();
    }
    // allocUnsafeSlow: a buffer of its own, never a slice of Node's shared pool, so zeroing it
    // below zeroes every copy of the value this function made.
    const joined = Buffer.allocUnsafeSlow(size);
    let offset = 0;
    for (const chunk of chunks) offset += chunk.copy(joined, offset);
    let value = joined;
    if (!keepNewline) {
      if (value.subarray(-2).toString() === '\r\n') value = value.subarray(0, -2);
      else if (value.subarray(-1).toString() === '\n') value = value.subarray(0, -1);
    }
    if (value.byteLength > maxBytes) {
      joined.fill(0);
      throw tooLarge();
    }
    if (value.byteLength === 0) {
      throw new DsoError(
        'DSO_CLI_VALUE_EMPTY',
        'nothing was read from stdin: pipe the value in, e.g. `printf %s "$VALUE" | dso secret set app/db`',
      );
    }
    const result = Buffer.from(value);
    joined.fill(0);
    return result;
  } finally {
    for (const chunk of chunks) chunk.fill(0);
  }
}

/**
 * Asks for a value on a terminal without echoing it. Enter ends it, Backspace erases,
 * Ctrl-C or Ctrl-D on an empty line cancels.
 *
 * @throws DsoError DSO_CLI_CANCELLED when cancelled
 */
export function readHiddenLine(
  prompt: string,
  input: NodeJS.ReadStream,
  output: NodeJS.WritableStream,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const bytes: number[] = [];
    output.write(prompt);
    input.setRawMode(true);
    input.resume();
    const finish = (error?: Error) => {
      input.setRawMode(false);
      input.pause();
      input.removeListener('data', onData);
      output.write('\n');
      const value = Buffer.from(bytes);
      bytes.fill(0);
      if (error) reject(error);
      else resolve(value);
    };
    const onData = (chunk: Buffer) => {
      try {
        for (const byte of chunk) {
          if (byte === 0x03 || (byte === 0x04 && bytes.length === 0)) {
            finish(new DsoError('DSO_CLI_CANCELLED', 'cancelled'));
            return;
          }
          if (byte === 0x0d || byte === 0x0a) {
            finish();
            return;
          }
          if (byte === 0x7f || byte === 0x08) bytes.pop();
          else bytes.push(byte);
        }
      } finally {
        chunk.fill(0);
      }
    };
    input.on('data', onData);
  });
}
