import { createAuditLog, parseAuditLine } from '@dso/core';
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from './agent.js';
import { notEnabledWarnings } from './label-warnings.js';
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

  it.each([
    [{ 'dso.enabel': 'true', 'dso.file.db': 'dsofile://app/db' }, 'dso.enabel', 'dso.enable'],
    [{ 'dso.enabled': 'true' }, 'dso.enabled', 'dso.enable'],
    [{ 'dso.enable': 'yes', 'dso.file.db': 'dsofile://app/db' }, 'dso.enable', 'dso.enable=true'],
    [{ 'dso.file.db': 'dsofile://app/db' }, 'dso.enable', 'dso.enable=true'],
  ])(
    'reports a started container that is not enabled (%o) once, with the label meant, in status until it is removed',
    async (labels, label, suggestion) => {
      const { agent, fake, events, records } = agentWith({});
      await agent.start();
      const other = 'd4d4d4d4'.repeat(8);
      fake.start({ ...container(other, labels), name: 'typo-1' });
      await expect
        .poll(async () => (await agent.status()).containers.find((entry) => entry.id === other))
        .toMatchObject({
          name: 'typo-1',
          state: 'running',
          lastAction: { outcome: 'failed', code: expect.stringMatching(/^DSO_LABEL_/) },
          warnings: [expect.objectContaining({ label, suggestion })],
        });
      // Restarted, reconciled: told once, still listed; stopped: `exited`.
      fake.stop(other);
      fake.start({ ...container(other, labels), name: 'typo-1' });
      await agent.reconcile();
      await agent.idle();
      fake.stop(other);
      await agent.reconcile();
      await expect
        .poll(
          async () => (await agent.status()).containers.find((entry) => entry.id === other)?.state,
        )
        .toBe('exited');
      const told = events.filter((event) => event.type === 'label-warning');
      expect(told).toEqual([
        expect.objectContaining({ containerId: other, containerName: 'typo-1', label, suggestion }),
      ]);
      expect(records().filter((record) => record.containerId === other)).toEqual([
        expect.objectContaining({
          outcome: 'refused',
          containerName: 'typo-1',
          code: told[0]!.code,
        }),
      ]);
      // Nothing was delivered to it.
      expect(fake.writes.filter((write) => write.id === other)).toEqual([]);
      fake.remove(other);
      await expect
        .poll(async () => (await agent.status()).containers.some((entry) => entry.id === other))
        .toBe(false);
      await agent.close();
    },
  );

  it('reports an unmanaged container that was running before the agent started', async () => {
    const other = 'e5e5e5e5'.repeat(8);
    const { agent, fake } = agentWith(MANAGED);
    // Started before the agent (and its events stream): only the start-up listing sees it.
    fake.start({ ...container(other, { 'dso.enabel': 'true' }), name: 'early' });
    await agent.start();
    await agent.idle();
    expect((await agent.status()).containers.find((entry) => entry.id === other)?.warnings).toEqual(
      [expect.objectContaining({ label: 'dso.enabel', suggestion: 'dso.enable' })],
    );
    await agent.close();
  });

  it('leaves containers alone that have no DSO label, or opt out with dso.enable=false', () => {
    expect(notEnabledWarnings({})).toEqual([]);
    expect(notEnabledWarnings({ 'dso.test': 'run-1', 'com.example': 'x' })).toEqual([]);
    expect(notEnabledWarnings({ 'dso.enable': 'false', 'dso.file.x': 'dsofile://a/b' })).toEqual(
      [],
    );
    expect(notEnabledWarnings({ 'dso.enable': 'true', 'dso.file.x': 'dsofile://a/b' })).toEqual([]);
    const [missing] = notEnabledWarnings({ 'dso.file.x': 'dsofile://a/b' });
    expect(missing).toMatchObject({
      code: 'DSO_LABEL_NOT_ENABLED',
      message: expect.stringContaining('add the label dso.enable=true'),
    });
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
