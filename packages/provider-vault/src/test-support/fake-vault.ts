import { randomBytes, randomUUID } from 'node:crypto';
import { pause } from '@dso/async';
import {
  type Http1Request,
  type Http1Response,
  type Http1Server,
  startHttp1Server,
} from './http1-server.js';

/**
 * A fake of HashiCorp Vault's HTTP API, enough of it for the `vault` provider: token auth,
 * namespaces, AppRole login with TTLs, token renewal and revocation, the KV version 2 engine
 * (read with versions, write, delete/undelete/destroy, metadata, LIST in both forms), and
 * `sys/health`, with Vault's status codes and `{"errors":[…]}` bodies. Faults make it answer
 * 403, 429 with Retry-After, 503 sealed, 500, or slowly. Served on 127.0.0.1 over HTTP or
 * HTTPS. For tests and the conformance fixture only; not exported from the package.
 *
 * @example
 * const vault = await startFakeVault();
 * const token = vault.createToken();
 * vault.write('app/db', { password: 's3cret' }); // 1
 * // GET {vault.address}/v1/secret/data/app/db with X-Vault-Token: token
 * await vault.close();
 */
export interface FakeVault {
  /** `http://127.0.0.1:<port>` or `https://…`. */
  readonly address: string;
  /** A token of the root namespace that never expires and may do anything. */
  readonly rootToken: string;
  /** Every request seen, in order, without token values or bodies. */
  readonly requests: readonly FakeVaultRequestRecord[];
  /** Counters for tests. */
  readonly stats: { logins: number; renewals: number; revocations: number };
  /** Issues a token. */
  createToken(options?: FakeTokenOptions): string;
  /** Revokes a token: Vault then refuses it with 403. */
  revokeToken(token: string): void;
  /** Revokes every token `select` picks (never the root token); returns how many. */
  revokeTokens(select: (token: { namespace: string; roleName?: string }) => boolean): number;
  /** Creates a namespace (its parents too) with a KV v2 mount `secret`. */
  createNamespace(namespace: string): void;
  /** Mounts a KV version 2 engine. */
  mountKv(mount: string, options?: { namespace?: string; maxVersions?: number }): void;
  /** Creates an AppRole role; returns its role ID and (unless `bindSecretId: false`) a secret ID. */
  addAppRole(options?: FakeAppRoleOptions): { roleId: string; secretId?: string };
  /** Writes a new version, as `POST /v1/<mount>/data/<path>` does; returns the version number. */
  write(path: string, data: Record<string, unknown>, where?: FakeWhere): number;
  /** Soft-deletes versions (`POST /v1/<mount>/delete/<path>`). */
  deleteVersions(path: string, versions: number[], where?: FakeWhere): void;
  /** Permanently destroys versions (`PUT /v1/<mount>/destroy/<path>`). */
  destroyVersions(path: string, versions: number[], where?: FakeWhere): void;
  /** Starts a fault; returns the function that ends it. */
  fault(fault: FakeVaultFault): () => void;
  close(): Promise<void>;
}

/** Which namespace and mount a direct call acts on. */
export interface FakeWhere {
  /** @default '' (the root namespace) */
  namespace?: string;
  /** @default 'secret' */
  mount?: string;
}

export interface FakeTokenOptions {
  /** The namespace the token belongs to (it works there and in its children). @default '' */
  namespace?: string;
  /** 0 for a token that never expires. @default 0 */
  ttlSeconds?: number;
  /** @default ttlSeconds × 10 */
  maxTtlSeconds?: number;
  /** @default true */
  renewable?: boolean;
  /**
   * API paths (after /v1/, without the namespace) the token may use, Vault policy style: exact,
   * or a prefix ending in `*`. @default ['*']
   */
  allow?: string[];
}

export interface FakeAppRoleOptions {
  /** @default '' */
  namespace?: string;
  /** @default 'approle' */
  mount?: string;
  /** @default 'dso' */
  roleName?: string;
  /** @default true */
  bindSecretId?: boolean;
  /** @default 3600 */
  tokenTtlSeconds?: number;
  /** @default tokenTtlSeconds × 10 */
  tokenMaxTtlSeconds?: number;
  /** How many logins the secret ID allows; 0 for any number. @default 0 */
  secretIdNumUses?: number;
  /** As {@link FakeTokenOptions.allow}, for the tokens it issues. */
  allow?: string[];
}

/** A failure the fake can be made to produce. */
export type FakeVaultFault =
  /** 403 `permission denied` on every request except sys/health and logins. */
  | { type: 'permission-denied' }
  /** 429 `rate limit quota exceeded` with `Retry-After` on every request except sys/health. */
  | { type: 'rate-limited'; retryAfterSeconds?: number }
  /** 503 `Vault is sealed` on every request; sys/health answers 503 with `sealed: true`. */
  | { type: 'sealed' }
  /** sys/health answers 429 `standby: true`; requests are served (forwarded, as Vault does). */
  | { type: 'standby' }
  /** 500 `internal error` on every request except sys/health. */
  | { type: 'internal-error' }
  /** Every answer is held back `delayMs` (ends early when the fake closes). */
  | { type: 'slow'; delayMs: number };

/** One request as the fake saw it. */
export interface FakeVaultRequestRecord {
  method: string;
  /** The path after `/v1/`, decoded. */
  path: string;
  query: string;
  namespace: string | undefined;
  hasToken: boolean;
  /** `x-vault-request`, which Vault's own clients send. */
  vaultRequestHeader: boolean;
  clientCertificateCn?: string;
}

export interface FakeVaultOptions {
  /**
   * Serve HTTPS with these (PEM). With `clientCa` the client certificate's CN is recorded; with
   * `requireClientCertificate` too, a client without one fails the TLS handshake, as Vault with
   * `tls_require_and_verify_client_cert` does.
   */
  tls?: { key: string; cert: string; clientCa?: string; requireClientCertificate?: boolean };
  /** The clock token TTLs run on. @default Date.now */
  now?: () => number;
  /**
   * Honour `limit` and `after` on LIST. Vault's KV v2 ignores both and answers with every key:
   * off by default, on to test a client's page following.
   */
  paginateLists?: boolean;
  /** What sys/health reports. @default '1.17.0+fake' */
  version?: string;
}

interface TokenRecord {
  namespace: string;
  /** undefined: never expires. */
  expiresAt: number | undefined;
  maxExpiresAt: number | undefined;
  ttlMs: number;
  renewable: boolean;
  allow: string[];
  accessor: string;
  policies: string[];
  roleName?: string;
}

interface VersionRecord {
  data: Record<string, unknown> | null;
  createdTime: string;
  deletionTime: string;
  destroyed: boolean;
}

interface SecretRecord {
  createdTime: string;
  updatedTime: string;
  currentVersion: number;
  oldestVersion: number;
  versions: Map<number, VersionRecord>;
}

interface KvMount {
  maxVersions: number;
  secrets: Map<string, SecretRecord>;
}

interface AppRole {
  roleName: string;
  roleId: string;
  bindSecretId: boolean;
  secretIds: Map<string, { usesLeft: number | undefined }>;
  tokenTtlSeconds: number;
  tokenMaxTtlSeconds: number;
  allow: string[];
}

interface NamespaceRecord {
  kv: Map<string, KvMount>;
  approle: Map<string, Map<string, AppRole>>;
}

const PERMISSION_DENIED = { status: 403, body: { errors: ['permission denied'] } };
const NOT_FOUND_EMPTY = { status: 404, body: { errors: [] } };

/**
 * Starts a fake Vault on 127.0.0.1 with a KV v2 mount `secret` in the root namespace.
 *
 * @example
 * const vault = await startFakeVault({ tls: { key: pki.serverKeyPem, cert: pki.serverCertPem } });
 */
export async function startFakeVault(options: FakeVaultOptions = {}): Promise<FakeVault> {
  const now = options.now ?? Date.now;
  const namespaces = new Map<string, NamespaceRecord>();
  const tokens = new Map<string, TokenRecord>();
  const faults: FakeVaultFault[] = [];
  const requests: FakeVaultRequestRecord[] = [];
  const stats = { logins: 0, renewals: 0, revocations: 0 };
  const closing = new AbortController();

  const namespaceRecord = (namespace: string) => {
    let record = namespaces.get(namespace);
    if (record === undefined) {
      record = { kv: new Map(), approle: new Map() };
      record.kv.set('secret', { maxVersions: 10, secrets: new Map() });
      namespaces.set(namespace, record);
    }
    return record;
  };
  namespaceRecord('');

  const issueToken = (tokenOptions: FakeTokenOptions & { roleName?: string }) => {
    const token = `hvs.${randomBytes(18).toString('base64url')}`;
    const ttlSeconds = tokenOptions.ttlSeconds ?? 0;
    const maxTtlSeconds = tokenOptions.maxTtlSeconds ?? ttlSeconds * 10;
    tokens.set(token, {
      namespace: normaliseNamespace(tokenOptions.namespace),
      expiresAt: ttlSeconds === 0 ? undefined : now() + ttlSeconds * 1000,
      maxExpiresAt: ttlSeconds === 0 ? undefined : now() + maxTtlSeconds * 1000,
      ttlMs: ttlSeconds * 1000,
      renewable: tokenOptions.renewable ?? true,
      allow: tokenOptions.allow ?? ['*'],
      accessor: randomBytes(12).toString('base64url'),
      policies: tokenOptions.roleName === undefined ? ['root'] : ['default'],
      ...(tokenOptions.roleName === undefined ? {} : { roleName: tokenOptions.roleName }),
    });
    return token;
  };
  const rootToken = issueToken({});

  const liveToken = (token: string | undefined): TokenRecord | undefined => {
    if (token === undefined) return undefined;
    const record = tokens.get(token);
    if (record === undefined) return undefined;
    if (record.expiresAt !== undefined && now() >= record.expiresAt) {
      tokens.delete(token);
      return undefined;
    }
    return record;
  };

  const kvMount = (where: FakeWhere = {}) => {
    const record = namespaces.get(normaliseNamespace(where.namespace));
    const mount = record?.kv.get(where.mount ?? 'secret');
    if (mount === undefined) throw new Error(`fake vault: no KV mount ${where.mount ?? 'secret'}`);
    return mount;
  };

  const writeSecret = (mount: KvMount, path: string, data: Record<string, unknown>) => {
    const time = new Date(now()).toISOString();
    let secret = mount.secrets.get(path);
    if (secret === undefined) {
      secret = {
        createdTime: time,
        updatedTime: time,
        currentVersion: 0,
        oldestVersion: 0,
        versions: new Map(),
      };
      mount.secrets.set(path, secret);
    }
    const version = secret.currentVersion + 1;
    secret.currentVersion = version;
    secret.updatedTime = time;
    secret.versions.set(version, {
      data: structuredClone(data),
      createdTime: time,
      deletionTime: '',
      destroyed: false,
    });
    // Vault keeps max_versions versions and drops the oldest beyond them.
    while (secret.versions.size > mount.maxVersions) {
      const oldest = Math.min(...secret.versions.keys());
      secret.versions.delete(oldest);
    }
    secret.oldestVersion = Math.min(...secret.versions.keys());
    return { version, time };
  };

  const versionState = (record: VersionRecord, version: number) => ({
    created_time: record.createdTime,
    custom_metadata: null,
    deletion_time: record.deletionTime,
    destroyed: record.destroyed,
    version,
  });

  const markVersions = (
    mount: KvMount,
    path: string,
    versions: number[],
    change: (record: VersionRecord) => void,
  ) => {
    const secret = mount.secrets.get(path);
    if (secret === undefined) return;
    for (const version of versions) {
      const record = secret.versions.get(version);
      if (record !== undefined) change(record);
    }
  };
  const softDelete = (record: VersionRecord) => {
    if (record.deletionTime === '' && !record.destroyed) {
      record.deletionTime = new Date(now()).toISOString();
    }
  };
  const destroy = (record: VersionRecord) => {
    record.destroyed = true;
    record.data = null;
  };

  const envelope = (data: unknown, extra: Record<string, unknown> = {}) => ({
    request_id: randomUUID(),
    lease_id: '',
    renewable: false,
    lease_duration: 0,
    data,
    wrap_info: null,
    warnings: null,
    auth: null,
    ...extra,
  });

  const authEnvelope = (token: string, record: TokenRecord) =>
    envelope(null, {
      auth: {
        client_token: token,
        accessor: record.accessor,
        policies: record.policies,
        token_policies: record.policies,
        metadata: record.roleName === undefined ? null : { role_name: record.roleName },
        lease_duration:
          record.expiresAt === undefined
            ? 0
            : Math.max(0, Math.floor((record.expiresAt - now()) / 1000)),
        renewable: record.renewable,
        entity_id: '',
        token_type: 'service',
        orphan: true,
        mfa_requirement: null,
        num_uses: 0,
      },
    });

  const health = (): Http1Response => {
    const sealed = faults.some((fault) => fault.type === 'sealed');
    const standby = faults.some((fault) => fault.type === 'standby');
    const body = {
      initialized: true,
      sealed,
      standby: sealed || standby,
      performance_standby: false,
      replication_performance_mode: 'disabled',
      replication_dr_mode: 'disabled',
      server_time_utc: Math.floor(now() / 1000),
      version: options.version ?? '1.17.0+fake',
      cluster_name: 'vault-cluster-fake',
      cluster_id: 'fake-cluster',
    };
    if (sealed) return { status: 503, body };
    if (standby) return { status: 429, body };
    return { status: 200, body };
  };

  const handle = async (request: Http1Request): Promise<Http1Response> => {
    const apiPath = request.path.startsWith('/v1/') ? request.path.slice(4) : undefined;
    const namespaceHeader = request.headers.get('x-vault-namespace');
    const token = request.headers.get('x-vault-token');
    requests.push({
      method: request.method,
      path: apiPath ?? request.path,
      query: request.query.toString(),
      namespace: namespaceHeader,
      hasToken: token !== undefined,
      vaultRequestHeader: request.headers.get('x-vault-request') === 'true',
      ...(request.clientCertificateCn === undefined
        ? {}
        : { clientCertificateCn: request.clientCertificateCn }),
    });
    for (const fault of faults) {
      if (fault.type === 'slow') await pause(fault.delayMs, { signal: closing.signal });
    }
    if (apiPath === undefined) return { status: 404, body: { errors: [] } };
    const method =
      request.method === 'GET' && request.query.get('list') === 'true' ? 'LIST' : request.method;

    if (apiPath === 'sys/health' && (method === 'GET' || method === 'HEAD')) return health();
    if (faults.some((fault) => fault.type === 'sealed')) {
      return { status: 503, body: { errors: ['Vault is sealed'] } };
    }
    const limited = faults.find((fault) => fault.type === 'rate-limited');
    if (limited !== undefined) {
      return {
        status: 429,
        headers: { 'Retry-After': String(limited.retryAfterSeconds ?? 1) },
        body: { errors: [`request path "${apiPath}": rate limit quota exceeded`] },
      };
    }
    if (faults.some((fault) => fault.type === 'internal-error')) {
      return { status: 500, body: { errors: ['internal error'] } };
    }

    const namespace = normaliseNamespace(namespaceHeader);
    const login = /^auth\/(.+)\/login$/.exec(apiPath);
    if (login !== null && (method === 'POST' || method === 'PUT')) {
      return appRoleLogin(namespace, login[1] as string, request.body);
    }
    if (faults.some((fault) => fault.type === 'permission-denied')) return PERMISSION_DENIED;

    const tokenRecord = liveToken(token);
    if (tokenRecord === undefined) return PERMISSION_DENIED;
    if (apiPath.startsWith('auth/token/')) {
      return tokenSelf(apiPath.slice('auth/token/'.length), method, token as string, tokenRecord);
    }
    const namespaceState = namespaces.get(namespace);
    if (!isWithin(namespace, tokenRecord.namespace)) return PERMISSION_DENIED;
    if (namespaceState === undefined) return noHandler(apiPath);
    if (!tokenRecord.allow.some((pattern) => matches(pattern, apiPath))) return PERMISSION_DENIED;
    const mountName = [...namespaceState.kv.keys()]
      .filter((name) => apiPath === name || apiPath.startsWith(`${name}/`))
      .sort((a, b) => b.length - a.length)[0];
    if (mountName === undefined) return noHandler(apiPath);
    const mount = namespaceState.kv.get(mountName) as KvMount;
    return kv(mount, apiPath.slice(mountName.length + 1), method, request);
  };

  const appRoleLogin = (namespace: string, mount: string, body: Buffer): Http1Response => {
    const role = [...(namespaces.get(namespace)?.approle.get(mount)?.values() ?? [])];
    if (namespaces.get(namespace)?.approle.get(mount) === undefined)
      return noHandler(`auth/${mount}/login`);
    let input: { role_id?: unknown; secret_id?: unknown };
    try {
      input = JSON.parse(body.toString('utf8') || '{}');
    } catch {
      return { status: 400, body: { errors: ['failed to parse JSON input'] } };
    }
    if (typeof input.role_id !== 'string' || input.role_id === '') {
      return { status: 400, body: { errors: ['missing role_id'] } };
    }
    const found = role.find((candidate) => candidate.roleId === input.role_id);
    if (found === undefined)
      return { status: 400, body: { errors: ['invalid role or secret ID'] } };
    if (found.bindSecretId) {
      if (typeof input.secret_id !== 'string' || input.secret_id === '') {
        return { status: 400, body: { errors: ['missing secret_id'] } };
      }
      const secret = found.secretIds.get(input.secret_id);
      if (secret === undefined)
        return { status: 400, body: { errors: ['invalid role or secret ID'] } };
      if (secret.usesLeft !== undefined) {
        secret.usesLeft -= 1;
        if (secret.usesLeft <= 0) found.secretIds.delete(input.secret_id);
      }
    }
    stats.logins += 1;
    const token = issueToken({
      namespace,
      ttlSeconds: found.tokenTtlSeconds,
      maxTtlSeconds: found.tokenMaxTtlSeconds,
      allow: found.allow,
      roleName: found.roleName,
    });
    return { status: 200, body: authEnvelope(token, tokens.get(token) as TokenRecord) };
  };

  const tokenSelf = (
    operation: string,
    method: string,
    token: string,
    record: TokenRecord,
  ): Http1Response => {
    if (operation === 'renew-self' && (method === 'POST' || method === 'PUT')) {
      if (!record.renewable) return { status: 400, body: { errors: ['lease is not renewable'] } };
      stats.renewals += 1;
      if (record.expiresAt !== undefined && record.maxExpiresAt !== undefined) {
        record.expiresAt = Math.min(now() + record.ttlMs, record.maxExpiresAt);
      }
      return { status: 200, body: authEnvelope(token, record) };
    }
    if (operation === 'revoke-self' && (method === 'POST' || method === 'PUT')) {
      stats.revocations += 1;
      tokens.delete(token);
      return { status: 204 };
    }
    if (operation === 'lookup-self' && method === 'GET') {
      return {
        status: 200,
        body: envelope({
          accessor: record.accessor,
          policies: record.policies,
          ttl:
            record.expiresAt === undefined
              ? 0
              : Math.max(0, Math.floor((record.expiresAt - now()) / 1000)),
          renewable: record.renewable,
          namespace_path: record.namespace === '' ? '' : `${record.namespace}/`,
        }),
      };
    }
    return unsupported();
  };

  const kv = (
    mount: KvMount,
    rest: string,
    method: string,
    request: Http1Request,
  ): Http1Response => {
    const slash = rest.indexOf('/');
    const area = slash === -1 ? rest : rest.slice(0, slash);
    const path = slash === -1 ? '' : rest.slice(slash + 1);
    if (area === 'data') return kvData(mount, path, method, request);
    if (area === 'metadata') return kvMetadata(mount, path, method, request);
    if ((area === 'delete' || area === 'undelete' || area === 'destroy') && path !== '') {
      if (method !== 'POST' && method !== 'PUT') return unsupported();
      const versions = parseVersions(request.body);
      if (versions === undefined)
        return { status: 400, body: { errors: ['no versions provided'] } };
      const change =
        area === 'delete'
          ? softDelete
          : area === 'destroy'
            ? destroy
            : (record: VersionRecord) => {
                if (!record.destroyed) record.deletionTime = '';
              };
      markVersions(mount, path, versions, change);
      return { status: 204 };
    }
    return noHandler(rest);
  };

  const kvData = (
    mount: KvMount,
    path: string,
    method: string,
    request: Http1Request,
  ): Http1Response => {
    if (path === '') return unsupported();
    const secret = mount.secrets.get(path);
    if (method === 'GET') {
      if (secret === undefined) return NOT_FOUND_EMPTY;
      const asked = Number(request.query.get('version') ?? '0');
      if (!Number.isInteger(asked) || asked < 0) {
        return { status: 400, body: { errors: ['invalid version'] } };
      }
      const version = asked === 0 ? secret.currentVersion : asked;
      const record = secret.versions.get(version);
      if (record === undefined) return NOT_FOUND_EMPTY;
      const metadata = versionState(record, version);
      if (record.destroyed || record.deletionTime !== '') {
        return { status: 404, body: envelope({ data: null, metadata }, { mount_type: 'kv' }) };
      }
      return {
        status: 200,
        body: envelope({ data: record.data, metadata }, { mount_type: 'kv' }),
      };
    }
    if (method === 'POST' || method === 'PUT') {
      let input: { data?: unknown; options?: { cas?: unknown } };
      try {
        input = JSON.parse(request.body.toString('utf8') || '{}');
      } catch {
        return { status: 400, body: { errors: ['failed to parse JSON input'] } };
      }
      if (typeof input.data !== 'object' || input.data === null || Array.isArray(input.data)) {
        return { status: 400, body: { errors: ['no data provided'] } };
      }
      const cas = input.options?.cas;
      if (cas !== undefined && cas !== (secret?.currentVersion ?? 0)) {
        return {
          status: 400,
          body: { errors: ['check-and-set parameter did not match the current version'] },
        };
      }
      const { version, time } = writeSecret(mount, path, input.data as Record<string, unknown>);
      return {
        status: 200,
        body: envelope({
          created_time: time,
          custom_metadata: null,
          deletion_time: '',
          destroyed: false,
          version,
        }),
      };
    }
    if (method === 'DELETE') {
      if (secret !== undefined) markVersions(mount, path, [secret.currentVersion], softDelete);
      return { status: 204 };
    }
    return unsupported();
  };

  const kvMetadata = (
    mount: KvMount,
    path: string,
    method: string,
    request: Http1Request,
  ): Http1Response => {
    if (method === 'LIST') return kvList(mount, path, request);
    if (path === '') return unsupported();
    const secret = mount.secrets.get(path);
    if (method === 'GET') {
      if (secret === undefined) return NOT_FOUND_EMPTY;
      const versions: Record<string, unknown> = {};
      for (const [version, record] of secret.versions) {
        const { version: _unused, ...state } = versionState(record, version);
        versions[String(version)] = state;
      }
      return {
        status: 200,
        body: envelope({
          cas_required: false,
          created_time: secret.createdTime,
          current_version: secret.currentVersion,
          custom_metadata: null,
          delete_version_after: '0s',
          max_versions: 0,
          oldest_version: secret.oldestVersion,
          updated_time: secret.updatedTime,
          versions,
        }),
      };
    }
    if (method === 'DELETE') {
      mount.secrets.delete(path);
      return { status: 204 };
    }
    return unsupported();
  };

  const kvList = (mount: KvMount, folder: string, request: Http1Request): Http1Response => {
    const prefix = folder === '' || folder.endsWith('/') ? folder : `${folder}/`;
    const keys = new Set<string>();
    for (const path of mount.secrets.keys()) {
      if (!path.startsWith(prefix)) continue;
      const rest = path.slice(prefix.length);
      const slash = rest.indexOf('/');
      keys.add(slash === -1 ? rest : rest.slice(0, slash + 1));
    }
    let sorted = [...keys].sort();
    if (sorted.length === 0) return NOT_FOUND_EMPTY;
    if (options.paginateLists) {
      const after = request.query.get('after');
      if (after !== null && after !== '') sorted = sorted.filter((key) => key > after);
      const limit = Number(request.query.get('limit') ?? '0');
      if (Number.isInteger(limit) && limit > 0) sorted = sorted.slice(0, limit);
    }
    return { status: 200, body: envelope({ keys: sorted }) };
  };

  const server: Http1Server = await startHttp1Server({
    handler: handle,
    ...(options.tls === undefined ? {} : { tls: options.tls }),
  });
  const address = `${options.tls === undefined ? 'http' : 'https'}://127.0.0.1:${server.port}`;

  return {
    address,
    rootToken,
    requests,
    stats,
    createToken: (tokenOptions = {}) => issueToken(tokenOptions),
    revokeToken: (token) => {
      tokens.delete(token);
    },
    revokeTokens(select) {
      let revoked = 0;
      for (const [token, record] of tokens) {
        if (token === rootToken) continue;
        const info =
          record.roleName === undefined
            ? { namespace: record.namespace }
            : { namespace: record.namespace, roleName: record.roleName };
        if (select(info)) {
          tokens.delete(token);
          revoked += 1;
        }
      }
      return revoked;
    },
    createNamespace(namespace) {
      const parts = normaliseNamespace(namespace).split('/');
      for (let i = 1; i <= parts.length; i += 1) namespaceRecord(parts.slice(0, i).join('/'));
    },
    mountKv(mount, where = {}) {
      namespaceRecord(normaliseNamespace(where.namespace)).kv.set(mount, {
        maxVersions: where.maxVersions ?? 10,
        secrets: new Map(),
      });
    },
    addAppRole(roleOptions = {}) {
      const record = namespaceRecord(normaliseNamespace(roleOptions.namespace));
      const mount = roleOptions.mount ?? 'approle';
      let roles = record.approle.get(mount);
      if (roles === undefined) {
        roles = new Map();
        record.approle.set(mount, roles);
      }
      const roleName = roleOptions.roleName ?? 'dso';
      const ttl = roleOptions.tokenTtlSeconds ?? 3600;
      const role: AppRole = {
        roleName,
        roleId: randomUUID(),
        bindSecretId: roleOptions.bindSecretId ?? true,
        secretIds: new Map(),
        tokenTtlSeconds: ttl,
        tokenMaxTtlSeconds: roleOptions.tokenMaxTtlSeconds ?? ttl * 10,
        allow: roleOptions.allow ?? ['*'],
      };
      roles.set(roleName, role);
      if (!role.bindSecretId) return { roleId: role.roleId };
      const secretId = randomUUID();
      const uses = roleOptions.secretIdNumUses ?? 0;
      role.secretIds.set(secretId, { usesLeft: uses === 0 ? undefined : uses });
      return { roleId: role.roleId, secretId };
    },
    write: (path, data, where) => writeSecret(kvMount(where), path, data).version,
    deleteVersions: (path, versions, where) =>
      markVersions(kvMount(where), path, versions, softDelete),
    destroyVersions: (path, versions, where) =>
      markVersions(kvMount(where), path, versions, destroy),
    fault(fault) {
      faults.push(fault);
      return () => {
        const index = faults.indexOf(fault);
        if (index !== -1) faults.splice(index, 1);
      };
    },
    async close() {
      closing.abort();
      await server.close();
    },
  };
}

function normaliseNamespace(namespace: string | undefined): string {
  return (namespace ?? '').replace(/^\/+|\/+$/g, '');
}

/** A request in `namespace` may use a token of `tokenNamespace` when it is the same or a child. */
function isWithin(namespace: string, tokenNamespace: string): boolean {
  return (
    tokenNamespace === '' ||
    namespace === tokenNamespace ||
    namespace.startsWith(`${tokenNamespace}/`)
  );
}

function matches(pattern: string, path: string): boolean {
  return pattern.endsWith('*') ? path.startsWith(pattern.slice(0, -1)) : path === pattern;
}

function noHandler(path: string): Http1Response {
  return {
    status: 404,
    body: { errors: [`no handler for route "${path}". route entry not found.`] },
  };
}

function unsupported(): Http1Response {
  return { status: 405, body: { errors: ['1 error occurred:\n\t* unsupported operation\n\n'] } };
}

function parseVersions(body: Buffer): number[] | undefined {
  try {
    const input = JSON.parse(body.toString('utf8') || '{}') as { versions?: unknown };
    if (!Array.isArray(input.versions) || input.versions.length === 0) return undefined;
    return input.versions.map(Number).filter(Number.isInteger);
  } catch {
    return undefined;
  }
}
