import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { type ConformanceFixture, runProviderConformance } from '@dso/provider-conformance';
import { contentVersion } from './contained-file.js';
import fileProvider from './index.js';

/** The root the suite's paths (`dso-conformance/<run>/…`) fall under. */
const ROOT_NAME = 'dso-conformance';

/**
 * A fresh root directory in a temporary directory. `put` writes the file the way careful
 * writers do (a temporary file in the same directory, renamed over the old one), and returns
 * the content's version, which is how this provider versions files.
 */
async function directoryFixture(): Promise<ConformanceFixture> {
  const dir = await mkdtemp(join(tmpdir(), 'dso-file-conformance-'));
  const root = join(dir, 'root');
  await mkdir(root);
  return {
    config: { roots: { [ROOT_NAME]: root } },
    async put(path, value) {
      const [rootName, ...segments] = path.split('/');
      if (rootName !== ROOT_NAME || segments.length === 0) {
        throw new Error(`the file fixture stores paths under ${ROOT_NAME}/ only`);
      }
      const target = join(root, ...segments);
      await mkdir(dirname(target), { recursive: true });
      const temp = join(dirname(target), `.put-${randomBytes(6).toString('hex')}.tmp`);
      await writeFile(temp, value, { mode: 0o600 });
      await rename(temp, target);
      return contentVersion(value);
    },
    history: false,
    // Three, each a different kind of mistake: every one costs a child process in the suite's
    // second half. The unit tests refuse many more.
    invalidConfigs: [
      {},
      { roots: { a: 'relative/directory' } },
      // A root that does not exist: refused when the provider is created.
      { roots: { a: join(dir, 'missing') } },
    ],
    faults: {
      // The directory went away (an unmounted volume): every call is UNAVAILABLE until it is back.
      async DSO_PROVIDER_UNAVAILABLE() {
        const aside = join(dir, `root-away-${randomBytes(4).toString('hex')}`);
        await rename(root, aside);
        return async () => {
          await rename(aside, root);
        };
      },
    },
    async close() {
      await rm(dir, { recursive: true, force: true });
    },
  };
}

runProviderConformance({
  name: 'file',
  definition: fileProvider,
  module: new URL('./index.ts', import.meta.url).pathname,
  fixture: directoryFixture,
});
