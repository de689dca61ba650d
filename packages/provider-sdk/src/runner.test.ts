import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createHarness,
  fixturePath,
  SPAWN_TEST_TIMEOUT_MS,
} from './protocol/test-fixtures/harness.js';

const RUNNER = fileURLToPath(new URL('./runner.ts', import.meta.url));
// Absolute, so a child whose working directory is a plugins folder still finds the loader.
const TSX_LOADER = pathToFileURL(createRequire(import.meta.url).resolve('tsx')).href;
const NODE_ARGS = ['--conditions=@dso/source', '--import', TSX_LOADER];
const CANARY = `canary-${randomUUID()}`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the runner with `args` and writes `input` lines to its stdin; then closes stdin, or,
 * with `terminateWhen`, sends SIGTERM once its output satisfies it.
 */
function runRunner(
  args: string[],
  input: unknown[] = [],
  options: { cwd?: string; terminateWhen?: (stdout: string) => boolean } = {},
): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...NODE_ARGS, RUNNER, ...args], {
      cwd: options.cwd ?? process.cwd(),
      env: { PATH: process.env.PATH ?? '' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let terminated = false;
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      if (!terminated && options.terminateWhen?.(stdout)) {
        terminated = true;
        child.kill('SIGTERM');
      }
    });
    child.stderr.on('data', (chunk) => {
      stderr += chunk;
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    for (const message of input) child.stdin.write(`${JSON.stringify(message)}\n`);
    if (options.terminateWhen === undefined) child.stdin.end();
  });
}

const initialize = (config: unknown) => ({
  jsonrpc: '2.0',
  id: 1,
  method: 'initialize',
  params: { protocolVersion: 1, sdkApiVersions: [1], name: 'runner-test', config },
});

describe('dso-provider-runner', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  const harness = createHarness(CANARY);
  let plugins: string | undefined;

  afterAll(async () => {
    expect(await harness.cleanup()).toEqual([]);
    if (plugins) await rm(plugins, { recursive: true, force: true });
  }, SPAWN_TEST_TIMEOUT_MS);

  it('prints its usage and exits 2 without a module', async () => {
    const run = await runRunner([]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('usage: dso-provider-runner <module>');
    expect(run.stdout).toBe('');
  });

  it('exits 1 with a clear error for a module that is not a provider', async () => {
    const run = await runRunner([fixturePath('not-a-provider.ts')], [initialize({})]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('exports no provider definition');
    const answer = JSON.parse(run.stdout.trim());
    expect(answer).toMatchObject({
      id: 1,
      error: { data: { code: 'DSO_PROVIDER_INVALID_CONFIG' } },
    });
  });

  it('exits 1 for a provider built for another SDK API version', async () => {
    const run = await runRunner([fixturePath('future-sdk-provider.ts')]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('SDK API version 99');
  });

  it('writes only protocol lines to stdout, whatever the provider prints', async () => {
    const run = await runRunner(
      [fixturePath('full-provider.ts')],
      [
        initialize({ canary: CANARY }),
        { jsonrpc: '2.0', id: 2, method: 'resolve', params: { path: 'noisy' } },
        { jsonrpc: '2.0', id: 3, method: 'shutdown' },
      ],
    );
    expect(run.code).toBe(0);
    const lines = run.stdout.trimEnd().split('\n');
    for (const line of lines) expect(JSON.parse(line)).toMatchObject({ jsonrpc: '2.0' });
    expect(lines.map((line) => JSON.parse(line).id).filter((id) => id !== undefined)).toEqual([
      1, 2, 3,
    ]);
    expect(run.stderr).toContain('console.log from the fixture');
    expect(run.stderr).toContain('process.stdout.write from the fixture');
    expect(run.stdout).not.toContain('from the fixture');
  });

  it('closes the provider and exits 143 on SIGTERM', async () => {
    const run = await runRunner(
      [fixturePath('full-provider.ts')],
      [initialize({ canary: CANARY })],
      {
        terminateWhen: (stdout) => stdout.includes('"id":1,'),
      },
    );
    expect(run.code).toBe(143);
    expect(run.stdout).toContain('"message":"closed"');
  });

  it('serves a package by name from the plugins folder it runs in', async () => {
    plugins = await mkdtemp(join(tmpdir(), 'dso-plugins-'));
    const packageDir = join(plugins, 'node_modules', '@acme', 'dso-provider-echo');
    await mkdir(packageDir, { recursive: true });
    await writeFile(
      join(packageDir, 'package.json'),
      JSON.stringify({ name: '@acme/dso-provider-echo', type: 'module', exports: './index.mjs' }),
    );
    const sdk = pathToFileURL(fileURLToPath(new URL('./index.ts', import.meta.url))).href;
    await writeFile(
      join(packageDir, 'index.mjs'),
      `import { z } from 'zod';
import { defineProvider, SecretValue } from ${JSON.stringify(sdk)};
export default defineProvider({
  type: 'echo',
  configSchema: z.object({ prefix: z.string() }),
  create: (config, { name }) => ({
    name,
    capabilities: { list: false, watch: false, probe: false, health: false },
    async resolve({ path }) { return { value: SecretValue.fromText(config.prefix + path), version: '1' }; },
    async close() {},
  }),
});
`.replace(
        "from 'zod'",
        `from ${JSON.stringify(pathToFileURL(createRequire(import.meta.url).resolve('zod')).href)}`,
      ),
    );
    const { provider } = await harness.start({
      name: 'echo',
      module: '@acme/dso-provider-echo',
      resolveFrom: plugins,
      execArgv: NODE_ARGS,
      config: { prefix: 'echo:' },
    });
    expect((await provider.resolve({ path: 'app/db' })).value.revealText()).toBe('echo:app/db');
  });
});
