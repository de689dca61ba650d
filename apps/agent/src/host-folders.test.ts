import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger, isDsoError } from '@dso/core';
import {
  type ContainerDetails,
  createHostSecretDirs,
  type HostSecretDirs,
  REPLACE_LABELS,
} from '@dso/docker-runtime';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createHostFolders } from './host-folders.js';
import { CANARY, container, MANAGED, setup } from './test-support/agent-fixture.js';

let root: string;
let hostDirs: HostSecretDirs;
const signal = new AbortController().signal;

beforeEach(() => {
  root = mkdtempSync('/dev/shm/dso-host-folders-test-');
  hostDirs = createHostSecretDirs({ root });
});

afterEach(() => {
  rmSync(root, { recursive: true, force: true });
});

/** A container with one bind mount, created at `createdAt` (the engine's order). */
function binder(
  id: string,
  source: string,
  options: { readOnly?: boolean; running?: boolean; labels?: Record<string, string> } = {},
): ContainerDetails {
  const running = options.running ?? true;
  return {
    ...container(id, options.labels ?? {}),
    name: `name-${id}`,
    running,
    state: running ? 'running' : 'exited',
    binds: [{ source, target: '/run/secrets', readOnly: options.readOnly ?? true }],
  };
}

function foldersOver(containers: ContainerDetails[]) {
  const fake = createFakeRuntime({ containers });
  const folders = createHostFolders({
    hostDirs,
    runtime: fake.runtime,
    logger: createLogger({ level: 'silent' }),
    minAgeMs: 0,
  });
  return { folders, fake };
}

/** Waits (on the event loop, no timer) until `condition` holds. */
async function until(condition: () => boolean) {
  for (let turn = 0; turn < 1_000; turn += 1) {
    if (condition()) return;
    await new Promise((resolve) => setImmediate(resolve));
  }
  throw new Error('condition never held');
}

async function refusal(run: () => Promise<unknown>) {
  try {
    await run();
  } catch (error) {
    if (!isDsoError(error)) throw error;
    return error;
  }
  throw new Error('expected a refusal');
}

describe('createHostFolders: keyOf', () => {
  it("gives a read-only bind's key when no other container binds the folder", async () => {
    const owner = binder('owner', `${root}/web`);
    const { folders } = foldersOver([owner, binder('other', `${root}/api`, { readOnly: false })]);
    expect(await folders.keyOf(owner, '/run/secrets', signal)).toBe('web');
  });

  it.each([
    ['the folder itself', (r: string) => `${r}/web`],
    ['the root above it', (r: string) => r],
    ['a folder above the root', (r: string) => join(r, '..')],
    ['a folder inside it', (r: string) => `${r}/web/..data`],
  ])(
    'refuses the folder when another container mounts %s writable, naming it, in any state',
    async (_, source) => {
      const owner = binder('owner', `${root}/web`);
      const writer = binder('attacker', source(root), { readOnly: false, running: false });
      const { folders } = foldersOver([owner, writer]);
      const error = await refusal(() => folders.keyOf(owner, '/run/secrets', signal));
      expect(error.code).toBe('DSO_AGENT_HOST_PATH_WRITABLE');
      expect(error.retryable).toBe(false);
      expect(error.message).toContain('name-attacker');
      expect(error.message).toContain('read-only');
      expect(error.details).toMatchObject({ containerId: 'owner', writer: 'attacker' });
    },
  );

  it('refuses the next delivery once a writable binder appears after the first one', async () => {
    const owner = binder('owner', `${root}/web`);
    const { folders, fake } = foldersOver([owner]);
    expect(await folders.keyOf(owner, '/run/secrets', signal)).toBe('web');
    fake.start(binder('late', `${root}/web`, { readOnly: false }));
    const error = await refusal(() => folders.keyOf(owner, '/run/secrets', signal));
    expect(error.code).toBe('DSO_AGENT_HOST_PATH_WRITABLE');
    expect(error.message).toContain('name-late');
  });

  it('refuses a check that began after a writable binder appeared, though a list from before it was still in flight', async () => {
    const owner = binder('owner', `${root}/web`);
    const fake = createFakeRuntime({ containers: [owner] });
    // Lists are held until released: each answers what the engine had when it began.
    const held: Array<() => void> = [];
    let lists = 0;
    const folders = createHostFolders({
      hostDirs,
      runtime: {
        ...fake.runtime,
        listContainers: async (options) => {
          lists += 1;
          const answer = await fake.runtime.listContainers(options);
          await new Promise<void>((resolve) => held.push(resolve));
          return answer;
        },
      },
      logger: createLogger({ level: 'silent' }),
      minAgeMs: 0,
    });
    const before = folders.keyOf(owner, '/run/secrets', signal);
    await until(() => held.length === 1);
    fake.start(binder('late', `${root}/web/..data`, { readOnly: false }));
    // Three checks that start now: they share one list, begun after the first one settled.
    const after = [1, 2, 3].map(() => refusal(() => folders.keyOf(owner, '/run/secrets', signal)));
    held.shift()?.();
    expect(await before).toBe('web');
    await until(() => held.length === 1);
    held.shift()?.();
    for (const error of await Promise.all(after)) {
      expect(error.code).toBe('DSO_AGENT_HOST_PATH_WRITABLE');
      expect(error.message).toContain('name-late');
    }
    expect(lists).toBe(2);
  });

  it('refuses its own bind mounted writable, with the fix', async () => {
    const self = binder('self', `${root}/web`, { readOnly: false });
    const { folders } = foldersOver([self]);
    const error = await refusal(() => folders.keyOf(self, '/run/secrets', signal));
    expect(error.code).toBe('DSO_AGENT_HOST_PATH_WRITABLE');
    expect(error.message).toContain('readonly');
  });

  it('refuses a second running container binding the folder, naming its owner', async () => {
    const first = binder('first', `${root}/web`);
    const second = binder('second', `${root}/web`);
    const { folders } = foldersOver([first, second]);
    folders.remember('first', 'web');
    const error = await refusal(() => folders.keyOf(second, '/run/secrets', signal));
    expect(error.code).toBe('DSO_AGENT_HOST_PATH_SHARED');
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('name-first');
    expect(error.details).toMatchObject({ containerId: 'second', owner: 'first' });
    // The owner itself is still delivered to.
    expect(await folders.keyOf(first, '/run/secrets', signal)).toBe('web');
  });

  it('gives the folder to the container delivered to through it, else to the first created', async () => {
    const a = binder('a', `${root}/web`);
    const b = binder('b', `${root}/web`);
    const { folders } = foldersOver([a, b]);
    // Nothing remembered (a restarted agent): the first created owns it (ids break a tie).
    expect((await refusal(() => folders.keyOf(b, '/run/secrets', signal))).details.owner).toBe('a');
    expect(await folders.keyOf(a, '/run/secrets', signal)).toBe('web');
    folders.remember('b', 'web');
    expect((await refusal(() => folders.keyOf(a, '/run/secrets', signal))).details.owner).toBe('b');
  });

  it("lets a stopped binder's successor, and the owner's blue-green replacement, have the folder", async () => {
    const old = binder('old', `${root}/web`, { running: false });
    const owner = binder('owner', `${root}/web`);
    const next = binder('next', `${root}/web`, { labels: { [REPLACE_LABELS.of]: 'owner' } });
    const { folders } = foldersOver([old, owner, next]);
    folders.remember('owner', 'web');
    expect(await folders.keyOf(owner, '/run/secrets', signal)).toBe('web');
    expect(await folders.keyOf(next, '/run/secrets', signal)).toBe('web');
  });

  it('ignores read-only binds of folders above it (a monitoring container reading the host)', async () => {
    const owner = binder('owner', `${root}/web`);
    const { folders } = foldersOver([owner, binder('monitor', '/', { readOnly: true })]);
    expect(await folders.keyOf(owner, '/run/secrets', signal)).toBe('web');
  });
});

describe('createHostFolders: ownersReachedBy', () => {
  it('names the owners whose folders a started container binds, itself and strangers aside', async () => {
    const web = binder('web', `${root}/web`);
    const api = binder('api', `${root}/api`);
    const attacker = binder('attacker', root, { readOnly: false });
    const reader = binder('reader', `${root}/api/..data`);
    const stranger = binder('stranger', '/var/lib/other');
    const { folders } = foldersOver([web, api, attacker, reader, stranger]);
    expect(await folders.ownersReachedBy('attacker', signal)).toEqual([]); // nobody owns yet
    folders.remember('web', 'web');
    folders.remember('api', 'api');
    expect((await folders.ownersReachedBy('attacker', signal)).sort()).toEqual(['api', 'web']);
    expect(await folders.ownersReachedBy('reader', signal)).toEqual(['api']);
    expect(await folders.ownersReachedBy('stranger', signal)).toEqual([]);
    expect(await folders.ownersReachedBy('web', signal)).toEqual([]);
    expect(await folders.ownersReachedBy('gone', signal)).toEqual([]);
  });
});

describe('createAgent: the host path refusals in status', () => {
  it('refuses the delivery to a second container binding a folder, shown failed in status, writing nothing', async () => {
    const first = binder('c1', `${root}/web`, { labels: MANAGED });
    const second = binder('c2', `${root}/web`, { labels: MANAGED });
    const { agent, fake, output } = setup([first], { hostDirs });
    await agent.start();
    await agent.idle();
    expect(readdirSync(`${root}/web`)).toContain('db');
    fake.start(second);
    await expect
      .poll(() => agent.status().containers.find((c) => c.id === 'c2')?.lastAction)
      .toMatchObject({ outcome: 'failed', code: 'DSO_AGENT_HOST_PATH_SHARED' });
    // The owner is named in status, with what to do.
    const shown = agent.status().containers.find((c) => c.id === 'c2')?.lastAction.message;
    expect(shown).toContain('name-c1');
    expect(shown).toContain('its own folder');
    expect(fake.writes).toEqual([]);
    expect(output()).not.toContain(CANARY);
    await agent.close();
  });

  it('refuses the owner as soon as another container that can write its folder starts', async () => {
    const owner = binder('c1', `${root}/web`, { labels: MANAGED });
    const { agent, fake } = setup([owner], { hostDirs });
    await agent.start();
    await agent.idle();
    expect(agent.status().containers[0]?.lastAction.outcome).toBe('delivered');
    // No DSO label, no event about the owner: its start alone makes the agent look again.
    fake.start(binder('attacker', root, { readOnly: false }));
    await expect
      .poll(() => agent.status().containers.find((c) => c.id === 'c1')?.lastAction)
      .toMatchObject({ outcome: 'failed', code: 'DSO_AGENT_HOST_PATH_WRITABLE' });
    expect(agent.status().containers.find((c) => c.id === 'c1')?.lastAction.message).toContain(
      'name-attacker',
    );
    await agent.close();
  });
});
