/**
 * @dso/provider-vault: being written (issue 5).
 */
export const PACKAGE_NAME = '@dso/provider-vault';
