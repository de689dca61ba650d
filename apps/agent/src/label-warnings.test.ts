import { createAuditLog, parseAuditLine } from '@dso/core';
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from './agent.js';
import { container, MANAGED, setup } from './test-support/agent-fixture.js';

// The agent with a fake engine and a real audit log (its strict schema): a label typo is seen
// in status, as an event and as an audit line, once.

const ID = 'c3c3c3c3'.repeat(8);

function agentWith(labels: Record<string, string>) {
  const lines: string[] = [];
  let audit: ReturnType<typeof createAuditLog> | undefined;
  const context = setup([{ ...container(ID, labels), name: 'web-1' }], {
    audit: {
      record: (entry) => audit?.record(entry),
      close: async () => {},
      [Symbol.asyncDispose]: async () => {},
    },
  });
  audit = createAuditLog({
    destination: { write: (line: string) => lines.push(line) },
    redactor: context.redactor,
  });
  const events: AgentEvent[] = [];
  context.agent.subscribe((event) => events.push(event));
  return { ...context, events, records: () => lines.map((line) => parseAuditLine(line)) };
}

describe('label warnings', () => {
  it('reports a typo label (dso.flie.x) in status, an event and one audit line, with the suggestion', async () => {
    const { agent, events, records } = agentWith({
      'dso.enable': 'true',
      'dso.flie.x': 'dsofile://app/x',
    });
    await agent.start();
    await agent.idle();
    for (let round = 0; round < 2; round++) {
      await agent.reconcile();
      await agent.idle();
    }
    const status = (await agent.status()).containers.find((entry) => entry.id === ID);
    expect(status?.warnings).toEqual([
      expect.objectContaining({
        code: 'DSO_LABEL_UNKNOWN',
        label: 'dso.flie.x',
        suggestion: 'dso.file.x',
      }),
    ]);
    // Nothing else to deliver: the row says why.
    expect(status?.lastAction).toMatchObject({ outcome: 'failed', code: 'DSO_LABEL_UNKNOWN' });
    expect(events.filter((event) => event.type === 'label-warning')).toEqual([
      expect.objectContaining({ containerId: ID, label: 'dso.flie.x', suggestion: 'dso.file.x' }),
    ]);
    const refused = records().filter((record) => record.code === 'DSO_LABEL_UNKNOWN');
    expect(refused).toEqual([
      expect.objectContaining({
        outcome: 'refused',
        containerId: ID,
        containerName: 'web-1',
        reason: expect.stringContaining('did you mean dso.file.x?'),
      }),
    ]);
    await agent.close();
  });

  it('keeps the warning beside a delivery that succeeded', async () => {
    const { agent } = agentWith({ ...MANAGED, 'dso.ower': '0:33' });
    await agent.start();
    await agent.idle();
    const status = (await agent.status()).containers.find((entry) => entry.id === ID);
    expect(status?.lastAction.outcome).toBe('delivered');
    expect(status?.warnings).toEqual([
      expect.objectContaining({ label: 'dso.ower', suggestion: 'dso.owner' }),
    ]);
    await agent.close();
  });

  it('has no warnings for correct labels', async () => {
    const { agent, events } = agentWith(MANAGED);
    await agent.start();
    await agent.idle();
    const status = (await agent.status()).containers.find((entry) => entry.id === ID);
    expect(status?.warnings).toBeUndefined();
    expect(events.some((event) => event.type === 'label-warning')).toBe(false);
    await agent.close();
  });
});
