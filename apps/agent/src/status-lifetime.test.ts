import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createFakeRuntime } from '@dso/docker-runtime/testing';
import { describe, expect, it } from 'vitest';
import { MAX_STOPPED_STATUSES } from './agent.js';
import { container, MANAGED, setup } from './test-support/agent-fixture.js';

// How long a container stays in status, and what it says: stopped ones stay `exited` through
// reconciliations until they are removed; the rotation named is the agent's default when no
// label sets one; a delivery made before an agent restart keeps its time (the state file's).

const ID = 'f6f6f6f6'.repeat(8);

describe('status over a container’s life', () => {
  it('keeps a stopped container as exited through reconciliations, and forgets it once removed', async () => {
    const { agent, fake } = setup([container(ID, MANAGED)]);
    await agent.start();
    await agent.idle();
    fake.stop(ID);
    await expect
      .poll(async () => (await agent.status()).containers.find((entry) => entry.id === ID)?.state)
      .toBe('exited');
    for (let round = 0; round < 2; round++) {
      await agent.reconcile();
      await agent.idle();
    }
    const kept = (await agent.status()).containers.find((entry) => entry.id === ID);
    expect(kept).toMatchObject({ state: 'exited', lastAction: { outcome: 'delivered' } });
    fake.remove(ID);
    await agent.reconcile();
    await expect
      .poll(async () => (await agent.status()).containers.some((entry) => entry.id === ID))
      .toBe(false);
    await agent.close();
  });

  it(`keeps at most ${MAX_STOPPED_STATUSES} stopped containers in status, all shown exited`, async () => {
    const ids = Array.from({ length: MAX_STOPPED_STATUSES + 2 }, (_, index) =>
      index.toString(16).padStart(64, '0'),
    );
    const { agent, fake } = setup(ids.map((id) => container(id, MANAGED)));
    await agent.start();
    await agent.idle();
    for (const id of ids) fake.stop(id);
    await agent.reconcile();
    const { containers } = await agent.status();
    expect(containers).toHaveLength(MAX_STOPPED_STATUSES);
    expect(containers.every((entry) => entry.state === 'exited')).toBe(true);
    await agent.close();
  });

  it("names the agent's default rotation when no dso.rotate label sets one", async () => {
    const { agent } = setup([container(ID, MANAGED)], {
      rotation: { defaultPolicy: 'signal', signal: 'SIGUSR1' },
    });
    await agent.start();
    await agent.idle();
    expect((await agent.status()).containers[0]?.rotation).toBe(
      "signal SIGUSR1 (the agent's default: rotation in dso.yaml)",
    );
    await agent.close();
  });

  it('tells, after an agent restart, when the files it finds up to date were delivered', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dso-status-'));
    try {
      const statePath = join(dir, 'agent-state.json');
      const engine = createFakeRuntime({ containers: [container(ID, MANAGED)] });
      const first = setup([], { runtime: engine.runtime, statePath });
      await first.agent.start();
      await first.agent.idle();
      const delivered = (await first.agent.status()).containers[0]?.deliveredAt;
      expect(delivered).toBeTypeOf('number');
      await first.agent.close();

      const second = setup([], { runtime: engine.runtime, statePath });
      await second.agent.start();
      await second.agent.idle();
      const status = (await second.agent.status()).containers[0];
      expect(status?.lastAction.outcome).toBe('up-to-date');
      expect(status?.deliveredAt).toBe(delivered);
      await second.agent.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
