import { DsoError } from '@dso/core';
import { describe, expect, it } from 'vitest';
import { expectedFailure } from './run.js';

describe('expectedFailure', () => {
  it('logs a coded failure (a root that is not a tmpfs) as its code and fix, without a stack', () => {
    const error = new DsoError(
      'DSO_DOCKER_HOST_PATH_NOT_TMPFS',
      '/run/dso/containers is not on a tmpfs: mount one with `mount -t tmpfs …`',
    );
    const fields = expectedFailure(error);
    expect(fields).toEqual({
      code: 'DSO_DOCKER_HOST_PATH_NOT_TMPFS',
      reason: error.message,
    });
    expect(JSON.stringify(fields)).not.toContain('    at ');
  });

  it("keeps the cause's message, not its stack", () => {
    const error = new DsoError('DSO_DOCKER_UNREACHABLE', 'no engine answers: start it', {
      cause: new Error('connect ECONNREFUSED /var/run/docker.sock'),
    });
    expect(expectedFailure(error)).toEqual({
      code: 'DSO_DOCKER_UNREACHABLE',
      reason: 'no engine answers: start it',
      cause: 'connect ECONNREFUSED /var/run/docker.sock',
    });
  });

  it('keeps an unexpected failure whole under err, stack included', () => {
    const error = new TypeError('boom');
    expect(expectedFailure(error)).toEqual({ err: error, code: undefined });
  });
});
