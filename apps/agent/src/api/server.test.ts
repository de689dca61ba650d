import { connect, type Socket } from 'node:net';
import { API_MAX_CONNECTIONS } from '@dso/core';
import { describe, expect, it, vi } from 'vitest';
import { fakeAgent, useApiTestServer } from './test-support/api-fixture.js';

// The API socket's connection cap, with real sockets: idle or slow callers never lock out
// `dso status`; only callers that all have a request in progress make it busy, and then the
// answer says so with its code.

let socketPath: string;
const { start, call } = useApiTestServer((context) => {
  ({ socketPath } = context);
});

/** Holds `count` connections that send nothing; each one the server closes is re-opened. */
function holdIdle(count: number): () => void {
  const held = new Set<Socket>();
  let holding = true;
  const hold = () => {
    const socket = connect({ path: socketPath });
    held.add(socket);
    socket.on('error', () => undefined); // a cut connection is what the server does here
    socket.on('close', () => {
      held.delete(socket);
      if (holding) hold();
    });
  };
  for (let index = 0; index < count; index++) hold();
  return () => {
    holding = false;
    for (const socket of held) socket.destroy();
  };
}

describe('startApiServer: connections', () => {
  it('answers GET /v1/status 21 times in 21 with 100 idle connections held open on the socket', async () => {
    await start();
    const release = holdIdle(100);
    try {
      const statuses: number[] = [];
      for (let attempt = 0; attempt < 21; attempt++) {
        statuses.push((await call('GET', '/v1/status')).status);
      }
      expect(statuses).toEqual(Array(21).fill(200));
    } finally {
      release();
    }
  });

  it('answers 503 DSO_AGENT_API_BUSY, saying what to do, when every connection has a request in progress', async () => {
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((resolve) => {
      finish = resolve;
    });
    let started = 0;
    await start({
      agent: fakeAgent({
        rotate: async () => {
          started++;
          await finished;
          return { containers: 0, secrets: 0 };
        },
      }).agent,
    });
    const pending = Array.from({ length: API_MAX_CONNECTIONS }, () => call('POST', '/v1/rotate'));
    try {
      // Once all of them are in progress (none idle to close), a new caller is answered busy.
      await vi.waitFor(() => expect(started).toBe(API_MAX_CONNECTIONS));
      const busy = await call('GET', '/v1/status');
      expect(busy.status).toBe(503);
      expect(busy.headers.connection).toBe('close');
      expect(busy.json).toMatchObject({ code: 'DSO_AGENT_API_BUSY' });
      expect((busy.json as { error: string }).error).toMatch(/try again/);
    } finally {
      finish();
    }
    expect((await Promise.all(pending)).map((answer) => answer.status)).toEqual(
      Array(API_MAX_CONNECTIONS).fill(200),
    );
    expect((await call('GET', '/v1/status')).status).toBe(200);
  });
});
