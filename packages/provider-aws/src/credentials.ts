import { join } from 'node:path';
import { ProviderError } from '@dso/provider-sdk';

/** AWS credentials as the SDK's signer takes them. */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

/** Where the credentials come from, safe to log: never a key. */
export type AwsCredentialSource = 'environment' | 'profile' | 'default-chain';

/** A credential provider in the SDK's shape: called before signing, memoised by the client. */
export type AwsCredentialProvider = (
  properties?: Record<string, unknown>,
) => Promise<AwsCredentials>;

/** The SDK's default chain factory: `client.config.credentialDefaultProvider`. */
export type SdkDefaultProviderFactory = (init: Record<string, unknown>) => AwsCredentialProvider;

/** Options of {@link createCredentialChain}. */
export interface CredentialChainOptions {
  /** The provider's environment (ProviderContext.env), never read from process.env here. */
  env: Readonly<Record<string, string | undefined>>;
  /** The selected profile: `profile` in the configuration, else `AWS_PROFILE`. */
  profile: string | undefined;
  /** The region, for the STS calls a role profile or web identity makes. */
  region: string;
  /** The configured provider name, for errors. */
  provider: string;
  /** Returns the SDK's default chain factory; called at most once, on the first signature. */
  sdkDefaultProvider: () => SdkDefaultProviderFactory;
}

// The SDK prints one warning through console.warn unless its logger has a warn of its own; a
// logger that drops everything keeps its lines (which never carry keys, but are noise) out of
// the agent's output.
const QUIET_LOGGER = Object.freeze({
  trace() {},
  debug() {},
  info() {},
  warn() {},
  error() {},
});

/**
 * The credential chain, reading the provider's environment (not the agent's process.env), in
 * the SDK's order:
 * 1. `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`,
 *    `AWS_CREDENTIAL_EXPIRATION`), unless a profile is selected (as the SDK does);
 * 2. the SDK's default chain for everything else, given what it would read from the
 *    environment as explicit inputs from this one: the profile (`default` when none), the shared
 *    files (`AWS_SHARED_CREDENTIALS_FILE`, `AWS_CONFIG_FILE`, else `$HOME/.aws/…`), and web
 *    identity (`AWS_WEB_IDENTITY_TOKEN_FILE`, `AWS_ROLE_ARN`, `AWS_ROLE_SESSION_NAME`). It then
 *    tries SSO and `credential_process` profiles, web identity, and last the container (ECS) and
 *    instance (IMDS) metadata endpoints, whose switches (`AWS_CONTAINER_CREDENTIALS_*`,
 *    `AWS_EC2_METADATA_DISABLED`) the SDK reads from process.env: in a provider child (the
 *    default) that is the environment the host gave it.
 *
 * @example
 * const chain = createCredentialChain({ env: context.env, profile: undefined, region: 'eu-west-1', provider: 'aws', sdkDefaultProvider: () => client.config.credentialDefaultProvider });
 * chain.source; // 'environment' when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are set
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when only one of AWS_ACCESS_KEY_ID and
 *   AWS_SECRET_ACCESS_KEY is set, or AWS_CREDENTIAL_EXPIRATION is not a date
 */
export function createCredentialChain(options: CredentialChainOptions): {
  source: AwsCredentialSource;
  provider: AwsCredentialProvider;
} {
  const { env, profile, region, provider } = options;
  const accessKeyId = nonEmpty(env.AWS_ACCESS_KEY_ID);
  const secretAccessKey = nonEmpty(env.AWS_SECRET_ACCESS_KEY);
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    const missing = accessKeyId === undefined ? 'AWS_ACCESS_KEY_ID' : 'AWS_SECRET_ACCESS_KEY';
    throw new ProviderError(
      'DSO_PROVIDER_INVALID_CONFIG',
      `provider ${provider} (aws): ${missing} is not set but its pair is: set both, or neither to use a profile or role`,
      { provider },
    );
  }
  if (profile === undefined && accessKeyId !== undefined && secretAccessKey !== undefined) {
    const credentials: AwsCredentials = { accessKeyId, secretAccessKey };
    const sessionToken = nonEmpty(env.AWS_SESSION_TOKEN);
    if (sessionToken !== undefined) credentials.sessionToken = sessionToken;
    const expiration = nonEmpty(env.AWS_CREDENTIAL_EXPIRATION);
    if (expiration !== undefined) {
      const date = new Date(expiration);
      if (Number.isNaN(date.getTime())) {
        throw new ProviderError(
          'DSO_PROVIDER_INVALID_CONFIG',
          `provider ${provider} (aws): AWS_CREDENTIAL_EXPIRATION is not an ISO 8601 date`,
          { provider },
        );
      }
      credentials.expiration = date;
    }
    const frozen = Object.freeze(credentials);
    return { source: 'environment', provider: async () => frozen };
  }

  const home = nonEmpty(env.HOME);
  const init: Record<string, unknown> = {
    // Always a profile: with one, the SDK skips its own look at process.env's static keys, which
    // belong to the agent, not to this provider.
    profile: profile ?? 'default',
    filepath:
      nonEmpty(env.AWS_SHARED_CREDENTIALS_FILE) ??
      (home === undefined ? undefined : join(home, '.aws', 'credentials')),
    configFilepath:
      nonEmpty(env.AWS_CONFIG_FILE) ??
      (home === undefined ? undefined : join(home, '.aws', 'config')),
    // '' rather than undefined: the SDK falls back to process.env only for undefined.
    webIdentityTokenFile: nonEmpty(env.AWS_WEB_IDENTITY_TOKEN_FILE) ?? '',
    roleArn: nonEmpty(env.AWS_ROLE_ARN) ?? '',
    roleSessionName: nonEmpty(env.AWS_ROLE_SESSION_NAME),
    logger: QUIET_LOGGER,
    parentClientConfig: { region },
  };
  let chain: AwsCredentialProvider | undefined;
  return {
    source: profile === undefined ? 'default-chain' : 'profile',
    provider: (properties) => {
      chain ??= options.sdkDefaultProvider()(init);
      return chain(properties);
    },
  };
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
