import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../program.js';

const run = promisify(execFile);
let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'dso-cli-completion-'));
  // A docker that knows two running containers, for `dso status <TAB>`.
  await writeFile(
    join(dir, 'docker'),
    `#!/bin/sh\n[ "$1" = ps ] && printf 'web-1\\nworker-1\\n'\n`,
  );
  await chmod(join(dir, 'docker'), 0o755);
  // A dso whose agent manages web-1 (running) and old-job (exited).
  await writeFile(
    join(dir, 'dso'),
    `#!/bin/sh\n[ "$1" = __complete ] && printf 'web-1\\nold-job\\n'\n`,
  );
  await chmod(join(dir, 'dso'), 0o755);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function dso(args: string[], env: NodeJS.ProcessEnv = {}) {
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

/** What bash completes for the words typed (the last one is the word under the cursor). */
async function bashCompletes(words: string[]): Promise<string[]> {
  const script = join(dir, 'dso.bash');
  await writeFile(script, (await dso(['completion', 'bash'])).stdout);
  const typed = words.map((word) => `'${word}'`).join(' ');
  const { stdout } = await run(
    'bash',
    [
      '--norc',
      '-c',
      `source ${script}; COMP_WORDS=(${typed}); COMP_CWORD=${words.length - 1}; _dso; printf '%s\\n' "\${COMPREPLY[@]}"`,
    ],
    { cwd: dir, env: { PATH: `${dir}:${process.env.PATH}` } },
  );
  return stdout.split('\n').filter((line) => line !== '');
}

describe('dso completion', () => {
  it('bash: completes `dso st` to status (and the other commands that begin so)', async () => {
    expect(await bashCompletes(['dso', 'st'])).toContain('status');
    expect(await bashCompletes(['dso', 'stat'])).toEqual(['status']);
  });

  it('bash: completes subcommands, options, choices and running containers', async () => {
    expect(await bashCompletes(['dso', 'secret', 'r'])).toEqual(['rm']);
    expect(await bashCompletes(['dso', '--vers'])).toEqual(['--version']);
    expect(await bashCompletes(['dso', 'up', '--proj'])).toEqual(['--project-name']);
    expect(await bashCompletes(['dso', 'up', '--pro'])).toEqual(['--project-name', '--profile']);
    expect(await bashCompletes(['dso', 'completion', ''])).toEqual(['bash', 'zsh', 'fish']);
    // The agent's containers and the engine's running ones, each once.
    expect(await bashCompletes(['dso', 'status', 'w'])).toEqual(['web-1', 'worker-1']);
    expect(await bashCompletes(['dso', 'status', ''])).toEqual(['old-job', 'web-1', 'worker-1']);
    expect(await bashCompletes(['dso', 'rotate', 'wo'])).toEqual(['worker-1']);
    // After an option that takes a name, nothing is guessed.
    expect(await bashCompletes(['dso', 'up', '-p', ''])).toEqual([]);
  });

  it('bash: completes files after -f', async () => {
    await writeFile(join(dir, 'compose.yaml'), 'services: {}\n');
    expect(await bashCompletes(['dso', 'up', '-f', 'comp'])).toEqual(['compose.yaml']);
  });

  it('zsh: loads the same completion through bashcompinit', async () => {
    const { code, stdout } = await dso(['completion', 'zsh']);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^#compdef dso\n/);
    expect(stdout).toContain('bashcompinit');
    expect(stdout).toContain('complete -F _dso dso');
  });

  it('fish: one complete line per command and option', async () => {
    const { code, stdout } = await dso(['completion', 'fish']);
    expect(code).toBe(0);
    expect(stdout).toContain(
      "complete -c dso -n '__fish_seen_subcommand_from secret; and not __fish_seen_subcommand_from set list rm help' -a rm",
    );
    expect(stdout).toMatch(
      /^complete -c dso -n '__fish_seen_subcommand_from up' -s f -l file -r -F /m,
    );
    expect(stdout).toContain(
      `complete -c dso -n '__fish_seen_subcommand_from status' -a '(begin; dso __complete containers; docker ps --format '\\''{{.Names}}'\\''; end 2>/dev/null | sort -u)'`,
    );
  });

  it('the bash script is valid bash, and an unknown shell is a usage error', async () => {
    const script = join(dir, 'syntax.bash');
    await writeFile(script, (await dso(['completion', 'bash'])).stdout);
    await expect(run('bash', ['-n', script])).resolves.toBeDefined();
    const refused = await dso(['completion', 'powershell']);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain('bash, zsh, fish');
  });

  it('__complete containers: the names of the containers the agent reports, nothing when it is away', async () => {
    const socketPath = join(dir, 'agent.sock');
    const server = createServer((_request, response) => {
      response.writeHead(200, { 'Content-Type': 'application/json' });
      response.end(
        JSON.stringify({
          startedAt: 0,
          containers: [
            {
              id: 'a1'.repeat(32),
              name: 'api',
              lastAction: { trigger: 'started', at: 0, outcome: 'delivered' },
            },
            {
              id: 'b2'.repeat(32),
              name: 'web-1',
              lastAction: { trigger: 'started', at: 0, outcome: 'delivered' },
            },
            {
              id: 'c3'.repeat(32),
              lastAction: { trigger: 'started', at: 0, outcome: 'delivered' },
            },
          ],
          queue: { depth: 0, inFlight: 0, shed: 0 },
          cache: { entries: 0, hits: 0, misses: 0, staleServed: 0 },
          providers: [],
        }),
      );
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      expect(await dso(['__complete', 'containers'], { DSO_API_SOCKET: socketPath })).toEqual({
        code: 0,
        stdout: 'api\nweb-1\n',
        stderr: '',
      });
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    const away = await dso(['__complete', 'containers'], { DSO_API_SOCKET: socketPath });
    expect(away.stdout).toBe('');
    expect(away.code).not.toBe(0);
    // Hidden: not in the help, nor offered by completion.
    expect((await dso(['--help'])).stdout).not.toContain('__complete');
    expect((await dso(['completion', 'bash'])).stdout).not.toMatch(/commands='[^']*__complete/);
  });
});
