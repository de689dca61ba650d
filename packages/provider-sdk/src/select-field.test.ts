import { describe, expect, it } from 'vitest';
import { isProviderError } from './provider-error.js';
import { SecretValue } from './secret-value.js';
import { selectField } from './select-field.js';

const CANARY = 'canary-41d0-select-field';
const json = (value: unknown) => SecretValue.fromText(JSON.stringify(value));

describe('selectField', () => {
  it('selects a string field as it is, and nested fields with dots', () => {
    expect(selectField(json({ password: CANARY }), 'password').revealText()).toBe(CANARY);
    expect(selectField(json({ db: { password: CANARY } }), 'db.password').revealText()).toBe(
      CANARY,
    );
  });

  it('returns numbers, booleans and objects as JSON text', () => {
    expect(selectField(json({ port: 5432 }), 'port').revealText()).toBe('5432');
    expect(selectField(json({ tls: { on: true } }), 'tls').revealText()).toBe('{"on":true}');
  });

  it('rejects with DSO_PROVIDER_NOT_FOUND, quoting no value, when the field is missing', () => {
    const attempt = () => selectField(json({ password: CANARY }), 'user', 'app/db');
    expect(attempt).toThrow(/app\/db has no field "user"/);
    try {
      attempt();
    } catch (error) {
      expect(isProviderError(error) && error.code).toBe('DSO_PROVIDER_NOT_FOUND');
      expect(String((error as Error).message)).not.toContain(CANARY);
    }
  });

  it('rejects a value that is not JSON without quoting it', () => {
    const attempt = () => selectField(SecretValue.fromText(`{${CANARY}`), 'password', 'app/db');
    expect(attempt).toThrow(/is not JSON/);
    try {
      attempt();
    } catch (error) {
      expect(JSON.stringify(error) + String(error) + (error as Error).stack).not.toContain(CANARY);
    }
  });
});
