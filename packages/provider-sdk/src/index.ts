/**
 * @dso/provider-sdk: The provider contract for DSO: SecretValue, provider errors with stable codes, and the types every secret-store backend implements.
 */
export const PACKAGE_NAME = '@dso/provider-sdk';
