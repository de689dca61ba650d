import { check, expectProviderError, randomText, unknownVersionLike } from '../assertions.js';
import type { ConformanceContext } from '../context.js';
import { type ConformanceCheck, expectResolved } from './check.js';

/** Stores two values at one fresh path: the first and second versions. */
async function twoVersions(context: ConformanceContext) {
  const path = context.path('versioned');
  const first = Buffer.from(`first-${randomText(24)}`);
  const second = Buffer.from(`second-${randomText(24)}`);
  const firstVersion = await context.put(path, first);
  const secondVersion = await context.put(path, second);
  check(
    firstVersion !== secondVersion,
    `the fixture reported version ${JSON.stringify(firstVersion)} for two different puts; each put must make a new version`,
  );
  return { path, first, second, firstVersion, secondVersion };
}

export const versionChecks: ConformanceCheck[] = [
  {
    id: 'current',
    group: 'versions',
    name: 'resolves the latest put as the current value, with that put’s version',
    async run(context) {
      const { path, second, secondVersion } = await twoVersions(context);
      const provider = await context.shared();
      expectResolved(
        await provider.resolve({ path }),
        second,
        secondVersion,
        'the current version',
      );
    },
  },
  {
    id: 'pinned',
    group: 'versions',
    name: 'resolves a superseded version by its id when the store keeps history, else rejects it with DSO_PROVIDER_NOT_FOUND',
    async run(context) {
      const { path, first, firstVersion, second, secondVersion } = await twoVersions(context);
      const provider = await context.shared();
      if (context.fixture.history) {
        expectResolved(
          await provider.resolve({ path, version: firstVersion }),
          first,
          firstVersion,
          `resolve of the superseded version ${firstVersion}`,
        );
      } else {
        expectProviderError(
          await context.rejection(
            provider.resolve({ path, version: firstVersion }),
            'resolve of a superseded version',
          ),
          'DSO_PROVIDER_NOT_FOUND',
          `resolve of the superseded version ${firstVersion} (the fixture keeps no history)`,
        );
      }
      expectResolved(
        await provider.resolve({ path, version: secondVersion }),
        second,
        secondVersion,
        `resolve of the current version ${secondVersion} by its id`,
      );
    },
  },
  {
    id: 'unknown',
    group: 'versions',
    name: 'rejects an unknown version of an existing secret, and any version of a missing one, with DSO_PROVIDER_NOT_FOUND',
    async run(context) {
      const { path, firstVersion, secondVersion } = await twoVersions(context);
      const provider = await context.shared();
      const unknown = unknownVersionLike(secondVersion, [firstVersion, secondVersion]);
      expectProviderError(
        await context.rejection(provider.resolve({ path, version: unknown }), 'unknown version'),
        'DSO_PROVIDER_NOT_FOUND',
        `resolve of the unknown version ${unknown} (shaped like ${secondVersion})`,
      );
      const missing = context.path('never-stored');
      expectProviderError(
        await context.rejection(
          provider.resolve({ path: missing, version: secondVersion }),
          'version of a missing path',
        ),
        'DSO_PROVIDER_NOT_FOUND',
        `resolve of version ${secondVersion} of a path never stored`,
      );
    },
  },
  {
    id: 'probe',
    group: 'versions',
    name: 'probe returns the version resolve returns, follows a put, and rejects a missing path with DSO_PROVIDER_NOT_FOUND',
    applies: ({ capabilities }) => capabilities.probe,
    async run(context) {
      const { path, secondVersion } = await twoVersions(context);
      const provider = await context.shared();
      const resolved = await provider.resolve({ path });
      const probed = await provider.probe!({ path });
      check(
        probed.version === resolved.version && probed.version === secondVersion,
        `probe returned version ${JSON.stringify(probed.version)}, resolve ${JSON.stringify(resolved.version)}, the fixture ${JSON.stringify(secondVersion)}: all three must agree`,
      );
      const thirdVersion = await context.put(path, `third-${randomText(24)}`);
      // Asked again: a snapshot store's provider is opened after the put.
      const after = await (await context.shared()).probe!({ path });
      check(
        after.version === thirdVersion,
        `after a put, probe returned ${JSON.stringify(after.version)}; the new version is ${JSON.stringify(thirdVersion)}`,
      );
      const missing = context.path('never-stored');
      expectProviderError(
        await context.rejection(provider.probe!({ path: missing }), 'probe of a missing path'),
        'DSO_PROVIDER_NOT_FOUND',
        `probe(${missing}) of a path never stored`,
      );
    },
  },
];
