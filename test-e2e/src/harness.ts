import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import testImage from '../../tools/test-image.json' with { type: 'json' };

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '..', '..');

/** The built artifacts under test: nothing here imports the packages' source. */
export const CLI_BIN = join(ROOT, 'apps/cli/bin/dso.js');
export const AGENT_BIN = join(ROOT, 'apps/agent/bin/dso-agent.js');
export const TEST_IMAGE = testImage.image;
/** Every container a test creates carries this label, valued with the run's id, for cleanup. */
export const TEST_LABEL = testImage.label;
export const RUN_ID = randomUUID();

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion with optional stdin; never rejects on a non-zero exit. */
export function runCommand(
  command: string,
  args: string[],
  options: { env?: NodeJS.ProcessEnv; input?: string | Buffer; timeoutMs?: number } = {},
): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      env: options.env ?? process.env,
      stdio: ['pipe', 'pipe', 'pipe'],
      timeout: options.timeoutMs ?? 60_000,
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (text: string) => {
      stdout += text;
    });
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
    child.stdin.end(options.input ?? '');
  });
}

/** Runs the docker CLI; its output is trimmed, so compare file contents with {@link dockerRaw}. */
export async function docker(...args: string[]): Promise<string> {
  return (await dockerRaw(...args)).trim();
}

/** Runs the docker CLI and returns its output byte for byte. */
export async function dockerRaw(...args: string[]): Promise<string> {
  const { stdout } = await execFileAsync('docker', args, { maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/** Waits for `check` to return a value other than undefined, or fails after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined>,
  { timeoutMs = 30_000, intervalMs = 100 } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
}

/** A DSO home folder of the test's own, with a vault created by the built CLI. */
export async function createWorkspace() {
  const home = await mkdtemp(join(tmpdir(), 'dso-e2e-'));
  // The operator's own key settings would point the test at another vault's key.
  const {
    DSO_VAULT_PASSPHRASE: _passphrase,
    DSO_VAULT_KEY_FILE: _keyFile,
    DSO_VAULT_PATH: _path,
    ...inherited
  } = process.env;
  const env: NodeJS.ProcessEnv = { ...inherited, DSO_HOME: home };
  const cli = (args: string[], input?: string) =>
    runCommand(process.execPath, [CLI_BIN, ...args], { env, input });
  return {
    home,
    env,
    cli,
    async [Symbol.asyncDispose]() {
      await rm(home, { recursive: true, force: true });
    },
  };
}

/** The built agent, its whole output kept for the canary checks. */
export function startAgent(env: NodeJS.ProcessEnv) {
  const child: ChildProcess = spawn(process.execPath, [AGENT_BIN], {
    env: { ...env, DSO_LOG_LEVEL: 'trace' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  child.stderr?.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    get output() {
      return output;
    },
    /** Log lines as parsed JSON (non-JSON lines are skipped). */
    lines(): Array<Record<string, unknown>> {
      return output
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as Record<string, unknown>);
    },
    waitForLog(message: string, timeoutMs = 30_000) {
      return waitFor(
        `agent log "${message}"`,
        async () => this.lines().find((line) => line.msg === message),
        { timeoutMs },
      );
    },
    async stop(): Promise<number | null> {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    },
    async [Symbol.asyncDispose]() {
      if (child.exitCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Runs a labelled, network-less test container in the background; removed on dispose. */
export async function runContainer(args: string[], command: string[] = ['sleep', '600']) {
  const name = `dso-test-${randomUUID()}`;
  const id = await docker(
    'run',
    '-d',
    '--name',
    name,
    '--network',
    'none',
    '--label',
    `${TEST_LABEL}=${RUN_ID}`,
    ...args,
    TEST_IMAGE,
    ...command,
  );
  return {
    id,
    name,
    exec: (...cmd: string[]) => docker('exec', id, ...cmd),
    /** A file's exact content, not trimmed. */
    readFile: (path: string) => dockerRaw('exec', id, 'cat', path),
    async [Symbol.asyncDispose]() {
      await docker('rm', '-f', '-v', id).catch(() => {
        // Already gone: nothing left to clean.
      });
    },
  };
}

/** Removes every container this run labelled, even after a failed test. */
export async function removeRunContainers(): Promise<void> {
  const ids = await docker('ps', '-aq', '--filter', `label=${TEST_LABEL}=${RUN_ID}`);
  if (ids) await docker('rm', '-f', '-v', ...ids.split('\n'));
}

/**
 * Paths under `dirs` whose bytes contain `needle`, found with grep (it reads binary files as
 * text and does not follow symlinks). Every folder must exist and be searched: a check that
 * searched nothing must not pass.
 */
export async function filesContaining(needle: string, dirs: string[]): Promise<string[]> {
  for (const dir of dirs) {
    if (!(await stat(dir)).isDirectory()) throw new Error(`${dir} is not a folder to search`);
  }
  const result = await runCommand('grep', ['-rlF', '--binary-files=text', '--', needle, ...dirs], {
    timeoutMs: 300_000,
  });
  // grep: 0 = found, 1 = not found, 2 = trouble. Trouble is tolerated only for files that
  // vanished while it ran (a container's files come and go); anything else fails the check.
  if (result.code === 2) {
    const trouble = result.stderr
      .split('\n')
      .filter((line) => line && !line.endsWith('No such file or directory'));
    if (trouble.length > 0) {
      throw new Error(`grep could not search everything:\n${trouble.slice(0, 5).join('\n')}`);
    }
  } else if (result.code !== 0 && result.code !== 1) {
    throw new Error(`grep exited ${result.code}`);
  }
  return result.stdout.split('\n').filter(Boolean);
}
