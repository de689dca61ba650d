import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { type CoreDumpSystem, protectFromCoreDumps } from './core-dumps.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const MODULE = pathToFileURL(join(HERE, 'core-dumps.ts')).href;
const TSX = pathToFileURL(join(HERE, '../../../node_modules/tsx/dist/loader.mjs')).href;
const CANARY = 'canary-core-dump-0b7e';

// Where the kernel writes a core file: a plain name (no `|` pipe to a handler, no `/`) is
// written into the crashing process's working directory, where the test can look for it.
const CORE_PATTERN = readFileSync('/proc/sys/kernel/core_pattern', 'utf8').trim();
const PLAIN_CORE_PATTERN = !CORE_PATTERN.startsWith('|') && !CORE_PATTERN.includes('/');
const IS_ROOT = process.geteuid?.() === 0;

const folders: string[] = [];
afterEach(() => {
  for (const folder of folders.splice(0)) rmSync(folder, { recursive: true, force: true });
});

/**
 * A node child in a fresh folder, with `ulimit -c unlimited`, holding a canary in its heap:
 * runs the agent's start-up protection when `protect`, prints what it reported, then aborts.
 * Answers the report and the files the crash left in its folder.
 */
async function abortChild(protect: boolean): Promise<{ report: unknown; files: string[] }> {
  const cwd = mkdtempSync(join(tmpdir(), 'dso-core-'));
  folders.push(cwd);
  const script = [
    `const { protectFromCoreDumps } = await import(${JSON.stringify(MODULE)});`,
    `const report = ${protect ? 'protectFromCoreDumps()' : 'null'};`,
    `globalThis.kept = Buffer.from(${JSON.stringify(CANARY)});`,
    'process.stdout.write(JSON.stringify(report), () => process.abort());',
  ].join('\n');
  const child = spawn(
    'bash',
    [
      '-c',
      'ulimit -c unlimited && exec "$0" --import "$1" --input-type=module -e "$2"',
      process.execPath,
      TSX,
      script,
    ],
    { cwd, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let output = '';
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    output += text;
  });
  const signal = await new Promise<NodeJS.Signals | null>((resolve) =>
    child.on('exit', (_code, exitSignal) => resolve(exitSignal)),
  );
  expect(signal).toBe('SIGABRT');
  return { report: JSON.parse(output), files: readdirSync(cwd) };
}

describe('protectFromCoreDumps in a real process', () => {
  const where = PLAIN_CORE_PATTERN
    ? `core_pattern ${JSON.stringify(CORE_PATTERN)} writes into the working directory`
    : `core_pattern ${JSON.stringify(CORE_PATTERN)} is not a plain file name, so only the report and a missing core file in the working directory are checked`;

  it.runIf(IS_ROOT)(
    `as root, leaves no core file when the process aborts after it (${where})`,
    async () => {
      const { report, files } = await abortChild(true);
      expect(report).toMatchObject({ nonDumpable: true, filtered: true, protected: true });
      expect(files.filter((name) => name.startsWith('core'))).toEqual([]);
    },
  );

  it.runIf(IS_ROOT && PLAIN_CORE_PATTERN)(
    'control: without it the same aborting process leaves a core file holding its memory (the check above can fail)',
    async () => {
      const { files } = await abortChild(false);
      const cores = files.filter((name) => name.startsWith('core'));
      expect(cores).toHaveLength(1);
      expect(readFileSync(join(folders.at(-1)!, cores[0]!)).includes(CANARY)).toBe(true);
    },
  );

  it.runIf(!IS_ROOT)(
    `not root: reports the protection missing, and sets coredump_filter to 0 (${where})`,
    async () => {
      const { report } = await abortChild(true);
      expect(report).toMatchObject({ nonDumpable: false, filtered: true });
    },
  );
});

/** A system of the test's own: /proc files in a map, the ids given. */
function fakeSystem(options: {
  euid: number;
  suidDumpable?: string;
  setegid?: (id: number) => void;
  limits?: string;
}): CoreDumpSystem & { files: Map<string, string>; egids: number[] } {
  const files = new Map<string, string>([
    ['/proc/sys/fs/suid_dumpable', `${options.suidDumpable ?? '0'}\n`],
    ['/proc/self/coredump_filter', '00000033\n'],
    [
      '/proc/self/limits',
      options.limits ??
        'Max core file size        unlimited            unlimited            bytes\n',
    ],
  ]);
  const egids: number[] = [];
  return {
    files,
    egids,
    geteuid: () => options.euid,
    getegid: () => 0,
    setegid:
      options.setegid ??
      ((id) => {
        egids.push(id);
      }),
    read(path) {
      const text = files.get(path);
      if (text === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
      return text;
    },
    write(path, text) {
      if (!files.has(path)) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
      files.set(path, path === '/proc/self/coredump_filter' ? text.padStart(8, '0') : text);
    },
  };
}

describe('protectFromCoreDumps: what it reports', () => {
  it('as root with suid_dumpable 0, changes the egid and back, and is protected', () => {
    const system = fakeSystem({ euid: 0 });
    expect(protectFromCoreDumps(system)).toEqual({
      nonDumpable: true,
      filtered: true,
      coreLimitZero: false,
      protected: true,
    });
    expect(system.egids).toEqual([1, 0]);
  });

  it('not root: says what is missing and what to do, and sets coredump_filter to 0', () => {
    const system = fakeSystem({ euid: 1000 });
    const report = protectFromCoreDumps(system);
    expect(report).toMatchObject({ nonDumpable: false, filtered: true, protected: false });
    expect(report.missing).toMatch(/not root.*LimitCORE=0.*ulimit -c 0/);
    expect(system.files.get('/proc/self/coredump_filter')).toBe('00000000');
    expect(system.egids).toEqual([]);
  });

  it('suid_dumpable 2: does not rely on the egid change, and names the setting', () => {
    const report = protectFromCoreDumps(fakeSystem({ euid: 0, suidDumpable: '2' }));
    expect(report).toMatchObject({ nonDumpable: false, protected: false });
    expect(report.missing).toMatch(/fs\.suid_dumpable is 2, not 0/);
  });

  it('counts a core size limit of 0 (LimitCORE=0) as protected', () => {
    const report = protectFromCoreDumps(
      fakeSystem({
        euid: 1000,
        limits: 'Max core file size        0                    0                    bytes\n',
      }),
    );
    expect(report).toMatchObject({ coreLimitZero: true, protected: true });
    expect(report.missing).toBeUndefined();
  });

  it('a failing setegid is reported, never thrown', () => {
    const report = protectFromCoreDumps(
      fakeSystem({
        euid: 0,
        setegid: () => {
          throw Object.assign(new Error('denied'), { code: 'EPERM' });
        },
      }),
    );
    expect(report).toMatchObject({ nonDumpable: false, protected: false });
    expect(report.missing).toMatch(/setegid failed \(EPERM\)/);
  });
});
