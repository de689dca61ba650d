import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { DsoError } from '@dso/core';
import { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { createAgentClient } from '../agent-client.js';
import { variableFor } from '../compose.js';
import type { ComposeModelRun, ComposeRun } from '../docker-cli.js';
import { EXIT_CODES, exitCodeFor } from '../exit-codes.js';
import type { CliIo } from '../program.js';
import { registerUpCommand, runUp, type UpDependencies, type UpOptions } from './up.js';

// A value with characters compose would otherwise interpolate or a shell would split.
const CANARY = 'canary-up-$HOME-`id` "q" 91c3';
const FILE_CANARY = 'canary-up-file-value-7e1d';

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-cli-up-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

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
  const stdin = Readable.from([]) as unknown as NodeJS.ReadStream;
  const io: CliIo = { env, stdin, stdout, stderr };
  return { io, output };
}

/**
 * Fake engine, compose and agent. `files` are the readable paths (their text is not read: compose
 * reads them); `model` is what compose's `config` prints for them.
 */
function fakes(
  files: Record<string, string>,
  model: string,
  values: Record<string, string> = {},
  volumeDriver?: string,
) {
  const calls = {
    models: [] as ComposeModelRun[],
    /** What was asked, in order: compose's model, the agent's check and resolve, compose up. */
    order: [] as string[],
    check: [] as string[][],
    resolve: [] as string[][],
    inspect: [] as string[],
    runs: [] as ComposeRun[],
    returned: [] as Buffer[],
  };
  const dependencies: UpDependencies = {
    cwd: '/project/sub',
    agent: () => ({
      status: async () => ({
        startedAt: 1,
        containers: [],
        queue: { depth: 0, inFlight: 0, shed: 0 },
        cache: { entries: 0, hits: 0, misses: 0, staleServed: 0 },
        providers: [],
        ...(volumeDriver === undefined ? {} : { volumeDriver }),
      }),
      // A path under app/missing/ is not in its store.
      check: async (references) => {
        calls.check.push([...references]);
        calls.order.push('check');
        return references.map((reference) =>
          reference.includes('app/missing/')
            ? {
                reference,
                provider: 'local',
                code: 'DSO_PROVIDER_NOT_FOUND',
                error: `no secret at ${reference.replace(/^dso(file)?:\/\//, '')}`,
              }
            : { reference, provider: 'local', version: '1' },
        );
      },
      resolve: async (references) => {
        calls.resolve.push([...references]);
        calls.order.push('resolve');
        return references.map((reference) => {
          const value = Buffer.from(values[reference] ?? `value-of-${reference}`);
          calls.returned.push(value);
          return { reference, provider: 'local', version: '1', value };
        });
      },
    }),
    detectCompose: async () => ({ argv: ['docker-compose'], override: 'fifo', model: 'yaml' }),
    composeModel: async (run) => {
      calls.models.push(run);
      calls.order.push('model');
      return model;
    },
    inspectImage: async (image) => {
      calls.inspect.push(image);
      return { entrypoint: [], cmd: ['sleep', '600'] };
    },
    runCompose: async (run) => {
      calls.runs.push(run);
      calls.order.push('run');
      return 0;
    },
    readText: async (path) => {
      const text = files[path];
      if (text === undefined) {
        throw Object.assign(new Error(`ENOENT: ${path}`), { code: 'ENOENT' });
      }
      return text;
    },
  };
  return { dependencies, calls };
}

// The project of most tests: compose.yaml and its .env.
const FILES = {
  '/project/compose.yaml': `
version: "3.8"
services:
  app:
    image: dso-test/busybox:\${TAG}
    network_mode: none
    environment:
      API_TOKEN: dso://app/api/token
      DB_PASSWORD_FILE: dsofile://app/db/password
      PLAIN: \${HOME}
    labels: [ "team=core" ]
  worker:
    image: dso-test/busybox:1
    entrypoint: [ "sleep" ]
    command: [ "600" ]
    environment: [ "API_TOKEN=dso://app/api/token" ]
  db:
    image: dso-test/busybox:1
`,
  '/project/.env': 'TAG=1\n',
};

// What the real tool prints for it: `HOME=/root docker-compose config` in /project
// (docker-compose 1.29.2, Debian 12), captured.
const MODEL = `services:
  app:
    environment:
      API_TOKEN: dso://app/api/token
      DB_PASSWORD_FILE: dsofile://app/db/password
      PLAIN: /root
    image: dso-test/busybox:1
    labels:
      team: core
    network_mode: none
  db:
    image: dso-test/busybox:1
  worker:
    command:
    - '600'
    entrypoint:
    - sleep
    environment:
      API_TOKEN: dso://app/api/token
    image: dso-test/busybox:1
version: '3.8'
`;

/** A one-service model in the shape compose prints (as docker-compose 1.29 prints this one). */
const ONE = "services:\n  a:\n    environment:\n      T: dso://t\n    image: x\nversion: '3.9'\n";
const PLAIN_MODEL = "services:\n  a:\n    image: x\nversion: '3.9'\n";

const options = (extra: Partial<UpOptions> = {}): UpOptions => ({
  file: [],
  composeArgs: [],
  ...extra,
});

describe('dso up', () => {
  it('resolves every dso:// reference in one call and gives compose the values in its environment only', async () => {
    const { io, output } = makeIo({ PATH: '/usr/bin', HOME: '/root' });
    const { dependencies, calls } = fakes(FILES, MODEL, { 'dso://app/api/token': CANARY });
    const code = await runUp(
      options({ detach: true, composeArgs: ['--no-color'] }),
      io,
      dependencies,
    );
    expect(code).toBe(0);

    expect(calls.resolve).toEqual([['dso://app/api/token']]);
    // Compose was asked for its model first, with the caller's environment: no value in it.
    expect(calls.models).toHaveLength(1);
    expect(calls.models[0]?.args).toEqual(['-f', '/project/compose.yaml']);
    expect(calls.models[0]?.env).toEqual({ PATH: '/usr/bin', HOME: '/root' });
    // It ran before the agent was asked for any value.
    expect(calls.order).toEqual(['model', 'check', 'resolve', 'run']);
    expect(JSON.stringify(calls.models)).not.toContain(CANARY);
    // The image's name as compose interpolated it from the project's .env.
    expect(calls.inspect).toEqual(['dso-test/busybox:1']);
    expect(calls.runs).toHaveLength(1);
    const run = calls.runs[0] as ComposeRun;
    expect(run.compose.argv).toEqual(['docker-compose']);
    expect(run.args).toEqual(['-f', '/project/compose.yaml']);
    expect(run.upArgs).toEqual(['up', '-d', '--no-color']);
    const carrier = variableFor('dso://app/api/token');
    expect(run.env).toEqual({ PATH: '/usr/bin', HOME: '/root', [carrier]: CANARY });

    const override = parse(run.override as string);
    expect(override.version).toBe('3.8');
    expect(override.services.app).toMatchObject({
      environment: {
        API_TOKEN: `\${${carrier}}`,
        DB_PASSWORD_FILE: '/run/secrets/db_password_file',
      },
      labels: {
        'dso.enable': 'true',
        'dso.env.API_TOKEN': 'dso://app/api/token',
        // The version it is created with: the agent replaces it once that is no longer current.
        'dso.env-version.API_TOKEN': '1',
        'dso.file.db_password_file': 'dsofile://app/db/password',
        'dso.target': '/run/secrets',
      },
      tmpfs: ['/run/secrets'],
      command: ['sleep', '600'],
    });
    expect(override.services.worker.environment).toEqual({ API_TOKEN: `\${${carrier}}` });
    expect(override.services).not.toHaveProperty('db');

    // The value is nowhere but compose's environment.
    for (const text of [
      run.override,
      [...run.args, ...run.upArgs].join(' '),
      output.stdout,
      output.stderr,
    ]) {
      expect(text).not.toContain(CANARY);
    }
    // The agent's bytes are zeroed once decoded.
    expect(calls.returned.every((value) => value.every((byte) => byte === 0))).toBe(true);

    expect(output.stderr).toContain(
      "dso up: app: files /run/secrets/db_password_file (the service waits for them; its image's command is run after the wait); environment API_TOKEN\n",
    );
    expect(output.stderr).toContain(
      "dso up: warning: app.API_TOKEN, worker.API_TOKEN are dso:// values in the container's environment, which docker inspect shows to anyone who can use the engine: prefer dsofile://",
    );
  });

  it('puts dsofile:// files in a DSO volume when the agent serves the driver: no tmpfs, no wait, the command untouched', async () => {
    const { io, output } = makeIo({ PATH: '/usr/bin', HOME: '/root' });
    const { dependencies, calls } = fakes(FILES, MODEL, { 'dso://app/api/token': CANARY }, 'dso');
    expect(await runUp(options(), io, dependencies)).toBe(0);
    // No image to read: the command is not wrapped.
    expect(calls.inspect).toEqual([]);
    const override = parse((calls.runs[0] as ComposeRun).override as string);
    const app = override.services.app;
    expect(app).not.toHaveProperty('tmpfs');
    expect(app).not.toHaveProperty('entrypoint');
    expect(app).not.toHaveProperty('command');
    expect(app.environment.DB_PASSWORD_FILE).toBe('/run/secrets/db_password_file');
    expect(Object.keys(app.labels).filter((key: string) => key.startsWith('dso.file.'))).toEqual(
      [],
    );
    // dso.enable stays for its dso:// value (replaced when that changes).
    expect(app.labels['dso.enable']).toBe('true');
    const [volume] = Object.keys(override.volumes);
    expect(app.volumes).toEqual([`${volume}:/run/secrets`]);
    expect(override.volumes[volume as string]).toEqual({
      driver: 'dso',
      driver_opts: { db_password_file: 'dsofile://app/db/password' },
    });
    expect(output.stderr).toContain(
      `dso up: app: files /run/secrets/db_password_file (DSO volume ${volume}: in place before the service starts); environment API_TOKEN`,
    );
  });

  it('falls back to the tmpfs and the wait, saying so, when the agent does not answer for the driver', async () => {
    const { io, output } = makeIo({ PATH: '/usr/bin', HOME: '/root' });
    const { dependencies, calls } = fakes(FILES, MODEL);
    const agent = dependencies.agent();
    dependencies.agent = () => ({
      ...agent,
      status: async () => {
        throw new DsoError('DSO_CLI_AGENT_UNREACHABLE', 'no agent');
      },
    });
    await runUp(options({ dryRun: true }), io, dependencies);
    expect(output.stderr).toContain(
      'dso up: could not ask the agent for its volume driver (DSO_CLI_AGENT_UNREACHABLE): files go into a tmpfs and each service waits for them',
    );
    expect(output.stdout).toContain('tmpfs');
    expect(calls.runs).toEqual([]);
  });

  it('finds the compose file in a parent folder with its override file, as compose does', async () => {
    const { io } = makeIo();
    const { dependencies, calls } = fakes(
      {
        '/project/docker-compose.yml':
          'services:\n  a: { image: x, environment: { T: dso://t } }\n',
        '/project/docker-compose.override.yml': 'services:\n  a: { environment: { U: dso://u } }\n',
      },
      "services:\n  a:\n    environment:\n      T: dso://t\n      U: dso://u\n    image: x\nversion: '3.9'\n",
    );
    await runUp(options(), io, dependencies);
    const args = [
      '-f',
      '/project/docker-compose.yml',
      '-f',
      '/project/docker-compose.override.yml',
    ];
    expect(calls.models[0]?.args).toEqual(args);
    expect(calls.runs[0]?.args).toEqual(args);
    expect(calls.runs[0]?.override).toContain('services:');
    expect(calls.resolve).toEqual([
      ['dso://t', 'dso://u'].sort((a, b) => (variableFor(a) < variableFor(b) ? -1 : 1)),
    ]);
  });

  it('takes -f files relative to the folder, COMPOSE_FILE, and -p', async () => {
    const files = {
      '/project/sub/a.yaml': 'services:\n  a: { image: x, environment: { T: dso://t } }\n',
      '/project/b.yaml': 'services: {}\n',
    };
    const { io } = makeIo();
    const given = fakes(files, ONE);
    await runUp(
      options({ file: ['a.yaml', '../b.yaml'], projectName: 'demo' }),
      io,
      given.dependencies,
    );
    expect(given.calls.runs[0]?.args.slice(0, 6)).toEqual([
      '-p',
      'demo',
      '-f',
      '/project/sub/a.yaml',
      '-f',
      '/project/b.yaml',
    ]);
    const fromEnv = fakes(files, ONE);
    await runUp(options(), makeIo({ COMPOSE_FILE: 'a.yaml:../b.yaml' }).io, fromEnv.dependencies);
    expect(fromEnv.calls.runs[0]?.args.slice(0, 4)).toEqual([
      '-f',
      '/project/sub/a.yaml',
      '-f',
      '/project/b.yaml',
    ]);
  });

  it('prints the additions with <dso:reference> placeholders for --dry-run, and starts nothing', async () => {
    const { io, output } = makeIo();
    const { dependencies, calls } = fakes(FILES, MODEL);
    expect(await runUp(options({ dryRun: true }), io, dependencies)).toBe(0);
    expect(calls.resolve).toEqual([]);
    expect(calls.runs).toEqual([]);
    expect(output.stdout).toMatch(
      /^# dso up --dry-run: compose would read \/project\/compose\.yaml, then this on its stdin\.\n/,
    );
    const document = parse(output.stdout);
    expect(document.services.app.environment.API_TOKEN).toBe('<dso:dso://app/api/token>');
    expect(output.stdout).not.toContain('DSO_UP_');
  });

  it('runs compose as it is when no service uses a reference', async () => {
    const { io, output } = makeIo();
    const { dependencies, calls } = fakes(
      { '/project/compose.yaml': 'services:\n  a: { image: x }\n' },
      PLAIN_MODEL,
    );
    await runUp(options(), io, dependencies);
    expect(calls.resolve).toEqual([]);
    expect(calls.runs[0]).toMatchObject({ args: ['-f', '/project/compose.yaml'], upArgs: ['up'] });
    expect(calls.runs[0]).not.toHaveProperty('override');
    expect(output.stderr).toContain(
      'no dso:// or dsofile:// reference in compose.yaml: running compose as is',
    );
  });

  it('says where it looked when there is no compose file', async () => {
    const { dependencies } = fakes({}, PLAIN_MODEL);
    await expect(runUp(options(), makeIo().io, dependencies)).rejects.toMatchObject({
      code: 'DSO_CLI_COMPOSE_NOT_FOUND',
      message:
        "no compose file: looked for compose.yaml, compose.yml, docker-compose.yml, docker-compose.yaml in /project/sub and its parents: run dso up in the project's folder, or name the file with -f",
    });
    // A -f file that does not exist is compose's to report (its message, its exit code).
  });

  it('refuses -f - (stdin is where its own additions go)', async () => {
    const { dependencies } = fakes({}, PLAIN_MODEL);
    await expect(runUp(options({ file: ['-'] }), makeIo().io, dependencies)).rejects.toMatchObject({
      code: 'DSO_CLI_UP_STDIN',
    });
  });

  it("stops with compose's own exit code when compose refuses the files, asking nothing else", async () => {
    const { io, output } = makeIo();
    const { dependencies, calls } = fakes({ '/project/compose.yaml': 'services:\n  a: [\n' }, '');
    dependencies.composeModel = async (run) => {
      run.stderr.write('ERROR: yaml.parser.ParserError: while parsing a block mapping\n');
      throw new DsoError('DSO_CLI_COMPOSE_FAILED', 'docker-compose config refused the files', {
        exitCode: 1,
      });
    };
    await expect(runUp(options(), io, dependencies)).rejects.toMatchObject({
      code: 'DSO_CLI_COMPOSE_FAILED',
      details: { exitCode: 1 },
    });
    expect(output.stderr).toBe('ERROR: yaml.parser.ParserError: while parsing a block mapping\n');
    expect(calls.check).toEqual([]);
    expect(calls.runs).toEqual([]);
  });

  it("shows compose's warnings from its model when dso up stops before compose up, or for --dry-run, and leaves them to compose up otherwise", async () => {
    const warning = 'WARNING: The TAG variable is not set. Defaulting to a blank string.\n';
    const setUp = (imageMissing: boolean) => {
      const made = fakes(FILES, MODEL);
      const model = made.dependencies.composeModel;
      made.dependencies.composeModel = async (run) => {
        run.stderr.write(warning);
        return model(run);
      };
      if (imageMissing) {
        made.dependencies.inspectImage = async () => {
          throw new DsoError('DSO_CLI_UP_IMAGE_UNKNOWN', 'the image dso-test/busybox: is not here');
        };
      }
      return made;
    };
    const stopped = makeIo();
    await expect(runUp(options(), stopped.io, setUp(true).dependencies)).rejects.toMatchObject({
      code: 'DSO_CLI_UP_IMAGE_UNKNOWN',
    });
    expect(stopped.output.stderr).toContain(warning);
    const dry = makeIo();
    await runUp(options({ dryRun: true }), dry.io, setUp(false).dependencies);
    expect(dry.output.stderr).toContain(warning);
    const ran = makeIo();
    const { dependencies, calls } = setUp(false);
    expect(await runUp(options(), ran.io, dependencies)).toBe(0);
    expect(calls.runs).toHaveLength(1);
    expect(ran.output.stderr).not.toContain('WARNING');
  });

  it('says what to do for a built service without an image', async () => {
    const built = fakes(
      {
        '/project/compose.yaml':
          'services:\n  web: { build: ., environment: { K: dsofile://k } }\n',
      },
      "services:\n  web:\n    build:\n      context: /project\n    environment:\n      K: dsofile://k\nversion: '3.9'\n",
    );
    await expect(runUp(options(), makeIo().io, built.dependencies)).rejects.toMatchObject({
      code: 'DSO_CLI_UP_NO_COMMAND',
      message: expect.stringContaining('service web is built (build:) and names no image'),
    });
  });

  it("passes the agent's refusal on, and runs no compose", async () => {
    const { dependencies, calls } = fakes(FILES, MODEL);
    const agent = dependencies.agent();
    dependencies.agent = () => ({
      check: agent.check,
      status: async () => {
        throw new DsoError('DSO_CLI_AGENT_UNREACHABLE', 'no agent');
      },
      resolve: async () => {
        throw new DsoError(
          'DSO_AGENT_RESOLVE_DENIED',
          'api.resolveAllow allows no pattern for dso://app/api/token: add a pattern to api.resolveAllow in dso.yaml (e.g. "dso://app/api/token") and restart the agent',
        );
      },
    });
    await expect(runUp(options(), makeIo().io, dependencies)).rejects.toMatchObject({
      code: 'DSO_AGENT_RESOLVE_DENIED',
    });
    expect(calls.runs).toEqual([]);
  });

  it('says how to start the agent when it is not running', async () => {
    const { dependencies, calls } = fakes(FILES, MODEL);
    const socketPath = join(dir, 'agent.sock');
    dependencies.agent = () => createAgentClient({ socketPath });
    await expect(runUp(options(), makeIo().io, dependencies)).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_UNREACHABLE',
      message: `dso up checks that every secret exists before it starts anything, and the agent could not check: the agent is not running (no socket at ${socketPath}): start it with dso-agent or systemctl start dso-agent (or start without the check: dso up --no-check)`,
    });
    expect(calls.runs).toEqual([]);
  });

  it('checks every dso:// and dsofile:// reference first and starts nothing when one is missing, naming it and its service', async () => {
    const { dependencies, calls } = fakes(
      { '/project/compose.yaml': 'services: {}\n' },
      // What compose's config prints for the project.
      `
services:
  app:
    image: dso-test/busybox:1
    entrypoint: [ "sleep" ]
    environment:
      API_TOKEN: dso://app/api/token
      KEY_FILE: dsofile://app/missing/key
  web:
    image: dso-test/busybox:1
    entrypoint: [ "sleep" ]
    environment: [ "OTHER_FILE=dsofile://app/missing/key" ]
`,
    );
    const error = await runUp(options({ detach: true }), makeIo().io, dependencies).catch(
      (caught: unknown) => caught,
    );
    expect(error).toMatchObject({ code: 'DSO_CLI_UP_SECRET_MISSING' });
    expect((error as Error).message).toBe(
      'nothing was started: a secret the services use cannot be had: dsofile://app/missing/key (app.KEY_FILE, web.OTHER_FILE): DSO_PROVIDER_NOT_FOUND (no secret at app/missing/key): store it (dso secret set <path>) or fix the reference, then run dso up again',
    );
    expect(calls.check).toEqual([['dso://app/api/token', 'dsofile://app/missing/key']]);
    expect(calls.resolve).toEqual([]);
    expect(calls.runs).toEqual([]);
  });

  it('starts without the check with --no-check', async () => {
    const { dependencies, calls } = fakes(
      { '/project/compose.yaml': 'services: {}\n' },
      // What compose's config prints for the project.
      `
services:
  app:
    image: dso-test/busybox:1
    entrypoint: [ "sleep" ]
    environment: { KEY_FILE: dsofile://app/missing/key }
`,
    );
    expect(await runUp(options({ check: false }), makeIo().io, dependencies)).toBe(0);
    expect(calls.check).toEqual([]);
    expect(calls.runs).toHaveLength(1);
  });

  it('refuses a value an environment variable cannot carry, without showing it', async () => {
    const { dependencies, calls } = fakes({ '/project/compose.yaml': 'services: {}\n' }, ONE, {
      'dso://t': `${FILE_CANARY}\0`,
    });
    let message = '';
    await runUp(options(), makeIo().io, dependencies).catch((error: Error) => {
      expect(error).toMatchObject({ code: 'DSO_CLI_UP_VALUE_BINARY' });
      message = error.message;
    });
    expect(message).toBe(
      'the value of dso://t is not UTF-8 text without NUL bytes, which an environment variable cannot carry: deliver it as a file with dsofile://',
    );
    expect(calls.runs).toEqual([]);
    expect(calls.returned.every((value) => value.every((byte) => byte === 0))).toBe(true);
  });

  it("fails with DSO_CLI_COMPOSE_FAILED carrying compose's exit code when compose exits non-zero, and DSO_CLI_COMPOSE_MISSING without compose", async () => {
    const { io, output } = makeIo();
    const { dependencies } = fakes({ '/project/compose.yaml': 'services: {}\n' }, ONE);
    dependencies.runCompose = async () => 3;
    const program = new Command('dso').exitOverride();
    registerUpCommand(program, io, () => dependencies);
    await expect(program.parseAsync(['up'], { from: 'user' })).rejects.toMatchObject({
      code: 'DSO_CLI_COMPOSE_FAILED',
      details: { exitCode: 3 },
      message: 'compose up exited 3: see its output above (dso exits with the same code)',
    });
    dependencies.detectCompose = async () => {
      throw new DsoError('DSO_CLI_COMPOSE_MISSING', 'install compose');
    };
    await expect(runUp(options(), io, dependencies)).rejects.toMatchObject({
      code: 'DSO_CLI_COMPOSE_MISSING',
    });
    expect(output.stdout + output.stderr).not.toContain('value-of');
  });

  it('refuses near-miss references before asking or starting anything, naming service.VARIABLE and what was meant', async () => {
    const { io, output } = makeIo();
    const { dependencies, calls } = fakes(
      { '/project/compose.yaml': 'services: {}\n' },
      // What compose's config prints for the project.
      `
services:
  api:
    entrypoint: [ sleep ]
    environment:
      DB_FILE: dsofile:/app/db/password
      PLAIN: postgres://db:5432/app
      TOKEN: dso://app/api/token
    image: x
  web:
    entrypoint: [ sleep ]
    environment:
      KEY: dos://app/key
      OTHER: dso//app/other
    image: x
`,
    );
    const error = await runUp(options({ detach: true }), io, dependencies).catch(
      (caught: unknown) => caught,
    );
    expect(error).toMatchObject({ code: 'DSO_REFERENCE_NEAR_MISS' });
    expect((error as Error).message).toBe(
      'nothing was started: api.DB_FILE="dsofile:/app/db/password" is not a reference; did you mean dsofile://app/db/password?; web.KEY="dos://app/key" is not a reference; did you mean dso://app/key?; web.OTHER="dso//app/other" is not a reference; did you mean dso://app/other? Fix the compose file (compose would pass them to the application as plain text), then run dso up again',
    );
    expect(exitCodeFor(error)).toBe(EXIT_CODES.invalid);
    expect(calls.check).toEqual([]);
    expect(calls.resolve).toEqual([]);
    expect(calls.inspect).toEqual([]);
    expect(calls.runs).toEqual([]);
    expect(output.stderr).toBe('');
  });

  it('plans only the services compose up starts: no profile, an active one (--profile, COMPOSE_PROFILES), or named', async () => {
    const model = `
services:
  app:
    entrypoint: [ sleep ]
    environment: { T: dso://app/t }
    image: x
  debug:
    entrypoint: [ sleep ]
    environment: { D: dso://app/missing/debug, TYPO: "dsofile:/x" }
    image: x
    profiles: [ debug ]
`;
    const files = { '/project/compose.yaml': 'services: {}\n' };
    const plain = fakes(files, model);
    await runUp(options(), makeIo().io, plain.dependencies);
    expect(plain.calls.check).toEqual([['dso://app/t']]);
    expect(Object.keys(parse(plain.calls.runs[0]?.override as string).services)).toEqual(['app']);

    const given = fakes(files, model);
    await expect(
      runUp(options({ profile: ['debug'] }), makeIo().io, given.dependencies),
    ).rejects.toMatchObject({ code: 'DSO_REFERENCE_NEAR_MISS' });
    // Compose is asked with the profile too (Compose v2 then prints the active services only).
    expect(given.calls.models[0]?.args).toEqual([
      '--profile',
      'debug',
      '-f',
      '/project/compose.yaml',
    ]);
    const cases: Array<[Partial<UpOptions>, NodeJS.ProcessEnv]> = [
      [{}, { COMPOSE_PROFILES: 'other,debug' }],
      [{ composeArgs: ['--build', 'debug'] }, {}],
    ];
    for (const [extra, env] of cases) {
      const active = fakes(files, model);
      await expect(
        runUp(options(extra), makeIo(env).io, active.dependencies),
      ).rejects.toMatchObject({ code: 'DSO_REFERENCE_NEAR_MISS' });
    }
  });

  it('passes the arguments after -- to compose up', async () => {
    const { io } = makeIo();
    const { dependencies, calls } = fakes(
      { '/project/compose.yaml': 'services: {}\n' },
      PLAIN_MODEL,
    );
    const program = new Command('dso').exitOverride();
    registerUpCommand(program, io, () => dependencies);
    await program.parseAsync(['up', '-d', '-p', 'demo', '--', '--build', 'a'], { from: 'user' });
    expect(calls.runs[0]).toMatchObject({
      args: ['-p', 'demo', '-f', '/project/compose.yaml'],
      upArgs: ['up', '-d', '--build', 'a'],
    });
  });
});
