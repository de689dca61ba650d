/**
 * dso-provider-example: a DSO secret provider that serves secrets from one JSON file. It is the
 * template for a provider package of your own: replace the JSON file with your store's client,
 * keep the shape (a zod schema, declared capabilities, `create()` returning the live provider,
 * ProviderErrors with the stable codes), and keep `src/conformance.test.ts` passing.
 *
 * The file holds `{ "secrets": { "<path>": { "version": "3", "value": "text" } } }`, or
 * `"base64": "…"` instead of `"value"` for binary secrets.
 *
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import example from 'dso-provider-example';
 *
 * const provider = await createProvider(example, { file: '/etc/dso/secrets.json' }, { name: 'example' });
 * const { value, version } = await provider.resolve({ path: 'app/db/password' });
 * value.revealText();      // the secret; `${value}` prints [REDACTED]
 * await provider.close();
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import {
  type CallOptions,
  defineProvider,
  type ProviderDefinition,
  ProviderError,
  type ProviderHealth,
  type SecretProvider,
  type SecretRequest,
  SecretValue,
} from '@dso/provider-sdk';
import { z } from 'zod';

/** The largest store file read, in bytes. */
export const MAX_STORE_BYTES = 8 * 1024 * 1024;

/**
 * The configuration, validated by the SDK before `create()` runs. Its messages name settings,
 * never values (the SDK quotes them in DSO_PROVIDER_INVALID_CONFIG errors). Credentials belong
 * in the environment the host gives the provider (`ProviderContext.env`), never in here.
 */
export const configSchema = z.strictObject({
  /** The JSON store file (absolute). */
  file: z.string().refine((file) => isAbsolute(file), 'file must be an absolute path'),
});

/** A validated configuration. */
export type ExampleConfig = z.infer<typeof configSchema>;

/** One secret in the store file. */
interface StoredSecret {
  version: string;
  value?: string;
  base64?: string;
}

/**
 * The provider type. The agent imports it from this package (as `default` or `provider`), in a
 * child process by default, and checks `sdkApiVersion` (set by `defineProvider`) before use.
 *
 * @throws ProviderError from calls: DSO_PROVIDER_NOT_FOUND (no such secret or version),
 *   DSO_PROVIDER_UNAVAILABLE (the store file is missing or unreadable),
 *   DSO_PROVIDER_UNAUTHORIZED (permission denied), DSO_PROVIDER_INTERNAL (a malformed store)
 */
export const exampleProvider: ProviderDefinition<ExampleConfig> = defineProvider({
  type: 'example',
  description: 'secrets from a JSON file (the DSO provider template)',
  // Declare exactly what the provider implements: the SDK and the conformance suite check it.
  capabilities: { list: true, probe: true, health: true },
  configSchema,
  create(config, { name, log }): SecretProvider {
    /** Reads and parses the store. Never lets the file's text reach an error. */
    const load = async (signal?: AbortSignal): Promise<Map<string, StoredSecret>> => {
      let text: string;
      try {
        text = await readFile(config.file, { encoding: 'utf8', signal });
      } catch (error) {
        if ((error as Error).name === 'AbortError') throw error;
        const code = (error as { code?: string }).code ?? 'error';
        if (code === 'EACCES' || code === 'EPERM') {
          throw new ProviderError(
            'DSO_PROVIDER_UNAUTHORIZED',
            `provider ${name} may not read its store file (${code}); let the agent's user read it`,
            { provider: name, cause: error },
          );
        }
        throw new ProviderError(
          'DSO_PROVIDER_UNAVAILABLE',
          `provider ${name} cannot read its store file (${code}); check that it exists`,
          { provider: name, cause: error },
        );
      }
      if (Buffer.byteLength(text) > MAX_STORE_BYTES) {
        throw new ProviderError(
          'DSO_PROVIDER_TOO_LARGE',
          `provider ${name}: the store file is over ${MAX_STORE_BYTES} bytes`,
          { provider: name },
        );
      }
      let document: unknown;
      try {
        document = JSON.parse(text);
      } catch {
        // No cause: a JSON.parse message quotes the text around the fault, which is secrets.
        throw new ProviderError(
          'DSO_PROVIDER_INTERNAL',
          `provider ${name}: the store file is not valid JSON; restore it`,
          { provider: name },
        );
      }
      const secrets = (document as { secrets?: unknown })?.secrets;
      if (typeof secrets !== 'object' || secrets === null) {
        throw new ProviderError(
          'DSO_PROVIDER_INTERNAL',
          `provider ${name}: the store file has no "secrets" object`,
          { provider: name },
        );
      }
      // A Map, so a secret named `__proto__` is just a key.
      return new Map(Object.entries(secrets as Record<string, StoredSecret>));
    };

    const find = async (request: SecretRequest, signal?: AbortSignal): Promise<StoredSecret> => {
      const secret = (await load(signal)).get(request.path);
      if (secret === undefined || typeof secret.version !== 'string') {
        // Messages name the path (a reference), never a value.
        throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${request.path}`, {
          provider: name,
          path: request.path,
        });
      }
      return secret;
    };

    return {
      name,
      capabilities: { list: true, watch: false, probe: true, health: true },

      async resolve(request, options: CallOptions = {}) {
        const secret = await find(request, options.signal);
        if (request.version !== undefined && request.version !== secret.version) {
          // This store keeps only the current version (the fixture says `history: false`).
          throw new ProviderError(
            'DSO_PROVIDER_NOT_FOUND',
            `${request.path} has no version ${JSON.stringify(request.version)}; only the current one is kept`,
            { provider: name, path: request.path },
          );
        }
        const value =
          secret.base64 !== undefined
            ? SecretValue.fromBytes(Buffer.from(secret.base64, 'base64'))
            : SecretValue.fromText(secret.value ?? '');
        return { value, version: secret.version };
      },

      // Cheaper than resolve: no value is decoded or returned.
      async probe(request, options: CallOptions = {}) {
        return { version: (await find(request, options.signal)).version };
      },

      async list(prefix = '', options: CallOptions = {}) {
        const base = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
        const paths = [...(await load(options.signal)).keys()];
        // Segment by segment: `app` lists `app/db`, not `apple`.
        return paths
          .filter((path) => base === '' || path === base || path.startsWith(`${base}/`))
          .sort();
      },

      async health(options: CallOptions = {}): Promise<ProviderHealth> {
        try {
          const secrets = await load(options.signal);
          return { ok: true, detail: `${secrets.size} secrets` };
        } catch (error) {
          if ((error as Error).name === 'AbortError') throw error;
          log.warn('store unreadable', { provider: name });
          return { ok: false, detail: (error as Error).message };
        }
      },

      async close() {
        // Nothing held between calls. A provider with a client or a socket releases it here.
      },
    };
  },
});

export { exampleProvider as default, exampleProvider as provider };
