import type {
  DescribeSecretCommandOutput,
  GetSecretValueCommandOutput,
  ListSecretsCommandOutput,
  ListSecretVersionIdsCommandOutput,
} from '@aws-sdk/client-secrets-manager';
import { abortable } from '@dso/async';
import {
  type CallOptions,
  isProviderError,
  type ProviderContext,
  ProviderError,
  type ProviderHealth,
  type ResolvedSecret,
  type SecretProvider,
  type SecretRequest,
  SecretValue,
  type SecretVersion,
} from '@dso/provider-sdk';
import { type AwsCallContext, toAwsProviderError } from './aws-error.js';
import { type AwsProviderConfig, resolveAwsOptions } from './config.js';
import { createCredentialChain, type SdkDefaultProviderFactory } from './credentials.js';
import { type AwsVersionRef, describeVersionRef, parseVersionRef } from './version-ref.js';

// ListSecrets returns at most 100 per page; asking for the most keeps the page count down.
const LIST_PAGE_SIZE = 100;
// A bound on pages per list (a million secrets), so a service that keeps answering with a
// NextToken cannot hold a call forever.
const MAX_LIST_PAGES = 10_000;
// The characters a ListSecrets filter value may hold; other prefixes are filtered here only.
const FILTER_VALUE_PATTERN = /^[a-zA-Z0-9 :_@/+=.-]{1,512}$/;

/** The capabilities of the `aws` provider: everything but watch (Secrets Manager has no push). */
export const AWS_CAPABILITIES = Object.freeze({
  list: true,
  watch: false,
  probe: true,
  health: true,
});

/**
 * Builds the live `aws` provider from a validated configuration: one SecretsManagerClient
 * (connections kept alive, SDK retries with backoff), credentials from the provider's
 * environment. Called by the definition's `create`; use `createProvider(awsProvider, …)`.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when no region is known or the environment's
 *   credentials are half set
 */
export async function createAwsSecretsProvider(
  config: AwsProviderConfig,
  context: ProviderContext,
): Promise<SecretProvider> {
  const name = context.name;
  const options = resolveAwsOptions(config, context.env, name);
  const target =
    options.endpoint === undefined
      ? `region ${options.region}`
      : `${options.endpoint}, region ${options.region}`;
  const chain = createCredentialChain({
    env: context.env,
    profile: options.profile,
    region: options.region,
    provider: name,
    // Called on the first signature, when `sdk` below exists: the SDK's own default chain.
    sdkDefaultProvider: () =>
      sdk.config.credentialDefaultProvider as unknown as SdkDefaultProviderFactory,
  });
  // Loaded here rather than at import: the SDK is most of this package's start-up cost, and a
  // host that only validates configurations (or refuses one) never needs it.
  const {
    DescribeSecretCommand,
    GetSecretValueCommand,
    ListSecretsCommand,
    ListSecretVersionIdsCommand,
    SecretsManagerClient: Client,
  } = await import('@aws-sdk/client-secrets-manager');
  const useFips = options.endpoint === undefined && isTrue(context.env.AWS_USE_FIPS_ENDPOINT);
  const useDualstack =
    options.endpoint === undefined && isTrue(context.env.AWS_USE_DUALSTACK_ENDPOINT);
  const sdk = new Client({
    region: options.region,
    ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
    credentials: chain.provider,
    maxAttempts: options.maxAttempts,
    // Everything the SDK would otherwise look up in process.env or ~/.aws/config is fixed here,
    // so the provider behaves the same in process and in its child. 'legacy' defaults never
    // probe instance metadata to infer the region.
    retryMode: 'standard',
    defaultsMode: 'legacy',
    ignoreConfiguredEndpointUrls: true,
    useFipsEndpoint: useFips,
    useDualstackEndpoint: useDualstack,
    requestHandler: {
      requestTimeout: options.requestTimeoutMs,
      connectionTimeout: options.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  });
  let closed = false;
  context.log.debug('aws provider created', {
    region: options.region,
    endpoint: options.endpoint === undefined ? 'default' : 'configured',
    credentials: chain.source,
  });

  const callContext = (operation: string, path?: string): AwsCallContext => ({
    provider: name,
    operation,
    path,
    target,
    requestTimeoutMs: options.requestTimeoutMs,
  });

  // Every call goes through here: the SDK gets the signal (it aborts the HTTP request), and the
  // race makes the call return at once even while the SDK sleeps between retries.
  const send = async <Output>(
    // biome-ignore lint/suspicious/noExplicitAny: the SDK's command types are generic over its whole union.
    command: any,
    operation: string,
    path: string | undefined,
    signal: AbortSignal | undefined,
  ): Promise<Output> => {
    if (closed) {
      throw new ProviderError('DSO_PROVIDER_INTERNAL', `provider ${name} is closed`, {
        provider: name,
      });
    }
    try {
      if (signal?.aborted) throw abortError();
      const pending = sdk.send(command, { abortSignal: signal }) as Promise<Output>;
      return await abortable(pending, signal);
    } catch (error) {
      // Aborted while the SDK still ran: an AbortError of our own, whatever the signal's reason,
      // so it maps like the SDK's own abort.
      const aborted = signal?.aborted === true && error === signal.reason;
      throw toAwsProviderError(aborted ? abortError() : error, callContext(operation, path));
    }
  };

  const getSecretValue = async (
    path: string,
    ref: AwsVersionRef,
    signal: AbortSignal | undefined,
  ): Promise<GetSecretValueCommandOutput> => {
    const input =
      ref.kind === 'versionId'
        ? { SecretId: path, VersionId: ref.versionId }
        : { SecretId: path, VersionStage: ref.stage };
    try {
      return await send(new GetSecretValueCommand(input), 'GetSecretValue', path, signal);
    } catch (error) {
      if (ref.kind === 'stage' && ref.orVersionId && isNotFound(error)) {
        return await send(
          new GetSecretValueCommand({ SecretId: path, VersionId: ref.stage }),
          'GetSecretValue',
          path,
          signal,
        );
      }
      throw error;
    }
  };

  // Whether a version exists that DescribeSecret does not list: one without a stage
  // ("deprecated"), which stays readable by VersionId until the service prunes it.
  const hasUnlabelledVersion = async (
    path: string,
    versionId: string,
    signal: AbortSignal | undefined,
  ): Promise<boolean> => {
    let nextToken: string | undefined;
    for (let page = 0; page < MAX_LIST_PAGES; page += 1) {
      const output = await send<ListSecretVersionIdsCommandOutput>(
        new ListSecretVersionIdsCommand({
          SecretId: path,
          IncludeDeprecated: true,
          MaxResults: LIST_PAGE_SIZE,
          NextToken: nextToken,
        }),
        'ListSecretVersionIds',
        path,
        signal,
      );
      if (output.Versions?.some((version) => version.VersionId === versionId)) return true;
      if (output.NextToken === undefined || output.NextToken === nextToken) return false;
      nextToken = output.NextToken;
    }
    return false;
  };

  const provider: SecretProvider = {
    name,
    capabilities: { ...AWS_CAPABILITIES },

    async resolve(request: SecretRequest, callOptions: CallOptions = {}): Promise<ResolvedSecret> {
      const { path } = request;
      const ref = parseVersionRef(request.version, options.versionStage, { provider: name, path });
      const output = await getSecretValue(path, ref, callOptions.signal);
      return toResolvedSecret(output, path, ref, name);
    },

    async probe(request: SecretRequest, callOptions: CallOptions = {}): Promise<SecretVersion> {
      const { path } = request;
      const signal = callOptions.signal;
      const ref = parseVersionRef(request.version, options.versionStage, { provider: name, path });
      const described = await send<DescribeSecretCommandOutput>(
        new DescribeSecretCommand({ SecretId: path }),
        'DescribeSecret',
        path,
        signal,
      );
      if (described.DeletedDate !== undefined) {
        // GetSecretValue refuses such a secret (InvalidRequestException); the probe agrees.
        throw new ProviderError(
          'DSO_PROVIDER_NOT_FOUND',
          `secret ${path} is scheduled for deletion: restore it with \`aws secretsmanager restore-secret\` to read it again`,
          { provider: name, path },
        );
      }
      const stages = described.VersionIdsToStages ?? {};
      if (ref.kind === 'stage') {
        for (const [versionId, labels] of Object.entries(stages)) {
          if (labels?.includes(ref.stage)) return { version: versionId };
        }
      }
      const versionId =
        ref.kind === 'versionId' ? ref.versionId : ref.orVersionId ? ref.stage : undefined;
      if (versionId !== undefined) {
        if (Object.hasOwn(stages, versionId)) return { version: versionId };
        if (await hasUnlabelledVersion(path, versionId, signal)) return { version: versionId };
      }
      throw new ProviderError(
        'DSO_PROVIDER_NOT_FOUND',
        `secret ${path} has no version with ${describeVersionRef(ref)}`,
        { provider: name, path },
      );
    },

    async list(prefix?: string, callOptions: CallOptions = {}): Promise<string[]> {
      const base = prefix === undefined || prefix === '' ? '' : prefix.replace(/\/+$/, '');
      // The service's name filter is a case-sensitive prefix match: it narrows the pages; the
      // segment rule (`app/db` lists `app/db/x`, not `app/dbx`) is applied here.
      const filters =
        base !== '' && FILTER_VALUE_PATTERN.test(base)
          ? [{ Key: 'name' as const, Values: [base] }]
          : undefined;
      const names = new Set<string>();
      let nextToken: string | undefined;
      for (let page = 0; ; page += 1) {
        if (page >= MAX_LIST_PAGES) {
          throw new ProviderError(
            'DSO_PROVIDER_TOO_LARGE',
            `listing ${prefix ?? 'all secrets'} took more than ${MAX_LIST_PAGES} pages: list a narrower prefix`,
            { provider: name },
          );
        }
        const output = await send<ListSecretsCommandOutput>(
          new ListSecretsCommand({
            MaxResults: LIST_PAGE_SIZE,
            NextToken: nextToken,
            Filters: filters,
          }),
          'ListSecrets',
          undefined,
          callOptions.signal,
        );
        for (const entry of output.SecretList ?? []) {
          const secretName = entry.Name;
          if (typeof secretName === 'string' && isUnder(secretName, base)) names.add(secretName);
        }
        // The service may answer with a partial or even empty page and a NextToken: only its
        // absence ends the listing.
        if (output.NextToken === undefined || output.NextToken === '') break;
        if (output.NextToken === nextToken) {
          throw new ProviderError(
            'DSO_PROVIDER_INTERNAL',
            'AWS Secrets Manager returned the same NextToken twice while listing: stopped',
            { provider: name },
          );
        }
        nextToken = output.NextToken;
      }
      return [...names].sort();
    },

    async health(callOptions: CallOptions = {}): Promise<ProviderHealth> {
      try {
        await send(
          new ListSecretsCommand({ MaxResults: 1 }),
          'ListSecrets',
          undefined,
          callOptions.signal,
        );
        return { ok: true, detail: `AWS Secrets Manager answered (${target})` };
      } catch (error) {
        if (!isProviderError(error) || callOptions.signal?.aborted) throw error;
        const causeName = error.cause instanceof Error ? error.cause.name : undefined;
        if (causeName === 'AccessDeniedException') {
          // The service answered and knew the credentials; only this permission is missing,
          // which says nothing about reading secrets.
          return {
            ok: true,
            detail: `AWS Secrets Manager answered (${target}); credentials accepted, ListSecrets not permitted`,
          };
        }
        return { ok: false, detail: `${error.code}: ${error.message}` };
      }
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      sdk.destroy();
    },
  };
  return provider;
}

function toResolvedSecret(
  output: GetSecretValueCommandOutput,
  path: string,
  ref: AwsVersionRef,
  provider: string,
): ResolvedSecret {
  if (typeof output.VersionId !== 'string' || output.VersionId === '') {
    throw new ProviderError(
      'DSO_PROVIDER_INTERNAL',
      `AWS Secrets Manager returned no VersionId for ${path}`,
      { provider, path },
    );
  }
  let value: SecretValue;
  if (output.SecretBinary !== undefined) {
    value = SecretValue.fromBytes(output.SecretBinary);
    // SecretValue took a copy; the SDK's decoded buffer is ours to wipe.
    output.SecretBinary.fill(0);
  } else if (output.SecretString !== undefined) {
    value = SecretValue.fromText(output.SecretString);
  } else {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `secret ${path} has no value at ${describeVersionRef(ref)}`,
      { provider, path },
    );
  }
  return { value, version: output.VersionId };
}

function isUnder(path: string, prefix: string): boolean {
  return prefix === '' || path === prefix || path.startsWith(`${prefix}/`);
}

function isNotFound(error: unknown): boolean {
  return isProviderError(error) && error.code === 'DSO_PROVIDER_NOT_FOUND';
}

function isTrue(value: string | undefined): boolean {
  return value?.toLowerCase() === 'true';
}

function abortError(): Error {
  const error = new Error('the call was aborted');
  error.name = 'AbortError';
  return error;
}
