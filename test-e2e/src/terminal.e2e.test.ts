/**
 * What a person sees at a terminal: the built agent started in the foreground in a tmux pane
 * (its standard output a terminal, as under `npm start`, whose last step runs this same binary),
 * a container delivered, and `dso status` in another pane. Checked on the screen tmux shows
 * (`capture-pane`): readable lines, no JSON braces, no stack traces, no escape sequences shown
 * as text, the container named, and no secret value. On a private engine, so the agent manages
 * only the test's container. Also `dso secret rm` of a missing path failing with the built CLI.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type PrivateEngine,
  startPrivateEngine,
} from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  AGENT_BIN,
  CLI_BIN,
  createWorkspace,
  dockerOn,
  freePort,
  RUN_ID,
  removeRunContainers,
  TEST_IMAGE,
  TEST_LABEL,
  type Workspace,
  waitFor,
} from './harness.js';

const run = promisify(execFile);
const CANARY = `canary-terminal-${randomUUID().slice(0, 8)}`;
/** A tmux server of this file's own, so no other session is touched or seen. */
const TMUX_SOCKET = `dso-e2e-${RUN_ID.slice(0, 8)}`;

const tmux = (...args: string[]) => run('tmux', ['-L', TMUX_SOCKET, ...args]);
const screen = async (pane: string) =>
  (await tmux('capture-pane', '-p', '-J', '-S', '-200', '-t', pane)).stdout;

const leftovers: {
  engine?: PrivateEngine;
  workspace?: Workspace;
  container?: string;
  agentPid?: number;
} = {};
afterAll(async () => {
  // The agent first (closing tmux only hangs its terminal up, and the agent ignores SIGHUP):
  // SIGTERM, then SIGKILL if it has not stopped within 15 s.
  if (leftovers.agentPid !== undefined) await stopProcess(leftovers.agentPid);
  await tmux('kill-server').catch(() => {
    // No server left (never started, or already gone): nothing to stop.
  });
  // tmux may leave its socket file behind.
  const tmuxDir = process.env.TMUX_TMPDIR || tmpdir();
  await rm(join(tmuxDir, `tmux-${process.getuid?.() ?? 0}`, TMUX_SOCKET), { force: true });
  if (leftovers.engine !== undefined && leftovers.container !== undefined) {
    await dockerOn(leftovers.engine.host, 'rm', '-f', '-v', leftovers.container).catch(() => {
      // Already removed by the test.
    });
  }
  await removeRunContainers();
  await leftovers.engine?.destroy();
  await leftovers.workspace?.[Symbol.asyncDispose]();
});

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    // ESRCH: it has exited.
    return false;
  }
};

async function stopProcess(pid: number) {
  if (!alive(pid)) return;
  process.kill(pid, 'SIGTERM');
  await waitFor('the agent to stop', async () => (alive(pid) ? undefined : true), {
    timeoutMs: 15_000,
  }).catch(() => {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  });
}

/** A script that runs `command` with `env` (no value of a secret: paths and addresses only). */
async function script(path: string, env: Record<string, string>, command: string[]) {
  const quote = (text: string) => `'${text.replaceAll("'", "'\\''")}'`;
  const lines = [
    '#!/bin/sh',
    ...Object.entries(env).map(([name, value]) => `export ${name}=${quote(value)}`),
    `exec ${command.map(quote).join(' ')}`,
  ];
  await writeFile(path, `${lines.join('\n')}\n`, { mode: 0o700 });
  await chmod(path, 0o700);
  return path;
}

/** Waits until the pane shows `text`; on a timeout the error carries the screen. */
async function waitForScreen(pane: string, text: string | RegExp, timeoutMs = 60_000) {
  try {
    return await waitFor(
      `${String(text)} in the ${pane} pane`,
      async () => {
        const shown = await screen(pane);
        return (typeof text === 'string' ? shown.includes(text) : text.test(shown))
          ? shown
          : undefined;
      },
      { timeoutMs },
    );
  } catch (error) {
    throw new Error(`${(error as Error).message}; the screen:\n${await screen(pane)}`);
  }
}

/** What must hold for every screenful a person reads. */
function expectReadable(text: string) {
  // No JSON log lines, no stack frames, no escape sequences printed as text.
  expect(text).not.toMatch(/^\s*\{"/m);
  expect(text).not.toMatch(/^\s+at .+\(.+:\d+:\d+\)$/m);
  expect(text).not.toContain('\u001b');
  expect(text).not.toMatch(/\[\d+(;\d+)*m/);
  expect(text).not.toContain(CANARY);
}

describe('a terminal session', () => {
  it('dso secret rm of a missing path fails, naming the path', async () => {
    const workspace = await createWorkspace();
    try {
      expect((await workspace.cli(['init'])).code).toBe(0);
      const result = await workspace.cli(['secret', 'rm', 'app/nothing']);
      expect(result.code).not.toBe(0);
      expect(result.stderr).toContain('no secret at app/nothing');
      expect(result.stdout).not.toContain('deleted');
    } finally {
      await workspace[Symbol.asyncDispose]();
    }
  });

  it('reads cleanly: agent start, a delivery and dso status', async () => {
    const engine = await startPrivateEngine();
    leftovers.engine = engine;
    const workspace = await createWorkspace();
    leftovers.workspace = workspace;
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect(await workspace.cli(['secret', 'set', 'app/db'], CANARY)).toMatchObject({ code: 0 });

    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      TERM: 'xterm-256color',
      DSO_HOME: workspace.home,
      DSO_API_SOCKET: workspace.env.DSO_API_SOCKET ?? join(workspace.home, 'agent.sock'),
      DSO_METRICS_ADDRESS: `127.0.0.1:${await freePort()}`,
      DOCKER_HOST: engine.host,
      // The workspace's own volume driver name and folders: other agents of the run serve theirs.
      DSO_VOLUME_DRIVER_NAME: workspace.volumeDriver,
      DSO_VOLUMES_ROOT: workspace.volumesRoot,
      DSO_HOST_PATH_ROOT: workspace.hostPathRoot,
    };
    const agentScript = await script(join(workspace.home, 'agent.sh'), env, [
      process.execPath,
      AGENT_BIN,
    ]);
    await tmux('new-session', '-d', '-x', '200', '-y', '50', '-s', 'agent', agentScript);
    // remain-on-exit keeps what an agent that stopped printed, for the failure message.
    await tmux('set-option', '-t', 'agent', 'remain-on-exit', 'on');
    // The script execs the agent: the pane's process is the agent.
    leftovers.agentPid = Number(
      (await tmux('display-message', '-p', '-t', 'agent', '#{pane_pid}')).stdout.trim(),
    );
    await waitForScreen('agent', 'agent ready');

    const name = `dso-term-${randomUUID().slice(0, 8)}`;
    leftovers.container = name;
    await dockerOn(
      engine.host,
      'run',
      '-d',
      '--name',
      name,
      '--network',
      'none',
      '--label',
      `${TEST_LABEL}=${RUN_ID}`,
      '--label',
      'dso.enable=true',
      '--label',
      'dso.file.db=dsofile://app/db',
      '--tmpfs',
      '/run/secrets',
      TEST_IMAGE,
      'sleep',
      '600',
    );
    await waitForScreen('agent', 'secrets delivered');

    const statusScript = await script(join(workspace.home, 'status.sh'), env, [
      process.execPath,
      CLI_BIN,
      'status',
    ]);
    await tmux('new-session', '-d', '-x', '200', '-y', '50', '-s', 'status');
    await tmux('set-option', '-t', 'status', 'remain-on-exit', 'on');
    await tmux('respawn-pane', '-k', '-t', 'status', statusScript);
    const status = await waitFor('dso status on the terminal', async () => {
      const text = await screen('status');
      return /pane is dead|Pane is dead/.test(text) || text.includes(name) ? text : undefined;
    });

    const agentScreen = await screen('agent');
    const context = `agent screen:\n${agentScreen}\nstatus screen:\n${status}`;
    // Lines a person reads: time, level, message.
    const logLines = agentScreen.split('\n').filter((line) => line.trim() !== '');
    expect(logLines.length, context).toBeGreaterThan(2);
    for (const line of logLines) {
      expect(line, context).toMatch(/^\d\d:\d\d:\d\d\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR|FATAL)/);
    }
    expect(agentScreen, context).toMatch(/INFO {2}agent ready/);
    expect(agentScreen, context).toMatch(/INFO {2}secrets delivered/);
    expectReadable(agentScreen);

    // The status table names the container, in rows and columns a person reads.
    expect(status, context).toContain(name);
    expect(status, context).toMatch(/CONTAINER/i);
    expectReadable(status);

    await tmux('send-keys', '-t', 'agent', 'C-c');
    await waitForScreen('agent', /INFO {2}agent stopped/);
    expectReadable(await screen('agent'));
  }, 180_000);
});
