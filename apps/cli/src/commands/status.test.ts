import { spawn } from 'node:child_process';
import { chmod, chown, mkdtemp, rm } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import type { AgentApiStatus } from '@dso/core';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from '../program.js';
import { findContainer, formatAge, formatContainer, formatStatus } from './status.js';

const NOW = Date.UTC(2025, 0, 2, 12, 0, 0);

const STATUS: AgentApiStatus = {
  startedAt: NOW - (2 * 3_600_000 + 5 * 60_000),
  containers: [
    {
      id: 'a1'.repeat(32),
      name: 'api',
      state: 'running',
      rotation: 'signal SIGHUP',
      env: [{ name: 'API_KEY', reference: 'dso://vault:app/key', provider: 'vault', version: '2' }],
      lastFailure: {
        trigger: 'started',
        at: NOW - 10 * 60_000,
        code: 'DSO_PROVIDER_UNAVAILABLE',
        reference: 'dsofile://vault:app/api',
        message:
          'could not resolve dsofile://vault:app/api: vault cannot be reached (the agent tries again)',
      },
      files: [
        { name: 'db', reference: 'dsofile://app/db', provider: 'local', version: '3' },
        { name: 'api', reference: 'dsofile://vault:app/api', provider: 'vault', version: '7' },
      ],
      deliveredAt: NOW - 3 * 60_000,
      lastAction: { trigger: 'periodic', at: NOW - 3 * 60_000, outcome: 'up-to-date' },
    },
    {
      id: 'b2'.repeat(32),
      name: 'web-1',
      state: 'exited',
      lastAction: {
        trigger: 'started',
        at: NOW - 42_000,
        outcome: 'failed',
        code: 'DSO_PROVIDER_NOT_FOUND',
        reference: 'dsofile://app/missing',
        message:
          'could not resolve dsofile://app/missing: no secret at app/missing; store the secret (dso secret set <path>)',
      },
    },
  ],
  queue: { depth: 1, inFlight: 2, shed: 0 },
  cache: { entries: 1, hits: 10, misses: 3, staleServed: 0 },
  providers: [
    {
      name: 'local',
      type: 'local',
      state: { status: 'ready', breaker: 'closed', pid: 4321, restarts: 0 },
    },
    { name: 'vault', type: 'vault' },
  ],
};

describe('formatStatus', () => {
  it('prints the agent, a container table (newest first), queue, cache and providers', () => {
    expect(formatStatus(STATUS, NOW)).toBe(
      [
        'agent: running since 2025-01-02T09:55:00.000Z (up 2h 5m)',
        '',
        'NAME   CONTAINER ID  STATE    FILES  ENV  LAST ACTION  OUTCOME     WHEN     DETAIL',
        'web-1  b2b2b2b2b2b2  exited   -      -    started      failed      42s ago  DSO_PROVIDER_NOT_FOUND dsofile://app/missing',
        'api    a1a1a1a1a1a1  running  2      1    periodic     up-to-date  3m ago',
        'web-1 (b2b2b2b2b2b2): could not resolve dsofile://app/missing: no secret at app/missing; store the secret (dso secret set <path>)',
        '',
        'queue: 1 waiting, 2 in flight, 0 shed',
        'cache: 1 entry, 10 hits, 3 misses, 0 stale served',
        '',
        'PROVIDER  TYPE   STATE',
        'local     local  status=ready breaker=closed pid=4321 restarts=0',
        'vault     vault  -',
        '',
      ].join('\n'),
    );
  });

  it('says so when nothing was handled yet, the agent is starting, or no provider is reported', () => {
    const text = formatStatus({ ...STATUS, startedAt: null, containers: [], providers: [] }, NOW);
    expect(text).toContain('agent: starting\n');
    expect(text).toContain('no managed container handled yet\n');
    expect(text).toContain('providers: none reported\n');
  });

  it('prints control characters from the agent (labels are anyone-with-docker text) as ?', () => {
    const status = structuredClone(STATUS);
    status.containers[1]!.lastAction.reference = 'dsofile://app/\u001b]0;owned\u0007x';
    const text = formatStatus(status, NOW);
    expect(text).not.toContain('\u001b');
    expect(text).not.toContain('\u0007');
    expect(text).toContain('dsofile://app/?]0;owned?x');
  });

  it('shows a missing secret with its code and reference, and what to do below the table', () => {
    const status = structuredClone(STATUS);
    status.containers = [
      {
        id: 'c3'.repeat(32),
        lastAction: {
          trigger: 'changed',
          at: NOW - 5_000,
          outcome: 'missing',
          code: 'DSO_PROVIDER_NOT_FOUND',
          reference: 'dsofile://app/db',
          message: 'dsofile://app/db is no longer in provider local: store the secret again',
        },
      },
    ];
    const text = formatStatus(status, NOW);
    expect(text).toContain('missing  5s ago  DSO_PROVIDER_NOT_FOUND dsofile://app/db\n');
    expect(text).toContain(
      'c3c3c3c3c3c3: dsofile://app/db is no longer in provider local: store the secret again\n',
    );
    expect(text).toMatch(/^- {5}c3c3c3c3c3c3 {2}- {6}- {6}- {4}changed/m);
  });

  it('shows label warnings below the table and in the per-container view, with the suggestion', () => {
    const status = structuredClone(STATUS);
    status.containers[0]!.warnings = [
      {
        code: 'DSO_LABEL_UNKNOWN',
        label: 'dso.flie.db',
        message: 'dso.flie.db is not a DSO label: it is ignored',
        suggestion: 'dso.file.db',
      },
    ];
    expect(formatStatus(status, NOW)).toContain(
      'api (a1a1a1a1a1a1): warning: dso.flie.db is not a DSO label: it is ignored (did you mean dso.file.db?)\n',
    );
    expect(formatContainer(status.containers[0]!, NOW)).toContain(
      '\nWarnings:\n  DSO_LABEL_UNKNOWN: dso.flie.db is not a DSO label: it is ignored (did you mean dso.file.db?)\n',
    );
  });

  it('shows a volume consumer as volume <name>, with no id or state', () => {
    const status = structuredClone(STATUS);
    status.containers = [
      {
        id: `volume:app-secrets:${'d4'.repeat(32)}`,
        lastAction: { trigger: 'started', at: NOW - 1_000, outcome: 'delivered' },
        files: [],
      },
    ];
    expect(formatStatus(status, NOW)).toMatch(
      /^volume app-secrets {2}- {13}- {6}0 {6}- {4}started/m,
    );
  });

  it('rounds ages for people', () => {
    expect(
      [0, 59_999, 60_000, 3_599_999, 3_600_000, 5_400_000, 48 * 3_600_000].map(formatAge),
    ).toEqual(['0s', '59s', '1m', '59m', '1h', '1h 30m', '2d']);
  });
});

describe('formatContainer', () => {
  it('shows one container in full: state, rotation, last action, delivery and failure with its fix, files and variables', () => {
    expect(formatContainer(STATUS.containers[0]!, NOW)).toBe(
      [
        'Name:          api',
        `ID:            ${'a1'.repeat(32)}`,
        'State:         running',
        'Rotation:      signal SIGHUP',
        'Last action:   up-to-date (periodic), 3m ago (2025-01-02T11:57:00.000Z)',
        'Last delivery: 3m ago (2025-01-02T11:57:00.000Z)',
        'Last failure:  DSO_PROVIDER_UNAVAILABLE dsofile://vault:app/api (started), 10m ago (2025-01-02T11:50:00.000Z)',
        '               could not resolve dsofile://vault:app/api: vault cannot be reached (the agent tries again)',
        '',
        'Files:',
        '  FILE  REFERENCE                PROVIDER  VERSION',
        '  db    dsofile://app/db         local     3',
        '  api   dsofile://vault:app/api  vault     7',
        '',
        'Environment:',
        '  VARIABLE  REFERENCE            PROVIDER  VERSION',
        '  API_KEY   dso://vault:app/key  vault     2',
        '',
      ].join('\n'),
    );
  });

  it('says the files were delivered before the agent started when an older agent does not say when, and that it named no rotation', () => {
    const text = formatContainer(
      {
        id: 'e5'.repeat(32),
        files: [{ name: 'db', reference: 'dsofile://app/db', provider: 'local', version: '3' }],
        lastAction: { trigger: 'startup', at: NOW - 1_000, outcome: 'up-to-date' },
      },
      NOW,
    );
    expect(text).toContain('Last delivery: before the agent started, time unknown');
    expect(text).toContain(
      "Rotation:      not reported (the agent's default applies: rotation in dso.yaml)",
    );
    expect(text).toContain('Last failure:  none\n');
    expect(text).toContain('Environment:\n  none\n');
  });

  it('shows what the last action did when the agent says it (a Swarm task stopped)', () => {
    const message = 'stopped task web.1.t1 of service web; Swarm replaces it (task web.1.t2 runs)';
    const text = formatContainer(
      {
        id: 'e6'.repeat(32),
        state: 'exited',
        lastAction: { trigger: 'changed', at: NOW - 1_000, outcome: 'delivered', message },
      },
      NOW,
    );
    expect(text).toContain('Last failure:  none\n');
    expect(text.split('\n').filter((line) => line.trim() === message)).toHaveLength(1);
  });
});

describe('findContainer', () => {
  const containers = [
    ...STATUS.containers,
    {
      id: `b2b3${'0'.repeat(60)}`,
      name: 'other',
      lastAction: { trigger: 'started' as const, at: NOW, outcome: 'delivered' as const },
    },
    {
      id: `volume:app-secrets:${'d4'.repeat(32)}`,
      lastAction: { trigger: 'started' as const, at: NOW, outcome: 'delivered' as const },
    },
  ];

  it('finds a container by name (with or without /), full id, id prefix, and a volume by name', () => {
    expect(findContainer(containers, 'web-1').id).toBe('b2'.repeat(32));
    expect(findContainer(containers, '/web-1').id).toBe('b2'.repeat(32));
    expect(findContainer(containers, 'b2'.repeat(32)).id).toBe('b2'.repeat(32));
    expect(findContainer(containers, 'a1a').name).toBe('api');
    expect(findContainer(containers, 'app-secrets').id).toMatch(/^volume:app-secrets:/);
  });

  it('refuses an unknown name with DSO_CLI_CONTAINER_UNKNOWN and an ambiguous prefix with DSO_CLI_CONTAINER_AMBIGUOUS', () => {
    expect(() => findContainer(containers, 'nope')).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_CONTAINER_UNKNOWN',
        message: expect.stringMatching(
          /^no container the agent manages is named "nope".*see dso status/,
        ),
      }),
    );
    expect(() => findContainer(containers, 'b2')).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_CONTAINER_AMBIGUOUS',
        message: expect.stringContaining('web-1 (b2b2b2b2b2b2), other (b2b300000000)'),
      }),
    );
  });
});

let dir: string;
let socketPath: string;
const closers: Array<() => Promise<void>> = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-cli-status-'));
  socketPath = join(dir, 'agent.sock');
});
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  await rm(dir, { recursive: true, force: true });
});

/** A stand-in for the agent's API on a unix socket. */
async function stubAgent(answer: (response: ServerResponse) => void): Promise<string[]> {
  const seen: string[] = [];
  const server = createServer((request, response) => {
    seen.push(`${request.method} ${request.url}`);
    answer(response);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return seen;
}

async function dso(args: string[], env: NodeJS.ProcessEnv = { DSO_API_SOCKET: socketPath }) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk) => {
    out += chunk;
  });
  stderr.on('data', (chunk) => {
    err += chunk;
  });
  const stdin = Readable.from([]) as unknown as NodeJS.ReadStream;
  const code = await runCli(args, { env, stdin, stdout, stderr });
  return { code, stdout: out, stderr: err };
}

describe('dso status', () => {
  it('prints the table from GET /v1/status', async () => {
    const seen = await stubAgent((response) => {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(STATUS));
    });
    const result = await dso(['status']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(seen).toEqual(['GET /v1/status']);
    expect(result.stdout).toMatch(/^agent: running since 2025-01-02T09:55:00.000Z \(up \d+/);
    expect(result.stdout).toMatch(
      /^web-1 {2}b2b2b2b2b2b2 {2}exited {3}- {6}- {4}started {6}failed {6}\S+ ago {2}DSO_PROVIDER_NOT_FOUND dsofile:\/\/app\/missing$/m,
    );
    expect(result.stdout).toContain('queue: 1 waiting, 2 in flight, 0 shed\n');
    expect(result.stdout).toContain(
      'local     local  status=ready breaker=closed pid=4321 restarts=0\n',
    );
  });

  it('prints the JSON with --json', async () => {
    await stubAgent((response) => {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(STATUS));
    });
    const result = await dso(['status', '--json']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual(STATUS);
  });

  it('shows one container with dso status <name>, and its entry with --json', async () => {
    await stubAgent((response) => {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(STATUS));
    });
    const result = await dso(['status', 'web-1']);
    expect(result).toMatchObject({ code: 0, stderr: '' });
    expect(result.stdout).toMatch(/^Name: +web-1\nID: +b2b2/);
    expect(result.stdout).toContain('no secret at app/missing; store the secret');
    const json = await dso(['status', 'b2b2', '--json']);
    expect(JSON.parse(json.stdout)).toEqual(STATUS.containers[1]);
  });

  it('fails on a container the agent does not manage, naming it and what to do', async () => {
    await stubAgent((response) => {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(STATUS));
    });
    const result = await dso(['status', 'nope']);
    expect(result.code).not.toBe(0);
    expect(result.stdout).toBe('');
    expect(result.stderr).toMatch(
      /^dso: no container the agent manages is named "nope" .*see dso status.* \(DSO_CLI_CONTAINER_UNKNOWN\)\n$/,
    );
  });

  it('says how to start the agent when it is not running, exit 6', async () => {
    const result = await dso(['status']);
    expect(result).toEqual({
      code: 6,
      stdout: '',
      stderr: `dso: the agent is not running (no socket at ${socketPath}): start it with dso-agent or systemctl start dso-agent (DSO_CLI_AGENT_UNREACHABLE)\n`,
    });
  });

  it('uses /run/dso/agent.sock without DSO_API_SOCKET', async () => {
    const result = await dso(['status'], {});
    // Whatever this machine has there, the CLI looked at the default path.
    expect(result.stderr === '' || result.stderr.includes('/run/dso/agent.sock')).toBe(true);
  });

  it('names the group to join when the socket refuses the user, exit 5', async () => {
    await stubAgent((response) => {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(JSON.stringify(STATUS));
    });
    if (process.getuid?.() !== 0) {
      // Not root: a socket with no permission bits refuses its owner too.
      await chmod(socketPath, 0o000);
      const result = await dso(['status']);
      expect(result.code).toBe(5);
      expect(result.stderr).toMatch(
        /permission denied on the agent's socket .*DSO_CLI_AGENT_DENIED/,
      );
      expect(result.stderr).toMatch(
        /join (its group: sudo usermod -aG \S+|the group with gid \d+)/,
      );
      return;
    }
    // Root passes every permission check: run the CLI as nobody against a root:root 0660 socket.
    await chmod(dir, 0o755);
    await chmod(socketPath, 0o660);
    await chown(socketPath, 0, 0);
    const result = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(
        process.execPath,
        [
          '--conditions=@dso/source',
          '--import',
          'tsx',
          join(import.meta.dirname, '..', 'main.ts'),
          'status',
        ],
        {
          uid: 65_534,
          gid: 65_534,
          cwd: join(import.meta.dirname, '..', '..'),
          env: { PATH: process.env.PATH, DSO_API_SOCKET: socketPath },
          stdio: ['ignore', 'ignore', 'pipe'],
        },
      );
      let stderr = '';
      child.stderr.on('data', (chunk) => {
        stderr += chunk;
      });
      child.once('error', reject);
      child.once('close', (code) => resolve({ code, stderr }));
    });
    expect(result).toEqual({
      code: 5,
      stderr: `dso: permission denied on the agent's socket ${socketPath}: join its group: sudo usermod -aG root "$USER", then log in again (or run dso as root) (DSO_CLI_AGENT_DENIED)\n`,
    });
  }, 30_000);

  it('lists status and reconcile in the help', async () => {
    const result = await dso(['--help']);
    expect(result.stdout).toMatch(/^ {2}status \[options\]/m);
    expect(result.stdout).toMatch(/^ {2}reconcile/m);
  });

  it('shows the delivery time and default rotation an agent names after its restart', () => {
    const text = formatContainer(
      {
        id: 'e6'.repeat(32),
        rotation: "files (the agent's default: rotation in dso.yaml)",
        files: [{ name: 'db', reference: 'dsofile://app/db', provider: 'local', version: '3' }],
        deliveredAt: NOW - 7_200_000,
        lastAction: { trigger: 'startup', at: NOW - 1_000, outcome: 'up-to-date' },
      },
      NOW,
    );
    expect(text).toContain("Rotation:      files (the agent's default: rotation in dso.yaml)");
    expect(text).toContain(`Last delivery: 2h ago (${new Date(NOW - 7_200_000).toISOString()})`);
  });
});
