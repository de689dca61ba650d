import { abortable } from '@dso/async';
import type { ProviderLogger } from '@dso/provider-sdk';
import { DEFAULT_TOKEN_ENV, type VaultAuthConfig } from './config.js';
import { errorForStatus, quoteVaultErrors, VaultProviderError } from './vault-error.js';
import type { VaultHttp } from './vault-http.js';

/**
 * Where a request's token comes from. Token auth hands out the configured token; AppRole logs
 * in, caches the token, renews it (or logs in again) before its TTL runs out, and logs in again
 * when Vault refuses it.
 */
export interface VaultAuth {
  readonly method: 'token' | 'approle';
  /** What to check when Vault answers 401/403: for the error message. */
  readonly hint: string;
  /** A token to send, logging in first when needed. */
  token(signal?: AbortSignal): Promise<string>;
  /**
   * Vault refused `token`. Returns true when asking again may help (AppRole: the cached token
   * is dropped, so the next `token()` logs in afresh, at most once per
   * {@link REFUSAL_RELOGIN_INTERVAL_MS}); false for a fixed token.
   */
  refused(token: string): boolean;
  /** Revokes a token this provider created (best effort) and forgets it. */
  close(): Promise<void>;
}

/** The part of the token's lifetime after which AppRole renews it (Vault Agent's choice too). */
export const RENEW_AT_FRACTION = 2 / 3;

/**
 * The shortest time between two logins caused by Vault refusing a token (403): within it, a
 * refusal is reported as it is.
 */
export const REFUSAL_RELOGIN_INTERVAL_MS = 30_000;

interface TokenState {
  token: string;
  /** When the current lease began (login or renewal), by `now()`. */
  issuedAt: number;
  /** The lease in ms; 0 for a token that does not expire. */
  ttlMs: number;
  renewable: boolean;
  /** The lease the last login gave: a renewal that buys less than a third of it logs in again. */
  loginTtlMs: number;
}

/** What the auth strategies share. */
export interface VaultAuthDeps {
  provider: string;
  http: VaultHttp;
  log: ProviderLogger;
  now: () => number;
}

/** Where a credential is read from. */
export interface CredentialSource {
  provider: string;
  env: Readonly<Record<string, string | undefined>>;
}

/** The credential the configuration points at, read from the environment. */
export type VaultCredential =
  | { method: 'token'; token: string; source: string }
  | { method: 'approle'; roleId: string; secretId: string | undefined; mount: string };

/**
 * Reads the token or secret ID the configuration names from the environment now, so a missing
 * variable fails at creation rather than on the first call.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when the named variable is not set
 */
export function readVaultCredential(
  config: VaultAuthConfig,
  deps: CredentialSource,
): VaultCredential {
  if (config.method === 'token') {
    if (config.token !== undefined) {
      return { method: 'token', token: config.token, source: 'auth.token' };
    }
    const isDefault = config.tokenEnv === DEFAULT_TOKEN_ENV;
    return {
      method: 'token',
      token: readEnv(
        deps,
        config.tokenEnv,
        isDefault ? `auth.tokenEnv (default ${DEFAULT_TOKEN_ENV})` : 'auth.tokenEnv',
      ),
      source: isDefault
        ? `environment variable ${DEFAULT_TOKEN_ENV}`
        : 'the variable auth.tokenEnv names',
    };
  }
  return {
    method: 'approle',
    roleId: config.roleId,
    secretId:
      config.secretId ??
      (config.secretIdEnv === undefined
        ? undefined
        : readEnv(deps, config.secretIdEnv, 'auth.secretIdEnv')),
    mount: config.mount,
  };
}

/** The auth strategy for a credential. */
export function createVaultAuth(credential: VaultCredential, deps: VaultAuthDeps): VaultAuth {
  if (credential.method === 'token') {
    const { token, source } = credential;
    return {
      method: 'token',
      hint: `the token (from ${source}) is invalid or expired, or its policy does not allow this: check the token and its policies`,
      async token() {
        return token;
      },
      refused: () => false,
      async close() {},
    };
  }
  return new AppRoleAuth(credential.roleId, credential.secretId, credential.mount, deps);
}

// The variable's name is not quoted: it comes from the configuration, and a configuration
// value is never echoed (whatever was typed there, it stays out of logs and errors).
function readEnv(deps: CredentialSource, name: string, setting: string): string {
  const value = deps.env[name];
  if (value === undefined || value === '') {
    throw new VaultProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `the environment variable ${setting} names is not set (or empty) in the provider's environment: set it, or configure the credential another way`,
      { provider: deps.provider },
    );
  }
  return value;
}

class AppRoleAuth implements VaultAuth {
  readonly method = 'approle' as const;
  readonly hint: string;
  readonly #roleId: string;
  readonly #secretId: string | undefined;
  readonly #mount: string;
  readonly #deps: VaultAuthDeps;
  #current: TokenState | undefined;
  #pending: Promise<TokenState> | undefined;
  #lastRefusalLogin: number | undefined;

  constructor(roleId: string, secretId: string | undefined, mount: string, deps: VaultAuthDeps) {
    this.#roleId = roleId;
    this.#secretId = secretId;
    this.#mount = mount;
    this.#deps = deps;
    this.hint = `the AppRole token was refused even after a fresh login at auth/${mount}: check the role's token policies`;
  }

  async token(signal?: AbortSignal): Promise<string> {
    const current = this.#current;
    if (current !== undefined && !this.#due(current)) return current.token;
    if (this.#pending === undefined) {
      const pending = this.#refresh(current).finally(() => {
        this.#pending = undefined;
      });
      // Callers may all give up (abort) before it settles: never leave it unhandled.
      pending.catch(() => undefined);
      this.#pending = pending;
    }
    try {
      // The login runs on for the other callers: only this caller's wait ends.
      return (await abortable(this.#pending, signal)).token;
    } catch (error) {
      if (signal?.aborted && error === signal.reason) throw loginCancelled(this.#deps.provider);
      throw error;
    }
  }

  refused(token: string): boolean {
    const current = this.#current;
    // Already replaced (or being replaced) by another call: retry with the new token.
    if (current?.token !== token) return true;
    // A 403 is also what a policy without the path gives, and a login cannot fix that: log in
    // again at most once per interval, so a denied path does not mint a token per call.
    const now = this.#deps.now();
    if (
      this.#lastRefusalLogin !== undefined &&
      now - this.#lastRefusalLogin < REFUSAL_RELOGIN_INTERVAL_MS
    ) {
      return false;
    }
    this.#lastRefusalLogin = now;
    this.#current = undefined;
    return true;
  }

  async close(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    if (current === undefined) return;
    try {
      const answer = await this.#deps.http.exchange({
        method: 'POST',
        apiPath: 'auth/token/revoke-self',
        token: current.token,
        operation: 'token revocation',
        signal: AbortSignal.timeout(2_000),
      });
      if (answer.status >= 300) {
        this.#deps.log.debug('vault token revocation refused', { status: answer.status });
      }
    } catch (error) {
      // The token expires on its own at the end of its TTL; revoking only shortens that.
      this.#deps.log.debug('vault token revocation failed', {
        code: (error as { code?: unknown }).code,
      });
    }
  }

  #due(state: TokenState): boolean {
    return state.ttlMs > 0 && this.#deps.now() >= state.issuedAt + state.ttlMs * RENEW_AT_FRACTION;
  }

  async #refresh(current: TokenState | undefined): Promise<TokenState> {
    if (current?.renewable && this.#deps.now() < current.issuedAt + current.ttlMs) {
      try {
        const renewed = await this.#renew(current);
        if (renewed.ttlMs * 3 >= current.loginTtlMs) {
          this.#current = renewed;
          return renewed;
        }
        this.#deps.log.debug('vault token is near its max TTL; logging in again', {
          mount: this.#mount,
          ttlSeconds: Math.round(renewed.ttlMs / 1000),
        });
      } catch (error) {
        this.#deps.log.debug('vault token renewal failed; logging in again', {
          mount: this.#mount,
          code: (error as { code?: unknown }).code,
        });
      }
    }
    const fresh = await this.#login();
    this.#current = fresh;
    return fresh;
  }

  async #login(): Promise<TokenState> {
    const apiPath = `auth/${this.#mount}/login`;
    const body: Record<string, string> = { role_id: this.#roleId };
    if (this.#secretId !== undefined) body.secret_id = this.#secretId;
    const answer = await this.#deps.http.exchange({
      method: 'POST',
      apiPath,
      body,
      operation: 'AppRole login',
    });
    if (answer.status === 400 || answer.status === 401 || answer.status === 403) {
      // Vault answers a wrong role or secret ID with 400 (and a policy problem with 403).
      const said = quoteVaultErrors(answer.body);
      throw new VaultProviderError(
        'DSO_PROVIDER_UNAUTHORIZED',
        `vault refused the AppRole login at ${apiPath} (HTTP ${answer.status}${said === undefined ? '' : `: ${said}`}): ` +
          `check auth.roleId and the secret ID (${this.#secretId === undefined ? 'none configured' : 'auth.secretId or auth.secretIdEnv'}), which may be expired or used up`,
        { provider: this.#deps.provider },
        { status: answer.status, ...(said === undefined ? {} : { vaultErrors: said }) },
      );
    }
    if (answer.status !== 200) {
      throw errorForStatus(answer.status, answer.body, answer.retryAfter, {
        provider: this.#deps.provider,
        operation: 'AppRole login',
        apiPath,
        authHint: 'check the AppRole mount and role',
      });
    }
    const state = this.#stateFrom(answer.body, 'AppRole login', apiPath);
    this.#deps.log.debug('vault approle login', {
      mount: this.#mount,
      ttlSeconds: Math.round(state.ttlMs / 1000),
      renewable: state.renewable,
    });
    return state;
  }

  async #renew(current: TokenState): Promise<TokenState> {
    const apiPath = 'auth/token/renew-self';
    const answer = await this.#deps.http.exchange({
      method: 'POST',
      apiPath,
      body: {},
      token: current.token,
      operation: 'token renewal',
    });
    if (answer.status !== 200) {
      throw errorForStatus(answer.status, answer.body, answer.retryAfter, {
        provider: this.#deps.provider,
        operation: 'token renewal',
        apiPath,
        authHint: 'the token can no longer be renewed',
      });
    }
    const renewed = this.#stateFrom(answer.body, 'token renewal', apiPath);
    return { ...renewed, loginTtlMs: current.loginTtlMs };
  }

  #stateFrom(body: unknown, operation: string, apiPath: string): TokenState {
    const auth = (body as { auth?: Record<string, unknown> } | undefined)?.auth;
    const token = auth?.client_token;
    const lease = auth?.lease_duration;
    if (typeof token !== 'string' || token === '' || typeof lease !== 'number' || lease < 0) {
      throw new VaultProviderError(
        'DSO_PROVIDER_INTERNAL',
        `vault's answer to ${operation} at ${apiPath} holds no client token and lease: is auth/${this.#mount} an AppRole mount?`,
        { provider: this.#deps.provider },
        { status: 200 },
      );
    }
    const ttlMs = lease * 1000;
    return {
      token,
      issuedAt: this.#deps.now(),
      ttlMs,
      renewable: auth?.renewable === true,
      loginTtlMs: ttlMs,
    };
  }
}

/** What a caller that gave up on a login in progress gets. */
function loginCancelled(provider: string): VaultProviderError {
  return new VaultProviderError('DSO_PROVIDER_TIMEOUT', 'vault login was cancelled by the caller', {
    provider,
  });
}
