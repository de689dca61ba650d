import { PassThrough, Readable } from 'node:stream';
import { DsoError } from '@dso/core';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import type { ComposeRun } from '../docker-cli.js';
import { exitCodeFor } from '../exit-codes.js';
import type { CliIo } from '../program.js';
import {
  type ComposeVerbDependencies,
  registerComposeVerbCommands,
  runComposeVerb,
} from './compose-verbs.js';

function makeIo(env: NodeJS.ProcessEnv = {}) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const output = { stdout: '', stderr: '' };
  stdout.on('data', (chunk) => {
    output.stdout += chunk;
  });
  stderr.on('data', (chunk) => {
    output.stderr += chunk;
  });
  const io: CliIo = {
    env,
    stdin: Readable.from([]) as unknown as NodeJS.ReadStream,
    stdout,
    stderr,
  };
  return { io, output };
}

const DSO_VOLUME = {
  name: 'shop_dso-web-0123456789',
  driver: 'dso',
  composeName: 'dso-web-0123456789',
};
const DATA_VOLUME = { name: 'shop_data', driver: 'local', composeName: 'data' };

function fakes(
  files: Record<string, string>,
  options: { agentDown?: boolean; failRemove?: boolean } = {},
) {
  const calls = { runs: [] as ComposeRun[], listed: [] as string[], removed: [] as string[][] };
  const dependencies: ComposeVerbDependencies = {
    cwd: '/srv/shop',
    agent: () => ({
      status: async () => {
        if (options.agentDown) throw new DsoError('DSO_CLI_AGENT_UNREACHABLE', 'no agent');
        return {
          startedAt: 1,
          containers: [],
          queue: { depth: 0, inFlight: 0, shed: 0 },
          cache: { entries: 0, hits: 0, misses: 0, staleServed: 0 },
          providers: [],
          volumeDriver: 'dso',
        };
      },
    }),
    detectCompose: async () => ({ argv: ['docker-compose'], override: 'fifo', model: 'yaml' }),
    runCompose: async (run) => {
      calls.runs.push(run);
      return 0;
    },
    readText: async (path) => {
      const text = files[path];
      if (text === undefined) throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      return text;
    },
    listProjectVolumes: async (project) => {
      calls.listed.push(project);
      return [DSO_VOLUME, DATA_VOLUME];
    },
    removeVolumes: async (names) => {
      calls.removed.push([...names]);
      return options.failRemove ? names.map((name) => ({ name, problem: 'volume is in use' })) : [];
    },
  };
  return { dependencies, calls };
}

const COMPOSE = 'services:\n  web:\n    image: x\n';

describe('dso down and the other compose verbs', () => {
  it('runs compose down with the files dso up finds, then removes only the DSO volumes of the project', async () => {
    const { io, output } = makeIo();
    const { dependencies, calls } = fakes({ '/srv/shop/compose.yaml': COMPOSE });
    expect(await runComposeVerb('down', { file: [], composeArgs: [] }, io, dependencies)).toBe(0);
    expect(calls.runs.map(({ args, upArgs, override }) => ({ args, upArgs, override }))).toEqual([
      { args: ['-f', '/srv/shop/compose.yaml'], upArgs: ['down'], override: undefined },
    ]);
    expect(calls.listed).toEqual(['shop']);
    expect(calls.removed).toEqual([['shop_dso-web-0123456789']]);
    expect(output.stderr).toContain('dso down: removed the DSO volumes shop_dso-web-0123456789');
  });

  it('passes -p and -f on, and finds the volumes under the project named by -p', async () => {
    const { io } = makeIo();
    const { dependencies, calls } = fakes({ '/srv/other/a.yaml': COMPOSE });
    await runComposeVerb(
      'down',
      { file: ['../other/a.yaml'], projectName: 'Given', composeArgs: ['-v'] },
      io,
      dependencies,
    );
    expect(calls.runs[0]?.args).toEqual(['-p', 'Given', '-f', '/srv/other/a.yaml']);
    expect(calls.runs[0]?.upArgs).toEqual(['down', '-v']);
    expect(calls.listed).toEqual(['given']);
  });

  it('says to start the agent when it cannot remove the DSO volumes without it, and fails', async () => {
    const { io, output } = makeIo();
    const { dependencies, calls } = fakes(
      { '/srv/shop/compose.yaml': COMPOSE },
      { agentDown: true },
    );
    expect(await runComposeVerb('down', { file: [], composeArgs: [] }, io, dependencies)).toBe(1);
    expect(calls.removed).toEqual([]);
    expect(output.stderr).toContain(
      'the engine needs it to remove the DSO volumes shop_dso-web-0123456789: start the agent and run dso down again',
    );
  });

  it('fails naming a DSO volume the engine would not remove', async () => {
    const { io, output } = makeIo();
    const { dependencies } = fakes({ '/srv/shop/compose.yaml': COMPOSE }, { failRemove: true });
    expect(await runComposeVerb('down', { file: [], composeArgs: [] }, io, dependencies)).toBe(1);
    expect(output.stderr).toContain(
      'could not remove the DSO volume shop_dso-web-0123456789 (volume is in use)',
    );
  });

  it.each([
    [['ps'], ['ps']],
    [
      ['stop', 'web'],
      ['stop', 'web'],
    ],
    [['start'], ['start']],
    [
      ['restart', '-t', '3', 'web'],
      ['restart', '-t', '3', 'web'],
    ],
    [
      ['logs', '-f', '--tail', '5', 'web'],
      ['logs', '--follow', '--tail', '5', 'web'],
    ],
    [
      ['down', '-v', '--remove-orphans'],
      ['down', '-v', '--remove-orphans'],
    ],
  ])("dso %j runs compose %j, touching no volume but down's", async (argv, composeArgv) => {
    const { io } = makeIo();
    const { dependencies, calls } = fakes({ '/srv/shop/compose.yaml': COMPOSE });
    const program = new Command('dso').exitOverride();
    registerComposeVerbCommands(program, io, () => dependencies);
    await program.parseAsync(argv, { from: 'user' });
    expect(calls.runs.map(({ args, upArgs }) => [...args, ...upArgs])).toEqual([
      ['-f', '/srv/shop/compose.yaml', ...composeArgv],
    ]);
    expect(calls.removed.length).toBe(argv[0] === 'down' ? 1 : 0);
  });

  it('fails with the exit code of compose', async () => {
    const { io } = makeIo();
    const { dependencies } = fakes({ '/srv/shop/compose.yaml': COMPOSE });
    dependencies.runCompose = async () => 3;
    const program = new Command('dso').exitOverride();
    registerComposeVerbCommands(program, io, () => dependencies);
    const error = await program.parseAsync(['ps'], { from: 'user' }).catch((caught) => caught);
    expect(error).toMatchObject({
      code: 'DSO_CLI_COMPOSE_FAILED',
      details: { exitCode: 3 },
      message: 'compose ps exited 3: see its output above (dso exits with the same code)',
    });
    expect(exitCodeFor(error)).toBe(3);
  });
});
