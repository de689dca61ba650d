import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  checkSdkApiVersion,
  createProvider,
  defineProvider,
  isProviderDefinition,
  PROVIDER_SDK_API_VERSION,
  type ProviderLogger,
} from './define-provider.js';
import type { SecretProvider } from './provider.js';
import { isProviderError, ProviderError } from './provider-error.js';
import { SecretValue } from './secret-value.js';

const CANARY = 'canary-define-7d41c2';
const NONE = { list: false, watch: false, probe: false, health: false };

const staticProvider = defineProvider({
  type: 'static',
  description: 'fixed secrets from the configuration',
  capabilities: { list: true },
  configSchema: z.strictObject({ secrets: z.record(z.string(), z.string()) }),
  create: (config, { name }) => ({
    name,
    capabilities: { ...NONE, list: true },
    async resolve({ path }) {
      const text = config.secrets[path];
      if (text === undefined) {
        throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, {
          provider: name,
          path,
        });
      }
      return { value: SecretValue.fromText(text), version: '1' };
    },
    async list(prefix = '') {
      return Object.keys(config.secrets).filter((path) => path.startsWith(prefix));
    },
    async close() {},
  }),
});

async function failure(promise: Promise<unknown>): Promise<ProviderError> {
  try {
    await promise;
  } catch (error) {
    if (isProviderError(error)) return error;
    throw error;
  }
  throw new Error('expected a ProviderError');
}

describe('defineProvider', () => {
  it('fills undeclared capabilities with false, records the SDK API version, and freezes', () => {
    expect(staticProvider.capabilities).toEqual({ ...NONE, list: true });
    expect(staticProvider.sdkApiVersion).toBe(PROVIDER_SDK_API_VERSION);
    expect(isProviderDefinition(staticProvider)).toBe(true);
    expect(Object.isFrozen(staticProvider)).toBe(true);
    expect(isProviderDefinition({ ...staticProvider })).toBe(false);
  });

  it.each(['', 'Vault', '1x', 'a b', 'x'.repeat(65)])('refuses the type name %j', (type) => {
    expect(() =>
      defineProvider({ type, configSchema: z.object({}), create: () => ({}) as SecretProvider }),
    ).toThrow(TypeError);
  });

  it('refuses a configSchema that is not a zod schema', () => {
    expect(() =>
      defineProvider({
        type: 'x',
        configSchema: {} as z.ZodType<unknown>,
        create: () => ({}) as SecretProvider,
      }),
    ).toThrow(/zod schema/);
  });
});

describe('createProvider', () => {
  it('creates a guarded provider under its configured name', async () => {
    const provider = await createProvider(
      staticProvider,
      { secrets: { 'app/db': CANARY } },
      { name: 'fixed' },
    );
    expect(provider.name).toBe('fixed');
    expect(provider.capabilities).toEqual({ ...NONE, list: true });
    const { value, version } = await provider.resolve({ path: 'app/db' });
    expect(value.revealText()).toBe(CANARY);
    expect(`${value}`).toBe('[REDACTED]');
    expect(version).toBe('1');
    expect(await provider.list?.('app/')).toEqual(['app/db']);
    expect(provider.probe).toBeUndefined();
    expect(provider.watch).toBeUndefined();
    await provider.close();
    await provider.close();
    expect((await failure(provider.resolve({ path: 'app/db' }))).message).toMatch(/closed/);
  });

  it('lists every configuration problem by path, never by value', async () => {
    const error = await failure(
      createProvider(staticProvider, { secrets: { a: 42 }, extra: CANARY }, { name: 'fixed' }),
    );
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect(error.message).toContain('invalid configuration for provider fixed (type static)');
    expect(error.message).toContain('secrets.a');
    expect(error.message).not.toContain(CANARY);
    expect(error.message).not.toContain('42');
  });

  it('refuses a definition built for an SDK API version it does not support', async () => {
    const future = { ...staticProvider, sdkApiVersion: 99 };
    expect(() => checkSdkApiVersion(future, 'fixed')).toThrow(
      /built for provider SDK API version 99/,
    );
    const error = await failure(createProvider(staticProvider, null, { name: 'bad name!' }));
    expect(error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    const notDefinition = await failure(createProvider(future as never, {}, { name: 'x' }));
    expect(notDefinition.message).toContain('not a provider definition');
  });

  it('refuses a provider that declares a capability it does not implement, and the reverse', async () => {
    const liar = defineProvider({
      type: 'liar',
      capabilities: { watch: true },
      configSchema: z.object({}),
      create: (_config, { name }) => ({
        name,
        capabilities: NONE,
        resolve: async () => ({ value: SecretValue.fromText('x'), version: '1' }),
        probe: async () => ({ version: '1' }),
        close: async () => {},
      }),
    });
    const error = await failure(createProvider(liar, {}, { name: 'liar' }));
    expect(error.code).toBe('DSO_PROVIDER_INTERNAL');
    expect(error.message).toMatch(/declares watch but does not implement it/);
  });

  it('normalises what a provider throws, and refuses a result that is not a SecretValue', async () => {
    const sloppy = defineProvider({
      type: 'sloppy',
      capabilities: { probe: true },
      configSchema: z.object({}),
      create: (_config, { name }) => ({
        name,
        capabilities: { ...NONE, probe: true },
        async resolve({ path }) {
          if (path === 'throws') throw new Error('backend exploded');
          return { value: CANARY as unknown as SecretValue, version: '1' };
        },
        probe: async () => ({ version: 7 as unknown as string }),
        close: async () => {},
      }),
    });
    const provider = await createProvider(sloppy, {}, { name: 'sloppy' });
    const thrown = await failure(provider.resolve({ path: 'throws' }));
    expect(thrown).toMatchObject({ code: 'DSO_PROVIDER_INTERNAL', provider: 'sloppy' });
    const wrong = await failure(provider.resolve({ path: 'plain' }));
    expect(wrong.message).toContain('returned something other than');
    expect(wrong.message).not.toContain(CANARY);
    expect((await failure(provider.probe?.({ path: 'x' }) ?? Promise.resolve())).message).toContain(
      'probe returned no version',
    );
    expect((await failure(provider.resolve({ path: '' }))).code).toBe('DSO_PROVIDER_NOT_FOUND');
    const aborted = await failure(
      provider.resolve({ path: 'plain' }, { signal: AbortSignal.abort() }),
    );
    expect(aborted.code).toBe('DSO_PROVIDER_TIMEOUT');
  });

  it('gives the provider its name, a logger and the environment it is allowed', async () => {
    const lines: string[] = [];
    const log: ProviderLogger = {
      debug: (message) => lines.push(message),
      info: (message) => lines.push(message),
      warn: (message) => lines.push(message),
      error: (message) => lines.push(message),
    };
    let seen: { name: string; env: Readonly<Record<string, string | undefined>> } | undefined;
    const probe = defineProvider({
      type: 'probe-context',
      configSchema: z.object({}),
      create: (_config, context) => {
        seen = context;
        context.log.info('created');
        return {
          name: context.name,
          capabilities: NONE,
          resolve: async () => ({ value: SecretValue.fromText('x'), version: '1' }),
          close: async () => {},
        };
      },
    });
    await createProvider(probe, {}, { name: 'ctx', log, env: { ONLY: 'this' } });
    expect(seen?.name).toBe('ctx');
    expect(seen?.env).toEqual({ ONLY: 'this' });
    expect(lines).toEqual(['created']);
  });
});
