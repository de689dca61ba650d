import { X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import { onAbort } from '@dso/async';
import {
  type CallOptions,
  type ProviderCapabilities,
  type ProviderContext,
  type ProviderHealth,
  type ResolvedSecret,
  type SecretProvider,
  type SecretRequest,
  SecretValue,
  type SecretVersion,
  SILENT_LOGGER,
} from '@dso/provider-sdk';
import { canonicalJson } from './canonical-json.js';
import {
  type VaultProviderConfig,
  type VaultProviderConfigInput,
  vaultProviderConfigSchema,
} from './config.js';
import { checkVersion, encodeFolder, encodeSecretPath, splitListPrefix } from './secret-path.js';
import { createVaultAuth, readVaultCredential, type VaultAuth } from './vault-auth.js';
import { errorForStatus, isVaultProviderError, VaultProviderError } from './vault-error.js';
import {
  createVaultHttp,
  type VaultAnswer,
  type VaultExchange,
  type VaultHttp,
  type VaultTlsMaterial,
} from './vault-http.js';

/** What the `vault` provider implements besides `resolve`. */
export const VAULT_CAPABILITIES: ProviderCapabilities = Object.freeze({
  list: true,
  watch: false,
  probe: true,
  health: true,
});

/** Keys asked for per LIST page; Vault's KV v2 LIST ignores it and answers with every key. */
export const LIST_PAGE_SIZE = 1000;
/** Folders listed at once by a recursive `list()`. */
const LIST_CONCURRENCY = 4;
/** Pages read from one folder before giving up (a server that keeps answering "more"). */
const MAX_LIST_PAGES = 10_000;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/** Options for tests and embedding; nothing here belongs in a configuration file. */
export interface VaultProviderOptions {
  /** The clock AppRole token lifetimes are measured with. @default Date.now */
  now?: () => number;
}

/**
 * Creates a `vault` provider in this process from a configuration as written: validates it
 * with {@link vaultProviderConfigSchema}, reads TLS files and the token or secret ID from the
 * environment, and returns the live provider. The agent goes through the definition instead
 * (`createProvider(vaultProvider, …)`), which adds the SDK's guards; this is for embedding and
 * tests.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG for a configuration the schema refuses, an
 *   unreadable or malformed TLS file, or a token/secret ID variable that is not set
 * @example
 * const provider = await createVaultProvider(
 *   { address: 'https://vault.internal:8200', auth: { method: 'token' } },
 *   { name: 'prod-vault', env: process.env },
 * );
 * const { value, version } = await provider.resolve({ path: 'app/db' });
 */
export async function createVaultProvider(
  config: VaultProviderConfigInput,
  context: Partial<ProviderContext> = {},
  options: VaultProviderOptions = {},
): Promise<SecretProvider> {
  const name = context.name ?? 'vault';
  const parsed = vaultProviderConfigSchema.safeParse(config);
  if (!parsed.success) {
    const problems = parsed.error.issues
      .map(
        (issue) => `${issue.path.length > 0 ? issue.path.join('.') : '(root)'}: ${issue.message}`,
      )
      .join('; ');
    throw new VaultProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `invalid configuration for provider ${name} (type vault): ${problems}`,
      { provider: name },
    );
  }
  return openVaultProvider(
    parsed.data,
    { name, log: context.log ?? SILENT_LOGGER, env: context.env ?? process.env },
    options,
  );
}

/**
 * Builds the live provider from a validated configuration: what the definition's `create`
 * calls.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG as {@link createVaultProvider}
 */
export async function openVaultProvider(
  config: VaultProviderConfig,
  context: ProviderContext,
  options: VaultProviderOptions = {},
): Promise<SecretProvider> {
  const provider = context.name;
  const url = new URL(config.address);
  if (config.tlsSkipVerify) {
    context.log.warn(
      'VAULT TLS VERIFICATION IS OFF (tlsSkipVerify: true): anyone on the network path can pose as vault and take its tokens and secrets; set tls.caFile instead',
      { provider, address: url.origin },
    );
  }
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) {
    context.log.warn(
      'vault address uses plain http to another host (allowInsecureHttp: true): tokens and secrets cross the network unencrypted',
      { provider, address: url.origin },
    );
  }
  const tls = await loadTls(config, provider);
  const credential = readVaultCredential(config.auth, { provider, env: context.env });
  const http = await createVaultHttp({
    provider,
    address: config.address,
    namespace: config.namespace,
    tls,
    requestTimeoutMs: config.requestTimeoutMs,
    maxResponseBytes: config.maxResponseBytes,
  });
  const auth = createVaultAuth(credential, {
    provider,
    http,
    log: context.log,
    now: options.now ?? Date.now,
  });
  context.log.debug('vault provider ready', {
    provider,
    address: url.origin,
    mount: config.mount,
    namespace: config.namespace,
    auth: config.auth.method,
  });
  return new VaultKvProvider(config, provider, http, auth);
}

async function loadTls(config: VaultProviderConfig, provider: string): Promise<VaultTlsMaterial> {
  const read = async (file: string | undefined, pem: string | undefined, what: string) => {
    if (pem !== undefined) return Buffer.from(pem, 'utf8');
    if (file === undefined) return undefined;
    try {
      return await readFile(file);
    } catch (error) {
      throw new VaultProviderError(
        'DSO_PROVIDER_INVALID_CONFIG',
        // The path is not quoted: a configuration value is never echoed (a PEM pasted into
        // keyFile by mistake would otherwise land in the message).
        `cannot read the file tls.${what} names (${(error as { code?: string }).code ?? 'error'}): check the path and that the agent may read it`,
        { provider },
      );
    }
  };
  const material: VaultTlsMaterial = {
    ca: await read(config.tls.caFile, config.tls.caPem, 'caFile'),
    cert: await read(config.tls.certFile, config.tls.certPem, 'certFile'),
    key: await read(config.tls.keyFile, config.tls.keyPem, 'keyFile'),
    serverName: config.tls.serverName,
    rejectUnauthorized: !config.tlsSkipVerify,
  };
  for (const [bytes, what] of [
    [material.ca, 'tls.caFile/caPem'],
    [material.cert, 'tls.certFile/certPem'],
  ] as const) {
    if (bytes !== undefined && !holdsCertificates(bytes)) {
      throw new VaultProviderError(
        'DSO_PROVIDER_INVALID_CONFIG',
        `${what} holds no readable PEM certificate: give the PEM text (-----BEGIN CERTIFICATE-----), not DER or a path`,
        { provider },
      );
    }
  }
  try {
    // Builds (and drops) a context now, so a malformed PEM or a key that does not match its
    // certificate fails at creation instead of on every connection.
    createSecureContext({ ca: material.ca, cert: material.cert, key: material.key });
  } catch (error) {
    throw new VaultProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      'the tls settings are not usable: tls.caFile/caPem must hold PEM certificates, and tls.keyFile/keyPem a PEM private key matching tls.certFile/certPem',
      { provider, cause: new Error(String((error as { code?: unknown }).code ?? 'TLS error')) },
    );
  }
  return material;
}

class VaultKvProvider implements SecretProvider {
  readonly name: string;
  readonly capabilities = VAULT_CAPABILITIES;
  readonly #config: VaultProviderConfig;
  readonly #http: VaultHttp;
  readonly #auth: VaultAuth;
  readonly #where: string;

  constructor(config: VaultProviderConfig, name: string, http: VaultHttp, auth: VaultAuth) {
    this.name = name;
    this.#config = config;
    this.#http = http;
    this.#auth = auth;
    this.#where = `mount ${config.mount}${config.namespace === undefined ? '' : ` of namespace ${config.namespace}`}`;
  }

  async resolve(request: SecretRequest, options: CallOptions = {}): Promise<ResolvedSecret> {
    const { path } = request;
    const encoded = encodeSecretPath(path, this.name);
    const version =
      request.version === undefined ? undefined : checkVersion(request.version, path, this.name);
    const apiPath = `${this.#config.mount}/data/${encoded}`;
    const answer = await this.#authed({
      method: 'GET',
      apiPath,
      query: version === undefined ? undefined : { version },
      signal: options.signal,
      operation: 'read',
      path,
    });
    if (answer.status === 404) throw this.#notFound(answer.body, path, version);
    if (answer.status !== 200) throw this.#statusError(answer, 'read', apiPath, path);
    const data = (answer.body as { data?: { data?: unknown; metadata?: unknown } } | undefined)
      ?.data;
    const metadata = data?.metadata as { version?: unknown } | undefined;
    // Vault before 1.2 answered a deleted version with 200 and `data: null`.
    if (data?.data === null) throw this.#notFound(answer.body, path, version);
    if (typeof metadata?.version !== 'number') {
      throw new VaultProviderError(
        'DSO_PROVIDER_INTERNAL',
        `vault's answer for ${apiPath} has no data and version: is ${this.#config.mount} a KV version 2 mount?`,
        { provider: this.name, path },
        { status: answer.status },
      );
    }
    const resolvedVersion = String(metadata.version);
    return {
      value: this.#valueOf(data?.data, path, resolvedVersion),
      version: resolvedVersion,
    };
  }

  async probe(request: SecretRequest, options: CallOptions = {}): Promise<SecretVersion> {
    const { path } = request;
    const encoded = encodeSecretPath(path, this.name);
    const asked =
      request.version === undefined ? undefined : checkVersion(request.version, path, this.name);
    const apiPath = `${this.#config.mount}/metadata/${encoded}`;
    const answer = await this.#authed({
      method: 'GET',
      apiPath,
      signal: options.signal,
      operation: 'metadata read',
      path,
    });
    if (answer.status === 404) throw this.#notFound(undefined, path, asked);
    if (answer.status !== 200) throw this.#statusError(answer, 'metadata read', apiPath, path);
    const metadata = (answer.body as { data?: Record<string, unknown> } | undefined)?.data;
    const current = metadata?.current_version;
    const versions = metadata?.versions;
    if (typeof current !== 'number' || typeof versions !== 'object' || versions === null) {
      throw new VaultProviderError(
        'DSO_PROVIDER_INTERNAL',
        `vault's answer for ${apiPath} has no current_version: is ${this.#config.mount} a KV version 2 mount?`,
        { provider: this.name, path },
        { status: answer.status },
      );
    }
    if (current === 0 && asked === undefined) throw this.#notFound(undefined, path, undefined);
    const version = asked ?? String(current);
    const info = (versions as Record<string, unknown>)[version];
    if (typeof info !== 'object' || info === null) throw this.#notFound(undefined, path, version);
    const state = info as { deletion_time?: unknown; destroyed?: unknown };
    if (state.destroyed === true || isPast(state.deletion_time)) {
      throw this.#notFound(
        { data: { metadata: { ...state, version: Number(version) } } },
        path,
        version,
      );
    }
    return { version };
  }

  async list(prefix = '', options: CallOptions = {}): Promise<string[]> {
    const { folder } = splitListPrefix(prefix, this.name);
    const limit = this.#config.maxListPaths;
    const found = new Set<string>();
    const pending = [folder];
    let visited = 0;
    let running = 0;
    // Stops the sibling requests once one fails, or when the caller gives up (it mirrors the
    // caller's signal, so a cancelled list still reports "cancelled by the caller").
    const stop = new AbortController();
    const stopMirroring = onAbort(options.signal, () => stop.abort());
    try {
      await new Promise<void>((resolve, reject) => {
        let failed = false;
        const fail = (error: unknown) => {
          if (failed) return;
          failed = true;
          stop.abort();
          reject(error);
        };
        const pump = () => {
          if (failed) return;
          if (pending.length === 0 && running === 0) {
            resolve();
            return;
          }
          while (running < LIST_CONCURRENCY && pending.length > 0) {
            const next = pending.shift() as string;
            running += 1;
            visited += 1;
            this.#listFolder(next, stop.signal).then(
              (keys) => {
                running -= 1;
                for (const key of keys) {
                  const full = next + key;
                  if (key.endsWith('/')) {
                    if (full.startsWith(prefix) || prefix.startsWith(full)) pending.push(full);
                  } else if (full.startsWith(prefix)) {
                    found.add(full);
                  }
                }
                if (found.size + visited > limit) {
                  fail(
                    new VaultProviderError(
                      'DSO_PROVIDER_TOO_LARGE',
                      `listing ${prefix === '' ? 'the whole mount' : `prefix ${prefix}`} found more than maxListPaths (${limit}) paths and folders: list a narrower prefix, or raise maxListPaths`,
                      { provider: this.name },
                    ),
                  );
                  return;
                }
                pump();
              },
              (error: unknown) => {
                running -= 1;
                fail(error);
              },
            );
          }
        };
        pump();
      });
    } finally {
      stopMirroring();
    }
    return [...found].sort();
  }

  async health(options: CallOptions = {}): Promise<ProviderHealth> {
    let answer: VaultAnswer;
    try {
      answer = await this.#http.exchange({
        method: 'GET',
        apiPath: 'sys/health',
        namespaced: false,
        signal: options.signal,
        operation: 'health check',
      });
    } catch (error) {
      // Unreachable or silent is a health answer; a cancelled call or a closed provider is not.
      const unhealthy =
        isVaultProviderError(error) &&
        (error.code === 'DSO_PROVIDER_UNAVAILABLE' || error.code === 'DSO_PROVIDER_TIMEOUT');
      if (options.signal?.aborted || !unhealthy) throw error;
      return { ok: false, detail: error.message };
    }
    const body = (answer.body ?? {}) as Record<string, unknown>;
    const version = typeof body.version === 'string' ? `, vault ${body.version}` : '';
    switch (answer.status) {
      case 200:
        return { ok: true, detail: `active${version}` };
      case 429:
        return { ok: true, detail: `standby, forwarding to the active node${version}` };
      case 473:
        return { ok: true, detail: `performance standby${version}` };
      case 472:
        return { ok: false, detail: `disaster-recovery secondary: it serves no reads${version}` };
      case 501:
        return { ok: false, detail: `not initialized${version}` };
      case 503:
        return {
          ok: false,
          detail: body.sealed === true ? `sealed${version}` : `unavailable (HTTP 503)${version}`,
        };
      default:
        return { ok: false, detail: `HTTP ${answer.status} from sys/health` };
    }
  }

  async close(): Promise<void> {
    try {
      await this.#auth.close();
    } finally {
      await this.#http.close();
    }
  }

  /** One page-following LIST of one folder; `[]` when the folder does not exist. */
  async #listFolder(folder: string, signal: AbortSignal): Promise<string[]> {
    const apiPath = `${this.#config.mount}/metadata/${encodeFolder(folder, this.name)}`;
    const keys: string[] = [];
    const seen = new Set<string>();
    let after: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page += 1) {
      const query: Record<string, string> = { limit: String(LIST_PAGE_SIZE) };
      if (after !== undefined) query.after = after;
      const answer = await this.#authed({
        method: 'LIST',
        apiPath,
        query,
        signal,
        operation: 'list',
      });
      if (answer.status === 404) return keys;
      if (answer.status !== 200) throw this.#statusError(answer, 'list', apiPath, undefined);
      const pageKeys = (answer.body as { data?: { keys?: unknown } } | undefined)?.data?.keys;
      if (!Array.isArray(pageKeys)) {
        throw new VaultProviderError(
          'DSO_PROVIDER_INTERNAL',
          `vault's answer to list of ${apiPath} has no keys: is ${this.#config.mount} a KV version 2 mount?`,
          { provider: this.name },
          { status: answer.status },
        );
      }
      let fresh = 0;
      for (const key of pageKeys) {
        if (typeof key !== 'string' || key === '' || key === '/' || seen.has(key)) continue;
        seen.add(key);
        keys.push(key);
        fresh += 1;
      }
      // A page shorter than `limit` is the last; a longer one means the server ignores `limit`
      // (KV v2 does) and sent everything; one that brings nothing new means it ignores `after`.
      if (pageKeys.length !== LIST_PAGE_SIZE || fresh === 0) return keys;
      after = pageKeys[pageKeys.length - 1] as string;
    }
    return keys;
  }

  /** One exchange with a token; with AppRole, one fresh login and retry when Vault refuses it. */
  async #authed(exchange: Omit<VaultExchange, 'token'>): Promise<VaultAnswer> {
    const token = await this.#auth.token(exchange.signal);
    const answer = await this.#http.exchange({ ...exchange, token });
    if ((answer.status === 401 || answer.status === 403) && this.#auth.refused(token)) {
      const fresh = await this.#auth.token(exchange.signal);
      return this.#http.exchange({ ...exchange, token: fresh });
    }
    return answer;
  }

  #statusError(
    answer: VaultAnswer,
    operation: string,
    apiPath: string,
    path: string | undefined,
  ): VaultProviderError {
    return errorForStatus(answer.status, answer.body, answer.retryAfter, {
      provider: this.name,
      operation,
      apiPath,
      path,
      authHint: this.#auth.hint,
    });
  }

  #notFound(body: unknown, path: string, version: string | undefined): VaultProviderError {
    const metadata = (body as { data?: { metadata?: Record<string, unknown> } } | undefined)?.data
      ?.metadata;
    const options = { provider: this.name, path };
    const details = { status: 404 };
    const which = typeof metadata?.version === 'number' ? String(metadata.version) : version;
    if (metadata?.destroyed === true) {
      return new VaultProviderError(
        'DSO_PROVIDER_NOT_FOUND',
        `version ${which} of secret ${path} in ${this.#where} was destroyed: its data is gone; ask for another version, or write a new one`,
        options,
        details,
      );
    }
    if (typeof metadata?.deletion_time === 'string' && metadata.deletion_time !== '') {
      return new VaultProviderError(
        'DSO_PROVIDER_NOT_FOUND',
        `version ${which} of secret ${path} in ${this.#where} was deleted at ${metadata.deletion_time}: undelete it (vault kv undelete -mount=${this.#config.mount} -versions=${which} ${path}) or ask for another version`,
        options,
        details,
      );
    }
    if (version !== undefined) {
      return new VaultProviderError(
        'DSO_PROVIDER_NOT_FOUND',
        `secret ${path} in ${this.#where} has no version ${version}: check the version, or that the secret exists`,
        options,
        details,
      );
    }
    return new VaultProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `no secret at ${path} in ${this.#where}: check the path, the mount and the namespace`,
      options,
      details,
    );
  }

  #valueOf(data: unknown, path: string, version: string): SecretValue {
    if (typeof data !== 'object' || data === null || Array.isArray(data)) {
      throw new VaultProviderError(
        'DSO_PROVIDER_INTERNAL',
        `vault's answer for secret ${path} version ${version} holds no data object`,
        { provider: this.name, path },
      );
    }
    const { valueKey, valueEncoding } = this.#config;
    let bytes: Buffer;
    if (valueKey === undefined) {
      bytes = Buffer.from(canonicalJson(data), 'utf8');
    } else {
      const record = data as Record<string, unknown>;
      const item = Object.hasOwn(record, valueKey) ? record[valueKey] : undefined;
      if (item === undefined || item === null) {
        throw new VaultProviderError(
          'DSO_PROVIDER_NOT_FOUND',
          `secret ${path} version ${version} has no key "${valueKey}" (valueKey): store the value under it, or remove valueKey to serve the whole data object`,
          { provider: this.name, path },
        );
      }
      if (valueEncoding === 'base64') {
        if (typeof item !== 'string' || !BASE64.test(item)) {
          throw new VaultProviderError(
            'DSO_PROVIDER_NOT_FOUND',
            `secret ${path} version ${version} key "${valueKey}" is not base64 text (valueEncoding: base64): store it base64-encoded, or set valueEncoding: utf8`,
            { provider: this.name, path },
          );
        }
        bytes = Buffer.from(item, 'base64');
      } else {
        bytes = Buffer.from(typeof item === 'string' ? item : canonicalJson(item), 'utf8');
      }
    }
    try {
      return SecretValue.fromBytes(bytes);
    } finally {
      bytes.fill(0);
    }
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

/** True when `pem` holds at least one certificate and every one of them parses. */
function holdsCertificates(pem: Buffer): boolean {
  const blocks = pem.toString('utf8').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) return false;
  try {
    for (const block of blocks) new X509Certificate(block);
    return true;
  } catch {
    // Only the verdict matters; OpenSSL's reason names no content.
    return false;
  }
}

function isPast(time: unknown): boolean {
  if (typeof time !== 'string' || time === '') return false;
  const at = Date.parse(time);
  return Number.isNaN(at) || at <= Date.now();
}
