import { resolve } from 'node:path';
import { DsoError } from '@dso/core';
import { describe, expect, it } from 'vitest';
import type { AgentClient } from '../agent-client.js';
import { type ContainerFacts, runValidate, type ValidateDependencies } from './validate.js';

const CWD = '/project';

/**
 * Files in memory, an agent that knows `known` paths (or none), and containers by name. Each
 * compose file here is written in the shape compose's `config` prints, so its text stands for
 * compose's merged model of it (the real tool runs in validate-doctor.e2e.test.ts).
 */
function dependencies(
  files: Record<string, string>,
  options: { known?: string[]; agent?: boolean; containers?: Record<string, ContainerFacts> } = {},
): ValidateDependencies {
  const known = new Set(options.known ?? []);
  return {
    cwd: CWD,
    composeModel: async (paths) => {
      const text = files[paths[0] ?? ''];
      if (paths.length !== 1 || text === undefined) throw new Error(`no model for ${paths}`);
      return text;
    },
    exists: (path) => files[path] !== undefined,
    agent: () =>
      ({
        check: async (references: readonly string[]) => {
          if (options.agent === false) {
            throw new DsoError('DSO_CLI_AGENT_UNREACHABLE', 'no agent');
          }
          return references.map((reference) => {
            const path = reference.replace(/^dso(?:file)?:\/\/(?:[a-z-]+:)?/, '').split('#')[0]!;
            return known.has(path)
              ? { reference, provider: 'local', version: '1' }
              : {
                  reference,
                  provider: 'local',
                  code: 'DSO_PROVIDER_NOT_FOUND',
                  error: `no secret at ${path}`,
                };
          });
        },
      }) as unknown as AgentClient,
    inspectContainer: async (name) => {
      const container = options.containers?.[name];
      if (container === undefined) throw new DsoError('DSO_CLI_CONTAINER_UNKNOWN', `no ${name}`);
      return container;
    },
    localPaths: async () => ({ paths: known }),
  };
}

const COMPOSE = resolve(CWD, 'compose.yaml');

describe('dso validate of a compose file', () => {
  it('reports a typo label with its suggestion and a near-miss reference with what was meant', async () => {
    const findings = await runValidate(
      [],
      {},
      dependencies(
        {
          [COMPOSE]: [
            'services:',
            '  web:',
            '    image: nginx',
            '    labels:',
            '      dso.flie.x: dsofile://app/x',
            '    environment:',
            '      DB_PASSWORD_FILE: dsofile:/app/db',
            '      PLAIN: hunter2-canary',
          ].join('\n'),
        },
        { known: ['app/x', 'app/db'] },
      ),
    );
    expect(findings).toContainEqual(
      expect.objectContaining({
        severity: 'error',
        code: 'DSO_LABEL_UNKNOWN',
        message: expect.stringContaining('did you mean dso.file.x?'),
      }),
    );
    expect(findings).toContainEqual(
      expect.objectContaining({
        severity: 'error',
        code: 'DSO_REFERENCE_NEAR_MISS',
        where: `${COMPOSE} service web environment DB_PASSWORD_FILE`,
        message: expect.stringContaining('did you mean dsofile://app/db?'),
      }),
    );
    // A plain value is never quoted.
    expect(JSON.stringify(findings)).not.toContain('hunter2-canary');
  });

  it('reports a reference that does not resolve, naming where it is used', async () => {
    const findings = await runValidate(
      ['compose.yaml'],
      {},
      dependencies(
        {
          [COMPOSE]:
            'services:\n  api:\n    image: x\n    environment:\n      TOKEN_FILE: dsofile://app/missing\n      OK_FILE: dsofile://app/here\n    tmpfs: [/run/secrets]\n',
        },
        { known: ['app/here'] },
      ),
    );
    expect(findings).toEqual([
      expect.objectContaining({
        severity: 'error',
        code: 'DSO_PROVIDER_NOT_FOUND',
        where: `${COMPOSE} service api environment TOKEN_FILE`,
      }),
    ]);
  });

  it('asks the local vault when no agent answers', async () => {
    const findings = await runValidate(
      [],
      {},
      dependencies(
        {
          [COMPOSE]:
            'services:\n  api:\n    image: x\n    environment:\n      A: dsofile://app/missing\n',
        },
        { agent: false, known: [] },
      ),
    );
    expect(findings).toEqual([
      expect.objectContaining({
        code: 'DSO_PROVIDER_NOT_FOUND',
        message: expect.stringContaining('dso secret set app/missing'),
      }),
    ]);
  });

  it('reports an invalid reference, an invalid label and hints at owner and mode', async () => {
    const findings = await runValidate(
      [],
      { offline: true },
      dependencies({
        [COMPOSE]: [
          'services:',
          '  web:',
          '    image: nginx',
          '    labels:',
          '      dso.owner: "0:33"',
          '      dso.mode: nonsense',
          '    environment:',
          '      A: dsofile://app//x',
        ].join('\n'),
      }),
    );
    const codes = findings.map((finding) => `${finding.severity} ${finding.code}`);
    expect(codes).toContain('error DSO_REFERENCE_INVALID');
    expect(codes).toContain('error DSO_LABEL_INVALID');
    const fine = await runValidate(
      [],
      { offline: true },
      dependencies({
        [COMPOSE]: 'services:\n  web:\n    image: nginx\n    labels:\n      dso.owner: "0:33"\n',
      }),
    );
    expect(fine).toEqual([
      expect.objectContaining({
        severity: 'hint',
        code: 'DSO_LABEL_ACCESS_HINT',
        message: expect.stringContaining('dso.mode=0440'),
      }),
    ]);
  });

  it('warns when a bind or volume sits at the secrets target', async () => {
    const findings = await runValidate(
      [],
      { offline: true },
      dependencies({
        [COMPOSE]:
          'services:\n  web:\n    image: nginx\n    volumes: ["./secrets:/run/secrets"]\n    environment:\n      A: dsofile://app/x\n',
      }),
    );
    expect(findings).toEqual([
      expect.objectContaining({ severity: 'warning', code: 'DSO_LABEL_TARGET_MOUNTED' }),
    ]);
  });

  it('checks a DSO volume options', async () => {
    const findings = await runValidate(
      [],
      { offline: true },
      dependencies({
        [COMPOSE]: [
          'services:',
          '  web:',
          '    image: nginx',
          'volumes:',
          '  secrets:',
          '    driver: dso',
          '    driver_opts:',
          '      db: "dsofile:/app/db"',
        ].join('\n'),
      }),
    );
    expect(findings).toContainEqual(
      expect.objectContaining({
        code: 'DSO_REFERENCE_NEAR_MISS',
        message: expect.stringContaining('did you mean db=dsofile://app/db?'),
      }),
    );
  });

  it('finds nothing in a correct file', async () => {
    const findings = await runValidate(
      [],
      {},
      dependencies(
        {
          [COMPOSE]:
            'services:\n  web:\n    image: nginx\n    environment:\n      A: dsofile://app/x\n      B: postgres://db:5432\n',
        },
        { known: ['app/x'] },
      ),
    );
    expect(findings).toEqual([]);
  });

  it('refuses with DSO_CLI_COMPOSE_NOT_FOUND when there is no compose file and no target', async () => {
    await expect(runValidate([], {}, dependencies({}))).rejects.toMatchObject({
      code: 'DSO_CLI_COMPOSE_NOT_FOUND',
    });
  });
});

describe('dso validate of a container', () => {
  it('fails a container whose target is no tmpfs, and accepts one whose target is mounted', async () => {
    const labels = { 'dso.enable': 'true', 'dso.file.a': 'dsofile://app/a' };
    const containers = {
      bare: { name: 'bare', labels, tmpfs: [], mounts: [] },
      bound: { name: 'bound', labels, tmpfs: [], mounts: ['/run/secrets'] },
    };
    const bare = await runValidate(
      ['bare'],
      {},
      dependencies({}, { known: ['app/a'], containers }),
    );
    expect(bare).toEqual([
      expect.objectContaining({
        severity: 'error',
        code: 'DSO_DOCKER_TARGET_NOT_TMPFS',
        message: expect.stringContaining('--tmpfs /run/secrets'),
      }),
    ]);
    expect(
      await runValidate(['bound'], {}, dependencies({}, { known: ['app/a'], containers })),
    ).toEqual([]);
  });

  it('reads its labels: a typo, and a reference that does not resolve', async () => {
    const findings = await runValidate(
      ['web-1'],
      {},
      dependencies(
        {},
        {
          containers: {
            'web-1': {
              name: 'web-1',
              labels: {
                'dso.enable': 'true',
                'dso.file.a': 'dsofile://app/gone',
                'dso.ower': '0:33',
              },
              tmpfs: ['/run/secrets'],
              mounts: [],
            },
          },
        },
      ),
    );
    expect(findings.map((finding) => finding.code).sort()).toEqual([
      'DSO_LABEL_UNKNOWN',
      'DSO_PROVIDER_NOT_FOUND',
    ]);
  });
});
