import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { runCli } from './program.js';
import { CLI_VERSION, versionLine } from './version.js';

const { version } = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
) as { version: string };

async function dso(args: string[], env: NodeJS.ProcessEnv = {}) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  stdout.on('data', (chunk) => {
    out += chunk;
  });
  const stdin = Readable.from([]) as unknown as NodeJS.ReadStream;
  const code = await runCli(args, { env, stdin, stdout, stderr });
  return { code, stdout: out };
}

describe('dso --version', () => {
  const line = `dso ${version} (node ${process.version}, ${process.platform}/${process.arch})\n`;

  it("prints the package's version, Node's and the platform, exit 0", async () => {
    expect(CLI_VERSION).toBe(version);
    expect(`${versionLine()}\n`).toBe(line);
    expect(await dso(['--version'])).toEqual({ code: 0, stdout: line });
    expect(await dso(['-v'])).toEqual({ code: 0, stdout: line });
    expect(await dso(['version', '--client'])).toEqual({ code: 0, stdout: line });
  });

  it("dso version adds the agent's version, or says it did not answer; --json as fields", async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dso-cli-version-'));
    const socket = join(dir, 'agent.sock');
    try {
      const away = await dso(['version'], { DSO_API_SOCKET: socket });
      expect(away).toEqual({
        code: 0,
        stdout: `${line}dso-agent: no answer on ${socket} (DSO_CLI_AGENT_UNREACHABLE; dso doctor says why)\n`,
      });
      const server = createServer((_request, response) => {
        response.writeHead(200, { 'Content-Type': 'application/json' });
        response.end(
          JSON.stringify({
            startedAt: 0,
            containers: [],
            queue: { depth: 0, inFlight: 0, shed: 0 },
            cache: { entries: 0, hits: 0, misses: 0, staleServed: 0 },
            providers: [],
            version: '9.8.7',
          }),
        );
      });
      await new Promise<void>((resolve) => server.listen(socket, resolve));
      try {
        expect(await dso(['version'], { DSO_API_SOCKET: socket })).toEqual({
          code: 0,
          stdout: `${line}dso-agent 9.8.7 on ${socket}\n`,
        });
        const { code, stdout } = await dso(['version', '--json'], { DSO_API_SOCKET: socket });
        expect(code).toBe(0);
        expect(JSON.parse(stdout)).toEqual({
          dso: version,
          node: process.version,
          platform: process.platform,
          arch: process.arch,
          agent: { socket, version: '9.8.7' },
        });
      } finally {
        await new Promise<void>((resolve) => server.close(() => resolve()));
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
