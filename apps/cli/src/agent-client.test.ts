import { chmod, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  type AgentApiStatus,
  API_MAX_RESOLVE_REFERENCES as MAX_RESOLVE_REFERENCES,
} from '@dso/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  consumerLabel,
  createAgentClient,
  findAgentSocket,
  MAX_AGENT_RESPONSE_BYTES,
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

describe('createAgentClient', () => {
  it('follows GET /v1/events line by line until the agent ends the stream, or the caller stops', async () => {
    const requests = await stub((_request, response) => {
      response.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
      response.write('{"type":"subscribed","at":1}\n{"type":"delivered",');
      setTimeout(() => response.end('"at":2,"containerId":"c1"}\n'), 20);
    });
    const events: unknown[] = [];
    await createAgentClient({ socketPath }).events((event) => events.push(event));
    expect(events).toEqual([
      { type: 'subscribed', at: 1 },
      { type: 'delivered', at: 2, containerId: 'c1' },
    ]);
    expect(requests).toEqual([{ method: 'GET', url: '/v1/events' }]);
  });

  it('ends a followed stream quietly when the caller aborts', async () => {
    await stub((_request, response) => {
      response.writeHead(200, { 'Content-Type': 'application/x-ndjson' });
      response.write('{"type":"subscribed","at":1}\n');
    });
    const controller = new AbortController();
    const following = createAgentClient({ socketPath }).events(() => controller.abort(), {
      signal: controller.signal,
    });
    await expect(following).resolves.toBeUndefined();
  });

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

  it('checks every answer against the contract, naming the field that is off but not its text', async () => {
    const container = { id: 'c1', lastAction: { trigger: 'started', at: 1, outcome: 'maybe' } };
    await stub((request, response) =>
      request.url === '/v1/status'
        ? json(response, 200, { ...STATUS, containers: [container] })
        : json(response, 202, { containers: -1 }),
    );
    const client = createAgentClient({ socketPath });
    const error = await client.status().catch((caught: unknown) => caught);
    expect(error).toMatchObject({
      code: 'DSO_CLI_AGENT_RESPONSE',
      message: expect.stringContaining('containers.0.lastAction.outcome'),
    });
    expect((error as Error).message).not.toContain('maybe');
    await expect(client.reconcile()).rejects.toMatchObject({ code: 'DSO_CLI_AGENT_RESPONSE' });
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

  it('tries again while the agent answers 503 DSO_AGENT_API_BUSY, then reads the status', async () => {
    let calls = 0;
    const requests = await stub((_request, response) => {
      calls++;
      if (calls <= 2) {
        json(response, 503, { error: 'the agent is busy', code: 'DSO_AGENT_API_BUSY' });
      } else {
        json(response, 200, STATUS);
      }
    });
    await expect(createAgentClient({ socketPath }).status()).resolves.toEqual(STATUS);
    expect(requests).toHaveLength(3);
  });

  it('tries again when the agent closes the connection before answering (its cap closed it)', async () => {
    let calls = 0;
    const requests = await stub((request, response) => {
      calls++;
      if (calls === 1) request.socket.destroy();
      else json(response, 200, STATUS);
    });
    await expect(createAgentClient({ socketPath }).status()).resolves.toEqual(STATUS);
    expect(requests).toHaveLength(2);
  });

  it('gives up with DSO_CLI_AGENT_BUSY, saying the agent is busy and what to do, when it stays busy', async () => {
    const requests = await stub((_request, response) =>
      json(response, 503, { error: 'the agent is busy', code: 'DSO_AGENT_API_BUSY' }),
    );
    const failure = createAgentClient({ socketPath }).status();
    await expect(failure).rejects.toMatchObject({ code: 'DSO_CLI_AGENT_BUSY' });
    await expect(failure).rejects.toThrow(/is busy: .*4 times; try again in a moment/);
    expect(requests).toHaveLength(4);
  });

  it('does not try again a refusal other than busy', async () => {
    const requests = await stub((_request, response) =>
      json(response, 503, { error: 'not running yet', code: 'DSO_AGENT_NOT_RUNNING' }),
    );
    await expect(createAgentClient({ socketPath }).status()).rejects.toMatchObject({
      code: 'DSO_AGENT_NOT_RUNNING',
    });
    expect(requests).toHaveLength(1);
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

/** The request's body, read in full (the stub's handler runs before it arrives). */
function bodyOf(request: IncomingMessage): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    request.setEncoding('utf8').on('data', (chunk: string) => {
      text += chunk;
    });
    request.on('end', () => resolve(text));
  });
}

describe('createAgentClient: rotate', () => {
  it('POSTs /v1/rotate with the selector as JSON and returns the counts', async () => {
    const bodies: Array<{ body: string; type: string | undefined }> = [];
    const requests = await stub(async (request, response) => {
      bodies.push({ body: await bodyOf(request), type: request.headers['content-type'] });
      json(response, 200, { containers: 2, secrets: 4 });
    });
    const client = createAgentClient({ socketPath });
    expect(await client.rotate()).toEqual({ containers: 2, secrets: 4 });
    expect(await client.rotate({ containerId: 'abcdefabcdef' })).toEqual({
      containers: 2,
      secrets: 4,
    });
    expect(requests).toEqual([
      { method: 'POST', url: '/v1/rotate' },
      { method: 'POST', url: '/v1/rotate' },
    ]);
    expect(bodies).toEqual([
      { body: '{}', type: 'application/json' },
      { body: '{"containerId":"abcdefabcdef"}', type: 'application/json' },
    ]);
  });

  it("passes the agent's 404 on with its code", async () => {
    await stub((_request, response) =>
      json(response, 404, {
        error: 'no running managed container has the id x',
        code: 'DSO_AGENT_CONTAINER_UNKNOWN',
      }),
    );
    await expect(
      createAgentClient({ socketPath }).rotate({ containerId: 'x' }),
    ).rejects.toMatchObject({
      code: 'DSO_AGENT_CONTAINER_UNKNOWN',
      message: 'no running managed container has the id x',
    });
  });

  it('rejects an answer without the counts', async () => {
    await stub((_request, response) => json(response, 200, { containers: 1 }));
    await expect(createAgentClient({ socketPath }).rotate()).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_RESPONSE',
    });
  });
});

describe('createAgentClient: resolve', () => {
  const CANARY = 'canary-agent-client-3a9f';
  const encoded = Buffer.from(CANARY).toString('base64');

  it('POSTs the references and returns each value as bytes, in order', async () => {
    const bodies: string[] = [];
    const requests = await stub(async (request, response) => {
      bodies.push(await bodyOf(request));
      json(response, 200, {
        values: [
          { reference: 'dso://app/a', provider: 'local', version: '1', value: encoded },
          { reference: 'dso://vault:b', provider: 'vault', version: '9', value: '' },
        ],
      });
    });
    const values = await createAgentClient({ socketPath }).resolve([
      'dso://app/a',
      'dso://vault:b',
    ]);
    expect(requests).toEqual([{ method: 'POST', url: '/v1/resolve' }]);
    expect(JSON.parse(bodies[0] as string)).toEqual({
      references: ['dso://app/a', 'dso://vault:b'],
    });
    expect(
      values.map(({ value, ...rest }) => ({ ...rest, value: value.toString('utf8') })),
    ).toEqual([
      { reference: 'dso://app/a', provider: 'local', version: '1', value: CANARY },
      { reference: 'dso://vault:b', provider: 'vault', version: '9', value: '' },
    ]);
  });

  it('calls nothing for no reference, and refuses more than the agent takes', async () => {
    const requests = await stub((_request, response) => json(response, 200, { values: [] }));
    const client = createAgentClient({ socketPath });
    expect(await client.resolve([])).toEqual([]);
    await expect(
      client.resolve(Array.from({ length: MAX_RESOLVE_REFERENCES + 1 }, () => 'dso://a')),
    ).rejects.toMatchObject({ code: 'DSO_CLI_RESOLVE_TOO_MANY' });
    expect(requests).toEqual([]);
  });

  it("passes the agent's 403 on with its code and fix", async () => {
    const error =
      'api.resolveAllow allows no pattern for dso://app/a: add a pattern to api.resolveAllow in dso.yaml (e.g. "dso://app/a") and restart the agent';
    await stub((_request, response) =>
      json(response, 403, { error, code: 'DSO_AGENT_RESOLVE_DENIED' }),
    );
    await expect(createAgentClient({ socketPath }).resolve(['dso://app/a'])).rejects.toMatchObject({
      code: 'DSO_AGENT_RESOLVE_DENIED',
      message: error,
    });
  });

  it('never puts a value of a malformed answer into the error, its cause included', async () => {
    const answers = [
      // Not JSON: a JSON syntax error would quote the text.
      `{"values":[${CANARY}]}`,
      // Another reference than asked.
      JSON.stringify({
        values: [{ reference: 'dso://other', provider: 'l', version: '1', value: encoded }],
      }),
      // A value that is not base64.
      JSON.stringify({
        values: [{ reference: 'dso://app/a', provider: 'l', version: '1', value: `${CANARY}!` }],
      }),
      // One value short.
      JSON.stringify({ values: [] }),
    ];
    let next = 0;
    await stub((_request, response) => {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(answers[next++]);
    });
    const client = createAgentClient({ socketPath });
    for (let i = 0; i < answers.length; i += 1) {
      const error = await client.resolve(['dso://app/a']).catch((caught: unknown) => caught);
      expect(error).toMatchObject({ code: 'DSO_CLI_AGENT_RESPONSE' });
      const seen =
        JSON.stringify(error, Object.getOwnPropertyNames(error as object)) +
        String((error as Error).cause);
      // V8 quotes a few characters around a JSON syntax error: look for the start of the value.
      expect(seen).not.toContain(CANARY.slice(0, 6));
      expect(seen).not.toContain(encoded.slice(0, 8));
    }
  });

  it('waits longer than other calls: providers may take their time', async () => {
    await stub((request, response) => {
      setTimeout(() => {
        void bodyOf(request);
        json(response, 200, {
          values: [{ reference: 'dso://app/a', provider: 'local', version: '1', value: encoded }],
        });
      }, 300);
    });
    const values = await createAgentClient({ socketPath, timeoutMs: 100 }).resolve(['dso://app/a']);
    expect(values).toHaveLength(1);
  });
});

describe('findAgentSocket', () => {
  /** A dso.yaml in the test's DSO_HOME, as the agent's operator writes it (0600). */
  async function dsoYaml(text: string): Promise<void> {
    await writeFile(join(dir, 'dso.yaml'), text);
    await chmod(join(dir, 'dso.yaml'), 0o600);
  }
  const nothing = () => false;

  it("takes api.socket from the agent's dso.yaml, DSO_API_SOCKET overriding it", async () => {
    await dsoYaml(`api:\n  socket: ${socketPath}\n`);
    expect(await findAgentSocket({ DSO_HOME: dir })).toEqual({
      path: socketPath,
      source: 'dso.yaml',
      configFile: join(dir, 'dso.yaml'),
    });
    expect(
      await findAgentSocket({ DSO_HOME: dir, DSO_API_SOCKET: '/tmp/other.sock' }),
    ).toMatchObject({ path: '/tmp/other.sock', source: 'DSO_API_SOCKET' });
    // DSO_CONFIG names the file the agent reads, wherever it is.
    expect(
      await findAgentSocket({ DSO_HOME: '/nonexistent', DSO_CONFIG: join(dir, 'dso.yaml') }),
    ).toMatchObject({ path: socketPath, source: 'dso.yaml' });
  });

  it("finds a non-root agent's socket in DSO_HOME when the default one is not there", async () => {
    const own = join(dir, 'agent.sock');
    const exists = (path: string) => path === own;
    expect(await findAgentSocket({ DSO_HOME: dir }, { uid: 1000, exists })).toEqual({
      path: own,
      source: 'DSO_HOME',
    });
    // Root's agent listens on the default path; so does a non-root one with neither socket.
    expect(await findAgentSocket({ DSO_HOME: dir }, { uid: 0, exists })).toMatchObject({
      path: '/run/dso/agent.sock',
      source: 'default',
    });
    expect(await findAgentSocket({ DSO_HOME: dir }, { uid: 1000, exists: nothing })).toMatchObject({
      path: '/run/dso/agent.sock',
      source: 'default',
    });
  });

  it('refuses a DSO_CONFIG that names no file, as the agent does, even with DSO_API_SOCKET set', async () => {
    const missing = join(dir, 'nope.yaml');
    for (const env of [
      { DSO_HOME: dir, DSO_CONFIG: missing },
      { DSO_HOME: dir, DSO_CONFIG: missing, DSO_API_SOCKET: socketPath },
    ]) {
      await expect(findAgentSocket(env)).rejects.toMatchObject({
        code: 'DSO_CONFIG_NOT_FOUND',
        message: expect.stringContaining(`${missing} (from DSO_CONFIG) does not exist`),
      });
    }
    // The configuration file read is reported with the socket DSO_API_SOCKET names.
    await dsoYaml('api: {}\n');
    expect(await findAgentSocket({ DSO_HOME: dir, DSO_API_SOCKET: '/tmp/other.sock' })).toEqual({
      path: '/tmp/other.sock',
      source: 'DSO_API_SOCKET',
      configFile: join(dir, 'dso.yaml'),
    });
  });

  it("refuses a broken dso.yaml with the config's own code and fix (the agent would not start with it)", async () => {
    await dsoYaml('api:\n  socket: relative/agent.sock\n');
    await expect(findAgentSocket({ DSO_HOME: dir })).rejects.toMatchObject({
      code: 'DSO_CONFIG_INVALID',
      message: expect.stringContaining('api.socket'),
    });
  });

  it('talks to the agent on the socket dso.yaml names, found at the first call', async () => {
    await dsoYaml(`api: { socket: ${socketPath} }\n`);
    await stub((_request, response) => json(response, 200, STATUS));
    const agent = createAgentClient({ socketPath: { env: { DSO_HOME: dir } } });
    expect(await agent.status()).toEqual(STATUS);
  });
});

describe('consumerLabel', () => {
  it('shows a container by its short id and a volume mount by its volume', () => {
    expect(consumerLabel('c'.repeat(64))).toBe('c'.repeat(12));
    expect(consumerLabel(`volume:app-secrets:${'a'.repeat(64)}`)).toBe('volume app-secrets');
    expect(consumerLabel(`volume:${'f'.repeat(64)}:${'a'.repeat(64)}`)).toBe(
      `volume ${'f'.repeat(12)}`,
    );
  });
});
