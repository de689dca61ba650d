/**
 * @dso/provider-aws: DSO's provider for AWS Secrets Manager, on the AWS SDK v3
 * (`@aws-sdk/client-secrets-manager`). A reference's path is the secret's name or ARN; its
 * version is a VersionId (a uuid) or a stage label (`AWSPREVIOUS`, `AWSPENDING`, custom).
 * Credentials come from the provider's environment through the SDK's credential chain, or from
 * a named profile. `probe` reads the current VersionId with DescribeSecret (no value), which is
 * what rotation polling uses; `list` pages through ListSecrets.
 *
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import aws from '@dso/provider-aws';
 *
 * const provider = await createProvider(aws, { region: 'eu-west-1' }, {
 *   name: 'prod-aws',
 *   env: { AWS_ACCESS_KEY_ID: process.env.AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: process.env.AWS_SECRET_ACCESS_KEY },
 * });
 * const { value, version } = await provider.resolve({ path: 'prod/db' }, { signal: AbortSignal.timeout(30_000) });
 * `${value}`;                                               // '[REDACTED]'
 * await provider.resolve({ path: 'prod/db', version: 'AWSPREVIOUS' });
 * (await provider.probe?.({ path: 'prod/db' }))?.version;   // the VersionId carrying AWSCURRENT
 * await provider.close();
 */
import { defineProvider } from '@dso/provider-sdk';
import { AWS_CAPABILITIES, createAwsSecretsProvider } from './aws-provider.js';
import { type AwsProviderConfig, awsConfigSchema } from './config.js';

/**
 * The `aws` provider type: AWS Secrets Manager with resolve, list, probe and health (no watch:
 * the service has no push; the agent polls `probe`). Its configuration is
 * {@link awsConfigSchema}; load it with `createProvider(awsProvider, config, { name, env })` or
 * out of process by its package name.
 *
 * @throws ProviderError (from `create`) DSO_PROVIDER_INVALID_CONFIG when no region is configured
 *   and AWS_REGION is unset, or only one of AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY is set
 * @throws ProviderError (from calls) DSO_PROVIDER_NOT_FOUND, _UNAUTHORIZED, _THROTTLED,
 *   _UNAVAILABLE, _TIMEOUT, _INTERNAL: see the README's errors table
 * @example
 * import { createProvider } from '@dso/provider-sdk';
 * import { awsProvider } from '@dso/provider-aws';
 * const provider = await createProvider(awsProvider, { region: 'eu-west-1', profile: 'secrets-reader' }, { name: 'aws' });
 */
export const awsProvider = defineProvider<AwsProviderConfig>({
  type: 'aws',
  description:
    'AWS Secrets Manager (AWS SDK v3): version stages and VersionIds, DescribeSecret probe',
  capabilities: AWS_CAPABILITIES,
  configSchema: awsConfigSchema,
  create: createAwsSecretsProvider,
});

/** The same definition under the name the runner also looks for. */
export const provider = awsProvider;
export default awsProvider;

export { AWS_CAPABILITIES } from './aws-provider.js';
export {
  type AwsProviderConfig,
  awsConfigSchema,
  DEFAULT_MAX_ATTEMPTS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_VERSION_STAGE,
} from './config.js';
export { type AwsVersionRef, parseVersionRef } from './version-ref.js';
