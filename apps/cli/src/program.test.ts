import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { runCli } from './program.js';
import { MAX_SECRET_BYTES } from './read-secret.js';

const CANARY = 'canary-cli-program-3c9d';

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'dso-cli-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

async function dso(
  args: string[],
  input: string | Buffer = '',
  env: NodeJS.ProcessEnv = { DSO_HOME: home },
) {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (chunk) => {
    out += chunk;
  });
  stderr.on('data', (chunk) => {
    err += chunk;
  });
  const stdin = Readable.from([input]) as unknown as NodeJS.ReadStream;
  const code = await runCli(args, { env, stdin, stdout, stderr });
  return { code, stdout: out, stderr: err };
}

describe('dso', () => {
  it('creates the vault and a 0600 key file, stores from stdin, and lists paths only', async () => {
    const init = await dso(['init']);
    expect(init.code).toBe(0);
    expect((await stat(join(home, 'vault.key'))).mode & 0o777).toBe(0o600);
    expect((await stat(join(home, 'vault.dso'))).mode & 0o777).toBe(0o600);

    const set = await dso(['secret', 'set', 'app/db/password'], `${CANARY}\n`);
    expect(set).toMatchObject({ code: 0, stdout: 'stored app/db/password (version 1)\n' });
    // The same value again (the newline is not kept) is not a new version.
    expect(await dso(['secret', 'set', 'app/db/password'], CANARY)).toMatchObject({
      code: 0,
      stdout: 'unchanged, still version 1\n',
    });
    expect((await dso(['secret', 'set', 'app/db/password'], `${CANARY}-2`)).stdout).toContain(
      'version 2',
    );

    const list = await dso(['secret', 'list']);
    expect(list).toMatchObject({ code: 0, stdout: 'app/db/password\n' });
    for (const file of await readdir(home)) {
      expect((await readFile(join(home, file))).includes(CANARY)).toBe(false);
    }
    expect(set.stdout + set.stderr + list.stdout).not.toContain(CANARY);
  });

  it('creates a missing DSO_HOME with mode 0700', async () => {
    const nested = join(home, 'state', 'dso');
    expect((await dso(['init'], '', { DSO_HOME: nested })).code).toBe(0);
    expect((await stat(nested)).mode & 0o777).toBe(0o700);
  });

  it('lists paths as JSON with --json, never values', async () => {
    await dso(['init']);
    await dso(['secret', 'set', 'app/db'], CANARY);
    await dso(['secret', 'set', 'app/api'], CANARY);
    const listed = await dso(['secret', 'list', '--json']);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual({ paths: ['app/api', 'app/db'] });
    expect(listed.stdout).not.toContain(CANARY);
    expect((await dso(['secret', 'list', 'nothing/', '--json'])).stdout).toBe('{"paths":[]}\n');
  });

  it('deletes a secret', async () => {
    await dso(['init']);
    await dso(['secret', 'set', 'app/x'], CANARY);
    expect((await dso(['secret', 'rm', 'app/x'])).code).toBe(0);
    expect((await dso(['secret', 'list'])).stdout).toBe('');
  });

  it('refuses a value given as an argument, saying why and what to run, without echoing it', async () => {
    await dso(['init']);
    const result = await dso(['secret', 'set', 'app/db', CANARY]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain('DSO_CLI_VALUE_IN_ARGV');
    expect(result.stderr).toContain('never taken from the command line');
    expect(result.stderr).toContain('ps');
    expect(result.stderr).toContain('history');
    expect(result.stderr).toContain('printf %s "$VALUE" | dso secret set app/db');
    expect(result.stderr).not.toMatch(/too many arguments/);
    expect(result.stderr + result.stdout).not.toContain(CANARY);
    expect((await dso(['secret', 'list'])).stdout).toBe('');
  });

  it('fails with DSO_CLI_SECRET_NOT_FOUND when rm finds no secret; --if-exists accepts it', async () => {
    await dso(['init']);
    const result = await dso(['secret', 'rm', 'app/nothing']);
    expect(result.code).toBe(4); // not found
    expect(result.stdout).toBe('');
    expect(result.stderr).toContain('no secret at app/nothing');
    expect(result.stderr).toContain('DSO_CLI_SECRET_NOT_FOUND');
    const accepted = await dso(['secret', 'rm', '--if-exists', 'app/nothing']);
    expect(accepted).toMatchObject({
      code: 0,
      stdout: 'no secret at app/nothing: nothing to delete\n',
    });
    // Deleted once: the second rm finds nothing.
    await dso(['secret', 'set', 'app/x'], CANARY);
    expect((await dso(['secret', 'rm', 'app/x'])).stdout).toBe('deleted app/x\n');
    expect((await dso(['secret', 'rm', 'app/x'])).code).toBe(4);
  });

  it('rejects a bad path before prompting for the value on a terminal', async () => {
    await dso(['init']);
    const stderr = new PassThrough();
    let err = '';
    stderr.on('data', (chunk) => {
      err += chunk;
    });
    // A terminal that fails the test if the prompt ever reads from it.
    const tty = Object.assign(new PassThrough(), {
      isTTY: true,
      setRawMode: () => {
        throw new Error('prompted for a value');
      },
    }) as unknown as NodeJS.ReadStream;
    const code = await runCli(['secret', 'set', 'bad path!'], {
      env: { DSO_HOME: home },
      stdin: tty,
      stdout: new PassThrough(),
      stderr,
    });
    expect(code).toBe(3); // invalid input
    expect(err).toContain('DSO_VAULT_PATH_INVALID');
    expect(err).not.toContain('value for');
  });

  it("uses dso.yaml's local vault and key file, as the agent does", async () => {
    const vaultPath = join(home, 'configured', 'vault.dso');
    const keyFile = join(home, 'configured', 'vault.key');
    await writeFile(
      join(home, 'dso.yaml'),
      `providers:\n  local:\n    type: local\n    config: { vaultPath: ${JSON.stringify(vaultPath)}, keyFile: ${JSON.stringify(keyFile)} }\n`,
      { mode: 0o600 },
    );
    const init = await dso(['init']);
    expect(init.code).toBe(0);
    expect(init.stdout).toContain(`created key file ${keyFile}`);
    expect(init.stdout).toContain(`created vault ${vaultPath}`);
    await expect(stat(join(home, 'vault.dso'))).rejects.toThrow();
    await expect(stat(join(home, 'vault.key'))).rejects.toThrow();
    expect((await dso(['secret', 'set', 'app/db'], CANARY)).code).toBe(0);
    expect((await dso(['secret', 'list'])).stdout).toBe('app/db\n');
    // The environment's key does not override the key file dso.yaml names.
    const env = { DSO_HOME: home, DSO_VAULT_PASSPHRASE: 'not the key' };
    expect((await dso(['secret', 'list'], '', env)).stdout).toBe('app/db\n');
  });

  it("names dso.yaml's provider when its vault does not exist", async () => {
    const vaultPath = join(home, 'elsewhere', 'vault.dso');
    await writeFile(
      join(home, 'dso.yaml'),
      `providers:\n  mine:\n    type: local\n    config: { vaultPath: ${JSON.stringify(vaultPath)} }\n`,
      { mode: 0o600 },
    );
    const result = await dso(['secret', 'list']);
    expect(result.code).toBe(4); // not found
    expect(result.stderr).toContain(`no vault at ${vaultPath}`);
    expect(result.stderr).toContain(
      'providers.mine.config.vaultPath in ' +
        `${join(home, 'dso.yaml')}, by default DSO_VAULT_PATH or $DSO_HOME/vault.dso`,
    );
  });

  it('init --if-missing leaves an existing vault alone; init without it refuses', async () => {
    await dso(['init']);
    expect((await dso(['init', '--if-missing'])).stdout).toContain('already exists');
    await rm(join(home, 'vault.key'));
    const again = await dso(['init']);
    expect(again.code).toBe(5); // refused: it exists
    expect(again.stderr).toContain('DSO_VAULT_EXISTS');
    // Refused before anything was written: no new key file that would not match the vault.
    await expect(stat(join(home, 'vault.key'))).rejects.toThrow();
  });

  it('says how to create the vault when there is none', async () => {
    const result = await dso(['secret', 'list']);
    expect(result.code).toBe(4); // not found
    expect(result.stderr).toMatch(/dso init/);
  });

  it("says to restore an existing vault's key file when it is gone, never to make a new key", async () => {
    await dso(['init']);
    await rename(join(home, 'vault.key'), join(home, 'vault.key.moved'));
    const result = await dso(['secret', 'list']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('DSO_VAULT_KEY_MISSING');
    expect(result.stderr).toContain(`restore the vault's key file to ${join(home, 'vault.key')}`);
    expect(result.stderr).toContain('DSO_VAULT_PASSPHRASE');
    expect(result.stderr).toContain(
      `a new key cannot open the vault at ${join(home, 'vault.dso')}`,
    );
    expect(result.stderr).not.toMatch(/urandom|dso init/);
  });

  it('refuses a DSO_CONFIG that names no file, as the agent does', async () => {
    const env = { DSO_HOME: home, DSO_CONFIG: join(home, 'nope.yaml') };
    for (const args of [['secret', 'list'], ['status']]) {
      const result = await dso(args, '', { ...env, DSO_API_SOCKET: join(home, 'agent.sock') });
      expect(result.code, args.join(' ')).toBe(4); // not found
      expect(result.stderr).toContain(
        `configuration file ${env.DSO_CONFIG} (from DSO_CONFIG) does not exist (DSO_CONFIG_NOT_FOUND)`,
      );
    }
  });

  it('uses DSO_VAULT_PASSPHRASE instead of a key file when set', async () => {
    const env = { DSO_HOME: home, DSO_VAULT_PASSPHRASE: 'correct horse battery staple' };
    expect((await dso(['init'], '', env)).code).toBe(0);
    await expect(stat(join(home, 'vault.key'))).rejects.toThrow();
    expect((await dso(['secret', 'set', 'a/b'], CANARY, env)).code).toBe(0);
    const wrong = await dso(['secret', 'list'], '', {
      DSO_HOME: home,
      DSO_VAULT_PASSPHRASE: 'wrong',
    });
    expect(wrong.code).toBe(5); // refused: wrong key
    expect(wrong.stderr).toContain('DSO_VAULT_WRONG_KEY');
  });

  it('rejects an empty value', async () => {
    await dso(['init']);
    const result = await dso(['secret', 'set', 'app/db'], '');
    expect(result).toMatchObject({ code: 3 }); // invalid input
    expect(result.stderr).toContain('DSO_CLI_VALUE_EMPTY');
  });

  it('stores a 1 MiB value by default, and refuses a larger one before storing, naming the setting', async () => {
    await dso(['init']);
    const oneMiB = randomBytes(1024 * 1024);
    expect(await dso(['secret', 'set', 'app/one-mib'], oneMiB)).toMatchObject({ code: 0 });
    const tooLarge = await dso(
      ['secret', 'set', 'app/too-large'],
      randomBytes(MAX_SECRET_BYTES + 1),
    );
    expect(tooLarge.code).toBe(3); // invalid input
    expect(tooLarge.stderr).toContain('DSO_CLI_VALUE_TOO_LARGE');
    expect(tooLarge.stderr).toContain(`larger than ${MAX_SECRET_BYTES} bytes`);
    expect(tooLarge.stderr).toContain('raise providers.local.maxMessageBytes in dso.yaml');
    expect((await dso(['secret', 'list'])).stdout.trim().split('\n')).toEqual(['app/one-mib']);
  });

  it("stores a 10 MiB value when the local provider's maxMessageBytes carries it", async () => {
    await dso(['init']);
    await writeFile(
      join(home, 'dso.yaml'),
      'defaultProvider: vault\nproviders:\n  other:\n    type: local\n    config: { vaultPath: /elsewhere/vault.dso }\n' +
        '  vault:\n    type: local\n    maxMessageBytes: 16MiB\n' +
        `    config: { vaultPath: ${JSON.stringify(join(home, 'vault.dso'))} }\n`,
      { mode: 0o600 },
    );
    const tenMiB = randomBytes(10 * 1024 * 1024);
    expect(await dso(['secret', 'set', 'app/ten-mib'], tenMiB)).toMatchObject({ code: 0 });
    const tooLarge = await dso(['secret', 'set', 'app/x'], randomBytes(13 * 1024 * 1024));
    expect(tooLarge.stderr).toContain('raise providers.vault.maxMessageBytes in dso.yaml');
  });
});
