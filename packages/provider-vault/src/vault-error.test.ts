import { isProviderError } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import {
  errorForStatus,
  errorForTransportFailure,
  isVaultProviderError,
  MAX_QUOTED_VAULT_ERROR_CHARS,
  parseRetryAfter,
  quoteVaultErrors,
} from './vault-error.js';

const context = {
  provider: 'v',
  operation: 'read',
  apiPath: 'secret/data/app/db',
  path: 'app/db',
  authHint: 'check the token',
};

describe('vault errors', () => {
  it('maps each status to its code and retryability', () => {
    const cases: [number, string, boolean][] = [
      [404, 'DSO_PROVIDER_NOT_FOUND', false],
      [401, 'DSO_PROVIDER_UNAUTHORIZED', false],
      [403, 'DSO_PROVIDER_UNAUTHORIZED', false],
      [429, 'DSO_PROVIDER_THROTTLED', true],
      [412, 'DSO_PROVIDER_UNAVAILABLE', true],
      [500, 'DSO_PROVIDER_UNAVAILABLE', true],
      [502, 'DSO_PROVIDER_UNAVAILABLE', true],
      [503, 'DSO_PROVIDER_UNAVAILABLE', true],
      [504, 'DSO_PROVIDER_TIMEOUT', true],
      [307, 'DSO_PROVIDER_UNAVAILABLE', true],
      [405, 'DSO_PROVIDER_INVALID_CONFIG', false],
      [400, 'DSO_PROVIDER_INTERNAL', false],
    ];
    for (const [status, code, retryable] of cases) {
      const error = errorForStatus(status, { errors: ['x'] }, null, context);
      expect([status, error.code, error.retryable]).toEqual([status, code, retryable]);
      expect(isProviderError(error)).toBe(true);
      expect(isVaultProviderError(error)).toBe(true);
      expect(error.details.status).toBe(status);
      expect(error.provider).toBe('v');
      expect(error.path).toBe('app/db');
    }
  });

  it('quotes Vault’s errors joined and bounded to 256 characters', () => {
    expect(quoteVaultErrors({ errors: ['permission denied', ' ', 3, 'second'] })).toBe(
      'permission denied; second',
    );
    expect(quoteVaultErrors({ errors: [] })).toBeUndefined();
    expect(quoteVaultErrors('nope')).toBeUndefined();
    const long = quoteVaultErrors({ errors: ['e'.repeat(1000)] }) as string;
    expect(long.length).toBe(MAX_QUOTED_VAULT_ERROR_CHARS);
    expect(
      errorForStatus(503, { errors: ['e'.repeat(1000)] }, null, context).message.length,
    ).toBeLessThan(MAX_QUOTED_VAULT_ERROR_CHARS + 200);
  });

  it('reads Retry-After as seconds or an HTTP date, bounded to a day', () => {
    expect(parseRetryAfter('5')).toBe(5000);
    expect(parseRetryAfter(null)).toBeUndefined();
    expect(parseRetryAfter('soon')).toBeUndefined();
    const now = Date.parse('2030-01-01T00:00:00Z');
    expect(parseRetryAfter('Tue, 01 Jan 2030 00:00:30 GMT', now)).toBe(30_000);
    expect(parseRetryAfter('999999999')).toBe(86_400_000);
    const error = errorForStatus(429, undefined, '12', context);
    expect(error.details.retryAfterMs).toBe(12_000);
    expect(error.message).toContain('retry after 12 s');
  });

  it('maps transport failures by their code, keeping only a sanitised cause', () => {
    const wrap = (code: string) => {
      const root = Object.assign(new Error(`low-level ${code}`), { code });
      return Object.assign(new TypeError('fetch failed'), {
        cause: root,
        headers: { 'x-vault-token': 'hvs.secret' },
      });
    };
    const refused = errorForTransportFailure(wrap('ECONNREFUSED'), context, 'https://v:8200');
    expect(refused.code).toBe('DSO_PROVIDER_UNAVAILABLE');
    expect(refused.message).toContain('ECONNREFUSED');
    const timeout = errorForTransportFailure(
      wrap('UND_ERR_HEADERS_TIMEOUT'),
      context,
      'https://v:8200',
    );
    expect(timeout.code).toBe('DSO_PROVIDER_TIMEOUT');
    const untrusted = errorForTransportFailure(
      wrap('UNABLE_TO_VERIFY_LEAF_SIGNATURE'),
      context,
      'https://v:8200',
    );
    expect(untrusted.message).toContain('does not trust');
    const cause = refused.cause as Error & { code?: string; cause?: unknown };
    expect(cause.message).toBe('low-level ECONNREFUSED');
    expect(cause.code).toBe('ECONNREFUSED');
    expect(cause.cause).toBeUndefined();
    expect(JSON.stringify(cause, Object.getOwnPropertyNames(cause))).not.toContain('hvs.secret');
  });
});
