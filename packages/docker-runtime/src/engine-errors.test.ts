import { describe, expect, it } from 'vitest';
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
    expect(error.message).toBe('the Docker Engine failed to inspect container (HTTP 500): boom');
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
});
