import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type DsoError, isDsoError } from '../errors.js';
import { CONFIG_ENV_OVERRIDES } from './env.js';
import { parseConfig } from './load.js';
import type { ConfigProblem } from './problems.js';

const ENV = { DSO_HOME: '/srv/dso' };

/** Parses `text`, expects DSO_CONFIG_INVALID, and returns the error. */
function invalid(text: string, env: NodeJS.ProcessEnv = ENV): DsoError {
  try {
    parseConfig(text, { file: 'dso.yaml', env });
  } catch (error) {
    if (!isDsoError(error)) throw error;
    expect(error.code).toBe('DSO_CONFIG_INVALID');
    return error;
  }
  throw new Error('expected DSO_CONFIG_INVALID, but the configuration parsed');
}

function problems(text: string, env: NodeJS.ProcessEnv = ENV): ConfigProblem[] {
  return invalid(text, env).details.problems as ConfigProblem[];
}

/** The only problem `text` has. */
function problem(text: string, env: NodeJS.ProcessEnv = ENV): ConfigProblem {
  const found = problems(text, env);
  expect(found).toHaveLength(1);
  return found[0]!;
}

const lines = (...text: string[]) => `${text.join('\n')}\n`;

describe('parseConfig: defaults', () => {
  it('gives every default for an empty file', () => {
    const config = parseConfig('', { env: ENV });
    expect(config).toEqual({
      version: 1,
      defaultProvider: 'local',
      providers: {
        local: {
          type: 'local',
          config: { vaultPath: '/srv/dso/vault.dso' },
          timeoutMs: 30_000,
          failureThreshold: 5,
          circuitOpenMs: 30_000,
          maxInFlight: 64,
          maxMessageBytes: 1.5 * 1024 * 1024,
          env: [],
        },
      },
      cache: {
        backend: 'memory',
        ttlMs: 600_000,
        maxEntries: 10_000,
        maxBytes: 64 * 1024 * 1024,
        staleIfErrorMs: 3_600_000,
        negativeTtlMs: 10_000,
        redis: {
          url: 'redis://127.0.0.1:6379',
          keyPrefix: 'dso:',
          connectTimeoutMs: 5_000,
          commandTimeoutMs: 5_000,
        },
      },
      queue: {
        maxSize: 1_000,
        concurrency: 4,
        retry: { maxAttempts: 5, baseDelayMs: 100, maxDelayMs: 30_000 },
      },
      reconcile: { intervalMs: 600_000 },
      docker: {
        host: 'unix:///var/run/docker.sock',
        allowInsecureTcp: false,
        tlsVerify: false,
        connectTimeoutMs: 5_000,
        requestTimeoutMs: 30_000,
        writeTimeoutMs: 30_000,
        reconnect: { maxAttempts: 100, baseDelayMs: 500, maxDelayMs: 30_000 },
      },
      rotation: {
        defaultPolicy: 'files',
        pollIntervalMs: 300_000,
        maxInFlight: 16,
        jitterMs: 5_000,
        signal: 'SIGHUP',
        hookTimeoutMs: 30_000,
        stopTimeoutMs: 10_000,
        healthTimeoutMs: 60_000,
      },
      api: { socket: '/run/dso/agent.sock', socketMode: 0o660, resolveAllow: [] },
      hostPath: { enabled: true, root: '/run/dso/containers' },
      volumes: {
        enabled: true,
        driverName: 'dso',
        root: '/run/dso/volumes',
        tmpfsSize: 64 * 1024 * 1024,
        mountTimeoutMs: 20_000,
      },
      metrics: { enabled: true, address: '127.0.0.1:9464' },
      audit: {
        enabled: true,
        path: '/srv/dso/audit.jsonl',
        maxFileBytes: 64 * 1024 * 1024,
        maxFiles: 5,
      },
      log: { level: 'info', format: 'auto' },
      shutdownGraceMs: 10_000,
      pluginsDir: '/srv/dso/plugins',
    });
  });

  it('treats a file of comments, or only `---`, as empty', () => {
    const empty = parseConfig('', { env: ENV });
    expect(parseConfig('# nothing here\n', { env: ENV })).toEqual(empty);
    expect(parseConfig('---\n', { env: ENV })).toEqual(empty);
  });

  it('takes the local vault path from DSO_VAULT_PATH', () => {
    const config = parseConfig('', { env: { ...ENV, DSO_VAULT_PATH: '/data/v.dso' } });
    expect(config.providers.local?.config).toEqual({ vaultPath: '/data/v.dso' });
  });

  it('gives `local: {type: local}` beside other providers the default vault, and keeps a vaultPath it sets', () => {
    const env = { ...ENV, DSO_VAULT_PATH: '/data/v.dso' };
    const embedded = parseConfig('', { env }).providers.local;
    for (const text of [
      lines('providers:', '  acme:', '    type: env', '  local: {type: local}'),
      lines('providers:', '  acme:', '    type: env', '  local:', '    type: local', '    config:'),
    ]) {
      const config = parseConfig(text, { env });
      expect(config.providers.local).toEqual(embedded);
      expect(config.defaultProvider).toBe('local');
    }
    const own = parseConfig(
      lines(
        'providers:',
        '  local:',
        '    type: local',
        '    config: {vaultPath: /srv/own.dso, keyFile: /srv/own.key}',
      ),
      { env },
    );
    expect(own.providers.local?.config).toEqual({
      vaultPath: '/srv/own.dso',
      keyFile: '/srv/own.key',
    });
  });

  it('gives a section left empty all its defaults', () => {
    const config = parseConfig(lines('cache:', 'queue:', 'providers:'), { env: ENV });
    expect(config.cache).toEqual(parseConfig('', { env: ENV }).cache);
    expect(Object.keys(config.providers)).toEqual(['local']);
  });

  it('keeps defaults beside the keys a section sets', () => {
    const config = parseConfig(lines('cache:', '  ttlMs: 5m'), { env: ENV });
    expect(config.cache.ttlMs).toBe(300_000);
    expect(config.cache.maxEntries).toBe(10_000);
  });

  it('does not add the local provider when others are configured', () => {
    const warnings: string[] = [];
    const config = parseConfig(lines('providers:', '  env:', '    type: env'), {
      env: ENV,
      warnings,
    });
    expect(Object.keys(config.providers)).toEqual(['env']);
    expect(config.defaultProvider).toBe('env');
    // Said once, with the way to keep the vault.
    expect(warnings).toEqual([
      expect.stringMatching(
        /^references without a provider .* go to provider env, the only one configured, not to the local vault: .*`local: \{type: local\}`.*`defaultProvider`/,
      ),
    ]);
  });

  it('does not warn where references without a provider go when local or defaultProvider says it', () => {
    for (const text of [
      '',
      lines('providers:', '  env:', '    type: env', '  local: {type: local}'),
      lines('defaultProvider: env', 'providers:', '  env:', '    type: env'),
    ]) {
      const warnings: string[] = [];
      parseConfig(text, { env: ENV, warnings });
      expect(warnings).toEqual([]);
    }
  });
});

describe('parseConfig: a full file', () => {
  it('parses docs/dso.example.yaml', () => {
    const text = readFileSync(
      new URL('../../../../docs/dso.example.yaml', import.meta.url),
      'utf8',
    );
    const config = parseConfig(text, { file: 'dso.example.yaml', env: ENV });
    expect(config.defaultProvider).toBe('local');
    expect(config.providers.vault).toMatchObject({
      type: 'vault',
      timeoutMs: 10_000,
      config: { address: 'https://vault.internal:8200', mount: 'kv' },
    });
    expect(config.cache.maxBytes).toBe(64 * 1024 * 1024);
    expect(config.api).toEqual({
      socket: '/run/dso/agent.sock',
      socketMode: 0o660,
      socketGroup: 'dso',
      resolveAllow: [],
    });
    expect(config.shutdownGraceMs).toBe(10_000);
  });

  it('reads every section of a file that sets everything', () => {
    const config = parseConfig(
      lines(
        'version: 1',
        'defaultProvider: vault',
        'providers:',
        '  vault:',
        '    type: vault',
        '    mode: inline',
        '    timeoutMs: 2s',
        '    failureThreshold: 3',
        '    circuitOpenMs: 1m',
        '    maxInFlight: 8',
        '    pollIntervalMs: 30s',
        '    maxStalenessMs: 5m',
        '    env: [VAULT_ADDR, ACME_*]',
        '    config: { address: "https://127.0.0.1:8200", nested: { list: [1, 2] } }',
        '  acme:',
        '    type: "@acme/dso-provider-acme"',
        '  plain:',
        '    type: dso-provider-plain',
        'cache:',
        '  backend: redis',
        '  ttlMs: 1h',
        '  maxEntries: 50',
        '  maxBytes: 1MiB',
        '  staleIfErrorMs: 0',
        '  negativeTtlMs: 0',
        '  redis: { url: "rediss://cache:6380", keyPrefix: "x:", connectTimeoutMs: 1s, commandTimeoutMs: 2s }',
        'queue: { maxSize: 2000, concurrency: 32, retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 } }',
        'reconcile: { intervalMs: 30s }',
        'docker:',
        '  host: tcp://127.0.0.1:2375',
        '  allowInsecureTcp: true',
        '  tlsVerify: true',
        '  tlsCertPath: /etc/dso/docker-tls',
        '  connectTimeoutMs: 1s',
        '  requestTimeoutMs: 2s',
        '  writeTimeoutMs: 3s',
        '  reconnect: { maxAttempts: 7, baseDelayMs: 10, maxDelayMs: 1s }',
        'rotation:',
        '  defaultPolicy: replace',
        '  pollIntervalMs: 1m',
        '  maxInFlight: 2',
        '  jitterMs: 0',
        '  signal: SIGUSR1',
        '  hookTimeoutMs: 5s',
        '  stopTimeoutMs: 0',
        '  healthTimeoutMs: 2m',
        '  escalateTo: restart',
        'api: { socket: /tmp/dso.sock, socketMode: "0600", socketGroup: 999, resolveAllow: ["dso://app/*"] }',
        'hostPath: { enabled: false, root: /dev/shm/dso }',
        'metrics: { enabled: false, address: "[::1]:9100" }',
        'audit: { enabled: false, path: "-", maxFileBytes: 1MiB, maxFiles: 0 }',
        'log: { level: debug }',
        'shutdownGraceMs: 0',
        'pluginsDir: /opt/dso/plugins',
      ),
      { env: ENV },
    );
    expect(config.pluginsDir).toBe('/opt/dso/plugins');
    expect(config.defaultProvider).toBe('vault');
    expect(Object.keys(config.providers)).toEqual(['vault', 'acme', 'plain']);
    expect(config.providers.vault).toEqual({
      type: 'vault',
      mode: 'inline',
      timeoutMs: 2_000,
      failureThreshold: 3,
      circuitOpenMs: 60_000,
      maxInFlight: 8,
      maxMessageBytes: 1.5 * 1024 * 1024,
      pollIntervalMs: 30_000,
      maxStalenessMs: 300_000,
      env: ['VAULT_ADDR', 'ACME_*'],
      config: { address: 'https://127.0.0.1:8200', nested: { list: [1, 2] } },
    });
    expect(config.cache).toEqual({
      backend: 'redis',
      ttlMs: 3_600_000,
      maxEntries: 50,
      maxBytes: 1_048_576,
      staleIfErrorMs: 0,
      negativeTtlMs: 0,
      redis: {
        url: 'rediss://cache:6380',
        keyPrefix: 'x:',
        connectTimeoutMs: 1_000,
        commandTimeoutMs: 2_000,
      },
    });
    expect(config.queue).toEqual({
      maxSize: 2_000,
      concurrency: 32,
      retry: { maxAttempts: 1, baseDelayMs: 1, maxDelayMs: 1 },
    });
    expect(config.reconcile.intervalMs).toBe(30_000);
    expect(config.docker).toEqual({
      host: 'tcp://127.0.0.1:2375',
      allowInsecureTcp: true,
      tlsVerify: true,
      tlsCertPath: '/etc/dso/docker-tls',
      connectTimeoutMs: 1_000,
      requestTimeoutMs: 2_000,
      writeTimeoutMs: 3_000,
      reconnect: { maxAttempts: 7, baseDelayMs: 10, maxDelayMs: 1_000 },
    });
    expect(config.rotation).toEqual({
      defaultPolicy: 'replace',
      pollIntervalMs: 60_000,
      maxInFlight: 2,
      jitterMs: 0,
      signal: 'SIGUSR1',
      hookTimeoutMs: 5_000,
      stopTimeoutMs: 0,
      healthTimeoutMs: 120_000,
      escalateTo: 'restart',
    });
    expect(config.api).toEqual({
      socket: '/tmp/dso.sock',
      socketMode: 0o600,
      socketGroup: 999,
      resolveAllow: ['dso://app/*'],
    });
    expect(config.hostPath).toEqual({ enabled: false, root: '/dev/shm/dso' });
    expect(config.metrics).toEqual({ enabled: false, address: '[::1]:9100' });
    expect(config.audit).toEqual({
      enabled: false,
      path: '-',
      maxFileBytes: 1_048_576,
      maxFiles: 0,
    });
    expect(config.log.level).toBe('debug');
    expect(config.shutdownGraceMs).toBe(0);
  });

  it('expands anchors, aliases and merge keys', () => {
    const config = parseConfig(
      lines(
        'defaultProvider: a',
        'providers:',
        '  a: &base',
        '    type: vault',
        '    timeoutMs: 5s',
        '  b:',
        '    <<: *base',
        '    failureThreshold: 9',
      ),
      { env: ENV },
    );
    expect(config.providers.b).toMatchObject({
      type: 'vault',
      timeoutMs: 5_000,
      failureThreshold: 9,
    });
  });

  it('accepts every way of writing a file mode that is unambiguous', () => {
    for (const mode of ['0o640', '"0640"', '"640"', '"0o640"', '416']) {
      expect(parseConfig(`api: { socketMode: ${mode} }\n`, { env: ENV }).api.socketMode).toBe(
        0o640,
      );
    }
  });
});

describe('parseConfig: each section is checked', () => {
  it.each([
    ['version: 2', 'version', '`version`: expected `1`'],
    ['version: "1"', 'version', '`version`: expected `1`, got a string'],
    ['defaultProvider: Vault', 'defaultProvider', 'expected the name of a configured provider'],
    ['providers: [a, b]', 'providers', '`providers`: expected a mapping, got a list'],
    ['providers: { x: { type: vualt } }', 'providers.x.type', 'did you mean `vault`?'],
    ['providers: { x: { type: some-package } }', 'providers.x.type', 'dso-provider-<name>'],
    ['providers: { x: { type: command } }', 'providers.x.command', 'required with `type: command`'],
    [
      'providers: { x: { type: env, command: [python3, p.py] } }',
      'providers.x.command',
      'only with `type: command`',
    ],
    ['providers: { x: { type: command, command: [] } }', 'providers.x.command', "child's argv"],
    ['providers: { x: { type: command, command: python3 } }', 'providers.x.command', 'a list'],
    [
      'providers: { x: { type: command, command: [python3, ""] } }',
      'providers.x.command[1]',
      'must not be empty',
    ],
    [
      'providers: { x: { type: command, command: [python3], mode: inline } }',
      'providers.x.mode',
      'remove `mode: inline`',
    ],
    [
      'providers: { x: { type: env, mode: thread } }',
      'providers.x.mode',
      'expected one of `process`, `inline`',
    ],
    [
      'providers: { x: { type: env, timeoutMs: 10 } }',
      'providers.x.timeoutMs',
      'must be from 100ms to 1h',
    ],
    [
      'providers: { x: { type: env, failureThreshold: 0 } }',
      'providers.x.failureThreshold',
      'must be at least 1',
    ],
    [
      'providers: { x: { type: env, config: 5 } }',
      'providers.x.config',
      'expected a mapping, got a number',
    ],
    ['cache: { backend: disk }', 'cache.backend', 'expected one of `memory`, `redis`'],
    ['cache: { backend: 1 }', 'cache.backend', 'expected one of `memory`, `redis`, got a number'],
    ['cache: { ttlMs: -1 }', 'cache.ttlMs', 'expected a duration'],
    ['cache: { ttlMs: 1.5 }', 'cache.ttlMs', 'expected a duration'],
    ['cache: { ttlMs: [1] }', 'cache.ttlMs', 'got a list'],
    ['cache: { maxEntries: 0 }', 'cache.maxEntries', 'must be at least 1'],
    [
      'cache: { maxEntries: 2.5 }',
      'cache.maxEntries',
      'expected a whole number, got a fractional number',
    ],
    ['cache: { maxEntries: "10" }', 'cache.maxEntries', 'expected a number, got a string'],
    ['cache: { maxBytes: lots }', 'cache.maxBytes', 'expected a size'],
    ['cache: { maxBytes: 1KB }', 'cache.maxBytes', 'must be from 1 KiB to 16 GiB'],
    [
      'cache: { redis: { url: "http://x" } }',
      'cache.redis.url',
      'expected a redis:// or rediss:// URL',
    ],
    ['cache: { redis: { keyPrefix: "" } }', 'cache.redis.keyPrefix', 'must not be empty'],
    ['queue: { maxSize: 0 }', 'queue.maxSize', 'must be at least 1'],
    ['queue: { concurrency: 33 }', 'queue.concurrency', 'must be at most 32'],
    [
      'queue: { retry: { baseDelayMs: 2s, maxDelayMs: 1s } }',
      'queue.retry.baseDelayMs',
      'must not be longer than `maxDelayMs`',
    ],
    ['reconcile: { intervalMs: 10 }', 'reconcile.intervalMs', 'must be from 1s to 7d'],
    [
      'docker: { host: "/var/run/docker.sock" }',
      'docker.host',
      'expected unix:///path/to/docker.sock or tcp://host:port',
    ],
    [
      'docker: { allowInsecureTcp: "yes" }',
      'docker.allowInsecureTcp',
      'expected true or false, got a string',
    ],
    ['docker: { tlsVerify: true }', 'docker.tlsVerify', 'needs a `tcp://` host'],
    [
      'docker: { host: "tcp://10.0.0.5", tlsCertPath: /certs }',
      'docker.tlsCertPath',
      'is read only with `tlsVerify: true`',
    ],
    [
      'docker: { host: "tcp://10.0.0.5", tlsVerify: true, tlsCertPath: certs }',
      'docker.tlsCertPath',
      'expected an absolute path',
    ],
    [
      'docker: { reconnect: { maxAttempts: 0 } }',
      'docker.reconnect.maxAttempts',
      'must be at least 1',
    ],
    ['rotation: { defaultPolicy: reload }', 'rotation.defaultPolicy', 'expected one of `files`'],
    ['rotation: { signal: SIGKILL }', 'rotation.signal', 'expected one of `SIGHUP`'],
    ['api: { socket: run/dso.sock }', 'api.socket', 'expected an absolute path'],
    [`api: { socket: /${'s'.repeat(120)} }`, 'api.socket', 'at most 107 bytes'],
    ['api: { socketMode: 0o1777 }', 'api.socketMode', 'expected a file mode from 0o000 to 0o777'],
    ['api: { socketMode: rw-rw---- }', 'api.socketMode', 'expected a file mode'],
    ['api: { socketGroup: "bad group" }', 'api.socketGroup', 'expected a group name (letters'],
    ['api: { socketGroup: -1 }', 'api.socketGroup', 'must be at least 0'],
    [
      'api: { socketGroup: true }',
      'api.socketGroup',
      'expected a group name or a numeric gid, got a boolean',
    ],
    ['metrics: { address: 9464 }', 'metrics.address', 'expected a string, got a number'],
    ['metrics: { address: "127.0.0.1" }', 'metrics.address', 'expected host:port'],
    ['metrics: { address: "127.0.0.1:70000" }', 'metrics.address', 'expected host:port'],
    [
      'audit: { path: audit.log }',
      'audit.path',
      'expected an absolute path, or - for standard output',
    ],
    ['audit: { maxFiles: -1 }', 'audit.maxFiles', 'must be at least 0'],
    ['log: { level: verbose }', 'log.level', 'expected one of `trace`, `debug`, `info`'],
    ['shutdownGraceMs: 1h', 'shutdownGraceMs', 'must be from 0ms to 10m'],
  ])('%s', (text, path, message) => {
    const found = problem(`${text}\n`);
    expect(found.path).toBe(path);
    expect(found.message).toContain(message);
    expect(found.line).toBe(1);
  });

  it('requires a provider type, pointing at the provider', () => {
    const found = problem(lines('providers:', '  vault:', '    timeoutMs: 5s'));
    expect(found).toEqual({
      path: 'providers.vault.type',
      line: 2,
      column: 3,
      message: '`providers.vault.type` is required',
    });
  });

  it('accepts a command provider: type command with the argv of its child', () => {
    const config = parseConfig(
      lines('providers:', '  py:', '    type: command', '    command: [python3, /opt/p.py]'),
      { env: ENV },
    );
    expect(config.providers.py).toMatchObject({
      type: 'command',
      command: ['python3', '/opt/p.py'],
    });
    // Unset: where it runs is the agent's call (a command always in its own process).
    expect(config.providers.py?.mode).toBeUndefined();
  });

  it('refuses a provider name a reference could not use', () => {
    const found = problem(lines('providers:', '  My_Vault:', '    type: vault'));
    expect(found).toMatchObject({ path: 'providers.My_Vault', line: 2, column: 3 });
    expect(found.message).toContain('a provider name is a lowercase letter');
  });

  it('refuses a defaultProvider that is not configured, naming those that are', () => {
    const found = problem(lines('defaultProvider: vault', 'providers:', '  aws:', '    type: aws'));
    expect(found).toMatchObject({ path: 'defaultProvider', line: 1, column: 18 });
    expect(found.message).toContain('configured: `aws`');
  });

  it('asks for defaultProvider when several providers are configured and none is local', () => {
    const found = problem(
      lines('providers:', '  aws:', '    type: aws', '  azure:', '    type: azure'),
    );
    expect(found).toMatchObject({ path: 'defaultProvider', line: 1, column: 1 });
    expect(found.message).toContain('set `defaultProvider`');
  });

  it('picks local as the default among several providers', () => {
    const config = parseConfig(
      lines('providers:', '  aws:', '    type: aws', '  local:', '    type: local'),
      { env: ENV },
    );
    expect(config.defaultProvider).toBe('local');
  });

  it('refuses a number with a leading zero, which YAML reads as decimal', () => {
    const found = problem(lines('api:', '  socketMode: 0660'));
    expect(found).toMatchObject({ path: 'api.socketMode', line: 2, column: 15 });
    expect(found.message).toContain('write an octal file mode as 0o660 or "0660"');
    expect(problem('queue: { concurrency: 08 }\n').path).toBe('queue.concurrency');
  });

  it("leaves leading zeros inside a provider's config to the provider", () => {
    const config = parseConfig(
      lines('providers:', '  x:', '    type: env', '    config:', '      zip: 01234'),
      {
        env: ENV,
      },
    );
    expect(config.providers.x?.config).toEqual({ zip: 1234 });
  });

  it('refuses a file that is not a mapping', () => {
    expect(problem('- a\n- b\n')).toMatchObject({ path: '', line: 1, column: 1 });
    expect(problem('just text\n').message).toContain('not a single string');
  });
});

describe('parseConfig: unknown keys', () => {
  it('names the key, its line and column, and the key meant', () => {
    const error = invalid(lines('# cache settings', 'cache:', '  backend: memory', '  tll: 5m'));
    expect(error.details.problems).toEqual([
      {
        path: 'cache.tll',
        line: 4,
        column: 3,
        message: 'unknown key `cache.tll`; did you mean `ttlMs`?',
      },
    ]);
    expect(error.message).toBe(
      'invalid configuration in dso.yaml (1 problem):\n' +
        '  dso.yaml:4:3: unknown key `cache.tll`; did you mean `ttlMs`?',
    );
  });

  it.each([
    ['interval: 5m', 'reconcile', 'interval', 'intervalMs'],
    ['max_entries: 5', 'cache', 'max_entries', 'maxEntries'],
    ['concurency: 5', 'queue', 'concurency', 'concurrency'],
    ['adress: "x:1"', 'metrics', 'adress', 'address'],
  ])('suggests for %s under %s', (entry, section, key, meant) => {
    const found = problem(lines(`${section}:`, `  ${entry}`));
    expect(found).toMatchObject({ path: `${section}.${key}`, line: 2, column: 3 });
    expect(found.message).toBe(`unknown key \`${section}.${key}\`; did you mean \`${meant}\`?`);
  });

  it('suggests the section a key belongs in', () => {
    expect(problem('level: debug\n').message).toBe(
      'unknown key `level`; did you mean `log.level`?',
    );
    expect(problem('provider: {}\n').message).toBe(
      'unknown key `provider`; did you mean `providers`?',
    );
  });

  it("points a provider's own setting to its config", () => {
    const found = problem(
      lines('providers:', '  vault:', '    type: vault', '    address: https://v'),
    );
    expect(found).toMatchObject({ path: 'providers.vault.address', line: 4, column: 5 });
    expect(found.message).toBe(
      "unknown key `providers.vault.address`; a provider's own settings go under `providers.vault.config`",
    );
  });

  it('lists the allowed keys when nothing is close', () => {
    expect(problem('reconcile: { colour: blue }\n').message).toBe(
      'unknown key `reconcile.colour`; allowed here: `intervalMs`',
    );
  });

  it('quotes a key that is not a plain name, and cuts a long one', () => {
    expect(problem('"a b": 1\n').path).toBe('["a b"]');
    expect(problem(`${'k'.repeat(100)}: 1\n`).path).toBe(`${'k'.repeat(64)}…`);
  });

  it("does not check keys inside a provider's config", () => {
    const config = parseConfig(
      lines('providers:', '  v:', '    type: vault', '    config: { anything: 1 }'),
      {
        env: ENV,
      },
    );
    expect(config.providers.v?.config).toEqual({ anything: 1 });
  });
});

describe('parseConfig: several problems', () => {
  it('reports every problem, in file order, with nested paths and lines', () => {
    const error = invalid(
      lines(
        'providers:', // 1
        '  vault:', // 2
        '    type: vault', // 3
        '    timeoutMs: true', // 4
        'docker:', // 5
        '  reconnect:', // 6
        '    maxAttempts: none', // 7
        '    maxDelay: 5s', // 8
        'cache:', // 9
        '  ttlMs: forever', // 10
      ),
    );
    expect(error.details.problems).toEqual([
      {
        path: 'providers.vault.timeoutMs',
        line: 4,
        column: 16,
        message: expect.stringMatching(
          /^`providers.vault.timeoutMs`: expected a duration .*, got a boolean$/,
        ),
      },
      {
        path: 'docker.reconnect.maxAttempts',
        line: 7,
        column: 18,
        message: '`docker.reconnect.maxAttempts`: expected a number, got a string',
      },
      {
        path: 'docker.reconnect.maxDelay',
        line: 8,
        column: 5,
        message: 'unknown key `docker.reconnect.maxDelay`; did you mean `maxDelayMs`?',
      },
      {
        path: 'cache.ttlMs',
        line: 10,
        column: 10,
        message: expect.stringMatching(/^`cache.ttlMs`: expected a duration/),
      },
    ]);
    expect(error.message.split('\n')).toEqual([
      'invalid configuration in dso.yaml (4 problems):',
      expect.stringMatching(/^ {2}dso\.yaml:4:16: `providers\.vault\.timeoutMs`: /),
      expect.stringMatching(/^ {2}dso\.yaml:7:18: /),
      expect.stringMatching(/^ {2}dso\.yaml:8:5: unknown key/),
      expect.stringMatching(/^ {2}dso\.yaml:10:10: /),
    ]);
  });

  it('points at the key when a value is left empty', () => {
    expect(problem(lines('log:', '  level:'))).toMatchObject({
      path: 'log.level',
      line: 2,
      column: 3,
      message: expect.stringContaining('got an empty value'),
    });
  });

  it('finds items of a list by index', () => {
    const found = problem(lines('metrics:', '  address:', '    - a', '    - b'));
    expect(found).toMatchObject({ path: 'metrics.address', line: 3, column: 5 });
  });

  it('lists at most 50 problems and counts the rest', () => {
    const text = Array.from({ length: 60 }, (_, i) => `unknown${i}: 1`).join('\n');
    const error = invalid(text);
    expect(error.details.problems).toHaveLength(50);
    expect(error.message).toContain('(60 problems)');
    expect(error.message.trimEnd().endsWith('… and 10 more')).toBe(true);
  });
});

describe('parseConfig: YAML syntax', () => {
  it.each([
    ['cache:\n  ttlMs: 5\n ttl: 3\n', 3, 'YAML syntax: bad indentation'],
    ['cache:\n  ttlMs: [1, 2\n', 3, 'YAML syntax:'],
    [
      'log:\n  level: info\nlog:\n  level: debug\n',
      3,
      'YAML syntax: a key appears twice in the same mapping',
    ],
    ['a: 1\n---\nb: 2\n', 2, 'more than one YAML document'],
    ['log:\n\tlevel: info\n', 2, 'YAML syntax: a tab'],
  ])('reports %j at its line', (text, line, message) => {
    const found = problems(text);
    expect(found[0]).toMatchObject({ path: '', line, message: expect.stringContaining(message) });
    expect(found[0]?.column).toBeGreaterThanOrEqual(1);
  });

  it('refuses an alias bomb', () => {
    const bomb = lines(
      'a: &a [x, x, x, x, x, x, x, x, x, x]',
      'b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]',
      'c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]',
      'd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]',
      'e: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]',
    );
    expect(problem(bomb).message).toBe('YAML: aliases expand to too much data');
  });
});

describe('parseConfig: environment overrides', () => {
  it('applies each override over the file', () => {
    const config = parseConfig(
      lines('log: { level: warn }', 'docker: { host: "unix:///file.sock" }', 'shutdownGraceMs: 1s'),
      {
        env: {
          ...ENV,
          DSO_LOG_LEVEL: 'debug',
          DOCKER_HOST: 'tcp://127.0.0.1:2375',
          DSO_API_SOCKET: '/tmp/agent.sock',
          DSO_METRICS_ADDRESS: '0.0.0.0:9100',
          DSO_CACHE_BACKEND: 'redis',
          DSO_REDIS_URL: 'redis://:pw@127.0.0.1:6379',
          DSO_SHUTDOWN_GRACE_MS: '30s',
        },
      },
    );
    expect(config.log.level).toBe('debug');
    expect(config.docker.host).toBe('tcp://127.0.0.1:2375');
    expect(config.api.socket).toBe('/tmp/agent.sock');
    expect(config.metrics.address).toBe('0.0.0.0:9100');
    expect(config.cache.backend).toBe('redis');
    expect(config.cache.redis.url).toBe('redis://:pw@127.0.0.1:6379');
    expect(config.shutdownGraceMs).toBe(30_000);
  });

  it('reads whole milliseconds from DSO_SHUTDOWN_GRACE_MS, as the agent always has', () => {
    expect(
      parseConfig('', { env: { ...ENV, DSO_SHUTDOWN_GRACE_MS: '2500' } }).shutdownGraceMs,
    ).toBe(2_500);
  });

  it('ignores a variable that is empty or blank', () => {
    const config = parseConfig('log: { level: warn }\n', { env: { ...ENV, DSO_LOG_LEVEL: ' ' } });
    expect(config.log.level).toBe('warn');
  });

  it('covers a path that exists in the schema for every override', () => {
    // A variable whose text is read into a value of its own (any DOCKER_TLS_VERIFY is `true`)
    // cannot be wrong; every other one is, with `¿`, and is named as the source.
    const free = CONFIG_ENV_OVERRIDES.filter((o) => o.read === undefined && o.when === undefined);
    const env = Object.fromEntries(free.map((o) => [o.name, '¿']));
    const found = problems('', { ...ENV, ...env });
    // One variable may bring two problems (a relative DOCKER_CERT_PATH, set without TLS).
    expect([...new Set(found.map((p) => p.env))].sort()).toEqual(free.map((o) => o.name).sort());
    for (const p of found) expect(p.line).toBeUndefined();
  });

  it('ignores DOCKER_CERT_PATH without TLS, as the docker CLI does', () => {
    const config = parseConfig('', { env: { ...ENV, DOCKER_CERT_PATH: '/etc/dso/docker-tls' } });
    expect(config.docker.tlsCertPath).toBeUndefined();
    expect(config.docker.tlsVerify).toBe(false);
  });

  it('reads DOCKER_TLS_VERIFY and DOCKER_CERT_PATH as the docker CLI does', () => {
    const config = parseConfig('', {
      env: {
        ...ENV,
        DOCKER_HOST: 'tcp://10.0.0.5:2376',
        DOCKER_TLS_VERIFY: '0',
        DOCKER_CERT_PATH: '/etc/dso/docker-tls',
      },
    });
    expect(config.docker).toMatchObject({
      host: 'tcp://10.0.0.5:2376',
      tlsVerify: true,
      tlsCertPath: '/etc/dso/docker-tls',
    });
  });

  it('names the variable a bad value came from, after the file problems', () => {
    const error = invalid('cache: { tll: 1 }\n', {
      ...ENV,
      DSO_LOG_LEVEL: 'verbose',
      DSO_SHUTDOWN_GRACE_MS: 'soon',
    });
    expect(error.details.problems).toEqual([
      { path: 'cache.tll', line: 1, column: 10, message: expect.stringContaining('unknown key') },
      {
        path: 'log.level',
        env: 'DSO_LOG_LEVEL',
        message: expect.stringContaining('`log.level`: expected one of `trace`'),
      },
      {
        path: 'shutdownGraceMs',
        env: 'DSO_SHUTDOWN_GRACE_MS',
        message: expect.stringContaining('`shutdownGraceMs`: expected a duration'),
      },
    ]);
    expect(error.message).toContain('\n  DSO_LOG_LEVEL: `log.level`: expected one of');
  });

  it('overrides a value the file left empty', () => {
    const config = parseConfig(lines('log:', 'cache:', '  redis:'), {
      env: { ...ENV, DSO_LOG_LEVEL: 'error', DSO_REDIS_URL: 'redis://10.0.0.1' },
    });
    expect(config.log.level).toBe('error');
    expect(config.cache.redis.url).toBe('redis://10.0.0.1');
  });
});

describe('parseConfig: secrets stay out of errors', () => {
  const CANARY = 'canary-4f1d9c2b-credential';

  it('never quotes a value, whatever is wrong around it', () => {
    const error = invalid(
      lines(
        'providers:',
        '  vault:',
        '    type: vault',
        `    timeoutMs: ${CANARY}`,
        '    config:',
        `      token: ${CANARY}`,
        `      nested: { password: "${CANARY}" }`,
        '  other:',
        `    type: ${CANARY}`,
        `defaultProvider: ${CANARY}`,
        `cache: { backend: ${CANARY}, maxBytes: ${CANARY}, redis: { url: "${CANARY}" } }`,
        `docker: { host: ${CANARY} }`,
        `api: { socket: ${CANARY}, socketMode: ${CANARY}, socketGroup: "${CANARY} x" }`,
        `metrics: { address: ${CANARY} }`,
        `audit: { path: ${CANARY} }`,
        `log: { level: ${CANARY} }`,
        `rotation: { signal: ${CANARY}, defaultPolicy: ${CANARY} }`,
      ),
      { ...ENV, DSO_REDIS_URL: `redis://user:${CANARY}@host`, DSO_METRICS_ADDRESS: CANARY },
    );
    expect(error.details.problems).not.toHaveLength(0);
    expect(error.message).not.toContain(CANARY);
    expect(JSON.stringify(error.details)).not.toContain(CANARY);
    expect(String(error.stack)).not.toContain(CANARY);
  });

  it('never quotes source text in a YAML syntax error', () => {
    for (const text of [
      `providers: { v: { type: vault, config: { token: "${CANARY}\\q" } } }\n`,
      `token: |${CANARY}\n  x\n`,
      `token: "${CANARY}\n`,
      `token: !${CANARY} x\n`,
      `token: *${CANARY}\n`,
      `@${CANARY}: 1\n`,
    ]) {
      const error = invalid(text);
      expect(error.message).not.toContain(CANARY);
      expect(JSON.stringify(error.details)).not.toContain(CANARY);
    }
  });

  it('keeps any value out of any message (property)', () => {
    fc.assert(
      fc.property(
        fc.stringMatching(/^[A-Za-z0-9+/=_.-]{12,40}$/),
        fc.constantFrom(
          'cache.ttlMs',
          'cache.backend',
          'cache.redis.url',
          'log.level',
          'docker.host',
          'metrics.address',
          'api.socketMode',
          'rotation.signal',
          'providers.p.type',
          'providers.p.mode',
          'providers.p.timeoutMs',
        ),
        (secret, path) => {
          const keys = path.split('.');
          const yaml = keys
            .map(
              (key, depth) =>
                `${'  '.repeat(depth)}${key}:${depth === keys.length - 1 ? ` "${secret}"` : ''}`,
            )
            .join('\n');
          const extra =
            path.startsWith('providers') && !path.endsWith('type') ? '\n    type: vault' : '';
          const text = `${yaml}${extra}\nproviders_x: { config: { secret: "${secret}" } }\n`;
          const error = invalid(text);
          expect(error.message).not.toContain(secret);
          expect(JSON.stringify(error.details)).not.toContain(secret);
        },
      ),
    );
  });
});
