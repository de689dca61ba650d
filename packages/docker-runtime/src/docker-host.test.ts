import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_DOCKER_HOST,
  DEFAULT_DOCKER_TLS_HOST,
  parseDockerHost,
  readDockerTls,
  resolveDockerHost,
  resolveDockerTls,
  tlsFailure,
} from './docker-host.js';
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
    expect(parseDockerHost('tcp://localhost')).toMatchObject({
      host: 'localhost',
      port: 2375,
      tls: false,
    });
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

describe('parseDockerHost with TLS', () => {
  it('defaults the port to 2376 and allows a remote host without allowInsecureTcp', () => {
    expect(parseDockerHost('tcp://docker.example.internal', { tls: true })).toEqual({
      kind: 'tcp',
      host: 'docker.example.internal',
      port: 2376,
      display: 'tcp://docker.example.internal',
      tls: true,
    });
    expect(parseDockerHost('tcp://10.0.0.5:2375', { tls: true })).toMatchObject({
      port: 2375,
      tls: true,
    });
  });

  it('refuses TLS with a unix socket with DSO_DOCKER_TLS_INVALID', () => {
    expect(codeOf(() => parseDockerHost('unix:///var/run/docker.sock', { tls: true }))).toBe(
      'DSO_DOCKER_TLS_INVALID',
    );
  });

  it('defaults the host to tcp://localhost:2376 when TLS is on and nothing names one', () => {
    expect(resolveDockerHost(undefined, {}, { tls: true })).toMatchObject({
      display: DEFAULT_DOCKER_TLS_HOST,
      port: 2376,
      tls: true,
    });
    expect(
      resolveDockerHost(undefined, { DOCKER_HOST: 'tcp://10.1.2.3' }, { tls: true }),
    ).toMatchObject({
      host: '10.1.2.3',
      port: 2376,
    });
  });
});

describe('resolveDockerTls', () => {
  const home = '/home/op';

  it('is off by default, with ~/.docker as the directory', () => {
    expect(resolveDockerTls({}, {}, home)).toEqual({ verify: false, certPath: '/home/op/.docker' });
  });

  it('turns on for any non-empty DOCKER_TLS_VERIFY, as the docker CLI does', () => {
    for (const value of ['1', 'true', '0']) {
      expect(resolveDockerTls({}, { DOCKER_TLS_VERIFY: value }, home).verify).toBe(true);
    }
    expect(resolveDockerTls({}, { DOCKER_TLS_VERIFY: '' }, home).verify).toBe(false);
  });

  it('reads DOCKER_CERT_PATH, resolving a relative one', () => {
    expect(
      resolveDockerTls({}, { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/etc/docker-tls' }, home),
    ).toEqual({ verify: true, certPath: '/etc/docker-tls' });
    expect(
      resolveDockerTls({}, { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: 'certs' }, home).certPath,
    ).toBe(join(process.cwd(), 'certs'));
  });

  it('lets the options win over the environment', () => {
    const env = { DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: '/env/certs', DOCKER_TLS: '1' };
    expect(resolveDockerTls({ tlsVerify: false }, env, home).verify).toBe(false);
    expect(resolveDockerTls({ tlsVerify: true, tlsCertPath: '/opt/certs' }, {}, home)).toEqual({
      verify: true,
      certPath: '/opt/certs',
    });
    expect(resolveDockerTls({ tlsCertPath: '/opt/certs' }, env, home)).toEqual({
      verify: true,
      certPath: '/opt/certs',
    });
  });

  it('refuses tlsCertPath without TLS, and DOCKER_TLS (TLS without verification)', () => {
    expect(codeOf(() => resolveDockerTls({ tlsCertPath: '/opt/certs' }, {}, home))).toBe(
      'DSO_DOCKER_TLS_INVALID',
    );
    expect(codeOf(() => resolveDockerTls({}, { DOCKER_TLS: '1' }, home))).toBe(
      'DSO_DOCKER_TLS_INVALID',
    );
    expect(codeOf(() => resolveDockerTls({ tlsVerify: true, tlsCertPath: '' }, {}, home))).toBe(
      'DSO_DOCKER_TLS_INVALID',
    );
  });
});

describe('readDockerTls', () => {
  async function withDir(files: Record<string, string>, run: (dir: string) => Promise<void>) {
    const dir = await mkdtemp(join(tmpdir(), 'dso-tls-unit-'));
    try {
      for (const [name, content] of Object.entries(files))
        await writeFile(join(dir, name), content);
      await run(dir);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  }

  async function failureOf(promise: Promise<unknown>) {
    try {
      await promise;
    } catch (error) {
      return { code: (error as { code?: string }).code, message: (error as Error).message };
    }
    return { code: 'resolved', message: '' };
  }

  it('names the missing file, the error and the fix', async () => {
    await withDir({ 'ca.pem': 'x', 'cert.pem': 'x' }, async (dir) => {
      const failure = await failureOf(readDockerTls(dir));
      expect(failure.code).toBe('DSO_DOCKER_TLS_INVALID');
      expect(failure.message).toContain(join(dir, 'key.pem'));
      expect(failure.message).toContain('ENOENT');
      expect(failure.message).toContain('DOCKER_CERT_PATH (or tlsCertPath) must name a directory');
    });
  });

  it('refuses an empty file', async () => {
    await withDir({ 'ca.pem': '', 'cert.pem': 'x', 'key.pem': 'x' }, async (dir) => {
      const failure = await failureOf(readDockerTls(dir));
      expect(failure.code).toBe('DSO_DOCKER_TLS_INVALID');
      expect(failure.message).toContain(`${join(dir, 'ca.pem')} is empty`);
    });
  });

  it('refuses files that do not load, without quoting a byte of them', async () => {
    const canary = 'PRIVATE-KEY-CANARY-5f1c';
    const pem = (label: string) => `-----BEGIN ${label}-----\n${canary}\n-----END ${label}-----\n`;
    await withDir(
      {
        'ca.pem': pem('CERTIFICATE'),
        'cert.pem': pem('CERTIFICATE'),
        'key.pem': pem('PRIVATE KEY'),
      },
      async (dir) => {
        const failure = await failureOf(readDockerTls(dir));
        expect(failure.code).toBe('DSO_DOCKER_TLS_INVALID');
        expect(failure.message).toContain('not usable');
        expect(failure.message).not.toContain(canary);
      },
    );
  });
});

describe('tlsFailure', () => {
  const endpoint = { display: 'tcp://docker.example.internal:2376' };
  const errno = (code: string, message = 'x') => Object.assign(new Error(message), { code });

  it('blames ca.pem for an engine certificate that does not verify', () => {
    const failure = tlsFailure(errno('SELF_SIGNED_CERT_IN_CHAIN'), endpoint, '/certs');
    expect(failure?.code).toBe('DSO_DOCKER_TLS_INVALID');
    expect(failure?.message).toContain('/certs/ca.pem');
    expect(
      tlsFailure(errno('ERR_TLS_CERT_ALTNAME_INVALID'), endpoint, '/certs')?.message,
    ).toContain('subjectAltName');
  });

  it("blames this client's certificate for an alert from the engine", () => {
    const alert = tlsFailure(errno('ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE'), endpoint, '/certs');
    expect(alert?.code).toBe('DSO_DOCKER_TLS_INVALID');
    expect(alert?.message).toContain('/certs/cert.pem');
    const written = errno(
      'EPROTO',
      'write EPROTO 80:error:0A000412:SSL routines:ssl3_read_bytes:sslv3 alert bad certificate:ssl/record/rec_layer_s3.c:1586:',
    );
    const message = tlsFailure(written, endpoint, '/certs')?.message;
    expect(message).toContain('(EPROTO, sslv3 alert bad certificate)');
    expect(message).toContain("this client's certificate");
  });

  it('says when the endpoint does not speak TLS', () => {
    const written = errno(
      'EPROTO',
      'write EPROTO 80:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:x.c:350:',
    );
    expect(tlsFailure(written, endpoint, '/certs')?.message).toContain('does not speak TLS');
    expect(tlsFailure(errno('ERR_SSL_WRONG_VERSION_NUMBER'), endpoint, '/certs')?.code).toBe(
      'DSO_DOCKER_TLS_INVALID',
    );
  });

  it('reports a reset as DSO_DOCKER_UNREACHABLE naming the likely certificate cause', () => {
    const failure = tlsFailure(
      { message: 'wrapped', cause: errno('ECONNRESET') },
      endpoint,
      '/certs',
    );
    expect(failure?.code).toBe('DSO_DOCKER_UNREACHABLE');
    expect(failure?.message).toContain("this client's certificate");
  });

  it('leaves anything else to the usual mapping', () => {
    expect(tlsFailure(errno('ECONNREFUSED'), endpoint, '/certs')).toBeUndefined();
    expect(tlsFailure(new Error('no code'), endpoint, '/certs')).toBeUndefined();
  });
});
