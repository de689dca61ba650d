// Bundled into dist/ at build time (tsup inlines the JSON), so the version printed is the one
// built, whatever package.json sits beside it later.
import packageJson from '../package.json' with { type: 'json' };

/** The agent's version, from its package.json. */
export const AGENT_VERSION: string = packageJson.version;

/**
 * What `dso-agent --version` prints: the version, then Node's and the platform, as one line a
 * bug report can quote.
 *
 * @example
 * agentVersionLine(); // 'dso-agent 0.1.0 (node v20.19.5, linux/x64)'
 */
export function agentVersionLine(): string {
  return `dso-agent ${AGENT_VERSION} (node ${process.version}, ${process.platform}/${process.arch})`;
}

/** Whether the arguments ask for the version only (`--version` or `-v`, as dockerd takes them). */
export function asksForVersion(argv: readonly string[]): boolean {
  return argv.length === 1 && (argv[0] === '--version' || argv[0] === '-v');
}
