import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { isMap, isPair, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import { DsoError } from '../errors.js';
import { resolveDsoPaths } from '../paths.js';
import { applyEnvOverrides, isPlainObject } from './env.js';
import {
  type ConfigProblem,
  createYamlLocator,
  formatPath,
  invalidConfigError,
  issueProblems,
  type YamlLocator,
  yamlErrorProblem,
} from './problems.js';
import { configSchema, type DsoConfig, providerSchema } from './schema.js';

/** The configuration file's name inside `DSO_HOME`, where {@link loadConfig} looks by default. */
export const DEFAULT_CONFIG_FILE_NAME = 'dso.yaml';

/** Largest configuration file read. A settings file is a few kilobytes; anything huge is a mistake. */
export const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/** Aliases a file may expand; YAML's "billion laughs" needs many. */
const MAX_ALIAS_COUNT = 100;

/** Options of {@link parseConfig}. */
export interface ParseConfigOptions {
  /**
   * The file's name as problems should cite it (`/etc/dso/dso.yaml:7:3: …`).
   * @default 'dso.yaml'
   */
  file?: string;
  /**
   * Where overrides (`DSO_LOG_LEVEL`, …) and `DSO_HOME`, `DSO_VAULT_PATH` are read.
   * @default process.env
   */
  env?: NodeJS.ProcessEnv;
  /**
   * Where to add things worth a `warn` line that do not make the file invalid (sentences
   * without values), such as references without a provider going to a provider other than the
   * vault.
   */
  warnings?: string[];
}

/**
 * Parses and validates the text of a `dso.yaml`, applies the environment's overrides, and fills
 * in every default. An empty text is a valid file: all defaults.
 *
 * Every problem is collected, not only the first, and each names its key path and its
 * line:column in the file (or the environment variable it came from). Unknown keys come with
 * a "did you mean" suggestion. Messages quote keys and types, never values: a provider's
 * `config` may hold credentials.
 *
 * @example
 * const config = parseConfig('cache:\n  ttlMs: 5m\n', { file: 'dso.yaml', env: {} });
 * config.cache.ttlMs; // 300000
 * @throws DsoError DSO_CONFIG_INVALID with `details.problems`, one per problem, and every
 *   problem on its own line of the message: `dso.yaml:7:3: unknown key \`cache.tll\`; did you
 *   mean \`ttlMs\`?`
 */
export function parseConfig(text: string, options: ParseConfigOptions = {}): DsoConfig {
  const file = options.file ?? DEFAULT_CONFIG_FILE_NAME;
  const env = options.env ?? process.env;
  const lineCounter = new LineCounter();
  const document = parseDocument(text, {
    lineCounter,
    prettyErrors: false,
    merge: true,
    uniqueKeys: true,
  });
  if (document.errors.length > 0) {
    // The rest of a broken document is guesswork: report where the syntax broke, nothing else.
    throw invalidConfigError(
      file,
      document.errors.map((error) => yamlErrorProblem(error, lineCounter)),
    );
  }
  const locator = createYamlLocator(document, lineCounter);

  let raw: unknown;
  try {
    raw = document.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (error) {
    // yaml throws a ReferenceError for an alias bomb; its message quotes no source text.
    const message =
      error instanceof ReferenceError
        ? 'YAML: aliases expand to too much data'
        : 'YAML: the document cannot be read';
    throw invalidConfigError(file, [{ path: '', message }], error);
  }
  if (raw === null || raw === undefined) raw = {};
  if (!isPlainObject(raw)) {
    const where = locator.locate([], 'value');
    throw invalidConfigError(file, [
      {
        path: '',
        ...where,
        message: `the file must be a mapping of settings (\`key: value\` lines), not ${describeTop(raw)}`,
      },
    ]);
  }

  const problems: ConfigProblem[] = leadingZeroProblems(document, locator);
  const applied = applyEnvOverrides(raw, env);
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    // A leading zero already explains why that value is wrong; say it once.
    const explained = new Set(problems.map((problem) => problem.path));
    problems.push(
      ...issueProblems(result.error.issues, { schema: configSchema, raw, locator, applied }).filter(
        (problem) => !explained.has(problem.path),
      ),
    );
    throw invalidConfigError(file, problems);
  }

  const parsed = result.data;
  const paths = resolveDsoPaths(env);
  const providers = withLocalDefaults(
    Object.keys(parsed.providers).length > 0
      ? parsed.providers
      : { local: providerSchema.parse({ type: 'local' }) },
    paths.vaultPath,
  );
  const names = Object.keys(providers);
  let defaultProvider = parsed.defaultProvider;
  if (defaultProvider === undefined) {
    if (names.includes('local')) defaultProvider = 'local';
    else if (names.length === 1) {
      defaultProvider = names[0];
      options.warnings?.push(
        `references without a provider (dsofile://app/db) go to provider ${names[0]}, the only one configured, not to the local vault: ` +
          'to keep the vault for them, add `local: {type: local}` beside it under `providers`; or set `defaultProvider` to say which provider they ask',
      );
    } else {
      problems.push({
        path: 'defaultProvider',
        ...locator.locate(['providers'], 'key'),
        message:
          '`defaultProvider` is not set and there are several providers, none named `local`: ' +
          'set `defaultProvider` to the one references without a `provider:` part should ask',
      });
    }
  } else if (!names.includes(defaultProvider)) {
    problems.push({
      path: 'defaultProvider',
      ...locator.locate(['defaultProvider'], 'value'),
      message: `\`defaultProvider\` names a provider that is not configured; configured: ${names.map((name) => `\`${name}\``).join(', ')}`,
    });
  }
  if (problems.length > 0 || defaultProvider === undefined) {
    throw invalidConfigError(file, problems);
  }

  return {
    ...parsed,
    providers,
    defaultProvider,
    audit: { ...parsed.audit, path: parsed.audit.path ?? join(paths.home, 'audit.jsonl') },
    pluginsDir: parsed.pluginsDir ?? join(paths.home, 'plugins'),
  };
}

/**
 * A `local` provider without a `vaultPath` gets the vault the embedded default uses
 * (`DSO_VAULT_PATH`, else `$DSO_HOME/vault.dso`), so `local: {type: local}` written beside
 * other providers is the same vault as no providers at all. Its key comes, as for the embedded
 * default, from the provider's environment (`DSO_VAULT_PASSPHRASE`, `DSO_VAULT_KEY_FILE`, else
 * `$DSO_HOME/vault.key`).
 */
function withLocalDefaults(
  providers: DsoConfig['providers'],
  vaultPath: string,
): DsoConfig['providers'] {
  return Object.fromEntries(
    Object.entries(providers).map(([name, provider]) => [
      name,
      provider.type === 'local' && provider.config.vaultPath === undefined
        ? { ...provider, config: { ...provider.config, vaultPath } }
        : provider,
    ]),
  );
}

function describeTop(value: unknown): string {
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'string') return 'a single string';
  return `a single ${typeof value}`;
}

/**
 * YAML 1.2 reads `0660` as the decimal number 660, not the octal mode 0o660 its writer meant.
 * Any number written with a leading zero is ambiguous, so it is refused with a way to write it.
 * A provider's `config` is its own business and is not checked.
 */
function leadingZeroProblems(
  document: ReturnType<typeof parseDocument>,
  locator: YamlLocator,
): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const visit = (node: unknown, path: PropertyKey[]) => {
    if (path.length === 3 && path[0] === 'providers' && path[2] === 'config') return;
    if (isMap(node)) {
      for (const pair of node.items) {
        if (isPair(pair) && isScalar(pair.key))
          visit(pair.value, [...path, String(pair.key.value)]);
      }
    } else if (isSeq(node)) {
      for (const [index, item] of node.items.entries()) visit(item, [...path, index]);
    } else if (
      isScalar(node) &&
      typeof node.value === 'number' &&
      /^[-+]?0\d+$/.test(node.source ?? '')
    ) {
      problems.push({
        path: formatPath(path),
        ...locator.locate(path, 'value'),
        message:
          `\`${formatPath(path)}\`: a number with a leading zero is read as decimal, not octal; ` +
          'write an octal file mode as 0o660 or "0660", and other numbers without the zero',
      });
    }
  };
  visit(document.contents, []);
  return problems;
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /**
   * The file to read. When given (here or as `DSO_CONFIG`), a missing file is an error.
   * @default `DSO_CONFIG`, else `$DSO_HOME/dso.yaml`, where a missing file means all defaults
   */
  path?: string;
  /**
   * Where `DSO_CONFIG`, `DSO_HOME` and the overrides are read.
   * @default process.env
   */
  env?: NodeJS.ProcessEnv;
  /** Aborts reading the file. */
  signal?: AbortSignal;
}

/** What {@link loadConfig} found. */
export interface LoadedConfig {
  /** The complete configuration. */
  config: DsoConfig;
  /** The file read, or undefined when the default file does not exist (all defaults). */
  path: string | undefined;
  /**
   * Things worth a `warn` log line that do not stop the agent, such as a file every user can
   * read. Sentences without values.
   */
  warnings: string[];
}

/**
 * Reads, checks and parses the configuration file (see {@link parseConfig}).
 *
 * The file may hold provider credentials, so before it is parsed: it must be a regular file of
 * at most 1 MiB, owned by root or by the user running DSO, and not writable by group or others
 * (whoever can write it can point the agent at any provider). Readable by every user is allowed
 * but returned as a warning. These checks are skipped on Windows, which has no mode bits.
 *
 * @example
 * const { config, path, warnings } = await loadConfig({ signal });
 * for (const warning of warnings) logger.warn({ path }, warning);
 * @throws DsoError DSO_CONFIG_NOT_FOUND when a file named by `path` or `DSO_CONFIG` does not exist
 * @throws DsoError DSO_CONFIG_INSECURE when the file is writable by group or others, or owned by
 *   another user
 * @throws DsoError DSO_CONFIG_UNREADABLE when the file cannot be read, is not a regular file, or
 *   is larger than 1 MiB
 * @throws DsoError DSO_CONFIG_INVALID when its content is not a valid configuration
 * @throws DsoError DSO_CONFIG_ABORTED when `signal` aborts
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<LoadedConfig> {
  const env = options.env ?? process.env;
  const explicit = options.path ?? (env.DSO_CONFIG?.trim() || undefined);
  const path = explicit ?? join(resolveDsoPaths(env).home, DEFAULT_CONFIG_FILE_NAME);
  const source =
    options.path !== undefined ? 'given' : explicit !== undefined ? 'DSO_CONFIG' : 'default';
  const { signal } = options;
  const aborted = (cause: unknown) =>
    new DsoError('DSO_CONFIG_ABORTED', `reading ${path} was aborted`, { path, cause });
  if (signal?.aborted) throw aborted(signal.reason);

  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(path, constants.O_RDONLY);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if ((code === 'ENOENT' || code === 'ENOTDIR') && source === 'default') {
      return { config: parseConfig('', { file: path, env }), path: undefined, warnings: [] };
    }
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new DsoError(
        'DSO_CONFIG_NOT_FOUND',
        `configuration file ${path}${source === 'DSO_CONFIG' ? ' (from DSO_CONFIG)' : ''} does not exist`,
        { path, cause: error },
      );
    }
    throw unreadable(
      path,
      code === 'EACCES' ? 'permission denied' : (code ?? 'read failed'),
      error,
    );
  }

  const warnings: string[] = [];
  let text: string;
  try {
    // One open file for the checks and the read: the file checked is the file read.
    const stat = await handle.stat();
    if (!stat.isFile()) throw unreadable(path, 'not a regular file');
    if (stat.size > MAX_CONFIG_FILE_BYTES) {
      throw unreadable(path, `larger than ${MAX_CONFIG_FILE_BYTES / 1024 / 1024} MiB`);
    }
    if (process.platform !== 'win32') {
      const mode = stat.mode & 0o777;
      const octal = `0${mode.toString(8).padStart(3, '0')}`;
      if ((mode & 0o022) !== 0) {
        const writers = [mode & 0o020 ? 'its group' : '', mode & 0o002 ? 'every user' : '']
          .filter((who) => who !== '')
          .join(' and ');
        throw new DsoError(
          'DSO_CONFIG_INSECURE',
          `refusing ${path}: it is writable by ${writers} (mode ${octal}), ` +
            `who could point DSO at any provider; run: chmod go-w ${path}`,
          { path, mode: octal },
        );
      }
      const uid = process.getuid?.();
      if (uid !== undefined && stat.uid !== 0 && stat.uid !== uid) {
        throw new DsoError(
          'DSO_CONFIG_INSECURE',
          `refusing ${path}: it is owned by uid ${stat.uid}, neither root nor this user (uid ${uid}), ` +
            `who could rewrite it; run: chown root ${path}`,
          { path, owner: stat.uid, uid },
        );
      }
      if ((mode & 0o004) !== 0) {
        warnings.push(
          `configuration file ${path} is readable by every user (mode ${octal}); ` +
            `if it holds provider credentials, run: chmod o-r ${path}`,
        );
      }
    }
    text = await handle.readFile({ encoding: 'utf8', ...(signal ? { signal } : {}) });
  } catch (error) {
    if (signal?.aborted) throw aborted(signal.reason);
    throw error;
  } finally {
    await handle.close();
  }
  return { config: parseConfig(text, { file: path, env, warnings }), path, warnings };
}

function unreadable(path: string, why: string, cause?: unknown): DsoError {
  return new DsoError(
    'DSO_CONFIG_UNREADABLE',
    `cannot read configuration file ${path}: ${why}`,
    cause === undefined ? { path } : { path, cause },
  );
}
