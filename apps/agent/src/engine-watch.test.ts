import type { ContainerEvent } from '@dso/docker-runtime';
import { describe, expect, it } from 'vitest';
import { routeEvent } from './engine-watch.js';

const event = (type: ContainerEvent['type'], labels: Record<string, string> = {}) =>
  ({
    type,
    id: 'c1',
    at: 0,
    timeNano: '0',
    cursor: 'x',
    labels,
    name: 'c1',
    image: 'x',
  }) as ContainerEvent;

describe('routeEvent', () => {
  function route(item: ContainerEvent): string[] {
    const calls: string[] = [];
    routeEvent(item, {
      started: (id) => calls.push(`started ${id}`),
      unmanagedStarted: (id, name, labels) =>
        calls.push(`unmanaged ${id} ${name} ${Object.keys(labels).join(',')}`),
      died: (id) => calls.push(`died ${id}`),
      destroyed: (id) => calls.push(`destroyed ${id}`),
      resync: () => calls.push('resync'),
    });
    return calls;
  }

  it('delivers on the start of a managed container only', () => {
    expect(route(event('container.started', { 'dso.enable': 'true' }))).toEqual(['started c1']);
    expect(route(event('container.started', { 'dso.enable': 'false' }))).toEqual([
      'unmanaged c1 c1 dso.enable',
    ]);
    expect(route(event('container.started'))).toEqual(['unmanaged c1 c1 ']);
  });

  it("hands an unmanaged start's name and labels over (a typo is judged from them, no inspection)", () => {
    expect(route(event('container.started', { 'dso.enabel': 'true' }))).toEqual([
      'unmanaged c1 c1 dso.enabel',
    ]);
  });

  it('empties host files on a stop and forgets on a removal, managed or not', () => {
    expect(route(event('container.died'))).toEqual(['died c1']);
    expect(route(event('container.destroyed'))).toEqual(['destroyed c1']);
  });

  it('ignores the other events', () => {
    for (const type of ['container.created', 'container.renamed', 'container.health'] as const) {
      expect(route(event(type, { 'dso.enable': 'true' }))).toEqual([]);
    }
  });
});
