import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { isDsoError } from '../errors.js';
import { loadConfig, MAX_CONFIG_FILE_BYTES } from './load.js';

const isRoot = process.getuid?.() === 0;

let home: string;

beforeEach(() => {
  home = mkdtempSync(join(tmpdir(), 'dso-config-test-'));
});

afterEach(() => {
  rmSync(home, { recursive: true, force: true });
});

/** Writes `text` to `name` in the test's folder with `mode`, and returns its path. */
function file(name: string, text: string, mode = 0o600): string {
  const path = join(home, name);
  writeFileSync(path, text);
  chmodSync(path, mode); // not writeFileSync's mode: the umask would change it
  return path;
}

async function rejection(promise: Promise<unknown>, code: string) {
  try {
    await promise;
  } catch (error) {
    if (!isDsoError(error)) throw error;
    expect(error.code).toBe(code);
    return error;
  }
  throw new Error(`expected ${code}, but the configuration loaded`);
}

describe('loadConfig', () => {
  it('reads $DSO_HOME/dso.yaml by default', async () => {
    const path = file('dso.yaml', 'log: { level: warn }\n');
    const loaded = await loadConfig({ env: { DSO_HOME: home } });
    expect(loaded.path).toBe(path);
    expect(loaded.warnings).toEqual([]);
    expect(loaded.config.log.level).toBe('warn');
    expect(loaded.config.audit.path).toBe(join(home, 'audit.jsonl'));
  });

  it('gives all defaults when the default file does not exist', async () => {
    const loaded = await loadConfig({ env: { DSO_HOME: home, DSO_LOG_LEVEL: 'error' } });
    expect(loaded.path).toBeUndefined();
    expect(loaded.config.reconcile.intervalMs).toBe(600_000);
    expect(loaded.config.log.level).toBe('error');
    expect(loaded.config.providers.local?.config).toEqual({ vaultPath: join(home, 'vault.dso') });
  });

  it('gives all defaults when DSO_HOME itself does not exist', async () => {
    const loaded = await loadConfig({ env: { DSO_HOME: join(home, 'missing') } });
    expect(loaded.path).toBeUndefined();
  });

  it('reads the file DSO_CONFIG names', async () => {
    const path = file('other.yaml', 'queue: { concurrency: 8 }\n');
    const loaded = await loadConfig({ env: { DSO_HOME: home, DSO_CONFIG: path } });
    expect(loaded.path).toBe(path);
    expect(loaded.config.queue.concurrency).toBe(8);
  });

  it('prefers the path option to DSO_CONFIG', async () => {
    const path = file('given.yaml', 'queue: { concurrency: 9 }\n');
    const loaded = await loadConfig({ path, env: { DSO_HOME: home, DSO_CONFIG: '/nonexistent' } });
    expect(loaded.config.queue.concurrency).toBe(9);
  });

  it('rejects with DSO_CONFIG_NOT_FOUND when a given file is missing', async () => {
    const path = join(home, 'nope.yaml');
    const error = await rejection(
      loadConfig({ path, env: { DSO_HOME: home } }),
      'DSO_CONFIG_NOT_FOUND',
    );
    expect(error.message).toBe(`configuration file ${path} does not exist`);
    expect(error.details.path).toBe(path);
  });

  it('rejects with DSO_CONFIG_NOT_FOUND, naming DSO_CONFIG, when the file it names is missing', async () => {
    const path = join(home, 'nope.yaml');
    const error = await rejection(
      loadConfig({ env: { DSO_HOME: home, DSO_CONFIG: path } }),
      'DSO_CONFIG_NOT_FOUND',
    );
    expect(error.message).toContain('(from DSO_CONFIG)');
  });

  it('cites the file path in every problem', async () => {
    const path = file('dso.yaml', 'cache:\n  tll: 5m\n');
    const error = await rejection(
      loadConfig({ path, env: { DSO_HOME: home } }),
      'DSO_CONFIG_INVALID',
    );
    expect(error.message).toContain(
      `\n  ${path}:2:3: unknown key \`cache.tll\`; did you mean \`ttlMs\`?`,
    );
    expect(error.details.file).toBe(path);
  });

  describe('file permissions', () => {
    it.each([
      [0o620, 'its group'],
      [0o660, 'its group'],
      [0o602, 'every user'],
      [0o666, 'its group and every user'],
    ])('refuses mode %s with DSO_CONFIG_INSECURE', async (mode, who) => {
      const path = file('dso.yaml', '', mode);
      const error = await rejection(
        loadConfig({ path, env: { DSO_HOME: home } }),
        'DSO_CONFIG_INSECURE',
      );
      expect(error.message).toContain(`writable by ${who}`);
      expect(error.message).toContain(`chmod go-w ${path}`);
      expect(error.details).toEqual({ path, mode: `0${mode.toString(8)}` });
    });

    it('warns, and still loads, when every user can read the file', async () => {
      const path = file('dso.yaml', '', 0o644);
      const loaded = await loadConfig({ path, env: { DSO_HOME: home } });
      expect(loaded.warnings).toEqual([
        `configuration file ${path} is readable by every user (mode 0644); if it holds provider credentials, run: chmod o-r ${path}`,
      ]);
    });

    it.each([0o600, 0o640, 0o400, 0o440])('accepts mode %s without a warning', async (mode) => {
      const path = file('dso.yaml', '', mode);
      expect((await loadConfig({ path, env: { DSO_HOME: home } })).warnings).toEqual([]);
    });

    it.runIf(isRoot)('refuses a file owned by another user', async () => {
      const path = file('dso.yaml', '');
      chownSync(path, 12_345, 12_345);
      const error = await rejection(
        loadConfig({ path, env: { DSO_HOME: home } }),
        'DSO_CONFIG_INSECURE',
      );
      expect(error.message).toContain('owned by uid 12345');
      expect(error.details).toMatchObject({ owner: 12_345 });
    });

    it.runIf(!isRoot)(
      'rejects with DSO_CONFIG_UNREADABLE when the file cannot be read',
      async () => {
        const path = file('dso.yaml', '', 0o000);
        const error = await rejection(
          loadConfig({ path, env: { DSO_HOME: home } }),
          'DSO_CONFIG_UNREADABLE',
        );
        expect(error.message).toContain('permission denied');
      },
    );
  });

  it('refuses a directory with DSO_CONFIG_UNREADABLE', async () => {
    const path = join(home, 'dir.yaml');
    mkdirSync(path);
    const error = await rejection(
      loadConfig({ path, env: { DSO_HOME: home } }),
      'DSO_CONFIG_UNREADABLE',
    );
    expect(error.message).toBe(`cannot read configuration file ${path}: not a regular file`);
  });

  it('refuses a file larger than 1 MiB with DSO_CONFIG_UNREADABLE', async () => {
    const path = file('dso.yaml', `# ${'x'.repeat(MAX_CONFIG_FILE_BYTES)}\n`);
    const error = await rejection(
      loadConfig({ path, env: { DSO_HOME: home } }),
      'DSO_CONFIG_UNREADABLE',
    );
    expect(error.message).toContain('larger than 1 MiB');
  });

  it('rejects with DSO_CONFIG_ABORTED when the signal is aborted', async () => {
    const path = file('dso.yaml', '');
    const controller = new AbortController();
    controller.abort(new Error('stop'));
    const error = await rejection(
      loadConfig({ path, env: { DSO_HOME: home }, signal: controller.signal }),
      'DSO_CONFIG_ABORTED',
    );
    expect(error.cause).toEqual(new Error('stop'));
  });
});
