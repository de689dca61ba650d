import { describe, expect, it } from 'vitest';
import { detectEngineDialect } from './engine-dialect.js';
import { toEngineError } from './engine-errors.js';
import { DockerRuntimeError } from './errors.js';

const context = { operation: 'inspect container', endpoint: 'unix:///x.sock', containerId: 'c1' };
const withCode = (code: string) => Object.assign(new Error(code), { code });
const withStatus = (statusCode: number, message: string) =>
  Object.assign(new Error(`(HTTP code ${statusCode})`), { statusCode, json: { message } });

describe('toEngineError', () => {
  it('returns a DockerRuntimeError unchanged', () => {
    const error = new DockerRuntimeError('DSO_DOCKER_NO_TAR', 'no tar');
    expect(toEngineError(error, context)).toBe(error);
  });

  it.each(['ENOENT', 'ECONNREFUSED', 'ECONNRESET'])(
    'maps %s to DSO_DOCKER_UNREACHABLE naming the endpoint and the fix',
    (code) => {
      const error = toEngineError(withCode(code), context);
      expect(error.code).toBe('DSO_DOCKER_UNREACHABLE');
      expect(error.message).toContain('unix:///x.sock');
      expect(error.message).toContain('DOCKER_HOST');
    },
  );

  it('maps EACCES to DSO_DOCKER_PERMISSION_DENIED', () => {
    expect(toEngineError(withCode('EACCES'), context).code).toBe('DSO_DOCKER_PERMISSION_DENIED');
  });

  it('maps 404 and 409 on a container to not found and not running', () => {
    expect(toEngineError(withStatus(404, 'No such container: c1'), context).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
    expect(toEngineError(withStatus(409, 'is paused'), context).code).toBe(
      'DSO_DOCKER_CONTAINER_NOT_RUNNING',
    );
  });

  it('maps any other status to DSO_DOCKER_ENGINE_ERROR with the status and engine message', () => {
    const error = toEngineError(withStatus(500, 'boom'), context);
    expect(error.code).toBe('DSO_DOCKER_ENGINE_ERROR');
    expect(error.message).toBe('the engine (Docker) failed to inspect container (HTTP 500): boom');
    expect(error.details.statusCode).toBe(500);
  });

  it('names what aborted the call: caller, close or timeout', () => {
    const abort = new Error('aborted');
    expect(toEngineError(abort, { ...context, deadlineCause: 'caller' }).code).toBe(
      'DSO_DOCKER_ABORTED',
    );
    expect(toEngineError(abort, { ...context, deadlineCause: 'closed' }).code).toBe(
      'DSO_DOCKER_CLOSED',
    );
    const timeout = toEngineError(abort, { ...context, deadlineCause: 'timeout', timeoutMs: 250 });
    expect(timeout.code).toBe('DSO_DOCKER_TIMEOUT');
    expect(timeout.message).toContain('250 ms');
  });

  describe("Podman 4.3's answers (captured from its service), mapped to Docker's codes", () => {
    const podman = detectEngineDialect({
      Components: [{ Name: 'Podman Engine', Version: '4.3.1' }],
    });
    const id = 'ae3973f5a0fe0d0bfa5eda179806e8849f1267f7704a458ead3061d199ce20cb';
    const on = (operation: string) => ({ ...context, operation, containerId: id, dialect: podman });
    // dockerode keeps the parsed body on `json`: Podman's carries `cause` and `response` too.
    const reply = (statusCode: number, message: string, cause: string) =>
      Object.assign(new Error(`(HTTP code ${statusCode})`), {
        statusCode,
        json: { cause, message, response: statusCode },
      });
    const improper = 'container state improper';

    it.each([
      ['create exec', `can only create exec sessions on running containers: ${improper}`],
      [
        'send SIGHUP to container',
        `can only kill running containers. ${id} is in state exited: ${improper}`,
      ],
      ['pause container', `"created" is not running, can't pause: ${improper}`],
    ])(
      'maps 500 %s ... container state improper to DSO_DOCKER_CONTAINER_NOT_RUNNING',
      (operation, message) => {
        const error = toEngineError(reply(500, message, improper), on(operation));
        expect(error.code).toBe('DSO_DOCKER_CONTAINER_NOT_RUNNING');
        expect(error.retryable).toBe(false);
      },
    );

    it('maps 409 (exec in a paused container) and 404 as Docker', () => {
      const paused = `cannot create exec session as container ${id} is paused`;
      expect(toEngineError(reply(409, paused, paused), on('exec')).code).toBe(
        'DSO_DOCKER_CONTAINER_NOT_RUNNING',
      );
      const missing = `no container with name or ID "${id}" found: no such container`;
      expect(toEngineError(reply(404, missing, 'no such container'), on('exec')).code).toBe(
        'DSO_DOCKER_CONTAINER_NOT_FOUND',
      );
    });

    it.each([
      ['user', 'unable to find user nosuchuser: no matching entries in passwd file', 'passwd'],
      ['group', 'unable to find group nosuchgroup: no matching entries in group file', 'group'],
    ])(
      'maps an unknown %s (exec start, container start) to DSO_DOCKER_USER_UNRESOLVED',
      (_, message, file) => {
        const error = toEngineError(
          reply(500, message, `no matching entries in ${file} file`),
          on('exec in container'),
        );
        expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
        expect(error.retryable).toBe(false);
        expect(error.message).toContain(message);
        expect(error.message).toContain(`container ${id}`);
        expect(error.message).toContain('uid:gid');
      },
    );

    it('maps the unknown user its archive GET meets (it resolves the run uid first)', () => {
      const error = toEngineError(
        reply(
          500,
          'determining run uid: user: unknown user error looking up user "nosuchuser"',
          'user: unknown user error looking up user "nosuchuser"',
        ),
        on('read /etc/passwd'),
      );
      expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
      expect(error.message).toContain('"nosuchuser"');
    });

    it("reads a hijacked exec start's refusal, which dockerode keeps only in its message", () => {
      // As docker-modem reports it: no parsed body, the text after the reason.
      const hijacked = Object.assign(
        new Error(
          '(HTTP code 500) container not running - unable to find user nosuchuser: no matching entries in passwd file ',
        ),
        { statusCode: 500, json: null, reason: 'container not running' },
      );
      const error = toEngineError(hijacked, on('exec in container'));
      expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
      expect(error.message).toContain('unable to find user nosuchuser: no matching entries');
    });

    it('keeps any other 500 an engine error (retryable), with its message', () => {
      const error = toEngineError(
        reply(500, 'invalid signal: NOSUCH', 'invalid signal: NOSUCH'),
        on('kill'),
      );
      expect(error.code).toBe('DSO_DOCKER_ENGINE_ERROR');
      expect(error.message).toContain('invalid signal: NOSUCH');
    });

    it("reads no Podman words under Docker's rules (the engine not yet known)", () => {
      const withDocker = { ...on('exec'), dialect: undefined };
      expect(toEngineError(reply(500, improper, improper), withDocker).code).toBe(
        'DSO_DOCKER_ENGINE_ERROR',
      );
    });
  });

  it("maps Docker's unknown user at container start (captured) to DSO_DOCKER_USER_UNRESOLVED", () => {
    const error = toEngineError(
      withStatus(500, 'unable to find user nosuchuser: no matching entries in passwd file'),
      { ...context, operation: 'start container' },
    );
    expect(error.code).toBe('DSO_DOCKER_USER_UNRESOLVED');
    expect(error.message).toContain('unable to find user nosuchuser');
  });
});
