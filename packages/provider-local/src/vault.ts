import { createHash, timingSafeEqual } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import {
  type CallOptions,
  isPrivateFileError,
  isSecretValue,
  type PrivateFileError,
  type ResolvedSecret,
  readPrivateFile,
  SecretValue,
  writePrivateFile,
} from '@dso/provider-sdk';
import { acquireFileLock, DEFAULT_LOCK_TIMEOUT_MS } from './file-lock.js';
import { createKeyCache, type KeyCache } from './key-cache.js';
import { pathExists } from './path-exists.js';
import { assertSecretPath, isUnderPrefix, normalizePrefix } from './secret-path.js';
import { errnoCode, VaultError } from './vault-error.js';
import {
  DEFAULT_SCRYPT_PARAMS,
  type KdfParams,
  MAX_VAULT_FILE_BYTES,
  newKdfParams,
  openSealedVault,
  parseVaultHeader,
  type ScryptParams,
  scryptParamsProblem,
  sealVault,
} from './vault-format.js';
import type { VaultKey } from './vault-key.js';

/** How many versions of each secret a vault keeps; older ones are dropped on write. */
export const DEFAULT_MAX_VERSIONS = 10;
/** The largest secret value a vault stores, in bytes (1 MiB). */
export const DEFAULT_MAX_SECRET_BYTES = 1024 * 1024;

const MAX_MAX_VERSIONS = 1000;

/** Options for {@link openVault}. */
export interface OpenVaultOptions {
  /** The vault file. A symlink is resolved once, so writes replace its target. */
  path: string;
  /** Key material, from {@link resolveVaultKey}; copied, so the caller may dispose its own. */
  key: VaultKey;
  /**
   * How many versions of each secret to keep; the oldest are dropped when a write exceeds it.
   * @default DEFAULT_MAX_VERSIONS
   */
  maxVersions?: number;
  /**
   * The largest value `set()` accepts, in bytes.
   * @default DEFAULT_MAX_SECRET_BYTES
   */
  maxSecretBytes?: number;
  /**
   * How long a write waits for another process's lock on the vault, in ms.
   * @default DEFAULT_LOCK_TIMEOUT_MS
   */
  lockTimeoutMs?: number;
  /**
   * The clock for versions' `createdAt`; injected by tests.
   * @default () => new Date()
   */
  now?: () => Date;
  signal?: AbortSignal;
}

/** Options for {@link initVault}. */
export interface InitVaultOptions extends OpenVaultOptions {
  /**
   * scrypt's cost for the new vault, stored in its header. Tests lower `log2N` to run fast.
   * @default DEFAULT_SCRYPT_PARAMS (N = 2^15, r = 8, p = 1)
   */
  kdf?: Partial<ScryptParams>;
}

/** Options for {@link Vault.get}. */
export interface VaultGetOptions extends CallOptions {
  /** The version to read; absent means the newest. */
  version?: string;
}

/** What {@link Vault.put} did. */
export interface PutResult {
  /** The secret's newest version after the call. */
  version: string;
  /** False when the value equals the newest stored version: that version is kept. */
  created: boolean;
}

/** A stored version's metadata, without its value. */
export interface SecretVersionInfo {
  /** A positive integer as a string; versions of one secret only ever increase. */
  version: string;
  /** When the version was stored, ISO 8601. */
  createdAt: string;
}

/**
 * An open vault file. Every call reads the file afresh (so writes by another process are seen)
 * and reuses the key derived at open; writes are serialized within the process and take a lock
 * file (`<vault>.lock`) against other processes.
 */
export interface Vault {
  /** The vault file's absolute path. */
  readonly path: string;
  /**
   * Reads a secret: the newest version, or the one asked for.
   * @throws VaultError DSO_VAULT_SECRET_NOT_FOUND when the path or version is not stored;
   *   DSO_VAULT_PATH_INVALID; and any error {@link openVault} lists for reading the file
   */
  get(path: string, options?: VaultGetOptions): Promise<ResolvedSecret>;
  /**
   * Stores a new version of a secret and returns its version: `"1"` for a new path, then one
   * more than the last version ever stored there (deletes do not reset it).
   * @throws VaultError DSO_VAULT_PATH_INVALID, DSO_VAULT_TOO_LARGE, DSO_VAULT_LOCKED,
   *   DSO_VAULT_IO, and any error {@link openVault} lists for reading the file
   */
  set(path: string, value: SecretValue | Uint8Array, options?: CallOptions): Promise<string>;
  /**
   * {@link Vault.set}, saying whether a version was stored. A value byte-for-byte equal to the
   * newest stored version (compared in constant time) is not a new version: the vault keeps
   * that version, writes nothing, and answers `{ version, created: false }`, so consumers see
   * no change and rotate nothing. `set()` follows the same rule.
   * @example
   * const { version, created } = await vault.put('app/db', SecretValue.fromText('s3cret'));
   * @throws VaultError as {@link Vault.set}
   */
  put(path: string, value: SecretValue | Uint8Array, options?: CallOptions): Promise<PutResult>;
  /**
   * Deletes every stored version of a secret; returns false when there was none. The version
   * counter is kept, so a later `set()` does not reuse a version a consumer may have cached.
   * @throws VaultError as {@link Vault.set}
   */
  delete(path: string, options?: CallOptions): Promise<boolean>;
  /**
   * Paths of stored secrets, sorted: all, or those equal to or under `prefix` segment by
   * segment (`app` matches `app/db`, not `apple`).
   * @throws VaultError DSO_VAULT_PATH_INVALID for a malformed prefix
   */
  list(prefix?: string, options?: CallOptions): Promise<string[]>;
  /**
   * The stored versions of a secret, oldest first, without values.
   * @throws VaultError DSO_VAULT_SECRET_NOT_FOUND when nothing is stored at the path
   */
  versions(path: string, options?: CallOptions): Promise<SecretVersionInfo[]>;
  /**
   * The newest version of a secret, without its value. The format seals every secret in one
   * authenticated ciphertext, so versions cannot be read without decrypting; instead the vault
   * remembers each path's newest version from its last decryption, keyed by the SHA-256 of the
   * file it decrypted. While the file is byte-for-byte unchanged this costs a read and a hash,
   * with no decryption and no plaintext in memory; after any write it decrypts once.
   * @throws VaultError DSO_VAULT_SECRET_NOT_FOUND when nothing is stored at the path;
   *   DSO_VAULT_PATH_INVALID; and any error {@link openVault} lists for reading the file
   */
  currentVersion(path: string, options?: CallOptions): Promise<string>;
  /** Waits for pending writes, then zeroes the key material and derived key. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Opens an existing vault, reading and decrypting it once so a wrong key or a damaged file is
 * reported now rather than on first use. Derives the key with the header's scrypt parameters.
 *
 * @example
 * const vault = await openVault({ path: '/var/lib/dso/vault.dso', key: await resolveVaultKey() });
 * const { value, version } = await vault.get('app/db/password');
 * @throws VaultError DSO_VAULT_NOT_FOUND (run `dso init`), DSO_VAULT_PERMISSIONS,
 *   DSO_VAULT_WRONG_KEY, DSO_VAULT_CORRUPT, DSO_VAULT_TRUNCATED, DSO_VAULT_UNSUPPORTED_VERSION,
 *   DSO_VAULT_TOO_LARGE, DSO_VAULT_IO. The vault file is never modified by a failure.
 */
export async function openVault(options: OpenVaultOptions): Promise<Vault> {
  const settings = checkOptions(options);
  options.signal?.throwIfAborted();
  const requested = resolve(options.path);
  let path: string;
  try {
    path = await realpath(requested);
  } catch (error) {
    if (errnoCode(error) === 'ENOENT') throw notFound(requested, error);
    throw ioError(requested, 'resolve', error);
  }
  const vault = new LocalVault(path, options.key, settings);
  try {
    await vault.verify(options.signal);
  } catch (error) {
    await vault.close();
    throw error;
  }
  return vault;
}

/**
 * Creates a new, empty vault file (mode 0600, written atomically) with a fresh random salt and
 * returns it open. The key derived here is cached, so the first reads cost no second scrypt.
 *
 * @example
 * const vault = await initVault({ path: '/var/lib/dso/vault.dso', key: await resolveVaultKey() });
 * await vault.set('app/db/password', SecretValue.fromText('s3cret'));
 * @throws VaultError DSO_VAULT_EXISTS when the file exists (it is left alone); DSO_VAULT_IO when
 *   it cannot be written (e.g. its directory is missing)
 * @throws RangeError when `kdf` is out of bounds (log2N 10..20, r 1..32, p 1..16)
 */
export async function initVault(options: InitVaultOptions): Promise<Vault> {
  const settings = checkOptions(options);
  const params: ScryptParams = { ...DEFAULT_SCRYPT_PARAMS, ...options.kdf };
  const problem = scryptParamsProblem(params);
  if (problem !== undefined) throw new RangeError(problem);
  options.signal?.throwIfAborted();
  const path = resolve(options.path);
  // Checked first so an existing vault is reported before a second of scrypt; the exclusive
  // link in writePrivateFile still settles a race with another init.
  if (await pathExists(path)) throw vaultExists(path);
  const vault = new LocalVault(path, options.key, settings);
  try {
    await vault.create(newKdfParams(params), options.signal);
  } catch (error) {
    await vault.close();
    throw error;
  }
  return vault;
}

interface Settings {
  maxVersions: number;
  maxSecretBytes: number;
  lockTimeoutMs: number;
  now: () => Date;
}

function checkOptions(options: OpenVaultOptions): Settings {
  if (typeof options?.path !== 'string' || options.path === '') {
    throw new TypeError('vault options need a path');
  }
  if (!isSecretValue(options.key?.material) || typeof options.key.source !== 'string') {
    throw new TypeError('vault options need a key: use resolveVaultKey()');
  }
  const {
    maxVersions = DEFAULT_MAX_VERSIONS,
    maxSecretBytes = DEFAULT_MAX_SECRET_BYTES,
    lockTimeoutMs = DEFAULT_LOCK_TIMEOUT_MS,
    now = () => new Date(),
  } = options;
  if (!Number.isInteger(maxVersions) || maxVersions < 1 || maxVersions > MAX_MAX_VERSIONS) {
    throw new RangeError(`maxVersions must be an integer from 1 to ${MAX_MAX_VERSIONS}`);
  }
  if (!Number.isInteger(maxSecretBytes) || maxSecretBytes < 1) {
    throw new RangeError('maxSecretBytes must be a positive integer');
  }
  if (!Number.isFinite(lockTimeoutMs) || lockTimeoutMs < 0) {
    throw new RangeError('lockTimeoutMs must be a non-negative number');
  }
  return { maxVersions, maxSecretBytes, lockTimeoutMs, now };
}

// The decrypted document. Maps, not plain objects, so a secret named `__proto__` is just a key.
interface StoredVersion {
  version: string;
  createdAt: string;
  /** The value, base64. */
  value: string;
}

interface SecretRecord {
  /** The highest version ever stored at this path, kept after deletes and pruning. */
  lastVersion: number;
  versions: StoredVersion[];
}

type Payload = Map<string, SecretRecord>;

interface Loaded {
  kdf: KdfParams;
  payload: Payload;
  index: VersionIndex;
}

/** Each path's newest version as of the last decryption, and the digest of the file decrypted. */
interface VersionIndex {
  digest: string;
  newest: Map<string, string>;
}

interface Change<T> {
  changed: boolean;
  result: T;
}

class LocalVault implements Vault {
  readonly path: string;
  readonly #keys: KeyCache;
  readonly #keySource: string;
  readonly #settings: Settings;
  // Orders this process's writes; each write also takes the lock file against other processes.
  #writes: Promise<unknown> = Promise.resolve();
  // Calls in flight, so close() lets them finish before it zeroes the key.
  readonly #pending = new Set<Promise<unknown>>();
  #index: VersionIndex | undefined;
  #closed = false;

  constructor(path: string, key: VaultKey, settings: Settings) {
    this.path = path;
    this.#keys = createKeyCache(key.material.reveal());
    this.#keySource = key.source;
    this.#settings = settings;
  }

  async verify(signal?: AbortSignal): Promise<void> {
    await this.#load(signal);
  }

  async create(kdf: KdfParams, signal?: AbortSignal): Promise<void> {
    const plaintext = serializePayload(new Map());
    const key = await this.#keys.get(kdf, signal);
    let sealed: Buffer;
    try {
      sealed = sealVault(plaintext, kdf, key);
    } finally {
      key.fill(0);
      plaintext.fill(0);
    }
    await this.#writeFile(sealed, false, signal);
  }

  async get(path: string, options: VaultGetOptions = {}): Promise<ResolvedSecret> {
    assertSecretPath(path);
    const { version, signal } = options;
    if (version !== undefined && typeof version !== 'string') {
      throw new TypeError('version must be a string');
    }
    const { payload } = await this.#read(signal);
    const record = payload.get(path);
    const entry =
      version === undefined
        ? record?.versions.at(-1)
        : record?.versions.find((candidate) => candidate.version === version);
    if (entry === undefined) throw this.#secretNotFound(path, version, record);
    const bytes = Buffer.from(entry.value, 'base64');
    try {
      return { value: SecretValue.fromBytes(bytes), version: entry.version };
    } finally {
      bytes.fill(0);
    }
  }

  async set(
    path: string,
    value: SecretValue | Uint8Array,
    options: CallOptions = {},
  ): Promise<string> {
    return (await this.put(path, value, options)).version;
  }

  async put(
    path: string,
    value: SecretValue | Uint8Array,
    options: CallOptions = {},
  ): Promise<PutResult> {
    assertSecretPath(path);
    this.#assertOpen();
    let bytes: Uint8Array;
    if (isSecretValue(value)) bytes = value.reveal();
    else if (value instanceof Uint8Array) bytes = value;
    else throw new TypeError('a secret value must be a SecretValue or a Uint8Array');
    if (bytes.byteLength > this.#settings.maxSecretBytes) {
      throw new VaultError(
        'DSO_VAULT_TOO_LARGE',
        `the value for ${path} is ${bytes.byteLength} bytes; the limit is ${this.#settings.maxSecretBytes}`,
        { vaultPath: this.path, secretPath: path },
      );
    }
    // Encoded now, so the caller may dispose its value as soon as this call returns a promise.
    const encoded = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString(
      'base64',
    );
    const createdAt = this.#settings.now().toISOString();
    return this.#mutate<PutResult>(options.signal, (payload) => {
      const record = payload.get(path) ?? { lastVersion: 0, versions: [] };
      const newest = record.versions.at(-1);
      if (newest !== undefined && sameValue(newest.value, encoded)) {
        // The same value is not a new version: consumers would restart for nothing.
        return { changed: false, result: { version: newest.version, created: false } };
      }
      const version = String(record.lastVersion + 1);
      record.lastVersion += 1;
      record.versions.push({ version, createdAt, value: encoded });
      record.versions.splice(0, Math.max(0, record.versions.length - this.#settings.maxVersions));
      payload.set(path, record);
      return { changed: true, result: { version, created: true } };
    });
  }

  async delete(path: string, options: CallOptions = {}): Promise<boolean> {
    assertSecretPath(path);
    return this.#mutate(options.signal, (payload) => {
      const record = payload.get(path);
      if (record === undefined || record.versions.length === 0) {
        return { changed: false, result: false };
      }
      record.versions = [];
      return { changed: true, result: true };
    });
  }

  async list(prefix?: string, options: CallOptions = {}): Promise<string[]> {
    const normalized = normalizePrefix(prefix);
    const { payload } = await this.#read(options.signal);
    const paths: string[] = [];
    for (const [path, record] of payload) {
      if (record.versions.length > 0 && isUnderPrefix(path, normalized)) paths.push(path);
    }
    return paths.sort();
  }

  async versions(path: string, options: CallOptions = {}): Promise<SecretVersionInfo[]> {
    assertSecretPath(path);
    const { payload } = await this.#read(options.signal);
    const record = payload.get(path);
    if (record === undefined || record.versions.length === 0) {
      throw this.#secretNotFound(path, undefined, record);
    }
    return record.versions.map(({ version, createdAt }) => ({ version, createdAt }));
  }

  async currentVersion(path: string, options: CallOptions = {}): Promise<string> {
    assertSecretPath(path);
    const newest = await this.#track(async () => {
      const file = await this.#readFile(options.signal);
      const index = this.#index;
      if (index !== undefined && index.digest === digestOf(file)) return index.newest;
      // Changed since the last decryption (or never decrypted): decrypt these very bytes once,
      // which refreshes the index.
      return (await this.#decrypt(file, options.signal)).index.newest;
    });
    const version = newest.get(path);
    if (version === undefined) throw this.#secretNotFound(path, undefined, undefined);
    return version;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.allSettled([...this.#pending]);
    this.#index = undefined;
    this.#keys.close();
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  #assertOpen(): void {
    if (this.#closed) {
      throw new VaultError('DSO_VAULT_CLOSED', `vault ${this.path} was closed; open it again`, {
        vaultPath: this.path,
      });
    }
  }

  #mutate<T>(signal: AbortSignal | undefined, change: (payload: Payload) => Change<T>): Promise<T> {
    const run = () => this.#writeLocked(signal, change);
    return this.#track(() => {
      const result = this.#writes.then(run);
      // The chain only orders writes: each caller gets its own outcome from `result`, so a
      // failed write must not fail the ones queued behind it.
      this.#writes = result.catch(() => {});
      return result;
    });
  }

  #read(signal: AbortSignal | undefined): Promise<Loaded> {
    return this.#track(() => this.#load(signal));
  }

  /** Runs a call unless the vault is closed, and remembers it until it settles. */
  #track<T>(call: () => Promise<T>): Promise<T> {
    this.#assertOpen();
    const promise = call();
    this.#pending.add(promise);
    const forget = () => this.#pending.delete(promise);
    promise.then(forget, forget);
    return promise;
  }

  async #writeLocked<T>(
    signal: AbortSignal | undefined,
    change: (payload: Payload) => Change<T>,
  ): Promise<T> {
    signal?.throwIfAborted();
    const release = await acquireFileLock(`${this.path}.lock`, {
      vaultPath: this.path,
      timeoutMs: this.#settings.lockTimeoutMs,
      signal,
    });
    try {
      // Read under the lock, so no other process's write lands between this read and the write.
      const { kdf, payload } = await this.#load(signal);
      const { changed, result } = change(payload);
      if (!changed) return result;
      const plaintext = serializePayload(payload);
      let sealed: Buffer;
      const key = await this.#keys.get(kdf, signal);
      try {
        // Same salt and parameters as the file had (so the cached key stays valid); fresh nonce.
        sealed = sealVault(plaintext, kdf, key);
      } finally {
        key.fill(0);
        plaintext.fill(0);
      }
      if (sealed.byteLength > MAX_VAULT_FILE_BYTES) {
        throw new VaultError(
          'DSO_VAULT_TOO_LARGE',
          `vault ${this.path} would grow to ${sealed.byteLength} bytes; the limit is ${MAX_VAULT_FILE_BYTES}: delete secrets or lower maxVersions`,
          { vaultPath: this.path },
        );
      }
      await this.#writeFile(sealed, true, signal);
      return result;
    } finally {
      await release();
    }
  }

  async #load(signal: AbortSignal | undefined): Promise<Loaded> {
    return this.#decrypt(await this.#readFile(signal), signal);
  }

  async #decrypt(file: Buffer, signal: AbortSignal | undefined): Promise<Loaded> {
    const header = parseVaultHeader(file, this.path);
    const key = await this.#keys.get(header.kdf, signal);
    let plaintext: Buffer;
    try {
      plaintext = openSealedVault(file, header, key, this.path, this.#keySource);
    } finally {
      key.fill(0);
    }
    let payload: Payload;
    try {
      payload = parsePayload(plaintext, this.path);
    } finally {
      plaintext.fill(0);
    }
    const newest = new Map<string, string>();
    for (const [path, record] of payload) {
      const last = record.versions.at(-1);
      if (last !== undefined) newest.set(path, last.version);
    }
    // Versions only: no value is kept past the call that decrypted it.
    const index = { digest: digestOf(file), newest };
    this.#index = index;
    return { kdf: header.kdf, payload, index };
  }

  async #readFile(signal: AbortSignal | undefined): Promise<Buffer> {
    signal?.throwIfAborted();
    try {
      return await readPrivateFile(this.path, { maxBytes: MAX_VAULT_FILE_BYTES, signal });
    } catch (error) {
      if (isPrivateFileError(error)) throw vaultFileRefused(error);
      if (errnoCode(error) === undefined) throw error;
      throw ioError(this.path, 'read', error);
    }
  }

  async #writeFile(
    sealed: Buffer,
    overwrite: boolean,
    signal: AbortSignal | undefined,
  ): Promise<void> {
    try {
      await writePrivateFile(this.path, sealed, { overwrite, signal });
    } catch (error) {
      if (errnoCode(error) === 'EEXIST' && !overwrite) throw vaultExists(this.path, error);
      if (errnoCode(error) === undefined) throw error;
      throw ioError(this.path, 'write', error);
    }
  }

  #secretNotFound(
    path: string,
    version: string | undefined,
    record: SecretRecord | undefined,
  ): VaultError {
    const facts = { vaultPath: this.path, secretPath: path, version };
    const stored = record?.versions ?? [];
    if (version === undefined || stored.length === 0) {
      return new VaultError(
        'DSO_VAULT_SECRET_NOT_FOUND',
        `no secret at ${path} in vault ${this.path}`,
        facts,
      );
    }
    const kept = `${stored[0]?.version}..${stored.at(-1)?.version}`;
    return new VaultError(
      'DSO_VAULT_SECRET_NOT_FOUND',
      `secret ${path} has no version ${JSON.stringify(version)} in vault ${this.path}; versions ${kept} are kept`,
      facts,
    );
  }
}

function serializePayload(payload: Payload): Buffer {
  const secrets: Record<string, SecretRecord> = {};
  for (const path of [...payload.keys()].sort()) {
    const record = payload.get(path)!;
    // defineProperty, not assignment: a path named `__proto__` must become an own key.
    Object.defineProperty(secrets, path, {
      value: { lastVersion: record.lastVersion, versions: record.versions },
      enumerable: true,
      configurable: true,
      writable: true,
    });
  }
  return Buffer.from(JSON.stringify({ secrets }), 'utf8');
}

function parsePayload(plaintext: Buffer, vaultPath: string): Payload {
  const corrupt = (what: string) =>
    // No cause: a JSON.parse message quotes the text around the fault, which here is plaintext.
    new VaultError(
      'DSO_VAULT_CORRUPT',
      `vault ${vaultPath} decrypted, but its contents are not a valid vault document (${what}); restore it from a backup`,
      { vaultPath },
    );
  let document: unknown;
  try {
    document = JSON.parse(plaintext.toString('utf8'));
  } catch {
    throw corrupt('not JSON');
  }
  if (!isObject(document) || !isObject(document.secrets)) throw corrupt('no "secrets" object');
  const payload: Payload = new Map();
  for (const [path, record] of Object.entries(document.secrets)) {
    if (
      !isObject(record) ||
      !Number.isSafeInteger(record.lastVersion) ||
      !Array.isArray(record.versions)
    ) {
      throw corrupt(`malformed record for ${path}`);
    }
    const lastVersion = record.lastVersion as number;
    const versions: StoredVersion[] = [];
    for (const entry of record.versions as unknown[]) {
      if (
        !isObject(entry) ||
        typeof entry.version !== 'string' ||
        typeof entry.createdAt !== 'string' ||
        typeof entry.value !== 'string' ||
        !(Number(entry.version) <= lastVersion)
      ) {
        throw corrupt(`malformed version for ${path}`);
      }
      versions.push({ version: entry.version, createdAt: entry.createdAt, value: entry.value });
    }
    payload.set(path, { lastVersion, versions });
  }
  return payload;
}

function digestOf(file: Buffer): string {
  return createHash('sha256').update(file).digest('hex');
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The vault file refused by {@link readPrivateFile}'s checks, or that could not be opened. */
function vaultFileRefused(error: PrivateFileError): VaultError {
  const { path } = error;
  switch (error.problem) {
    case 'missing':
      return notFound(path, error.cause);
    case 'not-file':
      return new VaultError(
        'DSO_VAULT_CORRUPT',
        `vault ${path} is not a regular file; point DSO at the vault file`,
        { vaultPath: path },
      );
    case 'permissions': {
      const mode = (error.mode ?? 0).toString(8).padStart(4, '0');
      return new VaultError(
        'DSO_VAULT_PERMISSIONS',
        `vault ${path} has mode ${mode}, so other users may read or replace it; run: chmod 600 ${path}`,
        { vaultPath: path },
      );
    }
    case 'too-large':
      return new VaultError(
        'DSO_VAULT_TOO_LARGE',
        `vault ${path} is ${error.size} bytes; the limit is ${MAX_VAULT_FILE_BYTES}`,
        { vaultPath: path },
      );
    case 'exists':
    case 'io':
      return ioError(path, 'open', error.cause);
  }
}

function notFound(path: string, cause?: unknown): VaultError {
  return new VaultError(
    'DSO_VAULT_NOT_FOUND',
    `vault ${path} does not exist; run \`dso init\` to create it, or point DSO_VAULT_PATH at an existing vault`,
    { vaultPath: path, cause },
  );
}

function vaultExists(path: string, cause?: unknown): VaultError {
  return new VaultError(
    'DSO_VAULT_EXISTS',
    `vault ${path} already exists; it was left as it is (open it instead, or move it away first)`,
    { vaultPath: path, cause },
  );
}

function ioError(path: string, operation: string, cause: unknown): VaultError {
  return new VaultError(
    'DSO_VAULT_IO',
    `cannot ${operation} vault ${path} (${errnoCode(cause) ?? 'error'}); check that ${dirname(path)} exists and this user may ${operation} there`,
    { vaultPath: path, cause },
  );
}

/**
 * Whether two canonical base64 encodings hold the same bytes, in time independent of where
 * they differ (only the lengths are compared first: a length is no secret the vault keeps).
 * Compared as encoded (the caller may have disposed its value by now); the copies are zeroed.
 */
function sameValue(stored: string, encoded: string): boolean {
  if (stored.length !== encoded.length) return false;
  const a = Buffer.from(stored, 'latin1');
  const b = Buffer.from(encoded, 'latin1');
  try {
    return timingSafeEqual(a, b);
  } finally {
    a.fill(0);
    b.fill(0);
  }
}
