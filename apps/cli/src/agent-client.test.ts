import { mkdtemp, rename, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type AgentApiStatus,
  createAgentClient,
  DEFAULT_API_SOCKET,
  MAX_AGENT_RESPONSE_BYTES,
  resolveApiSocket,
} from './agent-client.js';

let dir: string;
let socketPath: string;
const closers: Array<() => Promise<void>> = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-cli-agent-'));
  socketPath = join(dir, 'agent.sock');
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await rm(dir, { recursive: true, force: true });
});

const STATUS: AgentApiStatus = {
  startedAt: 1_700_000_000_000,
  containers: [],
  queue: { depth: 0, inFlight: 0, shed: 0 },
  cache: { entries: 0, hits: 0, misses: 0, staleServed: 0 },
  providers: [],
};

/** A stand-in for the agent's API on a unix socket: answers with `handler`. */
async function stub(handler: (request: IncomingMessage, response: ServerResponse) => void) {
  const requests: Array<{ method: string | undefined; url: string | undefined }> = [];
  const server = createServer((request, response) => {
    requests.push({ method: request.method, url: request.url });
    handler(request, response);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return requests;
}

function json(response: ServerResponse, status: number, body: unknown): void {
  response.writeHead(status, { 'Content-Type': 'application/json' });
  response.end(JSON.stringify(body));
}

describe('resolveApiSocket', () => {
  it('uses DSO_API_SOCKET, else the default /run/dso/agent.sock', () => {
    expect(resolveApiSocket({ DSO_API_SOCKET: '/tmp/x.sock' })).toBe('/tmp/x.sock');
    expect(resolveApiSocket({ DSO_API_SOCKET: '' })).toBe(DEFAULT_API_SOCKET);
    expect(resolveApiSocket({})).toBe('/run/dso/agent.sock');
  });
});

describe('createAgentClient', () => {
  it('reads GET /v1/status', async () => {
    const requests = await stub((_request, response) => json(response, 200, STATUS));
    expect(await createAgentClient({ socketPath }).status()).toEqual(STATUS);
    expect(requests).toEqual([{ method: 'GET', url: '/v1/status' }]);
  });

  it('POSTs /v1/reconcile and returns the count', async () => {
    const requests = await stub((_request, response) => json(response, 202, { containers: 7 }));
    expect(await createAgentClient({ socketPath }).reconcile()).toEqual({ containers: 7 });
    expect(requests).toEqual([{ method: 'POST', url: '/v1/reconcile' }]);
  });

  it("passes the agent's own code and message on when it refuses a call", async () => {
    await stub((_request, response) =>
      json(response, 503, {
        error: 'the agent is not running: nothing to reconcile',
        code: 'DSO_AGENT_NOT_RUNNING',
      }),
    );
    await expect(createAgentClient({ socketPath }).reconcile()).rejects.toMatchObject({
      code: 'DSO_AGENT_NOT_RUNNING',
      message: 'the agent is not running: nothing to reconcile',
    });
  });

  it('falls back to DSO_CLI_AGENT_ERROR and strips control characters from what the agent says', async () => {
    await stub((_request, response) =>
      json(response, 500, { error: 'bad\u001b[2Jthing', code: 'not-a-code' }),
    );
    await expect(createAgentClient({ socketPath }).status()).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_ERROR',
      message: 'bad?[2Jthing',
    });
  });

  it('rejects an answer that is not JSON, or not a status, with DSO_CLI_AGENT_RESPONSE', async () => {
    let body = 'not json';
    await stub((_request, response) => {
      response.writeHead(200);
      response.end(body);
    });
    const client = createAgentClient({ socketPath });
    await expect(client.status()).rejects.toMatchObject({ code: 'DSO_CLI_AGENT_RESPONSE' });
    body = JSON.stringify({ ok: true });
    await expect(client.status()).rejects.toMatchObject({ code: 'DSO_CLI_AGENT_RESPONSE' });
  });

  it('stops reading an answer over the size limit', async () => {
    await stub((_request, response) => {
      response.writeHead(200);
      response.end(Buffer.alloc(MAX_AGENT_RESPONSE_BYTES + 1, 0x20));
    });
    await expect(createAgentClient({ socketPath }).status()).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_RESPONSE',
      message: expect.stringContaining('more than'),
    });
  });

  it('says the agent is not running when there is no socket', async () => {
    await expect(createAgentClient({ socketPath }).status()).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_UNREACHABLE',
      message: `the agent is not running (no socket at ${socketPath}): start it with dso-agent or systemctl start dso-agent`,
    });
  });

  it('says the agent is not running when nothing answers on a socket file', async () => {
    // A socket file with no listener: bound elsewhere, moved into place, then closed.
    const bound = join(dir, 'bound.sock');
    const old = createNetServer();
    await new Promise<void>((resolve) => old.listen(bound, resolve));
    await rename(bound, socketPath);
    await new Promise<void>((resolve) => old.close(() => resolve()));
    await expect(createAgentClient({ socketPath }).status()).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_UNREACHABLE',
      message: expect.stringContaining(`nothing answers on ${socketPath}`),
    });
  });

  it('gives up with DSO_CLI_AGENT_TIMEOUT when the agent does not answer in time', async () => {
    await stub(() => {
      // Never answers.
    });
    const started = Date.now();
    await expect(createAgentClient({ socketPath, timeoutMs: 150 }).status()).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_TIMEOUT',
      message: expect.stringContaining('within 150 ms'),
    });
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('stops when the caller aborts', async () => {
    await stub(() => {
      // Never answers.
    });
    const controller = new AbortController();
    const call = createAgentClient({ socketPath }).status({ signal: controller.signal });
    controller.abort();
    await expect(call).rejects.toMatchObject({ code: 'DSO_CLI_AGENT_ABORTED' });
  });
});
