/**
 * @dso/agent: The DSO agent: watches the Docker Engine and delivers secrets into managed containers.
 */
export const PACKAGE_NAME = '@dso/agent';
