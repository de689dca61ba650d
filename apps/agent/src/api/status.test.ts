import { agentApiStatusSchema } from '@dso/core';
import { describe, expect, it } from 'vitest';
import type { AgentStatus } from '../agent.js';
import { toApiStatus } from './status.js';

const STATUS: AgentStatus = {
  startedAt: 1_700_000_000_000,
  containers: [
    {
      id: 'a'.repeat(64),
      name: 'web-1',
      state: 'exited',
      rotation: 'signal SIGHUP',
      files: [{ name: 'db', reference: 'dsofile://app/db', provider: 'local', version: '3' }],
      deliveredAt: 1_700_000_001_000,
      lastAction: { trigger: 'started', at: 1_700_000_001_000, outcome: 'delivered' },
      lastFailure: {
        trigger: 'startup',
        at: 1_700_000_000_500,
        code: 'DSO_PROVIDER_NOT_FOUND',
        reference: 'dsofile://app/db',
        message: 'could not resolve dsofile://app/db: no secret at app/db; store the secret',
      },
    },
  ],
  queue: { depth: 0, inFlight: 0, shed: 0 },
  cache: { entries: 0, hits: 0, misses: 0, staleServed: 0 },
};

describe('toApiStatus', () => {
  it("sends a container's name, state, rotation policy and last failure, as the contract has them", () => {
    const sent = toApiStatus(STATUS, []);
    expect(sent.containers[0]).toEqual(STATUS.containers[0]);
    expect(agentApiStatusSchema.parse(sent)).toEqual(sent);
  });

  it('sends a container the agent has not inspected without name or state', () => {
    const status = structuredClone(STATUS);
    status.containers = [
      {
        id: 'b'.repeat(64),
        lastAction: {
          trigger: 'startup',
          at: 1,
          outcome: 'failed',
          code: 'DSO_DOCKER_UNREACHABLE',
        },
      },
    ];
    expect(Object.keys(toApiStatus(status, []).containers[0]!)).toEqual(['id', 'lastAction']);
  });
});
