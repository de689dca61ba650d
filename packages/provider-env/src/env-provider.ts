import { createHash } from 'node:crypto';
import {
  type CallOptions,
  ProviderError,
  type ResolvedSecret,
  type SecretProvider,
  type SecretRequest,
  SecretValue,
  type SecretVersion,
} from '@dso/provider-sdk';
import { compileAllowList, isVariableName } from './allow-list.js';

/** How a variable's text becomes the secret's bytes. */
export type EnvEncoding = 'text' | 'base64';

/** Options of {@link createEnvProvider}. */
export interface EnvProviderOptions {
  /** The provider's configured name. @default 'env' */
  name?: string;
  /** Variable names, or `PREFIX*` patterns, it may serve. */
  allow: readonly string[];
  /**
   * `text`: the value's UTF-8 bytes. `base64`: the value is base64 (standard or url-safe) and
   * the secret is what it decodes to, for binary secrets (an environment cannot hold a NUL).
   * @default 'text'
   */
  encoding?: EnvEncoding;
  /** The environment it reads: `ProviderContext.env`, chosen by the host. */
  env: Readonly<Record<string, string | undefined>>;
}

const BASE64 = /^(?:[A-Za-z0-9+/_-]{4})*(?:[A-Za-z0-9+/_-]{2}(?:==)?|[A-Za-z0-9+/_-]{3}=?)?$/;

/**
 * The version of a value: the first 16 hex digits of its SHA-256 (of the decoded bytes, with
 * `encoding: base64`).
 *
 * @example
 * valueVersion(Buffer.from('s3cret')); // '1ec1c26b50d5d3c5'
 */
export function valueVersion(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 16);
}

/**
 * Serves variables of the environment it is given, and only those its allow-list names: a
 * secret path is the variable's name (`DB_PASSWORD`). A name not allowed is NOT_FOUND with the
 * same answer whether or not it is set, so a caller learns nothing about the rest of the
 * environment. The version is the first 16 hex digits of the value's SHA-256, so a changed
 * value is a new version; only the current value is served. An environment is fixed for the
 * life of a process: a new value reaches the agent only when it is restarted with it.
 * Capabilities: list (allowed variables that are set) and probe.
 *
 * @example
 * const provider = createEnvProvider({ allow: ['DB_PASSWORD', 'APP_*'], env: process.env });
 * const { value, version } = await provider.resolve({ path: 'DB_PASSWORD' });
 * @throws TypeError for an allow entry that is not a name or a `PREFIX*` pattern
 * @throws ProviderError from calls: DSO_PROVIDER_NOT_FOUND (not allowed, not set, or another
 *   version than the current); DSO_PROVIDER_INVALID_CONFIG (`encoding: base64` and the value
 *   is not base64)
 */
export function createEnvProvider(options: EnvProviderOptions): SecretProvider & AsyncDisposable {
  const { name = 'env', encoding = 'text', env } = options;
  const allowList = compileAllowList(options.allow);
  let closed = false;

  const open = (operation: string, signal: AbortSignal | undefined) => {
    if (closed) {
      throw new ProviderError(
        'DSO_PROVIDER_INTERNAL',
        `provider ${name} was closed: cannot ${operation}`,
        {
          provider: name,
        },
      );
    }
    signal?.throwIfAborted();
  };

  /** The variable's bytes; the caller zeroes them. */
  const read = (path: string): Buffer => {
    if (!isVariableName(path) || !allowList.allows(path)) {
      // The same answer whether or not the variable is set: no oracle for the environment.
      throw new ProviderError(
        'DSO_PROVIDER_NOT_FOUND',
        `${path} is not a variable this provider may serve: add it (or a PREFIX* pattern that matches it) to its allow list (providers.${name}.allow)`,
        { provider: name, path },
      );
    }
    const text = env[path];
    if (text === undefined) {
      throw new ProviderError(
        'DSO_PROVIDER_NOT_FOUND',
        `variable ${path} is not set in the agent's environment; set it and restart the agent (an environment cannot change under a running process)`,
        { provider: name, path },
      );
    }
    if (encoding === 'text') return Buffer.from(text, 'utf8');
    const compact = text.replace(/\s+/g, '');
    if (!BASE64.test(compact)) {
      // No cause and no excerpt: the value itself is what is wrong.
      throw new ProviderError(
        'DSO_PROVIDER_INVALID_CONFIG',
        `variable ${path} is not base64, but this provider's encoding is base64; store it base64-encoded, or use a provider with encoding: text`,
        { provider: name, path },
      );
    }
    return Buffer.from(compact, 'base64');
  };

  const provider: SecretProvider & AsyncDisposable = {
    name,
    capabilities: { list: true, watch: false, probe: true, health: false },

    async resolve(request: SecretRequest, callOptions: CallOptions = {}): Promise<ResolvedSecret> {
      open('resolve', callOptions.signal);
      const bytes = read(request.path);
      try {
        const version = valueVersion(bytes);
        if (request.version !== undefined && request.version !== version) {
          throw new ProviderError(
            'DSO_PROVIDER_NOT_FOUND',
            `variable ${request.path} is at version ${version}, not ${JSON.stringify(request.version)}: an environment keeps only the current value`,
            { provider: name, path: request.path },
          );
        }
        return { value: SecretValue.fromBytes(bytes), version };
      } finally {
        bytes.fill(0);
      }
    },

    async probe(request: SecretRequest, callOptions: CallOptions = {}): Promise<SecretVersion> {
      open('probe', callOptions.signal);
      const bytes = read(request.path);
      try {
        return { version: valueVersion(bytes) };
      } finally {
        bytes.fill(0);
      }
    },

    async list(prefix = '', callOptions: CallOptions = {}): Promise<string[]> {
      open('list', callOptions.signal);
      return Object.keys(env)
        .filter(
          (variable) =>
            env[variable] !== undefined &&
            variable.startsWith(prefix) &&
            isVariableName(variable) &&
            allowList.allows(variable),
        )
        .sort();
    },

    async close(): Promise<void> {
      closed = true;
    },

    [Symbol.asyncDispose]() {
      return provider.close();
    },
  };
  return provider;
}
