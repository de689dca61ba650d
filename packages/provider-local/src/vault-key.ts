import { randomBytes } from 'node:crypto';
import {
  createPrivateFile,
  isPrivateFileError,
  type PrivateFileError,
  readPrivateFile,
  SecretValue,
} from '@dso/provider-sdk';
import { pathExists } from './path-exists.js';
import { VaultError } from './vault-error.js';

/** The environment variable holding the vault passphrase. */
export const VAULT_PASSPHRASE_ENV = 'DSO_VAULT_PASSPHRASE';
/** The environment variable holding the path of the vault's key file. */
export const VAULT_KEY_FILE_ENV = 'DSO_VAULT_KEY_FILE';

/** The shortest key file accepted, in bytes after trimming whitespace. */
export const MIN_KEY_FILE_BYTES = 16;
/** The longest key file accepted, in bytes. */
export const MAX_KEY_FILE_BYTES = 4096;

/** How a first-time user gets a key: the CLI makes the vault and its key file together. */
const NEW_VAULT_ADVICE = 'for a new vault, `dso init` creates the vault and its key file';

/** Random bytes in a key file made by {@link generateKeyFile}, before base64. */
const GENERATED_KEY_BYTES = 32;

/**
 * Key material for a vault, and where it came from. The vault derives its AES key from the
 * material with scrypt and the salt in the vault's header.
 */
export interface VaultKey {
  /** Where the material came from, safe to log: `env DSO_VAULT_PASSPHRASE` or `key file <path>`. */
  readonly source: string;
  /** The passphrase, or the key file's contents without surrounding whitespace. */
  readonly material: SecretValue;
}

/** Options for {@link resolveVaultKey}. */
export interface ResolveVaultKeyOptions {
  /**
   * Where to read {@link VAULT_PASSPHRASE_ENV} and {@link VAULT_KEY_FILE_ENV} from.
   * @default process.env
   */
  env?: Readonly<Record<string, string | undefined>>;
  /**
   * A key file to use when neither variable is set, if it exists: meant for `defaultKeyFile`
   * from `@dso/core`'s `resolveDsoPaths()`. Absent: no fallback.
   */
  defaultKeyFile?: string;
  /**
   * The vault the key is for. A missing key's message depends on it: for a vault that exists,
   * restore its key (a new key cannot open it); for one that does not exist yet, make one.
   */
  vaultPath?: string;
  signal?: AbortSignal;
}

/**
 * Finds the vault's key material: the passphrase in `DSO_VAULT_PASSPHRASE`, or the key file
 * named by `DSO_VAULT_KEY_FILE`, or else `defaultKeyFile` when it exists. Key material is never
 * taken from the command line, where every process on the host can read it.
 *
 * @example
 * const key = await resolveVaultKey();
 * const vault = await openVault({ path: '/var/lib/dso/vault.dso', key });
 * @throws VaultError DSO_VAULT_KEY_MISSING when no source is set or the key file does not exist;
 *   DSO_VAULT_KEY_CONFLICT when both variables are set; DSO_VAULT_KEY_PERMISSIONS,
 *   DSO_VAULT_KEY_INVALID or DSO_VAULT_IO from {@link readKeyFile}
 */
export async function resolveVaultKey(options: ResolveVaultKeyOptions = {}): Promise<VaultKey> {
  const { env = process.env, defaultKeyFile, vaultPath, signal } = options;
  const passphrase = env[VAULT_PASSPHRASE_ENV];
  const keyFile = env[VAULT_KEY_FILE_ENV];
  const hasPassphrase = passphrase !== undefined && passphrase !== '';
  const hasKeyFile = keyFile !== undefined && keyFile !== '';

  if (hasPassphrase && hasKeyFile) {
    throw new VaultError(
      'DSO_VAULT_KEY_CONFLICT',
      `both ${VAULT_PASSPHRASE_ENV} and ${VAULT_KEY_FILE_ENV} are set; unset one so the vault key is unambiguous`,
      { keyFile },
    );
  }
  if (hasPassphrase) {
    return { source: `env ${VAULT_PASSPHRASE_ENV}`, material: SecretValue.fromText(passphrase) };
  }
  if (hasKeyFile) return readKeyFile(keyFile, { signal, vaultPath });
  if (defaultKeyFile !== undefined && (await pathExists(defaultKeyFile))) {
    return readKeyFile(defaultKeyFile, { signal, vaultPath });
  }
  throw new VaultError(
    'DSO_VAULT_KEY_MISSING',
    `no vault key: ${await missingKeyAdvice(vaultPath, defaultKeyFile)}`,
    defaultKeyFile === undefined ? {} : { keyFile: defaultKeyFile },
  );
}

/**
 * What to do about a missing key, by whether the vault it is for exists. A vault opens only with
 * the key it was made with: for one that exists (or an unknown one) the advice is to restore
 * that key, never to make a new one; a new key only for a vault that does not exist yet.
 *
 * @param keyFile the key file looked for, when there is one
 */
async function missingKeyAdvice(
  vaultPath: string | undefined,
  keyFile: string | undefined,
): Promise<string> {
  if (vaultPath !== undefined && !(await pathExists(vaultPath))) {
    const make =
      keyFile === undefined
        ? ''
        : `, or make the key file yourself: (umask 077; head -c 32 /dev/urandom | base64 > ${keyFile})`;
    return `there is no vault at ${vaultPath} yet: \`dso init\` creates it and a new key file${make}`;
  }
  const restore =
    keyFile === undefined
      ? `point ${VAULT_KEY_FILE_ENV} at the vault's key file (mode 0600)`
      : `restore the vault's key file to ${keyFile} (mode 0600) from where you keep its copy, or point ${VAULT_KEY_FILE_ENV} at it`;
  const vault = vaultPath === undefined ? 'an existing vault' : `the vault at ${vaultPath}`;
  const forNew = vaultPath === undefined ? `; ${NEW_VAULT_ADVICE}` : '';
  return `${restore}, or set ${VAULT_PASSPHRASE_ENV} if the vault was made with a passphrase; a new key cannot open ${vault}${forNew}`;
}

/**
 * Reads a key file: it must be a regular file (symlinks are followed), no more than
 * {@link MAX_KEY_FILE_BYTES}, readable by its owner only, and hold at least
 * {@link MIN_KEY_FILE_BYTES} bytes besides surrounding whitespace, which is ignored.
 * `vaultPath`, the vault the key is for, words the advice when the file is missing (restore the
 * key of a vault that exists; make one only for a vault that does not).
 *
 * @throws VaultError DSO_VAULT_KEY_MISSING when it does not exist; DSO_VAULT_KEY_PERMISSIONS when
 *   group or others may read or write it; DSO_VAULT_KEY_INVALID when it is not a regular file or
 *   is too short or too long; DSO_VAULT_IO when it cannot be read
 */
export async function readKeyFile(
  path: string,
  options: { signal?: AbortSignal; vaultPath?: string } = {},
): Promise<VaultKey> {
  const facts = { keyFile: path };
  let raw: Buffer;
  try {
    raw = await readPrivateFile(path, { maxBytes: MAX_KEY_FILE_BYTES, signal: options.signal });
  } catch (error) {
    if (!isPrivateFileError(error)) throw error;
    if (error.problem === 'missing') {
      throw new VaultError(
        'DSO_VAULT_KEY_MISSING',
        `key file ${path} does not exist: ${await missingKeyAdvice(options.vaultPath, path)}`,
        { ...facts, cause: error.cause },
      );
    }
    throw keyFileRefused(error, 'read');
  }
  try {
    const material = trimWhitespace(raw);
    if (material.byteLength < MIN_KEY_FILE_BYTES) {
      throw new VaultError(
        'DSO_VAULT_KEY_INVALID',
        `key file ${path} holds fewer than ${MIN_KEY_FILE_BYTES} bytes; put at least 32 random bytes in it (base64 is fine)`,
        facts,
      );
    }
    return { source: `key file ${path}`, material: SecretValue.fromBytes(material) };
  } finally {
    raw.fill(0);
  }
}

/** A key file refused, or that could not be read (`read`) or made (`write`), in the vault's words. */
function keyFileRefused(error: PrivateFileError, operation: 'read' | 'write'): VaultError {
  const { path } = error;
  const facts = { keyFile: path };
  switch (error.problem) {
    case 'missing':
      // readKeyFile words its own (it knows the vault); a write does not meet a missing file.
      return new VaultError('DSO_VAULT_KEY_MISSING', `key file ${path} does not exist`, {
        ...facts,
        cause: error.cause,
      });
    case 'not-file':
      return new VaultError(
        'DSO_VAULT_KEY_INVALID',
        `key file ${path} is not a regular file`,
        facts,
      );
    case 'permissions': {
      const mode = (error.mode ?? 0).toString(8).padStart(4, '0');
      return new VaultError(
        'DSO_VAULT_KEY_PERMISSIONS',
        `key file ${path} has mode ${mode}, so other users may read it; run: chmod 600 ${path}`,
        facts,
      );
    }
    case 'too-large':
      return new VaultError(
        'DSO_VAULT_KEY_INVALID',
        `key file ${path} is ${error.size} bytes; the limit is ${MAX_KEY_FILE_BYTES}`,
        facts,
      );
    case 'exists':
      return new VaultError(
        'DSO_VAULT_KEY_EXISTS',
        `key file ${path} already exists; it was not overwritten (a vault encrypted with it would become unreadable)`,
        facts,
      );
    case 'io':
      return new VaultError(
        'DSO_VAULT_IO',
        operation === 'read'
          ? `cannot open key file ${path} (${error.errno ?? 'error'}); check its owner and mode`
          : `cannot write key file ${path} (${error.errno}); check that its directory exists and is writable`,
        { ...facts, cause: error.cause },
      );
  }
}

/**
 * Creates a key file holding 32 random bytes in base64, with mode 0600, written atomically.
 * Never overwrites: a vault encrypted under the old key would become unreadable.
 *
 * @example
 * const key = await generateKeyFile('/var/lib/dso/vault.key');
 * await initVault({ path: '/var/lib/dso/vault.dso', key });
 * @returns the new key, as {@link readKeyFile} would read it
 * @throws VaultError DSO_VAULT_KEY_EXISTS when the file exists; DSO_VAULT_IO when it cannot be
 *   written
 */
export async function generateKeyFile(
  path: string,
  options: { signal?: AbortSignal } = {},
): Promise<VaultKey> {
  const random = randomBytes(GENERATED_KEY_BYTES);
  const text = Buffer.from(`${random.toString('base64')}\n`, 'utf8');
  random.fill(0);
  try {
    await createPrivateFile(path, text, { signal: options.signal });
    return { source: `key file ${path}`, material: SecretValue.fromBytes(trimWhitespace(text)) };
  } catch (error) {
    throw isPrivateFileError(error) ? keyFileRefused(error, 'write') : error;
  } finally {
    text.fill(0);
  }
}

/**
 * A {@link VaultKey} from a passphrase held in memory, for embedders and tests. The CLI and
 * agent use {@link resolveVaultKey} instead.
 *
 * @param source how to name the key in messages; `'passphrase'` when absent
 * @throws TypeError when the passphrase is empty
 */
export function vaultKeyFromPassphrase(
  passphrase: string | SecretValue,
  source = 'passphrase',
): VaultKey {
  const material =
    typeof passphrase === 'string'
      ? SecretValue.fromText(passphrase)
      : SecretValue.fromBytes(passphrase.reveal());
  if (material.byteLength === 0) throw new TypeError('the passphrase is empty');
  return { source, material };
}

function trimWhitespace(bytes: Buffer): Buffer {
  const isSpace = (byte: number | undefined) =>
    byte === 0x20 || byte === 0x09 || byte === 0x0a || byte === 0x0d;
  let start = 0;
  let end = bytes.byteLength;
  while (start < end && isSpace(bytes[start])) start++;
  while (end > start && isSpace(bytes[end - 1])) end--;
  return bytes.subarray(start, end);
}
