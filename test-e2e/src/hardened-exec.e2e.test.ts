/**
 * The exec path on hardened containers, with the built agent on a private engine (so it manages
 * only these containers): `--cap-drop ALL --user 1000:1000` gets its files (written as the
 * owner, no chown needed); a container the exec cannot write into gets ONE clear failure in
 * `dso status`, with what is missing and what works instead, and is not retried (before, a
 * tmpfs root could not write was `DSO_DOCKER_TARGET_BUSY` after 10 s, retried without end); a
 * `..lock` the container plants is `DSO_DOCKER_TARGET_TAMPERED`, at once and once.
 */
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  createWorkspace,
  removeContainers,
  runCommand,
  runContainer,
  runContainerIds,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const leftovers = trackLeftovers();

const SECRET = ['--label', 'dso.enable=true', '--label', 'dso.file.db=dsofile://app/db'];

/** `docker run -d` of `sleep 600` on the private engine, labelled for this run's cleanup; returns the id. */
async function run(host: string, args: string[]) {
  return (await runContainer(args, ['sleep', '600'], { host })).id;
}

describe('the exec path on hardened containers', () => {
  it('delivers to --cap-drop ALL, and reports what cannot pass once, with the fix, never retried', async () => {
    const canary = `canary-${randomUUID()}`;
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    const workspace = await createWorkspace();
    leftovers.paths.add(workspace.home);
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect(await workspace.cli(['secret', 'set', 'app/db'], canary)).toMatchObject({ code: 0 });
    // Exec only: no volume driver socket, no host path.
    await writeFile(
      join(workspace.home, 'dso.yaml'),
      'volumes: { enabled: false }\nhostPath: { enabled: false }\n',
    );
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    const cat = async (id: string) =>
      (await runCommand('docker', ['-H', engine.host, 'exec', id, 'cat', '/run/secrets/db']))
        .stdout;
    const failuresOf = (id: string) =>
      agent
        .lines()
        .filter(
          (line) => line.msg === 'secrets not delivered' && line.containerId === id.slice(0, 12),
        );
    try {
      await agent.waitForLog('agent ready');

      // No CAP_CHOWN, a non-root user: the files are written by their owner.
      const hardened = await run(engine.host, [
        ...SECRET,
        '--cap-drop',
        'ALL',
        '--user',
        '1000:1000',
        '--read-only',
        '--tmpfs',
        '/run/secrets',
      ]);
      await waitFor('the hardened container’s file', async () =>
        (await cat(hardened)) === canary ? true : undefined,
      );

      // Files for root, in a tmpfs only uid 1000 may write, and no CAP_DAC_OVERRIDE.
      const unwritable = await run(engine.host, [
        ...SECRET,
        '--label',
        'dso.owner=0:0',
        '--cap-drop',
        'ALL',
        '--user',
        '1000:1000',
        '--tmpfs',
        '/run/secrets:uid=1000,mode=0700',
      ]);
      const status = await waitFor('the failure in status', async () => {
        const result = await workspace.cli(['status']);
        return result.stdout.includes('CAP_DAC_OVERRIDE') ? result : undefined;
      });
      expect(status.code).toBe(0);
      expect(status.stdout).toContain('DSO_DOCKER_TARGET_NOT_WRITABLE');
      expect(status.stdout).toContain('volume-driver=dso');
      // Given up at once: one attempt, said so, no retry scheduled.
      await waitFor('the give-up without retry', async () =>
        agent
          .lines()
          .find(
            (line) =>
              line.msg ===
                'secrets delivery not retried: it fails until the container or its secrets change' &&
              line.containerId === unwritable.slice(0, 12),
          ),
      );
      expect(failuresOf(unwritable)).toHaveLength(1);
      expect(failuresOf(unwritable)[0]).toMatchObject({
        code: 'DSO_DOCKER_TARGET_NOT_WRITABLE',
        retry: false,
        attempt: 1,
      });

      // A later container is delivered meanwhile; the failed one was not tried again.
      const later = await run(engine.host, [...SECRET, '--tmpfs', '/run/secrets']);
      await waitFor('the later container’s file', async () =>
        (await cat(later)) === canary ? true : undefined,
      );
      expect(failuresOf(unwritable)).toHaveLength(1);

      // A ..lock the container plants (held by a live process of its own) is tampering, told at
      // once; it was DSO_DOCKER_TARGET_BUSY after 10 s, retried without end.
      const plant = await runCommand('docker', [
        '-H',
        engine.host,
        'exec',
        later,
        'sh',
        '-c',
        'mkdir /run/secrets/..lock && (sleep 600 >/dev/null 2>&1 & echo "$! 1_x" > /run/secrets/..lock/pid)',
      ]);
      expect(plant.code).toBe(0);
      const next = `canary-${randomUUID()}`;
      expect(await workspace.cli(['secret', 'set', 'app/db'], next)).toMatchObject({ code: 0 });
      await workspace.cli(['rotate', later]);
      const tampered = await waitFor('the tampering in status', async () => {
        const result = await workspace.cli(['status']);
        return result.stdout.includes('DSO_DOCKER_TARGET_TAMPERED') ? result.stdout : undefined;
      });
      expect(tampered).toContain('/run/secrets/..lock');
      expect(tampered).toContain('not a dso write');
      // Once per change (the new version, the rotate: one or two attempts), never retried.
      expect(failuresOf(later).length).toBeGreaterThanOrEqual(1);
      for (const failure of failuresOf(later)) {
        expect(failure).toMatchObject({ code: 'DSO_DOCKER_TARGET_TAMPERED', retry: false });
      }
      expect(await cat(later)).toBe(canary);
      expect(agent.output).not.toContain(next);
      expect(agent.output).not.toContain('secrets delivery gave up');
      expect(agent.output).not.toContain(canary);
    } finally {
      await agent.stop();
      leftovers.agents.delete(agent);
      await removeContainers(await runContainerIds({ host: engine.host }), { host: engine.host });
      await engine.destroy();
      leftovers.engines.delete(engine);
    }
  }, 180_000);
});
