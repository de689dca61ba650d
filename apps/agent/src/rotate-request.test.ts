import { createLogger, createRedactor } from '@dso/core';
import type { ContainerDetails } from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { describe, expect, it } from 'vitest';
import { requestRotation } from './rotate-request.js';

const logger = createLogger({ level: 'silent', redactor: createRedactor() });

function container(id: string, overrides: Partial<ContainerDetails>): ContainerDetails {
  return {
    id,
    name: id,
    labels: {},
    running: true,
    state: 'running',
    startedAt: '2026-12-01T10:00:00Z',
    user: '',
    tmpfs: ['/run/secrets'],
    binds: [],
    volumes: [],
    image: 'x',
    ...overrides,
  };
}

function setup() {
  const labelled = container('a'.repeat(64), {
    labels: {
      'dso.enable': 'true',
      'dso.file.db': 'dsofile://app/db',
      'dso.file.old': 'dsofile://app/old@3',
    },
  });
  const mounting = container('b'.repeat(64), {
    volumes: [{ name: 'v1', driver: 'dso', source: '', target: '/run/secrets', readOnly: false }],
  });
  const fake = createFakeRuntime({ containers: [labelled, mounting] });
  const refreshed: string[] = [];
  const queued: string[] = [];
  const context = {
    runtime: fake.runtime,
    secrets: {
      refresh: async (provider: string, path: string) => {
        refreshed.push(`${provider}:${path}`);
        return true;
      },
    },
    volumeDriver: {
      driverName: 'dso',
      consumers: () => ['volume:v1:m1', 'volume:v2:m2'],
      consumersOf: (volumes: readonly string[]) =>
        volumes.map((volume) => `volume:${volume}:m${volume.slice(1)}`),
      references: (ids: readonly string[]) =>
        ids.map((id) => ({
          name: 'token',
          reference: { scheme: 'dsofile' as const, path: `vol/${id.split(':')[1]}` },
        })),
    },
    defaultProvider: 'local',
    queue: { add: (id: string) => queued.push(id) },
    logger,
    signal: new AbortController().signal,
  };
  return { context, refreshed, queued, labelled, mounting };
}

describe('requestRotation', () => {
  it('asks again for every unpinned secret of labelled containers and volume mounts, then checks them', async () => {
    const { context, refreshed, queued, labelled } = setup();
    expect(await requestRotation(context, {})).toEqual({ containers: 2, secrets: 4 });
    expect(refreshed.sort()).toEqual(['local:app/db', 'local:vol/v1', 'local:vol/v2']);
    expect(queued.sort()).toEqual([labelled.id, 'volume:v1:m1', 'volume:v2:m2'].sort());
  });

  it('selects one container by id, with the mounts of the volumes it uses', async () => {
    const { context, refreshed, queued, mounting } = setup();
    expect(await requestRotation(context, { containerId: mounting.id.slice(0, 12) })).toEqual({
      containers: 1,
      secrets: 1,
    });
    expect(refreshed).toEqual(['local:vol/v1']);
    expect(queued).toEqual(['volume:v1:m1']);
  });

  it('refuses an id no managed container has, saying where to find the ids', async () => {
    const { context } = setup();
    await expect(requestRotation(context, { containerId: 'c'.repeat(12) })).rejects.toMatchObject({
      code: 'DSO_AGENT_CONTAINER_UNKNOWN',
      message: expect.stringContaining('dso status'),
    });
  });
});
