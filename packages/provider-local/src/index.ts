/**
 * @dso/provider-local: DSO's local encrypted vault provider: AES-256-GCM with a scrypt-derived key, written atomically.
 */
export const PACKAGE_NAME = '@dso/provider-local';
