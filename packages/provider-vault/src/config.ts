import { z } from 'zod';

/** The KV v2 mount a configuration reads when it names none. */
export const DEFAULT_KV_MOUNT = 'secret';
/** The AppRole auth mount a configuration logs in at when it names none. */
export const DEFAULT_APPROLE_MOUNT = 'approle';
/** The environment variable a token is read from when the configuration names none. */
export const DEFAULT_TOKEN_ENV = 'VAULT_TOKEN';
/** How long one HTTP exchange with Vault may take (connect, headers and body). */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;
/** The largest Vault response body read; a bigger one is refused as `DSO_PROVIDER_TOO_LARGE`. */
export const DEFAULT_MAX_RESPONSE_BYTES = 4 * 1024 * 1024;
/** The most paths `list()` returns before it gives up with `DSO_PROVIDER_TOO_LARGE`. */
export const DEFAULT_MAX_LIST_PATHS = 10_000;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
// A Vault mount or namespace: segments of letters, digits and `_ . -`, separated by `/`.
const MOUNT_PATH = /^[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

const envName = (what: string) =>
  z.string().regex(ENV_NAME, `${what} must be an environment variable name`);

const mountPath = (what: string) =>
  z
    .string()
    .transform((value) => value.replace(/^\/+|\/+$/g, ''))
    .refine(
      (value) => MOUNT_PATH.test(value) && !value.split('/').some((s) => s === '.' || s === '..'),
      `${what} must be segments of letters, digits, _ . - separated by /`,
    );

const nonEmpty = (what: string) => z.string().min(1, `${what} must not be empty`);

const tokenAuthSchema = z
  .strictObject({
    method: z.literal('token'),
    /** The token itself. Prefer `tokenEnv`: a token here sits in every copy of the configuration. */
    token: nonEmpty('auth.token').optional(),
    /** The variable of the provider's environment holding the token. @default VAULT_TOKEN */
    tokenEnv: envName('auth.tokenEnv').optional(),
  })
  .refine((auth) => auth.token === undefined || auth.tokenEnv === undefined, {
    message: 'set auth.token or auth.tokenEnv, not both: the token must come from one place',
    path: ['tokenEnv'],
  })
  .transform((auth) =>
    auth.token === undefined
      ? { method: 'token' as const, tokenEnv: auth.tokenEnv ?? DEFAULT_TOKEN_ENV }
      : { method: 'token' as const, token: auth.token },
  );

const appRoleAuthSchema = z
  .strictObject({
    method: z.literal('approle'),
    /** The role's `role_id`. */
    roleId: nonEmpty('auth.roleId'),
    /** The `secret_id`. Prefer `secretIdEnv`. Absent with `secretIdEnv` too: a role without `bind_secret_id`. */
    secretId: nonEmpty('auth.secretId').optional(),
    /** The variable of the provider's environment holding the `secret_id`. */
    secretIdEnv: envName('auth.secretIdEnv').optional(),
    /** Where the AppRole auth method is mounted. @default approle */
    mount: mountPath('auth.mount').default(DEFAULT_APPROLE_MOUNT),
  })
  .refine((auth) => auth.secretId === undefined || auth.secretIdEnv === undefined, {
    message:
      'set auth.secretId or auth.secretIdEnv, not both: the secret ID must come from one place',
    path: ['secretIdEnv'],
  });

// `auth: { token }` without `method` reads as token auth: the short form most people write.
const authSchema = z.preprocess(
  (value) =>
    typeof value === 'object' && value !== null && !Array.isArray(value) && !('method' in value)
      ? { method: 'token', ...value }
      : value,
  z.discriminatedUnion('method', [tokenAuthSchema, appRoleAuthSchema], {
    error: () => "auth.method must be 'token' or 'approle'",
  }),
);

const tlsSchema = z
  .strictObject({
    /** A PEM file of the CA(s) that signed Vault's certificate, instead of the system's. */
    caFile: nonEmpty('tls.caFile').optional(),
    /** The same as PEM text. */
    caPem: nonEmpty('tls.caPem').optional(),
    /** A client certificate (PEM file) for Vault's TLS client authentication. */
    certFile: nonEmpty('tls.certFile').optional(),
    certPem: nonEmpty('tls.certPem').optional(),
    /** The client certificate's private key (PEM file). */
    keyFile: nonEmpty('tls.keyFile').optional(),
    keyPem: nonEmpty('tls.keyPem').optional(),
    /** The name Vault's certificate is checked against (and SNI), when `address` names another. */
    serverName: nonEmpty('tls.serverName').optional(),
  })
  .superRefine((tls, ctx) => {
    for (const [file, pem] of [
      ['caFile', 'caPem'],
      ['certFile', 'certPem'],
      ['keyFile', 'keyPem'],
    ] as const) {
      if (tls[file] !== undefined && tls[pem] !== undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `set tls.${file} or tls.${pem}, not both`,
          path: [pem],
        });
      }
    }
    const hasCert = tls.certFile !== undefined || tls.certPem !== undefined;
    const hasKey = tls.keyFile !== undefined || tls.keyPem !== undefined;
    if (hasCert !== hasKey) {
      ctx.addIssue({
        code: 'custom',
        message:
          'a client certificate needs its key and a key its certificate: set both or neither',
        path: [hasCert ? 'keyFile' : 'certFile'],
      });
    }
  });

/**
 * Configuration of a `vault` provider (HashiCorp Vault, KV version 2). Strict: an unknown key is
 * refused, so a typo cannot silently fall back to a default. Its messages name settings, never
 * their values.
 *
 * @example
 * vaultProviderConfigSchema.parse({ address: 'https://vault.internal:8200' });
 * // { address, mount: 'secret', auth: { method: 'token', tokenEnv: 'VAULT_TOKEN' }, requestTimeoutMs: 10000, … }
 * @throws ZodError from `parse` for a configuration it refuses (`safeParse` returns the issues)
 */
export const vaultProviderConfigSchema = z
  .strictObject({
    /** Vault's address: `https://host:8200`; `http://` only for 127.0.0.1/localhost unless `allowInsecureHttp`. */
    address: z.string().min(1, 'address must not be empty'),
    /** Allows `http://` to a host other than loopback: tokens and secrets then cross the network in clear. */
    allowInsecureHttp: z.boolean().default(false),
    /** The KV v2 mount the paths are under. @default secret */
    mount: mountPath('mount').default(DEFAULT_KV_MOUNT),
    /** A Vault Enterprise namespace, sent as `X-Vault-Namespace` on every request. */
    namespace: mountPath('namespace').optional(),
    auth: authSchema.default({ method: 'token', tokenEnv: DEFAULT_TOKEN_ENV }),
    tls: tlsSchema.default({}),
    /** Turns off verification of Vault's certificate. Only for a lab: say so explicitly. */
    tlsSkipVerify: z.boolean().default(false),
    /**
     * Serve one key of the secret's data instead of the whole `data` object as JSON. `#field` in
     * a reference then selects inside that key's value (which must be JSON).
     */
    valueKey: nonEmpty('valueKey').optional(),
    /** How a string under `valueKey` becomes bytes: its UTF-8 text, or base64-decoded. @default utf8 */
    valueEncoding: z.enum(['utf8', 'base64']).default('utf8'),
    /** @default 10000 */
    requestTimeoutMs: z.number().int().min(100).max(600_000).default(DEFAULT_REQUEST_TIMEOUT_MS),
    /** @default 4 MiB */
    maxResponseBytes: z
      .number()
      .int()
      .min(1024)
      .max(256 * 1024 * 1024)
      .default(DEFAULT_MAX_RESPONSE_BYTES),
    /** @default 10000 */
    maxListPaths: z.number().int().min(1).max(1_000_000).default(DEFAULT_MAX_LIST_PATHS),
  })
  .superRefine((config, ctx) => {
    let url: URL;
    try {
      url = new URL(config.address);
    } catch {
      ctx.addIssue({
        code: 'custom',
        message: 'address must be a URL such as https://vault.example.com:8200',
        path: ['address'],
      });
      return;
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') {
      ctx.addIssue({ code: 'custom', message: 'address must use https://', path: ['address'] });
      return;
    }
    if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') {
      ctx.addIssue({
        code: 'custom',
        message: 'address must not carry credentials, a query or a fragment',
        path: ['address'],
      });
    }
    if (url.pathname !== '/' && url.pathname !== '') {
      ctx.addIssue({
        code: 'custom',
        message: 'address must be scheme, host and port only: the provider adds /v1/…',
        path: ['address'],
      });
    }
    if (
      url.protocol === 'http:' &&
      !LOOPBACK_HOSTS.has(url.hostname) &&
      !config.allowInsecureHttp
    ) {
      ctx.addIssue({
        code: 'custom',
        message:
          'address uses http:// to a host other than 127.0.0.1/localhost: use https://, or set allowInsecureHttp: true to send tokens and secrets in clear',
        path: ['address'],
      });
    }
    if (url.protocol === 'http:' && hasTlsSettings(config.tls, config.tlsSkipVerify)) {
      ctx.addIssue({
        code: 'custom',
        message: 'tls and tlsSkipVerify apply to an https:// address only',
        path: ['tls'],
      });
    }
    if (config.valueKey === undefined && config.valueEncoding !== 'utf8') {
      ctx.addIssue({
        code: 'custom',
        message: 'valueEncoding applies to valueKey: set valueKey too, or remove valueEncoding',
        path: ['valueEncoding'],
      });
    }
  });

function hasTlsSettings(tls: Record<string, unknown>, skipVerify: boolean): boolean {
  return skipVerify || Object.values(tls).some((value) => value !== undefined);
}

/** The configuration as written (what {@link vaultProviderConfigSchema} accepts). */
export type VaultProviderConfigInput = z.input<typeof vaultProviderConfigSchema>;
/** A validated, defaulted `vault` provider configuration. */
export type VaultProviderConfig = z.output<typeof vaultProviderConfigSchema>;
/** The `auth` part of a validated configuration. */
export type VaultAuthConfig = VaultProviderConfig['auth'];
/** The `tls` part of a validated configuration. */
export type VaultTlsConfig = VaultProviderConfig['tls'];
