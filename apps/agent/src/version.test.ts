import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { AGENT_VERSION, agentVersionLine, asksForVersion } from './version.js';

describe('dso-agent --version', () => {
  it("prints the package's version, Node's and the platform", () => {
    const { version } = JSON.parse(
      readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
    ) as { version: string };
    expect(AGENT_VERSION).toBe(version);
    expect(agentVersionLine()).toBe(
      `dso-agent ${version} (node ${process.version}, ${process.platform}/${process.arch})`,
    );
  });

  it('is asked for with --version or -v alone', () => {
    expect(asksForVersion(['--version'])).toBe(true);
    expect(asksForVersion(['-v'])).toBe(true);
    expect(asksForVersion([])).toBe(false);
    expect(asksForVersion(['--help'])).toBe(false);
    // With anything else it is an unknown argument, as before.
    expect(asksForVersion(['--version', 'extra'])).toBe(false);
  });
});
