import { ProviderError } from './provider-error.js';
import { SecretValue } from './secret-value.js';

/**
 * Selects one field of a JSON secret, for references like `dso://app/db#password`. A dotted
 * field walks nested objects (`#db.password`). Strings are returned as they are; numbers and
 * booleans as their JSON text; objects and arrays as JSON. Done here, once, so every provider
 * behaves the same.
 *
 * @example
 * selectField(SecretValue.fromText('{"user":"app","password":"s3cret"}'), 'password').revealText(); // 's3cret'
 * @throws ProviderError DSO_PROVIDER_NOT_FOUND when the secret is not a JSON object or has no such field
 */
export function selectField(value: SecretValue, field: string, path = '(secret)'): SecretValue {
  let document: unknown;
  try {
    document = JSON.parse(value.revealText());
  } catch {
    // The parse error's message can quote the value: drop it, keep only the fact.
    throw new ProviderError(
      'DSO_PROVIDER_NOT_FOUND',
      `secret ${path} is not JSON, so it has no field "${field}"`,
      { path },
    );
  }
  let current: unknown = document;
  for (const key of field.split('.')) {
    if (typeof current !== 'object' || current === null || !Object.hasOwn(current, key)) {
      throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `secret ${path} has no field "${field}"`, {
        path,
      });
    }
    current = (current as Record<string, unknown>)[key];
  }
  if (current === null || current === undefined) {
    throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `secret ${path} field "${field}" is null`, {
      path,
    });
  }
  return SecretValue.fromText(typeof current === 'string' ? current : JSON.stringify(current));
}
