import { readFileSync, writeFileSync } from 'node:fs';

// ---------------------------------------------------------------------------------------------
// A core dump of the agent would hold every secret it holds, in every encoding. Node has no
// prctl(PR_SET_DUMPABLE), but Linux resets a process's dumpable flag to fs.suid_dumpable (0 by
// default: not dumpable) whenever its effective gid changes: as root, setting the egid to another
// gid and back makes the agent non-dumpable, before any secret is read. Where that is not
// possible (not root, suid_dumpable not 0, no setegid), the agent says what is missing and what to
// do, and writes 0 to /proc/self/coredump_filter so that a dump carries no anonymous memory (the
// heap, where values live). This module imports node builtins only: a test runs it in a child.
// ---------------------------------------------------------------------------------------------

/** What {@link protectFromCoreDumps} reached. */
export interface CoreDumpProtection {
  /** The process is not dumpable: the kernel writes no core file of it (nor lets ptrace attach). */
  nonDumpable: boolean;
  /** `/proc/self/coredump_filter` is 0: a core file, if any, holds no anonymous memory. */
  filtered: boolean;
  /** The core file size limit is 0 (`LimitCORE=0`, `ulimit -c 0`): no core file is written. */
  coreLimitZero: boolean;
  /** Whether the agent is protected from leaving its memory in a core file. */
  protected: boolean;
  /** When not protected: what is missing and what to do, as one sentence. */
  missing?: string;
}

/** What {@link protectFromCoreDumps} uses of the process and the system: replaced in tests. */
export interface CoreDumpSystem {
  geteuid?: (() => number) | undefined;
  getegid?: (() => number) | undefined;
  setegid?: ((id: number) => void) | undefined;
  /** Reads a /proc file; throws when it cannot. */
  read(path: string): string;
  /** Writes a /proc file; throws when it cannot. */
  write(path: string, text: string): void;
}

const NODE_SYSTEM: CoreDumpSystem = {
  geteuid: process.geteuid?.bind(process),
  getegid: process.getegid?.bind(process),
  setegid: process.setegid?.bind(process),
  read: (path) => readFileSync(path, 'utf8'),
  write: (path, text) => writeFileSync(path, text),
};

/** What to do when the kernel would write a core file of the agent. */
const ADVICE =
  'set LimitCORE=0 in its systemd unit (the shipped unit does), or run ulimit -c 0 before dso-agent, or run it as root with fs.suid_dumpable=0';

/**
 * Makes the agent non-dumpable where the platform allows (root, `fs.suid_dumpable` 0: an egid
 * round trip), and in any case sets `/proc/self/coredump_filter` to 0. Call it first thing at
 * start, before any secret is read. Never throws: what it could not do is in the answer.
 *
 * @example
 * const dumps = protectFromCoreDumps();
 * if (!dumps.protected) logger.warn({ missing: dumps.missing }, 'core dumps of the agent are possible');
 */
export function protectFromCoreDumps(system: CoreDumpSystem = NODE_SYSTEM): CoreDumpProtection {
  const problems: string[] = [];
  let nonDumpable = false;
  const suidDumpable = readTrimmed(system, '/proc/sys/fs/suid_dumpable');
  const { geteuid, getegid, setegid } = system;
  if (geteuid === undefined || getegid === undefined || setegid === undefined) {
    problems.push('this platform has no setegid, so the agent cannot make itself non-dumpable');
  } else if (geteuid() !== 0) {
    problems.push('the agent is not root, so it cannot make itself non-dumpable');
  } else if (suidDumpable !== '0') {
    problems.push(
      `fs.suid_dumpable is ${suidDumpable ?? 'unreadable'}, not 0, so changing the agent's gid does not make it non-dumpable`,
    );
  } else {
    const gid = getegid();
    try {
      // Any other gid: the change itself resets the flag to suid_dumpable (0).
      setegid(gid === 0 ? 1 : 0);
      setegid(gid);
      nonDumpable = true;
    } catch (error) {
      problems.push(`setegid failed (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
      try {
        setegid(gid);
      } catch {
        // Still the other gid would be worse than dumpable: nothing else to try, it is reported.
        problems.push('the effective gid may not be restored');
      }
    }
  }
  let filtered = false;
  try {
    system.write('/proc/self/coredump_filter', '0');
    filtered = readTrimmed(system, '/proc/self/coredump_filter') === '00000000';
  } catch {
    // No /proc or a kernel without it: reported below as missing.
  }
  const coreLimitZero = /^Max core file size\s+0\s/m.test(
    readTrimmed(system, '/proc/self/limits') ?? '',
  );
  const isProtected = nonDumpable || coreLimitZero;
  if (isProtected) return { nonDumpable, filtered, coreLimitZero, protected: true };
  const filter = filtered
    ? 'a core file would hold no anonymous memory (coredump_filter 0), but still the rest of the agent'
    : 'coredump_filter could not be set either, so a core file would hold every secret in memory';
  return {
    nonDumpable,
    filtered,
    coreLimitZero,
    protected: false,
    missing: `${problems.join('; ')}; ${filter}: ${ADVICE}`,
  };
}

function readTrimmed(system: CoreDumpSystem, path: string): string | undefined {
  try {
    return system.read(path).trim();
  } catch {
    return undefined; // then the caller reports it as unknown
  }
}
