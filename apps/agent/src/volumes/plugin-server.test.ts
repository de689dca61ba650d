import { mkdtemp, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, DsoError } from '@dso/core';
import { afterEach, describe, expect, it } from 'vitest';
import { startVolumePluginServer } from './plugin-server.js';
import type { VolumeDriver } from './volume-driver.js';

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

/** A driver whose Create refuses and whose Mount fails, as a bad option and a missing secret do. */
const failing = {
  driverName: 'dso-test',
  async create() {
    throw new DsoError('DSO_VOLUME_OPTION_INVALID', 'volume v1: option db is not a reference');
  },
  async mount() {
    throw new DsoError('DSO_VOLUME_MOUNT_FAILED', 'volume v1: could not resolve dsofile://app/x');
  },
  get: () => undefined,
  list: () => [],
} as unknown as VolumeDriver;

function post(socketPath: string, method: string, body: unknown) {
  return new Promise<{ status: number; body: unknown }>((resolve, reject) => {
    const call = request({ socketPath, path: `/${method}`, method: 'POST' }, (response) => {
      let text = '';
      response.setEncoding('utf8').on('data', (chunk: string) => {
        text += chunk;
      });
      response.on('end', () =>
        resolve({ status: response.statusCode ?? 0, body: JSON.parse(text) }),
      );
    });
    call.on('error', reject);
    call.end(JSON.stringify(body));
  });
}

describe('startVolumePluginServer', () => {
  it('answers a failure with a 500 and Err, so that Podman (which reads only the status) fails too', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dso-plugin-'));
    dirs.push(dir);
    await using server = await startVolumePluginServer({
      driver: failing,
      logger: createLogger({ level: 'silent' }),
      pluginDir: dir,
    });
    expect(await post(server.socketPath, 'VolumeDriver.Create', { Name: 'v1', Opts: {} })).toEqual({
      status: 500,
      body: { Err: 'volume v1: option db is not a reference' },
    });
    expect(await post(server.socketPath, 'VolumeDriver.Mount', { Name: 'v1', ID: 'a' })).toEqual({
      status: 500,
      body: { Err: 'volume v1: could not resolve dsofile://app/x' },
    });
    expect(await post(server.socketPath, 'VolumeDriver.Get', { Name: 'v1' })).toMatchObject({
      status: 500,
    });
    // Success stays a 200.
    expect(await post(server.socketPath, 'VolumeDriver.List', {})).toEqual({
      status: 200,
      body: { Volumes: [], Err: '' },
    });
  });
});
