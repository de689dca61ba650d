import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { SecretValue } from './secret-value.js';

const CANARY = 'canary-7f3a9c1e-provider-sdk';

describe('SecretValue', () => {
  it('never prints its value through String, template, JSON or inspect', () => {
    const value = SecretValue.fromText(CANARY);
    const printed = [
      String(value),
      `${value}`,
      JSON.stringify({ value }),
      inspect(value),
      inspect({ nested: { value } }, { depth: 5 }),
    ];
    for (const text of printed) expect(text).not.toContain(CANARY);
    expect(String(value)).toBe('[REDACTED]');
  });

  it('reveals its bytes and text only on an explicit call', () => {
    const value = SecretValue.fromText(CANARY);
    expect(value.revealText()).toBe(CANARY);
    expect(value.reveal().equals(Buffer.from(CANARY))).toBe(true);
    expect(value.byteLength).toBe(Buffer.byteLength(CANARY));
  });

  it('copies the bytes it is built from', () => {
    const source = Buffer.from(CANARY);
    const value = SecretValue.fromBytes(source);
    source.fill(0);
    expect(value.revealText()).toBe(CANARY);
  });

  it('zeroes its bytes on dispose and refuses to reveal afterwards', () => {
    const value = SecretValue.fromText(CANARY);
    const bytes = value.reveal();
    value.dispose();
    expect(bytes.every((byte) => byte === 0)).toBe(true);
    expect(() => value.reveal()).toThrow(TypeError);
  });

  it('runs its onDispose callbacks once, at dispose, and at once when already disposed', () => {
    const value = SecretValue.fromText(CANARY);
    const calls: string[] = [];
    value.onDispose(() => calls.push('first'));
    value.onDispose(() => calls.push('second'));
    expect(calls).toEqual([]);
    value.dispose();
    value.dispose();
    expect(calls).toEqual(['first', 'second']);
    value.onDispose(() => calls.push('late'));
    expect(calls).toEqual(['first', 'second', 'late']);
  });
});
