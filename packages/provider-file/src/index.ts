/**
 * @dso/provider-file: being written (issue 5).
 */
export const PACKAGE_NAME = '@dso/provider-file';
