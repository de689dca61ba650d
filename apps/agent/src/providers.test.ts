import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { createFakeClock, type FakeClock } from '@dso/async';
import { createLogger, createRedactor } from '@dso/core';
import {
  isProviderError,
  PROVIDER_SDK_VERSION,
  type SecretProvider,
  SecretValue,
} from '@dso/provider-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { limitProvider, providerEnv, providerMode, startProviders } from './providers.js';

const CANARY = 'canary-plugins-51e0aa';
// Inside the workspace, so a plugin's own `import '@dso/provider-sdk'` resolves.
const pluginsDir = join(import.meta.dirname, '..', `.test-plugins-${process.pid}`);
const TSX = ['--conditions=@dso/source', '--import', 'tsx'];

/** A third-party provider package, as `npm install --prefix <pluginsDir>` would leave it. */
async function installPlugin(name: string, source: string): Promise<void> {
  const dir = join(pluginsDir, 'node_modules', name);
  await mkdir(dir, { recursive: true });
  await writeFile(
    join(dir, 'package.json'),
    JSON.stringify({ name, version: '1.0.0', type: 'module', main: 'index.js' }),
  );
  await writeFile(join(dir, 'index.js'), source);
}

const STATIC_PROVIDER = `
import { defineProvider, SecretValue, ProviderError } from '@dso/provider-sdk';
import { z } from 'zod';
export default defineProvider({
  type: 'acme',
  configSchema: z.strictObject({ secrets: z.record(z.string(), z.string()) }),
  create: (config, { name, env }) => ({
    name,
    capabilities: { list: false, watch: false, probe: false, health: false },
    async resolve({ path }) {
      if (path === 'env') return { value: SecretValue.fromText(Object.keys(env).sort().join(',')), version: '1' };
      const text = config.secrets[path];
      if (text === undefined) throw new ProviderError('DSO_PROVIDER_NOT_FOUND', 'no secret at ' + path, { provider: name, path });
      return { value: SecretValue.fromText(text), version: '1' };
    },
    async close() {},
  }),
});
`;

function logger() {
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  return createLogger({ level: 'warn', redactor: createRedactor(), destination: sink });
}

beforeAll(async () => {
  await installPlugin('dso-provider-acme', STATIC_PROVIDER);
  await installPlugin(
    'dso-provider-future',
    `import def from 'dso-provider-acme';
export default Object.freeze(Object.defineProperty({ ...def, sdkApiVersion: 99 }, Symbol.for('dso.provider-definition'), { value: true }));`,
  );
  await installPlugin('dso-provider-not-one', 'export default { type: "nope" };');
});
afterAll(() => rm(pluginsDir, { recursive: true, force: true }));

const entry = (
  type: string,
  mode: 'inline' | 'process' | undefined,
  config: Record<string, unknown> = {},
) => ({
  type,
  mode,
  config,
  timeoutMs: 10_000,
  failureThreshold: 5,
  circuitOpenMs: 1_000,
  maxInFlight: 64,
  maxMessageBytes: 1.5 * 1024 * 1024,
  env: [] as string[],
});

describe('startProviders', () => {
  it.each(['inline', 'process'] as const)(
    'loads a third-party package from pluginsDir by its name (%s)',
    async (mode) => {
      const providers = await startProviders(
        {
          pluginsDir,
          providers: { acme: entry('dso-provider-acme', mode, { secrets: { 'app/db': CANARY } }) },
        },
        {
          env: { PATH: process.env.PATH, HOME: '/root', SECRET_ELSEWHERE: 'x' },
          logger: logger(),
          execArgv: TSX,
        },
      );
      try {
        const acme = providers.get('acme');
        expect((await acme?.resolve({ path: 'app/db' }))?.value.revealText()).toBe(CANARY);
        // It sees PATH and HOME only: not the agent's other variables.
        expect((await acme?.resolve({ path: 'env' }))?.value.revealText()).toBe('HOME,PATH');
      } finally {
        for (const provider of providers.values()) await provider.close();
      }
    },
    30_000,
  );

  it("runs a built-in in the agent's process unless its mode says process; a package in its own", async () => {
    const token = `${CANARY}-env`;
    const providers = await startProviders(
      {
        pluginsDir,
        providers: {
          inline: entry('env', undefined, { allow: ['APP_TOKEN'] }),
          own: entry('env', 'process', { allow: ['APP_TOKEN'] }),
          acme: entry('dso-provider-acme', undefined, { secrets: { 'app/db': CANARY } }),
        },
      },
      {
        env: { PATH: process.env.PATH, HOME: '/root', APP_TOKEN: token, OTHER: 'x' },
        logger: logger(),
        execArgv: TSX,
        conditions: ['@dso/source'],
      },
    );
    try {
      const state = (name: string) =>
        (providers.get(name) as unknown as { state(): Record<string, unknown> }).state();
      expect(state('inline')).toEqual({ mode: 'inline' });
      expect(state('own')).toMatchObject({ mode: 'process', pid: expect.any(Number) });
      expect(state('acme')).toMatchObject({ mode: 'process', pid: expect.any(Number) });
      expect(state('own').pid).not.toBe(process.pid);
      for (const name of ['inline', 'own']) {
        const resolved = await providers.get(name)?.resolve({ path: 'APP_TOKEN' });
        expect(resolved?.value.revealText()).toBe(token);
        // In the agent's process as in its own: only what the allow-list names.
        await expect(providers.get(name)?.resolve({ path: 'OTHER' })).rejects.toMatchObject({
          code: expect.stringMatching(/^DSO_PROVIDER_/),
        });
      }
    } finally {
      for (const provider of providers.values()) await provider.close();
    }
  }, 30_000);

  it('decides a mode from the type when dso.yaml sets none', () => {
    for (const type of ['local', 'env', 'file', 'vault', 'aws', 'azure']) {
      expect(providerMode({ type })).toBe('inline');
      expect(providerMode({ type, mode: 'process' })).toBe('process');
    }
    expect(providerMode({ type: 'dso-provider-acme' })).toBe('process');
    expect(providerMode({ type: 'command' })).toBe('process');
    // An inherited property of a plain object is no built-in type.
    expect(providerMode({ type: 'toString' })).toBe('process');
    expect(providerMode({ type: 'dso-provider-acme', mode: 'inline' })).toBe('inline');
  });

  it('says how to install a package that is not in pluginsDir', async () => {
    const error = await startProviders(
      { pluginsDir, providers: { x: entry('dso-provider-missing', 'process') } },
      { env: {}, logger: logger() },
    ).catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: 'DSO_AGENT_PROVIDER_NOT_INSTALLED' });
    const { message } = error as Error;
    expect(message).toContain(
      `installed in ${join(pluginsDir, 'node_modules')}: install the package there with \`dso plugin install <its .tgz, its folder, or dso-provider-missing from your npm registry>\``,
    );
    expect(message).not.toMatch(/npm install --prefix|or above it/);
    // A package in a node_modules folder above pluginsDir is not the operator's plugin.
    await expect(
      startProviders(
        {
          pluginsDir: join(pluginsDir, 'inner'),
          providers: { acme: entry('dso-provider-acme', 'process') },
        },
        { env: {}, logger: logger() },
      ),
    ).rejects.toMatchObject({ code: 'DSO_AGENT_PROVIDER_NOT_INSTALLED' });
  });

  it('refuses a package whose @dso/provider-sdk peer range the agent does not supply, naming both versions', async () => {
    const dir = join(pluginsDir, 'node_modules', 'dso-provider-newer');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({
        name: 'dso-provider-newer',
        version: '3.0.0',
        type: 'module',
        main: 'index.js',
        peerDependencies: { '@dso/provider-sdk': '^9.0.0' },
      }),
    );
    await writeFile(join(dir, 'index.js'), STATIC_PROVIDER);
    for (const mode of ['inline', 'process'] as const) {
      const error = await startProviders(
        { pluginsDir, providers: { n: entry('dso-provider-newer', mode) } },
        { env: {}, logger: logger() },
      ).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'DSO_AGENT_PROVIDER_SDK_MISMATCH' });
      expect((error as Error).message).toBe(
        `provider "n": dso-provider-newer 3.0.0 needs @dso/provider-sdk ^9.0.0; this DSO supplies ${PROVIDER_SDK_VERSION}: ` +
          `install a release of the package built for @dso/provider-sdk ${PROVIDER_SDK_VERSION}, or a DSO whose SDK is in ^9.0.0`,
      );
    }
  });

  it('refuses a package built for an SDK API version it does not support, and one that is no provider', async () => {
    const future = await startProviders(
      { pluginsDir, providers: { f: entry('dso-provider-future', 'inline') } },
      { env: {}, logger: logger() },
    ).catch((caught: unknown) => caught);
    expect(isProviderError(future) && future.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect((future as Error).message).toMatch(/SDK API version 99/);
    const notOne = await startProviders(
      { pluginsDir, providers: { n: entry('dso-provider-not-one', 'inline') } },
      { env: {}, logger: logger() },
    ).catch((caught: unknown) => caught);
    expect(notOne).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG' });
    expect((notOne as Error).message).toContain('dso-provider-not-one');
  });

  it('refuses a bad configuration without quoting it, and starts nothing', async () => {
    const error = await startProviders(
      {
        pluginsDir,
        providers: {
          good: entry('dso-provider-acme', 'inline', { secrets: {} }),
          bad: entry('dso-provider-acme', 'inline', { secrets: { a: 1 }, token: CANARY }),
        },
      },
      { env: {}, logger: logger() },
    ).catch((caught: unknown) => caught);
    expect(isProviderError(error) && error.code).toBe('DSO_PROVIDER_INVALID_CONFIG');
    expect((error as Error).message).not.toContain(CANARY);
  });
});

describe('providerEnv', () => {
  const env = {
    PATH: '/bin',
    HOME: '/root',
    AWS_REGION: 'eu-west-1',
    VAULT_TOKEN: 't',
    DSO_VAULT_PASSPHRASE: 'p',
    DB_PASSWORD: 'd',
    ACME_KEY: 'k',
    OTHER: 'o',
  };
  it.each([
    ['aws', {}, [], ['AWS_REGION', 'HOME', 'PATH']],
    ['vault', {}, [], ['HOME', 'PATH', 'VAULT_TOKEN']],
    ['local', {}, [], ['DSO_VAULT_PASSPHRASE', 'HOME', 'PATH']],
    ['env', { allow: ['DB_PASSWORD'] }, [], ['DB_PASSWORD', 'HOME', 'PATH']],
    ['dso-provider-acme', {}, ['ACME_*'], ['ACME_KEY', 'HOME', 'PATH']],
    // A prefix never reaches DSO's own or a cloud provider's credentials; an exact name does.
    ['env', { allow: ['D*'] }, [], ['DB_PASSWORD', 'HOME', 'PATH']],
    ['env', { allow: ['DSO_VAULT_PASSPHRASE'] }, [], ['DSO_VAULT_PASSPHRASE', 'HOME', 'PATH']],
    ['dso-provider-acme', {}, ['AWS_*', 'VAULT*'], ['AWS_REGION', 'HOME', 'PATH']],
  ])('gives %s only what it reads', (type, config, extra, expected) => {
    expect(Object.keys(providerEnv({ type, config, env: extra }, env)).sort()).toEqual(expected);
  });
});

describe('limitProvider', () => {
  /** Moves the fake clock 10 ms at a time, letting callbacks run between steps, until `work` settles. */
  async function driveUntilSettled<T>(clock: FakeClock, work: Promise<T>): Promise<T> {
    let settled = false;
    void work.then(
      () => {
        settled = true;
      },
      () => {
        settled = true;
      },
    );
    for (let passed = 0; !settled && passed < 10_000; passed += 10) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      clock.advance(10);
    }
    return work;
  }

  function slowProvider(clock: FakeClock) {
    let inFlight = 0;
    let most = 0;
    let calls = 0;
    const provider: SecretProvider = {
      name: 'slow',
      capabilities: { list: false, watch: false, probe: false, health: false },
      async resolve(_request, options) {
        calls += 1;
        inFlight += 1;
        most = Math.max(most, inFlight);
        try {
          await new Promise((resolve, reject) => {
            const timer = clock.setTimeout(() => resolve(undefined), 50);
            options?.signal?.addEventListener('abort', () => {
              clock.clearTimeout(timer);
              reject(options.signal?.reason);
            });
          });
          return { value: SecretValue.fromText('x'), version: '1' };
        } finally {
          inFlight -= 1;
        }
      },
      close: async () => {},
    };
    return { provider, most: () => most, calls: () => calls };
  }

  it('lets at most maxInFlight calls through at once, the others in order', async () => {
    const clock = createFakeClock();
    const { provider, most } = slowProvider(clock);
    const limited = limitProvider(provider, { maxInFlight: 3, clock });
    await driveUntilSettled(
      clock,
      Promise.all(Array.from({ length: 12 }, () => limited.resolve({ path: 'a' }))),
    );
    expect(most()).toBe(3);
  });

  it('ends a call, its wait included, at timeoutMs with DSO_PROVIDER_TIMEOUT', async () => {
    const clock = createFakeClock();
    const { provider } = slowProvider(clock);
    const limited = limitProvider(provider, { maxInFlight: 1, timeoutMs: 70, clock });
    const outcomes = await driveUntilSettled(
      clock,
      Promise.allSettled(Array.from({ length: 3 }, () => limited.resolve({ path: 'a' }))),
    );
    expect(outcomes[0]?.status).toBe('fulfilled');
    const failed = outcomes.filter((outcome) => outcome.status === 'rejected');
    expect(failed.length).toBeGreaterThan(0);
    for (const outcome of failed) {
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({
        code: 'DSO_PROVIDER_TIMEOUT',
      });
    }
  });

  it('clears each deadline once its call is over', async () => {
    const clock = createFakeClock();
    const { provider } = slowProvider(clock);
    const limited = limitProvider(provider, { maxInFlight: 2, timeoutMs: 1_000, clock });
    await driveUntilSettled(
      clock,
      Promise.all(Array.from({ length: 4 }, () => limited.resolve({ path: 'a' }))),
    );
    expect(clock.pendingTimers).toBe(0);
  });

  it('gives up a wait for a turn when the caller aborts, and the turn passes on', async () => {
    const clock = createFakeClock();
    const { provider, calls } = slowProvider(clock);
    const limited = limitProvider(provider, { maxInFlight: 1, clock });
    const first = limited.resolve({ path: 'a' });
    const caller = new AbortController();
    const second = limited.resolve({ path: 'a' }, { signal: caller.signal });
    const third = limited.resolve({ path: 'a' });
    caller.abort(new Error('caller left'));
    await expect(second).rejects.toMatchObject({ code: 'DSO_PROVIDER_TIMEOUT' });
    const [one, three] = await driveUntilSettled(clock, Promise.all([first, third]));
    expect([one.version, three.version]).toEqual(['1', '1']);
    // The caller that left never reached the provider.
    expect(calls()).toBe(2);
  });

  it('ends a wait for a turn at maxWaitMs behind calls that never answer, naming maxInFlight', async () => {
    const clock = createFakeClock();
    const hung: SecretProvider = {
      name: 'hung',
      capabilities: { list: false, watch: false, probe: false, health: false },
      resolve: (_request, options) =>
        new Promise((_, reject) => {
          options?.signal?.addEventListener('abort', () => reject(options.signal?.reason));
        }),
      close: async () => {},
    };
    const limited = limitProvider(hung, { maxInFlight: 1, maxWaitMs: 100, clock });
    const caller = new AbortController();
    const first = limited.resolve({ path: 'a' }, { signal: caller.signal });
    let waited: unknown;
    const second = limited.resolve({ path: 'b' }).catch((error: unknown) => {
      waited = error;
    });
    await new Promise<void>((resolve) => setImmediate(resolve));
    clock.advance(99);
    await new Promise<void>((resolve) => setImmediate(resolve));
    expect(waited).toBeUndefined();
    clock.advance(1);
    await second;
    expect(waited).toMatchObject({ code: 'DSO_PROVIDER_TIMEOUT' });
    expect((waited as Error).message).toContain('providers.hung.maxInFlight');
    // The call that reached the provider keeps its own deadline (its host's), not this one.
    caller.abort(new Error('caller left'));
    await expect(first).rejects.toThrow('caller left');
    expect(clock.pendingTimers).toBe(0);
  });
});
