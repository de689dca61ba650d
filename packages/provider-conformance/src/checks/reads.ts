import { inspect } from 'node:util';
import { isProviderError, isSecretValue, selectField } from '@dso/provider-sdk';
import {
  allByteValues,
  check,
  describeError,
  expectProviderError,
  randomId,
  randomText,
  settle,
} from '../assertions.js';
import { type ConformanceCheck, expectResolved } from './check.js';

/** The largest value the suite stores: what every fixture promises to hold. */
export const LARGE_VALUE_BYTES = 64 * 1024;

const REDACTED = '[REDACTED]';

/** A check that stores `value` at a fresh path and resolves it through the shared provider. */
function roundTrip(id: string, name: string, value: () => Uint8Array): ConformanceCheck {
  return {
    id,
    group: 'reads',
    name,
    async run(context) {
      const path = context.path('value');
      const bytes = value();
      const version = await context.put(path, bytes);
      const provider = await context.shared();
      expectResolved(await provider.resolve({ path }), bytes, version, `resolve(${path})`);
    },
  };
}

export const readChecks: ConformanceCheck[] = [
  roundTrip('text', 'resolves a UTF-8 text value with its version', () =>
    Buffer.from(`pässwörd ✓ ${randomText(32)} 🔑`, 'utf8'),
  ),
  roundTrip('binary', 'resolves a binary value holding all 256 byte values, byte for byte', () =>
    allByteValues(),
  ),
  roundTrip('large', 'resolves a 64 KiB value', () => Buffer.from(randomText(LARGE_VALUE_BYTES))),
  {
    id: 'empty',
    group: 'reads',
    name: 'resolves an empty value as zero bytes, or refuses it with a clear error',
    async run(context) {
      const path = context.path('empty');
      const stored = await settle(context.put(path, new Uint8Array(0)));
      if (!stored.ok) {
        // The store cannot hold an empty value: its fixture must say so clearly.
        check(
          stored.error instanceof Error && stored.error.message.trim() !== '',
          `the fixture refused an empty value without a clear error: ${describeError(stored.error)}`,
        );
        return;
      }
      const provider = await context.shared();
      const resolved = await settle(provider.resolve({ path }));
      if (resolved.ok) {
        expectResolved(resolved.value, new Uint8Array(0), stored.value, `resolve(${path})`);
        return;
      }
      context.record(resolved.error);
      check(
        isProviderError(resolved.error) && resolved.error.code !== 'DSO_PROVIDER_INTERNAL',
        `resolving an empty value failed with ${describeError(resolved.error)}: return zero bytes, or refuse with a ProviderError whose code and message say why (not INTERNAL)`,
      );
    },
  },
  {
    id: 'redact',
    group: 'reads',
    name: 'returns a SecretValue that prints as [REDACTED] in String(), templates, JSON and util.inspect',
    async run(context) {
      const path = context.path('value');
      const value = `redact-${randomId(24)}`;
      await context.put(path, value);
      const resolved = await (await context.shared()).resolve({ path });
      check(isSecretValue(resolved.value), 'resolve() must return the value as a SecretValue');
      const forms: Array<[string, string]> = [
        ['String(value)', String(resolved.value)],
        ['a template literal', `${resolved.value}`],
        ['JSON.stringify(result)', JSON.stringify(resolved)],
        ['util.inspect(result)', inspect(resolved, { depth: 8 })],
      ];
      for (const [form, text] of forms) {
        check(!text.includes(value), `${form} shows the value; it must print as ${REDACTED}`);
        check(text.includes(REDACTED), `${form} does not print ${REDACTED}`);
      }
      check(resolved.value.revealText() === value, 'revealText() must return the stored text');
    },
  },
  {
    id: 'missing',
    group: 'errors',
    name: 'rejects a missing path with DSO_PROVIDER_NOT_FOUND, not retryable, naming the path and the provider',
    async run(context) {
      const path = context.path('never-stored');
      const provider = await context.shared();
      const error = expectProviderError(
        await context.rejection(provider.resolve({ path }), `resolve(${path})`),
        'DSO_PROVIDER_NOT_FOUND',
        `resolve(${path}) of a path never stored`,
      );
      check(error.retryable === false, 'DSO_PROVIDER_NOT_FOUND must not be retryable');
      check(
        error.message.includes(path),
        `the NOT_FOUND message ${JSON.stringify(error.message)} does not name the path ${path}; say which secret is missing`,
      );
      check(
        error.provider === context.name,
        `the error's provider is ${JSON.stringify(error.provider)}; it must carry the configured name ${JSON.stringify(context.name)} (ProviderContext.name)`,
      );
    },
  },
  {
    id: 'field',
    group: 'field selection',
    name: "serves a JSON secret whose fields the SDK's selectField picks: nested, number, object; a missing field is DSO_PROVIDER_NOT_FOUND",
    async run(context) {
      const path = context.path('json');
      const password = randomText(24);
      const user = `app-${randomId(8)}`;
      const document = { db: { user, password, port: 5432 }, enabled: true };
      await context.put(path, JSON.stringify(document));
      const { value } = await (await context.shared()).resolve({ path });
      const field = (name: string) => selectField(value, name, path).revealText();
      check(field('db.password') === password, 'selectField(db.password) returned another value');
      check(field('db.user') === user, 'selectField(db.user) returned another value');
      check(field('db.port') === '5432', 'selectField(db.port) must give the number as JSON text');
      check(field('enabled') === 'true', 'selectField(enabled) must give the boolean as JSON text');
      check(
        JSON.stringify(JSON.parse(field('db'))) === JSON.stringify(document.db),
        'selectField(db) must give the object as JSON',
      );
      for (const missing of ['db.missing', 'missing', 'db.password.deeper']) {
        expectProviderError(
          await context.rejection(
            (async () => selectField(value, missing, path))(),
            `selectField(${missing})`,
          ),
          'DSO_PROVIDER_NOT_FOUND',
          `selectField(${missing}) of a field that is not there`,
        );
      }
    },
  },
];
