import { ProviderError } from '@dso/provider-sdk';

// What the SDKs, the CLI and the console generate as ClientRequestToken, so as VersionId.
const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Any VersionId the service accepts: a ClientRequestToken of 32 to 64 characters.
const VERSION_ID_PATTERN = /^[A-Za-z0-9-]{32,64}$/;
const MAX_STAGE_LENGTH = 256;

/**
 * How a reference's version is read against Secrets Manager.
 * - `versionId`: a uuid-shaped version (any case), which is what every AWS SDK, the CLI and the
 *   console create: sent as `VersionId`.
 * - `stage`: anything else (`AWSPREVIOUS`, `AWSPENDING`, a custom label), sent as
 *   `VersionStage`. When the text could also be a VersionId (32-64 letters, digits and `-`, as
 *   a caller-chosen `ClientRequestToken` can be) and no version carries that stage, it is tried
 *   as a VersionId: `orVersionId` says so.
 */
export type AwsVersionRef =
  | { kind: 'versionId'; versionId: string }
  | { kind: 'stage'; stage: string; orVersionId: boolean };

/**
 * Reads a reference's version: absent means `defaultStage` (`AWSCURRENT` unless configured).
 *
 * @example
 * parseVersionRef(undefined, 'AWSCURRENT');   // { kind: 'stage', stage: 'AWSCURRENT', orVersionId: false }
 * parseVersionRef('AWSPREVIOUS', 'AWSCURRENT'); // { kind: 'stage', stage: 'AWSPREVIOUS', orVersionId: false }
 * parseVersionRef('9b2f0c7e-4a11-4c51-8a3e-0e3e0f6c1d2a', 'AWSCURRENT'); // { kind: 'versionId', … }
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND for an empty or over-long version, which no
 *   secret can have
 */
export function parseVersionRef(
  version: string | undefined,
  defaultStage: string,
  context: { provider: string; path: string } = { provider: 'aws', path: '(secret)' },
): AwsVersionRef {
  if (version === undefined) return { kind: 'stage', stage: defaultStage, orVersionId: false };
  if (typeof version !== 'string' || version === '' || version.length > MAX_STAGE_LENGTH) {
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `secret ${context.path} has no such version: a version is a VersionId (uuid) or a stage label of 1 to ${MAX_STAGE_LENGTH} characters`,
      context,
    );
  }
  if (UUID_PATTERN.test(version)) return { kind: 'versionId', versionId: version };
  return { kind: 'stage', stage: version, orVersionId: VERSION_ID_PATTERN.test(version) };
}

/** Names a version reference in messages: `stage AWSPENDING` or `VersionId 9b2f…`. */
export function describeVersionRef(ref: AwsVersionRef): string {
  return ref.kind === 'versionId' ? `VersionId ${ref.versionId}` : `stage ${ref.stage}`;
}
