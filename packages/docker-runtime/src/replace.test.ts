import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { isDockerRuntimeError } from './errors.js';
import {
  applyEnvChanges,
  createContainer,
  DEFAULT_REPLACE_HEALTH_TIMEOUT_MS,
  DEFAULT_REPLACE_RUNNING_FOR_MS,
  DEFAULT_REPLACE_STOP_TIMEOUT_MS,
  decideRecovery,
  hasHealthcheck,
  planReplacement,
  REPLACE_LABELS,
  replacementNames,
  resolveReplaceRequest,
} from './replace.js';

const OLD_ID = 'a1b2c3d4e5f6'.padEnd(64, '0');
const OLD_SHORT = OLD_ID.slice(0, 12);
const IMAGE_ID = `sha256:${'f'.repeat(64)}`;

/** An inspect of a running container, as Docker 20.10 reports one; `patch` changes parts. */
function inspect(
  patch: {
    name?: string;
    config?: Record<string, unknown>;
    hostConfig?: Record<string, unknown>;
    mounts?: unknown[];
    networks?: Record<string, unknown>;
  } = {},
): Docker.ContainerInspectInfo {
  return {
    Id: OLD_ID,
    Name: `/${patch.name ?? 'web'}`,
    Image: IMAGE_ID,
    State: { Status: 'running', Running: true },
    RestartCount: 0,
    Config: {
      Hostname: OLD_SHORT,
      Domainname: '',
      User: '1000:1000',
      Env: ['PATH=/bin', 'A=1', 'B=2'],
      Cmd: ['sleep', '3600'],
      Image: 'app:1',
      Volumes: null,
      WorkingDir: '/srv',
      Entrypoint: null,
      Labels: { 'dso.enable': 'true' },
      StopSignal: 'SIGTERM',
      ...patch.config,
    },
    HostConfig: {
      Binds: null,
      ContainerIDFile: '',
      NetworkMode: 'none',
      PortBindings: {},
      RestartPolicy: { Name: 'no', MaximumRetryCount: 0 },
      Tmpfs: { '/run/secrets': 'mode=0700' },
      Mounts: null,
      ...patch.hostConfig,
    },
    Mounts: patch.mounts ?? [],
    NetworkSettings: {
      Networks: patch.networks ?? { none: { IPAMConfig: null, Aliases: null, NetworkID: 'n0' } },
    },
  } as unknown as Docker.ContainerInspectInfo;
}

function plan(old = inspect(), env: Array<[string, string | null]> = [], dependents?: string[]) {
  return planReplacement(old, {
    env,
    image: 'app:1',
    ...(dependents === undefined ? {} : { networkDependents: dependents }),
  });
}

function planError(old: Docker.ContainerInspectInfo, dependents?: string[]) {
  try {
    plan(old, [], dependents);
  } catch (error) {
    if (!isDockerRuntimeError(error)) throw error;
    return error;
  }
  throw new Error('planReplacement did not refuse');
}

describe('applyEnvChanges', () => {
  it('replaces a variable in place, removes unset ones and appends new ones in order', () => {
    expect(
      applyEnvChanges(
        ['PATH=/bin', 'A=1', 'B=2', 'C=3'],
        [
          ['Z', 'new'],
          ['B', 'two'],
          ['A', null],
          ['Y', 'y'],
        ],
      ),
    ).toEqual(['PATH=/bin', 'B=two', 'C=3', 'Z=new', 'Y=y']);
  });

  it('keeps a changed variable at its first place and drops its later duplicates', () => {
    expect(applyEnvChanges(['A=1', 'B=2', 'A=3'], [['A', 'x']])).toEqual(['A=x', 'B=2']);
  });

  it('keeps unchanged duplicates and entries without "=" as they are', () => {
    expect(applyEnvChanges(['A=1', 'A=2', 'BARE'], [['C', '']])).toEqual([
      'A=1',
      'A=2',
      'BARE',
      'C=',
    ]);
    expect(applyEnvChanges(['BARE', 'A=1'], [['BARE', null]])).toEqual(['A=1']);
  });

  it('keeps "=" inside values and starts from no environment at all', () => {
    expect(applyEnvChanges(['URL=a=b'], [['URL', 'c=d=e']])).toEqual(['URL=c=d=e']);
    expect(applyEnvChanges(null, [['A', '1']])).toEqual(['A=1']);
  });

  it('ignores the removal of a variable that is not there', () => {
    expect(applyEnvChanges(['A=1'], [['B', null]])).toEqual(['A=1']);
  });
});

describe('resolveReplaceRequest', () => {
  it('applies the defaults', () => {
    const resolved = resolveReplaceRequest({});
    expect(resolved).toMatchObject({
      env: [],
      healthTimeoutMs: DEFAULT_REPLACE_HEALTH_TIMEOUT_MS,
      runningForMs: DEFAULT_REPLACE_RUNNING_FOR_MS,
      stopTimeoutMs: DEFAULT_REPLACE_STOP_TIMEOUT_MS,
      logTailBytes: 4096,
    });
  });

  it.each([
    [{ env: { '': 'v' } }, 'env'],
    [{ env: { 'A=B': 'v' } }, 'env'],
    [{ env: { 'A\0': 'v' } }, 'env'],
    [{ env: { A: 1 as unknown as string } }, 'env'],
    [{ env: ['A=1'] as unknown as Record<string, string> }, 'env'],
    [{ labels: { 'dso.replace.of': 'x' } }, 'labels'],
    [{ labels: { '': 'x' } }, 'labels'],
    [{ labels: { a: 1 as unknown as string } }, 'labels'],
    [{ health: { timeoutMs: 0 } }, 'health.timeoutMs'],
    [{ health: { runningForMs: -1 } }, 'health.runningForMs'],
    [{ stopTimeoutMs: Number.NaN }, 'stopTimeoutMs'],
    [{ logTailBytes: -1 }, 'logTailBytes'],
    [{ onStarted: 'x' as unknown as () => Promise<void> }, 'onStarted'],
  ])('rejects %j with DSO_DOCKER_INVALID_REQUEST naming %s', (request, field) => {
    expect(() => resolveReplaceRequest(request)).toThrow(
      expect.objectContaining({ code: 'DSO_DOCKER_INVALID_REQUEST', details: { field } }),
    );
  });

  it('names the variable but never its value when a value is invalid', () => {
    const canary = 'canary-7f3a9\0tail';
    try {
      resolveReplaceRequest({ env: { DB_PASSWORD: canary } });
      expect.unreachable();
    } catch (error) {
      expect(String((error as Error).message)).toContain('DB_PASSWORD');
      expect(JSON.stringify(error)).not.toContain('canary-7f3a9');
      expect((error as Error).message).not.toContain('canary-7f3a9');
    }
  });
});

describe('planReplacement', () => {
  it('copies the configuration with the env changes applied, in order', () => {
    const result = plan(inspect(), [
      ['A', 'one'],
      ['B', null],
      ['NEW', 'v'],
    ]);
    expect(result.body).toMatchObject({
      Image: 'app:1',
      Env: ['PATH=/bin', 'A=one', 'NEW=v'],
      Cmd: ['sleep', '3600'],
      User: '1000:1000',
      WorkingDir: '/srv',
      StopSignal: 'SIGTERM',
      HostConfig: {
        NetworkMode: 'none',
        Tmpfs: { '/run/secrets': 'mode=0700' },
        RestartPolicy: { Name: 'no' },
      },
    });
    expect(result.body.NetworkingConfig).toBeUndefined();
    expect(result.extraNetworks).toEqual([]);
    expect(result).toMatchObject({
      name: 'web',
      oldId: OLD_ID,
      nextName: `web-dso-next-${OLD_SHORT}`,
      oldTempName: `web-dso-old-${OLD_SHORT}`,
      generation: 1,
      healthcheck: false,
    });
  });

  it('applies label changes, never to its own dso.replace.* labels', () => {
    const old = inspect({ config: { Labels: { keep: '1', drop: '2', change: '3' } } });
    const result = planReplacement(old, {
      env: [],
      labels: [
        ['drop', null],
        ['change', 'new'],
        ['added', 'a'],
      ],
      image: 'app:1',
    });
    expect(result.body.Labels).toMatchObject({ keep: '1', change: 'new', added: 'a' });
    expect(result.body.Labels).not.toHaveProperty('drop');
  });

  it('does not change the inspect it was given', () => {
    const old = inspect();
    const before = structuredClone(old);
    plan(old, [['A', 'x']]);
    expect(old).toEqual(before);
  });

  it('replaces inherited replace labels, keeps the others and counts generations', () => {
    const old = inspect({
      config: {
        Labels: {
          'dso.enable': 'true',
          [REPLACE_LABELS.of]: 'b'.repeat(64),
          [REPLACE_LABELS.name]: 'web',
          [REPLACE_LABELS.generation]: '4',
          'dso.replace.stray': 'x',
        },
      },
    });
    const result = plan(old);
    expect(result.body.Labels).toEqual({
      'dso.enable': 'true',
      [REPLACE_LABELS.of]: OLD_ID,
      [REPLACE_LABELS.name]: 'web',
      [REPLACE_LABELS.generation]: '5',
    });
    expect(result.generation).toBe(5);
    expect(plan(inspect({ config: { Labels: null } })).body.Labels).toEqual({
      [REPLACE_LABELS.of]: OLD_ID,
      [REPLACE_LABELS.name]: 'web',
      [REPLACE_LABELS.generation]: '1',
    });
  });

  it("drops the engine's default hostname and keeps one that was set", () => {
    expect(plan().body.Hostname).toBeUndefined();
    const named = plan(inspect({ config: { Hostname: 'db-primary', Domainname: 'example' } }));
    expect(named.body).toMatchObject({ Hostname: 'db-primary', Domainname: 'example' });
  });

  it("drops hostname and domain name in another container's network namespace", () => {
    const result = plan(
      inspect({
        config: { Hostname: 'other', Domainname: 'x' },
        hostConfig: { NetworkMode: `container:${'c'.repeat(64)}` },
      }),
    );
    expect(result.body.Hostname).toBeUndefined();
    expect(result.body.Domainname).toBeUndefined();
    expect(result.body.HostConfig?.NetworkMode).toBe(`container:${'c'.repeat(64)}`);
    expect(result.body.NetworkingConfig).toBeUndefined();
  });

  it('drops ContainerIDFile, a client-side setting', () => {
    const result = plan(inspect({ hostConfig: { ContainerIDFile: '/tmp/cid' } }));
    expect(result.body.HostConfig).not.toHaveProperty('ContainerIDFile');
  });

  it('refuses a fixed host port with DSO_DOCKER_REPLACE_FAILED saying to use restart', () => {
    const error = planError(
      inspect({
        hostConfig: {
          PortBindings: {
            '80/tcp': [{ HostIp: '127.0.0.1', HostPort: '8080' }],
            '443/tcp': [{ HostIp: '', HostPort: '' }],
          },
        },
      }),
    );
    expect(error.code).toBe('DSO_DOCKER_REPLACE_FAILED');
    expect(error.details).toMatchObject({
      stage: 'plan',
      reason: 'fixed-host-port',
      ports: ['80/tcp → 127.0.0.1:8080'],
    });
    expect(error.message).toMatch(/fixed host port.*restart/);
  });

  it('accepts ports published on a random host port', () => {
    const result = plan(
      inspect({
        hostConfig: {
          PortBindings: { '80/tcp': [{ HostIp: '', HostPort: '' }], '81/tcp': [{ HostPort: '0' }] },
          PublishAllPorts: true,
        },
      }),
    );
    expect(result.body.HostConfig?.PortBindings).toEqual({
      '80/tcp': [{ HostIp: '', HostPort: '' }],
      '81/tcp': [{ HostPort: '0' }],
    });
  });

  it('refuses a fixed IP, a fixed MAC address, network dependents and swarm tasks', () => {
    expect(
      planError(
        inspect({
          hostConfig: { NetworkMode: 'app' },
          networks: { app: { IPAMConfig: { IPv4Address: '10.0.0.5' }, NetworkID: 'n1' } },
        }),
      ).details,
    ).toMatchObject({ reason: 'fixed-ip', network: 'app' });
    expect(
      planError(inspect({ config: { MacAddress: '02:42:ac:11:00:02' } })).details,
    ).toMatchObject({ reason: 'fixed-mac-address' });
    expect(planError(inspect(), ['sidecar']).details).toMatchObject({
      reason: 'network-dependents',
      dependents: ['sidecar'],
    });
    expect(
      planError(inspect({ config: { Labels: { 'com.docker.swarm.task.id': 't' } } })).details,
    ).toMatchObject({ reason: 'swarm-task' });
  });

  it('keeps the primary network at create, connects the others after, and drops the id alias', () => {
    const result = plan(
      inspect({
        hostConfig: { NetworkMode: 'front' },
        networks: {
          back: {
            Aliases: ['db-client', OLD_SHORT],
            IPAMConfig: { LinkLocalIPs: ['169.254.0.9'] },
            NetworkID: 'n2',
          },
          front: {
            Aliases: ['web', OLD_SHORT],
            Links: ['cache:cache'],
            DriverOpts: { mtu: '1400' },
            IPAMConfig: null,
            NetworkID: 'n1',
          },
        },
      }),
    );
    expect(result.body.NetworkingConfig).toEqual({
      EndpointsConfig: {
        front: { Aliases: ['web'], Links: ['cache:cache'], DriverOpts: { mtu: '1400' } },
      },
    });
    expect(result.extraNetworks).toEqual([
      {
        network: 'back',
        endpoint: { Aliases: ['db-client'], IPAMConfig: { LinkLocalIPs: ['169.254.0.9'] } },
      },
    ]);
  });

  it('treats network mode default as the bridge network', () => {
    const result = plan(
      inspect({
        hostConfig: { NetworkMode: 'default' },
        networks: { bridge: { Aliases: null, NetworkID: 'b' } },
      }),
    );
    expect(result.body.NetworkingConfig).toEqual({ EndpointsConfig: { bridge: {} } });
  });

  it('mounts anonymous volumes by name and leaves named volumes and binds alone', () => {
    const result = plan(
      inspect({
        config: { Volumes: { '/data': {}, '/cache': {}, '/named': {} } },
        hostConfig: {
          Binds: ['/srv/conf:/etc/app:ro', 'shared:/named'],
          Mounts: [
            { Type: 'volume', Target: '/m2' },
            { Type: 'volume', Source: 'logs', Target: '/logs' },
          ],
          Tmpfs: { '/cache': '' },
        },
        mounts: [
          { Type: 'bind', Source: '/srv/conf', Destination: '/etc/app', RW: false },
          { Type: 'volume', Name: 'shared', Destination: '/named', RW: true },
          { Type: 'volume', Name: 'anon-m2', Destination: '/m2', RW: true },
          { Type: 'volume', Name: 'logs', Destination: '/logs', RW: true },
          { Type: 'volume', Name: 'anon-data', Destination: '/data', RW: false },
          { Type: 'volume', Name: 'from-other', Destination: '/other', RW: true },
        ],
      }),
    );
    expect(result.body.HostConfig?.Binds).toEqual(['/srv/conf:/etc/app:ro', 'shared:/named']);
    expect(result.body.HostConfig?.Mounts).toEqual([
      { Type: 'volume', Source: 'anon-m2', Target: '/m2' },
      { Type: 'volume', Source: 'logs', Target: '/logs' },
      { Type: 'volume', Source: 'anon-data', Target: '/data', ReadOnly: true },
    ]);
  });

  it('uses the image it is given and detects the effective healthcheck', () => {
    const healthy = planReplacement(
      inspect({ config: { Healthcheck: { Test: ['CMD-SHELL', 'true'], Interval: 1e8 } } }),
      { env: [], image: IMAGE_ID },
    );
    expect(healthy.body.Image).toBe(IMAGE_ID);
    expect(healthy.healthcheck).toBe(true);
    expect(plan(inspect({ config: { Healthcheck: { Test: ['NONE'] } } })).healthcheck).toBe(false);
    expect(hasHealthcheck(undefined)).toBe(false);
    expect(hasHealthcheck({ Test: [] })).toBe(false);
  });
});

describe('replacementNames', () => {
  it('derives both temporary names from the old id', () => {
    expect(replacementNames('web', OLD_ID)).toEqual({
      next: `web-dso-next-${OLD_SHORT}`,
      old: `web-dso-old-${OLD_SHORT}`,
    });
  });

  it('stays within 255 characters and the engine name alphabet for a long name', () => {
    const names = replacementNames('a'.repeat(300), OLD_ID);
    for (const name of [names.next, names.old]) {
      expect(name.length).toBeLessThanOrEqual(255);
      expect(name).toMatch(/^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/);
      expect(name.endsWith(OLD_SHORT)).toBe(true);
    }
  });
});

describe('decideRecovery', () => {
  const temp = replacementNames('web', OLD_ID);
  const decide = (newName: string, oldName: string | undefined) =>
    decideRecovery({ newName, name: 'web', oldId: OLD_ID, oldName });

  it.each([
    ['swap done, old gone: complete', 'web', undefined, { kind: 'skip' }],
    ['swap done, old left renamed: remove it', 'web', temp.old, { kind: 'remove-old' }],
    [
      'swap done, old renamed by someone else: blocked',
      'web',
      'kept-by-hand',
      { kind: 'blocked', reason: 'old-renamed' },
    ],
    ['new created only: undo', temp.next, 'web', { kind: 'undo', renameOld: false }],
    ['old renamed, new not yet: undo', temp.next, temp.old, { kind: 'undo', renameOld: true }],
    ['old under another name: remove new only', temp.next, 'x', { kind: 'undo', renameOld: false }],
    [
      'old gone, new under its temporary name: finish',
      temp.next,
      undefined,
      { kind: 'rename-new' },
    ],
    ['new renamed by someone: not ours', 'renamed', 'web', { kind: 'skip' }],
    [
      'new is the old side of a newer replacement',
      'web-dso-old-ffffffffffff',
      'x',
      { kind: 'skip' },
    ],
  ])('%s', (_case, newName, oldName, step) => {
    expect(decide(newName, oldName)).toEqual(step);
  });

  it('never removes both: every step that removes one keeps the other', () => {
    for (const newName of ['web', temp.next, 'other']) {
      for (const oldName of [undefined, 'web', temp.old, 'other']) {
        const step = decide(newName, oldName);
        if (step.kind === 'remove-old') expect(newName).toBe('web');
        if (step.kind === 'undo') expect(oldName).toBeDefined();
      }
    }
  });
});

describe('createContainer', () => {
  it('sends the configuration, environment included, in the body only, never in the URL', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'dso-replace-'));
    const socketPath = join(dir, 'engine.sock');
    const seen: Array<{ url: string; body: string }> = [];
    const server = createServer((request, response) => {
      let body = '';
      request.on('data', (chunk: Buffer) => {
        body += chunk.toString();
      });
      request.on('end', () => {
        seen.push({ url: request.url ?? '', body });
        response.writeHead(201, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ Id: 'c'.repeat(64), Warnings: [] }));
      });
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    try {
      const docker = new Docker({ socketPath });
      const id = await createContainer(
        docker,
        'web-dso-next-abc',
        { Image: 'app:1', Env: ['SECRET=canary-value-91'] },
        new AbortController().signal,
      );
      expect(id).toBe('c'.repeat(64));
      expect(seen).toHaveLength(1);
      expect(seen[0]?.url).toMatch(/\/containers\/create\?name=web-dso-next-abc$/);
      expect(seen[0]?.url).not.toContain('canary');
      expect(JSON.parse(seen[0]?.body ?? '{}')).toEqual({
        Image: 'app:1',
        Env: ['SECRET=canary-value-91'],
      });
    } finally {
      await new Promise((resolve) => server.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
