/**
 * @dso/provider-file: serves regular files under the directories its configuration names
 * ("roots") as secrets, and nothing outside them: a secret path is `<root>/<path under it>`;
 * `..`, absolute paths, symlinks that leave the root, FIFOs, devices and oversized files are
 * refused. Versions are content hashes; `probe` costs a `stat` while a file is unchanged, and
 * `watch` sees atomic rename-over writes.
 *
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import file from '@dso/provider-file';
 *
 * const provider = await createProvider(file, { roots: { certs: '/etc/dso/certs' } }, { name: 'files' });
 * const { value, version } = await provider.resolve({ path: 'certs/tls.key' });
 * `${value}`;                                          // '[REDACTED]'
 * await provider.probe?.({ path: 'certs/tls.key' });   // { version } (same as above until it changes)
 * await provider.list?.('certs');                      // ['certs/tls.crt', 'certs/tls.key']
 * await provider.resolve({ path: 'certs/../../etc/shadow' }); // rejects: DSO_PROVIDER_NOT_FOUND
 * await provider.close();
 */
export { contentVersion } from './contained-file.js';
export {
  type FileProviderConfig,
  fileProvider as default,
  fileProvider as provider,
  fileProviderConfigSchema,
  MAX_MAX_FILE_BYTES,
  MAX_ROOTS,
} from './definition.js';
export { MAX_FILE_PATH_LENGTH } from './file-path.js';
export {
  createFileProvider,
  DEFAULT_MAX_FILE_BYTES,
  DEFAULT_WATCH_POLL_INTERVAL_MS,
  type FileProviderOptions,
  MAX_LIST_DEPTH,
  MAX_LIST_ENTRIES,
} from './file-provider.js';
export { RACY_WINDOW_NS } from './version-cache.js';
