// The conformance suite's fixture for provider.py: a secrets file in a fresh temporary folder.
// The suite writes only through put() and reads only through the provider (the Python child),
// so this is the one piece in JavaScript, and only for the test: the agent runs provider.py
// directly. Used by `npm test` here: dso-provider-conformance --fixture conformance-fixture.mjs.
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** @returns {Promise<import('@dso/provider-conformance').ConformanceFixture>} */
export default async function createFixture() {
  const dir = await mkdtemp(join(tmpdir(), 'dso-pyfile-'));
  const file = join(dir, 'secrets.json');
  const entries = {};
  let version = 0;
  let writing = Promise.resolve();
  // Whole-file replacement: the provider never reads half a file. Writes go one at a time.
  const save = () => {
    writing = writing.then(async () => {
      await writeFile(`${file}.tmp`, JSON.stringify(entries), { mode: 0o600 });
      await rename(`${file}.tmp`, file);
    });
    return writing;
  };
  await save();
  return {
    config: { file, pollIntervalMs: 100 },
    history: false,
    async put(path, value) {
      version += 1;
      const stored = String(version);
      entries[path] = { base64: Buffer.from(value).toString('base64'), version: stored };
      await save();
      return stored;
    },
    invalidConfigs: [
      { file: 'relative/secrets-zqxv.json' },
      { file: '/etc/both-zqxv.json', secrets: {} },
      { secrets: { 'app/db': 42 }, unknownSetting: 'zqxv-value' },
    ],
    faults: {
      // The file gone: the provider answers DSO_PROVIDER_UNAVAILABLE until it is back.
      DSO_PROVIDER_UNAVAILABLE: async () => {
        await writing;
        await rename(file, `${file}.away`);
        return async () => rename(`${file}.away`, file);
      },
    },
    close: () => rm(dir, { recursive: true, force: true }),
  };
}
