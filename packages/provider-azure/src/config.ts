import { z } from 'zod';

/** Per-request deadline for one HTTP exchange with Key Vault or the token endpoint. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/**
 * Retries of the Azure SDK's own retry policy after the first attempt (the SDK's default is 3,
 * with delays up to 64 s: longer than the host's 30 s call deadline).
 */
export const DEFAULT_MAX_RETRIES = 2;
/** First delay of the SDK's exponential backoff. */
export const DEFAULT_RETRY_DELAY_MS = 500;
/**
 * Longest the SDK waits before a retry, backoff or `Retry-After` alike. A throttling answer
 * asking for a longer wait is not retried inside the call: it fails at once with
 * DSO_PROVIDER_THROTTLED, so the host's cache and backoff take over.
 */
export const DEFAULT_MAX_RETRY_DELAY_MS = 4_000;
/** Entra ID's public-cloud authority, what the Azure SDK uses when none is given. */
export const DEFAULT_AUTHORITY_HOST = 'https://login.microsoftonline.com';

/** Key Vault REST API versions the SDK can speak (`serviceVersion`). */
export const KEY_VAULT_SERVICE_VERSIONS = [
  '7.0',
  '7.1',
  '7.2',
  '7.3',
  '7.4',
  '7.5',
  '7.6',
  '2025-07-01',
] as const;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Tenant ids are GUIDs or verified domain names; the Azure SDK checks the same characters.
const TENANT_ID = /^[0-9A-Za-z.-]{1,256}$/;
const CLIENT_ID = /^[0-9A-Za-z.-]{1,128}$/;

/** An `https:` URL of a host with no path beyond `/`, no query, fragment or credentials. */
function isOriginUrl(text: string): boolean {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // Not a URL at all; the refinement's message says what is expected.
    return false;
  }
  return (
    url.protocol === 'https:' &&
    url.username === '' &&
    url.password === '' &&
    url.search === '' &&
    url.hash === '' &&
    (url.pathname === '/' || url.pathname === '')
  );
}

const credentialSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('default') }),
  z.strictObject({
    kind: z.literal('clientSecret'),
    tenantId: z.string().regex(TENANT_ID, 'must be a tenant GUID or domain name'),
    clientId: z.string().regex(CLIENT_ID, 'must be an application (client) id'),
    clientSecretEnv: z
      .string()
      .regex(ENV_NAME, 'must be the name of an environment variable (letters, digits, _)'),
  }),
  z.strictObject({
    kind: z.literal('managedIdentity'),
    clientId: z
      .string()
      .regex(CLIENT_ID, 'must be the client id of a user-assigned identity')
      .optional(),
  }),
]);

/**
 * The `azure` provider's configuration. Unknown keys are refused, so a misspelt setting fails
 * at start instead of being ignored. Its messages name settings, never their values.
 *
 * @example
 * azureConfigSchema.parse({
 *   vaultUrl: 'https://myvault.vault.azure.net/',
 *   credential: { kind: 'managedIdentity' },
 * }); // defaults filled in: requestTimeoutMs 10 000, maxRetries 2, …
 * @throws ZodError (from `parse`) for a configuration it refuses; `createProvider` turns that
 *   into DSO_PROVIDER_INVALID_CONFIG
 */
export const azureConfigSchema = z.strictObject({
  /** `https://<vault-name>.vault.azure.net/` (or a private endpoint's URL). */
  vaultUrl: z
    .string()
    .refine(
      isOriginUrl,
      'must be an https:// URL with no path, query or credentials, e.g. https://<vault-name>.vault.azure.net/',
    ),
  /** How to get an access token. @default { kind: 'default' } */
  credential: credentialSchema.default({ kind: 'default' }),
  /**
   * The Entra ID authority, e.g. `https://login.microsoftonline.us` for Azure Government.
   * Setting it also turns off the SDK's instance discovery (a request to
   * login.microsoftonline.com that validates the authority), which a private or sovereign
   * authority cannot answer. @default AZURE_AUTHORITY_HOST from the environment, else
   * https://login.microsoftonline.com
   */
  authorityHost: z
    .string()
    .refine(isOriginUrl, 'must be an https:// URL with no path, query or credentials')
    .optional(),
  tls: z
    .strictObject({
      /**
       * A PEM file of CA certificates to trust besides the public roots (a TLS-inspecting
       * proxy, a private endpoint's CA, a test fake). Applies to Key Vault and token requests.
       */
      caFile: z.string().min(1, 'must name a PEM file').optional(),
    })
    .default({}),
  /** Deadline for one HTTP request. @default 10 000 */
  requestTimeoutMs: z.number().int().min(100).max(120_000).default(DEFAULT_REQUEST_TIMEOUT_MS),
  /** Retries by the SDK after the first attempt (0 to 10). @default 2 */
  maxRetries: z.number().int().min(0).max(10).default(DEFAULT_MAX_RETRIES),
  /** First backoff delay. @default 500 */
  retryDelayMs: z.number().int().min(0).max(60_000).default(DEFAULT_RETRY_DELAY_MS),
  /** Longest backoff or `Retry-After` wait inside one call. @default 4 000 */
  maxRetryDelayMs: z.number().int().min(0).max(120_000).default(DEFAULT_MAX_RETRY_DELAY_MS),
  /**
   * Skips the SDK's check that the resource named in Key Vault's bearer challenge
   * (`https://vault.azure.net`) is a parent domain of `vaultUrl`'s host. Needed only when the
   * vault is reached under another host name (a fake on 127.0.0.1, a private DNS alias);
   * with it on, a server at `vaultUrl` can ask for a Key Vault token. @default false
   */
  disableChallengeResourceVerification: z.boolean().default(false),
  /** The Key Vault REST API version to speak. @default the SDK's latest (2025-07-01) */
  serviceVersion: z.enum(KEY_VAULT_SERVICE_VERSIONS).optional(),
});

/** A validated configuration, defaults applied. */
export type AzureProviderConfig = z.output<typeof azureConfigSchema>;
/** A configuration as written, before defaults. */
export type AzureProviderConfigInput = z.input<typeof azureConfigSchema>;
/** One of the credential kinds. */
export type AzureCredentialConfig = AzureProviderConfig['credential'];
