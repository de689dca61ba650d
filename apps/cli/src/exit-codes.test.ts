import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DsoError } from '@dso/core';
import { VAULT_ERROR_CODES } from '@dso/provider-local';
import { PROVIDER_ERROR_CODES } from '@dso/provider-sdk';
import { CommanderError } from 'commander';
import { describe, expect, it } from 'vitest';
import { EXIT_CODE_TABLE, EXIT_CODES, exitClassOf, exitCodeFor } from './exit-codes.js';

const SRC = import.meta.dirname;

/** Every `new DsoError('DSO_…'` in the CLI's own sources (tests excluded). */
function codesThrownByTheCli(): string[] {
  const codes = new Set<string>();
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.test.ts')) {
        const text = readFileSync(path, 'utf8');
        for (const match of text.matchAll(/new DsoError\(\s*'(DSO_[A-Z0-9_]+)'/g))
          codes.add(match[1] as string);
      }
    }
  };
  walk(SRC);
  return [...codes].sort();
}

describe('exitCodeFor', () => {
  it.each([
    ['DSO_CLI_VALUE_IN_ARGV', 2],
    ['DSO_REFERENCE_INVALID', 3],
    ['DSO_CLI_COMPOSE_INVALID', 3],
    ['DSO_CLI_VALUE_TOO_LARGE', 3],
    ['DSO_VAULT_PATH_INVALID', 3],
    ['DSO_CONFIG_INVALID', 3],
    ['DSO_VAULT_NOT_FOUND', 4],
    ['DSO_VAULT_SECRET_NOT_FOUND', 4],
    ['DSO_PROVIDER_NOT_FOUND', 4],
    ['DSO_AGENT_CONTAINER_UNKNOWN', 4],
    ['DSO_CLI_CONTAINER_UNKNOWN', 4],
    ['DSO_CLI_COMPOSE_NOT_FOUND', 4],
    ['DSO_CLI_AGENT_DENIED', 5],
    ['DSO_AGENT_RESOLVE_DENIED', 5],
    ['DSO_AGENT_RESOLVE_DISABLED', 5],
    ['DSO_VAULT_EXISTS', 5],
    ['DSO_VAULT_WRONG_KEY', 5],
    ['DSO_CLI_AGENT_UNREACHABLE', 6],
    ['DSO_CLI_AGENT_BUSY', 6],
    ['DSO_CLI_AGENT_TIMEOUT', 6],
    ['DSO_AGENT_NOT_RUNNING', 6],
    ['DSO_AGENT_RESOLVE_FAILED', 7],
    ['DSO_PROVIDER_UNAVAILABLE', 7],
    ['DSO_PROVIDER_TIMEOUT', 7],
    ['DSO_VAULT_CORRUPT', 7],
    ['DSO_CLI_COMPOSE_FAILED', 8],
    ['DSO_CLI_DOCKER_FAILED', 8],
    ['DSO_DOCKER_UNREACHABLE', 8],
    ['DSO_DOCKER_PERMISSION_DENIED', 5],
    ['DSO_CLI_CANCELLED', 130],
    ['DSO_CLI_AGENT_RESPONSE', 1],
  ])('exits %s with %i', (code, exitCode) => {
    expect(exitCodeFor(new DsoError(code, 'message'))).toBe(exitCode);
  });

  it('exits 2 for a usage error of commander and 0 for help or version', () => {
    expect(exitCodeFor(new CommanderError(1, 'commander.unknownCommand', 'unknown'))).toBe(2);
    expect(exitCodeFor(new CommanderError(1, 'commander.excessArguments', 'too many'))).toBe(2);
    expect(exitCodeFor(new CommanderError(0, 'commander.version', '0.1.0'))).toBe(0);
    expect(exitCodeFor(new CommanderError(0, 'commander.helpDisplayed', '(help)'))).toBe(0);
  });

  it("exits with compose's own code when compose ran and failed, and 8 when it could not be run", () => {
    const failed = (exitCode?: unknown) =>
      new DsoError('DSO_CLI_COMPOSE_FAILED', 'compose up exited', { exitCode });
    expect(exitCodeFor(failed(1))).toBe(1);
    expect(exitCodeFor(failed(17))).toBe(17);
    expect(exitCodeFor(failed(130))).toBe(130);
    for (const odd of [undefined, 0, -1, 256, 2.5, '3']) expect(exitCodeFor(failed(odd))).toBe(8);
    expect(exitCodeFor(new DsoError('DSO_CLI_COMPOSE_MISSING', 'install compose'))).toBe(8);
  });

  it('exits 1 for an error without a DSO code', () => {
    expect(exitCodeFor(new Error('boom'))).toBe(1);
    expect(exitCodeFor('a string')).toBe(1);
    expect(exitCodeFor(new DsoError('DSO_SOMETHING_NEW', 'message'))).toBe(1);
  });

  it("classes an agent code it does not know by the answer's HTTP status", () => {
    const refusal = (status: number) =>
      new DsoError('DSO_AGENT_SOMETHING_NEWER', 'refused', {
        status,
        socket: '/run/dso/agent.sock',
      });
    expect(exitCodeFor(refusal(404))).toBe(4);
    expect(exitCodeFor(refusal(403))).toBe(5);
    expect(exitCodeFor(refusal(400))).toBe(3);
    expect(exitCodeFor(refusal(503))).toBe(6);
    expect(exitCodeFor(refusal(500))).toBe(1);
  });

  it('gives every code the CLI throws a class (only an agent that answers nonsense and failed doctor checks are bare failures)', () => {
    const unclassed = codesThrownByTheCli().filter(
      (code) =>
        exitClassOf(code) === 'failure' &&
        !['DSO_CLI_AGENT_RESPONSE', 'DSO_CLI_AGENT_ERROR', 'DSO_CLI_DOCTOR_FAILED'].includes(code),
    );
    expect(codesThrownByTheCli().length).toBeGreaterThan(20);
    expect(
      unclassed,
      'add each to BY_CODE in exit-codes.ts (and the table if it is a new kind)',
    ).toEqual([]);
  });

  it('gives every code of the local vault and of the provider protocol a class', () => {
    const unclassed = [...VAULT_ERROR_CODES, ...PROVIDER_ERROR_CODES].filter(
      (code) => exitClassOf(code) === 'failure',
    );
    expect(unclassed).toEqual([]);
  });
});

describe('EXIT_CODE_TABLE', () => {
  it('lists every exit code once, in order, and each example exits with its row', () => {
    expect(EXIT_CODE_TABLE.map((row) => row.code)).toEqual(
      Object.values(EXIT_CODES).sort((a, b) => a - b),
    );
    for (const row of EXIT_CODE_TABLE) {
      expect(EXIT_CODES[row.name]).toBe(row.code);
      for (const example of row.examples)
        expect(exitCodeFor(new DsoError(example, 'message')), example).toBe(row.code);
    }
  });
});
