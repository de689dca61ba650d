import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { detectEngineDialect } from './engine-dialect.js';
import { isDockerRuntimeError } from './errors.js';
import {
  LineSplitter,
  parseContainerEvent,
  parseEventCursor,
  sinceOf,
  toEngineSince,
} from './events.js';

/** Lines an engine really sent (test-fixtures/events/record.sh made them). */
function recorded(name: string): string[] {
  const file = join(import.meta.dirname, 'test-fixtures/events', `${name}.jsonl`);
  return readFileSync(file, 'utf8').split('\n').filter(Boolean);
}
const docker = detectEngineDialect({ Version: '20.10.24+dfsg1', Components: [{ Name: 'Engine' }] });
const podman = detectEngineDialect({ Components: [{ Name: 'Podman Engine', Version: '4.3.1' }] });

// As Docker 20.10 sends it, timeNano beyond 2^53.
const startLine =
  '{"status":"start","id":"abc123","from":"dso-test/busybox:1","Type":"container","Action":"start",' +
  '"Actor":{"ID":"abc123","Attributes":{"dso.enable":"true","image":"dso-test/busybox:1","name":"web"}},' +
  '"scope":"local","time":1715000000,"timeNano":1715000000123456789}';

describe('parseContainerEvent', () => {
  it('maps a start event, with exact timeNano and labels without engine attributes', () => {
    expect(parseContainerEvent(startLine)).toEqual({
      type: 'container.started',
      id: 'abc123',
      at: 1715000000123,
      timeNano: '1715000000123456789',
      cursor: '1715000000123456789~abc123~start',
      labels: { 'dso.enable': 'true' },
      name: 'web',
      image: 'dso-test/busybox:1',
    });
  });

  it('maps create, die (with its exit code) and destroy', () => {
    const line = (action: string, extra = '') =>
      `{"Type":"container","Action":"${action}","Actor":{"ID":"x","Attributes":{"name":"n","image":"i","l":"v"${extra}}},"time":1,"timeNano":1000000001}`;
    expect(parseContainerEvent(line('create'))?.type).toBe('container.created');
    expect(parseContainerEvent(line('destroy'))?.type).toBe('container.destroyed');
    const died = parseContainerEvent(line('die', ',"exitCode":"137","execDuration":"3"'));
    expect(died).toMatchObject({ type: 'container.died', exitCode: 137, labels: { l: 'v' } });
  });

  it('maps rename (with the old name) and health status (with the state)', () => {
    const rename =
      '{"Type":"container","Action":"rename","Actor":{"ID":"x","Attributes":{"name":"new","oldName":"/old","image":"i","l":"v"}},"time":1,"timeNano":1000000002}';
    expect(parseContainerEvent(rename)).toMatchObject({
      type: 'container.renamed',
      name: 'new',
      oldName: 'old',
      labels: { l: 'v' },
      cursor: '1000000002~x~rename',
    });
    const health = (state: string) =>
      `{"Type":"container","Action":"health_status: ${state}","Actor":{"ID":"x","Attributes":{"name":"n","image":"i"}},"time":1,"timeNano":1000000003}`;
    expect(parseContainerEvent(health('healthy'))).toMatchObject({
      type: 'container.health',
      health: 'healthy',
      cursor: '1000000003~x~health_status~healthy',
    });
    expect(parseContainerEvent(health('unhealthy'))?.health).toBe('unhealthy');
    expect(parseContainerEvent(health('bogus'))).toBeUndefined();
  });

  it('round-trips its cursor through parseEventCursor and sinceOf', () => {
    const parsed = parseContainerEvent(startLine);
    const cursor = parseEventCursor(parsed?.cursor ?? '');
    expect(sinceOf(cursor)).toBe('1715000000.123456789');
    expect(() => parseEventCursor('1~x~start; rm -rf')).toThrow(/resumeFrom/);
  });

  it('ignores other actions and other types', () => {
    expect(
      parseContainerEvent('{"Type":"container","Action":"exec_create: sh","Actor":{"ID":"x"}}'),
    ).toBeUndefined();
    expect(
      parseContainerEvent('{"Type":"network","Action":"connect","Actor":{"ID":"x"}}'),
    ).toBeUndefined();
  });

  it('throws DSO_DOCKER_EVENTS_LOST for a line that is not JSON', () => {
    try {
      parseContainerEvent('{"Type":');
      expect.unreachable();
    } catch (error) {
      expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_EVENTS_LOST');
    }
  });
});

describe('LineSplitter', () => {
  it('joins lines split across chunks and drops blank ones', () => {
    const splitter = new LineSplitter(1024);
    expect(splitter.push('{"a":1}\n{"b"')).toEqual(['{"a":1}']);
    expect(splitter.push(':2}\n\n{"c":3}')).toEqual(['{"b":2}']);
    expect(splitter.push('\r\n')).toEqual(['{"c":3}']);
  });

  it('ends with DSO_DOCKER_EVENTS_LOST when a line outgrows its bound', () => {
    const splitter = new LineSplitter(16);
    splitter.push('x'.repeat(10));
    expect(() => splitter.push('x'.repeat(10))).toThrowError(/exceeded 16 characters/);
  });
});

describe('toEngineSince', () => {
  it('passes seconds through and turns ms into seconds with a fraction', () => {
    expect(toEngineSince(1715000000)).toBe('1715000000');
    expect(toEngineSince(1715000000123)).toBe('1715000000.123');
    expect(toEngineSince(1715000000005)).toBe('1715000000.005');
    expect(toEngineSince('1715000000.123456789')).toBe('1715000000.123456789');
  });

  it.each([-1, Number.NaN, Number.POSITIVE_INFINITY, '1e9', '12.', 'now'])(
    'rejects %s with DSO_DOCKER_INVALID_REQUEST',
    (since) => {
      expect(() => toEngineSince(since)).toThrowError(/since/);
    },
  );
});

describe('recorded lifecycles: the same events from Docker 20.10 and Podman 4.3', () => {
  const lifecycle = [
    'container.created',
    'container.started',
    'container.health',
    'container.health',
    'container.renamed',
    'container.died',
    'container.started',
    'container.died',
    'container.destroyed',
  ];

  it("reads Docker's lifecycle with its health states and the old name", () => {
    const events = recorded('docker-20.10').map((line) => parseContainerEvent(line, docker.events));
    expect(events.map((event) => event?.type)).toEqual(lifecycle);
    expect(events.map((event) => event?.health).filter(Boolean)).toEqual(['unhealthy', 'healthy']);
    expect(events[4]).toMatchObject({ oldName: expect.stringMatching(/^dso-record-/) });
    expect(events[5]).toMatchObject({ exitCode: 137 });
    expect(events[0]?.labels).toEqual({ app: 'web', 'dso.test': expect.any(String) });
  });

  it("reads Podman's died and remove as died and destroyed, its labels without its own attributes", () => {
    const events = recorded('podman-4.3').map((line) => parseContainerEvent(line, podman.events));
    // One more health check was run on Podman (the first reads `starting`).
    expect(events.map((event) => event?.type)).toEqual([
      ...lifecycle.slice(0, 2),
      'container.health',
      ...lifecycle.slice(2),
    ]);
    for (const event of events) {
      expect(event?.labels).toEqual({ app: 'web', 'dso.test': expect.any(String) });
    }
    expect(events.at(-1)?.cursor).toMatch(/~destroy$/);
    expect(events.filter((event) => event?.type === 'container.died')).toMatchObject([
      { exitCode: 137 },
      { exitCode: 137 },
    ]);
  });

  it("claims no health state from Podman's health events (their HealthStatus lags one check)", () => {
    const lines = recorded('podman-4.3').filter((line) => line.includes('"health_status"'));
    // Recorded with the check failing, then passing twice: the field reads one check behind.
    expect(
      lines.map((line) => (JSON.parse(line) as { HealthStatus: string }).HealthStatus),
    ).toEqual(['starting', 'unhealthy', 'healthy']);
    for (const line of lines) {
      const event = parseContainerEvent(line, podman.events);
      expect(event?.type).toBe('container.health');
      expect(event).not.toHaveProperty('health');
    }
  });

  it("drops Podman's remove under Docker's names, and Podman's bare health under Docker's", () => {
    const remove = recorded('podman-4.3').find((line) => line.includes('"Action":"remove"')) ?? '';
    expect(parseContainerEvent(remove, docker.events)).toBeUndefined();
    expect(parseContainerEvent(remove, podman.events)?.type).toBe('container.destroyed');
    const bare = recorded('podman-4.3').find((line) => line.includes('"health_status"')) ?? '';
    expect(parseContainerEvent(bare, docker.events)).toBeUndefined();
  });

  it('reads a health state in the action under either dialect (a later Podman may send one)', () => {
    const health = recorded('docker-20.10').find((line) => line.includes('health_status: ')) ?? '';
    const state = /health_status: (\w+)/.exec(health)?.[1];
    expect(parseContainerEvent(health, podman.events)).toMatchObject({
      type: 'container.health',
      health: state,
    });
    const unknown = health.replaceAll(`health_status: ${state}`, 'health_status: sideways');
    expect(parseContainerEvent(unknown, podman.events)).toBeUndefined();
  });

  it('subscribes to the names each engine matches', () => {
    expect(docker.events.subscribe).toEqual([
      'create',
      'start',
      'die',
      'destroy',
      'rename',
      'health_status',
    ]);
    expect(podman.events.subscribe).toEqual([
      'create',
      'start',
      'died',
      'remove',
      'rename',
      'health_status',
    ]);
  });
});

describe("the engine's since", () => {
  it('passes seconds.nanoseconds to Docker as they are', () => {
    expect(docker.events.since('1715000000.123456789')).toBe('1715000000.123456789');
  });

  it('gives Podman an RFC 3339 time one nanosecond earlier (its since is exclusive)', () => {
    expect(podman.events.since('1715000000.123456789')).toBe('2024-05-06T12:53:20.123456788Z');
    expect(podman.events.since('1715000000.000000000')).toBe('2024-05-06T12:53:19.999999999Z');
    expect(podman.events.since('1715000000')).toBe('2024-05-06T12:53:19.999999999Z');
    expect(podman.events.since('1715000000.5')).toBe('2024-05-06T12:53:20.499999999Z');
    expect(podman.events.since('0')).toBe('1970-01-01T00:00:00Z');
  });

  it("replays from the cursor's event on Podman only with its own since (recorded)", () => {
    const [first] = recorded('podman-4.3');
    const live = recorded('podman-4.3').map((line) => parseContainerEvent(line, podman.events));
    const cursor = parseEventCursor(live[0]?.cursor ?? '');
    expect(podman.events.since(sinceOf(cursor))).toMatch(/^\d{4}-\d\d-\d\dT[\d:]{8}\.\d{9}Z$/);
    // The decimal since went through a float64 and past the event: the replay lost it.
    const decimal = recorded('podman-4.3.replay-decimal');
    expect(decimal[0]).not.toBe(first);
    // One nanosecond before, in RFC 3339: the replay starts with it, as Docker's does.
    expect(recorded('podman-4.3.replay-rfc3339')).toEqual(recorded('podman-4.3'));
    expect(recorded('docker-20.10.replay-decimal')).toEqual(recorded('docker-20.10'));
  });
});
