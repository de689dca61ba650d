/**
 * @dso/provider-azure: being written (issue 5).
 */
export const PACKAGE_NAME = '@dso/provider-azure';
