import { stat } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { defineProvider, type ProviderDefinition, ProviderError } from '@dso/provider-sdk';
import { z } from 'zod';
import { errnoCode } from './contained-file.js';
import { isSegment } from './file-path.js';
import {
  createFileProvider,
  DEFAULT_MAX_FILE_BYTES,
  DEFAULT_WATCH_POLL_INTERVAL_MS,
} from './file-provider.js';

/** The largest `maxBytes` a configuration may set (64 MiB): secrets are small. */
export const MAX_MAX_FILE_BYTES = 64 * 1024 * 1024;
/** The most roots one provider may have. */
export const MAX_ROOTS = 64;

/** Configuration of a `file` provider. */
export const fileProviderConfigSchema = z.strictObject({
  /**
   * The directories it may read, by name: `{ certs: /etc/dso/certs }` serves
   * `certs/tls.key` from `/etc/dso/certs/tls.key`. Nothing outside them is ever read.
   */
  roots: z
    .record(
      z.string().refine(isSegment, 'a root name is letters, digits, . _ - (not . or ..)'),
      z
        .string()
        .refine((dir) => isAbsolute(dir), 'a root directory must be an absolute path')
        .refine((dir) => !dir.includes('\0'), 'a root directory must not contain a NUL byte'),
    )
    .refine((roots) => Object.keys(roots).length > 0, 'roots must name at least one directory')
    .refine((roots) => Object.keys(roots).length <= MAX_ROOTS, `at most ${MAX_ROOTS} roots`),
  /** The largest file served, in bytes; larger ones are refused with TOO_LARGE. */
  maxBytes: z.number().int().min(1).max(MAX_MAX_FILE_BYTES).default(DEFAULT_MAX_FILE_BYTES),
  /** How often `watch` re-checks its files besides filesystem events, in ms. */
  watchPollIntervalMs: z
    .number()
    .int()
    .min(100)
    .max(3_600_000)
    .default(DEFAULT_WATCH_POLL_INTERVAL_MS),
});

/** A validated `file` provider configuration. */
export type FileProviderConfig = z.infer<typeof fileProviderConfigSchema>;

/**
 * The `file` provider type: regular files under the configured root directories, and nothing
 * else. Capabilities: list, probe, watch, health. Each root must exist when the provider is
 * created (a typo fails at start); one that disappears later makes calls UNAVAILABLE until it
 * is back.
 *
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import file from '@dso/provider-file';
 *
 * const provider = await createProvider(file, { roots: { certs: '/etc/dso/certs' } }, { name: 'files' });
 * const { value, version } = await provider.resolve({ path: 'certs/tls.key' });
 * @throws ProviderError from `createProvider`: DSO_PROVIDER_INVALID_CONFIG for a configuration
 *   its schema refuses, or a root that is not an existing directory; from calls, as
 *   `createFileProvider`
 */
export const fileProvider: ProviderDefinition<FileProviderConfig> = defineProvider({
  type: 'file',
  description: 'regular files under configured directories, nothing outside them',
  capabilities: { list: true, watch: true, probe: true, health: true },
  configSchema: fileProviderConfigSchema,
  async create(config, context) {
    for (const [rootName, dir] of Object.entries(config.roots)) {
      let isDirectory = false;
      let reason = 'not a directory';
      try {
        isDirectory = (await stat(dir)).isDirectory();
      } catch (error) {
        reason = errnoCode(error) ?? 'cannot be read';
      }
      if (!isDirectory) {
        throw new ProviderError(
          'DSO_PROVIDER_INVALID_CONFIG',
          // The setting's name, not its value: configuration values stay out of errors.
          `roots.${rootName} is not an existing directory (${reason}); create it, or fix the configuration`,
          { provider: context.name },
        );
      }
    }
    return createFileProvider({
      name: context.name,
      roots: config.roots,
      maxBytes: config.maxBytes,
      watchPollIntervalMs: config.watchPollIntervalMs,
    });
  },
});
