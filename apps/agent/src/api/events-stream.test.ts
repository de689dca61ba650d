import { request as httpRequest } from 'node:http';
import { createRedactor } from '@dso/core';
import { describe, expect, it } from 'vitest';
import {
  CANARY_EVENTS,
  eventually,
  fakeAgent,
  useApiTestServer,
} from './test-support/api-fixture.js';

let socketPath: string;
const { start, call } = useApiTestServer((context) => {
  ({ socketPath } = context);
});

describe('startApiServer: GET /v1/events', () => {
  it('streams one JSON line per agent event until the server closes, never a value', async () => {
    const fake = fakeAgent();
    const redactor = createRedactor();
    redactor.register(`${CANARY_EVENTS}`);
    const server = await start({ agent: fake.agent, redactor });
    const lines: Array<Record<string, unknown>> = [];
    const ended = new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        { socketPath, method: 'GET', path: '/v1/events', agent: false },
        (res) => {
          expect(res.statusCode).toBe(200);
          expect(res.headers['content-type']).toContain('application/x-ndjson');
          let buffered = '';
          res.setEncoding('utf8').on('data', (text: string) => {
            buffered += text;
            for (let index = buffered.indexOf('\n'); index >= 0; index = buffered.indexOf('\n')) {
              lines.push(JSON.parse(buffered.slice(0, index)) as Record<string, unknown>);
              buffered = buffered.slice(index + 1);
            }
          });
          res.on('end', () => resolve());
        },
      );
      req.on('error', reject);
      req.end();
    });
    await eventually(() => lines.length === 1);
    expect(lines[0]).toMatchObject({ type: 'subscribed' });
    for (const listener of fake.listeners) {
      listener({
        type: 'delivery-failed',
        at: 1,
        containerId: 'c1',
        trigger: 'started',
        code: 'DSO_PROVIDER_NOT_FOUND',
        // A reference never holds a value; if something did, the redactor still blanks it.
        reference: `dsofile://app/${CANARY_EVENTS}`,
        retry: false,
      });
    }
    await eventually(() => lines.length === 2);
    expect(lines[1]).toMatchObject({ type: 'delivery-failed', code: 'DSO_PROVIDER_NOT_FOUND' });
    expect(JSON.stringify(lines)).not.toContain(CANARY_EVENTS);
    await server.close();
    await ended;
    expect(fake.listeners.size).toBe(0);
  });
});

describe('startApiServer: GET /v1/events limits', () => {
  it('refuses a ninth stream with 503, so followers cannot take every connection', async () => {
    const server = await start();
    const open = await Promise.all(
      Array.from(
        { length: 8 },
        () =>
          new Promise<void>((resolve, reject) => {
            const req = httpRequest(
              { socketPath, method: 'GET', path: '/v1/events', agent: false },
              (res) => {
                res.resume();
                resolve();
              },
            );
            req.on('error', reject);
            req.end();
          }),
      ),
    );
    expect(open).toHaveLength(8);
    const refused = await call('GET', '/v1/events');
    expect(refused.status).toBe(503);
    expect(refused.json).toMatchObject({ code: 'DSO_AGENT_API_BUSY' });
    expect((await call('GET', '/v1/status')).status).toBe(200);
    await server.close();
  });
});
