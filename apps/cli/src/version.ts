// Bundled into dist/ at build time (tsup inlines the JSON), so the version printed is the one
// built, whatever package.json sits beside it later.
import packageJson from '../package.json' with { type: 'json' };

/** This CLI's version, from its package.json. */
export const CLI_VERSION: string = packageJson.version;

/**
 * What `dso --version` prints: the version, then Node's and the platform, as one line a bug
 * report can quote.
 *
 * @example
 * versionLine(); // 'dso 0.1.0 (node v20.19.5, linux/x64)'
 */
export function versionLine(): string {
  return `dso ${CLI_VERSION} (node ${process.version}, ${process.platform}/${process.arch})`;
}

/** `dso version --json`: the same facts as fields. */
export function versionInfo(): { dso: string; node: string; platform: string; arch: string } {
  return {
    dso: CLI_VERSION,
    node: process.version,
    platform: process.platform,
    arch: process.arch,
  };
}
