import { PassThrough, Readable, Writable } from 'node:stream';
import type { AgentApiEventLine as AgentApiEvent } from '@dso/core';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import type { CliIo } from '../program.js';
import { describeEvent, registerEventsCommand } from './events.js';

function output() {
  let text = '';
  const stream = new Writable({
    write(chunk, _encoding, callback) {
      text += String(chunk);
      callback();
    },
  });
  return { stream, text: () => text };
}

const EVENTS: AgentApiEvent[] = [
  { type: 'subscribed', at: 0 },
  { type: 'heartbeat', at: 1 },
  {
    type: 'delivery-failed',
    at: 2,
    containerId: 'a'.repeat(64),
    trigger: 'started',
    code: 'DSO_PROVIDER_NOT_FOUND',
    reference: 'dsofile://app/db',
    retry: false,
  },
  { type: 'replaced', at: 3, containerId: 'b'.repeat(64), newContainerId: 'c'.repeat(64) },
];

/** `dso events …` against a fake agent (the client itself: agent-client.test.ts). */
async function run(args: string[]) {
  const stdout = output();
  const io: CliIo = {
    env: {},
    stdin: Readable.from([]) as unknown as NodeJS.ReadStream,
    stdout: stdout.stream,
    stderr: new PassThrough(),
  };
  const program = new Command('dso').exitOverride();
  registerEventsCommand(program, io, () => ({
    agent: () => ({
      events: async (onEvent) => {
        for (const event of EVENTS) onEvent(event);
      },
    }),
    signal: new AbortController().signal,
  }));
  await program.parseAsync(['events', ...args], { from: 'user' });
  return stdout.text();
}

describe('dso events', () => {
  it('prints each event for people, without heartbeats', async () => {
    const lines = (await run([])).trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toContain('delivery failed aaaaaaaaaaaa');
    expect(lines[1]).toContain('code=DSO_PROVIDER_NOT_FOUND reference=dsofile://app/db');
    expect(lines[2]).toContain('replaced        bbbbbbbbbbbb by cccccccccccc');
  });

  it('prints JSON lines with --json', async () => {
    const lines = (await run(['--json'])).trim().split('\n');
    expect(lines.map((line) => (JSON.parse(line) as AgentApiEvent).type)).toEqual([
      'subscribed',
      'delivery-failed',
      'replaced',
    ]);
  });

  it('shows an unknown event type by name', () => {
    expect(describeEvent({ type: 'newer-thing', at: 0 })).toMatch(/newer-thing$/);
  });
});
