import { isRetryable } from '@dso/core';
import { describe, expect, it } from 'vitest';
import { DOCKER_RUNTIME_ERROR_CODES, DockerRuntimeError } from './errors.js';

describe('DockerRuntimeError retryability', () => {
  // The agent retries a delivery exactly when its error says so: this table is the rule.
  const retryable = [
    'DSO_DOCKER_TIMEOUT',
    'DSO_DOCKER_UNREACHABLE',
    'DSO_DOCKER_ENGINE_ERROR',
    'DSO_DOCKER_TARGET_BUSY',
  ];

  it.each(DOCKER_RUNTIME_ERROR_CODES.map((code) => [code, retryable.includes(code)] as const))(
    '%s is retryable: %s',
    (code, expected) => {
      const error = new DockerRuntimeError(code, 'm');
      expect(error.retryable).toBe(expected);
      expect(isRetryable(error)).toBe(expected);
    },
  );

  it('lets the thrower override what the code says', () => {
    expect(new DockerRuntimeError('DSO_DOCKER_TIMEOUT', 'm', { retryable: false }).retryable).toBe(
      false,
    );
    expect(
      new DockerRuntimeError('DSO_DOCKER_EXEC_FAILED', 'm', { retryable: true }).retryable,
    ).toBe(true);
  });
});
