/**
 * `npm start` (tools/start.mjs) never asks anything: run with its stdin closed, and under a
 * pseudo-terminal (`script`, so Nx would see a terminal if it were handed one), it goes through
 * its four stages to a running agent with no question on its output, and the builds (cached
 * here: `e2e` builds first) print a line per project, not their replayed logs. A question would
 * make it stop before the agent is ready: `waitFor`'s bound turns that into a failure. The agent
 * runs on a private engine and is stopped by stopping the script.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stripVTControlCharacters } from 'node:util';
import { describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import { agentEnv, createWorkspace, trackLeftovers, waitFor } from './harness.js';

const leftovers = trackLeftovers();
const ROOT = join(import.meta.dirname, '..', '..');
const START = join(ROOT, 'tools', 'start.mjs');
/** Bounds a run that must end in a ready agent; builds are cached, but the machine is shared. */
const READY_WITHIN_MS = 300_000;
/** The bound above, the private engine's start and the agent's stop. */
const TEST_TIMEOUT_MS = READY_WITHIN_MS + 60_000;

/** What Nx (or anything else) would print to ask. */
const QUESTIONS = [/share usage data/i, /install nx console/i, /\(y\/n\)/i, /ok to proceed/i];

async function environment() {
  const workspace = await createWorkspace();
  leftovers.workspaces.add(workspace);
  if (!leftovers.engines.size) leftovers.engines.add(await startPrivateEngine());
  const [engine] = leftovers.engines;
  const { env } = await agentEnv(workspace, { DOCKER_HOST: engine?.host });
  // An Nx running this test must not leak its task's settings into the Nx start.mjs runs.
  for (const name of Object.keys(env)) if (name.startsWith('NX_')) delete env[name];
  return { workspace, env };
}

/** Follows a started script's output until the agent it runs is ready, then stops it. */
async function runUntilReady(child: ChildProcess, stop: () => void) {
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
  try {
    const outcome = await waitFor(
      'npm start to reach a ready agent',
      async () => {
        if (output.includes('agent ready')) return 'ready';
        return child.exitCode === null && child.signalCode === null ? undefined : 'exited';
      },
      { timeoutMs: READY_WITHIN_MS, intervalMs: 250 },
    ).catch((error: Error) => {
      throw new Error(`${error.message}; its output:\n${output}`, { cause: error });
    });
    if (outcome === 'exited')
      throw new Error(`start.mjs exited before the agent was ready:\n${output}`);
  } finally {
    stop();
    await exited;
  }
  return output;
}

function expectQuietStages(raw: string) {
  // On a terminal Nx colours its lines.
  const output = stripVTControlCharacters(raw);
  for (const question of QUESTIONS) expect(output).not.toMatch(question);
  const stages = ['[1/4]', '[2/4]', '[3/4]', '[4/4]'].map((stage) => output.indexOf(stage));
  expect(stages.every((at, i) => at >= 0 && (i === 0 || at > (stages[i - 1] ?? 0)))).toBe(true);
  // The build stage: a line per project, none of tsup's replayed log.
  const build = output.slice(stages[1], stages[2]);
  expect(build).toMatch(/nx run @dso\/cli:build/);
  expect(build).not.toMatch(/Build success|CLI Building entry|DTS Build start/);
}

describe('npm start never asks and stays quiet when cached (tools/start.mjs, private engine)', () => {
  it(
    'with stdin closed: four stages to a ready agent, a line per cached build',
    async () => {
      const { workspace, env } = await environment();
      const child = spawn(process.execPath, [START], { cwd: ROOT, env, stdio: 'pipe' });
      child.stdin.end(); // closed: anything that reads it gets end-of-file, nothing waits on it
      const output = await runUntilReady(child, () => child.kill('SIGTERM'));
      expectQuietStages(output);
      expect(existsSync(join(workspace.home, 'vault.dso'))).toBe(true);
    },
    TEST_TIMEOUT_MS,
  );

  it(
    'on a terminal (a pseudo-terminal from `script`): the same, no question',
    async () => {
      const { env } = await environment();
      // `exec`: start.mjs is script's own child, so stopping it (it stops the agent) ends script.
      const child = spawn(
        'script',
        ['-q', '-e', '-c', `exec ${process.execPath} ${START}`, '/dev/null'],
        { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] },
      );
      const output = await runUntilReady(child, () => {
        const start = startPid(child.pid);
        if (start) process.kill(start, 'SIGTERM');
        else child.kill('SIGTERM');
      });
      expectQuietStages(output);
    },
    TEST_TIMEOUT_MS,
  );
});

/** The pid of the one child `script` ran (start.mjs), from /proc. */
function startPid(scriptPid: number | undefined): number | undefined {
  if (scriptPid === undefined) return undefined;
  try {
    const children = readFileSync(`/proc/${scriptPid}/task/${scriptPid}/children`, 'utf8')
      .trim()
      .split(/\s+/)
      .filter(Boolean)
      .map(Number);
    return children[0];
  } catch {
    // script has already exited: nothing left to stop.
    return undefined;
  }
}
