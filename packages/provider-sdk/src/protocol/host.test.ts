import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isProviderError } from '../provider-error.js';
import {
  createProcessProvider,
  type ProcessProvider,
  type ProcessProviderLogEntry,
  type ProcessProviderOptions,
} from './host.js';
import {
  createHarness,
  fixturePath,
  rejection,
  rogueCommand,
  SPAWN_TEST_TIMEOUT_MS,
  serialise,
  TSX,
  waitFor,
} from './test-fixtures/harness.js';

const CANARY = `canary-${randomUUID()}`;

describe('a process provider on a healthy child', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  const harness = createHarness(CANARY);
  let provider: ProcessProvider;
  let logs: ProcessProviderLogEntry[];

  beforeAll(async () => {
    ({ provider, logs } = await harness.start({}));
  }, SPAWN_TEST_TIMEOUT_MS);

  afterAll(async () => {
    expect(await harness.cleanup()).toEqual([]);
  }, SPAWN_TEST_TIMEOUT_MS);

  it('mirrors the capabilities the child declared and serves every operation', async () => {
    expect(provider.name).toBe('fixture');
    expect(provider.capabilities).toEqual({ list: true, watch: true, probe: true, health: true });
    const { value, version } = await provider.resolve({ path: 'binary' });
    expect([...value.reveal()]).toEqual(Array.from({ length: 256 }, (_, index) => index));
    expect(version).toBe('1');
    expect(`${value}`).toBe('[REDACTED]');
    expect((await provider.resolve({ path: 'x', version: '9' })).version).toBe('9');
    expect(await provider.list!('a/')).toEqual(['a/1', 'a/2']);
    expect(await provider.probe!({ path: 'x' })).toEqual({ version: '1' });
    expect(await provider.health!()).toEqual({ ok: true, detail: 'fixture is fine' });
    const missing = await rejection(provider.resolve({ path: 'missing' }));
    expect(missing).toMatchObject({
      code: 'DSO_PROVIDER_NOT_FOUND',
      retryable: false,
      provider: 'fixture',
      path: 'missing',
    });
    expect(isProviderError(missing)).toBe(true);
    expect(provider.state()).toMatchObject({
      status: 'ready',
      breaker: 'closed',
      restarts: 0,
      consecutiveFailures: 0,
      inFlight: 0,
    });
  });

  it('pipelines 64 calls and matches answers that arrive out of order', async () => {
    const finished: number[] = [];
    const calls = Array.from({ length: 64 }, (_, index) =>
      provider.resolve({ path: `delay/${(64 - index) * 4}/${index}` }).then((result) => {
        finished.push(index);
        return result.value.revealText();
      }),
    );
    expect(provider.state().inFlight).toBe(64);
    const values = await Promise.all(calls);
    values.forEach((text, index) => {
      expect(text).toBe(`value-of-delay/${(64 - index) * 4}/${index}`);
    });
    // The last sent (shortest delay) answered first: the child ran them concurrently.
    expect(finished[0]).toBeGreaterThan(finished[63]!);
    expect(
      Number((await provider.resolve({ path: 'max-active' })).value.revealText()),
    ).toBeGreaterThanOrEqual(64);
  });

  it("aborts the child's signal when the caller aborts, without counting a failure", async () => {
    const controller = new AbortController();
    const call = provider.resolve({ path: 'wait-for-abort' }, { signal: controller.signal });
    await waitFor(
      () => logs.some((entry) => entry.source === 'provider' && entry.message === 'call started'),
      'the call to start in the child',
    );
    const before = Date.now();
    controller.abort();
    const error = await rejection(call);
    expect(Date.now() - before).toBeLessThan(100);
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_TIMEOUT', retryable: true });
    expect(error.message).toContain('aborted');
    await waitFor(
      () => logs.some((entry) => entry.source === 'provider' && entry.message === 'call aborted'),
      "the child's signal to fire",
    );
    expect(provider.state().consecutiveFailures).toBe(0);
    const aborted = AbortSignal.abort();
    expect(await rejection(provider.resolve({ path: 'x' }, { signal: aborted }))).toMatchObject({
      code: 'DSO_PROVIDER_TIMEOUT',
    });
  });

  it('refuses a 10 MiB secret with TOO_LARGE naming the limit, and the child keeps serving', async () => {
    const pid = provider.state().pid;
    const error = await rejection(provider.resolve({ path: 'big' }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_TOO_LARGE', retryable: false, path: 'big' });
    expect(error.message).toContain('1572864 bytes');
    expect(error.message).toContain('providers.');
    expect(error.message).toContain('.maxMessageBytes in dso.yaml');
    expect(provider.state()).toMatchObject({ pid, consecutiveFailures: 0, breaker: 'closed' });
    expect((await provider.resolve({ path: 'x' })).value.revealText()).toBe('value-of-x');
  });

  it("delivers the child's stderr and console output to onLog, each line bounded", async () => {
    await provider.resolve({ path: 'noisy' });
    const stderr = () => logs.filter((entry) => entry.source === 'stderr');
    await waitFor(
      () => stderr().some((entry) => entry.message.startsWith('xxxx')),
      'the long stderr line',
    );
    const messages = stderr().map((entry) => entry.message);
    expect(messages).toContain('fixture provider created');
    expect(messages).toContain('console.log from the fixture');
    expect(messages).toContain('process.stdout.write from the fixture');
    const long = messages.find((message) => message.startsWith('xxxx'))!;
    expect(long).toBe(`${'x'.repeat(8_192)} … [11808 more bytes not logged]`);
  });

  it('streams watch changes and ends quietly when the signal aborts (unwatch reaches the child)', async () => {
    const controller = new AbortController();
    const seen: Array<{ path: string; version: string }> = [];
    const iteration = (async () => {
      for await (const change of provider.watch!(['a/1', 'a/2'], { signal: controller.signal })) {
        seen.push(change);
        if (seen.length === 2) controller.abort();
      }
    })();
    await iteration;
    expect(seen).toEqual([
      { path: 'a/1', version: 'v1' },
      { path: 'a/2', version: 'v1' },
    ]);
    await waitFor(
      () => logs.some((entry) => entry.source === 'provider' && entry.message === 'watch ended'),
      'the child to end its watch',
    );
  });

  it('ends a watch with the error the child reported', async () => {
    const controller = new AbortController();
    const error = await rejection(
      (async () => {
        for await (const _ of provider.watch!(['watch-fail'], { signal: controller.signal })) {
          // nothing arrives before the error
        }
      })(),
    );
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE' });
    expect(error.message).toBe('the fixture store went away');
  });

  it('never lets the canary reach a log entry, an error, or the child argv and env', async () => {
    expect((await provider.resolve({ path: 'canary' })).value.revealText()).toBe(CANARY);
    const leaky = await rejection(provider.resolve({ path: 'throw-canary' }));
    expect(leaky).toMatchObject({ code: 'DSO_PROVIDER_INTERNAL' });
    const errors = [leaky, await rejection(provider.resolve({ path: 'missing' }))];
    for (const error of errors) expect(serialise(error)).not.toContain(CANARY);
    const pid = provider.state().pid!;
    const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8');
    expect(argv).toContain('full-provider.ts');
    expect(argv).not.toContain(CANARY);
    expect(env).not.toContain(CANARY);
    expect(
      env
        .split('\0')
        .filter(Boolean)
        .map((entry) => entry.split('=')[0])
        .sort(),
    ).toEqual(['HOME', 'PATH'].filter((key) => process.env[key] !== undefined));
    expect(JSON.stringify(logs)).not.toContain(CANARY);
  });

  it("runs the child in a process group of its own: a terminal's Ctrl-C reaches the host only", () => {
    const pid = provider.state().pid!;
    // Field 5 of /proc/<pid>/stat is the process group (after the parenthesised command name).
    const group = (of: number | 'self') =>
      Number(readFileSync(`/proc/${of}/stat`, 'utf8').split(') ')[1]!.split(' ')[2]);
    expect(group(pid)).toBe(pid);
    expect(group(pid)).not.toBe(group('self'));
  });
});

describe('a provider with only resolve', { timeout: SPAWN_TEST_TIMEOUT_MS }, () => {
  const harness = createHarness(CANARY);
  afterEach(async () => {
    expect(await harness.cleanup()).toEqual([]);
  }, SPAWN_TEST_TIMEOUT_MS);

  it('has no optional methods (its `provider` export is used)', async () => {
    const { provider } = await harness.start({ module: fixturePath('minimal-provider.ts') });
    expect(provider.capabilities).toEqual({
      list: false,
      watch: false,
      probe: false,
      health: false,
    });
    for (const method of ['list', 'watch', 'probe', 'health'])
      expect(method in provider).toBe(false);
    expect((await provider.resolve({ path: 'x' })).value.revealText()).toBe('value-of-x');
  });

  it('serves a 10 MiB secret when maxMessageBytes is raised', async () => {
    const { provider } = await harness.start({
      module: fixturePath('minimal-provider.ts'),
      maxMessageBytes: 16 * 1024 * 1024,
    });
    const { value } = await provider.resolve({ path: 'big' });
    expect(value.byteLength).toBe(10 * 1024 * 1024);
    expect(value.reveal().every((byte) => byte === 0x61)).toBe(true);
    value.dispose();
  });

  it('bounds the rate of log lines and says how many it dropped', async () => {
    // A child of its own: the flood would starve the shared child's later log lines.
    const { provider, logs } = await harness.start({ module: fixturePath('minimal-provider.ts') });
    await provider.resolve({ path: 'flood' });
    await waitFor(
      () => logs.some((entry) => entry.message === 'provider log lines dropped'),
      'the dropped lines report',
    );
    const flood = logs.filter((entry) => entry.message.startsWith('flood line'));
    expect(flood.length).toBeLessThan(1_000);
    const report = logs.find((entry) => entry.message === 'provider log lines dropped')!;
    expect(report.source).toBe('host');
    expect(Number(report.fields?.dropped)).toBeGreaterThan(0);
  });

  it('closes: the child exits, later calls fail, a second close is a no-op', async () => {
    const { provider } = await harness.start({ module: fixturePath('minimal-provider.ts') });
    await provider.close();
    await provider.close();
    expect(provider.state()).toMatchObject({ status: 'closed', pid: undefined });
    expect(await rejection(provider.resolve({ path: 'x' }))).toMatchObject({
      code: 'DSO_PROVIDER_INTERNAL',
      message: 'provider fixture is closed: cannot resolve',
    });
  });
});

describe('createProcessProvider refuses what it cannot serve', {
  timeout: SPAWN_TEST_TIMEOUT_MS,
}, () => {
  const harness = createHarness(CANARY);
  afterEach(async () => {
    expect(await harness.cleanup()).toEqual([]);
  }, SPAWN_TEST_TIMEOUT_MS);

  it('refuses a module built for another SDK API version, with a clear error', async () => {
    const error = await rejection(harness.start({ module: fixturePath('future-sdk-provider.ts') }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG' });
    expect(error.message).toMatch(/built for provider SDK API version 99; this host supports 1/);
  });

  it('refuses a module that is not a provider definition', async () => {
    const error = await rejection(harness.start({ module: fixturePath('not-a-provider.ts') }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG' });
    expect(error.message).toContain(
      'exports no provider definition (found exports: default, hello)',
    );
  });

  it('refuses a module that does not exist', async () => {
    const error = await rejection(harness.start({ module: fixturePath('nowhere.ts') }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG' });
    expect(error.message).toContain('does not exist');
  });

  it('refuses a configuration the schema refuses, naming the field and not the value', async () => {
    const error = await rejection(harness.start({ config: { canary: 7, bigBytes: CANARY } }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG', provider: 'fixture' });
    expect(error.message).toContain('bigBytes');
    expect(serialise(error)).not.toContain(CANARY);
  });

  it('gives up on a child that never answers initialize at startTimeoutMs', async () => {
    const error = await rejection(
      harness.start({ command: rogueCommand('hang-initialize'), startTimeoutMs: 300 }),
    );
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_TIMEOUT' });
    expect(error.message).toContain('within 300 ms (startTimeoutMs)');
  });

  it('reports a child that exits during the handshake', async () => {
    const error = await rejection(harness.start({ command: rogueCommand('exit-initialize') }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE' });
    expect(error.message).toContain('exited with code 4 before answering initialize');
    // It wrote nothing to stderr: the message does not send anyone to look for it.
    expect(error.message).toContain('it wrote nothing to stderr');
    const talking = await rejection(
      harness.start({ command: ['/bin/sh', '-c', 'echo boom >&2; exit 3'] }),
    );
    expect(talking.message).toContain(
      'exited with code 3 before answering initialize: its stderr is in the log',
    );
  });

  it('reports a child that writes garbage instead of the handshake', async () => {
    const error = await rejection(harness.start({ command: rogueCommand('garbage-initialize') }));
    expect(error.message).toContain('broke the protocol (a line is not JSON');
    expect(error.message).not.toContain('Welcome');
  });

  it('refuses a child that speaks another protocol version', async () => {
    const error = await rejection(harness.start({ command: rogueCommand('protocol-2') }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG' });
    expect(error.message).toContain('speaks protocol version 2; this host speaks 1');
  });

  it('reports a command that cannot be started, naming its path', async () => {
    const error = await rejection(harness.start({ command: ['/nonexistent/dso-provider-x'] }));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_UNAVAILABLE' });
    expect(error.message).toContain(
      'could not be started: /nonexistent/dso-provider-x was not found (ENOENT): correct its command',
    );
    expect(error.message).not.toContain('stderr');
    const dir = mkdtempSync(join(tmpdir(), 'dso-host-'));
    try {
      const plain = join(dir, 'provider');
      writeFileSync(plain, '#!/bin/sh\n', { mode: 0o600 });
      const refused = await rejection(harness.start({ command: [plain] }));
      expect(refused.message).toContain(
        `could not be started: ${plain} is not executable (EACCES)`,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [{ name: 'bad name!' }, 'provider name'],
    [{ callTimeoutMs: 0 }, 'callTimeoutMs must be a positive whole number'],
    [{ maxMessageBytes: 1_000 }, 'maxMessageBytes must be at least 65536'],
    [{ restart: { baseDelayMs: 100, maxDelayMs: 10 } }, 'restart.maxDelayMs'],
    [{ resolveFrom: 'relative/dir' }, 'resolveFrom must be an absolute directory'],
    [{ resolveFrom: '/nonexistent/plugins' }, 'resolveFrom /nonexistent/plugins does not exist'],
    [{ execArgv: [] }, "execArgv ['--conditions=@dso/source', '--import', 'tsx']"],
    [{ module: undefined, execArgv: undefined, command: [] }, 'command must be a non-empty array'],
    [{ module: undefined, execArgv: undefined, command: ['node', ''] }, 'non-empty strings'],
    [{ execArgv: undefined, command: ['python3'] }, 'either module'],
    [{ module: undefined, command: ['python3'] }, 'execArgv are Node arguments of the runner'],
    [{ module: undefined, execArgv: undefined }, 'give module'],
  ])('refuses options %j before starting anything', async (overrides, message) => {
    const options = {
      name: 'fixture',
      module: fixturePath('full-provider.ts'),
      execArgv: TSX,
      config: {},
      ...overrides,
    };
    // An explicit undefined stands for an option left out.
    for (const key of Object.keys(options) as (keyof typeof options)[]) {
      if (options[key] === undefined) delete options[key];
    }
    const error = await rejection(createProcessProvider(options as ProcessProviderOptions));
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG' });
    expect(error.message).toContain(message);
  });
});
