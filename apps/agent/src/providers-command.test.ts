import { copyFile, mkdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { createLogger, createRedactor, type ProviderConfig } from '@dso/core';
import { isProviderError, type SecretProvider } from '@dso/provider-sdk';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { startProviders } from './providers.js';

// Providers in any language: `type: command` in dso.yaml, or a package whose package.json names
// its `dso.command`, run directly (no SDK, no shim) under the host every provider process has.
const CANARY = 'canary-command-7c41d9e2';
const ENV_CANARY = 'env-canary-0b9f33';
const pythonProvider = fileURLToPath(
  new URL('../../../examples/provider-python/provider.py', import.meta.url),
);
const protocolChild = fileURLToPath(new URL('./test-fixtures/protocol-child.mjs', import.meta.url));
const pluginsDir = join(import.meta.dirname, '..', `.test-plugins-command-${process.pid}`);

const agentEnv = {
  PATH: process.env.PATH ?? '/usr/bin:/bin',
  HOME: process.env.HOME ?? '/root',
  DSO_TEST_CANARY: ENV_CANARY,
  ACME_TOKEN: 'listed',
};

const command = (
  argv: string[],
  overrides: Partial<ProviderConfig> = {},
  config: Record<string, unknown> = { secrets: { 'app/db': CANARY } },
): ProviderConfig =>
  ({
    type: 'command',
    command: argv,
    mode: 'process',
    config,
    timeoutMs: 10_000,
    failureThreshold: 5,
    circuitOpenMs: 200,
    maxInFlight: 64,
    maxMessageBytes: 1.5 * 1024 * 1024,
    env: [],
    ...overrides,
  }) as ProviderConfig;

/** The agent's log, kept: every line the providers wrote, for the leak checks. */
function capturingLogger() {
  const lines: string[] = [];
  const sink = new Writable({
    write: (chunk, _encoding, callback) => {
      lines.push(String(chunk));
      callback();
    },
  });
  const logger = createLogger({ level: 'debug', redactor: createRedactor(), destination: sink });
  return { logger, lines };
}

const opened: Map<string, SecretProvider>[] = [];
async function start(providers: Record<string, ProviderConfig>) {
  const { logger, lines } = capturingLogger();
  const started = await startProviders({ providers, pluginsDir }, { env: agentEnv, logger });
  opened.push(started);
  return { providers: started, lines };
}
afterEach(async () => {
  for (const providers of opened.splice(0)) {
    await Promise.all([...providers.values()].map((provider) => provider.close()));
  }
});
afterAll(() => rm(pluginsDir, { recursive: true, force: true }));

const stateOf = (provider: SecretProvider) =>
  (provider as unknown as { state(): { pid?: number; restarts: number; status: string } }).state();

async function rejection(promise: Promise<unknown>): Promise<Error & { code?: string }> {
  try {
    await promise;
  } catch (error) {
    return error as Error & { code?: string };
  }
  throw new Error('expected a rejection');
}

/** Calls until one succeeds (the child was replaced): the breaker fails calls fast meanwhile. */
async function untilServed(provider: SecretProvider, path: string): Promise<string> {
  for (;;) {
    try {
      return (await provider.resolve({ path })).value.reveal().toString();
    } catch (error) {
      if (!isProviderError(error) || error.code !== 'DSO_PROVIDER_UNAVAILABLE') throw error;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

describe('command providers', () => {
  it('runs type: command (the Python example): delivers, and no value in argv or the log', async () => {
    const { providers, lines } = await start({
      py: command(['python3', pythonProvider]),
    });
    const provider = providers.get('py')!;
    const resolved = await provider.resolve({ path: 'app/db' });
    expect(resolved.value.reveal().toString()).toBe(CANARY);
    const pid = stateOf(provider).pid!;
    const argv = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    // python3 may be a shim that execs the real interpreter: the arguments are what count.
    expect(argv.split('\0').slice(-2)).toEqual([pythonProvider, '']);
    expect(argv).not.toContain(CANARY);
    expect(await readFile(`/proc/${pid}/environ`, 'utf8')).not.toContain(CANARY);
    const missing = await rejection(provider.resolve({ path: 'app/none' }));
    expect(missing).toMatchObject({ code: 'DSO_PROVIDER_NOT_FOUND' });
    await provider.close();
    expect(lines.join('')).toContain('provider process started');
    expect(lines.join('')).not.toContain(CANARY);
  });

  it('runs a provider package whose package.json names its dso.command, in its own folder', async () => {
    const dir = join(pluginsDir, 'node_modules', 'dso-provider-pyfile');
    await mkdir(dir, { recursive: true });
    await copyFile(pythonProvider, join(dir, 'provider.py'));
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({
        name: 'dso-provider-pyfile',
        version: '0.1.0',
        dso: { command: ['python3', 'provider.py'] },
      }),
    );
    const { providers } = await start({
      pyfile: { ...command([]), type: 'dso-provider-pyfile', command: undefined },
    });
    const provider = providers.get('pyfile')!;
    expect((await provider.resolve({ path: 'app/db' })).value.reveal().toString()).toBe(CANARY);
    const pid = stateOf(provider).pid!;
    expect(await readFile(`/proc/${pid}/cmdline`, 'utf8')).toMatch(/python3\0provider\.py\0$/);
    expect(await readlink(`/proc/${pid}/cwd`)).toBe(dir);
  });

  it('gives the child only PATH, HOME and the listed variables', async () => {
    const { providers } = await start({
      listed: command(['node', protocolChild], { env: ['ACME_TOKEN'] }),
      bare: command(['node', protocolChild]),
    });
    const names = async (name: string) =>
      (await providers.get(name)!.resolve({ path: 'env' })).value.reveal().toString();
    expect(await names('listed')).toBe('ACME_TOKEN,HOME,PATH');
    expect(await names('bare')).toBe('HOME,PATH');
  });

  it('fails a call that passes timeoutMs, replaces the hung child, and serves again', async () => {
    const { providers } = await start({
      hung: command(['node', protocolChild], { timeoutMs: 300, failureThreshold: 1 }),
    });
    const provider = providers.get('hung')!;
    const first = stateOf(provider).pid;
    const error = await rejection(provider.resolve({ path: 'hang' }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_TIMEOUT' });
    expect(await untilServed(provider, 'app/db')).toBe(CANARY);
    expect(stateOf(provider).restarts).toBeGreaterThanOrEqual(1);
    expect(stateOf(provider).pid).not.toBe(first);
  });

  it('fails calls fast while a crashed child is replaced (the breaker), then serves again', async () => {
    const { providers, lines } = await start({
      crashy: command(['node', protocolChild], { circuitOpenMs: 60_000 }),
    });
    const provider = providers.get('crashy')!;
    const error = await rejection(provider.resolve({ path: 'crash' }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE' });
    // The breaker is open until the replacement answered its handshake: a call fails at once.
    if (stateOf(provider).status === 'restarting') {
      const fast = await rejection(provider.resolve({ path: 'app/db' }));
      expect(fast).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE' });
      expect(fast.message).toContain('calls fail fast until it recovers');
    }
    expect(await untilServed(provider, 'app/db')).toBe(CANARY);
    expect(stateOf(provider).restarts).toBe(1);
    expect(lines.join('')).toContain('provider process restarting');
    expect(lines.join('')).toContain('protocol child started');
    expect(lines.join('')).not.toContain(CANARY);
  });

  it('refuses mode: inline for a command, and a command package that names no valid command', async () => {
    const inline = await rejection(
      start({ py: command(['python3', pythonProvider], { mode: 'inline' }) }),
    );
    expect(inline).toMatchObject({ code: 'DSO_AGENT_PROVIDER_INVALID' });
    expect(inline.message).toContain('remove mode: inline');
    const dir = join(pluginsDir, 'node_modules', 'dso-provider-badcmd');
    await mkdir(dir, { recursive: true });
    await writeFile(
      join(dir, 'package.json'),
      JSON.stringify({ name: 'dso-provider-badcmd', dso: { command: 'python3 provider.py' } }),
    );
    const bad = await rejection(
      start({ bad: { ...command([]), type: 'dso-provider-badcmd', command: undefined } }),
    );
    expect(bad).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG' });
    expect(bad.message).toContain('dso.command in its package.json must be');
  });
});
