import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { detectEngineDialect } from './engine-dialect.js';
import { DockerRuntimeError, isDockerRuntimeError } from './errors.js';
import { type ConnectEvents, type ResilientEventsDeps, resilientEvents } from './event-stream.js';
import { type ContainerEvent, parseContainerEvent, type RuntimeEvent } from './events.js';

/** A container event as the engine would send it, at `second` + `nano`. */
function event(action: string, id: string, timeNano: bigint): ContainerEvent {
  const line = JSON.stringify({
    Type: 'container',
    Action: action,
    Actor: { ID: id, Attributes: { name: `n-${id}`, image: 'i' } },
    time: Number(timeNano / 1_000_000_000n),
  }).replace(/}$/, `,"timeNano":${timeNano}}`);
  const parsed = parseContainerEvent(line);
  if (parsed === undefined) throw new Error(`not an event: ${line}`);
  return parsed;
}

const T0 = 1_800_000_000_000_000_000n;

type Script = (request: { since: string | undefined }) => {
  events: ContainerEvent[];
  /** How the connection ends after its events: broken, ended by the engine, or kept open. */
  ending: 'break' | 'end' | 'hang';
  /** The engine refuses the connection (never calls onConnected). */
  refuse?: boolean;
};

/** Connections played from `scripts` in order; records each `since`. */
function scripted(scripts: Script[]) {
  const sinces: Array<string | undefined> = [];
  const connect: ConnectEvents = (request) =>
    (async function* () {
      const script = scripts[sinces.length];
      sinces.push(request.since);
      if (script === undefined) throw new Error('no more scripted connections');
      const plan = script(request);
      if (plan.refuse) {
        throw new DockerRuntimeError('DSO_DOCKER_UNREACHABLE', 'refused (scripted)');
      }
      request.onConnected();
      for (const item of plan.events) {
        if (request.signal.aborted) return;
        yield item;
      }
      if (plan.ending === 'break') {
        throw new DockerRuntimeError('DSO_DOCKER_EVENTS_LOST', 'broke (scripted)');
      }
      if (plan.ending === 'hang') {
        await new Promise<void>((resolve) => {
          if (request.signal.aborted) resolve();
          request.signal.addEventListener('abort', () => resolve(), { once: true });
        });
      }
    })();
  return { connect, sinces };
}

function deps(connect: ConnectEvents, delays: number[] = []): ResilientEventsDeps {
  return {
    connect,
    sleep: async (ms) => {
      delays.push(ms);
    },
    now: () => 1,
    random: () => 0.5,
  };
}

/** Collects items until `count` have arrived, then aborts the stream. */
async function take(
  stream: (signal: AbortSignal) => AsyncIterable<RuntimeEvent>,
  count: number,
): Promise<RuntimeEvent[]> {
  const controller = new AbortController();
  const items: RuntimeEvent[] = [];
  for await (const item of stream(controller.signal)) {
    items.push(item);
    if (items.length >= count) controller.abort();
  }
  return items;
}

const label = (item: RuntimeEvent) =>
  item.type === 'resync' ? `resync:${item.reason}` : `${item.type}:${item.id}`;

describe('resilientEvents', () => {
  it('resumes after a break at the last event, inclusive, and drops what the replay repeats', async () => {
    const a = event('create', 'a', T0 + 1n);
    const b = event('start', 'a', T0 + 2n);
    const c = event('die', 'a', T0 + 3n);
    const { connect, sinces } = scripted([
      () => ({ events: [a, b], ending: 'break' }),
      // The engine replays from b's instant on: b again, then what happened during the gap.
      () => ({ events: [b, c], ending: 'hang' }),
    ]);
    const items = await take((signal) => resilientEvents({ signal }, deps(connect)), 3);
    expect(items.map(label)).toEqual([
      'container.created:a',
      'container.started:a',
      'container.died:a',
    ]);
    expect(sinces).toEqual([undefined, '1800000000.000000002']);
  });

  it('keeps two events of the same nanosecond apart, and dedups both in the replay', async () => {
    const a = event('start', 'a', T0 + 5n);
    const b = event('start', 'b', T0 + 5n);
    const c = event('start', 'c', T0 + 6n);
    const { connect } = scripted([
      () => ({ events: [a, b], ending: 'break' }),
      () => ({ events: [a, b, c], ending: 'hang' }),
    ]);
    const items = await take((signal) => resilientEvents({ signal }, deps(connect)), 3);
    expect(items.map(label)).toEqual([
      'container.started:a',
      'container.started:b',
      'container.started:c',
    ]);
  });

  it('reports a gap when the replay starts after the last event seen (it left the buffer)', async () => {
    const a = event('start', 'a', T0 + 1n);
    const later = event('start', 'z', T0 + 900n);
    const { connect } = scripted([
      () => ({ events: [a], ending: 'break' }),
      () => ({ events: [later], ending: 'hang' }),
    ]);
    const items = await take((signal) => resilientEvents({ signal }, deps(connect)), 3);
    expect(items.map(label)).toEqual(['container.started:a', 'resync:gap', 'container.started:z']);
  });

  it('reports a resync when a resumed stream stays quiet past the replay wait', async () => {
    const a = event('start', 'a', T0 + 1n);
    const { connect } = scripted([
      () => ({ events: [a], ending: 'end' }),
      // An engine restarted since: its buffer is empty, nothing is replayed.
      () => ({ events: [], ending: 'hang' }),
    ]);
    const items = await take(
      (signal) => resilientEvents({ signal, replayWaitMs: 20 }, deps(connect)),
      2,
    );
    expect(items.map(label)).toEqual(['container.started:a', 'resync:unverifiable']);
  });

  it('reports a resync after a break when no event had been seen to resume after', async () => {
    const b = event('start', 'b', T0 + 7n);
    const { connect, sinces } = scripted([
      () => ({ events: [], ending: 'break' }),
      () => ({ events: [b], ending: 'hang' }),
    ]);
    const items = await take((signal) => resilientEvents({ signal }, deps(connect)), 2);
    expect(items.map(label)).toEqual(['resync:unverifiable', 'container.started:b']);
    expect(sinces).toEqual([undefined, undefined]);
  });

  it('verifies resumeFrom on the first connection like a reconnect', async () => {
    const a = event('start', 'a', T0 + 1n);
    const b = event('die', 'a', T0 + 2n);
    const sound = scripted([() => ({ events: [a, b], ending: 'hang' })]);
    expect(
      (
        await take(
          (signal) => resilientEvents({ signal, resumeFrom: a.cursor }, deps(sound.connect)),
          1,
        )
      ).map(label),
    ).toEqual(['container.died:a']);
    expect(sound.sinces).toEqual(['1800000000.000000001']);

    const lost = scripted([() => ({ events: [b], ending: 'hang' })]);
    expect(
      (
        await take(
          (signal) => resilientEvents({ signal, resumeFrom: a.cursor }, deps(lost.connect)),
          2,
        )
      ).map(label),
    ).toEqual(['resync:gap', 'container.died:a']);
  });

  it('backs off with capped, jittered, doubling delays and resets after a good connection', async () => {
    const a = event('start', 'a', T0 + 1n);
    const b = event('start', 'b', T0 + 2n);
    const refuse: Script = () => ({ events: [], ending: 'break', refuse: true });
    const { connect } = scripted([
      refuse,
      refuse,
      refuse,
      refuse,
      () => ({ events: [a], ending: 'break' }),
      refuse,
      () => ({ events: [a, b], ending: 'hang' }),
    ]);
    const delays: number[] = [];
    const reconnecting: number[] = [];
    const items = await take(
      (signal) =>
        resilientEvents(
          {
            signal,
            reconnect: { baseDelayMs: 100, maxDelayMs: 500 },
            replayWaitMs: 5_000,
            onReconnecting: (info) => reconnecting.push(info.attempt),
          },
          deps(connect, delays),
        ),
      3,
    );
    // Nothing had been seen before the first connection that held: continuity unprovable.
    expect(items.map(label)).toEqual([
      'resync:unverifiable',
      'container.started:a',
      'container.started:b',
    ]);
    // random() = 0.5: three quarters of each step; steps 100, 200, 400, 500 (capped), then the
    // connection that held resets the count.
    expect(delays).toEqual([75, 150, 300, 375, 75, 150]);
    expect(reconnecting).toEqual([1, 2, 3, 4, 1, 2]);
  });

  it('fails with DSO_DOCKER_RECONNECT_FAILED after maxAttempts consecutive failures', async () => {
    const refuse: Script = () => ({ events: [], ending: 'break', refuse: true });
    const { connect, sinces } = scripted([refuse, refuse, refuse, refuse]);
    let caught: unknown;
    try {
      await take(
        (signal) => resilientEvents({ signal, reconnect: { maxAttempts: 3 } }, deps(connect)),
        1,
      );
    } catch (error) {
      caught = error;
    }
    expect(isDockerRuntimeError(caught) && caught.code).toBe('DSO_DOCKER_RECONNECT_FAILED');
    expect((caught as DockerRuntimeError).message).toMatch(/after 3 consecutive reconnects/);
    expect(sinces).toHaveLength(4);
  });

  it('counts a connection the engine accepts and drops at once as a failure', async () => {
    // An engine (or a proxy) that accepts every subscription, then breaks it before any event.
    const flaky: Script = () => ({ events: [], ending: 'break' });
    const { connect, sinces } = scripted(Array.from({ length: 10 }, () => flaky));
    await expect(
      take(
        (signal) => resilientEvents({ signal, reconnect: { maxAttempts: 3 } }, deps(connect)),
        1,
      ),
    ).rejects.toMatchObject({ code: 'DSO_DOCKER_RECONNECT_FAILED' });
    expect(sinces).toHaveLength(4);
  });

  it('counts a connection that stayed up, quiet, for stableConnectionMs as restored', async () => {
    // The stable-connection timer is a plain timer: vitest's fake timers move it, not real time.
    vi.useFakeTimers();
    try {
      const connect: ConnectEvents = (request) =>
        (async function* () {
          request.onConnected();
          // Up long enough to count as restored, then dropped (an idle timeout somewhere).
          await vi.advanceTimersByTimeAsync(10);
          yield* [];
          throw new DockerRuntimeError('DSO_DOCKER_EVENTS_LOST', 'idle drop (scripted)');
        })();
      const controller = new AbortController();
      let connections = 0;
      const counting: ConnectEvents = (request) => {
        connections += 1;
        if (connections > 6) controller.abort();
        return connect(request);
      };
      const items: RuntimeEvent[] = [];
      for await (const item of resilientEvents(
        { signal: controller.signal, reconnect: { maxAttempts: 2 }, stableConnectionMs: 10 },
        deps(counting),
      )) {
        items.push(item);
      }
      // Six drops in a row with maxAttempts 2, and no failure: each had held long enough.
      expect(connections).toBeGreaterThan(6);
    } finally {
      vi.useRealTimers();
    }
  });

  it('reports a gap when the replay starts before the last event seen (a clock set back)', async () => {
    const a = event('start', 'a', T0 + 100n);
    const earlier = event('start', 'z', T0 + 5n);
    const { connect } = scripted([
      () => ({ events: [a], ending: 'break' }),
      () => ({ events: [earlier], ending: 'hang' }),
    ]);
    const items = await take((signal) => resilientEvents({ signal }, deps(connect)), 3);
    expect(items.map(label)).toEqual(['container.started:a', 'resync:gap', 'container.started:z']);
  });

  it('ends quietly when aborted while waiting to reconnect', async () => {
    const controller = new AbortController();
    const { connect } = scripted([() => ({ events: [], ending: 'break', refuse: true })]);
    const items: RuntimeEvent[] = [];
    for await (const item of resilientEvents(
      { signal: controller.signal },
      {
        ...deps(connect),
        sleep: async () => controller.abort(),
      },
    )) {
      items.push(item);
    }
    expect(items).toEqual([]);
  });

  it('passes on errors a reconnect cannot cure', async () => {
    const connect: ConnectEvents = () =>
      (async function* () {
        yield* [];
        throw new DockerRuntimeError('DSO_DOCKER_CLOSED', 'closed (scripted)');
      })();
    await expect(
      take((signal) => resilientEvents({ signal }, deps(connect)), 1),
    ).rejects.toMatchObject({ code: 'DSO_DOCKER_CLOSED' });
  });

  it('refuses a malformed resumeFrom and bad reconnect settings', async () => {
    const { connect } = scripted([]);
    await expect(
      take((signal) => resilientEvents({ signal, resumeFrom: 'nope' }, deps(connect)), 1),
    ).rejects.toMatchObject({ code: 'DSO_DOCKER_INVALID_REQUEST' });
    await expect(
      take(
        (signal) => resilientEvents({ signal, reconnect: { maxAttempts: -1 } }, deps(connect)),
        1,
      ),
    ).rejects.toMatchObject({ code: 'DSO_DOCKER_INVALID_REQUEST' });
  });

  it('never holds more than its window of identities, however long it runs', async () => {
    const many = Array.from({ length: 5_000 }, (_, i) => event('start', `c${i}`, T0 + BigInt(i)));
    const { connect } = scripted([() => ({ events: many, ending: 'hang' })]);
    const items = await take((signal) => resilientEvents({ signal }, deps(connect)), 5_000);
    expect(new Set(items.map(label)).size).toBe(5_000);
  });
});

describe('resilientEvents on recorded engine replays', () => {
  const podman = detectEngineDialect({ Components: [{ Name: 'Podman Engine', Version: '4.3.1' }] });
  const read = (name: string) =>
    readFileSync(join(import.meta.dirname, 'test-fixtures/events', `${name}.jsonl`), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((line) => parseContainerEvent(line, podman.events))
      .filter((item): item is ContainerEvent => item !== undefined);
  const live = read('podman-4.3');
  // The first connection sees the first event, then breaks; the reconnect resumes after it.
  // Podman answered the resume's two spellings of that instant with these (record.sh):
  const replays: Record<string, ContainerEvent[]> = {
    decimal: read('podman-4.3.replay-decimal'),
    rfc3339: read('podman-4.3.replay-rfc3339'),
  };
  function podmanEngine(spell: (since: string) => string) {
    const queries: string[] = [];
    const { connect } = scripted([
      () => ({ events: live.slice(0, 1), ending: 'break' }),
      ({ since }) => {
        const query = spell(since ?? '');
        queries.push(query);
        const replay = /Z$/.test(query) ? replays.rfc3339 : replays.decimal;
        return { events: replay ?? [], ending: 'hang' };
      },
    ]);
    return { connect, queries };
  }

  it('resumes on Podman without a gap, through its dialect, delivering each event once', async () => {
    const { connect, queries } = podmanEngine((since) => podman.events.since(since));
    const items = await take((signal) => resilientEvents({ signal }, deps(connect)), live.length);
    expect(items.map(label)).toEqual(live.map(label));
    expect(queries[0]).toMatch(/Z$/);
  });

  it("reports a gap on Podman when asked with Docker's decimal since (what it did before)", async () => {
    const { connect } = podmanEngine((since) => since);
    const items = await take((signal) => resilientEvents({ signal }, deps(connect)), 3);
    expect(items.map(label)).toEqual([
      label(live[0] as ContainerEvent),
      'resync:gap',
      label(live[1] as ContainerEvent),
    ]);
  });
});
