/**
 * The host path against a second container that can write the folder: the adversarial run's
 * attack. Container A bind-mounts its secrets folder read-only and gets its files there; then
 * container B, with a WRITABLE mount of the same host folder, races in a tight loop replacing
 * the folder's `..dso_*` and `..data` entries with symlinks to a victim folder on the host; then
 * the secret rotates. The victim must stay intact (files, modes), the delivery to A must be
 * refused (`DSO_AGENT_HOST_PATH_WRITABLE`, naming B) and audited, and nothing logged as a
 * success. A second test: a container binding another's folder read-only is refused, naming the
 * owner. Both on a private engine, so the agent manages only these containers.
 */
import { randomUUID } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  createWorkspace,
  dockerOn,
  readAuditTrail,
  removeContainers,
  runCommand,
  runContainer,
  runContainerIds,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const leftovers = trackLeftovers();

/** A host folder with files and modes of its own: what the attacker's links point at. */
async function plantVictim(): Promise<{ path: string; state: () => Promise<string[]> }> {
  const path = `/tmp/dso-e2e-victim-${randomUUID()}`;
  leftovers.paths.add(path);
  await mkdir(join(path, 'sub'), { recursive: true });
  await writeFile(join(path, 'keep'), 'victim data', { mode: 0o644 });
  await writeFile(join(path, 'sub', 'deep'), 'deep data', { mode: 0o640 });
  await chmod(path, 0o755);
  const state = async () => {
    const out: string[] = [];
    const walk = async (at: string) => {
      const stats = await lstat(at);
      out.push(`${at} ${(stats.mode & 0o7777).toString(8)} ${stats.uid}:${stats.gid}`);
      if (stats.isDirectory()) {
        for (const name of (await readdir(at)).sort()) await walk(join(at, name));
      } else {
        out.push(await readFile(at, 'utf8'));
      }
    };
    await walk(path);
    return out;
  };
  return { path, state };
}

/** `docker run -d` on the private engine, labelled for this run's cleanup; returns the id. */
async function run(host: string, name: string, args: string[], command: string[]) {
  return (await runContainer(args, command, { host, name })).id;
}

/** A private engine, a workspace with `app/db`, and the agent on it with the host path at `root`. */
async function arrange(canary: string) {
  const engine = await startPrivateEngine();
  leftovers.engines.add(engine);
  const workspace = await createWorkspace();
  leftovers.workspaces.add(workspace);
  expect((await workspace.cli(['init'])).code).toBe(0);
  expect(await workspace.cli(['secret', 'set', 'app/db'], canary)).toMatchObject({ code: 0 });
  // The workspace's own host-path root (DSO_HOST_PATH_ROOT, on /dev/shm), removed with it.
  const root = workspace.hostPathRoot;
  const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
  const agent = startAgent(env);
  leftovers.agents.add(agent);
  await agent.waitForLog('agent ready');
  // The agent made the root 0700 and root-owned: no other host user reaches a folder in it.
  const rootStats = await lstat(root);
  expect(rootStats.mode & 0o777).toBe(0o700);
  expect(rootStats.uid).toBe(0);
  const cat = async (id: string) =>
    (await runCommand('docker', ['-H', engine.host, 'exec', id, 'cat', '/run/secrets/db'])).stdout;
  return { engine, workspace, root, agent, cat };
}

describe('the host path against a container that can write the folder', () => {
  it('refuses and audits the rotation while a writable binder races symlinks to a victim folder, which stays intact', async () => {
    const canary = `canary-${randomUUID()}`;
    const rotated = `rotated-${randomUUID()}`;
    const victim = await plantVictim();
    const victimBefore = await victim.state();
    const { engine, workspace, root, agent, cat } = await arrange(canary);
    try {
      const folder = join(root, 'web');
      await mkdir(folder, { recursive: true });
      const owner = await run(
        engine.host,
        `dso-test-owner-${randomUUID().slice(0, 8)}`,
        [
          '--label',
          'dso.enable=true',
          '--label',
          'dso.file.db=dsofile://app/db',
          '--mount',
          `type=bind,source=${folder},target=/run/secrets,readonly`,
        ],
        ['sleep', '600'],
      );
      await waitFor('the owner’s file', async () =>
        (await cat(owner)) === canary ? true : undefined,
      );
      // The attacker: no DSO label, the same folder writable, swapping every DSO entry for a
      // symlink to the victim as fast as it can (an older version directory included, which
      // the agent's clean-up removes after a rotation).
      const attackerName = `dso-test-attacker-${randomUUID().slice(0, 8)}`;
      const attacker = await run(
        engine.host,
        attackerName,
        ['-v', `${folder}:/x`],
        [
          'sh',
          '-c',
          `while true; do for d in /x/..dso_* /x/..tmp_*; do [ -L "$d" ] || { rm -rf "$d"; ln -s ${victim.path} "$d"; }; done; ln -sfn ${victim.path} /x/..data 2>/dev/null; ln -s ${victim.path} /x/..dso_planted 2>/dev/null; done`,
        ],
      );
      await waitFor('the attacker’s first symlink', async () =>
        (await lstat(join(folder, '..dso_planted')).catch(() => undefined))?.isSymbolicLink()
          ? true
          : undefined,
      );
      // The agent reacts to the attacker's start (it has no DSO label): the owner is refused,
      // naming it, before any rotation.
      const refusal = await waitFor('the refusal in the audit trail', async () =>
        (await readAuditTrail(workspace.home)).find(
          (line) => line.outcome === 'refused' && line.code === 'DSO_AGENT_HOST_PATH_WRITABLE',
        ),
      );
      expect(refusal.containerId).toBe(owner);
      expect(String(refusal.reason)).toContain(attackerName);
      expect(String(refusal.reason)).toContain('read-only');
      // Then the rotation, with the attacker still racing: refused again, nothing written.
      const before = agent.lines().length;
      expect(await workspace.cli(['secret', 'set', 'app/db'], rotated)).toMatchObject({ code: 0 });
      expect((await workspace.cli(['rotate'])).code).toBe(0);
      // The attacker keeps racing a while longer: nothing the agent does reaches the victim.
      await waitFor('the refusal in the agent log', async () =>
        agent
          .lines()
          .slice(before)
          .find((line) => line.code === 'DSO_AGENT_HOST_PATH_WRITABLE'),
      );
      await dockerOn(engine.host, 'rm', '-f', attacker);
      expect(await victim.state()).toEqual(victimBefore);
      // Nothing after the rotation was logged or audited as a success, and no value anywhere.
      const after = agent.lines().slice(before);
      expect(after.filter((line) => line.msg === 'secrets delivered')).toEqual([]);
      const audit = await readAuditTrail(workspace.home);
      expect(audit.filter((line) => line.outcome === 'ok' && line.version === '2')).toEqual([]);
      expect(await cat(owner)).not.toBe(rotated);
      expect(agent.output).not.toContain(canary);
      expect(agent.output).not.toContain(rotated);
      expect(JSON.stringify(audit)).not.toContain(rotated);
    } finally {
      await agent.stop();
      await removeContainers(await runContainerIds({ host: engine.host }), { host: engine.host });
      await engine.destroy();
      leftovers.engines.delete(engine);
    }
    expect(await victim.state()).toEqual(victimBefore);
  });

  it('refuses a second container binding another’s folder, naming the owner, in status and the audit trail', async () => {
    const canary = `canary-${randomUUID()}`;
    const { engine, workspace, root, agent, cat } = await arrange(canary);
    try {
      const folder = join(root, 'api');
      await mkdir(folder, { recursive: true });
      const labels = ['--label', 'dso.enable=true', '--label', 'dso.file.db=dsofile://app/db'];
      const mount = ['--mount', `type=bind,source=${folder},target=/run/secrets,readonly`];
      const ownerName = `dso-test-owner-${randomUUID().slice(0, 8)}`;
      const owner = await run(engine.host, ownerName, [...labels, ...mount], ['sleep', '600']);
      await waitFor('the owner’s file', async () =>
        (await cat(owner)) === canary ? true : undefined,
      );
      const second = await run(
        engine.host,
        `dso-test-second-${randomUUID().slice(0, 8)}`,
        [...labels, ...mount],
        ['sleep', '600'],
      );
      const refusal = await waitFor('the refusal in the audit trail', async () =>
        (await readAuditTrail(workspace.home)).find(
          (line) => line.outcome === 'refused' && line.code === 'DSO_AGENT_HOST_PATH_SHARED',
        ),
      );
      expect(refusal.containerId).toBe(second);
      expect(String(refusal.reason)).toContain(ownerName);
      const status = await workspace.cli(['status', '--json']);
      expect(status.code).toBe(0);
      expect(status.stdout).toContain('DSO_AGENT_HOST_PATH_SHARED');
      expect(status.stdout).toContain(ownerName);
      // The owner keeps its files.
      expect(await cat(owner)).toBe(canary);
      expect(agent.output).not.toContain(canary);
    } finally {
      await agent.stop();
      await removeContainers(await runContainerIds({ host: engine.host }), { host: engine.host });
      await engine.destroy();
      leftovers.engines.delete(engine);
    }
  });
});
