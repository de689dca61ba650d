/**
 * @dso/cli: dso: the DSO command line (vault, secrets, and the agent).
 */
export const PACKAGE_NAME = '@dso/cli';
