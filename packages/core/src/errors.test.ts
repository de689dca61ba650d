import { describe, expect, it, vi } from 'vitest';
import { DsoError, errorCode, isDsoError, isRetryable } from './errors.js';

class DockerRuntimeError extends DsoError {
  override name = 'DockerRuntimeError';
}

describe('DsoError', () => {
  it('keeps its code, message and name', () => {
    const error = new DsoError('DSO_TEST_FAILED', 'test failed');
    expect(error).toBeInstanceOf(Error);
    expect(error.code).toBe('DSO_TEST_FAILED');
    expect(error.message).toBe('test failed');
    expect(error.name).toBe('DsoError');
    expect(error.stack).toContain('test failed');
  });

  it('keeps the cause as the standard error.cause and every other fact on details', () => {
    const cause = new Error('socket closed');
    const error = new DsoError('DSO_DOCKER_EXEC_FAILED', 'exec exited non-zero', {
      cause,
      containerId: 'abc123',
      exitCode: 2,
    });
    expect(error.cause).toBe(cause);
    expect(error.details).toEqual({ containerId: 'abc123', exitCode: 2 });
    expect(error.details).not.toHaveProperty('cause');
  });

  it('has no cause property and empty details when given no options', () => {
    const error = new DsoError('DSO_TEST_FAILED', 'test failed');
    expect('cause' in error).toBe(false);
    expect(error.details).toEqual({});
  });

  it('freezes its details', () => {
    const error = new DsoError('DSO_TEST_FAILED', 'test failed', { count: 1 });
    expect(Object.isFrozen(error.details)).toBe(true);
  });

  it('lets a subclass set its name and stay recognisable', () => {
    const error = new DockerRuntimeError('DSO_DOCKER_UNREACHABLE', 'no socket answered');
    expect(error.name).toBe('DockerRuntimeError');
    expect(error).toBeInstanceOf(DsoError);
    expect(isDsoError(error)).toBe(true);
    expect(String(error)).toBe('DockerRuntimeError: no socket answered');
  });

  it('does not show its brand as an enumerable property', () => {
    const error = new DsoError('DSO_TEST_FAILED', 'test failed');
    expect(Object.keys(error).sort()).toEqual(['code', 'details', 'name', 'retryable']);
    expect(Object.getOwnPropertySymbols(error)).toEqual([Symbol.for('dso.error')]);
  });
});

describe('isDsoError', () => {
  it('recognises an error from a second copy of the module', async () => {
    vi.resetModules();
    const copy = await import('./errors.js');
    expect(copy.DsoError).not.toBe(DsoError);
    const error = new copy.DsoError('DSO_TEST_FAILED', 'from another copy');
    expect(error).not.toBeInstanceOf(DsoError);
    expect(isDsoError(error)).toBe(true);
  });

  it.each([
    ['a plain Error', new Error('x')],
    ['an error-like object with a code', { code: 'DSO_TEST_FAILED', message: 'x' }],
    ['null', null],
    ['undefined', undefined],
    ['a string', 'DSO_TEST_FAILED'],
    ['an object with the brand set to something other than true', { [Symbol.for('dso.error')]: 1 }],
  ])('rejects %s', (_, value) => {
    expect(isDsoError(value)).toBe(false);
  });
});

describe('errorCode', () => {
  it('reads a DSO_ code from any error that carries one, and nothing else', () => {
    expect(errorCode(new DsoError('DSO_X_Y', 'm'))).toBe('DSO_X_Y');
    expect(errorCode(Object.assign(new Error('m'), { code: 'DSO_PROVIDER_NOT_FOUND' }))).toBe(
      'DSO_PROVIDER_NOT_FOUND',
    );
    expect(errorCode(Object.assign(new Error('m'), { code: 'ENOENT' }))).toBeUndefined();
    expect(errorCode('DSO_X')).toBeUndefined();
    expect(errorCode(null)).toBeUndefined();
  });
});

describe('isRetryable', () => {
  it('asks the error: retryable only when built so', () => {
    expect(isRetryable(new DsoError('DSO_X_Y', 'm', { retryable: true }))).toBe(true);
    expect(isRetryable(new DsoError('DSO_X_Y', 'm'))).toBe(false);
    expect(new DsoError('DSO_X_Y', 'm', { retryable: true }).details).toEqual({});
  });

  it('finds a retryable error wrapped as a cause, and ignores codes alone', () => {
    const provider = Object.assign(new Error('unavailable'), { retryable: true });
    const wrapped = new DsoError('DSO_AGENT_RESOLVE_FAILED', 'could not resolve', {
      cause: new DsoError('DSO_X_Y', 'middle', { cause: provider }),
    });
    expect(isRetryable(wrapped)).toBe(true);
    expect(isRetryable({ code: 'DSO_DOCKER_TIMEOUT' })).toBe(false);
    expect(isRetryable(undefined)).toBe(false);
    expect(isRetryable('DSO_DOCKER_TIMEOUT')).toBe(false);
  });
});
