import { describe, expect, it } from 'vitest';
import { isProviderError, ProviderError, toProviderError } from './provider-error.js';

describe('ProviderError', () => {
  it('marks throttled, unavailable and timeout as retryable, the rest not', () => {
    expect(new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'down').retryable).toBe(true);
    expect(new ProviderError('DSO_PROVIDER_TIMEOUT', 'slow').retryable).toBe(true);
    expect(new ProviderError('DSO_PROVIDER_NOT_FOUND', 'missing').retryable).toBe(false);
    expect(new ProviderError('DSO_PROVIDER_NOT_FOUND', 'x', { retryable: true }).retryable).toBe(
      true,
    );
  });

  it('is recognised by isProviderError across copies, by its global brand', () => {
    const foreign = Object.assign(new Error('x'), { code: 'DSO_PROVIDER_NOT_FOUND' });
    Object.defineProperty(foreign, Symbol.for('dso.provider-error'), { value: true });
    expect(isProviderError(foreign)).toBe(true);
    expect(isProviderError(new Error('x'))).toBe(false);
    expect(isProviderError(null)).toBe(false);
  });

  it('normalises unknown errors without copying their message', () => {
    const error = toProviderError(new Error('backend said: value=hunter2'), 'local');
    expect(error.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(error.message).not.toContain('hunter2');
    expect(error.cause).toBeInstanceOf(Error);
  });
});
