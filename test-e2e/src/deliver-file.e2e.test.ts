import { randomUUID } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createWorkspace,
  docker,
  filesContaining,
  privateEngineForFile,
  removeRunContainers,
  runContainer,
  startAgent,
  waitFor,
} from './harness.js';

// The whole file on an engine of its own (DOCKER_HOST), so it runs beside other files.
privateEngineForFile();

const SECRET_LABELS = [
  '--label',
  'dso.enable=true',
  '--label',
  'dso.file.db_password=dsofile://app/db/password',
  '--tmpfs',
  '/run/secrets',
];

afterAll(removeRunContainers);

async function readDelivered(
  container: { readFile: (path: string) => Promise<string> },
  path = '/run/secrets/db_password',
) {
  return waitFor(`the secret file ${path} in the container`, async () => {
    const content = await container.readFile(path);
    return content.length > 0 ? content : undefined;
  });
}

describe('a secret from the local vault reaches a tmpfs file in a container', () => {
  it('delivers to a container started while the agent runs, and leaks the value nowhere', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    const stored = await workspace.cli(['secret', 'set', 'app/db/password'], `${canary}\n`);
    expect(stored).toMatchObject({ code: 0 });
    expect((await workspace.cli(['secret', 'list'])).stdout.trim()).toBe('app/db/password');

    await using agent = startAgent(workspace.env);
    await agent.waitForLog('agent ready');
    const startedAt = Math.floor(Date.now() / 1000) - 1;

    await using container = await runContainer(SECRET_LABELS);
    expect(await readDelivered(container)).toBe(canary);
    expect(await container.exec('stat', '-L', '-c', '%a %u', '/run/secrets/db_password')).toBe(
      '400 0',
    );

    expect(await agent.stop()).toBe(0);
    expect(agent.lines().some((line) => line.msg === 'secrets delivered')).toBe(true);
    expect(agent.lines().some((line) => line.msg === 'agent stopped')).toBe(true);

    // Nowhere else: the agent's output, the CLI's output, the container's labels and
    // configuration, the engine's event stream (exec command lines), and host disk.
    expect(agent.output).not.toContain(canary);
    expect(stored.stdout + stored.stderr).not.toContain(canary);
    expect(await docker('inspect', container.id)).not.toContain(canary);
    const events = await docker(
      'events',
      '--since',
      String(startedAt),
      '--until',
      String(Math.floor(Date.now() / 1000) + 1),
      '--filter',
      `container=${container.id}`,
      '--format',
      '{{json .}}',
    );
    expect(events).toContain('exec_create');
    expect(events).not.toContain(canary);
    const dockerRoot = await docker('info', '--format', '{{.DockerRootDir}}');
    expect(
      await filesContaining(canary, [workspace.home, join(import.meta.dirname, '..'), dockerRoot]),
    ).toEqual([]);
  });

  it('delivers to a container that was already running when the agent started', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/db/password'], canary)).code).toBe(0);

    await using container = await runContainer(SECRET_LABELS);
    await using agent = startAgent(workspace.env);
    expect(await readDelivered(container)).toBe(canary);
    expect(await agent.stop()).toBe(0);
    expect(agent.output).not.toContain(canary);
  });

  it('delivers to a non-root container as its own user, and reports a missing secret by reference', async () => {
    const canary = `canary-${randomUUID()}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/api/token'], canary)).code).toBe(0);

    await using agent = startAgent(workspace.env);
    await agent.waitForLog('agent ready');
    await using container = await runContainer([
      '--user',
      '1000:1000',
      '--label',
      'dso.enable=true',
      '--label',
      'dso.file.token=dsofile://app/api/token',
      '--tmpfs',
      '/run/secrets:uid=1000,gid=1000',
    ]);
    const content = await waitFor(
      'the token file',
      async () => (await container.exec('cat', '/run/secrets/token')) || undefined,
    );
    expect(content).toBe(canary);
    expect(await container.exec('stat', '-L', '-c', '%a %u:%g', '/run/secrets/token')).toBe(
      '400 1000:1000',
    );

    await using missing = await runContainer([
      '--label',
      'dso.enable=true',
      '--label',
      'dso.file.nope=dsofile://app/does-not-exist',
      '--tmpfs',
      '/run/secrets',
    ]);
    const failure = await agent.waitForLog('secrets not delivered');
    expect(failure.containerId).toBe(missing.id.slice(0, 12));
    expect(JSON.stringify(failure)).toContain('app/does-not-exist');
    expect(await agent.stop()).toBe(0);
    expect(agent.output).not.toContain(canary);
  });
});
