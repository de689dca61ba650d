/**
 * A fake of Azure Key Vault's secrets REST API and of the Entra ID (Azure AD) token endpoint,
 * served over HTTPS on 127.0.0.1, for testing the provider through the real Azure SDK. Not
 * exported from the package: tests only. What it reproduces and what it does not is listed in
 * the README ("Testing against a fake").
 */
import { randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import {
  createServer as createHttpServer,
  type Server as HttpServer,
  type IncomingMessage,
  type ServerResponse,
} from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';

/** API versions of the Key Vault data plane the fake answers, as the service lists them. */
export const FAKE_API_VERSIONS: readonly string[] = Object.freeze([
  '7.0',
  '7.1',
  '7.2',
  '7.3',
  '7.4',
  '7.5',
  '7.6',
  '2025-07-01',
]);

/** The resource Key Vault names in its bearer challenge (public cloud). */
export const KEY_VAULT_RESOURCE = 'https://vault.azure.net';

/** Key Vault's limit on a secret value: 25 KB (its documented service limit). */
export const FAKE_MAX_VALUE_BYTES = 25 * 1024;

const NAME = /^[0-9a-zA-Z-]{1,127}$/;
const MAX_BODY_BYTES = 1024 * 1024;

export interface FakeKeyVaultOptions {
  /** PEM key and certificate the server presents (see `createTestCertificates`). */
  tls: { key: string; cert: string };
  /** @default a random GUID */
  tenantId?: string;
  /** The one application registered in the fake tenant. @default random id and secret */
  clientId?: string;
  clientSecret?: string;
  /** A federated token (workload identity) the token endpoint accepts as `client_assertion`. */
  federatedToken?: string;
  /** Items per page when the request names no `maxresults`. @default 25, the service's */
  pageSize?: number;
  /** Put an empty page (with a `nextLink`) between pages, as the real service sometimes does. */
  emptyPages?: boolean;
  /** Lifetime of issued access tokens. @default 3599, what Entra ID issues */
  tokenLifetimeSeconds?: number;
  /** @default FAKE_MAX_VALUE_BYTES */
  maxValueBytes?: number;
  /**
   * Also serve an App Service style managed identity endpoint, plain HTTP on 127.0.0.1 as App
   * Service's is on localhost (`IDENTITY_ENDPOINT` / `IDENTITY_HEADER`). `clientId` is the
   * user-assigned identity it knows, besides the system-assigned one.
   */
  managedIdentity?: { clientId?: string };
}

/** One stored version, as the fake keeps it. */
export interface FakeSecretVersion {
  name: string;
  version: string;
  value: string;
  contentType?: string;
  tags?: Record<string, string>;
  enabled: boolean;
  /** Seconds since the epoch, as Key Vault's `IntDate`. */
  nbf?: number;
  exp?: number;
  created: number;
  updated: number;
}

/** Attributes a test can set on a version. Dates are converted to Key Vault's seconds. */
export interface FakeSecretAttributes {
  contentType?: string;
  tags?: Record<string, string>;
  enabled?: boolean;
  notBefore?: Date;
  expiresOn?: Date;
}

/** What the fake saw: method, route, and whether a valid token came with it. Never bodies. */
export interface FakeRequest {
  method: string;
  /** Path without the query string, e.g. `/secrets/db/1a2b…`. */
  path: string;
  query: Record<string, string>;
  /** The `Host` header the client sent. */
  host: string | undefined;
  kind:
    | 'vault'
    | 'token'
    | 'openid-configuration'
    | 'instance-discovery'
    | 'managed-identity'
    | 'other';
  authorized: boolean;
}

/** Which requests a fault affects. */
interface FaultScope {
  /** The Key Vault API (after a valid token, so the challenge still completes) or the token endpoint. @default 'vault' */
  target?: 'vault' | 'token';
  /** Requests of the target to let through first. @default 0 */
  skip?: number;
  /** How many requests it affects; then it ends by itself. @default every one */
  count?: number;
}

/**
 * A failure to produce. `status` answers with the service's error body (and `Retry-After` when
 * given); `reset` destroys the connection; `hang` never answers; `truncated` answers 200 with
 * the first half of the real body (a value included), as a connection cut mid-answer would.
 */
export type FakeFault =
  | (FaultScope & {
      kind: 'status';
      status: 400 | 401 | 403 | 404 | 429 | 500 | 503;
      retryAfterSeconds?: number;
      /** For 403: `AccessDenied` (access policies, the default) or `ForbiddenByRbac`. */
      innerCode?: string;
    })
  | (FaultScope & { kind: 'reset' | 'hang' | 'truncated' });

export interface FakeKeyVault {
  /** `https://127.0.0.1:<port>/`: what `vaultUrl` names. */
  readonly vaultUrl: string;
  /** `https://127.0.0.1:<port>`: what `authorityHost` names (the same server). */
  readonly authorityHost: string;
  /** With `managedIdentity`: what `IDENTITY_ENDPOINT` and `IDENTITY_HEADER` must hold. */
  readonly managedIdentityEndpoint: string | undefined;
  readonly managedIdentityHeader: string | undefined;
  readonly tenantId: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Every request received, oldest first. */
  readonly requests: readonly FakeRequest[];
  /** Access tokens issued so far. */
  readonly tokensIssued: number;
  /** Every access token issued, for tests that prove none leaks. */
  readonly issuedTokens: readonly string[];
  /** Stores a new current version directly (no HTTP); returns it. */
  setSecret(name: string, value: string, attributes?: FakeSecretAttributes): FakeSecretVersion;
  /** Changes a stored version's attributes; `version` absent means the current one. */
  updateSecret(name: string, version: string | undefined, attributes: FakeSecretAttributes): void;
  /** Removes a secret and all its versions (as a purge would). */
  deleteSecret(name: string): void;
  /** Every version of a secret, oldest first. */
  versions(name: string): FakeSecretVersion[];
  /** Starts a fault; the function returned ends it. Faults stack: the newest applies first. */
  fault(fault: FakeFault): () => void;
  /** Makes every issued token invalid, as if they had expired or been revoked. */
  revokeTokens(): void;
  close(): Promise<void>;
}

interface StoredSecret {
  name: string;
  versions: FakeSecretVersion[];
}

interface ActiveFault {
  fault: FakeFault;
  skip: number;
  remaining: number;
}

/**
 * Starts the fake on an ephemeral port of 127.0.0.1.
 *
 * @example
 * const certs = await createTestCertificates();
 * const fake = await startFakeKeyVault({ tls: { key: certs.serverKeyPem, cert: certs.serverCertPem } });
 * fake.setSecret('db-password', 's3cret');
 * // point the provider at fake.vaultUrl, authorityHost fake.authorityHost, tls.caFile certs.caFile
 * await fake.close();
 */
export async function startFakeKeyVault(options: FakeKeyVaultOptions): Promise<FakeKeyVault> {
  const tenantId = options.tenantId ?? randomUUID();
  const clientId = options.clientId ?? randomUUID();
  const clientSecret =
    options.clientSecret ?? `fake-client-secret-${randomBytes(12).toString('hex')}`;
  const pageSize = options.pageSize ?? 25;
  const tokenLifetimeSeconds = options.tokenLifetimeSeconds ?? 3599;
  const maxValueBytes = options.maxValueBytes ?? FAKE_MAX_VALUE_BYTES;
  const secrets = new Map<string, StoredSecret>();
  const tokens = new Map<string, { expiresAt: number; resource: string }>();
  const issuedTokens: string[] = [];
  const requests: FakeRequest[] = [];
  const faults: ActiveFault[] = [];
  const sockets = new Set<Socket>();
  let tokensIssued = 0;
  let origin = '';

  const nowSeconds = () => Math.floor(Date.now() / 1000);
  const toSeconds = (date: Date | undefined) =>
    date === undefined ? undefined : Math.floor(date.getTime() / 1000);

  const store = (name: string, value: string, attributes: FakeSecretAttributes = {}) => {
    const key = name.toLowerCase();
    const existing = secrets.get(key);
    const secret = existing ?? { name, versions: [] };
    const now = nowSeconds();
    const entry: FakeSecretVersion = {
      name: secret.name,
      version: randomBytes(16).toString('hex'),
      value,
      contentType: attributes.contentType,
      tags: attributes.tags,
      enabled: attributes.enabled ?? true,
      nbf: toSeconds(attributes.notBefore),
      exp: toSeconds(attributes.expiresOn),
      created: now,
      updated: now,
    };
    secret.versions.push(entry);
    secrets.set(key, secret);
    return entry;
  };

  const find = (name: string, version?: string) => {
    const secret = secrets.get(name.toLowerCase());
    if (secret === undefined) return undefined;
    if (version === undefined || version === '') return secret.versions.at(-1);
    return secret.versions.find((entry) => entry.version === version.toLowerCase());
  };

  const applyAttributes = (entry: FakeSecretVersion, attributes: FakeSecretAttributes) => {
    if (attributes.contentType !== undefined) entry.contentType = attributes.contentType;
    if (attributes.tags !== undefined) entry.tags = attributes.tags;
    if (attributes.enabled !== undefined) entry.enabled = attributes.enabled;
    if (attributes.notBefore !== undefined) entry.nbf = toSeconds(attributes.notBefore);
    if (attributes.expiresOn !== undefined) entry.exp = toSeconds(attributes.expiresOn);
    entry.updated = nowSeconds();
  };

  // --- response shapes -------------------------------------------------------------------------

  const attributesJson = (entry: FakeSecretVersion) => ({
    enabled: entry.enabled,
    ...(entry.nbf === undefined ? {} : { nbf: entry.nbf }),
    ...(entry.exp === undefined ? {} : { exp: entry.exp }),
    created: entry.created,
    updated: entry.updated,
    recoveryLevel: 'Recoverable+Purgeable',
    recoverableDays: 90,
  });

  const bundleJson = (entry: FakeSecretVersion) => ({
    value: entry.value,
    ...(entry.contentType === undefined ? {} : { contentType: entry.contentType }),
    id: `${origin}/secrets/${entry.name}/${entry.version}`,
    attributes: attributesJson(entry),
    ...(entry.tags === undefined ? {} : { tags: entry.tags }),
  });

  const itemJson = (entry: FakeSecretVersion, withVersion: boolean) => ({
    id: `${origin}/secrets/${entry.name}${withVersion ? `/${entry.version}` : ''}`,
    attributes: attributesJson(entry),
    ...(entry.contentType === undefined ? {} : { contentType: entry.contentType }),
    ...(entry.tags === undefined ? {} : { tags: entry.tags }),
  });

  const truncating = new WeakSet<ServerResponse>();

  const send = (
    response: ServerResponse,
    status: number,
    body: unknown,
    headers: Record<string, string> = {},
  ) => {
    let text = body === undefined ? '' : JSON.stringify(body);
    if (truncating.has(response)) text = text.slice(0, Math.ceil(text.length / 2));
    response.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'cache-control': 'no-cache',
      'x-ms-request-id': randomUUID(),
      'x-ms-keyvault-service-version': '1.9.2795.1',
      'x-ms-keyvault-region': 'fakeregion',
      'content-length': String(Buffer.byteLength(text)),
      ...headers,
    });
    response.end(text);
  };

  const vaultError = (
    response: ServerResponse,
    status: number,
    code: string,
    message: string,
    extra: { innerCode?: string; headers?: Record<string, string> } = {},
  ) =>
    send(
      response,
      status,
      {
        error: {
          code,
          message,
          ...(extra.innerCode === undefined ? {} : { innererror: { code: extra.innerCode } }),
        },
      },
      extra.headers,
    );

  const challenge = () =>
    `Bearer authorization="${origin}/${tenantId}", resource="${KEY_VAULT_RESOURCE}"`;

  const oauthError = (
    response: ServerResponse,
    status: number,
    error: string,
    code: number,
    description: string,
  ) =>
    send(response, status, {
      error,
      error_description: `AADSTS${code}: ${description} Trace ID: ${randomUUID()} Correlation ID: ${randomUUID()} Timestamp: ${new Date().toISOString()}`,
      error_codes: [code],
      timestamp: new Date().toISOString(),
      trace_id: randomUUID(),
      correlation_id: randomUUID(),
    });

  // --- faults ----------------------------------------------------------------------------------

  const takeFault = (target: 'vault' | 'token') => {
    for (let index = faults.length - 1; index >= 0; index--) {
      const active = faults[index]!;
      if ((active.fault.target ?? 'vault') !== target) continue;
      if (active.skip > 0) {
        active.skip -= 1;
        return undefined;
      }
      active.remaining -= 1;
      if (active.remaining <= 0) faults.splice(index, 1);
      return active.fault;
    }
    return undefined;
  };

  /** Produces the fault; true when the request was answered (or dropped) by it. */
  const produceFault = (
    fault: FakeFault | undefined,
    request: IncomingMessage,
    response: ServerResponse,
  ): boolean => {
    if (fault === undefined) return false;
    if (fault.kind === 'truncated') return false;
    if (fault.kind !== 'status') {
      // A hang answers nothing: the socket stays open until the client gives up or close().
      if (fault.kind === 'reset') request.socket.destroy();
      return true;
    }
    const headers: Record<string, string> =
      fault.retryAfterSeconds === undefined
        ? {}
        : { 'retry-after': String(fault.retryAfterSeconds) };
    if (fault.target === 'token') {
      if (fault.status >= 500 || fault.status === 429) {
        send(
          response,
          fault.status,
          {
            error: 'temporarily_unavailable',
            error_description: 'AADSTS50196: The server is temporarily unavailable.',
            error_codes: [50196],
          },
          headers,
        );
      } else {
        oauthError(
          response,
          fault.status === 400 ? 400 : 401,
          'invalid_client',
          7000215,
          'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.',
        );
      }
      return true;
    }
    switch (fault.status) {
      case 401:
        vaultError(response, 401, 'Unauthorized', 'AKV10032: Invalid issuer.', {
          headers: { 'www-authenticate': challenge() },
        });
        return true;
      case 403:
        if (fault.innerCode === 'ForbiddenByRbac') {
          vaultError(
            response,
            403,
            'Forbidden',
            `Caller is not authorized to perform action on resource.\r\nCaller: appid=${clientId}\r\nAction: 'Microsoft.KeyVault/vaults/secrets/getSecret/action'\r\nAssignment: (not found)`,
            { innerCode: 'ForbiddenByRbac' },
          );
        } else {
          vaultError(
            response,
            403,
            'Forbidden',
            `The user, group or application 'appid=${clientId};iss=https://sts.windows.net/${tenantId}/' does not have secrets get permission on key vault 'fake;location=fakeregion'. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125287`,
            { innerCode: fault.innerCode ?? 'AccessDenied' },
          );
        }
        return true;
      case 404:
        vaultError(response, 404, 'NotFound', 'The requested resource was not found.');
        return true;
      case 429:
        vaultError(
          response,
          429,
          'Throttled',
          'Request was not processed because too many requests were received. Reason: A_Tenant_10s_ReadOnly',
          { headers },
        );
        return true;
      case 500:
        vaultError(response, 500, 'InternalServerError', 'An internal server error occurred.', {
          headers,
        });
        return true;
      case 503:
        vaultError(response, 503, 'ServiceUnavailable', 'The service is unavailable.', { headers });
        return true;
      default:
        vaultError(response, 400, 'BadParameter', 'The request is invalid.');
        return true;
    }
  };

  // --- routes ----------------------------------------------------------------------------------

  const readBody = (request: IncomingMessage) =>
    new Promise<string>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      request.on('data', (chunk: Buffer) => {
        size += chunk.byteLength;
        if (size > MAX_BODY_BYTES) {
          request.destroy();
          reject(new Error('request body too large'));
          return;
        }
        chunks.push(chunk);
      });
      request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
      request.on('error', reject);
    });

  const isAuthorized = (request: IncomingMessage) => {
    const header = request.headers.authorization ?? '';
    const match = /^Bearer (\S+)$/i.exec(header);
    if (match === null) return false;
    const token = tokens.get(match[1]!);
    return (
      token !== undefined && token.expiresAt > Date.now() && token.resource === KEY_VAULT_RESOURCE
    );
  };

  const page = <T>(
    response: ServerResponse,
    query: Record<string, string>,
    path: string,
    items: T[],
  ) => {
    const maxResults = query.maxresults === undefined ? pageSize : Number(query.maxresults);
    if (!Number.isInteger(maxResults) || maxResults < 1 || maxResults > 25) {
      vaultError(
        response,
        400,
        'BadParameter',
        'Invalid maxresults value. It must be between 1 and 25.',
      );
      return;
    }
    let offset = 0;
    let empty = false;
    if (query.$skiptoken !== undefined) {
      try {
        const state = JSON.parse(Buffer.from(query.$skiptoken, 'base64url').toString('utf8')) as {
          offset: number;
          empty?: boolean;
        };
        offset = state.offset;
        empty = state.empty === true;
      } catch {
        // A skiptoken the fake did not make: the real service answers 400 for those too.
        vaultError(response, 400, 'BadParameter', 'The skiptoken is invalid.');
        return;
      }
    }
    const link = (state: { offset: number; empty?: boolean }) =>
      `${origin}${path}?api-version=${query['api-version']}&$skiptoken=${Buffer.from(JSON.stringify(state)).toString('base64url')}&maxresults=${maxResults}`;
    if (empty) {
      send(response, 200, { value: [], nextLink: link({ offset }) });
      return;
    }
    const slice = items.slice(offset, offset + maxResults);
    const next = offset + slice.length;
    const more = next < items.length;
    send(response, 200, {
      value: slice,
      nextLink: more ? link({ offset: next, empty: options.emptyPages === true }) : null,
    });
  };

  const handleVault = async (
    request: IncomingMessage,
    response: ServerResponse,
    segments: string[],
    query: Record<string, string>,
    authorized: boolean,
  ) => {
    const apiVersion = query['api-version'];
    if (apiVersion === undefined) {
      vaultError(response, 400, 'BadParameter', 'The api-version query parameter is missing.');
      return;
    }
    if (!FAKE_API_VERSIONS.includes(apiVersion)) {
      vaultError(
        response,
        400,
        'BadParameter',
        `The specified version (${apiVersion}) is not recognized. Consider using the latest supported version (2025-07-01).`,
      );
      return;
    }
    if (!authorized) {
      vaultError(
        response,
        401,
        'Unauthorized',
        'AKV10000: Request is missing a Bearer or PoP token.',
        {
          headers: { 'www-authenticate': challenge() },
        },
      );
      return;
    }
    const fault = takeFault('vault');
    if (fault?.kind === 'truncated') truncating.add(response);
    if (produceFault(fault, request, response)) return;
    const method = request.method ?? 'GET';
    const [, name, version, extra] = segments;
    // GET /secrets
    if (name === undefined) {
      if (method !== 'GET') return methodNotAllowed(response);
      const items = [...secrets.values()]
        .sort((a, b) => a.name.localeCompare(b.name))
        .map((secret) => itemJson(secret.versions.at(-1)!, false));
      page(response, query, '/secrets', items);
      return;
    }
    if (!NAME.test(name)) {
      vaultError(
        response,
        400,
        'BadParameter',
        `The request URI contains an invalid name: ${name}. Follow this link for more information on how to create a valid name: https://learn.microsoft.com/azure/key-vault/general/about-keys-secrets-certificates`,
      );
      return;
    }
    if (extra !== undefined) return notFoundRoute(response);
    // GET /secrets/{name}/versions
    if (version === 'versions' && method === 'GET') {
      const secret = secrets.get(name.toLowerCase());
      if (secret === undefined) {
        secretNotFound(response, name);
        return;
      }
      // The service does not promise an order; the fake sorts by version id, which is random.
      const items = [...secret.versions]
        .sort((a, b) => a.version.localeCompare(b.version))
        .map((entry) => itemJson(entry, true));
      page(response, query, `/secrets/${secret.name}/versions`, items);
      return;
    }
    if (method === 'PUT' && version === undefined) {
      await putSecret(request, response, name);
      return;
    }
    if (method === 'GET') {
      const entry = find(name, version);
      if (entry === undefined) {
        secretNotFound(response, version === undefined ? name : `${name}/${version}`);
        return;
      }
      if (!entry.enabled) {
        vaultError(
          response,
          403,
          'Forbidden',
          'Operation get is not allowed on a disabled secret.',
          {
            innerCode: 'SecretDisabled',
          },
        );
        return;
      }
      // Key Vault serves expired and not-yet-valid secrets: for secrets `exp` and `nbf` are
      // informational, and the client decides. The fake does the same.
      send(response, 200, bundleJson(entry));
      return;
    }
    if (method === 'PATCH' && version !== undefined) {
      const entry = find(name, version);
      if (entry === undefined) {
        secretNotFound(response, `${name}/${version}`);
        return;
      }
      const body = await parseJsonBody(request, response);
      if (body === undefined) return;
      const attributes = (body.attributes ?? {}) as Record<string, unknown>;
      applyAttributes(entry, {
        contentType: typeof body.contentType === 'string' ? body.contentType : undefined,
        tags: body.tags as Record<string, string> | undefined,
        enabled: typeof attributes.enabled === 'boolean' ? attributes.enabled : undefined,
        notBefore: typeof attributes.nbf === 'number' ? new Date(attributes.nbf * 1000) : undefined,
        expiresOn: typeof attributes.exp === 'number' ? new Date(attributes.exp * 1000) : undefined,
      });
      const { value: _value, ...withoutValue } = bundleJson(entry);
      send(response, 200, withoutValue);
      return;
    }
    methodNotAllowed(response);
  };

  const parseJsonBody = async (request: IncomingMessage, response: ServerResponse) => {
    let text: string;
    try {
      text = await readBody(request);
    } catch {
      // The connection was destroyed for an oversized body; there is no one left to answer.
      return undefined;
    }
    try {
      const parsed = JSON.parse(text) as unknown;
      if (typeof parsed !== 'object' || parsed === null) throw new TypeError('not an object');
      return parsed as Record<string, unknown>;
    } catch {
      vaultError(response, 400, 'BadParameter', 'The request body is not valid JSON.');
      return undefined;
    }
  };

  const putSecret = async (request: IncomingMessage, response: ServerResponse, name: string) => {
    const body = await parseJsonBody(request, response);
    if (body === undefined) return;
    if (typeof body.value !== 'string') {
      vaultError(response, 400, 'BadParameter', 'Property value is required.');
      return;
    }
    if (Buffer.byteLength(body.value, 'utf8') > maxValueBytes) {
      vaultError(response, 400, 'BadParameter', 'The secret value is too large.');
      return;
    }
    const attributes = (body.attributes ?? {}) as Record<string, unknown>;
    const entry = store(name, body.value, {
      contentType: typeof body.contentType === 'string' ? body.contentType : undefined,
      tags: body.tags as Record<string, string> | undefined,
      enabled: typeof attributes.enabled === 'boolean' ? attributes.enabled : undefined,
      notBefore: typeof attributes.nbf === 'number' ? new Date(attributes.nbf * 1000) : undefined,
      expiresOn: typeof attributes.exp === 'number' ? new Date(attributes.exp * 1000) : undefined,
    });
    send(response, 200, bundleJson(entry));
  };

  const secretNotFound = (response: ServerResponse, nameOrId: string) =>
    vaultError(
      response,
      404,
      'SecretNotFound',
      `A secret with (name/id) ${nameOrId} was not found in this key vault. If you recently deleted this secret you may be able to recover it using the correct recovery command. For help resolving this issue, please see https://go.microsoft.com/fwlink/?linkid=2125182`,
    );

  const notFoundRoute = (response: ServerResponse) =>
    vaultError(response, 404, 'NotFound', 'The requested route does not exist.');

  const methodNotAllowed = (response: ServerResponse) =>
    vaultError(response, 405, 'MethodNotAllowed', 'The method is not allowed on this resource.');

  const handleToken = async (
    request: IncomingMessage,
    response: ServerResponse,
    tenant: string,
  ) => {
    if (produceFault(takeFault('token'), request, response)) return;
    if (tenant.toLowerCase() !== tenantId.toLowerCase()) {
      oauthError(response, 400, 'invalid_request', 90002, `Tenant '${tenant}' not found.`);
      return;
    }
    let form: URLSearchParams;
    try {
      form = new URLSearchParams(await readBody(request));
    } catch {
      return;
    }
    if (form.get('grant_type') !== 'client_credentials') {
      oauthError(
        response,
        400,
        'unsupported_grant_type',
        70003,
        'The app requested an unsupported grant type.',
      );
      return;
    }
    if (form.get('client_id') !== clientId) {
      oauthError(
        response,
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${form.get('client_id')}' was not found in the directory '${tenantId}'.`,
      );
      return;
    }
    const secret = form.get('client_secret');
    const assertion = form.get('client_assertion');
    const secretOk = secret !== null && equal(secret, clientSecret);
    const assertionOk =
      assertion !== null &&
      options.federatedToken !== undefined &&
      equal(assertion, options.federatedToken);
    if (!secretOk && !assertionOk) {
      oauthError(
        response,
        401,
        'invalid_client',
        7000215,
        'Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.',
      );
      return;
    }
    const scopes = (form.get('scope') ?? '').split(' ');
    const resourceScope = scopes.find((scope) => scope.endsWith('/.default'));
    if (resourceScope === undefined) {
      oauthError(
        response,
        400,
        'invalid_scope',
        1002012,
        'The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.',
      );
      return;
    }
    const token = issueToken(resourceScope.slice(0, -'/.default'.length));
    send(response, 200, {
      token_type: 'Bearer',
      expires_in: tokenLifetimeSeconds,
      ext_expires_in: tokenLifetimeSeconds,
      access_token: token,
    });
  };

  const issueToken = (resource: string) => {
    const token = `fake-access-token.${randomBytes(24).toString('base64url')}`;
    tokens.set(token, { expiresAt: Date.now() + tokenLifetimeSeconds * 1000, resource });
    tokensIssued += 1;
    issuedTokens.push(token);
    return token;
  };

  // App Service's managed identity protocol (api-version 2019-08-01): a GET with the resource
  // and, for a user-assigned identity, its client_id; the secret header proves the caller runs
  // on the host. Errors are App Service's `{ statusCode, message }`.
  const managedIdentityHeader =
    options.managedIdentity === undefined ? undefined : randomBytes(16).toString('hex');
  const handleManagedIdentity = (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'http://fake.invalid');
    requests.push({
      method: request.method ?? 'GET',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      host: request.headers.host,
      kind: 'managed-identity',
      authorized: false,
    });
    const fail = (status: number, message: string) =>
      send(response, status, { statusCode: status, message, correlationId: randomUUID() });
    if (url.pathname !== '/msi/token' || request.method !== 'GET') return fail(404, 'Not found.');
    if (request.headers['x-identity-header'] !== managedIdentityHeader) {
      return fail(401, 'The X-IDENTITY-HEADER header is missing or wrong.');
    }
    const resource = url.searchParams.get('resource');
    if (url.searchParams.get('api-version') !== '2019-08-01' || resource === null) {
      return fail(400, 'The api-version and resource parameters are required.');
    }
    const requested = url.searchParams.get('client_id');
    if (requested !== null && requested !== options.managedIdentity?.clientId) {
      return fail(400, 'No MSI found for specified ClientId/ResourceId.');
    }
    const token = issueToken(resource.replace(/\/$/, ''));
    send(response, 200, {
      access_token: token,
      expires_on: String(Math.floor(Date.now() / 1000) + tokenLifetimeSeconds),
      resource,
      token_type: 'Bearer',
      client_id: requested ?? 'system-assigned',
    });
  };

  const handleOpenIdConfiguration = (response: ServerResponse, tenant: string) => {
    const base = `${origin}/${tenant}`;
    send(response, 200, {
      token_endpoint: `${base}/oauth2/v2.0/token`,
      token_endpoint_auth_methods_supported: [
        'client_secret_post',
        'private_key_jwt',
        'client_secret_basic',
      ],
      jwks_uri: `${origin}/${tenant}/discovery/v2.0/keys`,
      response_modes_supported: ['query', 'fragment', 'form_post'],
      subject_types_supported: ['pairwise'],
      id_token_signing_alg_values_supported: ['RS256'],
      response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
      scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
      issuer: `${origin}/${tenant}/v2.0`,
      request_uri_parameter_supported: false,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      device_authorization_endpoint: `${base}/oauth2/v2.0/devicecode`,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat'],
      tenant_region_scope: null,
      cloud_instance_name: 'fake.local',
    });
  };

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    const url = new URL(request.url ?? '/', 'https://fake.invalid');
    const query = Object.fromEntries(url.searchParams);
    const segments = url.pathname
      .split('/')
      .filter((segment) => segment !== '')
      .map(decodeURIComponent);
    let kind: FakeRequest['kind'] = 'other';
    if (segments[0] === 'secrets') kind = 'vault';
    else if (segments[1] === 'oauth2' && segments[2] === 'v2.0' && segments[3] === 'token')
      kind = 'token';
    else if (segments[1] === 'v2.0' && segments[2] === '.well-known') kind = 'openid-configuration';
    else if (segments[1] === 'discovery' && segments[2] === 'instance') kind = 'instance-discovery';
    const authorized = isAuthorized(request);
    requests.push({
      method: request.method ?? 'GET',
      path: url.pathname,
      query,
      host: request.headers.host,
      kind,
      authorized,
    });
    switch (kind) {
      case 'vault':
        return handleVault(request, response, segments, query, authorized);
      case 'token':
        if (request.method !== 'POST') return methodNotAllowed(response);
        return handleToken(request, response, segments[0]!);
      case 'openid-configuration':
        return handleOpenIdConfiguration(response, segments[0]!);
      default:
        // Instance discovery included: a client pointed at the fake must not need it.
        return notFoundRoute(response);
    }
  };

  const server: Server = createServer(
    { key: options.tls.key, cert: options.tls.cert },
    (request, response) => {
      handle(request, response).catch(() => {
        // A handler failed after the client went away; nothing is left to answer.
        if (!response.headersSent) response.destroy();
      });
    },
  );
  server.on('secureConnection', (socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  origin = `https://127.0.0.1:${port}`;

  let identityServer: HttpServer | undefined;
  let managedIdentityEndpoint: string | undefined;
  if (options.managedIdentity !== undefined) {
    const started = createHttpServer(handleManagedIdentity);
    identityServer = started;
    await new Promise<void>((resolve, reject) => {
      started.once('error', reject);
      started.listen(0, '127.0.0.1', () => resolve());
    });
    managedIdentityEndpoint = `http://127.0.0.1:${(started.address() as AddressInfo).port}/msi/token`;
  }

  return {
    vaultUrl: `${origin}/`,
    authorityHost: origin,
    managedIdentityEndpoint,
    managedIdentityHeader,
    tenantId,
    clientId,
    clientSecret,
    requests,
    get tokensIssued() {
      return tokensIssued;
    },
    issuedTokens,
    setSecret(name, value, attributes) {
      if (!NAME.test(name)) throw new TypeError(`not a Key Vault secret name: ${name}`);
      return { ...store(name, value, attributes) };
    },
    updateSecret(name, version, attributes) {
      const entry = find(name, version);
      if (entry === undefined) throw new TypeError(`no secret ${name}/${version ?? '(current)'}`);
      applyAttributes(entry, attributes);
    },
    deleteSecret(name) {
      secrets.delete(name.toLowerCase());
    },
    versions(name) {
      return (secrets.get(name.toLowerCase())?.versions ?? []).map((entry) => ({ ...entry }));
    },
    fault(fault) {
      const active: ActiveFault = {
        fault,
        skip: fault.skip ?? 0,
        remaining: fault.count ?? Number.POSITIVE_INFINITY,
      };
      faults.push(active);
      return () => {
        const index = faults.indexOf(active);
        if (index >= 0) faults.splice(index, 1);
      };
    },
    revokeTokens() {
      tokens.clear();
    },
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      server.closeAllConnections();
      if (identityServer !== undefined) {
        const identityClosed = new Promise<void>((resolve) =>
          identityServer.close(() => resolve()),
        );
        identityServer.closeAllConnections();
        await identityClosed;
      }
      await closed;
    },
  };
}

function equal(a: string, b: string): boolean {
  const left = Buffer.from(a);
  const right = Buffer.from(b);
  return left.byteLength === right.byteLength && timingSafeEqual(left, right);
}
