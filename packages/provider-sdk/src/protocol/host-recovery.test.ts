import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  createHarness,
  fixturePath,
  isAlive,
  rejection,
  rogueCommand,
  SPAWN_TEST_TIMEOUT_MS,
  serialise,
  waitFor,
} from './test-fixtures/harness.js';

const CANARY = `canary-${randomUUID()}`;
const harness = createHarness(CANARY);

afterEach(async () => {
  expect(await harness.cleanup()).toEqual([]);
}, SPAWN_TEST_TIMEOUT_MS);

describe('deadlines and the circuit breaker', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  it('rejects with TIMEOUT at the deadline and cancels the call in the child', async () => {
    const { provider, logs } = await harness.start({ callTimeoutMs: 300 });
    const started = Date.now();
    const error = await rejection(provider.resolve({ path: 'wait-for-abort' }));
    const elapsed = Date.now() - started;
    expect(error).toMatchObject({
      code: 'DSO_PROVIDER_TIMEOUT',
      retryable: true,
      path: 'wait-for-abort',
    });
    expect(error.message).toContain('within 300 ms (callTimeoutMs)');
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2_000);
    await waitFor(
      () => logs.some((entry) => entry.source === 'provider' && entry.message === 'call aborted'),
      '$/cancelRequest to abort the call in the child',
    );
    expect(provider.state().consecutiveFailures).toBe(1);
    await provider.resolve({ path: 'x' });
    expect(provider.state().consecutiveFailures).toBe(0);
  });

  it('replaces a child after 5 calls that never answer, fails fast while it is down, and recovers by itself', async () => {
    const { provider, logs } = await harness.start({ callTimeoutMs: 300 });
    const first = provider.state().pid!;
    const errors = await Promise.all(
      Array.from({ length: 5 }, () => rejection(provider.resolve({ path: 'hang' }))),
    );
    for (const error of errors) expect(error).toMatchObject({ code: 'DSO_PROVIDER_TIMEOUT' });
    expect(provider.state()).toMatchObject({ status: 'restarting', breaker: 'open' });
    const before = Date.now();
    const fast = await rejection(provider.resolve({ path: 'x' }));
    expect(Date.now() - before).toBeLessThan(50);
    expect(fast).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE', retryable: true });
    expect(fast.message).toContain('5 consecutive failures');
    expect(fast.message).toContain('fail fast');
    expect(fast.message).toMatch(/a new process (starts in about \d+ ms|is starting)/);
    // The health probe closes the breaker: no operator, no real call needed.
    await waitFor(() => provider.state().breaker === 'closed', 'the breaker to close');
    const state = provider.state();
    expect(state).toMatchObject({ status: 'ready', restarts: 1, consecutiveFailures: 0 });
    expect(state.pid).not.toBe(first);
    expect(isAlive(first)).toBe(false);
    expect((await provider.resolve({ path: 'x' })).value.revealText()).toBe('value-of-x');
    const messages = logs.filter((entry) => entry.source === 'host').map((entry) => entry.message);
    expect(messages).toEqual(
      expect.arrayContaining([
        'provider process restarting',
        'provider process ready',
        'provider recovered',
      ]),
    );
  });

  it('rejects a call in flight with UNAVAILABLE when the child is killed, and serves again after the respawn', async () => {
    const { provider, logs } = await harness.start({});
    const first = provider.state().pid!;
    const call = provider.resolve({ path: 'wait-for-abort' });
    await waitFor(
      () => logs.some((entry) => entry.message === 'call started'),
      'the call to reach the child',
    );
    process.kill(first, 'SIGKILL');
    const error = await rejection(call);
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE', retryable: true });
    expect(error.message).toContain(
      'was killed by SIGKILL while resolve for wait-for-abort was in flight',
    );
    await waitFor(() => provider.state().breaker === 'closed', 'the breaker to close');
    expect(provider.state().pid).not.toBe(first);
    expect((await provider.resolve({ path: 'canary' })).value.revealText()).toBe(CANARY);
  });

  it('with no health to probe, lets the next real call through half-open and fails others fast', async () => {
    const { provider } = await harness.start({ module: fixturePath('minimal-provider.ts') });
    process.kill(provider.state().pid!, 'SIGKILL');
    await waitFor(() => provider.state().breaker === 'half-open', 'the new child');
    const probe = provider.resolve({ path: 'delay/200/probe' });
    const shed = await rejection(provider.resolve({ path: 'x' }));
    expect(shed).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE', retryable: true });
    expect(shed.message).toContain('one probe call is checking its new process');
    expect((await probe).value.revealText()).toBe('value-of-delay/200/probe');
    expect(provider.state().breaker).toBe('closed');
    expect((await provider.resolve({ path: 'x' })).value.revealText()).toBe('value-of-x');
  });

  it('keeps retrying a child that fails to start, backing off, and recovers when it can start again', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dso-flaky-'));
    const marker = join(dir, 'broken');
    try {
      const { provider, logs } = await harness.start({
        command: rogueCommand('flaky', marker),
        restart: { baseDelayMs: 20, maxDelayMs: 80 },
      });
      await writeFile(marker, '');
      expect(await rejection(provider.resolve({ path: 'crash' }))).toMatchObject({
        code: 'DSO_PROVIDER_UNAVAILABLE',
      });
      const restarting = () =>
        logs.filter((entry) => entry.message === 'provider process restarting');
      await waitFor(() => restarting().length >= 5, 'five failed restarts');
      const delays = restarting().map((entry) => Number(entry.fields?.delayMs));
      expect(Math.max(...delays)).toBeLessThanOrEqual(80);
      expect(delays.at(-1)).toBeGreaterThanOrEqual(40);
      expect(logs.some((entry) => entry.message === 'provider process failed to start')).toBe(true);
      const fast = await rejection(provider.resolve({ path: 'ok' }));
      expect(fast).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE', retryable: true });
      await rm(marker);
      await waitFor(() => provider.state().status === 'ready', 'a child that starts');
      expect((await provider.resolve({ path: 'ok' })).value.revealText()).toBe('rogue-ok');
      expect(provider.state()).toMatchObject({ breaker: 'closed', consecutiveFailures: 0 });
      expect(provider.state().restarts).toBeGreaterThanOrEqual(5);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('leaves no process behind when closed while a restart is pending', async () => {
    const { provider } = await harness.start({
      command: rogueCommand(),
      restart: { baseDelayMs: 5_000, maxDelayMs: 5_000 },
    });
    await rejection(provider.resolve({ path: 'crash' }));
    expect(provider.state().status).toBe('restarting');
    const before = Date.now();
    await provider.close();
    expect(Date.now() - before).toBeLessThan(1_000);
    expect(provider.state().status).toBe('closed');
  });
});

describe('a child that breaks the protocol', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  it.each([
    ['not-json', 'DSO_PROVIDER_UNAVAILABLE', 'a line is not JSON'],
    ['not-rpc', 'DSO_PROVIDER_UNAVAILABLE', 'not a JSON-RPC 2.0 message (jsonrpc is not "2.0")'],
    ['unknown-id', 'DSO_PROVIDER_UNAVAILABLE', 'an answer for unknown request id 987654'],
    ['bad-result', 'DSO_PROVIDER_INTERNAL', 'the resolve result has the wrong shape'],
    ['partial-eof', 'DSO_PROVIDER_UNAVAILABLE', 'output ended inside a message'],
  ])(
    '%s: the call fails with %s, the child is reset, later calls work',
    async (path, code, reason) => {
      const { provider, logs } = await harness.start({ command: rogueCommand() });
      const first = provider.state().pid!;
      const error = await rejection(provider.resolve({ path }));
      expect(error).toMatchObject({ code });
      const logged = logs.find((entry) => entry.message === 'provider protocol error');
      expect(logged).toMatchObject({ level: 'error', source: 'host' });
      expect(String(logged?.fields?.reason)).toContain(reason);
      // The garbage itself is never echoed into the log.
      expect(JSON.stringify(logs)).not.toContain('this is not json');
      expect(JSON.stringify(logs)).not.toContain('hello');
      await waitFor(() => provider.state().status === 'ready', 'the replacement child');
      expect(provider.state().pid).not.toBe(first);
      expect(isAlive(first)).toBe(false);
      expect((await provider.resolve({ path: 'ok' })).value.revealText()).toBe('rogue-ok');
    },
  );

  it('oversized: the call fails with TOO_LARGE naming the limit, no crash, later calls work', async () => {
    const { provider, logs } = await harness.start({ command: rogueCommand() });
    const first = provider.state().pid!;
    const error = await rejection(provider.resolve({ path: 'oversized' }));
    expect(error).toMatchObject({
      code: 'DSO_PROVIDER_TOO_LARGE',
      retryable: false,
      path: 'oversized',
    });
    expect(error.message).toContain('over 1572864 bytes (maxMessageBytes)');
    expect(
      logs.find((entry) => entry.message === 'provider protocol error')?.fields?.reason,
    ).toContain('passed 1572864 bytes');
    await waitFor(() => provider.state().status === 'ready', 'the replacement child');
    expect(provider.state().pid).not.toBe(first);
    expect((await provider.resolve({ path: 'ok' })).value.revealText()).toBe('rogue-ok');
  });

  it('counts crashes of a hand-written child and recovers each time without an operator', async () => {
    const { provider } = await harness.start({ command: rogueCommand() });
    for (let crash = 1; crash <= 5; crash++) {
      await waitFor(() => provider.state().status === 'ready', 'a live child');
      const error = await rejection(provider.resolve({ path: 'crash' }));
      expect(error).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE' });
      expect(serialise(error)).toContain('exited with code 1');
    }
    await waitFor(() => provider.state().status === 'ready', 'a live child');
    expect((await provider.resolve({ path: 'ok' })).value.revealText()).toBe('rogue-ok');
    expect(provider.state().restarts).toBe(5);
  });
});

describe('watch across restarts', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  it('ends a watch with UNAVAILABLE when the child restarts, so the owner watches again', async () => {
    const { provider } = await harness.start({});
    const controller = new AbortController();
    const seen: string[] = [];
    const iteration = (async () => {
      for await (const change of provider.watch!(['ticking'], { signal: controller.signal })) {
        seen.push(change.version);
        if (seen.length === 3) process.kill(provider.state().pid!, 'SIGKILL');
      }
    })();
    const error = await rejection(iteration);
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE', retryable: true });
    expect(error.message).toContain('watch again');
    // Changes are coalesced per path: a slow consumer may skip versions, never go back.
    expect(seen[0]).toBe('v1');
    const numbers = seen.map((version) => Number(version.slice(1)));
    expect(numbers).toEqual([...numbers].sort((a, b) => a - b));
    await waitFor(() => provider.state().breaker === 'closed', 'the replacement child');
    const again = new AbortController();
    for await (const change of provider.watch!(['a/1'], { signal: again.signal })) {
      expect(change).toEqual({ path: 'a/1', version: 'v1' });
      again.abort();
    }
    controller.abort();
  });
});
