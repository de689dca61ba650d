import { describe, expect, it } from 'vitest';
import { fakeAgent, json, useApiTestServer } from './test-support/api-fixture.js';

const { start, call } = useApiTestServer(() => {});

describe('startApiServer: POST /v1/check', () => {
  const check = (references: unknown) => call('POST', '/v1/check', json({ references }));

  it('answers each reference, dso:// and dsofile://, with its version or its failure, with resolveAllow empty', async () => {
    const { agent } = fakeAgent();
    await start({ agent });
    const answer = await check(['dso://app/db', 'dsofile://missing/key', 'dsofile://vault:app/x']);
    expect(answer.status).toBe(200);
    expect(answer.json).toEqual({
      references: [
        { reference: 'dso://app/db', provider: 'local', version: '7' },
        {
          reference: 'dsofile://missing/key',
          provider: 'local',
          code: 'DSO_PROVIDER_NOT_FOUND',
          error: 'no secret at missing/key',
        },
        { reference: 'dsofile://vault:app/x', provider: 'vault', version: '7' },
      ],
    });
    expect(JSON.stringify(answer.json)).not.toContain('value-of-');
  });

  it('answers 400 DSO_REFERENCE_INVALID naming the index of a malformed reference', async () => {
    const { agent } = fakeAgent();
    await start({ agent });
    const answer = await check(['dso://app/db', 'dsofile:/app/x']);
    expect(answer.status).toBe(400);
    expect(answer.json).toMatchObject({ code: 'DSO_REFERENCE_INVALID' });
    expect((answer.json as { error: string }).error).toMatch(/^references\[1\]: /);
  });

  it('answers 400 DSO_AGENT_API_BAD_REQUEST for a body without references', async () => {
    const { agent } = fakeAgent();
    await start({ agent });
    const answer = await call('POST', '/v1/check', json({}));
    expect(answer).toMatchObject({ status: 400, json: { code: 'DSO_AGENT_API_BAD_REQUEST' } });
  });
});
