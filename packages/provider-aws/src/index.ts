/**
 * @dso/provider-aws: being written (issue 5).
 */
export const PACKAGE_NAME = '@dso/provider-aws';
