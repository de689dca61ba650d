/**
 * `dso up` end to end: the built CLI reads a compose file with one `dso://` and one `dsofile://`
 * variable, the built agent resolves the first (allowed by `api.resolveAllow`) and delivers the
 * second, and the real compose creates the container. Values reach the container and nothing
 * else: not the labels, not the CLI's output, not a file in the workspace or the project.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createWorkspace,
  docker,
  filesContaining,
  privateEngineForFile,
  RUN_ID,
  removeRunContainers,
  runCommand,
  startAgent,
  TEST_IMAGE,
  TEST_LABEL,
  waitFor,
} from './harness.js';

// The whole file on an engine of its own (DOCKER_HOST), so it runs beside other files.
privateEngineForFile();

afterAll(removeRunContainers);

/** The compose this host has: `docker compose` when it answers, else `docker-compose`. */
async function composeArgv(): Promise<string[]> {
  const plugin = await docker('compose', 'version').then(
    () => true,
    () => false, // not installed: docker says "unknown command"
  );
  return plugin ? ['docker', 'compose'] : ['docker-compose'];
}

/**
 * One `dso up` of a service with a `dso://` and a `dsofile://` variable. `tmpfs`: the agent
 * serves no volume driver, so the file goes into a tmpfs the service waits for. `volume`: the
 * file comes through a DSO volume the engine mounts before the service starts.
 */
async function upScenario(mode: 'tmpfs' | 'volume') {
  {
    // A "$" and a quote: compose must not interpolate the value, nor a shell split it.
    const token = `canary-env-$HOME-"${randomUUID()}`;
    const password = `canary-file-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/api/token'], token)).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/db/password'], password)).code).toBe(0);
    // The workspace's driver name and volume root (unmounted with it).
    const driver = workspace.volumeDriver;
    await writeFile(
      join(workspace.home, 'dso.yaml'),
      `api:\n  resolveAllow:\n    - dso://app/api/*\nvolumes: { enabled: ${mode === 'volume'} }\n`,
    );
    await using agent = startAgent(workspace.env);
    await agent.waitForLog('agent ready');

    const projectDir = await mkdtemp(join(tmpdir(), 'dso-e2e-up-'));
    const project = `dso-e2e-up-${RUN_ID.slice(0, 8)}`;
    const composeFile = join(projectDir, 'compose.yaml');
    await writeFile(
      composeFile,
      [
        'services:',
        '  app:',
        `    image: ${TEST_IMAGE}`,
        '    network_mode: none',
        '    labels:',
        `      ${TEST_LABEL}: "${RUN_ID}"`,
        '    environment:',
        '      API_TOKEN: dso://app/api/token',
        '      DB_PASSWORD_FILE: dsofile://app/db/password',
        '      GREETING: hello',
        '    command: ["sleep", "600"]',
        '',
      ].join('\n'),
    );
    const compose = await composeArgv();
    const [command, ...prefix] = compose as [string, ...string[]];
    await using _project = {
      async [Symbol.asyncDispose]() {
        await runCommand(command, [...prefix, '-p', project, '-f', composeFile, 'down', '-v'], {
          env: workspace.env,
        });
        await rm(projectDir, { recursive: true, force: true });
      },
    };

    const up = await workspace.cli(['up', '-f', composeFile, '-p', project, '-d']);
    expect(up, up.stderr).toMatchObject({ code: 0 });
    expect(up.stderr).toContain(
      "dso up: warning: app.API_TOKEN is a dso:// value in the container's environment, which docker inspect shows",
    );

    const id = await waitFor('the compose container', async () => {
      const ids = await docker(
        'ps',
        '-q',
        '--no-trunc',
        '--filter',
        `label=com.docker.compose.project=${project}`,
      );
      return ids === '' ? undefined : ids;
    });
    expect(id.split('\n')).toHaveLength(1);

    // The dso:// value is in the environment, exactly (no interpolation, no splitting).
    const env = JSON.parse(
      await docker('inspect', '--format', '{{json .Config.Env}}', id),
    ) as string[];
    expect(env).toContain(`API_TOKEN=${token}`);
    expect(env).toContain('DB_PASSWORD_FILE=/run/secrets/db_password_file');
    expect(env).toContain('GREETING=hello');

    // The dsofile:// value is a file at the path the variable names, delivered by the agent.
    const content = await waitFor('the secret file', async () => {
      const read = await runCommand('docker', ['exec', id, 'sh', '-c', 'cat "$DB_PASSWORD_FILE"']);
      return read.code === 0 && read.stdout !== '' ? read.stdout : undefined;
    });
    expect(content).toBe(password);
    // The wait let the command start once the files were there: `sleep 600` is process 1.
    const cmdline = await docker('exec', id, 'cat', '/proc/1/cmdline');
    expect(cmdline.split('\u0000').filter(Boolean)).toEqual(['sleep', '600']);

    // Labels hold references only.
    const labels = JSON.parse(
      await docker('inspect', '--format', '{{json .Config.Labels}}', id),
    ) as Record<string, string>;
    expect(labels).toMatchObject({
      'dso.enable': 'true',
      'dso.env.API_TOKEN': 'dso://app/api/token',
      'dso.env-version.API_TOKEN': expect.stringMatching(/^\S+$/),
      ...(mode === 'tmpfs'
        ? { 'dso.target': '/run/secrets', 'dso.file.db_password_file': 'dsofile://app/db/password' }
        : {}),
    });
    if (mode === 'volume') {
      expect(Object.keys(labels).filter((key) => key.startsWith('dso.file.'))).toEqual([]);
      const mounts = JSON.parse(await docker('inspect', '--format', '{{json .Mounts}}', id));
      expect(mounts).toEqual([
        expect.objectContaining({ Type: 'volume', Driver: driver, Destination: '/run/secrets' }),
      ]);
      expect(up.stderr).toContain('in place before the service starts');
    }
    const labelText = JSON.stringify(labels);
    const inspected = await docker('inspect', id);
    for (const value of [token, password]) {
      expect(labelText).not.toContain(value);
      expect(up.stdout + up.stderr).not.toContain(value);
      expect(agent.output).not.toContain(value);
      expect(await filesContaining(value, [workspace.home, projectDir])).toEqual([]);
    }
    // The file's value is not in docker inspect at all (the environment's is: that is dso://).
    expect(inspected).not.toContain(password);

    // The DSO volume is removed through the driver, before the agent stops. `down -v` with the
    // user's own files does not know it (it is only in dso up's override), so it goes by name:
    // a volume left behind makes the engine wait ~15 s for its driver at every later start.
    await runCommand(command, [...prefix, '-p', project, '-f', composeFile, 'down', '-v'], {
      env: workspace.env,
    });
    const left = await docker('volume', 'ls', '-q', '--filter', `name=${project}_dso-`);
    for (const volume of left.split('\n').filter(Boolean)) await docker('volume', 'rm', volume);
    expect(await docker('volume', 'ls', '-q', '--filter', `name=${project}_dso-`)).toBe('');
    expect(await agent.stop()).toBe(0);
  }
}

// The project's 120 s, not less: compose, the agent and a private engine share two cores with the
// file running beside this one.
describe('dso up', () => {
  it('creates a service with a dso:// value in its environment and a dsofile:// file in a tmpfs, and leaks neither', async () => {
    await upScenario('tmpfs');
  });

  it('puts the dsofile:// file in a DSO volume when the agent serves the driver, and leaks nothing', async () => {
    await upScenario('volume');
  });
});
