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
    containerName: 'web-1',
    containerState: 'running',
    code: 'DSO_PROVIDER_NOT_FOUND',
    reference: 'dsofile://app/db',
    retry: false,
    message: 'could not resolve dsofile://app/db: no secret at app/db; store the secret',
  },
  { type: 'replaced', at: 3, containerId: 'b'.repeat(64), newContainerId: 'c'.repeat(64) },
];

/**
 * `dso events …` against a fake agent (the client itself: agent-client.test.ts) that sends
 * EVENTS, then ends the stream (the agent stopped) or, with `interrupted`, is stopped by Ctrl-C.
 */
async function run(args: string[], options: { interrupted?: boolean } = { interrupted: true }) {
  const stdout = output();
  const io: CliIo = {
    env: {},
    stdin: Readable.from([]) as unknown as NodeJS.ReadStream,
    stdout: stdout.stream,
    stderr: new PassThrough(),
  };
  const program = new Command('dso').exitOverride();
  const interrupt = new AbortController();
  registerEventsCommand(program, io, () => ({
    agent: () => ({
      events: async (onEvent) => {
        for (const event of EVENTS) onEvent(event);
        if (options.interrupted) interrupt.abort();
      },
    }),
    signal: interrupt.signal,
  }));
  await program.parseAsync(['events', ...args], { from: 'user' });
  return stdout.text();
}

describe('dso events', () => {
  it('prints each event for people, without heartbeats', async () => {
    const lines = (await run([])).trim().split('\n');
    expect(lines).toHaveLength(3);
    expect(lines[1]).toBe(
      '1970-01-01T00:00:00.002Z delivery failed web-1 (aaaaaaaaaaaa, running) code=DSO_PROVIDER_NOT_FOUND reference=dsofile://app/db trigger=started retry=false: could not resolve dsofile://app/db: no secret at app/db; store the secret',
    );
    expect(lines[2]).toContain('replaced        bbbbbbbbbbbb by cccccccccccc');
  });

  it('fails with DSO_CLI_AGENT_UNAVAILABLE, saying the agent stopped, when the stream ends', async () => {
    await expect(run([], { interrupted: false })).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_UNAVAILABLE',
      message: expect.stringMatching(/^the agent stopped: its events ended; run dso events again/),
    });
    await expect(run(['--json'], { interrupted: false })).rejects.toMatchObject({
      code: 'DSO_CLI_AGENT_UNAVAILABLE',
    });
  });

  it('names a container with its state before the agent knows its name, and a volume by name', () => {
    expect(
      describeEvent({ type: 'rotated', at: 0, containerId: 'd'.repeat(64), policy: 'files' }),
    ).toBe('1970-01-01T00:00:00.000Z rotated         dddddddddddd policy=files');
    expect(
      describeEvent({
        type: 'delivered',
        at: 0,
        containerId: 'volume:app-secrets:1234',
        files: 1,
        method: 'volume',
        trigger: 'started',
      }),
    ).toContain('delivered       volume app-secrets files=1');
  });

  it('prints a label warning and literal references with their message', () => {
    expect(
      describeEvent({
        type: 'label-warning',
        at: 0,
        containerId: 'd'.repeat(64),
        containerName: 'web-1',
        code: 'DSO_LABEL_UNKNOWN',
        label: 'dso.flie.db',
        suggestion: 'dso.file.db',
        message: 'dso.flie.db is not a DSO label',
      }),
    ).toBe(
      '1970-01-01T00:00:00.000Z label warning   web-1 (dddddddddddd) label=dso.flie.db code=DSO_LABEL_UNKNOWN suggestion=dso.file.db: dso.flie.db is not a DSO label',
    );
    expect(
      describeEvent({
        type: 'literal-references',
        at: 0,
        containerId: 'd'.repeat(64),
        variables: ['API_KEY', 'DB'],
        code: 'DSO_CONTAINER_LITERAL_REFERENCES',
        message: 'recreate it with dso up',
      }),
    ).toContain('literal refs    dddddddddddd variables=API_KEY,DB code=');
  });

  it('prints a container name with control characters as ?', () => {
    const line = describeEvent({
      type: 'rotated',
      at: 0,
      containerId: 'd'.repeat(64),
      containerName: 'x\u001b]0;owned\u0007',
      policy: 'files',
    });
    expect(line).not.toContain('\u001b');
    expect(line).toContain('x?]0;owned? (dddddddddddd) policy=files');
  });

  it('prints JSON lines with --json', async () => {
    const lines = (await run(['--json'])).trim().split('\n');
    expect(lines.map((line) => (JSON.parse(line) as AgentApiEvent).type)).toEqual([
      'subscribed',
      'delivery-failed',
      'replaced',
    ]);
    expect(JSON.parse(lines[1]!)).toMatchObject({
      containerName: 'web-1',
      message: expect.any(String),
    });
  });

  it('shows an unknown event type by name', () => {
    expect(describeEvent({ type: 'newer-thing', at: 0 })).toMatch(/newer-thing$/);
  });
});
