import { PassThrough, Readable } from 'node:stream';
import { DsoError } from '@dso/core';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../program.js';
import { type RotateDependencies, registerRotateCommand } from './rotate.js';

const ID = 'ab12'.repeat(16);

/** `dso rotate …` against a fake agent and engine (the client itself: agent-client.test.ts). */
async function rotate(args: string[], overrides: Partial<RotateDependencies> = {}) {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (chunk) => {
    out += chunk;
  });
  const io: CliIo = {
    env: {},
    stdin: Readable.from([]) as unknown as NodeJS.ReadStream,
    stdout,
    stderr: new PassThrough(),
  };
  const selectors: Array<{ containerId?: string } | undefined> = [];
  const names: string[] = [];
  const dependencies: RotateDependencies = {
    agent: () => ({
      rotate: async (selector) => {
        selectors.push(selector);
        return {
          containers: selector?.containerId ? 1 : 3,
          secrets: selector?.containerId ? 1 : 5,
        };
      },
    }),
    containerId: async (name) => {
      names.push(name);
      return ID;
    },
    ...overrides,
  };
  const program = new Command('dso').exitOverride();
  registerRotateCommand(program, io, () => dependencies);
  await program.parseAsync(['rotate', ...args], { from: 'user' });
  return { stdout: out, selectors, names };
}

describe('dso rotate', () => {
  it('asks for every managed container and says what was selected', async () => {
    const result = await rotate([]);
    expect(result.selectors).toEqual([{}]);
    expect(result.stdout).toBe(
      'rotation requested: 3 managed containers, 5 secrets asked again from their providers; containers whose secrets changed are rotated by their policy (see dso status)\n',
    );
  });

  it('passes an id on as it is', async () => {
    const result = await rotate([ID.slice(0, 12)]);
    expect(result.selectors).toEqual([{ containerId: ID.slice(0, 12) }]);
    expect(result.names).toEqual([]);
    expect(result.stdout).toContain(
      `rotation requested: 1 managed container (${ID.slice(0, 12)}), 1 secret asked again`,
    );
  });

  it('turns a name into its id through the engine', async () => {
    const result = await rotate(['web-1']);
    expect(result.names).toEqual(['web-1']);
    expect(result.selectors).toEqual([{ containerId: ID }]);
    expect(result.stdout).toContain(`1 managed container (web-1, ${ID.slice(0, 12)})`);
  });

  it('prints the JSON answer with --json', async () => {
    expect((await rotate(['--json'])).stdout).toBe('{"containers":3,"secrets":5}\n');
  });

  it("passes the agent's refusal on", async () => {
    await expect(
      rotate([ID], {
        agent: () => ({
          rotate: async () => {
            throw new DsoError(
              'DSO_AGENT_CONTAINER_UNKNOWN',
              'no running managed container has the id',
            );
          },
        }),
      }),
    ).rejects.toMatchObject({ code: 'DSO_AGENT_CONTAINER_UNKNOWN' });
  });
});
