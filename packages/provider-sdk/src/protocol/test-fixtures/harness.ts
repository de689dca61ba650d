// Helpers shared by the process provider tests: start a provider on a fixture, remember every
// child pid it reports, and check none survives.
import { fileURLToPath } from 'node:url';
import { inspect } from 'node:util';
import { vi } from 'vitest';
import {
  createProcessProvider,
  type ProcessProvider,
  type ProcessProviderLogEntry,
  type ProcessProviderOptions,
} from '../host.js';

/**
 * Tests that start children get this long: a TypeScript child takes ~0.5 s to start on an idle
 * machine, several seconds on a loaded one.
 */
export const SPAWN_TEST_TIMEOUT_MS = 30_000;

/** Node arguments that run the TypeScript runner and fixtures unbuilt. */
export const TSX = ['--conditions=@dso/source', '--import', 'tsx'];

export const fixturePath = (file: string) => fileURLToPath(new URL(`./${file}`, import.meta.url));

/** The hand-written child: `node rogue-child.mjs <mode>`. */
export const rogueCommand = (...args: string[]) => [
  process.execPath,
  fixturePath('rogue-child.mjs'),
  ...args,
];

export interface Harness {
  pids: Set<number>;
  opened: ProcessProvider[];
  start(
    options: Partial<ProcessProviderOptions>,
  ): Promise<{ provider: ProcessProvider; logs: ProcessProviderLogEntry[] }>;
  /** Closes what is open and returns the pids still alive (none, when all is well). */
  cleanup(): Promise<number[]>;
}

export function createHarness(canary: string): Harness {
  const pids = new Set<number>();
  const opened: ProcessProvider[] = [];
  return {
    pids,
    opened,
    async start(options) {
      const logs: ProcessProviderLogEntry[] = [];
      const provider = await createProcessProvider({
        name: 'fixture',
        // The TypeScript fixture through the runner, unless the test gives its own command.
        ...(options.command === undefined
          ? { module: fixturePath('full-provider.ts'), execArgv: TSX }
          : {}),
        config: { canary },
        callTimeoutMs: 5_000,
        startTimeoutMs: 20_000,
        restart: { baseDelayMs: 20, maxDelayMs: 200 },
        ...options,
        onLog: (entry) => {
          logs.push(entry);
          const pid = entry.fields?.pid;
          if (typeof pid === 'number') pids.add(pid);
        },
      });
      opened.push(provider);
      const pid = provider.state().pid;
      if (pid !== undefined) pids.add(pid);
      return { provider, logs };
    },
    async cleanup() {
      await Promise.all(opened.splice(0).map((provider) => provider.close()));
      const alive = [...pids].filter(isAlive);
      pids.clear();
      return alive;
    },
  };
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Waits, with vitest's `vi.waitFor` (every 10 ms), until `condition` holds; fails after `timeoutMs`. */
export async function waitFor(
  condition: () => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<void> {
  await vi.waitFor(
    () => {
      if (!condition()) throw new Error(`timed out waiting for ${what}`);
    },
    { timeout: timeoutMs, interval: 10 },
  );
}

/** An error as a log or a report would show it: message, fields, stack and the cause chain. */
export function serialise(error: unknown): string {
  return `${inspect(error, { depth: 10 })} ${JSON.stringify(error)}`;
}

/** The rejection of `promise` (fails when it fulfils). */
export async function rejection(promise: Promise<unknown>): Promise<Record<string, unknown>> {
  try {
    await promise;
  } catch (error) {
    return error as Record<string, unknown>;
  }
  throw new Error('expected a rejection');
}
