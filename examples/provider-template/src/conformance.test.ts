import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type ConformanceFixture, runProviderConformance } from '@dso/provider-conformance';
import provider from './index.js';

/**
 * A store the suite can write to, and a configuration pointed at it. For a provider of a
 * network service, start a fake of its HTTP API on 127.0.0.1 here (or a real one, if it runs
 * locally) and write through the service's own API in `put`.
 */
async function jsonFileFixture(): Promise<ConformanceFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'dso-provider-example-'));
  const file = join(dir, 'secrets.json');
  await writeFile(file, JSON.stringify({ secrets: {} }), { mode: 0o600 });
  const counters = new Map<string, number>();
  // The suite stores concurrently: one read-modify-write at a time.
  let writes: Promise<unknown> = Promise.resolve();

  return {
    config: { file },
    async put(path, value) {
      const write = writes.then(async () => {
        const document = JSON.parse(await readFile(file, 'utf8'));
        const version = String((counters.get(path) ?? 0) + 1);
        counters.set(path, Number(version));
        document.secrets[path] = { version, base64: Buffer.from(value).toString('base64') };
        // Written whole and renamed into place, so a read never sees half a file.
        const temp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
        await writeFile(temp, JSON.stringify(document), { mode: 0o600 });
        await rename(temp, file);
        return version;
      });
      writes = write.catch(() => undefined);
      return write;
    },
    // Only the current version of a secret is kept.
    history: false,
    // At least one: the suite proves each is refused with DSO_PROVIDER_INVALID_CONFIG.
    invalidConfigs: [{}, { file: 'relative/secrets.json' }, { file, extra: true }],
    faults: {
      // The store file gone (an unmounted volume): calls are UNAVAILABLE until it is back.
      async DSO_PROVIDER_UNAVAILABLE() {
        const aside = `${file}.away`;
        await rename(file, aside);
        return async () => {
          await rename(aside, file);
        };
      },
    },
    async close() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

runProviderConformance({
  name: 'dso-provider-example',
  definition: provider,
  // What the child process imports in the suite's second half.
  module: new URL('./index.ts', import.meta.url).pathname,
  fixture: jsonFileFixture,
});
