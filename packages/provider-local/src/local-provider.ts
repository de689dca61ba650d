import { abortable } from '@dso/async';
import {
  type CallOptions,
  isSecretValue,
  ProviderError,
  type ProviderErrorCode,
  type ResolvedSecret,
  type SecretProvider,
  type SecretRequest,
  SecretValue,
  type SecretVersion,
  toProviderError,
} from '@dso/provider-sdk';
import { openVault, type Vault } from './vault.js';
import { isVaultError, type VaultErrorCode } from './vault-error.js';
import type { VaultKey } from './vault-key.js';

/** Options for {@link createLocalProvider}. */
export interface LocalProviderOptions {
  /**
   * The provider's configured name.
   * @default 'local'
   */
  name?: string;
  /** The vault file. */
  vaultPath: string;
  /** Key material, from {@link resolveVaultKey}; copied, so the caller may dispose its own. */
  key: VaultKey;
}

// How each vault failure looks to the provider contract. The VaultError stays as `cause`, so
// the precise code and its fix are not lost.
const PROVIDER_CODES: Record<VaultErrorCode, ProviderErrorCode> = {
  DSO_VAULT_SECRET_NOT_FOUND: 'DSO_PROVIDER_NOT_FOUND',
  DSO_VAULT_PATH_INVALID: 'DSO_PROVIDER_NOT_FOUND',
  DSO_VAULT_WRONG_KEY: 'DSO_PROVIDER_UNAUTHORIZED',
  DSO_VAULT_KEY_MISSING: 'DSO_PROVIDER_UNAUTHORIZED',
  DSO_VAULT_KEY_CONFLICT: 'DSO_PROVIDER_INVALID_CONFIG',
  DSO_VAULT_KEY_PERMISSIONS: 'DSO_PROVIDER_INVALID_CONFIG',
  DSO_VAULT_KEY_INVALID: 'DSO_PROVIDER_INVALID_CONFIG',
  DSO_VAULT_KEY_EXISTS: 'DSO_PROVIDER_INVALID_CONFIG',
  DSO_VAULT_NOT_FOUND: 'DSO_PROVIDER_INVALID_CONFIG',
  DSO_VAULT_EXISTS: 'DSO_PROVIDER_INVALID_CONFIG',
  DSO_VAULT_PERMISSIONS: 'DSO_PROVIDER_INVALID_CONFIG',
  DSO_VAULT_UNSUPPORTED_VERSION: 'DSO_PROVIDER_INVALID_CONFIG',
  DSO_VAULT_CORRUPT: 'DSO_PROVIDER_INTERNAL',
  DSO_VAULT_TRUNCATED: 'DSO_PROVIDER_INTERNAL',
  DSO_VAULT_TOO_LARGE: 'DSO_PROVIDER_TOO_LARGE',
  DSO_VAULT_LOCKED: 'DSO_PROVIDER_UNAVAILABLE',
  DSO_VAULT_IO: 'DSO_PROVIDER_UNAVAILABLE',
  DSO_VAULT_CLOSED: 'DSO_PROVIDER_INTERNAL',
};

/**
 * A vault failure as the provider contract sees it: the code mapped (a wrong key is
 * UNAUTHORIZED, a missing vault INVALID_CONFIG, a lock or I/O failure UNAVAILABLE, …), the
 * VaultError's message (built from paths, never values) kept, and the VaultError as `cause`.
 * Anything else is normalised by `toProviderError`.
 */
export function toLocalProviderError(error: unknown, name: string, path?: string): ProviderError {
  if (!isVaultError(error)) return toProviderError(error, name);
  return new ProviderError(PROVIDER_CODES[error.code], error.message, {
    provider: name,
    path,
    cause: error,
  });
}

/**
 * The local encrypted vault as a {@link SecretProvider}, with capabilities `list` and `probe`.
 * The vault is opened on the first call and kept open; a failed open is retried on the next
 * call, so an agent started before `dso init` recovers without a restart. `probe` answers
 * without decrypting while the vault file is unchanged (see {@link Vault.currentVersion}).
 *
 * @example
 * const provider = createLocalProvider({ vaultPath: '/var/lib/dso/vault.dso', key: await resolveVaultKey() });
 * const { value, version } = await provider.resolve({ path: 'app/db/password' });
 * await provider.close();
 * @throws TypeError when `vaultPath` or `key` is missing
 * @throws ProviderError from `resolve`, `list` and `probe`: DSO_PROVIDER_NOT_FOUND for a missing or
 *   malformed path or version; DSO_PROVIDER_UNAUTHORIZED for a wrong key;
 *   DSO_PROVIDER_INVALID_CONFIG for a missing vault or one with a wide mode; the VaultError is
 *   the `cause`
 */
export function createLocalProvider(
  options: LocalProviderOptions,
): SecretProvider & AsyncDisposable {
  const { name = 'local', vaultPath } = options;
  if (typeof vaultPath !== 'string' || vaultPath === '') {
    throw new TypeError('createLocalProvider needs a vaultPath');
  }
  if (!isSecretValue(options.key?.material)) {
    throw new TypeError('createLocalProvider needs a key: use resolveVaultKey()');
  }
  // A copy of our own: the caller may dispose its key before the first (lazy) open.
  const key: VaultKey = {
    source: options.key.source,
    material: SecretValue.fromBytes(options.key.material.reveal()),
  };
  let opening: Promise<Vault> | undefined;
  let closed = false;

  // Opened without any one caller's signal, since every caller shares the open; each caller
  // stops waiting when its own signal fires.
  const vault = (signal: AbortSignal | undefined): Promise<Vault> => {
    if (closed) {
      return Promise.reject(
        new ProviderError('DSO_PROVIDER_INTERNAL', `provider ${name} was closed`, {
          provider: name,
        }),
      );
    }
    if (opening === undefined) {
      const attempt = openVault({ path: vaultPath, key });
      opening = attempt;
      attempt.catch(() => {
        // The caller sees the error; forgetting the attempt lets the next call try again.
        if (opening === attempt) opening = undefined;
      });
    }
    return abortable(opening, signal);
  };

  const fail = (error: unknown, path?: string): ProviderError =>
    toLocalProviderError(error, name, path);

  const provider: SecretProvider & AsyncDisposable = {
    name,
    capabilities: { list: true, watch: false, probe: true, health: false },

    async resolve(request: SecretRequest, callOptions: CallOptions = {}): Promise<ResolvedSecret> {
      try {
        const open = await vault(callOptions.signal);
        return await open.get(request.path, {
          version: request.version,
          signal: callOptions.signal,
        });
      } catch (error) {
        throw fail(error, request.path);
      }
    },

    async list(prefix?: string, callOptions: CallOptions = {}): Promise<string[]> {
      try {
        const open = await vault(callOptions.signal);
        return await open.list(prefix, { signal: callOptions.signal });
      } catch (error) {
        throw fail(error);
      }
    },

    async probe(request: SecretRequest, callOptions: CallOptions = {}): Promise<SecretVersion> {
      try {
        const open = await vault(callOptions.signal);
        return { version: await open.currentVersion(request.path, { signal: callOptions.signal }) };
      } catch (error) {
        throw fail(error, request.path);
      }
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      const pending = opening;
      opening = undefined;
      key.material.dispose();
      if (pending === undefined) return;
      try {
        await (await pending).close();
      } catch {
        // The open failed, so there is nothing to close; its error went to the call that made it.
      }
    },

    [Symbol.asyncDispose]() {
      return provider.close();
    },
  };
  return provider;
}
