import { existsSync } from 'node:fs';
import { chmod, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  type ComposeRun,
  composeModel,
  containerId,
  detectCompose,
  inspectImageCommand,
  runCompose,
} from './docker-cli.js';

// Stand-ins for docker and docker-compose: shell scripts first on PATH.
let bin: string;
let scratch: string;
let env: NodeJS.ProcessEnv;
beforeEach(async () => {
  bin = await mkdtemp(join(tmpdir(), 'dso-cli-docker-'));
  scratch = await mkdtemp(join(tmpdir(), 'dso-cli-scratch-'));
  // Only the stand-ins and the few tools they use: the host's own compose must not be found.
  for (const tool of ['cat', 'stat', 'mkfifo']) {
    const found = ['/usr/bin', '/bin']
      .map((dir) => join(dir, tool))
      .find((path) => existsSync(path));
    if (found) await symlink(found, join(bin, tool));
  }
  env = { PATH: bin, TMPDIR: scratch };
});
afterEach(async () => {
  await rm(bin, { recursive: true, force: true });
  await rm(scratch, { recursive: true, force: true });
});

async function script(name: string, body: string): Promise<void> {
  const path = join(bin, name);
  await writeFile(path, `#!/bin/sh\n${body}\n`);
  await chmod(path, 0o755);
}

const DOCKER = `
case "$1 $2" in
  "compose version") [ -n "$FAKE_PLUGIN" ] && exit 0; echo "docker: 'compose' is not a docker command." >&2; exit 1 ;;
  "image inspect")
    case "$5" in
      app:1) echo '{"Entrypoint":["/init"],"Cmd":["serve","--port","80"],"Env":["X=1"]}' ;;
      bare) echo '{"Entrypoint":null,"Cmd":null}' ;;
      *) echo "Error: No such image: $5" >&2; exit 1 ;;
    esac
    exit 0 ;;
  "container inspect")
    [ "$5" = web-1 ] && { echo ${'a'.repeat(64)}; exit 0; }
    echo "Error: No such container: $5" >&2; exit 1 ;;
esac
exit 2
`;

describe('detectCompose', () => {
  it('prefers docker compose, then docker-compose (read from a named pipe), else says how to install', async () => {
    await script('docker', DOCKER);
    await expect(detectCompose({ ...env, FAKE_PLUGIN: '1' })).resolves.toEqual({
      argv: ['docker', 'compose'],
      override: 'stdin',
      model: 'json',
    });
    await expect(detectCompose(env)).rejects.toMatchObject({
      code: 'DSO_CLI_COMPOSE_MISSING',
      message: expect.stringContaining(
        'install the Compose plugin (apt-get install docker-compose-plugin',
      ),
    });
    await script('docker-compose', 'exit 0');
    await expect(detectCompose(env)).resolves.toEqual({
      argv: ['docker-compose'],
      override: 'fifo',
      model: 'yaml',
    });
  });
});

describe('composeModel', () => {
  function capture() {
    const stderr = new PassThrough();
    let text = '';
    stderr.on('data', (chunk) => {
      text += chunk;
    });
    return { stderr, text: () => text };
  }

  it('runs config (with --format json for Compose v2) with the global arguments, answers its output and passes its warnings on', async () => {
    await script('docker-compose', 'echo "argv: $*"; echo "WARNING: TAG is not set" >&2');
    await script('docker', 'echo "argv: $*"');
    const { stderr, text } = capture();
    const args = ['-p', 'proj', '-f', '/p/compose.yaml'];
    await expect(
      composeModel({
        compose: { argv: ['docker-compose'], override: 'fifo', model: 'yaml' },
        args,
        env,
        stderr,
      }),
    ).resolves.toBe('argv: -p proj -f /p/compose.yaml config\n');
    await expect(
      composeModel({
        compose: { argv: ['docker', 'compose'], override: 'stdin', model: 'json' },
        args,
        env,
        stderr,
      }),
    ).resolves.toBe('argv: compose -p proj -f /p/compose.yaml config --format json\n');
    // Its warnings go to the stderr given.
    expect(text()).toBe('WARNING: TAG is not set\n');
  });

  it("passes compose's own message on and fails with its exit code when it refuses the files", async () => {
    await script(
      'docker-compose',
      'echo "ERROR: The Compose file \'./compose.yaml\' is invalid" >&2; exit 14',
    );
    const { stderr, text } = capture();
    await expect(
      composeModel({
        compose: { argv: ['docker-compose'], override: 'fifo', model: 'yaml' },
        args: [],
        env,
        stderr,
      }),
    ).rejects.toMatchObject({
      code: 'DSO_CLI_COMPOSE_FAILED',
      details: { exitCode: 14 },
      message: expect.stringContaining('nothing was started'),
    });
    expect(text()).toBe("ERROR: The Compose file './compose.yaml' is invalid\n");
  });

  it('says so when compose is not there', async () => {
    await expect(
      composeModel({
        compose: { argv: ['docker-compose'], override: 'fifo', model: 'yaml' },
        args: [],
        env,
        stderr: new PassThrough(),
      }),
    ).rejects.toMatchObject({ code: 'DSO_CLI_COMPOSE_MISSING' });
  });
});

describe('inspectImageCommand', () => {
  it("reads the image's Entrypoint and Cmd, empty when null", async () => {
    await script('docker', DOCKER);
    expect(await inspectImageCommand('app:1', 'web', env)).toEqual({
      entrypoint: ['/init'],
      cmd: ['serve', '--port', '80'],
    });
    expect(await inspectImageCommand('bare', 'web', env)).toEqual({ entrypoint: [], cmd: [] });
  });

  it('says to pull or build an image the engine does not have', async () => {
    await script('docker', DOCKER);
    await expect(inspectImageCommand('missing:2', 'web', env)).rejects.toMatchObject({
      code: 'DSO_CLI_UP_IMAGE_UNKNOWN',
      message: expect.stringContaining(
        'the image missing:2 is not on this engine: pull or build it first (docker compose pull web / docker compose build web), or give the service an entrypoint',
      ),
    });
  });

  it('says to install docker when there is none', async () => {
    await expect(inspectImageCommand('app:1', 'web', env)).rejects.toMatchObject({
      code: 'DSO_CLI_DOCKER_FAILED',
      message: expect.stringContaining('the docker CLI is not installed'),
    });
  });
});

describe('containerId', () => {
  it('turns a name into its full id, and names an unknown one', async () => {
    await script('docker', DOCKER);
    expect(await containerId('web-1', env)).toBe('a'.repeat(64));
    await expect(containerId('nope', env)).rejects.toMatchObject({
      code: 'DSO_CLI_CONTAINER_UNKNOWN',
      message:
        'no container "nope" on this engine (Error: No such container: nope): give a name or id from docker ps',
    });
  });
});

describe('runCompose', () => {
  const CANARY = 'canary-docker-cli-40be';

  function run(compose: ComposeRun['compose'], override: string | undefined, upArgs = ['up']) {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    stdout.on('data', (chunk) => {
      out += chunk;
    });
    stderr.on('data', (chunk) => {
      out += chunk;
    });
    const done = runCompose({
      compose,
      args: ['-f', '/p/compose.yaml'],
      ...(override === undefined ? {} : { override }),
      upArgs,
      env: { ...env, DSO_UP_A: CANARY },
      stdout,
      stderr,
    });
    return done.then((code) => ({ code, out }));
  }

  // Prints its argv, the last -f file's content, and whether it got the value (never the value).
  const COMPOSE = `
echo "argv: $*"
last=""; prev=""
for a in "$@"; do [ "$prev" = "-f" ] && last="$a"; prev="$a"; done
if [ "$last" = "-" ]; then echo "override:"; cat; else echo "override from $(stat -c %F "$last" 2>/dev/null):"; cat "$last"; fi
[ "$DSO_UP_A" = "${CANARY}" ] && echo "value: in the environment"
exit 4
`;

  it('hands docker-compose the override through a named pipe it removes afterwards, the value in its environment', async () => {
    await script('docker-compose', COMPOSE);
    const { code, out } = await run(
      { argv: ['docker-compose'], override: 'fifo', model: 'yaml' },
      'services: {}\n',
    );
    expect(code).toBe(4);
    expect(out).toMatch(
      /^argv: -f \/p\/compose\.yaml -f \S+\/dso-up-\w+\/dso-up\.override\.yaml up\n/,
    );
    expect(out).toContain('override from fifo:\nservices: {}\n');
    expect(out).toContain('value: in the environment');
    expect(await readdir(scratch)).toEqual([]);
  });

  it('hands docker compose the override on stdin as -f -', async () => {
    await script('docker', `shift; ${COMPOSE}`);
    const { code, out } = await run(
      { argv: ['docker', 'compose'], override: 'stdin', model: 'json' },
      'services: {}\n',
    );
    expect(code).toBe(4);
    expect(out).toContain('argv: -f /p/compose.yaml -f - up\noverride:\nservices: {}\n');
    expect(out).toContain('value: in the environment');
  });

  it('does not hang when compose exits without reading the pipe', async () => {
    await script('docker-compose', 'echo "usage" >&2; exit 2');
    const { code, out } = await run(
      { argv: ['docker-compose'], override: 'fifo', model: 'yaml' },
      'services: {}\n',
    );
    expect({ code, out }).toEqual({ code: 2, out: 'usage\n' });
    expect(await readdir(scratch)).toEqual([]);
  });

  it('runs compose with the user files only when there is no override', async () => {
    await script('docker-compose', 'echo "argv: $*"');
    expect(
      await run({ argv: ['docker-compose'], override: 'fifo', model: 'yaml' }, undefined, [
        'up',
        '-d',
      ]),
    ).toEqual({
      code: 0,
      out: 'argv: -f /p/compose.yaml up -d\n',
    });
  });

  it('says so when compose is not there', async () => {
    await expect(
      run({ argv: ['docker-compose'], override: 'stdin', model: 'yaml' }, undefined),
    ).rejects.toMatchObject({
      code: 'DSO_CLI_COMPOSE_MISSING',
    });
  });
});
