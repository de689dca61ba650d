import { describe, expect, it } from 'vitest';
import { DEFAULT_DOCKER_HOST, parseDockerHost, resolveDockerHost } from './docker-host.js';
import { isDockerRuntimeError } from './errors.js';

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return isDockerRuntimeError(error) ? error.code : 'not a DockerRuntimeError';
  }
  return undefined;
}

describe('parseDockerHost', () => {
  it('reads a unix socket path', () => {
    expect(parseDockerHost('unix:///var/run/docker.sock')).toEqual({
      kind: 'unix',
      socketPath: '/var/run/docker.sock',
      display: 'unix:///var/run/docker.sock',
    });
  });

  it('reads tcp host and port, defaulting the port to 2375', () => {
    expect(parseDockerHost('tcp://127.0.0.1:2376')).toMatchObject({
      kind: 'tcp',
      host: '127.0.0.1',
      port: 2376,
    });
    expect(parseDockerHost('tcp://localhost')).toMatchObject({ host: 'localhost', port: 2375 });
    expect(parseDockerHost('tcp://[::1]:2375')).toMatchObject({ host: '::1', port: 2375 });
  });

  it('refuses plain tcp to a remote host with DSO_DOCKER_INSECURE_HOST unless allowed', () => {
    expect(codeOf(() => parseDockerHost('tcp://10.0.0.5:2375'))).toBe('DSO_DOCKER_INSECURE_HOST');
    expect(parseDockerHost('tcp://10.0.0.5:2375', { allowInsecureTcp: true })).toMatchObject({
      host: '10.0.0.5',
      port: 2375,
    });
  });

  it.each([
    'unix://relative.sock',
    'unix://',
    'ssh://user@host',
    'npipe:////./pipe/docker_engine',
    '/var/run/docker.sock',
    'tcp://127.0.0.1:2375/path',
    'tcp://',
    'tcp://127.0.0.1:notaport',
  ])('rejects %s with DSO_DOCKER_INVALID_HOST', (value) => {
    expect(codeOf(() => parseDockerHost(value))).toBe('DSO_DOCKER_INVALID_HOST');
  });
});

describe('resolveDockerHost', () => {
  it('prefers the option, then DOCKER_HOST, then the default socket', () => {
    const env = { DOCKER_HOST: 'unix:///env.sock' };
    expect(resolveDockerHost('unix:///option.sock', env)).toMatchObject({
      socketPath: '/option.sock',
    });
    expect(resolveDockerHost(undefined, env)).toMatchObject({ socketPath: '/env.sock' });
    expect(resolveDockerHost(undefined, {}).display).toBe(DEFAULT_DOCKER_HOST);
    expect(resolveDockerHost(undefined, { DOCKER_HOST: '  ' }).display).toBe(DEFAULT_DOCKER_HOST);
  });
});
