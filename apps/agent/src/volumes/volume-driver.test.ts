import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  createFakeClock,
  createLogger,
  createMemoryCache,
  createRedactor,
  type ManagedSpec,
} from '@dso/core';
import type { ContainerDetails, HostWriteRequest } from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { ProviderError, type SecretProvider, SecretValue } from '@dso/provider-sdk';
import { afterEach, describe, expect, it } from 'vitest';
import type { ContainerStatus } from '../agent-types.js';
import { createOutcomes } from '../outcomes.js';
import { createAuditSink, createEventBus } from '../reporting.js';
import { createSecretResolver } from '../secrets.js';
import type { VolumeFolders } from './folders.js';
import { createVolumeDriver } from './volume-driver.js';

const CANARY = 'canary-volume-3f1a';
const MOUNT_ID = 'a'.repeat(64);
const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** Folders in memory: what was written per key, and which views are published. */
function memoryFolders(): VolumeFolders & { files: Map<string, string[]>; views: Set<string> } {
  const files = new Map<string, string[]>();
  const views = new Set<string>();
  const mountpointOf = (key: string) => `/volumes/mounts/${key}`;
  return {
    root: '/volumes',
    files,
    views,
    write(key: string, request: HostWriteRequest) {
      files.set(
        key,
        request.files.map((file) => `${file.name}=${Buffer.from(file.content).toString()}`),
      );
      return { files: request.files.length, bytes: 0 };
    },
    async publish(key: string) {
      views.add(key);
      return mountpointOf(key);
    },
    mountpointOf,
    keyOf: (mountpoint: string) => mountpoint.replace('/volumes/mounts/', ''),
    async remove(key: string) {
      files.delete(key);
      views.delete(key);
    },
    keys: () => [...files.keys()],
  };
}

/** A state file path in a folder removed after the test. */
async function scratchState(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'dso-volumes-'));
  dirs.push(dir);
  return join(dir, 'volumes.json');
}

async function setup(statePath?: string) {
  const clock = createFakeClock();
  const redactor = createRedactor();
  const logger = createLogger({ level: 'silent', redactor });
  const values: Record<string, string> = { 'app/db': CANARY };
  const state: { version: number; hold?: Promise<void> } = { version: 1 };
  const provider: SecretProvider = {
    name: 'local',
    capabilities: { list: false, watch: false, probe: false, health: false },
    async resolve({ path }) {
      await state.hold;
      const value = values[path];
      if (value === undefined) {
        throw new ProviderError('DSO_PROVIDER_NOT_FOUND', `no secret at ${path}`, { path });
      }
      return { value: SecretValue.fromText(value), version: String(state.version) };
    },
    async close() {},
  };
  const folders = memoryFolders();
  const fake = createFakeRuntime();
  const rotated: Array<{ id: string; spec: ManagedSpec }> = [];
  const statuses = new Map<string, ContainerStatus>();
  const secrets = createSecretResolver({
    providers: new Map([['local', provider]]),
    defaultProvider: 'local',
    cache: createMemoryCache({ clock, ttlMs: 0 }),
    redactor,
    logger,
    clock,
    maxStalenessMs: new Map(),
  });
  const driver = createVolumeDriver({
    driverName: 'dso',
    folders,
    registry: { volumes: new Map(), mounts: new Map() },
    statePath,
    mountTimeoutMs: 5_000,
    secrets,
    consumption: { record: () => {} },
    rotations: { start: (id, spec) => rotated.push({ id, spec }) },
    runtime: fake.runtime,
    statuses,
    outcomes: createOutcomes({
      statuses,
      bus: createEventBus(),
      audit: createAuditSink(undefined, logger),
      providerOf: () => 'local',
      clock,
    }),
    redactor,
    logger,
    clock,
    stopping: new AbortController().signal,
  });
  return { driver, folders, fake, rotated, statuses, values, state };
}

describe('createVolumeDriver', () => {
  it('refuses a volume whose options are not references, naming the option and never the value', async () => {
    const { driver } = await setup();
    const refused = driver.create('v1', { db: CANARY });
    await expect(refused).rejects.toMatchObject({ code: 'DSO_VOLUME_OPTION_INVALID' });
    await refused.catch((error: Error) => {
      expect(error.message).toContain('volume option db');
      expect(error.message).not.toContain(CANARY);
    });
    expect(driver.list()).toEqual([]);
  });

  it('writes every file on Mount and answers the read-only view; Unmount removes them', async () => {
    const { driver, folders } = await setup();
    await driver.create('v1', { db: 'dsofile://app/db', 'dso.mode': '0440' });
    const mountpoint = await driver.mount('v1', MOUNT_ID);
    const key = folders.keyOf(mountpoint) as string;
    expect(folders.files.get(key)).toEqual([`db=${CANARY}`]);
    expect(folders.views.has(key)).toBe(true);
    expect(driver.get('v1')).toEqual({ Name: 'v1', Mountpoint: mountpoint, Status: {} });
    expect(driver.consumers()).toEqual([`volume:v1:${MOUNT_ID}`]);
    await driver.unmount('v1', MOUNT_ID);
    expect(folders.files.size).toBe(0);
    expect(driver.consumers()).toEqual([]);
  });

  it('fails Mount with the reference and the code when a secret is missing, leaving nothing', async () => {
    const { driver, folders } = await setup();
    await driver.create('v1', { db: 'dsofile://app/missing' });
    await expect(driver.mount('v1', MOUNT_ID)).rejects.toMatchObject({
      code: 'DSO_VOLUME_MOUNT_FAILED',
      message: expect.stringContaining(
        'could not resolve dsofile://app/missing (DSO_PROVIDER_NOT_FOUND)',
      ),
    });
    expect(folders.files.size).toBe(0);
    expect(driver.consumers()).toEqual([]);
  });

  it('rewrites a mount when its version changes, then runs the rotation policy of the container that mounts it', async () => {
    const { driver, folders, fake, rotated, state, values } = await setup();
    await driver.create('v1', { db: 'dsofile://app/db' });
    const mountpoint = await driver.mount('v1', MOUNT_ID);
    const consumer: ContainerDetails = {
      id: 'c'.repeat(64),
      name: 'app',
      labels: { 'dso.rotate': 'signal' },
      running: true,
      state: 'running',
      startedAt: '2026-12-01T10:00:00Z',
      user: '1000:1000',
      tmpfs: [],
      binds: [],
      volumes: [
        { name: 'v1', driver: 'dso', source: mountpoint, target: '/run/secrets', readOnly: false },
      ],
      image: 'x',
    };
    fake.start(consumer);
    const signal = new AbortController().signal;
    await driver.deliver(`volume:v1:${MOUNT_ID}`, 'periodic', signal, 1);
    expect(rotated).toEqual([]); // same version: nothing written, nobody told
    values['app/db'] = `${CANARY}-2`;
    state.version = 2;
    await driver.deliver(`volume:v1:${MOUNT_ID}`, 'changed', signal, 1);
    expect(folders.files.get(folders.keyOf(mountpoint) as string)).toEqual([`db=${CANARY}-2`]);
    expect(rotated.map(({ id, spec }) => [id, spec.rotation?.policy, spec.target])).toEqual([
      [consumer.id, 'signal', '/run/secrets'],
    ]);
  });

  it("resolves a mount's secrets outside the delivery queue's slot", async () => {
    const { driver, values, state } = await setup();
    await driver.create('v1', { db: 'dsofile://app/db' });
    await driver.mount('v1', MOUNT_ID);
    values['app/db'] = `${CANARY}-2`;
    state.version = 2;
    const steps: string[] = [];
    let release!: () => void;
    state.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const delivering = driver.deliver(
      `volume:v1:${MOUNT_ID}`,
      'changed',
      new AbortController().signal,
      1,
      async (work) => {
        steps.push('slot given up');
        try {
          return await work();
        } finally {
          steps.push('slot taken again');
        }
      },
    );
    await new Promise<void>((resolve) => setImmediate(resolve));
    // Waiting on the provider, outside its slot.
    expect(steps).toEqual(['slot given up']);
    release();
    await delivering;
    expect(steps).toEqual(['slot given up', 'slot taken again']);
  });

  it('keeps volumes and mounts (references and digests, no value) for the next agent', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dso-volumes-'));
    dirs.push(dir);
    const statePath = join(dir, 'volumes.json');
    const first = await setup(statePath);
    await first.driver.create('v1', { db: 'dsofile://app/db' });
    const mountpoint = await first.driver.mount('v1', MOUNT_ID);
    const saved = await readFile(statePath, 'utf8');
    expect(saved).toContain('dsofile://app/db');
    expect(saved).not.toContain(CANARY);
    const next = await setup(statePath);
    await next.driver.recover();
    expect(next.driver.get('v1')?.Mountpoint).toBe(mountpoint);
    expect(next.folders.views.has(next.folders.keyOf(mountpoint) as string)).toBe(true);
    expect(next.driver.consumers()).toEqual([`volume:v1:${MOUNT_ID}`]);
  });

  it('removes the folders of mounts it does not know, and keeps the others', async () => {
    const { driver, folders } = await setup();
    await driver.create('v1', { db: 'dsofile://app/db' });
    const mountpoint = await driver.mount('v1', MOUNT_ID);
    folders.files.set('orphan', ['db=left-behind']);
    await driver.sweep();
    expect([...folders.files.keys()]).toEqual([folders.keyOf(mountpoint)]);
  });

  it('writes nothing for a mount unmounted while its secrets were being resolved', async () => {
    const { driver, folders, state } = await setup();
    await driver.create('v1', { db: 'dsofile://app/db' });
    await driver.mount('v1', MOUNT_ID);
    state.version = 2; // a new version: the rewrite would write
    let release!: () => void;
    state.hold = new Promise<void>((resolve) => {
      release = resolve;
    });
    const delivering = driver.deliver(
      `volume:v1:${MOUNT_ID}`,
      'changed',
      new AbortController().signal,
      1,
    );
    await driver.unmount('v1', MOUNT_ID);
    release();
    await delivering;
    expect(folders.files.size).toBe(0);
  });

  it('keeps the files while the engine still holds a mount (docker cp mounts a running container again)', async () => {
    const { driver, folders } = await setup();
    await driver.create('v1', { db: 'dsofile://app/db' });
    const mountpoint = await driver.mount('v1', MOUNT_ID);
    const key = folders.keyOf(mountpoint) as string;
    expect(await driver.mount('v1', MOUNT_ID)).toBe(mountpoint); // docker cp
    await driver.unmount('v1', MOUNT_ID); // docker cp done
    expect(folders.files.get(key)).toEqual([`db=${CANARY}`]);
    await driver.unmount('v1', MOUNT_ID); // the container stops
    expect(folders.files.size).toBe(0);
  });

  it('keeps two volumes mounted with one id apart (Podman gives every mount the same id)', async () => {
    const { driver, folders, values } = await setup(await scratchState());
    values['app/other'] = 'other-value';
    await driver.create('v1', { db: 'dsofile://app/db' });
    await driver.create('v2', { db: 'dsofile://app/other' });
    const first = await driver.mount('v1', MOUNT_ID);
    const second = await driver.mount('v2', MOUNT_ID);
    expect(second).not.toBe(first);
    expect(folders.files.get(folders.keyOf(first) as string)).toEqual([`db=${CANARY}`]);
    expect(folders.files.get(folders.keyOf(second) as string)).toEqual(['db=other-value']);
    expect(driver.consumers().sort()).toEqual([`volume:v1:${MOUNT_ID}`, `volume:v2:${MOUNT_ID}`]);
    await driver.unmount('v2', MOUNT_ID);
    expect([...folders.files.values()]).toEqual([[`db=${CANARY}`]]);
    await driver.unmount('v1', MOUNT_ID);
    expect(folders.files.size).toBe(0);
  });

  it('reads a state file of an earlier agent, whose mounts are keyed by their id alone', async () => {
    const statePath = await scratchState();
    await writeFile(
      statePath,
      JSON.stringify({
        version: 1,
        volumes: { v1: { options: { db: 'dsofile://app/db' }, createdAt: 1 } },
        mounts: { [MOUNT_ID]: { volume: 'v1', refs: 1 } },
      }),
    );
    const { driver } = await setup(statePath);
    await driver.recover();
    expect(driver.consumers()).toEqual([`volume:v1:${MOUNT_ID}`]);
  });

  it('shows a mounted volume in status with its files, and a mount that never happened not at all', async () => {
    const { driver, statuses } = await setup();
    await driver.create('v1', { db: 'dsofile://app/db' });
    await driver.mount('v1', MOUNT_ID);
    expect(statuses.get(`volume:v1:${MOUNT_ID}`)).toMatchObject({
      files: [{ name: 'db', reference: 'dsofile://app/db', version: '1' }],
      lastAction: { trigger: 'started', outcome: 'delivered' },
    });
    await driver.create('v2', { db: 'dsofile://app/missing' });
    await expect(driver.mount('v2', 'b'.repeat(64))).rejects.toMatchObject({
      message: expect.stringContaining('store it (dso secret set)'),
    });
    expect([...statuses.keys()]).toEqual([`volume:v1:${MOUNT_ID}`]);
  });

  it('refuses at Create a volume with more files than one write may hold', async () => {
    const { driver } = await setup();
    const options = Object.fromEntries(
      Array.from({ length: 1_001 }, (_, index) => [`f${index}`, 'dsofile://app/db']),
    );
    await expect(driver.create('big', options)).rejects.toMatchObject({
      code: 'DSO_VOLUME_OPTION_INVALID',
      message: expect.stringContaining('at most 1000'),
    });
  });
});
