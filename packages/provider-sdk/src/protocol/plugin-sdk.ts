import { createRequire, register } from 'node:module';
import { fileURLToPath } from 'node:url';
import { satisfiesVersionRange } from '../version-range.js';

/**
 * This SDK's package version: what a plugin's `@dso/provider-sdk` peer range is checked
 * against. A constant (a test keeps it equal to package.json's) so a bundled copy knows it too.
 */
export const PROVIDER_SDK_VERSION = '0.1.0';

/** The package a provider plugin imports, and declares as a peer dependency. */
export const PROVIDER_SDK_PACKAGE = '@dso/provider-sdk';

/** `dso-provider-<name>` or `@scope/dso-provider-<name>`, within npm's name rules. */
export const PROVIDER_PACKAGE_NAME =
  /^(?:@[a-z0-9][a-z0-9._-]*\/)?dso-provider-[a-z0-9][a-z0-9._-]*$/;

// Runs in Node's loader thread: `@dso/provider-sdk` (and its subpaths), imported from any
// module, resolves as if this SDK's own code imported it (its package's self-reference), so a
// plugin gets the very copy that hosts it. Everything else resolves as usual.
const HOOKS = `let parentURL;
export function initialize(data) { parentURL = data.parentURL; }
export function resolve(specifier, context, nextResolve) {
  if (specifier === ${JSON.stringify(PROVIDER_SDK_PACKAGE)} || specifier.startsWith(${JSON.stringify(`${PROVIDER_SDK_PACKAGE}/`)}))
    return nextResolve(specifier, { ...context, parentURL });
  return nextResolve(specifier, context);
}`;

let supplied = false;

/**
 * Whether the module at `moduleUrl` (a `file:` URL) has no `@dso/provider-sdk` of its own to
 * import: a plugin installed with the SDK as its peer. Only those need
 * {@link supplySdkToPlugins}, whose loader thread costs a provider process about 10 MiB.
 *
 * @example
 * needsSuppliedSdk('file:///var/lib/dso/plugins/node_modules/dso-provider-acme/dist/index.js'); // true
 */
export function needsSuppliedSdk(moduleUrl: string): boolean {
  if (!moduleUrl.startsWith('file:')) return true;
  try {
    createRequire(fileURLToPath(moduleUrl)).resolve(`${PROVIDER_SDK_PACKAGE}/package.json`);
    return false;
  } catch {
    // Not found from there: nothing of its own to import, so it gets this copy.
    return true;
  }
}

/**
 * Makes `import '@dso/provider-sdk'` in any module this process loads from now on resolve to
 * this copy of the SDK, so a plugin installed without its own copy (the SDK is its peer
 * dependency, which nothing fetches from a registry) finds the one the agent runs. Called by
 * {@link loadProviderModule} (the runner in a provider process, and the agent for
 * `mode: inline`) for a module that {@link needsSuppliedSdk}; calling it again does nothing.
 *
 * @example
 * supplySdkToPlugins();
 * await import('/var/lib/dso/plugins/node_modules/dso-provider-acme/dist/index.js');
 */
export function supplySdkToPlugins(): void {
  if (supplied) return;
  supplied = true;
  register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, {
    data: { parentURL: import.meta.url },
  });
}

/** What a provider package's package.json says about how it runs and the SDK it needs. */
export interface ProviderPackageInfo {
  name: string;
  version: string;
  /** `command`: it names its own child (`dso.command`); `module`: the SDK's runner imports it. */
  kind: 'module' | 'command';
  /** Its `@dso/provider-sdk` range (from `peerDependencies`, else `dependencies`). */
  sdkRange?: string;
  /** Where the range was found; `dependencies` would make npm fetch the SDK from a registry. */
  sdkDeclaredIn?: 'peerDependencies' | 'dependencies';
  /**
   * `ok`: this SDK is in its range (or it needs none: a command); `mismatch`: not in it;
   * `unreadable`: a range this SDK cannot read; `missing`: a module package that names no SDK.
   */
  sdk: 'ok' | 'mismatch' | 'unreadable' | 'missing';
}

/**
 * Reads a provider package's manifest (its parsed package.json): its kind and whether this SDK
 * ({@link PROVIDER_SDK_VERSION}) satisfies its `@dso/provider-sdk` range. The package name
 * rule and `dso.command`'s shape are checked where they are used.
 *
 * @example
 * inspectProviderPackage({ name: 'dso-provider-acme', version: '1.0.0', peerDependencies: { '@dso/provider-sdk': '^0.1.0' } });
 * // { name: 'dso-provider-acme', version: '1.0.0', kind: 'module', sdkRange: '^0.1.0', sdkDeclaredIn: 'peerDependencies', sdk: 'ok' }
 */
export function inspectProviderPackage(
  manifest: unknown,
  sdkVersion: string = PROVIDER_SDK_VERSION,
): ProviderPackageInfo {
  const record = (value: unknown): Record<string, unknown> =>
    typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : {};
  const json = record(manifest);
  const name = typeof json.name === 'string' ? json.name : '';
  const version = typeof json.version === 'string' ? json.version : '';
  const kind = record(json.dso).command === undefined ? 'module' : 'command';
  const info: ProviderPackageInfo = { name, version, kind, sdk: 'missing' };
  for (const field of ['peerDependencies', 'dependencies'] as const) {
    const range = record(json[field])[PROVIDER_SDK_PACKAGE];
    if (typeof range === 'string') {
      info.sdkRange = range;
      info.sdkDeclaredIn = field;
      break;
    }
  }
  if (info.sdkRange === undefined) {
    info.sdk = kind === 'command' ? 'ok' : 'missing';
    return info;
  }
  const satisfied = satisfiesVersionRange(sdkVersion, info.sdkRange);
  info.sdk = satisfied === undefined ? 'unreadable' : satisfied ? 'ok' : 'mismatch';
  return info;
}

/**
 * Why this SDK cannot host the package, as a sentence that says what to do; `undefined` when
 * it can. The agent and `dso plugin` put it in their own errors.
 *
 * @example
 * sdkProblem(inspectProviderPackage(manifest)); // 'dso-provider-acme 2.0.0 needs @dso/provider-sdk ^0.3.0; this DSO supplies 0.1.0: …'
 */
export function sdkProblem(
  info: ProviderPackageInfo,
  sdkVersion: string = PROVIDER_SDK_VERSION,
): string | undefined {
  const which = `${info.name || 'the package'}${info.version ? ` ${info.version}` : ''}`;
  switch (info.sdk) {
    case 'ok':
      return undefined;
    case 'mismatch':
      return (
        `${which} needs ${PROVIDER_SDK_PACKAGE} ${info.sdkRange}; this DSO supplies ${sdkVersion}: ` +
        `install a release of the package built for ${PROVIDER_SDK_PACKAGE} ${sdkVersion}, or a DSO whose SDK is in ${info.sdkRange}`
      );
    case 'unreadable':
      return (
        `${which} names ${PROVIDER_SDK_PACKAGE} with the range "${info.sdkRange}", which DSO cannot read: ` +
        `its author should write a plain semver range such as ^${sdkVersion}`
      );
    default:
      return (
        `${which} is neither a provider module (no ${PROVIDER_SDK_PACKAGE} in its peerDependencies) nor a ` +
        `command provider (no dso.command in its package.json): its author should add one of them`
      );
  }
}
