import { createAuditLog, parseAuditLine } from '@dso/core';
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from './agent.js';
import { fixFor, LITERAL_REFERENCE_CODE } from './literal-references.js';
import { container, setup } from './test-support/agent-fixture.js';

// The agent with a fake engine and a real audit log (its strict schema): a container started
// with dso:// text in its environment (a plain compose up after dso up) is told in status, as
// an event, a warn log line and an audit line, once.

const ID = 'd4d4d4d4'.repeat(8);
const COMPOSE_LABELS = {
  'com.docker.compose.project': 'shop',
  'com.docker.compose.service': 'web',
  'com.docker.compose.project.config_files': '/srv/shop/compose.yaml',
  'com.docker.compose.project.working_dir': '/srv/shop',
};

function agentWith() {
  const lines: string[] = [];
  let audit: ReturnType<typeof createAuditLog> | undefined;
  const context = setup([], {
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

describe('literal references', () => {
  it('reports an unmanaged container started with dso:// and dsofile:// text in status, an event, a warn line and one audit line, with the dso up command', async () => {
    const { agent, fake, events, records, lines } = agentWith();
    await agent.start();
    await agent.idle();
    const web = {
      ...container(ID, COMPOSE_LABELS),
      name: 'shop_web_1',
      envReferences: [
        { name: 'API_TOKEN', value: 'dso://app/api/token' },
        { name: 'DB_PASSWORD_FILE', value: 'dsofile://app/db' },
      ],
    };
    fake.start(web);
    const fix =
      'recreate it with dso up instead of docker compose up: dso up -d -p shop -f /srv/shop/compose.yaml web';
    await expect
      .poll(async () => (await agent.status()).containers.find((entry) => entry.id === ID))
      .toMatchObject({
        name: 'shop_web_1',
        lastAction: {
          outcome: 'failed',
          code: LITERAL_REFERENCE_CODE,
          message: expect.stringContaining(fix),
        },
        literalReferences: [
          { variable: 'API_TOKEN', reference: 'dso://app/api/token' },
          { variable: 'DB_PASSWORD_FILE', reference: 'dsofile://app/db' },
        ],
      });
    // A restart is not told again; a reconciliation does not forget it.
    fake.start(web);
    await agent.reconcile();
    await agent.idle();
    expect((await agent.status()).containers.map(({ id }) => id)).toContain(ID);
    const told = events.filter((event) => event.type === 'literal-references');
    expect(told).toEqual([
      expect.objectContaining({
        containerId: ID,
        variables: ['API_TOKEN', 'DB_PASSWORD_FILE'],
        code: LITERAL_REFERENCE_CODE,
        message: expect.stringContaining(
          'container shop_web_1 was started with DSO references as literal text in its environment (API_TOKEN, DB_PASSWORD_FILE)',
        ),
      }),
    ]);
    expect(records().filter((record) => record.code === LITERAL_REFERENCE_CODE)).toEqual([
      expect.objectContaining({
        action: 'inject',
        outcome: 'refused',
        containerId: ID,
        containerName: 'shop_web_1',
        reason: expect.stringContaining(fix),
      }),
    ]);
    expect(
      lines().filter((line) => line.code === LITERAL_REFERENCE_CODE && line.level === 40),
    ).toHaveLength(1);
    // Gone: forgotten.
    fake.remove(ID);
    await expect
      .poll(async () => (await agent.status()).containers.some((entry) => entry.id === ID))
      .toBe(false);
    await agent.close();
  });

  it('says nothing about a container without reference text', async () => {
    const { agent, fake, events } = agentWith();
    await agent.start();
    fake.start({ ...container(ID, COMPOSE_LABELS), envReferences: [] });
    await agent.reconcile();
    await agent.idle();
    expect(events.filter((event) => event.type === 'literal-references')).toEqual([]);
    expect((await agent.status()).containers).toEqual([]);
    await agent.close();
  });
});

describe('fixFor', () => {
  it('leaves out the override dso up handed compose, and quotes what needs it', () => {
    expect(
      fixFor({
        'com.docker.compose.project': 'my shop',
        'com.docker.compose.project.config_files':
          "/srv/it's/compose.yaml,/tmp/dso-up-Ab12/dso-up.override.yaml",
      }),
    ).toBe(
      "recreate it with dso up instead of docker compose up: dso up -d -p 'my shop' -f '/srv/it'\\''s/compose.yaml'",
    );
  });

  it('goes to the working folder first when compose recorded relative files', () => {
    expect(
      fixFor({
        'com.docker.compose.project': 'shop',
        'com.docker.compose.project.config_files': 'compose.yaml',
        'com.docker.compose.project.working_dir': '/srv/shop',
        'com.docker.compose.service': 'web',
      }),
    ).toBe(
      'recreate it with dso up instead of docker compose up: cd /srv/shop && dso up -d -p shop -f compose.yaml web',
    );
  });

  it('says what to do for a container compose did not make', () => {
    expect(fixFor({})).toContain(
      'from a compose file with dso up -d, or with the labels dso.enable=true',
    );
  });
});
