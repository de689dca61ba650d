import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../program.js';

let dir: string;
let socketPath: string;
const closers: Array<() => Promise<void>> = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-cli-reconcile-'));
  socketPath = join(dir, 'agent.sock');
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await rm(dir, { recursive: true, force: true });
});

/** A stand-in for the agent's API on a unix socket. */
async function stubAgent(answer: (response: ServerResponse) => void): Promise<string[]> {
  const seen: string[] = [];
  const server = createServer((request, response) => {
    seen.push(`${request.method} ${request.url}`);
    answer(response);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return seen;
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'Content-Type': 'application/json' });
  response.end(JSON.stringify(body));
}

async function dso(args: string[]) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk) => {
    out += chunk;
  });
  stderr.on('data', (chunk) => {
    err += chunk;
  });
  const stdin = Readable.from([]) as unknown as NodeJS.ReadStream;
  const code = await runCli(args, { env: { DSO_API_SOCKET: socketPath }, stdin, stdout, stderr });
  return { code, stdout: out, stderr: err };
}

describe('dso reconcile', () => {
  it('POSTs /v1/reconcile and says how many containers were queued', async () => {
    const seen = await stubAgent((response) => json(response, 202, { containers: 3 }));
    expect(await dso(['reconcile'])).toEqual({
      code: 0,
      stdout: 'reconciliation requested: 3 managed containers queued for a check\n',
      stderr: '',
    });
    expect(seen).toEqual(['POST /v1/reconcile']);
  });

  it('says "container" for one', async () => {
    await stubAgent((response) => json(response, 202, { containers: 1 }));
    expect((await dso(['reconcile'])).stdout).toBe(
      'reconciliation requested: 1 managed container queued for a check\n',
    );
  });

  it("prints the agent's refusal with its code, exit 6 (unavailable) for DSO_AGENT_NOT_RUNNING", async () => {
    await stubAgent((response) =>
      json(response, 503, {
        error: 'the agent is not running: nothing to reconcile',
        code: 'DSO_AGENT_NOT_RUNNING',
      }),
    );
    expect(await dso(['reconcile'])).toEqual({
      code: 6,
      stdout: '',
      stderr: 'dso: the agent is not running: nothing to reconcile (DSO_AGENT_NOT_RUNNING)\n',
    });
  });

  it('says how to start the agent when there is no socket, exit 6', async () => {
    const result = await dso(['reconcile']);
    expect(result.code).toBe(6);
    expect(result.stderr).toBe(
      `dso: the agent is not running (no socket at ${socketPath}): start it with dso-agent or systemctl start dso-agent (DSO_CLI_AGENT_UNREACHABLE)\n`,
    );
  });

  it('prints the answer as JSON with --json', async () => {
    await stubAgent((response) => json(response, 202, { containers: 3 }));
    expect(await dso(['reconcile', '--json'])).toEqual({
      code: 0,
      stdout: '{"containers":3}\n',
      stderr: '',
    });
  });

  it('refuses arguments (exit 2)', async () => {
    expect((await dso(['reconcile', 'everything'])).code).toBe(2);
  });
});
