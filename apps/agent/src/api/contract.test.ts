import { request as httpRequest } from 'node:http';
import { AGENT_API_ROUTES, agentApiErrorSchema } from '@dso/core';
import { describe, expect, it } from 'vitest';
import type { AgentEvent } from '../agent.js';
import {
  callApi,
  eventually,
  fakeAgent,
  json,
  useApiTestServer,
} from './test-support/api-fixture.js';

// The server against the contract in @dso/core: every answer parses with its route's schema
// and loses nothing in the parse (no field the contract does not name), so a change on one side
// only fails here until the other follows.

let socketPath: string;
const { start } = useApiTestServer((context) => {
  ({ socketPath } = context);
});

describe('the API server and the contract', () => {
  it('answers every JSON route with exactly what its schema describes', async () => {
    await start({
      resolveAllow: ['dso://**', 'dso://vault:**'],
      providers: () => [
        { name: 'local', type: 'local', state: { status: 'ready', pid: 7, breaker: null } },
        { name: 'env', type: 'env' },
      ],
    });
    const calls = {
      status: {},
      reconcile: {},
      rotate: json({ containerId: 'a'.repeat(12) }),
      resolve: json({ references: ['dso://app/db', 'dso://vault:team/token'] }),
      health: {},
    } as const;
    for (const [name, options] of Object.entries(calls)) {
      const route = AGENT_API_ROUTES[name as keyof typeof calls];
      const answer = await callApi(socketPath, route.method, route.path, options);
      expect(answer.status, name).toBe(route.status);
      expect(answer.headers['content-type'], name).toBe(route.contentType);
      expect(route.response.parse(answer.json), name).toEqual(answer.json);
    }
  });

  it('answers errors as the contract describes them', async () => {
    await start();
    const answers = [
      await callApi(socketPath, 'GET', '/v1/nothing'),
      await callApi(socketPath, 'GET', AGENT_API_ROUTES.rotate.path),
      await callApi(socketPath, 'POST', AGENT_API_ROUTES.rotate.path, { body: 'x' }),
      await callApi(socketPath, 'POST', AGENT_API_ROUTES.resolve.path, json({ references: [] })),
      await callApi(
        socketPath,
        'POST',
        AGENT_API_ROUTES.resolve.path,
        json({ references: ['dso://a'] }),
      ),
    ];
    expect(answers.map(({ status }) => status)).toEqual([404, 405, 400, 400, 403]);
    for (const answer of answers) {
      expect(agentApiErrorSchema.parse(answer.json)).toEqual(answer.json);
    }
  });

  it('streams event lines the contract describes, one of each type the agent emits', async () => {
    const fake = fakeAgent();
    const server = await start({ agent: fake.agent });
    const events: AgentEvent[] = [
      { type: 'delivered', at: 1, containerId: 'c', trigger: 'changed', files: 2, method: 'host' },
      {
        type: 'delivery-failed',
        at: 2,
        containerId: 'c',
        trigger: 'started',
        code: 'DSO_PROVIDER_NOT_FOUND',
        reference: 'dsofile://app/db',
        retry: false,
      },
      { type: 'rotated', at: 3, containerId: 'c', policy: 'signal' },
      {
        type: 'rotation-failed',
        at: 4,
        containerId: 'c',
        policy: 'replace',
        code: 'DSO_AGENT_REPLACE_UNHEALTHY',
        rolledBack: true,
      },
      { type: 'replaced', at: 5, containerId: 'c', newContainerId: 'd' },
    ];
    const lines: unknown[] = [];
    let contentType: string | undefined;
    const ended = new Promise<void>((resolve, reject) => {
      httpRequest(
        { socketPath, method: 'GET', path: AGENT_API_ROUTES.events.path, agent: false },
        (response) => {
          contentType = response.headers['content-type'];
          let buffered = '';
          response.setEncoding('utf8').on('data', (text: string) => {
            buffered += text;
            for (let end = buffered.indexOf('\n'); end >= 0; end = buffered.indexOf('\n')) {
              lines.push(JSON.parse(buffered.slice(0, end)));
              buffered = buffered.slice(end + 1);
            }
          });
          response.on('end', () => resolve());
        },
      )
        .on('error', reject)
        .end();
    });
    await eventually(() => lines.length === 1);
    for (const listener of fake.listeners) for (const event of events) listener(event);
    await eventually(() => lines.length === 1 + events.length);
    await server.close();
    await ended;
    expect(contentType).toBe(AGENT_API_ROUTES.events.contentType);
    for (const line of lines) {
      expect(AGENT_API_ROUTES.events.response.parse(line)).toEqual(line);
    }
    expect(lines.slice(1)).toEqual(events);
  });
});
