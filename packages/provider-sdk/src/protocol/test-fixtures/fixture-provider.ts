// A provider for the protocol tests: what it does depends on the path it is asked for.
import { setTimeout as sleep } from 'node:timers/promises';
import { abortable } from '@dso/async';
import { z } from 'zod';
import type { ProviderContext } from '../../define-provider.js';
import type { SecretChange, SecretProvider } from '../../provider.js';
import { ProviderError } from '../../provider-error.js';
import { SecretValue } from '../../secret-value.js';

export const fixtureConfigSchema = z.object({
  canary: z.string().min(1),
  /** Size of the value at `big`. */
  bigBytes: z
    .number()
    .int()
    .positive()
    .default(10 * 1024 * 1024),
});
export type FixtureConfig = z.infer<typeof fixtureConfigSchema>;

export const LISTED_PATHS = ['a/1', 'a/2', 'b/1'];

/** The fixture's behaviour; `optional` says whether list/probe/health/watch are attached. */
export function createFixtureProvider(
  config: FixtureConfig,
  { name, log }: ProviderContext,
  optional: boolean,
): SecretProvider {
  process.stderr.write('fixture provider created\n');
  let active = 0;
  let maxActive = 0;
  const notFound = (path: string) =>
    new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { provider: name, path });
  const waitForAbort = (signal: AbortSignal | undefined) =>
    abortable(new Promise<never>(() => {}), signal);

  const provider: SecretProvider = {
    name,
    capabilities: { list: optional, watch: optional, probe: optional, health: optional },
    async resolve({ path, version }, { signal } = {}) {
      active++;
      maxActive = Math.max(maxActive, active);
      try {
        if (path === 'canary') return { value: SecretValue.fromText(config.canary), version: '1' };
        if (path === 'missing') throw notFound(path);
        if (path === 'throw-canary') throw new Error(`backend refused ${config.canary}`);
        if (path === 'big') {
          return {
            value: SecretValue.fromBytes(Buffer.alloc(config.bigBytes, 0x61)),
            version: '1',
          };
        }
        if (path === 'binary') {
          return {
            value: SecretValue.fromBytes(Uint8Array.from({ length: 256 }, (_, i) => i)),
            version: '1',
          };
        }
        if (path === 'hang') return await new Promise(() => undefined);
        if (path === 'crash') process.exit(3);
        if (path === 'max-active')
          return { value: SecretValue.fromText(String(maxActive)), version: '1' };
        if (path === 'noisy') {
          console.log('console.log from the fixture');
          process.stdout.write('process.stdout.write from the fixture\n');
          process.stderr.write(`${'x'.repeat(20_000)}\n`);
        }
        if (path === 'flood') {
          for (let line = 0; line < 1_000; line++) process.stderr.write(`flood line ${line}\n`);
        }
        if (path === 'wait-for-abort') {
          log.info('call started', { path });
          try {
            await waitForAbort(signal);
          } finally {
            log.info('call aborted', { path, reason: String(signal?.reason?.name) });
          }
        }
        const delay = /^delay\/(\d+)\//.exec(path);
        if (delay) await sleep(Number(delay[1]), undefined, { signal });
        return {
          value: SecretValue.fromText(`value-of-${path}`),
          version: version ?? '1',
        };
      } finally {
        active--;
      }
    },
    async close() {
      log.info('closed');
    },
  };
  if (!optional) return provider;
  provider.list = async (prefix = '') => LISTED_PATHS.filter((path) => path.startsWith(prefix));
  provider.probe = async ({ path }) => {
    if (path === 'missing') throw notFound(path);
    return { version: '1' };
  };
  provider.health = async () => ({ ok: true, detail: 'fixture is fine' });
  provider.watch = (paths, { signal }) =>
    (async function* (): AsyncGenerator<SecretChange> {
      for (const path of paths) {
        if (path === 'watch-fail') {
          throw new ProviderError('DSO_PROVIDER_UNAVAILABLE', 'the fixture store went away', {
            provider: name,
          });
        }
        yield { path, version: 'v1' };
      }
      let version = 1;
      while (!signal.aborted && paths.includes('ticking')) {
        await sleep(20, undefined, { signal }).catch(() => undefined);
        if (!signal.aborted) yield { path: 'ticking', version: `v${++version}` };
      }
      if (!signal.aborted) {
        await waitForAbort(signal).catch(() => undefined);
      }
      log.info('watch ended', { paths: paths.length });
    })();
  return provider;
}
