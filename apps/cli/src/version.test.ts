import { readFileSync } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCli } from './program.js';
import { CLI_VERSION, versionLine } from './version.js';

const { version } = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
) as { version: string };

async function dso(args: string[]) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  stdout.on('data', (chunk) => {
    out += chunk;
  });
  const stdin = Readable.from([]) as unknown as NodeJS.ReadStream;
  const code = await runCli(args, { env: {}, stdin, stdout, stderr });
  return { code, stdout: out };
}

describe('dso --version', () => {
  const line = `dso ${version} (node ${process.version}, ${process.platform}/${process.arch})\n`;

  it("prints the package's version, Node's and the platform, exit 0", async () => {
    expect(CLI_VERSION).toBe(version);
    expect(`${versionLine()}\n`).toBe(line);
    expect(await dso(['--version'])).toEqual({ code: 0, stdout: line });
    expect(await dso(['-v'])).toEqual({ code: 0, stdout: line });
    expect(await dso(['version'])).toEqual({ code: 0, stdout: line });
  });

  it('dso version --json prints the same facts as fields', async () => {
    const { code, stdout } = await dso(['version', '--json']);
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({
      dso: version,
      node: process.version,
      platform: process.platform,
      arch: process.arch,
    });
  });
});
