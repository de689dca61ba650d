import { DockerRuntimeError } from './errors.js';

/** The engine's socket when neither the `host` option nor `DOCKER_HOST` names one. */
export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';

/** The port a `tcp://host` without one means, as for the docker CLI. */
const DEFAULT_TCP_PORT = 2375;

/** Where the engine listens, parsed from `DOCKER_HOST` syntax. */
export type DockerEndpoint =
  | { kind: 'unix'; socketPath: string; display: string }
  | { kind: 'tcp'; host: string; port: number; display: string };

/**
 * Parses `DOCKER_HOST` syntax: `unix:///path/to/docker.sock` or `tcp://host[:port]`
 * (port 2375 when omitted). Plain TCP carries secret values unencrypted, so it is refused for
 * anything but a loopback address unless `allowInsecureTcp` is set; TLS (`DOCKER_TLS_VERIFY`)
 * and `ssh://` are not supported yet.
 *
 * @throws DockerRuntimeError DSO_DOCKER_INVALID_HOST for any other syntax
 * @throws DockerRuntimeError DSO_DOCKER_INSECURE_HOST for plain TCP to a non-loopback host
 */
export function parseDockerHost(
  value: string,
  options: { allowInsecureTcp?: boolean } = {},
): DockerEndpoint {
  const text = value.trim();
  if (text.startsWith('unix://')) {
    const socketPath = text.slice('unix://'.length);
    if (!socketPath.startsWith('/')) {
      throw invalidHost(value, 'a unix socket needs an absolute path: unix:///var/run/docker.sock');
    }
    return { kind: 'unix', socketPath, display: `unix://${socketPath}` };
  }
  if (text.startsWith('tcp://')) {
    let url: URL;
    try {
      url = new URL(`http://${text.slice('tcp://'.length)}`);
    } catch (error) {
      throw invalidHost(value, 'expected tcp://host:port', error);
    }
    if (url.pathname !== '/' || url.search !== '' || url.username !== '' || url.hostname === '') {
      throw invalidHost(value, 'expected tcp://host:port');
    }
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    const port = url.port === '' ? DEFAULT_TCP_PORT : Number(url.port);
    if (!isLoopback(host) && options.allowInsecureTcp !== true) {
      throw new DockerRuntimeError(
        'DSO_DOCKER_INSECURE_HOST',
        `refusing plain tcp to ${host}:${port}: secret files would cross the network unencrypted; ` +
          'run the agent on the docker host (unix socket), tunnel to a loopback port, or set allowInsecureTcp',
        { host, port },
      );
    }
    return { kind: 'tcp', host, port, display: `tcp://${url.host}` };
  }
  throw invalidHost(value, 'expected unix:///path/to/docker.sock or tcp://host:port');
}

/** The endpoint from `DOCKER_HOST`, else the default unix socket. */
export function resolveDockerHost(
  host: string | undefined,
  env: NodeJS.ProcessEnv,
  options: { allowInsecureTcp?: boolean } = {},
): DockerEndpoint {
  const chosen = host ?? (env.DOCKER_HOST?.trim() || DEFAULT_DOCKER_HOST);
  return parseDockerHost(chosen, options);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function invalidHost(value: string, hint: string, cause?: unknown): DockerRuntimeError {
  return new DockerRuntimeError(
    'DSO_DOCKER_INVALID_HOST',
    `invalid docker host ${JSON.stringify(value)}: ${hint}`,
    cause === undefined ? { host: value } : { host: value, cause },
  );
}
