/**
 * @dso/docker-runtime: The only part of DSO that speaks to the Docker Engine: events, inspect, and atomic secret-file injection.
 */
export const PACKAGE_NAME = '@dso/docker-runtime';
