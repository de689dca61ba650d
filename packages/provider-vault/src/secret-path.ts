import { ProviderError } from '@dso/provider-sdk';

const VERSION = /^[1-9][0-9]{0,15}$/;

/**
 * A secret path as the API path under the mount: segments percent-encoded, joined with `/`.
 *
 * @example
 * encodeSecretPath('app/db password', 'vault'); // 'app/db%20password'
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND for an empty segment, `.` or `..`, or a control
 *   character (no such secret can exist)
 */
export function encodeSecretPath(path: string, provider: string): string {
  const segments = path.split('/');
  if (
    hasControlCharacter(path) ||
    segments.some((segment) => segment === '' || segment === '.' || segment === '..')
  ) {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `${JSON.stringify(path)} is not a Vault secret path: use segments separated by single /, without . or .. or control characters`,
      { provider, path },
    );
  }
  return segments.map(encodeURIComponent).join('/');
}

/**
 * A list prefix as a folder to start from (`app/` for `app/d`) and the prefix itself.
 *
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND for a prefix with `.`/`..`, `//` or a control character
 */
export function splitListPrefix(prefix: string, provider: string): { folder: string } {
  if (prefix === '') return { folder: '' };
  const folder = prefix.slice(0, prefix.lastIndexOf('/') + 1);
  if (folder !== '') encodeSecretPath(folder.slice(0, -1), provider);
  if (hasControlCharacter(prefix)) encodeSecretPath(prefix, provider);
  return { folder };
}

/** A folder (`''` or `a/b/`) as the API path suffix for LIST: encoded, with its trailing `/`. */
export function encodeFolder(folder: string, provider: string): string {
  return folder === '' ? '' : `${encodeSecretPath(folder.slice(0, -1), provider)}/`;
}

/**
 * Checks a requested version: KV v2 versions are positive integers.
 *
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND for anything else (no such version can exist)
 */
export function checkVersion(version: string, path: string, provider: string): string {
  if (!VERSION.test(version)) {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `secret ${path} has no version ${JSON.stringify(version)}: Vault KV v2 versions are positive integers`,
      { provider, path },
    );
  }
  return version;
}

// Control characters never belong in a Vault path, and would make a message unreadable.
function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}
