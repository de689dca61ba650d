// The agent's deliveries, wired as createAgent wires them, with a provider that never answers:
// it costs only the containers that reference it.
import type { SecretProvider } from '@dso/provider-sdk';
import { describe, expect, it } from 'vitest';
import { CANARY, container, createProvider, setup } from './test-support/agent-fixture.js';

/** A provider whose calls never settle (until their caller gives up), counting them. */
function hungProvider() {
  const state = { calls: 0 };
  const provider: SecretProvider = {
    name: 'hung',
    capabilities: { list: false, watch: false, probe: false, health: false },
    resolve: (_request, options) => {
      state.calls += 1;
      return new Promise((_, reject) => {
        options?.signal?.addEventListener('abort', () => reject(options.signal?.reason), {
          once: true,
        });
      });
    },
    async close() {},
  };
  return { provider, state };
}

describe('createAgent: bulkheads', () => {
  it('delivers to containers on a healthy provider while as many as its engine slots wait on a hung one', async () => {
    const hung = hungProvider();
    const stuck = [0, 1, 2, 3].map((index) =>
      container(`hung-${index}`, {
        'dso.enable': 'true',
        'dso.file.db': `dsofile://hung:app/hung-${index}`,
      }),
    );
    const healthy = Array.from({ length: 20 }, (_, index) =>
      container(`ok-${index}`, { 'dso.enable': 'true', 'dso.file.db': 'dsofile://app/db' }),
    );
    const { agent, fake } = setup([...stuck, ...healthy], {
      // Four engine slots, one per hung container: before, they held all four.
      concurrency: 4,
      providers: new Map([
        ['local', createProvider({ 'app/db': CANARY })],
        ['hung', hung.provider],
      ]),
      shutdownGraceMs: 0,
    });
    await agent.start();
    await expect.poll(() => fake.writes.length).toBe(20);
    expect(new Set(fake.writes.map((write) => write.id))).toEqual(
      new Set(healthy.map((one) => one.id)),
    );
    expect(fake.writes.every((write) => write.contents[0] === CANARY)).toBe(true);
    // The hung ones are still waiting on their provider, holding no slot.
    expect(hung.state.calls).toBe(4);
    expect(agent.status().queue).toMatchObject({ inFlight: 4 });
    await agent.close();
  });
});
