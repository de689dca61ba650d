/**
 * @dso/core: DSO's shared core: secret references, redaction, logging, configuration and errors.
 */
export const PACKAGE_NAME = '@dso/core';
