import { fileURLToPath } from 'node:url';
import {
  defineProvider,
  type ProviderCapabilities,
  type ProviderContext,
  type ProviderDefinition,
  ProviderError,
  type SecretProvider,
  SecretValue,
} from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { type Settled, settle } from './assertions.js';
import { checkCapabilities } from './checks/check.js';
import { checkById, checksFor } from './checks/index.js';
import {
  checkFixture,
  createSession,
  type OpenRequest,
  openerFor,
  type ProviderOpener,
} from './context.js';
import { createMemoryFixture, type MemoryFixtureOptions } from './examples/memory-fixture.js';
import { memoryProvider, memoryProviderConfig } from './examples/memory-provider.js';
import type { ConformanceFixture } from './fixture.js';
import { runProviderConformance } from './index.js';

const examples = (name: string) => fileURLToPath(new URL(`./examples/${name}`, import.meta.url));

// The whole suite, both halves, against the example with every capability, a store with
// history and all three faults. (self-basic.test.ts runs it against the example with none.)
runProviderConformance({
  name: 'memory (every capability)',
  definition: memoryProvider,
  module: examples('memory-provider.ts'),
  fixture: () => createMemoryFixture(),
});

const ALL: ProviderCapabilities = { list: true, watch: true, probe: true, health: true };

/**
 * The example with every capability, with some of its live methods replaced: a broken
 * provider the suite must catch. It still goes through `createProvider`'s guard, as a real
 * provider would.
 */
function brokenMemory(
  patch: (inner: SecretProvider, context: ProviderContext) => Partial<SecretProvider>,
  capabilities: Partial<ProviderCapabilities> = ALL,
): ProviderDefinition<unknown> {
  return defineProvider({
    type: 'memory-broken',
    capabilities,
    configSchema: memoryProviderConfig,
    create: async (config, context) => {
      const inner = await memoryProvider.create(config, context);
      return { ...inner, ...patch(inner, context) };
    },
  }) as ProviderDefinition<unknown>;
}

/** Runs one check of the suite in process against `definition` (or a raw opener). */
async function runCheck(
  id: string,
  subject: { definition?: ProviderDefinition<unknown>; open?: ProviderOpener },
  fixture: MemoryFixtureOptions = {},
): Promise<Settled<void>> {
  const definition = subject.definition ?? (memoryProvider as ProviderDefinition<unknown>);
  const session = createSession({
    mode: 'in-process',
    definition,
    fixture: () => createMemoryFixture(fixture),
    open:
      subject.open ??
      openerFor('in-process', {
        name: 'self-test',
        definition,
        module: examples('memory-provider.ts'),
        fixture: () => createMemoryFixture(fixture),
      }),
  });
  await session.start();
  try {
    return await settle(session.run(checkById(id), id));
  } finally {
    await session.stop();
  }
}

/** Expects the check to fail with a message matching `pattern`. */
async function expectCaught(outcome: Promise<Settled<void>>, pattern: RegExp): Promise<void> {
  const settled = await outcome;
  if (settled.ok) throw new Error('the suite passed a broken provider');
  expect(String((settled.error as Error).message)).toMatch(pattern);
}

/** A raw opener: the example created in process, then altered past the SDK's guard. */
function rawOpener(alter: (provider: SecretProvider) => SecretProvider): ProviderOpener {
  return async (request: OpenRequest) => {
    const inner = await memoryProvider.create(memoryProviderConfig.parse(request.config), {
      name: request.name,
      env: request.env,
      log: { debug() {}, info() {}, warn() {}, error() {} },
    });
    return alter(inner);
  };
}

describe('the suite registers exactly the declared capabilities', () => {
  it('registers list, watch, probe and health tests only where declared, TOO_LARGE only across the process boundary', () => {
    const ids = (capabilities: ProviderCapabilities, mode: 'in-process' | 'process') =>
      checksFor({ capabilities, mode }).map((check) => check.id);
    const none = { list: false, watch: false, probe: false, health: false };
    expect(ids(none, 'in-process')).not.toEqual(
      expect.arrayContaining(['list', 'watch', 'unwatch', 'probe', 'health']),
    );
    for (const id of ['list', 'watch', 'unwatch', 'probe', 'health']) {
      expect(ids(none, 'process')).not.toContain(id);
      expect(ids(ALL, 'process')).toContain(id);
    }
    expect(ids({ ...none, list: true }, 'in-process')).toContain('list');
    expect(ids({ ...none, list: true }, 'in-process')).not.toContain('watch');
    expect(ids(ALL, 'in-process')).not.toContain('toolarge');
    expect(ids(ALL, 'process')).toContain('toolarge');
  });

  it('fails a live provider that declares watch without a watch method', () => {
    const provider = {
      name: 'p',
      capabilities: { ...ALL, list: false, probe: false, health: false },
      resolve: async () => ({ value: SecretValue.fromText('x'), version: '1' }),
      close: async () => {},
    } as SecretProvider;
    expect(() => checkCapabilities(provider, provider.capabilities, 'p')).toThrow(
      /declares watch but has no watch\(\) method/,
    );
  });

  it('fails a live provider that has a list method it does not declare', () => {
    const capabilities = { list: false, watch: false, probe: false, health: false };
    const provider = {
      name: 'p',
      capabilities,
      resolve: async () => ({ value: SecretValue.fromText('x'), version: '1' }),
      list: async () => [],
      close: async () => {},
    } as SecretProvider;
    expect(() => checkCapabilities(provider, capabilities, 'p')).toThrow(
      /does not declare list but has a list member/,
    );
  });

  it('fails a definition that declares watch but whose provider has none', async () => {
    await expectCaught(
      runCheck('caps', { definition: brokenMemory(() => ({ watch: undefined })) }),
      /declares watch but does not implement it/,
    );
  });
});

describe('the suite catches broken providers', () => {
  it('catches a canary value in an error message', async () => {
    const definition = brokenMemory((inner) => ({
      async resolve(request, options) {
        if (request.version === undefined) return inner.resolve(request, options);
        const current = await inner.resolve({ path: request.path }, options);
        throw new ProviderError(
          'DSO_PROVIDER_NOT_FOUND',
          `no version ${request.version}; the current value is ${current.value.revealText()}`,
        );
      },
    }));
    await expectCaught(runCheck('canary', { definition }), /shows the canary value/);
    // Every check proves that what it stored leaked nowhere, not only the canary check.
    await expectCaught(
      runCheck('unknown', { definition }),
      /a value this check stored appears in an error/,
    );
  });

  it('catches a canary value hidden in an error cause', async () => {
    const definition = brokenMemory((inner) => ({
      async resolve(request, options) {
        if (request.version === undefined) return inner.resolve(request, options);
        const current = await inner.resolve({ path: request.path }, options);
        throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no such version of ${request.path}`, {
          cause: new Error('backend said', { cause: { body: current.value.revealText() } }),
        });
      },
    }));
    await expectCaught(runCheck('canary', { definition }), /shows the canary value/);
  });

  it('catches a value written to a log line', async () => {
    const definition = brokenMemory((inner, context) => ({
      async resolve(request, options) {
        const resolved = await inner.resolve(request, options);
        context.log.debug('resolved', { path: request.path, value: resolved.value.revealText() });
        return resolved;
      },
    }));
    await expectCaught(runCheck('canary', { definition }), /canary value appears in a debug log/);
  });

  it('catches a call that ignores its abort signal', async () => {
    const definition = brokenMemory((inner) => ({
      async resolve(request) {
        // Deaf to its signal, and never settles: the suite must give up at its own 1 s deadline.
        await new Promise(() => {});
        return inner.resolve(request);
      },
    }));
    await expectCaught(runCheck('abort', { definition }), /did not settle within 1000 ms/);
  });

  it('catches a fault mapped to the wrong code, and one with the wrong retryable flag', async () => {
    const recode = (from: string, code: 'DSO_PROVIDER_UNAVAILABLE', retryable?: boolean) =>
      brokenMemory((inner) => ({
        async resolve(request, options) {
          try {
            return await inner.resolve(request, options);
          } catch (error) {
            if ((error as ProviderError).code !== from) throw error;
            throw new ProviderError(code, 'the store failed', { retryable });
          }
        },
      }));
    await expectCaught(
      runCheck('faults', {
        definition: recode('DSO_PROVIDER_THROTTLED', 'DSO_PROVIDER_UNAVAILABLE'),
      }),
      /expected DSO_PROVIDER_THROTTLED, got ProviderError DSO_PROVIDER_UNAVAILABLE/,
    );
    const unauthorizedRetryable = brokenMemory((inner) => ({
      async resolve(request, options) {
        try {
          return await inner.resolve(request, options);
        } catch (error) {
          const { code, message } = error as ProviderError;
          throw new ProviderError(code, message, { retryable: true });
        }
      },
    }));
    await expectCaught(
      runCheck('faults', { definition: unauthorizedRetryable }),
      /DSO_PROVIDER_UNAUTHORIZED must have retryable false/,
    );
  });

  it('catches values that do not round-trip byte for byte, and a wrong version', async () => {
    const asText = brokenMemory((inner) => ({
      async resolve(request, options) {
        const { value, version } = await inner.resolve(request, options);
        return { value: SecretValue.fromText(value.revealText()), version };
      },
    }));
    await expectCaught(runCheck('binary', { definition: asText }), /differ from the 512 bytes/);
    const wrongVersion = brokenMemory((inner) => ({
      async resolve(request, options) {
        const { value, version } = await inner.resolve(request, options);
        return { value, version: `v${version}` };
      },
    }));
    await expectCaught(runCheck('current', { definition: wrongVersion }), /resolved version "v2"/);
  });

  it('catches a value that is not a SecretValue (past the SDK guard)', async () => {
    const open = rawOpener((inner) => ({
      ...inner,
      async resolve(request, options) {
        const { value, version } = await inner.resolve(request, options);
        return { value: value.reveal() as unknown as SecretValue, version };
      },
    }));
    await expectCaught(runCheck('text', { open }), /must be a SecretValue/);
  });

  it('catches calls that still work after close, and a close that fails the second time', async () => {
    await expectCaught(
      runCheck('life', { open: rawOpener((inner) => ({ ...inner, close: async () => {} })) }),
      /resolve after close: expected a rejection, it resolved/,
    );
    let closes = 0;
    const closeOnce = rawOpener((inner) => {
      const provider: SecretProvider = { ...inner };
      const calls = ['resolve', 'list', 'probe', 'health'] as const;
      for (const call of calls) {
        const original = inner[call] as (...args: unknown[]) => Promise<unknown>;
        (provider as unknown as Record<string, unknown>)[call] = (...args: unknown[]) =>
          closes > 0
            ? Promise.reject(new ProviderError('DSO_PROVIDER_INTERNAL', 'closed'))
            : original(...args);
      }
      provider.watch = () => {
        throw new ProviderError('DSO_PROVIDER_INTERNAL', 'closed');
      };
      provider.close = async () => {
        closes += 1;
        if (closes > 1) throw new Error('already closed');
      };
      return provider;
    });
    await expectCaught(runCheck('life', { open: closeOnce }), /already closed/);
  });

  it('catches a NOT_FOUND that does not name the path', async () => {
    const definition = brokenMemory((inner) => ({
      async resolve(request, options) {
        try {
          return await inner.resolve(request, options);
        } catch (error) {
          throw new ProviderError((error as ProviderError).code, 'not found');
        }
      },
    }));
    await expectCaught(runCheck('missing', { definition }), /does not name the path/);
  });

  it('catches an invalid configuration refused with its value quoted', async () => {
    const definition = defineProvider({
      type: 'memory-quoting',
      capabilities: ALL,
      configSchema: memoryProviderConfig.extend({
        url: z.string().superRefine((value, context) => {
          if (!/^https?:\/\//.test(value)) {
            context.addIssue({ code: 'custom', message: `bad url ${value}` });
          }
        }),
      }),
      create: (config, context) => memoryProvider.create(config, context),
    }) as ProviderDefinition<unknown>;
    await expectCaught(runCheck('config', { definition }), /quotes the configuration value/);
  });

  it('catches a list that ignores its prefix, and a probe that lags behind', async () => {
    const ignoresPrefix = brokenMemory((inner) => ({
      list: (_prefix, options) => inner.list!('', options),
    }));
    await expectCaught(
      runCheck('list', { definition: ignoresPrefix }),
      /which is not under the prefix/,
    );
    let cached: string | undefined;
    const staleProbe = brokenMemory((inner) => ({
      async probe(request, options) {
        cached ??= (await inner.probe!(request, options)).version;
        return { version: cached };
      },
    }));
    await expectCaught(
      runCheck('probe', { definition: staleProbe }),
      /after a put, probe returned "2"/,
    );
  });

  it('catches a watch that ends early, and one that ignores its abort signal', async () => {
    const endsEarly = brokenMemory(() => ({
      async *watch() {},
    }));
    await expectCaught(
      runCheck('watch', { definition: endsEarly }),
      /the watch ended before reporting the put/,
    );
    const neverEnds = brokenMemory(() => ({
      async *watch() {
        await new Promise(() => {});
        yield { path: '', version: '' };
      },
    }));
    await expectCaught(
      runCheck('unwatch', { definition: neverEnds }),
      /the watch after its signal aborted did not settle within 1000 ms/,
    );
  });

  it('catches health that reports ok while the store is unavailable', async () => {
    const alwaysOk = brokenMemory(() => ({ health: async () => ({ ok: true }) }));
    await expectCaught(
      runCheck('health', { definition: alwaysOk }),
      /while the store was unavailable/,
    );
  });

  it('catches answers crossed between concurrent calls', async () => {
    let lastPath = '';
    const crossed = brokenMemory((inner) => ({
      async resolve(request, options) {
        lastPath = request.path;
        await new Promise((resolve) => setImmediate(resolve));
        return inner.resolve({ ...request, path: lastPath }, options);
      },
    }));
    await expectCaught(runCheck('concurrent', { definition: crossed }), /concurrent call #\d+/);
  });
});

describe('the suite refuses incomplete input', () => {
  it('throws a TypeError naming what is missing from the options', () => {
    expect(() =>
      runProviderConformance({
        name: 'x',
        definition: {} as ProviderDefinition<unknown>,
        module: examples('memory-provider.ts'),
        fixture: () => createMemoryFixture(),
      }),
    ).toThrow(/definition must be the result of defineProvider/);
    expect(() =>
      runProviderConformance({
        name: 'x',
        definition: memoryProvider,
        module: '',
        fixture: () => createMemoryFixture(),
      }),
    ).toThrow(/module must name what the child imports/);
  });

  it('lists every problem of an incomplete fixture', () => {
    expect(() =>
      checkFixture({
        config: {},
        history: 'yes',
        invalidConfigs: [],
        faults: { DSO_PROVIDER_TIMEOUT: async () => async () => {} },
      } as unknown as ConformanceFixture),
    ).toThrow(
      /put\(path, value\) must be a function; close\(\) must be a function; history must be a boolean; invalidConfigs must list at least one.*faults\.DSO_PROVIDER_TIMEOUT is not a fault the suite knows/,
    );
  });
});
