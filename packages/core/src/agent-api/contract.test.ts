import { describe, expect, it } from 'vitest';
import { configSchema } from '../config/schema.js';
import { LABEL_ROTATION_POLICIES } from '../labels.js';
import { MAX_REFERENCE_LENGTH } from '../references.js';
import {
  AGENT_API_ROUTES,
  type AgentApiStatus,
  API_MAX_BODY_BYTES,
  API_MAX_PROVIDER_STATE_FIELDS,
  API_MAX_RESOLVE_BODY_BYTES,
  API_MAX_RESOLVE_REFERENCES,
  API_SOCKET_ENV,
  agentApiEventLineSchema,
  agentApiEventSchema,
  agentApiResolveRequestSchema,
  agentApiResolveResultSchema,
  agentApiRotateRequestSchema,
  agentApiStatusSchema,
  DEFAULT_API_SOCKET,
  resolveApiSocket,
} from './contract.js';

const STATUS: AgentApiStatus = {
  startedAt: 1_700_000_000_000,
  containers: [
    {
      id: 'a'.repeat(64),
      files: [{ name: 'db', reference: 'dsofile://app/db', provider: 'local', version: '3' }],
      env: [{ name: 'TOKEN', reference: 'dso://app/token', provider: 'local', version: '1' }],
      deliveredAt: 1_700_000_001_000,
      lastAction: { trigger: 'started', at: 1_700_000_001_000, outcome: 'delivered' },
    },
    {
      id: 'b'.repeat(64),
      lastAction: {
        trigger: 'api',
        at: 1_700_000_002_000,
        outcome: 'failed',
        code: 'DSO_PROVIDER_NOT_FOUND',
        reference: 'dsofile://app/missing',
      },
    },
  ],
  queue: { depth: 1, inFlight: 2, shed: 0 },
  cache: { entries: 4, hits: 10, misses: 3, staleServed: 1 },
  providers: [
    { name: 'local', type: 'local', state: { status: 'ready', pid: 42, breaker: null } },
    { name: 'vault', type: 'vault' },
  ],
};

describe('the API socket', () => {
  it('uses DSO_API_SOCKET, else the default /run/dso/agent.sock', () => {
    expect(API_SOCKET_ENV).toBe('DSO_API_SOCKET');
    expect(resolveApiSocket({ DSO_API_SOCKET: '/tmp/x.sock' })).toBe('/tmp/x.sock');
    expect(resolveApiSocket({ DSO_API_SOCKET: '' })).toBe(DEFAULT_API_SOCKET);
    expect(resolveApiSocket({})).toBe('/run/dso/agent.sock');
  });

  it("is the configuration's default api.socket", () => {
    expect(configSchema.parse({}).api.socket).toBe(DEFAULT_API_SOCKET);
  });
});

describe('AGENT_API_ROUTES', () => {
  it('gives every route its own /v1 path, and a request schema exactly to the routes that take a body', () => {
    const routes = Object.values(AGENT_API_ROUTES);
    expect(new Set(routes.map((route) => route.path)).size).toBe(routes.length);
    for (const route of routes) expect(route.path).toMatch(/^\/v1\/[a-z]+$/);
    const withBody = Object.entries(AGENT_API_ROUTES)
      .filter(([, route]) => 'request' in route)
      .map(([name]) => name);
    expect(withBody.sort()).toEqual(['check', 'resolve', 'rotate']);
  });

  it('takes a resolve (and check) body of the most references at their longest, and only those routes more than 1 KiB', () => {
    const longest = `dso://${'a'.repeat(MAX_REFERENCE_LENGTH - 'dso://'.length)}`;
    const body = JSON.stringify({
      references: Array.from({ length: API_MAX_RESOLVE_REFERENCES }, () => longest),
    });
    expect(Buffer.byteLength(body)).toBeLessThanOrEqual(API_MAX_RESOLVE_BODY_BYTES);
    expect(agentApiResolveRequestSchema.safeParse(JSON.parse(body)).success).toBe(true);
    const { resolve, check, ...others } = AGENT_API_ROUTES;
    expect(resolve.maxBodyBytes).toBe(API_MAX_RESOLVE_BODY_BYTES);
    expect(check.maxBodyBytes).toBe(API_MAX_RESOLVE_BODY_BYTES);
    for (const route of Object.values(others)) expect(route.maxBodyBytes).toBe(API_MAX_BODY_BYTES);
  });
});

describe('request schemas', () => {
  it('take a rotate body with or without a container id, and refuse anything else', () => {
    expect(agentApiRotateRequestSchema.parse({})).toEqual({});
    expect(agentApiRotateRequestSchema.parse({ containerId: 'abcdef012345' })).toEqual({
      containerId: 'abcdef012345',
    });
    const notAnId = agentApiRotateRequestSchema.safeParse({ containerId: 'web' });
    expect(notAnId.error?.issues[0]?.message).toBe(
      'must be a container id: 12 to 64 lowercase hex characters (see `dso status`)',
    );
    expect(agentApiRotateRequestSchema.safeParse({ all: true }).success).toBe(false);
  });

  it.each([
    [{}, 'references'],
    [{ references: [] }, 'must name at least one reference'],
    [
      { references: Array.from({ length: API_MAX_RESOLVE_REFERENCES + 1 }, () => 'dso://a') },
      'must name at most 256 references: split the call',
    ],
    [{ references: ['a'.repeat(MAX_REFERENCE_LENGTH + 1)] }, 'must be at most 2048 characters'],
    // A caller can never hand the agent a provider's configuration or a path.
    [{ references: ['dso://a'], provider: { type: 'file', config: { path: '/x' } } }, 'provider'],
  ])('refuses the resolve body %j', (body, problem) => {
    const result = agentApiResolveRequestSchema.safeParse(body);
    expect(result.success).toBe(false);
    const issue = result.error!.issues[0]!;
    expect(`${issue.path.join('.')}: ${issue.message} ${JSON.stringify(issue)}`).toContain(problem);
  });
});

describe('response schemas', () => {
  it('read a full status back as it was sent', () => {
    expect(agentApiStatusSchema.parse(JSON.parse(JSON.stringify(STATUS)))).toEqual(STATUS);
  });

  it('drop fields v1 does not name, so a client sees exactly v1', () => {
    const sent = { ...STATUS, secretValue: 'x', queue: { ...STATUS.queue, extra: 1 } };
    expect(agentApiStatusSchema.parse(sent)).toEqual(STATUS);
  });

  it.each([
    ['a status without its queue', { ...STATUS, queue: undefined }],
    [
      'an unknown last outcome',
      {
        ...STATUS,
        containers: [{ id: 'a', lastAction: { trigger: 'api', at: 1, outcome: 'maybe' } }],
      },
    ],
    ['a negative count', { ...STATUS, cache: { ...STATUS.cache, hits: -1 } }],
    [
      'a nested provider state',
      { ...STATUS, providers: [{ name: 'l', type: 'l', state: { config: { token: 'x' } } }] },
    ],
    [
      'too many provider state fields',
      {
        ...STATUS,
        providers: [
          {
            name: 'l',
            type: 'l',
            state: Object.fromEntries(
              Array.from({ length: API_MAX_PROVIDER_STATE_FIELDS + 1 }, (_, i) => [`f${i}`, i]),
            ),
          },
        ],
      },
    ],
  ])('refuse %s', (_what, body) => {
    expect(agentApiStatusSchema.safeParse(body).success).toBe(false);
  });

  it('take resolved values in base64 only', () => {
    const value = { reference: 'dso://a', provider: 'local', version: '1' };
    expect(
      agentApiResolveResultSchema.safeParse({ values: [{ ...value, value: 'aGk=' }] }).success,
    ).toBe(true);
    expect(
      agentApiResolveResultSchema.safeParse({ values: [{ ...value, value: '' }] }).success,
    ).toBe(true);
    expect(
      agentApiResolveResultSchema.safeParse({ values: [{ ...value, value: 'not base64!' }] })
        .success,
    ).toBe(false);
  });

  it('describe every line of the events stream, and a client takes newer types too', () => {
    const lines = [
      { type: 'subscribed', at: 1 },
      { type: 'heartbeat', at: 2 },
      { type: 'dropped', at: 3, reason: 'reader too slow' },
      { type: 'delivered', at: 4, containerId: 'c', trigger: 'started', files: 2, method: 'exec' },
      {
        type: 'delivery-failed',
        at: 5,
        containerId: 'c',
        trigger: 'periodic',
        code: 'DSO_PROVIDER_NOT_FOUND',
        reference: 'dsofile://app/db',
        retry: true,
      },
      ...LABEL_ROTATION_POLICIES.map((policy) => ({
        type: 'rotated',
        at: 6,
        containerId: 'c',
        policy,
      })),
      {
        type: 'rotation-failed',
        at: 7,
        containerId: 'c',
        policy: 'replace',
        code: 'DSO_AGENT_REPLACE_UNHEALTHY',
        rolledBack: true,
      },
      { type: 'replaced', at: 8, containerId: 'c', newContainerId: 'd' },
    ];
    for (const line of lines) expect(agentApiEventSchema.parse(line)).toEqual(line);
    const newer = { type: 'paused', at: 9, containerId: 'c' };
    expect(agentApiEventSchema.safeParse(newer).success).toBe(false);
    expect(agentApiEventLineSchema.parse(newer)).toEqual(newer);
    expect(agentApiEventLineSchema.safeParse({ at: 1 }).success).toBe(false);
  });
});
