/**
 * A fake of the AWS Secrets Manager JSON 1.1 API, served on 127.0.0.1, for tests that drive the
 * real AWS SDK v3 against it: `POST /` with `X-Amz-Target: secretsmanager.<Operation>` and
 * `Content-Type: application/x-amz-json-1.1`, SigV4-signed requests (the signature is
 * recomputed and checked against the configured keys), and errors in the service's shape
 * (`{"__type": …, "message": …}` plus `x-amzn-ErrorType`, status 400/403/429/500/503).
 * Operations: GetSecretValue, DescribeSecret, ListSecrets, ListSecretVersionIds, CreateSecret,
 * PutSecretValue, UpdateSecretVersionStage, DeleteSecret, RestoreSecret. Faults: injected
 * errors, slowness, dropped connections, raw (non-JSON or truncated) answers. Not exported from the package: tests only. Its
 * fidelity and gaps are listed in the README, "Testing against a fake".
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { formatAmzDate, parseAmzDate, parseAuthorization, verifySignature } from './sigv4.js';

/** A key pair the fake accepts (and the session token it requires, if any). */
export interface FakeCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** Options of {@link startFakeSecretsManager}. */
export interface FakeSecretsManagerOptions {
  /** The region requests must be scoped to. @default 'us-east-1' */
  region?: string;
  /** @default '123456789012' */
  accountId?: string;
  /** Keys it accepts. @default one random key pair, in `fake.credentials` */
  credentials?: FakeCredentials[];
  /** The real service may return fewer items than MaxResults: the most it puts in one page. @default 100 */
  maxPageSize?: number;
  /** Every other ListSecrets page comes back empty with a NextToken, as the real service may do. @default false */
  emptyPages?: boolean;
  /** The fake's clock runs this far ahead of the host's (for clock-skew tests). @default 0 */
  clockOffsetMs?: number;
}

/** A failure to inject: which requests it hits, and what they get instead of an answer. */
export type FakeFault = {
  /** Operations it applies to, e.g. `['GetSecretValue']`. @default all */
  operations?: readonly string[];
  /** Secret ids (names) it applies to. @default all requests */
  secretIds?: readonly string[];
  /** Access keys whose requests it applies to. @default every key */
  accessKeyIds?: readonly string[];
  /** Requests it affects before it expires. @default unlimited */
  times?: number;
} & (
  | {
      kind: 'error';
      /** The error name, e.g. `ThrottlingException`, `InternalServiceError`. */
      errorType: string;
      status: number;
      message?: string;
      /** Also send `x-amzn-ErrorType`. @default true */
      header?: boolean;
    }
  /** Waits, then answers normally (or is cut short when the client goes away). */
  | { kind: 'delay'; delayMs: number }
  /** Destroys the connection without an answer. */
  | { kind: 'reset' }
  /** Answers with this status and body as they are: a proxy's HTML page, a truncated body. */
  | { kind: 'raw'; status: number; body: string; contentType?: string }
);

/** What the fake saw of one request: never a body, so never a value. */
export interface FakeRequestRecord {
  operation: string;
  /** The access key the signature named, when there was one. */
  accessKeyId: string | undefined;
  /** The region of the credential scope. */
  region: string | undefined;
  /** `Host` as sent. */
  host: string | undefined;
  remoteAddress: string | undefined;
  sessionToken: boolean;
  status: number;
  errorType: string | undefined;
}

/** One stored version, as DescribeSecret and ListSecretVersionIds describe it. */
export interface FakeVersionInfo {
  versionId: string;
  stages: string[];
  binary: boolean;
}

/** A running fake. */
export interface FakeSecretsManager {
  /** `http://127.0.0.1:<port>`: the `endpoint` to configure. */
  readonly endpoint: string;
  readonly region: string;
  /** The first accepted key pair. */
  readonly credentials: FakeCredentials;
  /** Every request received, in order. */
  readonly requests: readonly FakeRequestRecord[];
  /** Accepts another key pair. */
  addCredentials(credentials: FakeCredentials): void;
  /** Stops accepting a key: later requests signed with it get UnrecognizedClientException. */
  revokeCredentials(accessKeyId: string): void;
  /** Creates a secret without going through HTTP; returns its ARN and first VersionId. */
  createSecret(
    name: string,
    value: string | Uint8Array,
    options?: { description?: string; versionId?: string },
  ): { arn: string; versionId: string };
  /** PutSecretValue without HTTP: a new version, stages moved as the service moves them. */
  putSecretValue(
    name: string,
    value: string | Uint8Array,
    options?: { versionStages?: string[]; versionId?: string },
  ): string;
  /** Schedules a secret for deletion, as DeleteSecret with a recovery window does. */
  scheduleDeletion(name: string): void;
  /** The versions of a secret, oldest first, with their stages. */
  versions(name: string): FakeVersionInfo[];
  /** Starts a fault; the function ends it. */
  inject(fault: FakeFault): () => void;
  clearFaults(): void;
  close(): Promise<void>;
}

interface StoredVersion {
  id: string;
  text: string | undefined;
  binary: Buffer | undefined;
  stages: Set<string>;
  created: number;
  lastAccessed: number | undefined;
}

interface StoredSecret {
  /** Creation order, which ListSecrets sorts by (the clock can repeat a millisecond). */
  seq: number;
  name: string;
  arn: string;
  description: string | undefined;
  created: number;
  lastChanged: number;
  lastAccessed: number | undefined;
  deletionDate: number | undefined;
  tags: { Key: string; Value: string }[];
  versions: Map<string, StoredVersion>;
}

class ServiceError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

type Json = Record<string, unknown>;

const JSON_CONTENT_TYPE = 'application/x-amz-json-1.1';
const TARGET_PREFIX = 'secretsmanager.';
const SERVICE = 'secretsmanager';
const MAX_REQUEST_BYTES = 1024 * 1024;
const MAX_SECRET_BYTES = 65_536;
// The service keeps about 100 versions without a stage before it prunes the oldest.
const MAX_DEPRECATED_VERSIONS = 100;
const SIGNATURE_WINDOW_MS = 5 * 60_000;
const NAME_PATTERN = /^[A-Za-z0-9/_+=.@-]{1,512}$/;
const FILTER_VALUE_PATTERN = /^!?[a-zA-Z0-9 :_@/+=.\-!]*$/;
const FILTER_KEYS = new Set([
  'description',
  'name',
  'tag-key',
  'tag-value',
  'primary-region',
  'owning-service',
  'all',
]);

/**
 * Starts the fake on 127.0.0.1 (a free port).
 *
 * @example
 * const fake = await startFakeSecretsManager();
 * fake.createSecret('prod/db', '{"password":"canary-1"}');
 * const client = new SecretsManagerClient({ region: fake.region, endpoint: fake.endpoint, credentials: fake.credentials });
 * await fake.close();
 */
export async function startFakeSecretsManager(
  options: FakeSecretsManagerOptions = {},
): Promise<FakeSecretsManager> {
  const region = options.region ?? 'us-east-1';
  const accountId = options.accountId ?? '123456789012';
  const maxPageSize = options.maxPageSize ?? 100;
  const clockOffsetMs = options.clockOffsetMs ?? 0;
  const keys = new Map<string, FakeCredentials>();
  for (const credentials of options.credentials ?? [
    {
      accessKeyId: `AKIAFAKE${randomBytes(6).toString('hex').toUpperCase()}`,
      secretAccessKey: randomBytes(30).toString('base64'),
    },
  ]) {
    keys.set(credentials.accessKeyId, { ...credentials });
  }
  const firstCredentials = [...keys.values()][0] as FakeCredentials;
  const secrets = new Map<string, StoredSecret>();
  const requests: FakeRequestRecord[] = [];
  const faults = new Set<FakeFault & { remaining: number }>();
  const now = () => Date.now() + clockOffsetMs;
  const seconds = (ms: number) => ms / 1000;
  let listCalls = 0;
  let secretCount = 0;

  // --- the store -------------------------------------------------------------------------

  const findSecret = (secretId: unknown): StoredSecret => {
    if (typeof secretId !== 'string' || secretId === '') {
      throw validation('secretId', 'Member must not be null');
    }
    if (secretId.length > 2048) {
      throw validation('secretId', 'Member must have length less than or equal to 2048');
    }
    const byName = secrets.get(secretId);
    if (byName !== undefined) return byName;
    for (const secret of secrets.values()) {
      // A full ARN, or a partial one without the random suffix, as the service accepts.
      if (secret.arn === secretId || secret.arn.slice(0, -7) === secretId) return secret;
    }
    throw new ServiceError(
      'ResourceNotFoundException',
      "Secrets Manager can't find the specified secret.",
    );
  };

  const liveSecret = (secretId: unknown): StoredSecret => {
    const secret = findSecret(secretId);
    if (secret.deletionDate !== undefined) {
      throw new ServiceError(
        'InvalidRequestException',
        "You can't perform this operation on the secret because it was marked for deletion.",
      );
    }
    return secret;
  };

  const storeSecret = (name: string, description: string | undefined): StoredSecret => {
    if (!NAME_PATTERN.test(name)) {
      throw new ServiceError(
        'ValidationException',
        "1 validation error detected: Value at 'name' failed to satisfy constraint: Member must satisfy regular expression pattern: ^[a-zA-Z0-9/_+=.@-]+$",
      );
    }
    const existing = secrets.get(name);
    if (existing !== undefined) {
      if (existing.deletionDate !== undefined) {
        throw new ServiceError(
          'InvalidRequestException',
          `You can't create this secret because a secret with this name is already scheduled for deletion.`,
        );
      }
      throw new ServiceError(
        'ResourceExistsException',
        `The operation failed because the secret ${name} already exists.`,
      );
    }
    const created = now();
    const suffix = randomBytes(6).toString('base64url').replace(/[-_]/g, 'x').slice(0, 6);
    secretCount += 1;
    const secret: StoredSecret = {
      seq: secretCount,
      name,
      arn: `arn:aws:secretsmanager:${region}:${accountId}:secret:${name}-${suffix}`,
      description,
      created,
      lastChanged: created,
      lastAccessed: undefined,
      deletionDate: undefined,
      tags: [],
      versions: new Map(),
    };
    secrets.set(name, secret);
    return secret;
  };

  const moveStage = (secret: StoredSecret, stage: string, to: StoredVersion | undefined) => {
    for (const version of secret.versions.values()) {
      if (version !== to) version.stages.delete(stage);
    }
    to?.stages.add(stage);
  };

  const addVersion = (
    secret: StoredSecret,
    value: { text?: string; binary?: Buffer },
    token: string,
    stages: readonly string[],
  ): { version: StoredVersion; created: boolean } => {
    const size = value.binary?.byteLength ?? Buffer.byteLength(value.text ?? '', 'utf8');
    if (size > MAX_SECRET_BYTES) {
      throw new ServiceError(
        'ValidationException',
        `1 validation error detected: Value at '${value.binary === undefined ? 'secretString' : 'secretBinary'}' failed to satisfy constraint: Member must have length less than or equal to ${MAX_SECRET_BYTES}`,
      );
    }
    const existing = secret.versions.get(token);
    if (existing !== undefined) {
      // Idempotent retry of the same request; a different value under the same token is refused.
      const same =
        existing.text === value.text &&
        (existing.binary === undefined) === (value.binary === undefined) &&
        (existing.binary === undefined || existing.binary.equals(value.binary as Buffer));
      if (!same) {
        throw new ServiceError(
          'ResourceExistsException',
          "You can't modify an existing version, you can only create a new version.",
        );
      }
      return { version: existing, created: false };
    }
    const version: StoredVersion = {
      id: token,
      text: value.text,
      binary: value.binary === undefined ? undefined : Buffer.from(value.binary),
      stages: new Set(),
      created: now(),
      lastAccessed: undefined,
    };
    const previousCurrent = [...secret.versions.values()].find((v) => v.stages.has('AWSCURRENT'));
    secret.versions.set(token, version);
    for (const stage of stages) {
      if (stage === 'AWSCURRENT' && previousCurrent !== undefined) {
        moveStage(secret, 'AWSPREVIOUS', previousCurrent);
      }
      moveStage(secret, stage, version);
    }
    secret.lastChanged = version.created;
    pruneDeprecated(secret);
    return { version, created: true };
  };

  const pruneDeprecated = (secret: StoredSecret) => {
    const unlabelled = [...secret.versions.values()].filter((v) => v.stages.size === 0);
    for (const version of unlabelled.slice(
      0,
      Math.max(0, unlabelled.length - MAX_DEPRECATED_VERSIONS),
    )) {
      secret.versions.delete(version.id);
    }
  };

  const readValue = (input: Json): { text?: string; binary?: Buffer } | undefined => {
    const { SecretString: text, SecretBinary: binary } = input;
    if (text !== undefined && binary !== undefined) {
      throw new ServiceError(
        'InvalidParameterException',
        'You must provide either SecretString or SecretBinary, but not both.',
      );
    }
    if (typeof text === 'string') return { text };
    if (typeof binary === 'string') {
      if (!/^[A-Za-z0-9+/]*={0,2}$/.test(binary) || binary.length % 4 !== 0) {
        throw new ServiceError('SerializationException', 'SecretBinary is not valid base64');
      }
      return { binary: Buffer.from(binary, 'base64') };
    }
    if (text !== undefined || binary !== undefined) {
      throw new ServiceError(
        'SerializationException',
        'Start of structure or map found where not expected.',
      );
    }
    return undefined;
  };

  const checkToken = (token: unknown): string => {
    if (token === undefined) return randomUUID();
    if (typeof token !== 'string' || token.length < 32 || token.length > 64) {
      throw validation('clientRequestToken', 'Member must have length greater than or equal to 32');
    }
    return token;
  };

  const checkStages = (stages: unknown): string[] => {
    if (stages === undefined) return ['AWSCURRENT'];
    if (
      !Array.isArray(stages) ||
      stages.length === 0 ||
      stages.length > 20 ||
      !stages.every((s) => typeof s === 'string' && s.length >= 1 && s.length <= 256)
    ) {
      throw validation('versionStages', 'Member must have length less than or equal to 20');
    }
    return stages as string[];
  };

  const findVersion = (secret: StoredSecret, input: Json): StoredVersion => {
    const { VersionId: versionId, VersionStage: stage } = input;
    if (versionId !== undefined) {
      if (typeof versionId !== 'string' || versionId.length < 32 || versionId.length > 64) {
        throw validation(
          'versionId',
          typeof versionId === 'string' && versionId.length > 64
            ? 'Member must have length less than or equal to 64'
            : 'Member must have length greater than or equal to 32',
        );
      }
    }
    if (
      stage !== undefined &&
      (typeof stage !== 'string' || stage.length < 1 || stage.length > 256)
    ) {
      throw validation('versionStage', 'Member must have length less than or equal to 256');
    }
    if (typeof versionId === 'string') {
      const version = secret.versions.get(versionId);
      if (version === undefined || (typeof stage === 'string' && !version.stages.has(stage))) {
        throw new ServiceError(
          'ResourceNotFoundException',
          `Secrets Manager can't find the specified secret value for VersionId: ${versionId}`,
        );
      }
      return version;
    }
    const wanted = typeof stage === 'string' ? stage : 'AWSCURRENT';
    for (const version of secret.versions.values()) {
      if (version.stages.has(wanted)) return version;
    }
    throw new ServiceError(
      'ResourceNotFoundException',
      `Secrets Manager can't find the specified secret value for staging label: ${wanted}`,
    );
  };

  const stagesMap = (secret: StoredSecret): Record<string, string[]> => {
    const map: Record<string, string[]> = {};
    for (const version of secret.versions.values()) {
      if (version.stages.size > 0) map[version.id] = [...version.stages];
    }
    return map;
  };

  const describe = (secret: StoredSecret): Json => ({
    ARN: secret.arn,
    Name: secret.name,
    ...(secret.description === undefined ? {} : { Description: secret.description }),
    RotationEnabled: false,
    LastChangedDate: seconds(secret.lastChanged),
    ...(secret.lastAccessed === undefined
      ? {}
      : { LastAccessedDate: seconds(secret.lastAccessed) }),
    ...(secret.deletionDate === undefined ? {} : { DeletedDate: seconds(secret.deletionDate) }),
    ...(secret.tags.length === 0 ? {} : { Tags: secret.tags }),
    CreatedDate: seconds(secret.created),
  });

  // --- pagination ------------------------------------------------------------------------

  // Tokens are opaque to clients: base64 of the next offset and a fingerprint of the request,
  // so a token reused with other filters is refused as the service refuses it.
  const encodeToken = (offset: number, fingerprint: string) =>
    Buffer.from(
      JSON.stringify({ o: offset, f: fingerprint, n: randomBytes(4).toString('hex') }),
    ).toString('base64');
  const decodeToken = (token: unknown, fingerprint: string): number => {
    if (token === undefined) return 0;
    try {
      const parsed = JSON.parse(Buffer.from(String(token), 'base64').toString('utf8')) as {
        o?: unknown;
        f?: unknown;
      };
      if (typeof parsed.o === 'number' && Number.isInteger(parsed.o) && parsed.f === fingerprint) {
        return parsed.o;
      }
    } catch {
      // Falls through to the service's answer for a token it did not issue.
    }
    throw new ServiceError('InvalidNextTokenException', 'The NextToken value is invalid.');
  };
  const checkMaxResults = (value: unknown): number => {
    if (value === undefined) return 100;
    if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > 100) {
      throw validation('maxResults', 'Member must have value less than or equal to 100');
    }
    return value;
  };

  const matchesFilters = (secret: StoredSecret, filters: unknown): boolean => {
    if (filters === undefined) return true;
    if (!Array.isArray(filters) || filters.length > 10) {
      throw validation('filters', 'Member must have length less than or equal to 10');
    }
    return filters.every((filter: Json) => {
      const key = filter?.Key;
      const values = filter?.Values;
      if (typeof key !== 'string' || !FILTER_KEYS.has(key)) {
        throw validation(
          'filters.1.member.key',
          'Member must satisfy enum value set: [all, name, tag-key, description, tag-value, primary-region, owning-service]',
        );
      }
      if (
        !Array.isArray(values) ||
        values.length < 1 ||
        values.length > 10 ||
        !values.every(
          (v) => typeof v === 'string' && v.length <= 512 && FILTER_VALUE_PATTERN.test(v),
        )
      ) {
        throw validation(
          'filters.1.member.values',
          'Member must satisfy regular expression pattern: ^\\!?[a-zA-Z0-9 :_@\\/\\+\\=\\.\\-\\!]*$',
        );
      }
      const positive = values.filter((v: string) => !v.startsWith('!'));
      const negative = values
        .filter((v: string) => v.startsWith('!'))
        .map((v: string) => v.slice(1));
      const hit = (value: string) => matchesFilter(secret, key, value);
      return (positive.length === 0 || positive.some(hit)) && !negative.some(hit);
    });
  };

  // --- operations ------------------------------------------------------------------------

  const operations: Record<string, (input: Json) => Json> = {
    GetSecretValue(input) {
      const secret = liveSecret(input.SecretId);
      const version = findVersion(secret, input);
      const accessed = now();
      secret.lastAccessed = accessed;
      version.lastAccessed = accessed;
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.id,
        ...(version.binary === undefined
          ? { SecretString: version.text }
          : { SecretBinary: version.binary.toString('base64') }),
        VersionStages: [...version.stages],
        CreatedDate: seconds(version.created),
      };
    },

    DescribeSecret(input) {
      const secret = findSecret(input.SecretId);
      return { ...describe(secret), VersionIdsToStages: stagesMap(secret) };
    },

    ListSecrets(input) {
      const maxResults = Math.min(checkMaxResults(input.MaxResults), maxPageSize);
      const includeDeleted = input.IncludePlannedDeletion === true;
      const order = input.SortOrder === 'desc' ? -1 : 1;
      const fingerprint = JSON.stringify([input.Filters ?? null, includeDeleted, order]);
      const offset = decodeToken(input.NextToken, fingerprint);
      const matching = [...secrets.values()]
        .filter(
          (s) =>
            (includeDeleted || s.deletionDate === undefined) && matchesFilters(s, input.Filters),
        )
        .sort((a, b) => order * (a.seq - b.seq));
      listCalls += 1;
      if (options.emptyPages === true && listCalls % 2 === 1 && offset < matching.length) {
        return { SecretList: [], NextToken: encodeToken(offset, fingerprint) };
      }
      const page = matching.slice(offset, offset + maxResults);
      const next = offset + page.length;
      return {
        SecretList: page.map((secret) => ({
          ...describe(secret),
          SecretVersionsToStages: stagesMap(secret),
        })),
        ...(next < matching.length ? { NextToken: encodeToken(next, fingerprint) } : {}),
      };
    },

    ListSecretVersionIds(input) {
      const secret = findSecret(input.SecretId);
      const maxResults = Math.min(checkMaxResults(input.MaxResults), maxPageSize);
      const includeDeprecated = input.IncludeDeprecated === true;
      const fingerprint = JSON.stringify([secret.arn, includeDeprecated]);
      const offset = decodeToken(input.NextToken, fingerprint);
      const versions = [...secret.versions.values()].filter(
        (v) => includeDeprecated || v.stages.size > 0,
      );
      const page = versions.slice(offset, offset + maxResults);
      const next = offset + page.length;
      return {
        ARN: secret.arn,
        Name: secret.name,
        Versions: page.map((v) => ({
          VersionId: v.id,
          VersionStages: [...v.stages],
          CreatedDate: seconds(v.created),
          ...(v.lastAccessed === undefined ? {} : { LastAccessedDate: seconds(v.lastAccessed) }),
        })),
        ...(next < versions.length ? { NextToken: encodeToken(next, fingerprint) } : {}),
      };
    },

    CreateSecret(input) {
      if (typeof input.Name !== 'string') throw validation('name', 'Member must not be null');
      const value = readValue(input);
      const token = checkToken(input.ClientRequestToken);
      const secret = storeSecret(
        input.Name,
        typeof input.Description === 'string' ? input.Description : undefined,
      );
      if (Array.isArray(input.Tags)) secret.tags = input.Tags as StoredSecret['tags'];
      if (value === undefined) return { ARN: secret.arn, Name: secret.name };
      try {
        const { version } = addVersion(secret, value, token, ['AWSCURRENT']);
        return { ARN: secret.arn, Name: secret.name, VersionId: version.id };
      } catch (error) {
        secrets.delete(secret.name);
        throw error;
      }
    },

    PutSecretValue(input) {
      const secret = liveSecret(input.SecretId);
      const value = readValue(input);
      if (value === undefined) {
        throw new ServiceError(
          'InvalidRequestException',
          'You must provide either SecretString or SecretBinary.',
        );
      }
      const token = checkToken(input.ClientRequestToken);
      const { version } = addVersion(secret, value, token, checkStages(input.VersionStages));
      return {
        ARN: secret.arn,
        Name: secret.name,
        VersionId: version.id,
        VersionStages: [...version.stages],
      };
    },

    UpdateSecretVersionStage(input) {
      const secret = liveSecret(input.SecretId);
      const stage = input.VersionStage;
      if (typeof stage !== 'string' || stage.length < 1 || stage.length > 256) {
        throw validation('versionStage', 'Member must not be null');
      }
      const holder = [...secret.versions.values()].find((v) => v.stages.has(stage));
      const moveTo = input.MoveToVersionId;
      const removeFrom = input.RemoveFromVersionId;
      if (holder !== undefined && moveTo !== undefined && removeFrom !== holder.id) {
        throw new ServiceError(
          'InvalidParameterException',
          `The staging label ${stage} is currently attached to version ${holder.id}. When you move a label to a different version, you must specify the RemoveFromVersionId parameter with that version.`,
        );
      }
      if (typeof removeFrom === 'string' && holder?.id !== removeFrom) {
        throw new ServiceError(
          'InvalidParameterException',
          `The staging label ${stage} is not attached to version ${removeFrom}.`,
        );
      }
      let target: StoredVersion | undefined;
      if (moveTo !== undefined) {
        target = secret.versions.get(String(moveTo));
        if (target === undefined) {
          throw new ServiceError(
            'ResourceNotFoundException',
            `Secrets Manager can't find the specified secret value for VersionId: ${String(moveTo)}`,
          );
        }
      }
      if (
        stage === 'AWSCURRENT' &&
        target !== undefined &&
        holder !== undefined &&
        holder !== target
      ) {
        moveStage(secret, 'AWSPREVIOUS', holder);
      }
      moveStage(secret, stage, target);
      secret.lastChanged = now();
      pruneDeprecated(secret);
      return { ARN: secret.arn, Name: secret.name };
    },

    DeleteSecret(input) {
      const secret = findSecret(input.SecretId);
      const force = input.ForceDeleteWithoutRecovery === true;
      const window = input.RecoveryWindowInDays;
      if (force && window !== undefined) {
        throw new ServiceError(
          'InvalidParameterException',
          "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        );
      }
      if (window !== undefined && (typeof window !== 'number' || window < 7 || window > 30)) {
        throw new ServiceError(
          'InvalidParameterException',
          'The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).',
        );
      }
      if (force) {
        secrets.delete(secret.name);
        return { ARN: secret.arn, Name: secret.name, DeletionDate: seconds(now()) };
      }
      if (secret.deletionDate !== undefined) {
        throw new ServiceError(
          'InvalidRequestException',
          "You can't perform this operation on the secret because it was marked for deletion.",
        );
      }
      secret.deletionDate = now() + (typeof window === 'number' ? window : 30) * 86_400_000;
      return { ARN: secret.arn, Name: secret.name, DeletionDate: seconds(secret.deletionDate) };
    },

    RestoreSecret(input) {
      const secret = findSecret(input.SecretId);
      secret.deletionDate = undefined;
      return { ARN: secret.arn, Name: secret.name };
    },
  };

  // --- HTTP ------------------------------------------------------------------------------

  const authenticate = (
    request: IncomingMessage,
    body: Buffer,
    record: FakeRequestRecord,
  ): void => {
    const header = request.headers.authorization;
    if (header === undefined) {
      throw new ServiceError('MissingAuthenticationTokenException', 'Missing Authentication Token');
    }
    const parsed = parseAuthorization(header);
    if (typeof parsed === 'string') throw new ServiceError('IncompleteSignatureException', parsed);
    record.accessKeyId = parsed.accessKeyId;
    record.region = parsed.region;
    const amzDate = request.headers['x-amz-date'];
    const signedAt = typeof amzDate === 'string' ? parseAmzDate(amzDate) : undefined;
    if (typeof amzDate !== 'string' || signedAt === undefined) {
      throw new ServiceError(
        'IncompleteSignatureException',
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.",
      );
    }
    for (const required of ['host', 'x-amz-date']) {
      if (!parsed.signedHeaders.includes(required)) {
        throw new ServiceError(
          'InvalidSignatureException',
          `'${required}' must be a 'SignedHeader' in the AWS Authorization.`,
        );
      }
    }
    const key = keys.get(parsed.accessKeyId);
    if (key === undefined) {
      throw new ServiceError(
        'UnrecognizedClientException',
        'The security token included in the request is invalid.',
      );
    }
    const token = request.headers['x-amz-security-token'];
    if (key.sessionToken !== undefined && token !== key.sessionToken) {
      throw new ServiceError(
        'UnrecognizedClientException',
        'The security token included in the request is invalid.',
      );
    }
    if (parsed.region !== region) {
      throw new ServiceError(
        'InvalidSignatureException',
        `Credential should be scoped to a valid region. `,
      );
    }
    if (parsed.service !== SERVICE) {
      throw new ServiceError(
        'InvalidSignatureException',
        `Credential should be scoped to correct service: '${SERVICE}'. `,
      );
    }
    const current = now();
    if (Math.abs(current - signedAt) > SIGNATURE_WINDOW_MS) {
      const earlier = signedAt < current;
      throw new ServiceError(
        'InvalidSignatureException',
        earlier
          ? `Signature expired: ${amzDate} is now earlier than ${formatAmzDate(current - SIGNATURE_WINDOW_MS)} (${formatAmzDate(current)} - 5 min.)`
          : `Signature not yet current: ${amzDate} is still later than ${formatAmzDate(current + SIGNATURE_WINDOW_MS)} (${formatAmzDate(current)} + 5 min.)`,
      );
    }
    if (amzDate.slice(0, 8) !== parsed.date) {
      throw new ServiceError(
        'InvalidSignatureException',
        `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${parsed.date}' != '${amzDate.slice(0, 8)}', from '${amzDate}'.`,
      );
    }
    const valid = verifySignature({
      method: request.method ?? 'POST',
      path: (request.url ?? '/').split('?')[0] ?? '/',
      headers: request.headers,
      body,
      authorization: parsed,
      amzDate,
      secretAccessKey: key.secretAccessKey,
    });
    if (!valid) {
      throw new ServiceError(
        'InvalidSignatureException',
        'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.',
      );
    }
  };

  const pickFault = (
    operation: string,
    input: Json | undefined,
    accessKeyId: string | undefined,
  ) => {
    for (const fault of faults) {
      if (fault.operations !== undefined && !fault.operations.includes(operation)) continue;
      if (
        fault.accessKeyIds !== undefined &&
        (accessKeyId === undefined || !fault.accessKeyIds.includes(accessKeyId))
      ) {
        continue;
      }
      if (fault.secretIds !== undefined) {
        const id = input?.SecretId ?? input?.Name;
        if (typeof id !== 'string' || !fault.secretIds.includes(id)) continue;
      }
      fault.remaining -= 1;
      if (fault.remaining <= 0) faults.delete(fault);
      return fault;
    }
    return undefined;
  };

  const send = (
    response: ServerResponse,
    record: FakeRequestRecord,
    status: number,
    body: string,
    headers: Record<string, string> = {},
    contentType = JSON_CONTENT_TYPE,
  ) => {
    record.status = status;
    if (response.destroyed) return;
    response.writeHead(status, {
      'Content-Type': contentType,
      'Content-Length': String(Buffer.byteLength(body)),
      'x-amzn-RequestId': randomUUID(),
      Date: new Date(now()).toUTCString(),
      ...headers,
    });
    response.end(body);
  };

  const sendError = (
    response: ServerResponse,
    record: FakeRequestRecord,
    type: string,
    message: string,
    status: number,
    withHeader = true,
  ) => {
    record.errorType = type;
    send(
      response,
      record,
      status,
      JSON.stringify({ __type: type, message }),
      withHeader ? { 'x-amzn-ErrorType': type } : {},
    );
  };

  const handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const target = request.headers['x-amz-target'];
    const operation =
      typeof target === 'string' && target.startsWith(TARGET_PREFIX)
        ? target.slice(TARGET_PREFIX.length)
        : String(target ?? '');
    const record: FakeRequestRecord = {
      operation,
      accessKeyId: undefined,
      region: undefined,
      host: request.headers.host,
      remoteAddress: request.socket.remoteAddress,
      sessionToken: request.headers['x-amz-security-token'] !== undefined,
      status: 0,
      errorType: undefined,
    };
    requests.push(record);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of request) {
      size += (chunk as Buffer).byteLength;
      if (size > MAX_REQUEST_BYTES) {
        sendError(response, record, 'RequestEntityTooLargeException', 'Request is too large', 413);
        request.destroy();
        return;
      }
      chunks.push(chunk as Buffer);
    }
    const body = Buffer.concat(chunks);
    try {
      if (request.method !== 'POST' || (request.url ?? '/').split('?')[0] !== '/') {
        throw new ServiceError('UnknownOperationException', '', 404);
      }
      authenticate(request, body, record);
      const contentType = request.headers['content-type'] ?? '';
      if (!contentType.startsWith(JSON_CONTENT_TYPE)) {
        throw new ServiceError('SerializationException', `Unexpected content type: ${contentType}`);
      }
      const handler = Object.hasOwn(operations, operation) ? operations[operation] : undefined;
      if (
        typeof target !== 'string' ||
        !target.startsWith(TARGET_PREFIX) ||
        handler === undefined
      ) {
        throw new ServiceError('UnknownOperationException', '');
      }
      let input: Json;
      try {
        const parsed: unknown = JSON.parse(body.length === 0 ? '{}' : body.toString('utf8'));
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
          throw new Error();
        input = parsed as Json;
      } catch {
        throw new ServiceError(
          'SerializationException',
          'Start of structure or map found where not expected.',
        );
      }
      const fault = pickFault(operation, input, record.accessKeyId);
      if (fault !== undefined) {
        switch (fault.kind) {
          case 'error':
            sendError(
              response,
              record,
              fault.errorType,
              fault.message ?? defaultMessage(fault.errorType),
              fault.status,
              fault.header !== false,
            );
            return;
          case 'reset':
            record.status = -1;
            request.socket.destroy();
            return;
          case 'raw':
            send(response, record, fault.status, fault.body, {}, fault.contentType ?? 'text/html');
            return;
          case 'delay': {
            const gone = await waitOrClose(response, fault.delayMs);
            if (gone) {
              record.status = -1;
              return;
            }
            break;
          }
        }
      }
      send(response, record, 200, JSON.stringify(handler(input)));
    } catch (error) {
      if (error instanceof ServiceError) {
        sendError(response, record, error.type, error.message, error.status);
      } else {
        sendError(
          response,
          record,
          'InternalServiceError',
          'An error occurred on the server side.',
          500,
        );
      }
    }
  };

  const server: Server = createServer((request, response) => {
    handle(request, response).catch(() => {
      // A client that went away mid-request: nothing to answer.
      response.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  const toValue = (value: string | Uint8Array) =>
    typeof value === 'string' ? { text: value } : { binary: Buffer.from(value) };

  return {
    endpoint: `http://127.0.0.1:${port}`,
    region,
    credentials: firstCredentials,
    requests,
    addCredentials(credentials) {
      keys.set(credentials.accessKeyId, { ...credentials });
    },
    revokeCredentials(accessKeyId) {
      keys.delete(accessKeyId);
    },
    createSecret(name, value, createOptions = {}) {
      const secret = storeSecret(name, createOptions.description);
      const { version } = addVersion(
        secret,
        toValue(value),
        createOptions.versionId ?? randomUUID(),
        ['AWSCURRENT'],
      );
      return { arn: secret.arn, versionId: version.id };
    },
    putSecretValue(name, value, putOptions = {}) {
      const secret = liveSecret(name);
      const { version } = addVersion(
        secret,
        toValue(value),
        putOptions.versionId ?? randomUUID(),
        putOptions.versionStages ?? ['AWSCURRENT'],
      );
      return version.id;
    },
    scheduleDeletion(name) {
      findSecret(name).deletionDate = now() + 30 * 86_400_000;
    },
    versions(name) {
      return [...findSecret(name).versions.values()].map((v) => ({
        versionId: v.id,
        stages: [...v.stages],
        binary: v.binary !== undefined,
      }));
    },
    inject(fault) {
      const active = { ...fault, remaining: fault.times ?? Number.POSITIVE_INFINITY };
      faults.add(active);
      return () => {
        faults.delete(active);
      };
    },
    clearFaults() {
      faults.clear();
    },
    async close() {
      faults.clear();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function validation(member: string, constraint: string): ServiceError {
  return new ServiceError(
    'ValidationException',
    `1 validation error detected: Value at '${member}' failed to satisfy constraint: ${constraint}`,
  );
}

function defaultMessage(type: string): string {
  switch (type) {
    case 'ThrottlingException':
      return 'Rate exceeded';
    case 'TooManyRequestsException':
      return 'Too Many Requests';
    case 'InternalServiceError':
      return 'An error occurred on the server side.';
    case 'ServiceUnavailable':
      return 'Service Unavailable';
    case 'AccessDeniedException':
      return 'User: arn:aws:iam::123456789012:user/fake is not authorized to perform this operation';
    case 'DecryptionFailure':
      return "Secrets Manager can't decrypt the protected secret text using the provided KMS key.";
    case 'ExpiredTokenException':
      return 'The security token included in the request is expired';
    default:
      return type;
  }
}

function matchesFilter(secret: StoredSecret, key: string, value: string): boolean {
  switch (key) {
    case 'name':
      return secret.name.startsWith(value);
    case 'description':
      return (secret.description ?? '').toLowerCase().startsWith(value.toLowerCase());
    case 'tag-key':
      return secret.tags.some((tag) => tag.Key.startsWith(value));
    case 'tag-value':
      return secret.tags.some((tag) => tag.Value.startsWith(value));
    case 'primary-region':
    case 'owning-service':
      // No replication and no managing service here.
      return false;
    default: {
      // `all`: words of the value against words of name, description and tags, ignoring case.
      const haystack = words(
        [
          secret.name,
          secret.description ?? '',
          ...secret.tags.flatMap((t) => [t.Key, t.Value]),
        ].join(' '),
      );
      return words(value).some((word) => haystack.some((candidate) => candidate.startsWith(word)));
    }
  }
}

function words(text: string): string[] {
  return text
    .split(/(?<=[a-z])(?=[A-Z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])|[^A-Za-z0-9]+/)
    .filter((word) => word !== '')
    .map((word) => word.toLowerCase());
}

function waitOrClose(response: ServerResponse, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      response.off('close', onClose);
      resolve(false);
    }, ms);
    const onClose = () => {
      clearTimeout(timer);
      resolve(true);
    };
    response.once('close', onClose);
  });
}
