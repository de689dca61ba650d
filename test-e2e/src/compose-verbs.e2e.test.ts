// biome-ignore-all lint/suspicious/noTemplateCurlyInString: compose's own ${…} interpolation is what these files hold
/**
 * The compose side end to end, with the built CLI and agent, Debian's docker-compose (or the
 * plugin) and a private engine (so that no other test's agent manages these containers, nor
 * this agent theirs): `dso up` refuses a missing secret before it starts anything, a plain
 * `compose up` after `dso up` is reported by the agent, and `dso down` removes the containers
 * and the DSO volumes `dso up` made. Then `dso up` on compose's own model: `extends`, two `-f`
 * files, `.env`, nested defaults and profiles as the tool reads them; near-miss references
 * refused before anything starts; compose's own message and exit code when it refuses.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  CLI_BIN,
  createWorkspace,
  dockerOn,
  filesContaining,
  RUN_ID,
  readAuditTrail,
  runCommand,
  startAgent,
  TEST_IMAGE,
  TEST_LABEL,
  waitFor,
} from './harness.js';

/** The compose this host has: `docker compose` when it answers, else `docker-compose`. */
async function composeArgv(): Promise<string[]> {
  const plugin = await runCommand('docker', ['compose', 'version']);
  return plugin.code === 0 ? ['docker', 'compose'] : ['docker-compose'];
}

function service(name: string, variable: string, reference: string): string[] {
  return [
    `  ${name}:`,
    `    image: ${TEST_IMAGE}`,
    '    network_mode: none',
    `    labels: { ${TEST_LABEL}: "${RUN_ID}" }`,
    `    environment: { ${variable}: ${reference} }`,
    '    command: ["sleep", "600"]',
  ];
}

describe('dso up, down and a plain compose up (private engine)', () => {
  it('refuses a missing secret before starting anything, reports a plain compose up, and dso down removes containers and DSO volumes', async () => {
    const password = `canary-compose-verbs-${randomUUID()}`;
    const engine = await startPrivateEngine();
    // Its agent serves the workspace's own driver name and volume root (see the harness).
    await using workspace = await createWorkspace();
    const projectDir = await mkdtemp(join(tmpdir(), 'dso-e2e-verbs-'));
    const project = `dso-e2e-verbs-${RUN_ID.slice(0, 8)}`;
    const goodFile = join(projectDir, 'compose.yaml');
    const badFile = join(projectDir, 'missing.yaml');
    const [command, ...prefix] = (await composeArgv()) as [string, ...string[]];
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const cli = (args: string[]) => runCommand(process.execPath, [CLI_BIN, ...args], { env });
    const compose = (...args: string[]) =>
      runCommand(command, [...prefix, '-p', project, ...args], { env });
    await using agent = startAgent(env);
    await using _cleanup = {
      async [Symbol.asyncDispose]() {
        // While the agent runs: the engine needs the driver to remove its volumes.
        for (const file of [goodFile, badFile]) await compose('-f', file, 'down', '-v');
        const left = await dockerOn(engine.host, 'volume', 'ls', '-q').catch(() => '');
        for (const volume of left.split('\n').filter(Boolean)) {
          await dockerOn(engine.host, 'volume', 'rm', '-f', volume).catch(() => '');
        }
        await agent.stop();
        await engine.destroy();
        await rm(projectDir, { recursive: true, force: true });
      },
    };
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/db/password'], password)).code).toBe(0);
    await agent.waitForLog('agent ready');

    await writeFile(
      badFile,
      [
        'services:',
        ...service('app', 'DB_PASSWORD_FILE', 'dsofile://app/db/password'),
        ...service('broken', 'KEY_FILE', 'dsofile://app/missing/key'),
        '',
      ].join('\n'),
    );
    await writeFile(
      goodFile,
      ['services:', ...service('app', 'DB_PASSWORD_FILE', 'dsofile://app/db/password'), ''].join(
        '\n',
      ),
    );
    const projectContainers = () =>
      dockerOn(
        engine.host,
        'ps',
        '-aq',
        '--no-trunc',
        '--filter',
        `label=com.docker.compose.project=${project}`,
      );
    const dsoVolumes = () =>
      dockerOn(engine.host, 'volume', 'ls', '-q', '--filter', `name=${project}_dso-`);

    // 1. A missing secret: nothing is started, the reference and its service are named.
    const refused = await cli(['up', '-d', '-p', project, '-f', badFile]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toContain(
      'nothing was started: a secret the services use cannot be had: dsofile://app/missing/key (broken.KEY_FILE): DSO_PROVIDER_NOT_FOUND',
    );
    expect(refused.stderr).toContain('(DSO_CLI_UP_SECRET_MISSING)');
    expect(await projectContainers()).toBe('');
    expect(await dsoVolumes()).toBe('');

    // 2. dso up, then a plain compose up: the recreated container is reported.
    const up = await cli(['up', '-d', '-p', project, '-f', goodFile]);
    expect(up, up.stderr).toMatchObject({ code: 0 });
    const first = await waitFor(
      'the dso up container',
      async () => (await projectContainers()) || undefined,
    );
    const read = await runCommand('docker', [
      '-H',
      engine.host,
      'exec',
      first,
      'sh',
      '-c',
      'cat "$DB_PASSWORD_FILE"',
    ]);
    expect(read.stdout).toBe(password);
    expect((await dsoVolumes()).split('\n').filter(Boolean)).toHaveLength(1);
    const ps = await cli(['ps', '-p', project, '-f', goodFile]);
    expect(ps.code).toBe(0);
    expect(ps.stdout).toMatch(/sleep 600|Up|running/);

    const plain = await compose('-f', goodFile, 'up', '-d');
    expect(plain.code, plain.stderr).toBe(0);
    const second = await waitFor('the recreated container', async () => {
      const id = await projectContainers();
      return id !== '' && id !== first ? id : undefined;
    });
    const records = await waitFor('the audit line', async () => {
      const found = (await readAuditTrail(workspace.home)).filter(
        (record) => record.code === 'DSO_AGENT_LITERAL_REFERENCE',
      );
      return found.length > 0 ? found : undefined;
    });
    expect(records).toEqual([
      expect.objectContaining({
        outcome: 'refused',
        containerId: second,
        reason: expect.stringContaining(`dso up -d -p ${project} -f ${goodFile} app`),
      }),
    ]);
    const status = await cli(['status']);
    // The row names the code; the line under it the command that fixes it.
    expect(status.stdout + status.stderr).toContain('DSO_AGENT_LITERAL_REFERENCE');
    expect(status.stdout).toContain(
      `recreate it with dso up instead of docker compose up: dso up -d -p ${project}`,
    );
    expect(
      agent
        .lines()
        .some((line) => line.code === 'DSO_AGENT_LITERAL_REFERENCE' && line.level === 40),
    ).toBe(true);

    // 3. dso down: the containers and the DSO volume are gone.
    const down = await cli(['down', '-p', project, '-f', goodFile]);
    expect(down, down.stderr).toMatchObject({ code: 0 });
    expect(await projectContainers()).toBe('');
    expect(await dsoVolumes()).toBe('');

    for (const output of [refused, up, ps, plain, status, down]) {
      expect(output.stdout + output.stderr).not.toContain(password);
    }
    expect(agent.output).not.toContain(password);
    expect(await filesContaining(password, [workspace.home, projectDir])).toEqual([]);
  }, 420_000);

  it("works on compose's own model (extends, two -f files, .env, nested defaults, profiles), refuses near misses, and ends with compose's exit code", async () => {
    const password = `canary-model-file-${randomUUID()}`;
    const key = `canary-model-key-${randomUUID()}`;
    const token = `canary-model-env-${randomUUID()}`;
    const engine = await startPrivateEngine();
    await using workspace = await createWorkspace();
    const projectDir = await mkdtemp(join(tmpdir(), 'dso-e2e-model-'));
    const project = `dso-e2e-model-${RUN_ID.slice(0, 8)}`;
    const file = (name: string) => join(projectDir, name);
    const [command, ...prefix] = (await composeArgv()) as [string, ...string[]];
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const cli = (args: string[]) => runCommand(process.execPath, [CLI_BIN, ...args], { env });
    const compose = (...args: string[]) =>
      runCommand(command, [...prefix, '-p', project, ...args], { env });
    const main = ['-f', file('compose.yaml'), '-f', file('second.yaml')];
    await using _engine = {
      async [Symbol.asyncDispose]() {
        await engine.destroy();
        await rm(projectDir, { recursive: true, force: true });
      },
    };
    expect((await workspace.cli(['init'])).code).toBe(0);
    for (const [path, value] of [
      ['app/db/password', password],
      ['app/api/key', key],
      ['app/api/token', token],
    ] as const) {
      expect((await workspace.cli(['secret', 'set', path], value)).code).toBe(0);
    }
    await writeFile(
      join(workspace.home, 'dso.yaml'),
      'api:\n  resolveAllow:\n    - dso://app/api/*\nvolumes: { enabled: false }\n',
    );
    await using agent = startAgent(env);
    await using _cleanup = {
      async [Symbol.asyncDispose]() {
        await compose(...main, '--profile', 'debug', 'down', '-v');
        await agent.stop();
      },
    };
    await agent.waitForLog('agent ready');

    // base.yaml: what `extends` brings (a dso:// value, the command). compose.yaml: a reference
    // that only .env names, a nested default, and a profiled service whose secret is missing.
    // second.yaml: a second -f file adding a dsofile:// variable.
    await writeFile(
      file('base.yaml'),
      [
        'services:',
        '  base:',
        `    image: ${TEST_IMAGE}`,
        '    network_mode: none',
        `    labels: { ${TEST_LABEL}: "${RUN_ID}" }`,
        '    environment: { API_TOKEN: dso://app/api/token }',
        '    command: ["sleep", "600"]',
        '',
      ].join('\n'),
    );
    await writeFile(
      file('compose.yaml'),
      [
        'services:',
        '  app:',
        '    extends: { file: base.yaml, service: base }',
        '    environment:',
        '      DB_PASSWORD_FILE: ${PASSWORD_REF}',
        '      NESTED: ${DSO_E2E_UNSET_A:-${DSO_E2E_UNSET_B:-x}}',
        '  debug:',
        '    extends: { file: base.yaml, service: base }',
        '    profiles: [ debug ]',
        '    environment: { MISSING_FILE: dsofile://app/missing/debug }',
        '',
      ].join('\n'),
    );
    await writeFile(
      file('second.yaml'),
      'services:\n  app:\n    environment: { API_KEY_FILE: dsofile://app/api/key }\n',
    );
    await writeFile(file('.env'), 'PASSWORD_REF=dsofile://app/db/password\n');
    const projectContainers = () =>
      dockerOn(
        engine.host,
        'ps',
        '-aq',
        '--no-trunc',
        '--filter',
        `label=com.docker.compose.project=${project}`,
      );

    // 1. Near-miss references: refused before anything starts, each named with what was meant.
    await writeFile(
      file('typo.yaml'),
      [
        'services:',
        '  app:',
        '    extends: { file: base.yaml, service: base }',
        '    environment: { DB_PASSWORD_FILE: "dsofile:/app/db/password", KEY: "dos://app/api/key" }',
        '',
      ].join('\n'),
    );
    const typo = await cli(['up', '-d', '-p', project, '-f', file('typo.yaml')]);
    expect(typo.code).toBe(3);
    expect(typo.stderr).toContain(
      'nothing was started: app.DB_PASSWORD_FILE="dsofile:/app/db/password" is not a reference; did you mean dsofile://app/db/password?; app.KEY="dos://app/api/key" is not a reference; did you mean dso://app/api/key?',
    );
    expect(typo.stderr).toContain('(DSO_REFERENCE_NEAR_MISS)');
    expect(await projectContainers()).toBe('');

    // 2. A file compose refuses: its own message, and its own exit code.
    await writeFile(
      file('bad.yaml'),
      `services:\n  app:\n    image: ${TEST_IMAGE}\n    no_such_key: 1\n`,
    );
    const own = await compose('-f', file('bad.yaml'), 'config');
    expect(own.code).not.toBe(0);
    const bad = await cli(['up', '-d', '-p', project, '-f', file('bad.yaml')]);
    expect(bad.code).toBe(own.code);
    expect(bad.stderr).toContain('no_such_key');
    expect(bad.stderr).toContain('(DSO_CLI_COMPOSE_FAILED)');
    expect(await projectContainers()).toBe('');

    // 3. The debug profile's service is only checked when the profile is on.
    const profiled = await cli(['up', '-d', '-p', project, ...main, '--profile', 'debug']);
    expect(profiled.code).toBe(4);
    expect(profiled.stderr).toContain('dsofile://app/missing/debug (debug.MISSING_FILE)');
    expect(await projectContainers()).toBe('');

    // 4. dso up on the merged model: app only, every reference wired, as compose reads them.
    const up = await cli(['up', '-d', '-p', project, ...main]);
    expect(up, up.stderr).toMatchObject({ code: 0 });
    const id = await waitFor(
      'the app container',
      async () => (await projectContainers()) || undefined,
    );
    expect(id.split('\n')).toHaveLength(1);
    const exec = (script: string) =>
      runCommand('docker', ['-H', engine.host, 'exec', id, 'sh', '-c', script]);
    const content = await waitFor('the secret files', async () => {
      const read = await exec('cat "$DB_PASSWORD_FILE"; echo; cat "$API_KEY_FILE"');
      return read.code === 0 ? read.stdout : undefined;
    });
    expect(content).toBe(`${password}\n${key}`);
    expect((await exec('printf %s "$API_TOKEN"')).stdout).toBe(token);
    // Compose's own rule for the nested default: docker-compose 1.x does not nest (the inner
    // ${…} stays as text), Compose v2 does. dso up follows whichever runs.
    expect((await exec('printf %s "$NESTED"')).stdout).toBe(
      command === 'docker-compose' ? '${DSO_E2E_UNSET_B:-x}' : 'x',
    );

    // 5. When compose itself fails, dso ends with compose's exit code (not 8).
    const ownUsage = await compose(...main, 'ps', 'no-such-service');
    expect(ownUsage.code).not.toBe(0);
    const usage = await cli(['ps', '-p', project, ...main, 'no-such-service']);
    expect(usage.code).toBe(ownUsage.code);
    expect(usage.stderr).toContain('No such service: no-such-service');
    expect(usage.stderr).toContain('(DSO_CLI_COMPOSE_FAILED)');
    const upUsage = await cli(['up', '-d', '-p', project, ...main, '--', 'no-such-service']);
    expect(upUsage.code).toBe(ownUsage.code);
    expect(upUsage.stderr).toContain('compose up exited');

    const down = await cli(['down', '-p', project, ...main]);
    expect(down, down.stderr).toMatchObject({ code: 0 });
    expect(await projectContainers()).toBe('');

    for (const output of [typo, bad, profiled, up, usage, upUsage, down]) {
      for (const value of [password, key, token]) {
        expect(output.stdout + output.stderr).not.toContain(value);
      }
    }
    for (const value of [password, key, token]) {
      expect(agent.output).not.toContain(value);
      expect(await filesContaining(value, [workspace.home, projectDir])).toEqual([]);
    }
  }, 420_000);
});
