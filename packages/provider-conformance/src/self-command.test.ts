import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CONFORMANCE_CLI_USAGE, parseConformanceArgs, runConformanceCli } from './cli.js';
import { DEFAULT_EXEC_ARGV } from './context.js';
import { createMemoryFixture } from './examples/memory-fixture.js';
import { memoryProvider } from './examples/memory-provider.js';
import { probeCommandCapabilities, runProviderConformance } from './index.js';

// The command target: a child given only as argv, here the SDK's runner hosting the example
// with every capability (what a Python or Go child is to the suite: it speaks PROTOCOL.md).
const runner = fileURLToPath(new URL('../../provider-sdk/src/runner.ts', import.meta.url));
const example = fileURLToPath(new URL('./examples/memory-provider.ts', import.meta.url));
const command = [process.execPath, ...DEFAULT_EXEC_ARGV, runner, example];

// Read from the child's handshake, as the dso-provider-conformance command does.
const capabilities = await probeCommandCapabilities({ command, fixture: createMemoryFixture });

describe('probeCommandCapabilities', () => {
  it("reads the capabilities the child's handshake declares", () => {
    expect(capabilities).toEqual(memoryProvider.capabilities);
  });
});

runProviderConformance({
  name: 'memory as a command',
  command,
  capabilities,
  fixture: () => createMemoryFixture(),
});

describe('runProviderConformance with a command', () => {
  it.each([
    [{ command: [] }, "command must be the child's argv"],
    [{ command: ['python3', ''] }, "command must be the child's argv"],
    [{ capabilities: { list: true } }, 'capabilities must give list, watch, probe and health'],
    [{ fixture: undefined }, 'fixture must be a function'],
  ])('refuses %j with the fix', (overrides, message) => {
    expect(() =>
      runProviderConformance({
        name: 'x',
        command,
        capabilities,
        fixture: () => createMemoryFixture(),
        ...overrides,
      } as Parameters<typeof runProviderConformance>[0]),
    ).toThrow(message);
  });
});

describe('dso-provider-conformance arguments', () => {
  it('takes the fixture and options before --, the child after it, paths from the cwd', () => {
    expect(
      parseConformanceArgs(
        ['--fixture', 'f.mjs', '--report-json', 'r.json', '--', 'python3', 'provider.py'],
        '/work/p',
      ),
    ).toEqual({
      command: ['python3', 'provider.py'],
      fixture: '/work/p/f.mjs',
      cwd: '/work/p',
      name: 'provider.py',
      reportJson: '/work/p/r.json',
    });
  });

  it.each([
    [['--fixture', 'f.mjs'], "the child's command is missing"],
    [['--', 'python3', 'p.py'], '--fixture <file> is required'],
    [['--fixture'], '--fixture needs a value'],
    [['python3', 'p.py'], "put the child's command after --"],
  ])('refuses %j with the fix', (argv, message) => {
    expect(() => parseConformanceArgs(argv, '/work')).toThrow(message);
  });

  it('exits 2 with the usage for bad arguments, 0 with --help', async () => {
    let out = '';
    let err = '';
    const io = {
      out: (text: string) => {
        out += text;
      },
      err: (text: string) => {
        err += text;
      },
    };
    expect(await runConformanceCli(['--', 'python3'], io)).toBe(2);
    expect(err).toContain('--fixture <file> is required');
    expect(await runConformanceCli(['--fixture', '/nonexistent/f.mjs', '--', 'x'], io)).toBe(2);
    expect(err).toContain('/nonexistent/f.mjs does not exist');
    expect(await runConformanceCli(['--help'], io)).toBe(0);
    expect(out).toBe(`${CONFORMANCE_CLI_USAGE}\n`);
  });
});
