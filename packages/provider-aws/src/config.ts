import { ProviderError } from '@dso/provider-sdk';
import { z } from 'zod';

/** The stage a reference without a version reads. */
export const DEFAULT_VERSION_STAGE = 'AWSCURRENT';
/** Attempts per call, the first included, before the SDK gives up on a retryable failure. */
export const DEFAULT_MAX_ATTEMPTS = 3;
/** How long one HTTP attempt may take, connection included. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000;

// us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1, ap-southeast-5, il-central-1 …
const REGION_PATTERN = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;
// The SDK's own profile-name rules are loose; this keeps names to what shared files can hold.
const PROFILE_PATTERN = /^[A-Za-z0-9_.@+=,-]{1,128}$/;
const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * Why an endpoint is refused, or undefined when it is acceptable: an absolute https:// URL (or
 * http:// on the loopback interface only, for a local fake or proxy), without user info, query
 * or fragment, since credentials in a URL leak into logs and a query would be ignored.
 */
export function endpointProblem(value: string): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'expected an absolute URL such as https://secretsmanager.eu-west-1.amazonaws.com';
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    return 'expected an https:// URL';
  }
  if (url.protocol === 'http:' && !LOOPBACK_HOSTS.has(url.hostname)) {
    return 'plain http:// is allowed only for 127.0.0.1 or localhost: use https://';
  }
  if (url.username !== '' || url.password !== '') {
    return 'an endpoint must not carry user info: credentials come from the credential chain';
  }
  if (url.search !== '' || url.hash !== '') {
    return 'an endpoint must not have a query or fragment';
  }
  return undefined;
}

/**
 * The `aws` provider's configuration. Strict: an unknown key is an error, so a typo such as
 * `regoin` is caught at start rather than silently ignored.
 */
export const awsConfigSchema = z.strictObject({
  /** The region of the secrets, e.g. `eu-west-1`. @default `AWS_REGION` of the provider's environment */
  region: z
    .string()
    .regex(REGION_PATTERN, { error: 'expected an AWS region such as eu-west-1' })
    .optional(),
  /**
   * Sends requests here instead of the region's public endpoint: a VPC interface endpoint, a
   * FIPS endpoint, or a local fake. The SDK's `AWS_ENDPOINT_URL*` variables and `endpoint_url`
   * in shared config files are ignored, so only this setting (which is validated) can redirect
   * secret traffic.
   */
  endpoint: z
    .string()
    .max(2048)
    .superRefine((value, ctx) => {
      const problem = endpointProblem(value);
      if (problem !== undefined) ctx.addIssue({ code: 'custom', message: problem });
    })
    .optional(),
  /**
   * A profile of the shared config and credentials files (`~/.aws/config`,
   * `~/.aws/credentials`, or the files named by `AWS_CONFIG_FILE` / `AWS_SHARED_CREDENTIALS_FILE`
   * in the provider's environment). @default `AWS_PROFILE`, else the default credential chain
   */
  profile: z
    .string()
    .regex(PROFILE_PATTERN, { error: 'expected a profile name of letters, digits and _.@+=,-' })
    .optional(),
  /** The stage read when a reference names no version. @default 'AWSCURRENT' */
  versionStage: z.string().min(1).max(256).default(DEFAULT_VERSION_STAGE),
  /** How long one HTTP attempt may take, in ms. @default 10000 */
  requestTimeoutMs: z.int().min(100).max(300_000).default(DEFAULT_REQUEST_TIMEOUT_MS),
  /** Attempts per call, the first included (SDK retries with backoff). @default 3 */
  maxAttempts: z.int().min(1).max(10).default(DEFAULT_MAX_ATTEMPTS),
});

/** The validated configuration of the `aws` provider, defaults applied. */
export type AwsProviderConfig = z.output<typeof awsConfigSchema>;

/** What the provider needs after the configuration meets its environment. */
export interface ResolvedAwsOptions {
  region: string;
  endpoint: string | undefined;
  profile: string | undefined;
  versionStage: string;
  requestTimeoutMs: number;
  maxAttempts: number;
}

/**
 * Completes a validated configuration from the provider's environment: the region falls back
 * to `AWS_REGION` there (never to the agent's own environment in process), the profile to
 * `AWS_PROFILE`.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when no region is configured or set in
 *   `AWS_REGION`, or `AWS_REGION` / `AWS_PROFILE` is malformed
 */
export function resolveAwsOptions(
  config: AwsProviderConfig,
  env: Readonly<Record<string, string | undefined>>,
  provider: string,
): ResolvedAwsOptions {
  const region = config.region ?? nonEmpty(env.AWS_REGION);
  if (region === undefined) {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider ${provider} (aws) has no region: set \`region\` in its configuration or AWS_REGION in its environment`,
      { provider },
    );
  }
  if (!REGION_PATTERN.test(region)) {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider ${provider} (aws): AWS_REGION is not an AWS region such as eu-west-1`,
      { provider },
    );
  }
  const profile = config.profile ?? nonEmpty(env.AWS_PROFILE);
  if (profile !== undefined && !PROFILE_PATTERN.test(profile)) {
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider ${provider} (aws): AWS_PROFILE is not a profile name of letters, digits and _.@+=,-`,
      { provider },
    );
  }
  return {
    region,
    endpoint: config.endpoint,
    profile,
    versionStage: config.versionStage,
    requestTimeoutMs: config.requestTimeoutMs,
    maxAttempts: config.maxAttempts,
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
