import {
  isProviderDefinition,
  isProviderError,
  type SecretProvider,
  SUPPORTED_PROVIDER_SDK_API_VERSIONS,
} from '@dso/provider-sdk';
import { check, describeError, randomText, within } from '../assertions.js';
import type { ConformanceContext } from '../context.js';
import {
  type ConformanceCheck,
  checkCapabilities,
  expectResolved,
  firstWatchStep,
  PROMPT_MS,
} from './check.js';

/** A call the provider declares, bound to a path; it takes the signal to pass. */
export type DeclaredCall = [operation: string, call: (signal?: AbortSignal) => Promise<unknown>];

/** Every call the provider declares, bound to `path`: resolve, then list, probe, health. */
export function declaredCalls(
  provider: SecretProvider,
  context: ConformanceContext,
  path: string,
): DeclaredCall[] {
  const options = (signal?: AbortSignal) => (signal === undefined ? {} : { signal });
  const calls: DeclaredCall[] = [
    ['resolve', (signal) => provider.resolve({ path }, options(signal))],
  ];
  const { list, probe, health } = context.capabilities;
  if (list) calls.push(['list', (signal) => provider.list!(path, options(signal))]);
  if (probe) calls.push(['probe', (signal) => provider.probe!({ path }, options(signal))]);
  if (health) calls.push(['health', (signal) => provider.health!(options(signal))]);
  return calls;
}

export const lifecycleChecks: ConformanceCheck[] = [
  {
    id: 'caps',
    group: 'capabilities and lifecycle',
    name: 'exports a definition this SDK supports (a command: its handshake does), and the live provider has exactly the declared capabilities: a method for each, none for the rest',
    async run(context) {
      const { definition } = context;
      // A child run from a command has no definition: the host checked the protocol and SDK
      // API versions of its handshake when it opened it, and its capabilities are checked here.
      if (definition !== undefined) {
        check(
          isProviderDefinition(definition),
          'the definition is not the result of defineProvider(): export defineProvider({...})',
        );
        check(
          SUPPORTED_PROVIDER_SDK_API_VERSIONS.includes(definition.sdkApiVersion),
          `the definition was built for provider SDK API version ${definition.sdkApiVersion}, which this SDK does not support`,
        );
      }
      checkCapabilities(await context.shared(), context.capabilities, context.name);
    },
  },
  {
    id: 'life',
    group: 'capabilities and lifecycle',
    name: 'is created, resolves, and closes; every call after close rejects with a ProviderError; a second close resolves',
    async run(context) {
      const path = context.path('value');
      const value = randomText(40);
      const version = await context.put(path, value);
      const provider = await context.open();
      expectResolved(
        await provider.resolve({ path }),
        Buffer.from(value),
        version,
        'resolve before close',
      );
      await within(provider.close(), 5_000, 'close()');
      for (const [operation, call] of declaredCalls(provider, context, path)) {
        const error = await within(
          context.rejection(call(), `${operation} after close`),
          PROMPT_MS,
          `${operation} after close`,
        );
        check(
          isProviderError(error),
          `${operation} after close rejected with ${describeError(error)}; it must be a ProviderError`,
        );
      }
      if (context.capabilities.watch) {
        const giveUp = new AbortController();
        try {
          const error = await within(
            context.rejection(firstWatchStep(provider, [path], giveUp.signal), 'watch after close'),
            PROMPT_MS,
            'watch after close',
          );
          check(
            isProviderError(error),
            `watch after close failed with ${describeError(error)}; it must be a ProviderError`,
          );
        } finally {
          giveUp.abort();
        }
      }
      await within(provider.close(), PROMPT_MS, 'a second close()');
    },
  },
];
