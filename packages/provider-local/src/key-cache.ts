import { VaultError } from './vault-error.js';
import { deriveScryptKey, type KdfParams, kdfId } from './vault-format.js';

/** Derives a key from material and KDF parameters; {@link deriveScryptKey} in production. */
export type DeriveKey = (
  material: Uint8Array,
  kdf: KdfParams,
  signal?: AbortSignal,
) => Promise<Buffer>;

/** Holds key material and the one key derived from it for the vault's current salt. */
export interface KeyCache {
  /**
   * A copy of the key for `kdf`, derived only when `kdf` differs from the last one asked for.
   * The caller owns the copy and zeroes it after use, so replacing or closing the cache never
   * zeroes a key another call is still using.
   * @throws VaultError DSO_VAULT_CLOSED after {@link KeyCache.close}
   */
  get(kdf: KdfParams, signal?: AbortSignal): Promise<Buffer>;
  /** Zeroes the material and the cached key. Idempotent. */
  close(): void;
}

interface Entry {
  id: string;
  key: Promise<Buffer>;
}

/**
 * A single-entry cache: a vault has one salt at a time (writes keep it), so one entry serves
 * every read; a vault file replaced by one with a new salt costs one new derivation.
 *
 * @param material copied; the caller may zero its own buffer afterwards
 */
export function createKeyCache(
  material: Uint8Array,
  derive: DeriveKey = deriveScryptKey,
): KeyCache {
  const secret = Buffer.from(material);
  let entry: Entry | undefined;
  let closed = false;

  const zero = (key: Promise<Buffer>) => {
    key.then(
      (bytes) => bytes.fill(0),
      // A failed derivation left no key behind to zero.
      () => {},
    );
  };

  const closedError = () =>
    new VaultError('DSO_VAULT_CLOSED', 'the vault was closed; open it again to use it');

  return {
    async get(kdf, signal) {
      if (closed) throw closedError();
      const id = kdfId(kdf);
      let current = entry;
      if (current === undefined || current.id !== id) {
        const fresh: Entry = { id, key: derive(secret, kdf, signal) };
        if (current) zero(current.key);
        entry = current = fresh;
        // A failed (or aborted) derivation must not stick: the next call derives again.
        fresh.key.catch(() => {
          if (entry === fresh) entry = undefined;
        });
      }
      const key = await current.key;
      if (closed) throw closedError();
      return Buffer.from(key);
    },
    close() {
      if (closed) return;
      closed = true;
      secret.fill(0);
      if (entry) zero(entry.key);
      entry = undefined;
    },
  };
}
