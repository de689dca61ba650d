import { randomUUID } from 'node:crypto';
import { createServer as createHttpServer, type RequestListener } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { compareApiVersions } from './api-version.js';
import { createDockerRuntime, type DockerRuntime } from './docker-runtime.js';
import { isDockerRuntimeError } from './errors.js';
import type { RuntimeEvent } from './events.js';
import {
  createContainerPool,
  ensureTestImage,
  TEST_DOCKER_HOST,
  TEST_LABEL,
  testEngineFacts,
} from './test-support/engine.js';

const pool = createContainerPool();
let runtime: DockerRuntime;

beforeAll(async () => {
  await ensureTestImage();
  runtime = await createDockerRuntime();
});
afterEach(async () => {
  await pool.removeAll();
});
afterAll(async () => {
  await pool.removeAll();
  await runtime?.close();
});

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    return isDockerRuntimeError(error) ? error.code : `not a DockerRuntimeError: ${error}`;
  }
  return 'resolved';
}

/** An HTTP server on a fresh unix socket under the OS temp dir: a stand-in engine. */
async function fakeEngine(handler: RequestListener) {
  const socketPath = join(tmpdir(), `dso-fake-engine-${randomUUID()}.sock`);
  const server = createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    host: `unix://${socketPath}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function versionAnswer(apiVersion: string): RequestListener {
  return (request, response) => {
    if (request.url?.endsWith('/_ping')) return void response.end('OK');
    if (request.url?.endsWith('/version')) {
      response.setHeader('content-type', 'application/json');
      return void response.end(
        JSON.stringify({ Version: 'fake-19.03', ApiVersion: apiVersion, MinAPIVersion: '1.12' }),
      );
    }
    response.statusCode = 404;
    response.end('{"message":"not here"}');
  };
}

describe('createDockerRuntime', () => {
  it('pings the engine, tells which it is, and negotiates API 1.41 or later', async () => {
    const { kind } = await testEngineFacts();
    expect(runtime.engineKind).toBe(kind);
    expect(compareApiVersions(runtime.apiVersion, '1.41')).toBeGreaterThanOrEqual(0);
    // Docker 20.10+, or Podman 4.3+ (its compatible service says API 1.41).
    const [major = 0, minor = 0] = runtime.engineVersion.split('.').map(Number);
    expect(major * 100 + minor).toBeGreaterThanOrEqual(kind === 'docker' ? 2010 : 403);
    expect(runtime.host).toBe(TEST_DOCKER_HOST);
  });

  it('rejects quickly with DSO_DOCKER_UNREACHABLE naming the socket and the fix', async () => {
    const socketPath = join(tmpdir(), `dso-missing-${randomUUID()}.sock`);
    const started = performance.now();
    try {
      await createDockerRuntime({ host: `unix://${socketPath}` });
      expect.unreachable();
    } catch (error) {
      expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_UNREACHABLE');
      const message = (error as Error).message;
      expect(message).toContain(socketPath);
      expect(message).toContain('tools/services.sh up');
      expect(message).toContain('DOCKER_HOST');
    }
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it('gives up on a socket that never answers after connectTimeoutMs', async () => {
    const socketPath = join(tmpdir(), `dso-silent-${randomUUID()}.sock`);
    const sockets: Socket[] = [];
    const server = createNetServer((socket) => sockets.push(socket));
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const started = performance.now();
      const error = await createDockerRuntime({
        host: `unix://${socketPath}`,
        connectTimeoutMs: 300,
      }).catch((caught: unknown) => caught);
      const elapsed = performance.now() - started;
      expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_UNREACHABLE');
      expect((error as Error).message).toContain('did not answer within 300 ms');
      expect(elapsed).toBeGreaterThanOrEqual(290);
      expect(elapsed).toBeLessThan(3_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it('reads DOCKER_HOST from the environment it is given', async () => {
    const socketPath = join(tmpdir(), `dso-env-${randomUUID()}.sock`);
    const error = await createDockerRuntime({
      env: { DOCKER_HOST: `unix://${socketPath}` },
    }).catch((caught: unknown) => caught);
    expect((error as Error).message).toContain(socketPath);
  });

  it('throws DSO_DOCKER_API_TOO_OLD for an engine below API 1.41', async () => {
    const engine = await fakeEngine(versionAnswer('1.40'));
    try {
      const error = await createDockerRuntime({ host: engine.host }).catch((caught) => caught);
      expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_API_TOO_OLD');
      expect((error as Error).message).toContain('fake-19.03');
    } finally {
      await engine.close();
    }
  });

  it('rejects with DSO_DOCKER_ABORTED when its signal is already aborted', async () => {
    expect(await codeOf(createDockerRuntime({ signal: AbortSignal.abort() }))).toBe(
      'DSO_DOCKER_ABORTED',
    );
  });
});

describe('events', () => {
  it('delivers container.started for a new labelled container', async () => {
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(), 20_000);
    // since: replay from a second ago, so the subscription cannot miss the start below.
    const since = Math.floor(Date.now() / 1000) - 1;
    const seen: RuntimeEvent[] = [];
    const iterate = (async () => {
      for await (const event of runtime.events({ since, signal: controller.signal })) {
        seen.push(event);
        if (event.type === 'container.started' && event.labels[TEST_LABEL] === pool.runId) {
          return event;
        }
      }
      return undefined;
    })();
    const container = await pool.create({ labels: { 'dso.enable': 'true' } });
    const started = await iterate;
    clearTimeout(timeout);
    expect(started).toMatchObject({
      type: 'container.started',
      id: container.id,
      name: container.name,
      labels: { [TEST_LABEL]: pool.runId, 'dso.enable': 'true' },
    });
    expect(started?.timeNano).toMatch(/^\d{19}$/);
    expect(Math.abs((started?.at ?? 0) - Date.now())).toBeLessThan(60_000);
    const created = seen.find(
      (event) => event.type === 'container.created' && event.id === container.id,
    );
    expect(created).toBeDefined();
  });

  it('ends without an error when its signal aborts mid-stream', async () => {
    const controller = new AbortController();
    const since = Math.floor(Date.now() / 1000) - 1;
    const iterate = (async () => {
      let count = 0;
      for await (const event of runtime.events({ since, signal: controller.signal })) {
        count += 1;
        // Abort from inside, after a real event: the stream is connected and in use.
        if (event.type !== 'resync' && event.labels[TEST_LABEL] === pool.runId) controller.abort();
      }
      return count;
    })();
    await pool.create();
    expect(await iterate).toBeGreaterThan(0);
  });

  it('fails with DSO_DOCKER_RECONNECT_FAILED (cause: EVENTS_LOST) when the engine ends the stream and no reconnect is allowed', async () => {
    const line =
      '{"Type":"container","Action":"start","Actor":{"ID":"abc","Attributes":{"name":"n","image":"i"}},"time":1715000000,"timeNano":1715000000000000001}\n';
    const engine = await fakeEngine((request, response) => {
      if (request.url?.includes('/events')) {
        response.setHeader('content-type', 'application/json');
        response.write(line);
        setTimeout(() => response.end(), 50);
        return;
      }
      versionAnswer('1.41')(request, response);
    });
    const fake = await createDockerRuntime({ host: engine.host });
    try {
      const seen: string[] = [];
      let code = 'completed silently';
      let causeCode: unknown;
      try {
        for await (const event of fake.events({
          signal: new AbortController().signal,
          reconnect: { maxAttempts: 0 },
        })) {
          if (event.type !== 'resync') seen.push(event.id);
        }
      } catch (error) {
        code = isDockerRuntimeError(error) ? error.code : String(error);
        causeCode = (error as { cause?: { code?: unknown } }).cause?.code;
      }
      expect(seen).toEqual(['abc']);
      expect(code).toBe('DSO_DOCKER_RECONNECT_FAILED');
      expect(causeCode).toBe('DSO_DOCKER_EVENTS_LOST');
    } finally {
      await fake.close();
      await engine.close();
    }
  });

  it('ends with DSO_DOCKER_CLOSED when the runtime closes under it, and refuses later calls', async () => {
    const own = await createDockerRuntime();
    const since = Math.floor(Date.now() / 1000) - 1;
    const outcome = codeOf(
      (async () => {
        for await (const event of own.events({ since, signal: new AbortController().signal })) {
          if (event.type !== 'resync' && event.labels[TEST_LABEL] === pool.runId) await own.close();
        }
      })(),
    );
    await pool.create();
    expect(await outcome).toBe('DSO_DOCKER_CLOSED');
    expect(await codeOf(own.listContainers({ label: 'x' }))).toBe('DSO_DOCKER_CLOSED');
    await own.close();
  });
});

describe('listContainers', () => {
  it('lists running containers with the label, and stopped ones with all', async () => {
    const label = `dso.enable.${pool.runId}`;
    const running = await pool.create({ labels: { [label]: 'true' } });
    const stopped = await pool.create({ labels: { [label]: 'true' }, start: false });
    await pool.create({ labels: { [label]: 'false' } });
    await pool.create();

    const listed = await runtime.listContainers({ label: `${label}=true` });
    expect(listed).toEqual([
      expect.objectContaining({
        id: running.id,
        name: running.name,
        state: 'running',
        labels: expect.objectContaining({ [label]: 'true' }),
      }),
    ]);
    const all = await runtime.listContainers({ label: `${label}=true`, all: true });
    expect(all.map((container) => container.id).sort()).toEqual([running.id, stopped.id].sort());
  });

  it('tells whether each bind is read-only, and when the container was created', async () => {
    const label = `dso.binds.${pool.runId}`;
    const createdFrom = Math.floor(Date.now() / 1000) * 1000;
    const container = await pool.create({
      labels: { [label]: 'true' },
      mounts: [
        { Type: 'bind', Source: tmpdir(), Target: '/ro', ReadOnly: true },
        { Type: 'bind', Source: tmpdir(), Target: '/rw', ReadOnly: false },
      ],
    });
    const [listed] = await runtime.listContainers({ label: `${label}=true` });
    expect(listed?.id).toBe(container.id);
    expect(listed?.binds?.sort((a, b) => a.target.localeCompare(b.target))).toEqual([
      { source: tmpdir(), target: '/ro', readOnly: true },
      { source: tmpdir(), target: '/rw', readOnly: false },
    ]);
    expect(listed?.createdAt).toBeGreaterThanOrEqual(createdFrom);
    expect(listed?.createdAt).toBeLessThanOrEqual(Date.now());
  });
});

describe('inspectContainer', () => {
  it('reports user, running state and tmpfs destinations from both tmpfs forms', async () => {
    const container = await pool.create({
      user: '1000:1000',
      tmpfs: { '/run/secrets': 'size=1m' },
      mounts: [{ Type: 'tmpfs', Target: '/run/other', Source: '' }],
    });
    const details = await runtime.inspectContainer(container.name);
    expect(details).toMatchObject({
      id: container.id,
      name: container.name,
      running: true,
      state: 'running',
      user: '1000:1000',
    });
    expect(details.tmpfs.sort()).toEqual(['/run/other', '/run/secrets']);
  });

  it('lists the environment variables holding dso:// or dsofile:// text as envReferences, and no other value', async () => {
    const canary = `canary-env-${randomUUID()}`;
    const container = await pool.create({
      env: [
        'API_TOKEN=dso://app/api/token',
        'KEY_FILE=dsofile://vault:app/key#pem',
        `PLAIN=${canary}`,
        'NEAR=dsofile:/app/x',
      ],
    });
    const details = await runtime.inspectContainer(container.id);
    // In Config.Env's order, which Podman does not keep as given.
    const byName = (a: { name: string }, b: { name: string }) => a.name.localeCompare(b.name);
    expect([...(details.envReferences ?? [])].sort(byName)).toEqual([
      { name: 'API_TOKEN', value: 'dso://app/api/token' },
      { name: 'KEY_FILE', value: 'dsofile://vault:app/key#pem' },
    ]);
    expect(JSON.stringify(details)).not.toContain(canary);
  });

  it("reports '' for a container running as the image's default user", async () => {
    const container = await pool.create();
    expect((await runtime.inspectContainer(container.id)).user).toBe('');
  });

  it('throws DSO_DOCKER_CONTAINER_NOT_FOUND for a missing container', async () => {
    expect(await codeOf(runtime.inspectContainer(`dso-test-${randomUUID()}`))).toBe(
      'DSO_DOCKER_CONTAINER_NOT_FOUND',
    );
  });
});
