import type { Agent } from 'node:https';
import type { TokenCredential } from '@azure/identity';
import type { SecretClientOptions } from '@azure/keyvault-secrets';
import { ProviderError } from '@dso/provider-sdk';
import { type AzureProviderConfig, DEFAULT_AUTHORITY_HOST } from './config.js';

/** The `@azure/identity` module, loaded when a provider is created. */
export type IdentityModule = typeof import('@azure/identity');

/** How the credential's own HTTP requests (to Entra ID) are made. */
export interface CredentialTransport {
  /** The provider's HTTPS agent (its CA settings, closed with the provider). */
  agent: Agent;
  retryOptions: NonNullable<SecretClientOptions['retryOptions']>;
  additionalPolicies: NonNullable<SecretClientOptions['additionalPolicies']>;
}

/** One source of tokens, with what it needs, read from the configuration and environment. */
export type CredentialSource =
  | { kind: 'clientSecret'; tenantId: string; clientId: string; clientSecret: string }
  | {
      kind: 'clientCertificate';
      tenantId: string;
      clientId: string;
      certificatePath: string;
      certificatePassword?: string;
    }
  | { kind: 'workloadIdentity'; tenantId: string; clientId: string; tokenFilePath: string }
  | { kind: 'managedIdentity'; clientId?: string };

/** Which credential to build, and the authority it asks. */
export interface CredentialPlan {
  source: CredentialSource;
  authorityHost: string;
  /** True for any authority but the public cloud's (see {@link planCredential}). */
  disableInstanceDiscovery: boolean;
  /** For logs: where tokens come from, no secrets. */
  description: string;
}

/**
 * Decides which credential `config.credential` means, reading only `env` (the provider's
 * environment, not `process.env`), before any Azure module is loaded:
 *
 * - `default`: the first of DefaultAzureCredential's service credentials that the environment
 *   configures: a service principal from AZURE_TENANT_ID + AZURE_CLIENT_ID +
 *   AZURE_CLIENT_SECRET (or AZURE_CLIENT_CERTIFICATE_PATH), else workload identity
 *   (AZURE_FEDERATED_TOKEN_FILE), else managed identity (AZURE_CLIENT_ID as the user-assigned
 *   identity when set). Like DefaultAzureCredential, a configured credential that fails is
 *   final: a refused client secret does not fall through to managed identity. Developer
 *   credentials (Azure CLI, PowerShell, VS Code) are left out: an agent should not act as
 *   whoever last ran `az login`.
 * - `clientSecret`: a service principal whose secret is in the variable `clientSecretEnv` names.
 * - `managedIdentity`: the host's managed identity.
 *
 * @throws ProviderError DSO_PROVIDER_INVALID_CONFIG when `clientSecretEnv` names an unset variable
 */
export function planCredential(
  config: AzureProviderConfig,
  env: Readonly<Record<string, string | undefined>>,
  provider: string,
): CredentialPlan {
  const authorityHost = stripSlash(
    config.authorityHost ?? nonEmpty(env.AZURE_AUTHORITY_HOST) ?? DEFAULT_AUTHORITY_HOST,
  );
  // Instance discovery validates an authority by asking login.microsoftonline.com about it;
  // the authority of another cloud, of Azure Stack or of a test fake cannot be validated so.
  const disableInstanceDiscovery = authorityHost !== DEFAULT_AUTHORITY_HOST;
  const plan = (source: CredentialSource, description: string): CredentialPlan => ({
    source,
    authorityHost,
    disableInstanceDiscovery,
    description,
  });
  const credential = config.credential;
  switch (credential.kind) {
    case 'clientSecret': {
      const clientSecret = nonEmpty(env[credential.clientSecretEnv]);
      if (clientSecret === undefined) {
        // The variable's name is configuration: the message names the setting, not its value.
        throw new ProviderError(
          'DSO_PROVIDER_INVALID_CONFIG',
          `provider ${provider}: the environment variable that credential.clientSecretEnv names is not set (or empty) in the provider's environment: set it to the application's client secret`,
          { provider },
        );
      }
      return plan(
        {
          kind: 'clientSecret',
          tenantId: credential.tenantId,
          clientId: credential.clientId,
          clientSecret,
        },
        `client secret of application ${credential.clientId}`,
      );
    }
    case 'managedIdentity':
      return plan(
        credential.clientId === undefined
          ? { kind: 'managedIdentity' }
          : { kind: 'managedIdentity', clientId: credential.clientId },
        credential.clientId === undefined
          ? 'system-assigned managed identity'
          : `user-assigned managed identity ${credential.clientId}`,
      );
    case 'default': {
      const tenantId = nonEmpty(env.AZURE_TENANT_ID);
      const clientId = nonEmpty(env.AZURE_CLIENT_ID);
      const clientSecret = nonEmpty(env.AZURE_CLIENT_SECRET);
      const certificatePath = nonEmpty(env.AZURE_CLIENT_CERTIFICATE_PATH);
      const certificatePassword = nonEmpty(env.AZURE_CLIENT_CERTIFICATE_PASSWORD);
      const tokenFilePath = nonEmpty(env.AZURE_FEDERATED_TOKEN_FILE);
      const source = defaultSource({
        tenantId,
        clientId,
        clientSecret,
        certificatePath,
        certificatePassword,
        tokenFilePath,
      });
      return plan(source, `default: ${source.kind} from the provider environment`);
    }
  }
}

function defaultSource(env: {
  tenantId: string | undefined;
  clientId: string | undefined;
  clientSecret: string | undefined;
  certificatePath: string | undefined;
  certificatePassword: string | undefined;
  tokenFilePath: string | undefined;
}): CredentialSource {
  const { tenantId, clientId } = env;
  if (tenantId !== undefined && clientId !== undefined) {
    if (env.clientSecret !== undefined) {
      return { kind: 'clientSecret', tenantId, clientId, clientSecret: env.clientSecret };
    }
    if (env.certificatePath !== undefined) {
      return {
        kind: 'clientCertificate',
        tenantId,
        clientId,
        certificatePath: env.certificatePath,
        ...(env.certificatePassword === undefined
          ? {}
          : { certificatePassword: env.certificatePassword }),
      };
    }
    if (env.tokenFilePath !== undefined) {
      return { kind: 'workloadIdentity', tenantId, clientId, tokenFilePath: env.tokenFilePath };
    }
  }
  return clientId === undefined
    ? { kind: 'managedIdentity' }
    : { kind: 'managedIdentity', clientId };
}

/**
 * Builds the planned credential with `@azure/identity`. Nothing is requested here: the first
 * token is fetched by the first call.
 */
export function buildCredential(
  plan: CredentialPlan,
  identity: IdentityModule,
  transport: CredentialTransport,
): TokenCredential {
  const options = {
    authorityHost: plan.authorityHost,
    disableInstanceDiscovery: plan.disableInstanceDiscovery,
    agent: transport.agent,
    retryOptions: transport.retryOptions,
    additionalPolicies: transport.additionalPolicies,
  };
  const source = plan.source;
  switch (source.kind) {
    case 'clientSecret':
      return new identity.ClientSecretCredential(
        source.tenantId,
        source.clientId,
        source.clientSecret,
        options,
      );
    case 'clientCertificate':
      return new identity.ClientCertificateCredential(
        source.tenantId,
        source.clientId,
        source.certificatePassword === undefined
          ? { certificatePath: source.certificatePath }
          : {
              certificatePath: source.certificatePath,
              certificatePassword: source.certificatePassword,
            },
        options,
      );
    case 'workloadIdentity':
      return new identity.WorkloadIdentityCredential({
        ...options,
        tenantId: source.tenantId,
        clientId: source.clientId,
        tokenFilePath: source.tokenFilePath,
      });
    case 'managedIdentity':
      // Managed identity endpoints (IMDS, App Service, Arc) are plain HTTP on link-local or
      // loopback addresses: the provider's HTTPS agent and CA settings do not apply to them.
      return source.clientId === undefined
        ? new identity.ManagedIdentityCredential()
        : new identity.ManagedIdentityCredential({ clientId: source.clientId });
  }
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

function stripSlash(url: string): string {
  return url.endsWith('/') ? url.slice(0, -1) : url;
}
