import { describe, expect, it } from 'vitest';
import type { EngineContext } from './engine-context.js';
import { toEngineError } from './engine-errors.js';
import { isDockerRuntimeError } from './errors.js';
import {
  inspectSwarmService,
  SWARM_DEFAULT_RESTART_DELAY_MS,
  swarmTaskOf,
  toSwarmService,
} from './swarm.js';

const taskLabels = {
  'com.docker.swarm.node.id': 'n1',
  'com.docker.swarm.service.id': 'svc1',
  'com.docker.swarm.service.name': 'web.api',
  'com.docker.swarm.task': '',
  'com.docker.swarm.task.id': 'task9',
  'com.docker.swarm.task.name': 'web.api.2.task9',
};

describe('swarmTaskOf', () => {
  it('reads the task, its service and its slot from the executor’s labels', () => {
    expect(swarmTaskOf(taskLabels)).toEqual({
      taskId: 'task9',
      taskName: 'web.api.2.task9',
      serviceId: 'svc1',
      serviceName: 'web.api',
      slot: 'web.api.2',
    });
  });

  it('is undefined for a container that is no task, or whose task labels are partial', () => {
    expect(swarmTaskOf({ 'dso.enable': 'true' })).toBeUndefined();
    expect(swarmTaskOf({ ...taskLabels, 'com.docker.swarm.service.id': '' })).toBeUndefined();
  });
});

describe('toSwarmService', () => {
  it('reads the restart policy, delay in ms from ns', () => {
    expect(
      toSwarmService({
        ID: 'svc1',
        Spec: {
          Name: 'web',
          TaskTemplate: {
            RestartPolicy: { Condition: 'on-failure', Delay: 1_000_000_000, MaxAttempts: 3 },
          },
        },
      }),
    ).toEqual({
      id: 'svc1',
      name: 'web',
      restart: { condition: 'on-failure', delayMs: 1_000, maxAttempts: 3 },
    });
  });

  it('gives a spec without a restart policy Swarm’s defaults (any, 5 s, unlimited)', () => {
    expect(toSwarmService({ ID: 'svc1', Spec: { Name: 'web', TaskTemplate: {} } }).restart).toEqual(
      { condition: 'any', delayMs: SWARM_DEFAULT_RESTART_DELAY_MS, maxAttempts: 0 },
    );
  });
});

/** A context whose engine answers the service inspect with `answer` (or throws it). */
function contextAnswering(answer: unknown, status?: number) {
  const asked: string[] = [];
  const context = {
    host: 'unix:///fake.sock',
    assertOpen: () => undefined,
    docker: {
      getService: (id: string) => ({
        inspect: async () => {
          asked.push(id);
          if (status !== undefined) {
            throw Object.assign(new Error(`(HTTP code ${status})`), { statusCode: status });
          }
          return answer;
        },
      }),
    },
    request: async (
      operation: string,
      _caller: AbortSignal | undefined,
      containerId: string | undefined,
      call: (signal: AbortSignal) => Promise<unknown>,
    ) => {
      try {
        return await call(new AbortController().signal);
      } catch (error) {
        throw toEngineError(error, { operation, endpoint: 'unix:///fake.sock', containerId });
      }
    },
  } as unknown as EngineContext;
  return { context, asked };
}

describe('inspectSwarmService', () => {
  it('answers the service’s policy on a manager node', async () => {
    const { context, asked } = contextAnswering({ ID: 'svc1', Spec: { Name: 'web' } });
    expect(await inspectSwarmService(context, 'svc1', {})).toMatchObject({
      name: 'web',
      restart: { condition: 'any' },
    });
    expect(asked).toEqual(['svc1']);
  });

  it('is undefined on a worker node (503) and for a service gone (404)', async () => {
    expect(await inspectSwarmService(contextAnswering(undefined, 503).context, 's', {})).toBe(
      undefined,
    );
    expect(await inspectSwarmService(contextAnswering(undefined, 404).context, 's', {})).toBe(
      undefined,
    );
  });

  it('rejects another engine failure with its code, and an id that is no id before asking', async () => {
    const failing = await inspectSwarmService(
      contextAnswering(undefined, 500).context,
      's',
      {},
    ).catch((error: unknown) => error);
    expect(isDockerRuntimeError(failing) && failing.code).toBe('DSO_DOCKER_ENGINE_ERROR');
    const { context, asked } = contextAnswering({});
    const invalid = await inspectSwarmService(context, '../containers', {}).catch(
      (error: unknown) => error,
    );
    expect(isDockerRuntimeError(invalid) && invalid.code).toBe('DSO_DOCKER_INVALID_REQUEST');
    expect(asked).toEqual([]);
  });
});
