import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { dockerPluginMetadata, parseDockerPluginArgs, runDockerPlugin } from './docker-plugin.js';
import { CLI_VERSION } from './version.js';

const CANARY = 'canary-docker-plugin-7e1a';

let home: string;
beforeEach(async () => {
  home = await mkdtemp(join(tmpdir(), 'dso-docker-plugin-'));
});
afterEach(async () => {
  await rm(home, { recursive: true, force: true });
});

async function plugin(argv: string[], input = '') {
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
  const code = await runDockerPlugin(argv, { env: { DSO_HOME: home }, stdin, stdout, stderr });
  return { code, stdout: out, stderr: err };
}

describe('parseDockerPluginArgs', () => {
  it('answers the metadata request', () => {
    expect(parseDockerPluginArgs(['docker-cli-plugin-metadata'])).toEqual({ kind: 'metadata' });
  });

  it('passes everything after `dso` to dso', () => {
    expect(parseDockerPluginArgs(['dso', 'secret', 'set', 'a/b', '-H', 'x'])).toEqual({
      kind: 'run',
      args: ['secret', 'set', 'a/b', '-H', 'x'],
      env: {},
    });
  });

  it("turns docker's global flags before `dso` into the variables docker and compose read", () => {
    const argv = [
      '-H',
      'unix:///run/a.sock',
      '--context=ctx',
      '--config',
      '/etc/dockercfg',
      '-D',
      '-l',
      'debug',
      '--tlsverify',
      '--tls=false',
      'dso',
      'status',
    ];
    expect(parseDockerPluginArgs(argv)).toEqual({
      kind: 'run',
      args: ['status'],
      env: {
        DOCKER_HOST: 'unix:///run/a.sock',
        DOCKER_CONTEXT: 'ctx',
        DOCKER_CONFIG: '/etc/dockercfg',
        DOCKER_TLS_VERIFY: '1',
      },
    });
    // A flag's value that reads `dso` is the value, not the command.
    expect(parseDockerPluginArgs(['-c', 'dso', '-Htcp://h:2376', 'dso'])).toEqual({
      kind: 'run',
      args: [],
      env: { DOCKER_CONTEXT: 'dso', DOCKER_HOST: 'tcp://h:2376' },
    });
  });

  it('reads `docker help dso [command]` as help', () => {
    expect(parseDockerPluginArgs(['help', 'dso'])).toMatchObject({ args: ['--help'] });
    expect(parseDockerPluginArgs(['help', 'dso', 'secret'])).toMatchObject({
      args: ['help', 'secret'],
    });
  });

  it('answers --help and --version when run directly', () => {
    expect(parseDockerPluginArgs(['--help'])).toEqual({ kind: 'run', args: ['--help'], env: {} });
    expect(parseDockerPluginArgs(['-v'])).toEqual({ kind: 'run', args: ['-v'], env: {} });
  });

  it('refuses what docker does not pass, saying how to run it', () => {
    expect(() => parseDockerPluginArgs([])).toThrow(/run it as `docker dso <command>`/);
    expect(() => parseDockerPluginArgs(['status'])).toThrow(
      expect.objectContaining({ code: 'DSO_CLI_DOCKER_PLUGIN_USAGE' }),
    );
    expect(() => parseDockerPluginArgs(['--nope', 'dso'])).toThrow(/unknown docker option --nope/);
    expect(() => parseDockerPluginArgs(['-H'])).toThrow(/-H has no value/);
    expect(() => parseDockerPluginArgs(['--tlscert', '/c.pem', 'dso'])).toThrow(
      expect.objectContaining({
        code: 'DSO_CLI_DOCKER_PLUGIN_FLAG',
        message: expect.stringContaining('DOCKER_CERT_PATH'),
      }),
    );
  });
});

describe('runDockerPlugin', () => {
  it('prints the metadata docker validates (schema 0.1.0, a vendor) as JSON', async () => {
    const result = await plugin(['docker-cli-plugin-metadata']);
    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toEqual({
      SchemaVersion: '0.1.0',
      Vendor: 'DSO',
      Version: CLI_VERSION,
      ShortDescription: dockerPluginMetadata().ShortDescription,
    });
  });

  it('shows `docker dso` as the command in help and usage lines', async () => {
    const help = await plugin(['dso', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: docker dso \[options\] \[command\]/);
    const sub = await plugin(['dso', 'secret', 'set', '--help']);
    expect(sub.stdout).toContain('Usage: docker dso secret set [options] <path>');
  });

  it('runs dso commands: init, then a secret from stdin that is never printed', async () => {
    expect((await plugin(['dso', 'init'])).code).toBe(0);
    const set = await plugin(['dso', 'secret', 'set', 'app/db/password'], CANARY);
    expect(set).toMatchObject({ code: 0, stdout: 'stored app/db/password (version 1)\n' });
    expect(set.stderr).not.toContain(CANARY);
    expect(await plugin(['dso', 'secret', 'list'])).toMatchObject({
      code: 0,
      stdout: 'app/db/password\n',
    });
    expect((await readdir(home)).sort()).toEqual(['vault.dso', 'vault.key']);
  });

  it('exits 2 with the fix when run without `dso`', async () => {
    const result = await plugin(['status']);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(
      /^docker dso: unexpected "status" where docker passes `dso`: .*\(DSO_CLI_DOCKER_PLUGIN_USAGE\)\n$/,
    );
  });
});
