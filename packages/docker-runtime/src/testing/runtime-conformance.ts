import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DockerRuntime } from '../docker-runtime.js';
import { isDockerRuntimeError } from '../errors.js';
import type { ContainerEvent } from '../events.js';

/** An engine the suite can drive: the runtime under test, and a way to make containers. */
export interface RuntimeUnderTest {
  runtime: DockerRuntime;
  /**
   * Creates and starts a container with these labels, running as root with a tmpfs at each
   * of `tmpfs`, and resolves with its full id.
   */
  run(options: { labels: Record<string, string>; tmpfs: string[] }): Promise<string>;
  /** Stops a container (as `docker stop`). */
  stop(id: string): Promise<void>;
  /** Removes a container (as `docker rm -f`). */
  remove(id: string): Promise<void>;
  /** Removes whatever the suite created and closes the runtime. */
  cleanup(): Promise<void>;
}

/** The code a promise rejects with, `resolved` when it does not, `other` for another error. */
async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'resolved';
  } catch (error) {
    return isDockerRuntimeError(error) ? error.code : 'other';
  }
}

/**
 * The runtime contract on the operations the agent uses, run unchanged against the real
 * engine (an integration test) and against `createFakeRuntime` (a unit test), so the fake
 * the agent's tests use cannot drift from what the engine does: label filters, inspect's
 * facts, the events of a start, a stop and a removal (in that order, with labels), writes into
 * a tmpfs and their refusals, signals, restarts (a new run, its events; a Swarm task refused) and stops.
 *
 * @example
 * runRuntimeConformance('fake runtime', async () => { const fake = createFakeRuntime(); … });
 */
export function runRuntimeConformance(name: string, setup: () => Promise<RuntimeUnderTest>): void {
  describe(`${name}: runtime conformance`, () => {
    let engine: RuntimeUnderTest;
    const label = `dso.conformance=${Math.random().toString(36).slice(2)}`;
    const labels = {
      'dso.enable': 'true',
      [label.split('=')[0] as string]: label.split('=')[1] as string,
    };

    beforeAll(async () => {
      engine = await setup();
    });
    afterAll(async () => {
      await engine?.cleanup();
    });

    /**
     * Opens an events stream, runs `action`, and collects the events that pass `keep` until
     * `until` holds (or 20 s pass).
     */
    async function eventsDuring(
      keep: (event: ContainerEvent) => boolean,
      action: () => Promise<void>,
      until: (events: ContainerEvent[]) => boolean,
    ): Promise<ContainerEvent[]> {
      const controller = new AbortController();
      const seen: ContainerEvent[] = [];
      const stream = engine.runtime.events({ signal: controller.signal, since: Date.now() });
      const reading = (async () => {
        for await (const event of stream) {
          if (event.type === 'resync' || !keep(event)) continue;
          seen.push(event);
          if (until(seen)) break;
        }
      })();
      const deadline = setTimeout(() => controller.abort(), 20_000);
      try {
        await action();
        await reading;
      } finally {
        clearTimeout(deadline);
        controller.abort();
      }
      return seen;
    }

    it('lists running containers by label; stopped ones only with `all`', async () => {
      const up = await engine.run({ labels, tmpfs: ['/run/secrets'] });
      const down = await engine.run({ labels, tmpfs: ['/run/secrets'] });
      await engine.stop(down);
      const running = await engine.runtime.listContainers({ label });
      expect(running.map((c) => c.id)).toEqual([up]);
      expect(running[0]?.labels).toMatchObject(labels);
      const all = await engine.runtime.listContainers({ label, all: true });
      expect(all.map((c) => c.id).sort()).toEqual([up, down].sort());
      expect(await engine.runtime.listContainers({ label: `${label}-none` })).toEqual([]);
    });

    it('inspects a container: running, labels, start time, tmpfs; a missing one by its code', async () => {
      const id = await engine.run({ labels, tmpfs: ['/run/secrets'] });
      const details = await engine.runtime.inspectContainer(id);
      expect(details).toMatchObject({ id, running: true, state: 'running', user: '' });
      expect(details.labels).toMatchObject(labels);
      expect(details.tmpfs).toContain('/run/secrets');
      expect(Number.isNaN(Date.parse(details.startedAt))).toBe(false);
      await engine.stop(id);
      expect((await engine.runtime.inspectContainer(id)).running).toBe(false);
      expect(await codeOf(engine.runtime.inspectContainer('0'.repeat(64)))).toBe(
        'DSO_DOCKER_CONTAINER_NOT_FOUND',
      );
    });

    it('reports a start, a stop and a removal as events, in order, with labels', async () => {
      const only = { ...labels, 'dso.conformance.case': 'lifecycle' };
      const lifecycle = ['container.started', 'container.died', 'container.destroyed'];
      const events = await eventsDuring(
        (event) =>
          event.labels['dso.conformance.case'] === 'lifecycle' && lifecycle.includes(event.type),
        async () => {
          const id = await engine.run({ labels: only, tmpfs: ['/run/secrets'] });
          await engine.stop(id);
          await engine.remove(id);
        },
        (seen) => seen.some((event) => event.type === 'container.destroyed'),
      );
      expect(events.map((event) => event.type)).toEqual(lifecycle);
      expect(new Set(events.map((event) => event.id)).size).toBe(1);
      for (const event of events) expect(event.labels).toMatchObject(only);
    });

    it('writes files into a tmpfs, and refuses a stopped container or a target that is no tmpfs', async () => {
      const id = await engine.run({ labels, tmpfs: ['/run/secrets'] });
      const file = () => [{ name: 'db', content: Buffer.from('conformance-value') }];
      const result = await engine.runtime.writeFiles(id, { target: '/run/secrets', files: file() });
      expect(result.files).toBe(1);
      expect(await codeOf(engine.runtime.writeFiles(id, { target: '/etc', files: file() }))).toBe(
        'DSO_DOCKER_TARGET_NOT_TMPFS',
      );
      await engine.stop(id);
      expect(
        await codeOf(engine.runtime.writeFiles(id, { target: '/run/secrets', files: file() })),
      ).toBe('DSO_DOCKER_CONTAINER_NOT_RUNNING');
    });

    it('signals a running container, and refuses a missing one by its code', async () => {
      const id = await engine.run({ labels, tmpfs: ['/run/secrets'] });
      expect(await codeOf(engine.runtime.sendSignal(id, 'SIGHUP'))).toBe('resolved');
      expect(await codeOf(engine.runtime.sendSignal('0'.repeat(64), 'SIGHUP'))).toBe(
        'DSO_DOCKER_CONTAINER_NOT_FOUND',
      );
    });

    it('restarts a container into a new run: a new start time and a start event', async () => {
      const id = await engine.run({ labels, tmpfs: ['/run/secrets'] });
      const before = (await engine.runtime.inspectContainer(id)).startedAt;
      const events = await eventsDuring(
        (event) => event.id === id,
        () => engine.runtime.restartContainer(id, { stopTimeoutMs: 1_000 }),
        (seen) => seen.some((event) => event.type === 'container.started'),
      );
      expect(events.map((event) => event.type)).toContain('container.started');
      const after = await engine.runtime.inspectContainer(id);
      expect(after.running).toBe(true);
      expect(after.startedAt).not.toBe(before);
    });

    it('refuses to restart a Swarm task container, which keeps running', async () => {
      const id = await engine.run({
        labels: { ...labels, 'com.docker.swarm.task.id': 'conformance-task' },
        tmpfs: ['/run/secrets'],
      });
      const before = (await engine.runtime.inspectContainer(id)).startedAt;
      expect(await codeOf(engine.runtime.restartContainer(id, { stopTimeoutMs: 0 }))).toBe(
        'DSO_DOCKER_RESTART_REFUSED',
      );
      const after = await engine.runtime.inspectContainer(id);
      expect(after.running).toBe(true);
      expect(after.startedAt).toBe(before);
    });

    it('stops a container: a die event, not running after, and a second stop is no error', async () => {
      const id = await engine.run({ labels, tmpfs: ['/run/secrets'] });
      const events = await eventsDuring(
        (event) => event.id === id,
        () => engine.runtime.stopContainer(id, { stopTimeoutMs: 1_000 }),
        (seen) => seen.some((event) => event.type === 'container.died'),
      );
      expect(events.map((event) => event.type)).toContain('container.died');
      expect((await engine.runtime.inspectContainer(id)).running).toBe(false);
      expect(await codeOf(engine.runtime.stopContainer(id, { stopTimeoutMs: 0 }))).toBe('resolved');
      expect(await codeOf(engine.runtime.stopContainer('0'.repeat(64)))).toBe(
        'DSO_DOCKER_CONTAINER_NOT_FOUND',
      );
    });
  });
}
