import { ProviderError } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import {
  allByteValues,
  createCanary,
  findNeedle,
  isAbortOutcome,
  leakNeedles,
  serialiseError,
  stringsIn,
  unknownVersionLike,
  within,
} from './assertions.js';

describe('unknownVersionLike', () => {
  it('keeps the shape of numeric, UUID and hex versions, and never returns one to avoid', () => {
    for (let round = 0; round < 50; round += 1) {
      expect(unknownVersionLike('7', ['7'])).toMatch(/^[0-9]+$/);
      const uuid = unknownVersionLike('3f2504e0-4f89-11d3-9a0c-0305e82c3301');
      expect(uuid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      expect(uuid).not.toBe('3f2504e0-4f89-11d3-9a0c-0305e82c3301');
      expect(unknownVersionLike('ABCDEF0123456789ABCDEF0123456789')).toMatch(/^[0-9A-F]{32}$/);
    }
    expect(unknownVersionLike('')).toMatch(/^unknown-/);
  });
});

describe('leak detection', () => {
  it('finds a canary in an error cause chain, in base64 and in hex', () => {
    const canary = createCanary();
    expect(canary).toHaveLength(24);
    const needles = leakNeedles(Buffer.from(canary));
    const nested = new ProviderError('DSO_PROVIDER_INTERNAL', 'failed', {
      cause: new AggregateError([new Error(`body ${Buffer.from(canary).toString('hex')}`)]),
    });
    expect(findNeedle(serialiseError(nested), needles)).toBeDefined();
    const inProperty = Object.assign(new Error('failed'), { response: { body: canary } });
    expect(findNeedle(serialiseError(inProperty), needles)).toBeDefined();
    const encoded = new Error(
      `got ${Buffer.from(canary.repeat(5)).toString('base64').slice(7, 120)}`,
    );
    expect(findNeedle(serialiseError(encoded), needles)).toBeDefined();
    expect(findNeedle(serialiseError(new Error('no secret at app/db')), needles)).toBeUndefined();
  });

  it('survives a cyclic cause chain', () => {
    const error = new Error('outer') as Error & { cause?: unknown };
    error.cause = error;
    expect(serialiseError(error)).toContain('outer');
  });

  it('does not search for values too short to be distinctive', () => {
    expect(leakNeedles(Buffer.from('abc'))).toEqual([]);
    const binary = allByteValues();
    expect(leakNeedles(binary)).toContain(Buffer.from(binary).toString('hex'));
  });

  it('collects the string values of a configuration, not its keys', () => {
    expect(
      stringsIn({ url: 'not-a-url', nested: [{ token: 's3cret-token' }], n: 5, ab: 'x' }),
    ).toEqual(['not-a-url', 's3cret-token']);
  });
});

describe('timing helpers', () => {
  it('fails a promise that does not settle in time, naming it', async () => {
    await expect(within(new Promise(() => {}), 20, 'resolve')).rejects.toThrow(
      'resolve did not settle within 20 ms',
    );
    await expect(within(Promise.resolve(3), 20, 'resolve')).resolves.toBe(3);
  });

  it('accepts TIMEOUT, AbortError and the signal reason as the outcome of a cancelled call', () => {
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    expect(isAbortOutcome(controller.signal.reason, controller.signal)).toBe(true);
    expect(isAbortOutcome(new ProviderError('DSO_PROVIDER_TIMEOUT', 'aborted'))).toBe(true);
    expect(isAbortOutcome(new DOMException('aborted', 'AbortError'))).toBe(true);
    expect(isAbortOutcome(new ProviderError('DSO_PROVIDER_INTERNAL', 'failed'))).toBe(false);
    expect(isAbortOutcome(new Error('other'))).toBe(false);
  });
});
