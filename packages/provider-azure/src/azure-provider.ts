import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import { createSecureContext, rootCertificates } from 'node:tls';
import type { SecretProperties } from '@azure/keyvault-secrets';
import { abortable, onAbort } from '@dso/async';
import {
  type CallOptions,
  isProviderError,
  type ProviderCapabilities,
  type ProviderContext,
  ProviderError,
  type ProviderHealth,
  type ResolvedSecret,
  type SecretProvider,
  type SecretRequest,
} from '@dso/provider-sdk';
import { type FailureContext, toAzureProviderError } from './azure-error.js';
import type { AzureProviderConfig } from './config.js';
import { buildCredential, planCredential } from './credential.js';
import { CallContext, requestDefaultsPolicy, retryAfterCapPolicy } from './pipeline.js';
import { decodeSecretValue } from './secret-encoding.js';
import { isSecretVersionId, pathForSecretName, secretNameForPath } from './secret-name.js';

/**
 * What the `azure` provider implements. No `watch`: Key Vault pushes changes only through
 * Event Grid, which a provider cannot subscribe to. No `probe`: Key Vault has no metadata-only
 * read of a secret's current version (see the README, "Why no probe").
 */
export const AZURE_CAPABILITIES: ProviderCapabilities = Object.freeze({
  list: true,
  watch: false,
  probe: false,
  health: true,
});

/**
 * Connections one provider keeps open to each host (Key Vault, Entra ID). Calls beyond it wait
 * for a free connection instead of each paying for a TLS handshake.
 */
export const MAX_SOCKETS = 16;

/** The most paths one `list()` returns; a larger answer is refused, not truncated. */
export const MAX_LIST_PATHS = 100_000;

/**
 * Creates the live `azure` provider from a validated configuration: an HTTPS agent (with
 * `tls.caFile` trusted beside the public roots), the credential, and the SDK's SecretClient
 * with a bounded retry policy. No request is made until the first call.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when `tls.caFile` cannot be read or holds
 *   no certificate, or `credential.clientSecretEnv` names an unset variable
 * @example
 * const provider = await createAzureProvider(
 *   azureConfigSchema.parse({ vaultUrl: 'https://myvault.vault.azure.net/', credential: { kind: 'managedIdentity' } }),
 *   { name: 'prod-azure', log: SILENT_LOGGER, env: process.env },
 * );
 */
export async function createAzureProvider(
  config: AzureProviderConfig,
  context: ProviderContext,
): Promise<SecretProvider> {
  const { name, log } = context;
  const vaultHost = new URL(config.vaultUrl).host;
  // Everything that can refuse the configuration runs before the Azure SDK is loaded (it takes
  // seconds to import), so a bad configuration fails fast, in a child process too.
  const ca = config.tls.caFile === undefined ? undefined : readCa(config.tls.caFile, name);
  const plan = planCredential(config, context.env, name);
  const [secrets, identity] = await Promise.all([
    import('@azure/keyvault-secrets'),
    import('@azure/identity'),
  ]);
  // One secure context for every connection: given `ca` instead, Node would parse the whole
  // trust store again for each new TLS connection (about 100 ms each).
  const agent = new Agent({
    keepAlive: true,
    maxSockets: MAX_SOCKETS,
    ...(ca === undefined
      ? {}
      : { secureContext: createSecureContext({ ca: [...rootCertificates, ca] }) }),
  });
  const calls = new CallContext();
  const retryOptions = {
    maxRetries: config.maxRetries,
    retryDelayInMs: config.retryDelayMs,
    maxRetryDelayInMs: config.maxRetryDelayMs,
  };
  const credential = buildCredential(plan, identity, {
    agent,
    retryOptions,
    // Token requests carry MSAL's own signals; they get the per-request deadline only.
    additionalPolicies: [requestDefaultsPolicy(undefined, config.requestTimeoutMs)],
  });
  const client = new secrets.SecretClient(config.vaultUrl, credential, {
    agent,
    retryOptions,
    additionalPolicies: [
      requestDefaultsPolicy(calls, config.requestTimeoutMs),
      retryAfterCapPolicy(config.maxRetryDelayMs),
    ],
    disableChallengeResourceVerification: config.disableChallengeResourceVerification,
    ...(config.serviceVersion === undefined ? {} : { serviceVersion: config.serviceVersion }),
  });
  log.debug('azure key vault provider created', {
    vaultHost,
    credential: plan.description,
  });

  let closed = false;
  const base = {
    provider: name,
    vaultHost,
    credentialKind: config.credential.kind,
    authorityHost: plan.authorityHost,
    requestTimeoutMs: config.requestTimeoutMs,
  };
  // Every call in flight, so close() can end them instead of leaving them to the SDK's retries.
  const inFlight = new Set<AbortController>();

  /** Runs `body` as one provider call: cancellable, errors mapped once. */
  const call = async <T>(
    failure: Omit<FailureContext, keyof typeof base | 'signal'>,
    signal: AbortSignal | undefined,
    body: (abortSignal: AbortSignal | undefined) => Promise<T>,
  ): Promise<T> => {
    const context: FailureContext = { ...base, ...failure, signal };
    const controller = new AbortController();
    let stopForwarding = () => {};
    try {
      if (closed) {
        throw new ProviderError('DSO_PROVIDER_INTERNAL', `provider ${name} is closed`, {
          provider: name,
        });
      }
      signal?.throwIfAborted();
      stopForwarding = onAbort(signal, (reason) => controller.abort(reason));
      inFlight.add(controller);
      const own = controller.signal;
      return await calls.run(own, () => abortable(body(own), own));
    } catch (error) {
      const mapped =
        closed && !signal?.aborted && !isProviderError(error)
          ? new ProviderError(
              'DSO_PROVIDER_UNAVAILABLE',
              `provider ${name} was closed while ${failure.operation} was in flight: retry on an open provider`,
              { provider: name, ...(failure.path === undefined ? {} : { path: failure.path }) },
            )
          : toAzureProviderError(error, context);
      log.debug('key vault call failed', {
        operation: failure.operation,
        ...(failure.path === undefined ? {} : { path: failure.path }),
        code: mapped.code,
      });
      throw mapped;
    } finally {
      stopForwarding();
      inFlight.delete(controller);
    }
  };

  const provider: SecretProvider = {
    name,
    capabilities: AZURE_CAPABILITIES,

    async resolve(request: SecretRequest, options: CallOptions = {}): Promise<ResolvedSecret> {
      const { path, version } = request;
      const mapped = secretNameForPath(path);
      if (!mapped.ok) {
        throw new ProviderError(
          'DSO_PROVIDER_NOT_FOUND',
          `provider ${name}: path ${path} cannot name a Key Vault secret: ${mapped.reason}`,
          { provider: name, path },
        );
      }
      if (version !== undefined && !isSecretVersionId(version)) {
        throw new ProviderError(
          'DSO_PROVIDER_NOT_FOUND',
          `provider ${name}: no version ${JSON.stringify(version)} of secret ${path}: Key Vault version ids are 32 hexadecimal characters`,
          { provider: name, path },
        );
      }
      const secretName = mapped.name;
      const failure = { operation: 'resolve' as const, path, secretName, version };
      const secret = await call(failure, options.signal, (abortSignal) =>
        client.getSecret(secretName, {
          ...(version === undefined ? {} : { version }),
          abortSignal,
        }),
      );
      const unusable = unusableReason(secret.properties, Date.now());
      if (unusable !== undefined) {
        throw new ProviderError(
          'DSO_PROVIDER_NOT_FOUND',
          `provider ${name}: secret ${path} (Key Vault secret ${secretName}, version ${secret.properties.version ?? 'unknown'}) ${unusable}: set a new version or change its dates`,
          { provider: name, path },
        );
      }
      const resolvedVersion = secret.properties.version;
      if (
        typeof secret.value !== 'string' ||
        resolvedVersion === undefined ||
        resolvedVersion === ''
      ) {
        throw new ProviderError(
          'DSO_PROVIDER_INTERNAL',
          `provider ${name}: Key Vault answered for ${path} without a value or a version id`,
          { provider: name, path },
        );
      }
      const value = decodeSecretValue(secret.value, secret.properties.contentType);
      if (value === undefined) {
        throw new ProviderError(
          'DSO_PROVIDER_INTERNAL',
          `provider ${name}: secret ${path} (Key Vault secret ${secretName}) has content type application/octet-stream but its value is not base64: store the bytes base64-encoded, or change its content type`,
          { provider: name, path },
        );
      }
      return { value, version: resolvedVersion };
    },

    async list(prefix?: string, options: CallOptions = {}): Promise<string[]> {
      const wanted = normalizePrefix(prefix);
      return call({ operation: 'list' }, options.signal, async (abortSignal) => {
        const paths: string[] = [];
        const now = Date.now();
        for await (const properties of client.listPropertiesOfSecrets({ abortSignal })) {
          abortSignal?.throwIfAborted();
          if (unusableReason(properties, now) !== undefined) continue;
          const path = pathForSecretName(properties.name);
          if (!isUnderPrefix(path.toLowerCase(), wanted)) continue;
          if (paths.length >= MAX_LIST_PATHS) {
            throw new ProviderError(
              'DSO_PROVIDER_TOO_LARGE',
              `provider ${name}: more than ${MAX_LIST_PATHS} secrets match ${prefix ?? '(all)'} in Key Vault ${vaultHost}: list a narrower prefix`,
              { provider: name },
            );
          }
          paths.push(path);
        }
        return paths.sort();
      });
    },

    async health(options: CallOptions = {}): Promise<ProviderHealth> {
      try {
        // One page of at most one secret's metadata: proves the network path, TLS, the token
        // and the list permission, and reads no value.
        await call({ operation: 'health' }, options.signal, async (abortSignal) => {
          const pages = client.listPropertiesOfSecrets({ abortSignal }).byPage({ maxPageSize: 1 });
          try {
            await pages.next();
          } finally {
            await pages.return?.(undefined);
          }
        });
        return { ok: true, detail: `Key Vault ${vaultHost} answered` };
      } catch (error) {
        if (options.signal?.aborted || closed) throw error;
        const mapped = error as ProviderError;
        return { ok: false, detail: `${mapped.code}: ${mapped.message}` };
      }
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      for (const controller of inFlight) controller.abort();
      // Ends keep-alive sockets (and any request still open) to Key Vault and Entra ID.
      agent.destroy();
    },
  };
  return provider;
}

/** Why a secret must not be served (disabled, expired, not yet valid), or undefined. */
function unusableReason(properties: SecretProperties, now: number): string | undefined {
  if (properties.enabled === false) return 'is disabled';
  if (properties.notBefore !== undefined && properties.notBefore.getTime() > now) {
    return `is not valid before ${properties.notBefore.toISOString()}`;
  }
  if (properties.expiresOn !== undefined && properties.expiresOn.getTime() <= now) {
    return `expired at ${properties.expiresOn.toISOString()}`;
  }
  return undefined;
}

/** A prefix for segment-wise matching: lowercase (names are case-insensitive), no trailing `/`. */
function normalizePrefix(prefix: string | undefined): string {
  if (prefix === undefined) return '';
  const lower = prefix.toLowerCase();
  return lower.endsWith('/') ? lower.slice(0, -1) : lower;
}

function isUnderPrefix(path: string, prefix: string): boolean {
  return prefix === '' || path === prefix || path.startsWith(`${prefix}/`);
}

function readCa(file: string, provider: string): string {
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider ${provider}: the file tls.caFile names cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}): name a readable PEM file of CA certificates`,
      // The cause is not kept: its message quotes the configured file name.
      { provider },
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider ${provider}: the file tls.caFile names holds no PEM certificate: name a PEM file of CA certificates`,
      { provider },
    );
  }
  return pem;
}
