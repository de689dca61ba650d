import { describe, expect, it } from 'vitest';
import { isProviderError, ProviderError } from '../provider-error.js';
import {
  base64Length,
  classifyMessage,
  DEFAULT_MAX_MESSAGE_BYTES,
  DEFAULT_MAX_SECRET_BYTES,
  fromRpcError,
  isBase64,
  MIN_MAX_MESSAGE_BYTES,
  maxMessageBytesAdvice,
  maxSecretBytesFor,
  messageBytesFor,
  RPC_ERROR,
  toRpcError,
} from './messages.js';

describe('classifyMessage', () => {
  it('tells requests, notifications and responses apart', () => {
    expect(classifyMessage({ jsonrpc: '2.0', id: 1, method: 'resolve' }).kind).toBe('request');
    expect(classifyMessage({ jsonrpc: '2.0', method: 'log' }).kind).toBe('notification');
    expect(classifyMessage({ jsonrpc: '2.0', id: 1, result: null }).kind).toBe('response');
    expect(
      classifyMessage({ jsonrpc: '2.0', id: null, error: { code: -32700, message: 'x' } }).kind,
    ).toBe('response');
  });

  it.each([
    [[{ jsonrpc: '2.0', id: 1, result: 1 }], 'not a JSON-RPC object'],
    ['text', 'not a JSON-RPC object'],
    [{ hello: 'world' }, 'jsonrpc is not "2.0"'],
    [{ jsonrpc: '2.0', id: {}, method: 'x' }, 'request id is not a number or a string'],
    [{ jsonrpc: '2.0', id: 1, result: 1, error: { code: 1, message: '' } }, 'both'],
    [{ jsonrpc: '2.0', id: 1, error: 'bad' }, 'error is malformed'],
    [{ jsonrpc: '2.0', id: 1 }, 'neither'],
  ])('refuses %j', (value, reason) => {
    const parsed = classifyMessage(value);
    expect(parsed.kind).toBe('invalid');
    expect(parsed.kind === 'invalid' && parsed.reason).toContain(reason);
  });
});

describe('provider errors on the wire', () => {
  it('carries code, message and retryable, never the cause', () => {
    const error = new ProviderError('DSO_PROVIDER_THROTTLED', 'slow down', {
      provider: 'p',
      cause: new Error('canary-cause'),
    });
    const wire = toRpcError(error, 'p');
    expect(wire).toEqual({
      code: RPC_ERROR.PROVIDER_ERROR,
      message: 'slow down',
      data: { code: 'DSO_PROVIDER_THROTTLED', retryable: true },
    });
    expect(JSON.stringify(wire)).not.toContain('canary');
    const back = fromRpcError(wire, 'p', 'app/db');
    expect(isProviderError(back)).toBe(true);
    expect(back).toMatchObject({ code: 'DSO_PROVIDER_THROTTLED', retryable: true, path: 'app/db' });
  });

  it('does not copy the message of an unknown error', () => {
    const wire = toRpcError(new Error('backend said canary-1234'), 'p');
    expect(wire.data.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(wire.message).not.toContain('canary');
  });

  it('turns an unknown code into DSO_PROVIDER_INTERNAL', () => {
    const error = fromRpcError({ code: -1, message: 'm', data: { code: 'NOPE' } }, 'p', undefined);
    expect(error.code).toBe('DSO_PROVIDER_INTERNAL');
  });
});

describe('base64', () => {
  it('predicts the encoded length and checks the alphabet', () => {
    for (const n of [0, 1, 2, 3, 4, 100]) {
      expect(base64Length(n)).toBe(Buffer.alloc(n).toString('base64').length);
    }
    expect(isBase64(Buffer.from('hello').toString('base64'))).toBe(true);
    expect(isBase64('not base64!')).toBe(false);
    expect(isBase64('abc')).toBe(false);
  });
});

describe('the maximum secret size', () => {
  it('carries a 1 MiB value, base64 and envelope, in the default maxMessageBytes', () => {
    expect(messageBytesFor(DEFAULT_MAX_SECRET_BYTES)).toBeLessThanOrEqual(
      DEFAULT_MAX_MESSAGE_BYTES,
    );
    expect(maxSecretBytesFor(DEFAULT_MAX_MESSAGE_BYTES)).toBeGreaterThanOrEqual(
      DEFAULT_MAX_SECRET_BYTES,
    );
  });

  it('is the largest value whose message fits, for any limit', () => {
    for (const limit of [MIN_MAX_MESSAGE_BYTES, 100_000, 1_572_864, 16 * 1024 * 1024 + 1]) {
      const most = maxSecretBytesFor(limit);
      expect(messageBytesFor(most)).toBeLessThanOrEqual(limit);
      expect(messageBytesFor(most + 1)).toBeGreaterThan(limit);
    }
  });

  it('names the setting to raise, and the least that carries a given value', () => {
    const advice = maxMessageBytesAdvice('vault', DEFAULT_MAX_MESSAGE_BYTES, 10 * 1024 * 1024);
    expect(advice).toContain('providers.vault.maxMessageBytes');
    expect(advice).toContain(`at least ${messageBytesFor(10 * 1024 * 1024)}`);
    expect(advice).toContain(`up to ${maxSecretBytesFor(DEFAULT_MAX_MESSAGE_BYTES)} bytes`);
  });
});
