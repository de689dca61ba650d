/**
 * The application never starts before its secret files exist: its command is wrapped in
 * `waitForSecretsCommand` (a wait for `<target>/..data` in the image's own sh, then `exec`), the
 * built agent writes the files when it sees the start, and the application reads its file as
 * its very first action. 100 containers out of 100 must read the right content.
 */
import { createHash, randomUUID } from 'node:crypto';
import { waitForSecretsCommand } from '@dso/core';
import { afterAll, describe, expect, it } from 'vitest';
import {
  createWorkspace,
  docker,
  privateEngineForFile,
  RUN_ID,
  removeRunContainers,
  startAgent,
  TEST_IMAGE,
  TEST_LABEL,
} from './harness.js';

// The whole file on an engine of its own (DOCKER_HOST), so it runs beside other files.
privateEngineForFile();

afterAll(removeRunContainers);

const RUNS = 100;
const AT_ONCE = 10;

describe('files before start', () => {
  it(`gives the application its file before its first instruction, ${RUNS} runs out of ${RUNS}`, async () => {
    const canary = `canary-${randomUUID()}`;
    const expected = createHash('sha256').update(canary).digest('hex');
    await using workspace = await createWorkspace();
    expect((await workspace.cli(['init'])).code).toBe(0);
    expect((await workspace.cli(['secret', 'set', 'app/db'], canary)).code).toBe(0);
    await using agent = startAgent(workspace.env);
    await agent.waitForLog('agent ready');

    // The application's first action: read the file (its hash goes to the log, never the value).
    const [entrypoint, ...args] = waitForSecretsCommand('/run/secrets', [
      'sha256sum',
      '/run/secrets/db',
    ]);
    const runOnce = async (wrapped = true): Promise<string> => {
      const name = `dso-test-${randomUUID()}`;
      const id = await docker(
        'run',
        '-d',
        '--name',
        name,
        '--network',
        'none',
        '--label',
        `${TEST_LABEL}=${RUN_ID}`,
        '--label',
        'dso.enable=true',
        '--label',
        'dso.file.db=dsofile://app/db',
        '--tmpfs',
        '/run/secrets',
        ...(wrapped
          ? ['--entrypoint', entrypoint as string, TEST_IMAGE, ...args]
          : [TEST_IMAGE, 'sha256sum', '/run/secrets/db']),
      );
      try {
        const exitCode = await docker('wait', id);
        const logs = await docker('logs', id);
        return `${exitCode} ${logs.split(' ')[0]}`;
      } finally {
        await docker('rm', '-f', id).catch(() => undefined);
      }
    };

    const outcomes: string[] = [];
    for (let batch = 0; batch < RUNS / AT_ONCE; batch += 1) {
      outcomes.push(...(await Promise.all(Array.from({ length: AT_ONCE }, () => runOnce()))));
    }
    // The control: the same application without the wait starts before its file exists.
    const unwrapped = await Promise.all(Array.from({ length: AT_ONCE }, () => runOnce(false)));
    expect(unwrapped.filter((outcome) => outcome !== `0 ${expected}`).length).toBeGreaterThan(0);
    expect(outcomes).toHaveLength(RUNS);
    expect(outcomes.filter((outcome) => outcome !== `0 ${expected}`)).toEqual([]);
    expect(await agent.stop()).toBe(0);
    expect(agent.output).not.toContain(canary);
  }, 300_000);
});
