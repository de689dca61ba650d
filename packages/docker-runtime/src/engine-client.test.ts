import { Agent } from 'node:http';
import { join } from 'node:path';
import util from 'node:util';
import Docker from 'dockerode';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { createEngineClient } from './engine-client.js';

// No engine: the socket path does not exist, so every call fails to connect. docker-modem
// formats a request's options synchronously while building it, before the connection fails,
// which is all these tests look at.
const socketPath = join('/nonexistent-dso-test', `engine-${process.pid}.sock`);
const CANARY_KEY = '-----BEGIN PRIVATE KEY-----\nDSO-CANARY-KEY-7f3a\n-----END PRIVATE KEY-----\n';
const CANARY_PASSWORD = 'dso-canary-registry-password-91c2';

/** The string util.inspect made of each request's options during `call`. */
async function formattedRequests(call: () => Promise<unknown>): Promise<string[]> {
  const spy = vi.spyOn(util, 'inspect');
  try {
    await expect(call()).rejects.toThrow();
    return spy.mock.calls.flatMap(([value], index) => {
      const result = spy.mock.results[index];
      const isRequest = typeof value === 'object' && value !== null && 'path' in value;
      return isRequest && result?.type === 'return' ? [String(result.value)] : [];
    });
  } finally {
    spy.mockRestore();
  }
}

function clientOptions(agent: Agent): Docker.DockerOptions {
  // docker-modem takes `agent`; @types/dockerode does not list it (the runtime passes it too).
  const options = {
    socketPath,
    agent,
    version: 'v1.41',
    // docker-modem copies these onto every request, as it does with TLS; plain http here
    // because a TLS request needs a real key before it gets as far as the debug line.
    protocol: 'http' as const,
    key: Buffer.from(CANARY_KEY),
    cert: Buffer.from('cert'),
    ca: Buffer.from('ca'),
  };
  return options;
}

describe('createEngineClient', () => {
  const agents: Agent[] = [];
  const agent = () => {
    const made = new Agent({ keepAlive: true });
    agents.push(made);
    return made;
  };
  afterEach(() => {
    for (const made of agents.splice(0)) made.destroy();
  });

  it('has docker-modem format a request as its method and path only', async () => {
    const docker = createEngineClient(clientOptions(agent()));
    const lines = await formattedRequests(() => docker.getContainer('abc123').inspect());
    expect(lines).toEqual(['GET /v1.41/containers/abc123/json']);
  });

  it('formats no header, key or agent of a request (canary credentials stay out)', async () => {
    const docker = createEngineClient(clientOptions(agent()));
    const lines = await formattedRequests(() => pullWithCredentials(docker));
    expect(lines).toEqual(['POST /v1.41/images/create?fromImage=example.invalid%2Fapp&tag=1']);
  });

  it('covers hijacked exec starts and raw dials, which build their requests the same way', async () => {
    const docker = createEngineClient(clientOptions(agent()));
    const exec = docker.getExec('e1');
    const hijack = await formattedRequests(() =>
      exec.start({ hijack: true, stdin: true, Detach: false, Tty: false }),
    );
    const dial = await formattedRequests(
      () =>
        new Promise((resolve, reject) =>
          docker.modem.dial(
            { path: '/libpod/containers/c1/healthcheck?', method: 'GET', options: {} },
            (error: unknown, data: unknown) => (error ? reject(error) : resolve(data)),
          ),
        ),
    );
    expect([...hijack, ...dial]).toEqual([
      'POST /v1.41/exec/e1/start',
      'GET /v1.41/libpod/containers/c1/healthcheck',
    ]);
  });

  // The control: a stock client formats the agent, the key and the credentials header, so the
  // spy sees them and the tests above can fail.
  it('differs from a stock dockerode, which deep-formats the agent, key and headers', async () => {
    const docker = new Docker(clientOptions(agent()));
    const [line = ''] = await formattedRequests(() => pullWithCredentials(docker));
    expect(line).toContain('Agent');
    expect(line).toContain('key: <Buffer 2d 2d 2d 2d 2d 42 45 47 49 4e');
    expect(line).toContain('X-Registry-Auth');
    expect(line.length).toBeGreaterThan(1_000);
  });
});

function pullWithCredentials(docker: Docker): Promise<unknown> {
  return docker.pull('example.invalid/app:1', {
    authconfig: { username: 'dso', password: CANARY_PASSWORD },
  });
}
