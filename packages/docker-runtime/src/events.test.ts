import { describe, expect, it } from 'vitest';
import { isDockerRuntimeError } from './errors.js';
import {
  LineSplitter,
  parseContainerEvent,
  parseEventCursor,
  sinceOf,
  toEngineSince,
} from './events.js';

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
