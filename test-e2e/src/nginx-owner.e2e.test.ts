/**
 * The README's worked example of a server whose workers run as another user, for real: Debian's
 * nginx (master root, workers www-data, uid and gid 33) in an image `tools/nginx-image.sh`
 * builds, run with the README's own `docker run` arguments (read from README.md, so the example
 * is what is tested) on a private engine, with the built agent delivering the `htpasswd` file
 * nginx's `auth_basic_user_file` names. With `dso.owner=0:33 dso.mode=0440` nginx answers 200;
 * with the default (0400, the container's user) every worker gets "Permission denied" and
 * answers 500. The engine has no bridge, so nginx is asked from inside its container (busybox
 * wget through `docker exec`).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { startPrivateEngine } from '../../packages/docker-runtime/src/test-support/private-engine.js';
import {
  agentEnv,
  createWorkspace,
  removeRunContainers,
  runCommand,
  runContainer,
  startAgent,
  trackLeftovers,
  waitFor,
} from './harness.js';

const execFileAsync = promisify(execFile);
const ROOT = join(import.meta.dirname, '../..');
const leftovers = trackLeftovers();
afterAll(removeRunContainers);

/**
 * The README's `docker run` for the nginx example, as arguments: the lines between
 * `--name web` and the image, split on blanks (the example quotes nothing).
 */
async function readmeRunArguments(): Promise<string[]> {
  const readme = await readFile(join(ROOT, 'README.md'), 'utf8');
  const block = /```sh\n(docker run -d --name web \\\n[\s\S]*?)\n```/.exec(readme)?.[1];
  if (block === undefined) throw new Error('README.md has no `docker run -d --name web` example');
  const words = block.replace(/\\\n/g, ' ').split(/\s+/).filter(Boolean);
  expect(words.slice(0, 5)).toEqual(['docker', 'run', '-d', '--name', 'web']);
  expect(words.at(-1)).toBe('my-nginx-image');
  return words.slice(5, -1);
}

/** The README's arguments without one `--label <label>` pair. */
function withoutLabel(args: string[], label: string): string[] {
  const index = args.findIndex((arg, at) => arg === label && args[at - 1] === '--label');
  expect(index).toBeGreaterThan(0);
  return [...args.slice(0, index - 1), ...args.slice(index + 1)];
}

describe("the README's nginx example (dso.owner=0:33 dso.mode=0440)", () => {
  it("serves nginx's workers the htpasswd file with the README's labels, and gives HTTP 500 with the default", async () => {
    const image = (await execFileAsync('bash', [join(ROOT, 'tools/nginx-image.sh')])).stdout
      .trim()
      .split('\n')
      .at(-1)!;
    const canary = `canary${randomUUID().replaceAll('-', '')}`;
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    // nginx reads `{PLAIN}` passwords in an htpasswd file.
    const set = await workspace.cli(['secret', 'set', 'web/htpasswd'], `alice:{PLAIN}${canary}\n`);
    expect(set.code).toBe(0);
    await writeFile(join(workspace.home, 'dso.yaml'), 'volumes: { enabled: false }\n');
    const engine = await startPrivateEngine();
    leftovers.engines.add(engine);
    // No registry: the image goes from the shared engine to the private one.
    const loaded = await runCommand('sh', [
      '-c',
      `docker save "$0" | docker -H "$1" load`,
      image,
      engine.host,
    ]);
    expect(loaded.code, loaded.stderr).toBe(0);
    const { env } = await agentEnv(workspace, { DOCKER_HOST: engine.host });
    const agent = startAgent(env);
    leftovers.agents.add(agent);
    try {
      await agent.waitForLog('agent ready');
      const args = await readmeRunArguments();
      expect(args).toEqual(
        expect.arrayContaining(['dso.owner=0:33', 'dso.mode=0440', '--read-only']),
      );
      const run = (runArgs: string[]) => runContainer(runArgs, [], { host: engine.host, image });
      await using readme = await run(args);
      await using plain = await run(
        withoutLabel(withoutLabel(args, 'dso.owner=0:33'), 'dso.mode=0440'),
      );
      // A page from nginx inside the container, with the password the file holds.
      const get = (id: string, password = canary) =>
        runCommand('docker', [
          '-H',
          engine.host,
          'exec',
          id,
          'wget',
          '-q',
          '-O',
          '-',
          `http://alice:${password}@127.0.0.1:8080/`,
        ]);
      for (const container of [readme, plain]) {
        await waitFor('the delivered htpasswd file', async () =>
          (await container.readFile('/run/secrets/htpasswd').catch(() => '')).includes(canary)
            ? true
            : undefined,
        );
      }
      expect(await readme.exec('stat', '-L', '-c', '%u:%g %a', '/run/secrets/htpasswd')).toBe(
        '0:33 440',
      );
      expect(await plain.exec('stat', '-L', '-c', '%u:%g %a', '/run/secrets/htpasswd')).toBe(
        '0:0 400',
      );

      const served = await waitFor('nginx to answer', async () => {
        const answer = await get(readme.id);
        return answer.code === 0 ? answer : undefined;
      });
      expect(served.stdout).toBe('welcome\n');
      // The file is what decides: a wrong password is refused (401), not let through.
      expect((await get(readme.id, 'wrong')).stderr).toContain('401 Unauthorized');

      const refused = await waitFor('nginx to refuse', async () => {
        const answer = await get(plain.id);
        return /HTTP\/1\.1 \d+/.test(answer.stderr) ? answer : undefined;
      });
      expect(refused.code).not.toBe(0);
      expect(refused.stderr).toContain('500 Internal Server Error');
      const logs = await runCommand('docker', ['-H', engine.host, 'logs', plain.id]);
      expect(logs.stderr).toMatch(
        /open\(\) "\/run\/secrets\/htpasswd" failed \(13: Permission denied\)/,
      );
      // The workers are www-data, the master root: the arrangement the README describes.
      expect(await plain.exec('ps', '-o', 'user,args')).toMatch(/www-data +nginx: worker/);

      expect(agent.output).not.toContain(canary);
    } finally {
      await agent[Symbol.asyncDispose]();
      leftovers.agents.delete(agent);
    }
  });
});
