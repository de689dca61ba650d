/**
 * The events stream against the real engine: broken connections (through a socket proxy), a
 * gap longer than the engine's 256-event buffer, and a restart of a private engine while
 * events flow. Nothing may be missed without a resync, and nothing delivered twice.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import type { EventsOptions } from './docker-runtime.js';
import { createDockerRuntime, type DockerRuntime } from './docker-runtime.js';
import type { RuntimeEvent } from './events.js';
import {
  createContainerPool,
  docker,
  ensureTestImage,
  TEST_ENGINE_SOCKET,
  TEST_IMAGE,
  TEST_LABEL,
  testEngineFacts,
  waitFor,
} from './test-support/engine.js';
import { type PrivateEngine, startPrivateEngine } from './test-support/private-engine.js';
import { startPrivatePodman } from './test-support/private-podman.js';
import { type SocketProxy, startSocketProxy } from './test-support/socket-proxy.js';

const pool = createContainerPool();
const fastReconnect = { baseDelayMs: 20, maxDelayMs: 200, maxAttempts: 1_000 };

beforeAll(ensureTestImage);
afterAll(() => pool.removeAll());

/** Consumes a runtime's events in the background into `items` until stopped. */
function collect(runtime: DockerRuntime, options: Omit<EventsOptions, 'signal'> = {}) {
  const controller = new AbortController();
  const items: RuntimeEvent[] = [];
  let failure: unknown;
  let connectedNow: () => void = () => undefined;
  // The engine streams only what happens after it took the subscription: a test that makes
  // a container right away, with no since, waits for this first (else a slow connect misses it).
  const connected = new Promise<void>((resolve) => {
    connectedNow = resolve;
  });
  const onConnected = () => {
    connectedNow();
    options.onConnected?.();
  };
  const done = (async () => {
    try {
      for await (const item of runtime.events({
        ...options,
        onConnected,
        signal: controller.signal,
      })) {
        items.push(item);
      }
    } catch (error) {
      failure = error;
    }
  })();
  return {
    items,
    /** Settles once the engine took the subscription (the first connect). */
    connected,
    /** This run's container events (other tests' containers share the engine). */
    ours: (runId: string) =>
      items.filter((item) => item.type === 'resync' || item.labels[TEST_LABEL] === runId),
    resyncs: () => items.filter((item) => item.type === 'resync'),
    async until(what: string, check: () => boolean, timeoutMs = 20_000) {
      await waitFor(
        what,
        () => {
          if (failure !== undefined) throw failure;
          return check() ? true : undefined;
        },
        timeoutMs,
      );
    },
    /** Waits for the stream to end on its own; rejects with what ended it. */
    async finished() {
      await done;
      if (failure !== undefined) throw failure;
    },
    async stop() {
      controller.abort();
      await done;
      if (failure !== undefined) throw failure;
    },
  };
}

const keyOf = (item: RuntimeEvent) =>
  item.type === 'resync' ? 'resync' : `${item.type}:${item.id}`;

/**
 * Events delivered twice: the same cursor (time, container, action). Not the same type and id:
 * other tests on the shared engine start one container twice, or health-check it every second.
 */
function duplicates(items: RuntimeEvent[]): string[] {
  const seen = new Set<string>();
  const repeated: string[] = [];
  for (const item of items) {
    if (item.type === 'resync') continue;
    const key = item.cursor;
    if (seen.has(key)) repeated.push(key);
    seen.add(key);
  }
  return repeated;
}

describe('events across broken connections', () => {
  let proxy: SocketProxy;
  let runtime: DockerRuntime;

  beforeAll(async () => {
    proxy = await startSocketProxy(TEST_ENGINE_SOCKET);
    runtime = await createDockerRuntime({ host: proxy.host });
  });
  afterAll(async () => {
    await runtime.close();
    await proxy.close();
  });
  afterEach(() => proxy.unblock());

  it('replays what happened while the connection was down, once, with no resync', async () => {
    const stream = collect(runtime, { reconnect: fastReconnect });
    await stream.connected;
    const first = await pool.create({ start: false });
    await stream.until('the first create', () =>
      stream.items.some((item) => item.type === 'container.created' && item.id === first.id),
    );

    proxy.block();
    proxy.cut();
    // While the agent is cut off, the engine goes on.
    const during = await pool.create();
    await docker.getContainer(during.id).kill();
    const accepted = proxy.accepted;
    await waitFor('a refused reconnect', () => (proxy.accepted > accepted ? true : undefined));
    proxy.unblock();

    await stream.until('the gap to be replayed', () =>
      stream.items.some((item) => item.type === 'container.died' && item.id === during.id),
    );
    // Events after the reconnect flow as usual.
    const after = await pool.create({ start: false });
    await stream.until('the create after', () =>
      stream.items.some((item) => item.type === 'container.created' && item.id === after.id),
    );
    await stream.stop();

    const ours = stream.ours(pool.runId).map(keyOf);
    expect(ours).toEqual([
      `container.created:${first.id}`,
      `container.created:${during.id}`,
      `container.started:${during.id}`,
      `container.died:${during.id}`,
      `container.created:${after.id}`,
    ]);
    expect(duplicates(stream.items)).toEqual([]);
    expect(stream.resyncs()).toEqual([]);
  });

  it('reports a resync when the gap outgrew the engine buffer of 256 events (Docker), replays it all (Podman)', async () => {
    const { kind } = await testEngineFacts();
    const stream = collect(runtime, { reconnect: fastReconnect });
    await stream.connected;
    const first = await pool.create({ start: false });
    await stream.until('the first create', () =>
      stream.items.some((item) => item.type === 'container.created' && item.id === first.id),
    );

    proxy.block();
    proxy.cut();
    // 300 events of another type push the last event seen out of the engine's buffer: image
    // tag and untag are cheap engine events that fill the same 256-entry ring.
    const repo = `dso-test/gap-${randomUUID().slice(0, 8)}`;
    const image = docker.getImage(TEST_IMAGE);
    for (let i = 0; i < 150; i += 1) {
      await image.tag({ repo, tag: 'x' });
      await docker.getImage(`${repo}:x`).remove({ noprune: true });
    }
    // And one container event after the flood, which the replay can still show.
    const late = await pool.create({ start: false });
    proxy.unblock();

    await stream.until('the late create after a resync', () =>
      stream.items.some((item) => item.type === 'container.created' && item.id === late.id),
    );
    await stream.stop();
    const ours = stream.ours(pool.runId).map(keyOf);
    if (kind === 'podman') {
      // Podman replays from its whole events log file, not a 256-event ring: no gap to report.
      expect(ours).toEqual([`container.created:${first.id}`, `container.created:${late.id}`]);
      expect(stream.resyncs()).toEqual([]);
      return;
    }
    expect(ours).toEqual([
      `container.created:${first.id}`,
      'resync',
      `container.created:${late.id}`,
    ]);
    const resync = stream.resyncs()[0];
    expect(resync).toMatchObject({ type: 'resync', reason: 'gap' });
  });

  it('resumes from a cursor given by a new owner, without repeating what it handled', async () => {
    const one = await pool.create({ start: false });
    const two = await pool.create({ start: false });
    // What an agent handled before it stopped: up to `one`'s creation.
    const history = collect(runtime, { since: Math.floor(Date.now() / 1000) - 5 });
    await history.until('both creates', () =>
      [one.id, two.id].every((id) =>
        history.items.some((item) => item.type === 'container.created' && item.id === id),
      ),
    );
    await history.stop();
    const handled = history.items.find(
      (item) => item.type === 'container.created' && item.id === one.id,
    );
    if (handled === undefined || handled.type === 'resync') throw new Error('unreachable');

    const resumed = collect(runtime, { resumeFrom: handled.cursor });
    await resumed.until('the create not yet handled', () =>
      resumed.items.some((item) => item.type === 'container.created' && item.id === two.id),
    );
    await resumed.stop();
    expect(resumed.ours(pool.runId).map(keyOf)).toEqual([`container.created:${two.id}`]);
  });

  it('fails with DSO_DOCKER_RECONNECT_FAILED after the configured failed reconnects', async () => {
    const stream = collect(runtime, {
      reconnect: { maxAttempts: 3, baseDelayMs: 10, maxDelayMs: 20 },
    });
    await stream.connected;
    const marker = await pool.create({ start: false });
    await stream.until('an event', () =>
      stream.items.some((item) => item.type !== 'resync' && item.id === marker.id),
    );
    proxy.block();
    proxy.cut();
    await expect(stream.finished()).rejects.toMatchObject({
      code: 'DSO_DOCKER_RECONNECT_FAILED',
      message: expect.stringMatching(/after 3 consecutive reconnects/),
    });
  });
});

/** A private engine of the kind under test that can be restarted (the shared one never is). */
interface RestartableEngine {
  kind: 'docker' | 'podman';
  host: string;
  docker: PrivateEngine['docker'];
  restart(): Promise<void>;
  destroy(): Promise<void>;
}

describe('events across an engine restart', () => {
  let engine: RestartableEngine;

  beforeAll(async () => {
    if ((await testEngineFacts()).kind === 'podman') {
      const podman = await startPrivatePodman();
      engine = { kind: 'podman', ...podman, restart: () => podman.restart() };
      return;
    }
    const dockerd = await startPrivateEngine();
    engine = {
      kind: 'docker',
      host: dockerd.host,
      docker: dockerd.docker,
      async restart() {
        await dockerd.stop();
        await dockerd.start();
      },
      destroy: () => dockerd.destroy(),
    };
  }, 120_000);
  afterAll(async () => {
    await engine?.destroy();
  });

  it('misses nothing silently and duplicates nothing while the engine restarts mid-flow', async () => {
    const runtime = await createDockerRuntime({ host: engine.host });
    const runId = randomUUID();
    const stream = collect(runtime, { reconnect: fastReconnect });
    await stream.connected;
    // A first container proves the subscription is live before the flow starts.
    const probe = await engine.docker.createContainer({
      Image: TEST_IMAGE,
      Cmd: ['true'],
      Labels: { [TEST_LABEL]: runId },
      HostConfig: { NetworkMode: 'none' },
    });
    await stream.until('the probe event', () =>
      stream.items.some((item) => item.type !== 'resync' && item.id === probe.id),
    );

    // A producer creates containers without pause, through the restart; creates that fail
    // while the engine is down are simply not counted.
    const created: string[] = [];
    let producing = true;
    const producer = (async () => {
      while (producing) {
        try {
          const container = await engine.docker.createContainer({
            Image: TEST_IMAGE,
            Cmd: ['true'],
            Labels: { [TEST_LABEL]: runId },
            HostConfig: { NetworkMode: 'none' },
          });
          created.push(container.id);
        } catch {
          // The engine is restarting: this create did not happen, and nothing expects it. The
          // next one is tried once the engine answers again.
          await vi.waitFor(() => engine.docker.ping(), { timeout: 60_000, interval: 20 });
        }
      }
    })();
    await waitFor('some creates before the restart', () =>
      created.length >= 5 ? true : undefined,
    );
    await engine.restart();
    const afterRestart = created.length;
    await waitFor('creates after the restart', () =>
      created.length >= afterRestart + 5 ? true : undefined,
    );
    producing = false;
    await producer;
    await stream.until('every create after the restart', () =>
      created
        .slice(afterRestart)
        .every((id) =>
          stream.items.some((item) => item.type === 'container.created' && item.id === id),
        ),
    );
    await stream.stop();
    await runtime.close();

    expect(duplicates(stream.items)).toEqual([]);
    if (engine.kind === 'podman') {
      // Podman's events log file outlives its service: the resume replays the restart's gap
      // from the last event seen, so nothing is missed and no resync is needed.
      expect(stream.resyncs()).toEqual([]);
      const delivered = new Set(
        stream.items.flatMap((item) => (item.type === 'container.created' ? [item.id] : [])),
      );
      expect(created.filter((id) => !delivered.has(id))).toEqual([]);
      expect(created.length).toBeGreaterThanOrEqual(10);
      return;
    }
    // The restart emptied the engine's buffer: the stream must have said so.
    const resyncAt = stream.items.findIndex((item) => item.type === 'resync');
    expect(resyncAt).toBeGreaterThan(-1);
    // Every create is either delivered, or happened before a resync that covers it (the
    // owner lists then); none after the last resync is missing.
    const seenIds = new Set(
      stream.items.flatMap((item) => (item.type === 'container.created' ? [item.id] : [])),
    );
    const missed = created.filter((id) => !seenIds.has(id));
    const lastResync = stream.items.map((item) => item.type).lastIndexOf('resync');
    for (const id of missed) {
      // A missed create must be one that happened before the last resync was reported.
      expect(created.indexOf(id)).toBeLessThan(afterRestart);
    }
    expect(lastResync).toBeGreaterThan(-1);
    expect(created.length).toBeGreaterThanOrEqual(10);
  }, 120_000);
});
