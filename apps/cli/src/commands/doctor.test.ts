import { PassThrough, Readable } from 'node:stream';
import type { AgentApiStatus } from '@dso/core';
import { DsoError } from '@dso/core';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { EXIT_CODES, exitCodeFor } from '../exit-codes.js';
import { type DoctorDependencies, registerDoctorCommand, runDoctor } from './doctor.js';

const NOW = Date.parse('2026-12-07T05:00:00.000Z');

const STATUS: AgentApiStatus = {
  startedAt: NOW - 60_000,
  containers: [],
  queue: { depth: 0, inFlight: 0, shed: 0 },
  cache: { entries: 0, hits: 0, misses: 0, staleServed: 0 },
  providers: [{ name: 'local', type: 'local', state: { status: 'ready', breaker: 'closed' } }],
  volumeDriver: 'dso',
  version: '9.9.9',
};

function healthy(overrides: Partial<DoctorDependencies> = {}): DoctorDependencies {
  return {
    env: { DSO_API_SOCKET: '/run/dso/agent.sock' },
    agentSocket: async () => ({ path: '/run/dso/agent.sock', source: 'DSO_API_SOCKET' }),
    engine: async () => ({
      version: '20.10.24',
      apiVersion: '1.41',
      systemTime: new Date(NOW).toISOString(),
    }),
    agentStatus: async () => STATUS,
    socketFile: async () => ({ socket: true, mode: 0o140660, uid: 0, gid: 990 }),
    identity: () => ({ uid: 1000, groups: [1000, 990] }),
    resolveAllow: async () => ({ patterns: ['dso://app/*'], file: '/etc/dso/dso.yaml' }),
    now: () => NOW,
    nodeVersion: '20.19.5',
    ...overrides,
  };
}

/** `dso doctor` run as the CLI runs it: the exit code its error (if any) ends `dso` with. */
async function exitCodeOf(dependencies: DoctorDependencies): Promise<number> {
  const io = {
    env: {},
    stdin: Readable.from([]) as unknown as NodeJS.ReadStream,
    stdout: new PassThrough(),
    stderr: new PassThrough(),
  };
  const program = new Command('dso').exitOverride();
  registerDoctorCommand(program, io, dependencies);
  try {
    await program.parseAsync(['doctor'], { from: 'user' });
    return EXIT_CODES.ok;
  } catch (error) {
    return exitCodeFor(error);
  }
}

const outcomes = async (dependencies: DoctorDependencies) =>
  Object.fromEntries((await runDoctor(dependencies)).map((check) => [check.name, check.outcome]));

describe('dso doctor', () => {
  it('is all ok on a healthy setup', async () => {
    expect(await outcomes(healthy())).toEqual({
      engine: 'ok',
      agent: 'ok',
      socket: 'ok',
      delivery: 'ok',
      labels: 'ok',
      'resolve-allow': 'ok',
      'provider local': 'ok',
      clock: 'ok',
      versions: 'ok',
    });
  });

  it("names the agent's version, and the CLI's, Node's and Docker's", async () => {
    const checks = await runDoctor(healthy());
    expect(checks.find((check) => check.name === 'agent')?.detail).toMatch(
      /^dso-agent 9\.9\.9 running/,
    );
    expect(checks.find((check) => check.name === 'versions')?.detail).toMatch(
      /^dso \S+, dso-agent 9\.9\.9, node 20\.19\.5, Docker 20\.10\.24$/,
    );
  });

  it('names Podman when it answers, and its way to use the volume driver', async () => {
    const checks = await runDoctor(
      healthy({
        engine: async () => ({
          name: 'Podman',
          version: '4.3.1',
          apiVersion: '1.41',
          systemTime: new Date(NOW).toISOString(),
        }),
      }),
    );
    expect(checks.find((check) => check.name === 'engine')?.detail).toBe('Podman 4.3.1 (API 1.41)');
    expect(checks.find((check) => check.name === 'versions')?.detail).toMatch(/, Podman 4\.3\.1$/);
    const delivery = checks.find((check) => check.name === 'delivery')?.detail;
    expect(delivery).toContain('podman volume create --driver dso');
    expect(delivery).toContain(
      'dso = "/run/docker/plugins/dso.sock" under [engine.volume_plugins]',
    );
    expect(delivery).not.toContain('volume-driver=');
  });

  it('fails the agent with how to start it when it does not answer', async () => {
    const checks = await runDoctor(
      healthy({
        agentStatus: async () => {
          throw new DsoError('DSO_CLI_AGENT_UNREACHABLE', 'no agent');
        },
        socketFile: async () => undefined,
      }),
    );
    expect(checks.find((check) => check.name === 'agent')).toMatchObject({
      outcome: 'error',
      detail: expect.stringContaining('DSO_CLI_AGENT_UNREACHABLE'),
      fix: expect.stringContaining('dso-agent'),
    });
    expect(checks.find((check) => check.name === 'socket')?.outcome).toBe('error');
    // Nothing the agent would have said is made up.
    expect(checks.some((check) => check.name.startsWith('provider'))).toBe(false);
  });

  it('fails the engine with its fix when docker does not answer', async () => {
    const checks = await runDoctor(healthy({ engine: async () => ({ error: 'cannot connect' }) }));
    expect(checks[0]).toMatchObject({
      name: 'engine',
      outcome: 'error',
      fix: expect.stringContaining('docker group'),
    });
  });

  it('fails the socket for a user outside its group, and warns for a world-writable one', async () => {
    const denied = await runDoctor(healthy({ identity: () => ({ uid: 1000, groups: [1000] }) }));
    expect(denied.find((check) => check.name === 'socket')).toMatchObject({
      outcome: 'error',
      fix: expect.stringContaining('usermod -aG'),
    });
    const open = await runDoctor(
      healthy({ socketFile: async () => ({ socket: true, mode: 0o140666, uid: 0, gid: 0 }) }),
    );
    expect(open.find((check) => check.name === 'socket')?.outcome).toBe('warning');
  });

  it('warns without a volume driver, with an empty resolveAllow, a skewed clock; fails an open breaker and an old Node', async () => {
    const result = await outcomes(
      healthy({
        agentStatus: async () => ({
          ...STATUS,
          volumeDriver: undefined,
          providers: [
            { name: 'vault', type: 'vault', state: { status: 'ready', breaker: 'open' } },
          ],
        }),
        resolveAllow: async () => ({ patterns: [], file: undefined }),
        engine: async () => ({
          version: '20.10.24',
          apiVersion: '1.41',
          systemTime: new Date(NOW + 60_000).toISOString(),
        }),
        nodeVersion: '18.20.0',
      }),
    );
    expect(result).toMatchObject({
      delivery: 'warning',
      'resolve-allow': 'warning',
      'provider vault': 'error',
      clock: 'warning',
      versions: 'error',
    });
  });

  it('warns about managed containers with label warnings, naming them, and explains ownership otherwise', async () => {
    const checks = await runDoctor(
      healthy({
        agentStatus: async () => ({
          ...STATUS,
          containers: [
            {
              id: 'a'.repeat(64),
              name: 'web-1',
              lastAction: {
                trigger: 'started',
                at: NOW,
                outcome: 'failed',
                code: 'DSO_LABEL_UNKNOWN',
              },
              warnings: [
                {
                  code: 'DSO_LABEL_UNKNOWN',
                  label: 'dso.flie.x',
                  message:
                    'label dso.flie.x is not a DSO label and is ignored; did you mean dso.file.x?',
                  suggestion: 'dso.file.x',
                },
              ],
            },
          ],
        }),
      }),
    );
    expect(checks.find((check) => check.name === 'labels')).toMatchObject({
      outcome: 'warning',
      detail: expect.stringContaining('web-1'),
      fix: expect.stringContaining('dso status web-1'),
    });
    const healthyChecks = await runDoctor(healthy());
    expect(healthyChecks.find((check) => check.name === 'labels')?.detail).toContain(
      'dso.owner=0:33 dso.mode=0440',
    );
  });

  it('exits with the class of the first failed check: 8 engine, 6 agent, 5 socket, 7 provider, 1 Node', async () => {
    const unreachable = async () => {
      throw new DsoError('DSO_CLI_AGENT_UNREACHABLE', 'no agent');
    };
    expect(await exitCodeOf(healthy())).toBe(0);
    // Warnings alone (no volume driver, empty resolveAllow) do not fail it.
    expect(
      await exitCodeOf(healthy({ resolveAllow: async () => ({ patterns: [], file: undefined }) })),
    ).toBe(0);
    // Engine down and agent down: the engine comes first.
    expect(
      await exitCodeOf(
        healthy({ engine: async () => ({ error: 'down' }), agentStatus: unreachable }),
      ),
    ).toBe(EXIT_CODES.docker);
    expect(
      await exitCodeOf(healthy({ agentStatus: unreachable, socketFile: async () => undefined })),
    ).toBe(EXIT_CODES.unavailable);
    expect(await exitCodeOf(healthy({ identity: () => ({ uid: 1000, groups: [1000] }) }))).toBe(
      EXIT_CODES.refused,
    );
    expect(
      await exitCodeOf(
        healthy({
          agentStatus: async () => ({
            ...STATUS,
            providers: [{ name: 'vault', type: 'vault', state: { status: 'closed' } }],
          }),
        }),
      ),
    ).toBe(EXIT_CODES.store);
    expect(await exitCodeOf(healthy({ nodeVersion: '18.20.0' }))).toBe(EXIT_CODES.failure);
  });

  it("names where the socket came from: dso.yaml's api.socket, or a non-root agent's in DSO_HOME", async () => {
    const fromYaml = await runDoctor(
      healthy({
        agentSocket: async () => ({
          path: '/srv/dso/agent.sock',
          source: 'dso.yaml',
          configFile: '/etc/dso/dso.yaml',
        }),
        agentStatus: async () => {
          throw new DsoError('DSO_CLI_AGENT_UNREACHABLE', 'no agent');
        },
      }),
    );
    expect(fromYaml.find((check) => check.name === 'agent')?.detail).toBe(
      'no answer on /srv/dso/agent.sock (api.socket in /etc/dso/dso.yaml) (DSO_CLI_AGENT_UNREACHABLE)',
    );
    expect(fromYaml.find((check) => check.name === 'socket')?.detail).toContain(
      '/srv/dso/agent.sock',
    );
    const unreadable = await runDoctor(
      healthy({ agentSocket: async () => ({ error: 'DSO_CONFIG_INVALID' }) }),
    );
    expect(unreadable.find((check) => check.name === 'agent')?.detail).toContain(
      'running on /run/dso/agent.sock since',
    );
  });

  it('gives every check that is not ok a fix', async () => {
    const checks = await runDoctor(
      healthy({
        engine: async () => ({ error: 'down' }),
        agentStatus: async () => {
          throw new DsoError('DSO_CLI_AGENT_DENIED', 'denied');
        },
        resolveAllow: async () => ({ patterns: [], file: undefined }),
        now: () => Date.parse('2001-01-01T00:00:00Z'),
      }),
    );
    for (const check of checks.filter((entry) => entry.outcome !== 'ok')) {
      expect(check.fix, check.name).toMatch(/\w/);
    }
  });
});
