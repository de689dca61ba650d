import { onAbort } from '@dso/async';
import { isProviderError } from '@dso/provider-sdk';
import type { Response } from 'undici';
import { errorForTransportFailure, VaultProviderError } from './vault-error.js';

/** The methods the provider sends. `LIST` is Vault's own verb (it also accepts `GET ?list=true`). */
export type VaultMethod = 'GET' | 'POST' | 'PUT' | 'DELETE' | 'LIST';

/** TLS settings for the connection, already read from files. */
export interface VaultTlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  serverName?: string;
  /** False only with an explicit `tlsSkipVerify: true`. */
  rejectUnauthorized: boolean;
}

/** What {@link createVaultHttp} needs. */
export interface VaultHttpOptions {
  /** The configured provider name, for errors. */
  provider: string;
  /** `https://host:port` (validated by the schema). */
  address: string;
  namespace?: string;
  tls: VaultTlsMaterial;
  requestTimeoutMs: number;
  maxResponseBytes: number;
}

/** One HTTP exchange with Vault. */
export interface VaultExchange {
  method: VaultMethod;
  /** The path after `/v1/`, each segment already percent-encoded. */
  apiPath: string;
  query?: Record<string, string>;
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as `X-Vault-Token`; never logged, never in an error. */
  token?: string;
  /** Send `X-Vault-Namespace` (the default); `false` for root-only endpoints such as sys/health. */
  namespaced?: boolean;
  signal?: AbortSignal;
  /** For messages: what the call was doing (`read`, `list`) and for which secret. */
  operation: string;
  path?: string;
}

/** Vault's answer: any HTTP status, the JSON body when there was one. */
export interface VaultAnswer {
  status: number;
  /** The parsed JSON body; `undefined` when empty or not JSON. */
  body: unknown;
  retryAfter: string | null;
}

/** The transport: one undici `Agent` (its connection pool and TLS settings) and `fetch`. */
export interface VaultHttp {
  exchange(request: VaultExchange): Promise<VaultAnswer>;
  /** Aborts calls in flight and closes the pooled connections. */
  close(): Promise<void>;
}

const USER_AGENT = 'dso-provider-vault/0.1';

/**
 * Builds the transport. `fetch` and `Agent` both come from the installed undici (the library
 * that also implements Node's global `fetch`), so the dispatcher and the fetch that uses it are
 * always the same version. undici is imported here, on first use, not when the package loads:
 * a provider child refusing its configuration then answers without paying for it. Redirects are
 * not followed: a standby that redirects would otherwise receive the token on another address.
 */
export async function createVaultHttp(options: VaultHttpOptions): Promise<VaultHttp> {
  const { Agent, fetch } = await import('undici');
  const origin = new URL(options.address).origin;
  const agent = new Agent({
    connect: {
      timeout: options.requestTimeoutMs,
      rejectUnauthorized: options.tls.rejectUnauthorized,
      ...(options.tls.ca === undefined ? {} : { ca: options.tls.ca }),
      ...(options.tls.cert === undefined ? {} : { cert: options.tls.cert }),
      ...(options.tls.key === undefined ? {} : { key: options.tls.key }),
      ...(options.tls.serverName === undefined ? {} : { servername: options.tls.serverName }),
    },
    headersTimeout: options.requestTimeoutMs,
    bodyTimeout: options.requestTimeoutMs,
  });
  // The controllers of the calls in flight, aborted together by close().
  const inFlight = new Set<AbortController>();
  let closed = false;

  async function exchange(request: VaultExchange): Promise<VaultAnswer> {
    const context = {
      provider: options.provider,
      operation: request.operation,
      apiPath: request.apiPath,
      path: request.path,
    };
    if (request.signal?.aborted) throw cancelledError(request, options.provider);
    if (closed) throw closedError(options.provider, request.path);

    const url = new URL(`/v1/${request.apiPath}`, origin);
    for (const [key, value] of Object.entries(request.query ?? {})) {
      url.searchParams.set(key, value);
    }
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': USER_AGENT,
      // Vault Agent and proxies refuse requests without it: a guard against request forgery.
      'x-vault-request': 'true',
    };
    if (request.token !== undefined) headers['x-vault-token'] = request.token;
    if (options.namespace !== undefined && request.namespaced !== false) {
      headers['x-vault-namespace'] = options.namespace;
    }
    let body: Buffer | undefined;
    if (request.body !== undefined) {
      body = Buffer.from(JSON.stringify(request.body), 'utf8');
      headers['content-type'] = 'application/json';
    }

    // One controller per call, fed by the caller's signal, the deadline and close(); the
    // caller's listener is removed when the call ends, so a long-lived signal collects none.
    const controller = new AbortController();
    inFlight.add(controller);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, options.requestTimeoutMs);
    const stopForwarding = onAbort(request.signal, () => controller.abort());
    try {
      const response = await fetch(url, {
        method: request.method,
        headers,
        body,
        redirect: 'manual',
        signal: controller.signal,
        dispatcher: agent,
      });
      const parsed = await readJsonBody(response, options.maxResponseBytes, context);
      return {
        status: response.status,
        body: parsed,
        retryAfter: response.headers.get('retry-after'),
      };
    } catch (error) {
      if (request.signal?.aborted) throw cancelledError(request, options.provider);
      if (timedOut) {
        throw new VaultProviderError(
          'DSO_PROVIDER_TIMEOUT',
          `vault at ${origin} did not answer ${request.operation} of ${request.apiPath} within ${options.requestTimeoutMs} ms: check that it is reachable, or raise requestTimeoutMs`,
          { provider: options.provider, path: request.path },
        );
      }
      if (closed) throw closedError(options.provider, request.path);
      if (isProviderError(error)) throw error;
      throw errorForTransportFailure(error, context, origin);
    } finally {
      clearTimeout(timer);
      stopForwarding();
      inFlight.delete(controller);
      // The request body may hold a secret ID: zero our copy once the exchange is over.
      body?.fill(0);
    }
  }

  return {
    exchange,
    async close() {
      closed = true;
      for (const controller of inFlight) controller.abort();
      await agent.destroy().catch(() => {
        // Destroying an agent that is already destroyed rejects; nothing is left to release.
      });
    },
  };
}

function cancelledError(request: VaultExchange, provider: string): VaultProviderError {
  return new VaultProviderError(
    'DSO_PROVIDER_TIMEOUT',
    `${request.operation} of ${request.apiPath} was cancelled by the caller`,
    { provider, path: request.path },
  );
}

function closedError(provider: string, path: string | undefined): VaultProviderError {
  return new VaultProviderError(
    'DSO_PROVIDER_INTERNAL',
    `provider ${provider} was closed during the call`,
    { provider, path },
  );
}

/**
 * Reads the body up to `maxBytes` and parses it as JSON. The raw bytes are zeroed once parsed
 * (the strings JSON.parse makes cannot be, and live until collected). A parse failure yields
 * `undefined` and never its message, which would quote the body.
 */
async function readJsonBody(
  response: Response,
  maxBytes: number,
  context: { provider: string; operation: string; apiPath: string; path?: string },
): Promise<unknown> {
  const tooLarge = () =>
    new VaultProviderError(
      'DSO_PROVIDER_TOO_LARGE',
      `vault's answer to ${context.operation} of ${context.apiPath} is larger than maxResponseBytes (${maxBytes}): raise maxResponseBytes, or store less`,
      { provider: context.provider, path: context.path },
      { status: response.status },
    );
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (response.body === null) return undefined;
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body.cancel().catch(() => {
      // The stream is dropped either way; cancelling only frees the socket sooner.
    });
    throw tooLarge();
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      total += value.byteLength;
      if (total > maxBytes) {
        value.fill(0);
        await reader.cancel().catch(() => {
          // As above: the body is abandoned whether or not the cancel succeeds.
        });
        throw tooLarge();
      }
      chunks.push(value);
    }
    if (total === 0) return undefined;
    const bytes = Buffer.concat(chunks, total);
    try {
      return JSON.parse(bytes.toString('utf8'));
    } catch {
      // Deliberately dropped: the parse error's message quotes the body it choked on.
      return undefined;
    } finally {
      bytes.fill(0);
    }
  } finally {
    for (const chunk of chunks) chunk.fill(0);
  }
}
