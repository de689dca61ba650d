import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type AuditLog, createAuditLog, createMemoryCache, parseAuditLine } from '@dso/core';
import { DockerRuntimeError, type DockerRuntimeErrorCode } from '@dso/docker-runtime';
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from './agent.js';
import { failureMessage } from './outcomes.js';
import { CANARY, container, MANAGED, setup, versioned } from './test-support/agent-fixture.js';

// Every refusal is one audit line: the agent and the fake engine, the real audit log (its
// strict schema and redactor), and the lines read back.

const ID = 'a1b2c3d4'.repeat(8);

/** The agent with a real audit log whose lines the test reads back. */
function auditedAgent(labels: Record<string, string>, options: { tmpfs?: string[] } = {}) {
  const lines: string[] = [];
  const details = {
    ...container(ID, labels),
    name: 'web-1',
    tmpfs: options.tmpfs ?? ['/run/secrets'],
  };
  let audit: AuditLog | undefined;
  // The agent's redactor is made by setup: the log is made with it once it exists.
  const context = setup([details], {
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
  return { ...context, records: () => lines.map((line) => parseAuditLine(line)) };
}

/** The engine refuses every write with `code` (as the real one does for that container). */
function refuseWrites(
  fake: ReturnType<typeof setup>['fake'],
  code: DockerRuntimeErrorCode,
  message: string,
) {
  fake.runtime.writeFiles = async () => {
    throw new DockerRuntimeError(code, message, { containerId: ID });
  };
}

describe('outcomes: every refusal audited once', () => {
  it.each([
    ['DSO_LABEL_INVALID', { 'dso.enable': 'true', 'dso.file.x': 'not-a-reference' }, undefined],
    ['DSO_DOCKER_TARGET_NOT_TMPFS', MANAGED, { tmpfs: [] as string[] }],
    ['DSO_DOCKER_TARGET_CONFLICT', MANAGED, undefined],
    ['DSO_DOCKER_NO_SHELL', MANAGED, undefined],
  ] as const)(
    'writes one refused line for %s, not one per reconciliation',
    async (code, labels, options) => {
      const { agent, fake, records } = auditedAgent(labels, options);
      if (code === 'DSO_DOCKER_TARGET_CONFLICT' || code === 'DSO_DOCKER_NO_SHELL') {
        refuseWrites(fake, code, `the engine refused it (${code}): change the container`);
      }
      await agent.start();
      await agent.idle();
      for (let round = 0; round < 3; round++) {
        await agent.reconcile();
        await agent.idle();
      }
      const refused = records().filter((record) => record.outcome === 'refused');
      expect(refused).toHaveLength(1);
      expect(refused[0]).toMatchObject({
        actor: { kind: 'agent' },
        action: 'inject',
        containerId: ID,
        containerName: 'web-1',
        outcome: 'refused',
        code,
        reason: expect.any(String),
      });
      expect(refused[0]!.reason!.length).toBeGreaterThan(10);
      await agent.close();
    },
  );

  it('audits a different refusal of the same container again, and the same one again after a delivery', async () => {
    const { agent, fake, records } = auditedAgent(MANAGED);
    const write = fake.runtime.writeFiles;
    refuseWrites(fake, 'DSO_DOCKER_NO_SHELL', 'no shell in the image');
    await agent.start();
    await agent.idle();
    refuseWrites(fake, 'DSO_DOCKER_TARGET_CONFLICT', 'the target is a file');
    await agent.reconcile();
    await agent.idle();
    fake.runtime.writeFiles = write;
    await agent.reconcile();
    await agent.idle();
    refuseWrites(fake, 'DSO_DOCKER_TARGET_CONFLICT', 'the target is a file');
    fake.start({
      ...container(ID, MANAGED),
      name: 'web-1',
      startedAt: '2026-11-27T11:00:00.000000000Z',
    });
    await agent.idle();
    await expect
      .poll(() =>
        records()
          .filter((record) => record.outcome === 'refused')
          .map((record) => record.code),
      )
      .toEqual(['DSO_DOCKER_NO_SHELL', 'DSO_DOCKER_TARGET_CONFLICT', 'DSO_DOCKER_TARGET_CONFLICT']);
    expect(records().filter((record) => record.outcome === 'ok').length).toBeGreaterThan(0);
    await agent.close();
  });

  it('writes no refused line for a failure that may pass, and never a value in a reason', async () => {
    const { agent, fake, records, output, redactor } = auditedAgent(MANAGED);
    // Held for the whole test: a value the agent no longer holds is forgotten by its redactor.
    redactor.register(CANARY);
    fake.failing.add('write');
    await agent.start();
    await agent.idle();
    expect(records().filter((record) => record.outcome === 'refused')).toEqual([]);
    fake.failing.delete('write');
    // A message that carries a value by mistake: the audit line has it redacted.
    refuseWrites(fake, 'DSO_DOCKER_NO_SHELL', `no shell; saw ${CANARY}`);
    fake.start({
      ...container(ID, MANAGED),
      name: 'web-1',
      startedAt: '2026-11-27T12:00:00.000000000Z',
    });
    await expect
      .poll(() => records().filter((record) => record.outcome === 'refused'))
      .toHaveLength(1);
    expect(JSON.stringify(records())).not.toContain(CANARY);
    expect(output()).not.toContain(CANARY);
    await agent.close();
  });
});

describe('outcomes: what to do, in status', () => {
  it('shows the message of every failure: one that may pass says the agent tries again', async () => {
    const { agent, fake } = auditedAgent(MANAGED);
    fake.failing.add('write');
    await agent.start();
    await agent.idle();
    expect(agent.status().containers[0]?.lastAction).toMatchObject({ outcome: 'failed' });
    expect(agent.status().containers[0]?.lastAction.message).toMatch(/the agent tries again\)$/);
    fake.failing.delete('write');
    const fix = 'no CAP_DAC_OVERRIDE: leave the tmpfs root-owned, or --cap-add DAC_OVERRIDE';
    refuseWrites(fake, 'DSO_DOCKER_TARGET_NOT_WRITABLE', fix);
    fake.start({
      ...container(ID, MANAGED),
      name: 'web-1',
      startedAt: '2026-11-27T13:00:00.000000000Z',
    });
    await expect
      .poll(() => agent.status().containers[0]?.lastAction)
      .toMatchObject({ outcome: 'failed', code: 'DSO_DOCKER_TARGET_NOT_WRITABLE', message: fix });
    await agent.close();
  });
});

describe('outcomes: names, state, reasons and order for the operator', () => {
  it('names the container and its state in status and events, and its state once it died', async () => {
    const { agent, fake } = auditedAgent({ ...MANAGED, 'dso.rotate': 'signal' });
    const events: AgentEvent[] = [];
    agent.subscribe((event) => events.push(event));
    await agent.start();
    await agent.idle();
    expect(agent.status().containers[0]).toMatchObject({
      id: ID,
      name: 'web-1',
      state: 'running',
      rotation: 'signal',
    });
    fake.stop(ID);
    await expect.poll(() => agent.status().containers[0]?.state).toBe('exited');
    fake.start({ ...container(ID, MANAGED), name: 'web-1', startedAt: '2026-11-27T13:00:00Z' });
    await expect
      .poll(() => events.find((event) => event.type === 'delivered' && event.trigger === 'started'))
      .toMatchObject({ containerId: ID, containerName: 'web-1', containerState: 'running' });
    await agent.close();
  });

  it('gives a failure of a provider its reason and fix in status and in the event, and keeps the last failure after a success', async () => {
    const { agent, fake } = auditedAgent({ ...MANAGED, 'dso.file.gone': 'dsofile://app/gone' });
    const events: AgentEvent[] = [];
    agent.subscribe((event) => events.push(event));
    await agent.start();
    await agent.idle();
    const failed = agent.status().containers[0]!;
    expect(failed).toMatchObject({ name: 'web-1', lastAction: { outcome: 'failed' } });
    // The agent's message, the provider's reason, and what to do.
    expect(failed.lastAction.message).toBe(
      'could not resolve dsofile://app/gone from provider local (the default for references without `provider:`): no secret at app/gone; store the secret in the provider named (dso secret set <path> for the local vault) or correct the reference in the label (`provider:` before the path names another provider), then restart the container or run dso reconcile',
    );
    expect(failed.lastFailure).toEqual({
      trigger: 'startup',
      at: failed.lastAction.at,
      code: 'DSO_PROVIDER_NOT_FOUND',
      reference: 'dsofile://app/gone',
      message: failed.lastAction.message,
    });
    expect(events.find((event) => event.type === 'delivery-failed')).toMatchObject({
      containerName: 'web-1',
      code: 'DSO_PROVIDER_NOT_FOUND',
      message: failed.lastAction.message,
    });
    expect(JSON.stringify(agent.status())).not.toContain(CANARY);
    // Fixed: delivered, and the failure is still there to read.
    fake.start({ ...container(ID, MANAGED), name: 'web-1', startedAt: '2026-11-27T13:00:00Z' });
    await expect.poll(() => agent.status().containers[0]?.lastAction.outcome).toBe('delivered');
    expect(agent.status().containers[0]?.lastFailure?.code).toBe('DSO_PROVIDER_NOT_FOUND');
    await agent.close();
  });

  it("names only the code of an error that is not DSO's own (its message may quote anything)", () => {
    const message = failureMessage(new Error(`backend said ${CANARY}`));
    expect(message).toBe("the delivery failed (DSO_ERROR): the agent's log has the details");
  });

  it('sends delivered before the rotated of the same new version', async () => {
    const values: Record<string, string> = { 'app/db': 'v1', 'app/cfg': '{"token":"t"}' };
    const { provider, state } = versioned(values);
    const { agent } = setup([container(ID, MANAGED)], {
      providers: new Map([['local', provider]]),
      cache: createMemoryCache({ ttlMs: 0 }),
      rotation: { jitterMs: 0 },
    });
    const events: string[] = [];
    agent.subscribe((event) => events.push(event.type));
    await agent.start();
    await agent.idle();
    values['app/db'] = 'v2';
    state.version = 2;
    await agent.reconcile();
    await agent.idle();
    await expect.poll(() => events).toContain('rotated');
    expect(events).toEqual(['delivered', 'delivered', 'rotated']);
    await agent.close();
  });

  it('lists the files a restarted agent finds delivered (from its state file), not none', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'dso-outcomes-'));
    try {
      const statePath = join(dir, 'agent-state.json');
      const first = setup([{ ...container(ID, MANAGED), name: 'web-1' }], { statePath });
      await first.agent.start();
      await first.agent.idle();
      await first.agent.close();
      const second = setup([{ ...container(ID, MANAGED), name: 'web-1' }], { statePath });
      await second.agent.start();
      await second.agent.idle();
      expect(second.fake.writes).toEqual([]);
      const [status] = second.agent.status().containers;
      expect(status).toMatchObject({
        name: 'web-1',
        lastAction: { outcome: 'up-to-date', trigger: 'startup' },
      });
      expect(status?.files?.map((file) => [file.name, file.reference, file.version])).toEqual([
        ['db', 'dsofile://app/db', '1'],
        ['token', 'dsofile://app/cfg#token', '1'],
      ]);
      await second.agent.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
