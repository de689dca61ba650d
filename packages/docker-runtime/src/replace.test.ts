import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { describe, expect, it } from 'vitest';
import { DOCKER_DIALECT, detectEngineDialect } from './engine-dialect.js';
import { isDockerRuntimeError } from './errors.js';
import {
  applyEnvChanges,
  createContainer,
  DEFAULT_REPLACE_HEALTH_TIMEOUT_MS,
  DEFAULT_REPLACE_RUNNING_FOR_MS,
  DEFAULT_REPLACE_STOP_TIMEOUT_MS,
  decideRecovery,
  findNetworkDependents,
  hasHealthcheck,
  planReplacement,
  REPLACE_LABELS,
  replacementNames,
  resolveReplaceRequest,
} from './replace.js';
import podmanInspectApp from './test-support/recorded/podman-4.3.1-inspect-app.json' with {
  type: 'json',
};
import podmanInspectSidecar from './test-support/recorded/podman-4.3.1-inspect-sidecar.json' with {
  type: 'json',
};
import podmanList from './test-support/recorded/podman-4.3.1-list.json' with { type: 'json' };

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

// Recorded from Podman 4.3.1's compatible API (tools/services.sh's service): `app` runs as
// 1000:1000 with `--tmpfs /run/secrets:mode=0700,U`, `--ulimit nofile=1024:2048` and
// `--ulimit nproc=8192`; `app-sidecar` runs with `--network container:app`; `other` with
// `--network none`.
const PODMAN = detectEngineDialect({ Components: [{ Name: 'Podman Engine', Version: '4.3.1' }] });
const podmanApp = podmanInspectApp as unknown as Docker.ContainerInspectInfo;

describe('planReplacement on Podman', () => {
  it('turns the limits and tmpfs owner Podman inspects back into what its create takes', () => {
    // What Podman reports, and refuses at create: RLIMIT_NOFILE, uid=/gid= on a tmpfs.
    expect(podmanApp.HostConfig.Ulimits?.map((limit) => limit.Name)).toEqual([
      'RLIMIT_NOFILE',
      'RLIMIT_NPROC',
    ]);
    expect(podmanApp.HostConfig.Tmpfs?.['/run/secrets']).toMatch(/uid=1000,gid=1000/);

    const result = planReplacement(podmanApp, {
      env: [['API_TOKEN', 'canary-value-7']],
      image: podmanApp.Image,
      dialect: PODMAN.containers,
    });
    expect(result.body.HostConfig?.Ulimits).toEqual([
      { Name: 'nofile', Soft: 1024, Hard: 2048 },
      { Name: 'nproc', Soft: 8192, Hard: 8192 },
    ]);
    expect(result.body.HostConfig?.Tmpfs).toEqual({
      '/run/secrets': 'mode=0700,U,rw,rprivate,nosuid,nodev,tmpcopyup',
    });
    expect(result.body.User).toBe('1000:1000');
  });

  it('drops the HOSTNAME Podman wrote into the environment with the hostname it dropped', () => {
    const hostname = podmanApp.Config.Hostname;
    expect(hostname).toBe(podmanApp.Id.slice(0, 12));
    expect(podmanApp.Config.Env).toContain(`HOSTNAME=${hostname}`);

    const result = planReplacement(podmanApp, {
      env: [['MODE', 'rotated']],
      image: podmanApp.Image,
      dialect: PODMAN.containers,
    });
    expect(result.body.Hostname).toBeUndefined();
    expect(result.body.Env?.filter((entry) => entry.startsWith('HOSTNAME='))).toEqual([]);
    expect(result.body.Env).toContain('MODE=rotated');
    expect(result.body.Env).toContain('API_TOKEN=dso://vault/app/token');
  });

  it('keeps a HOSTNAME Podman wrote for a hostname that was set, as Docker keeps the hostname', () => {
    const named = structuredClone(podmanApp);
    named.Config.Hostname = 'api';
    named.Config.Env = [
      ...(named.Config.Env ?? []).filter((e) => !e.startsWith('HOSTNAME=')),
      'HOSTNAME=api',
    ];
    const result = planReplacement(named, {
      env: [],
      image: named.Image,
      dialect: PODMAN.containers,
    });
    expect(result.body.Hostname).toBe('api');
    expect(result.body.Env).toContain('HOSTNAME=api');
  });

  it("leaves Docker's inspect as it is: its limit names and tmpfs options are create's own", () => {
    const result = plan(
      inspect({
        hostConfig: {
          Ulimits: [{ Name: 'nofile', Soft: 1024, Hard: 2048 }],
          Tmpfs: { '/run/secrets': 'mode=0700,uid=1000' },
        },
        config: { Env: ['HOSTNAME=kept-by-the-user'] },
      }),
    );
    expect(result.body.HostConfig?.Ulimits).toEqual([{ Name: 'nofile', Soft: 1024, Hard: 2048 }]);
    expect(result.body.HostConfig?.Tmpfs).toEqual({ '/run/secrets': 'mode=0700,uid=1000' });
    expect(result.body.Env).toEqual(['HOSTNAME=kept-by-the-user']);
  });
});

describe('findNetworkDependents', () => {
  const list = podmanList as unknown as Docker.ContainerInfo[];
  const app = list.find((info) => info.Names?.[0] === '/app');
  const sidecar = podmanInspectSidecar as unknown as Docker.ContainerInspectInfo;

  it("inspects, on Podman's list without HostConfig, only containers without a network of their own", async () => {
    expect(app).toBeDefined();
    expect(list.every((info) => info.HostConfig === undefined)).toBe(true);
    const inspected: string[] = [];
    const dependents = await findNetworkDependents(
      podmanApp,
      list,
      PODMAN.containers,
      async (id) => {
        inspected.push(id);
        return id === sidecar.Id ? sidecar.HostConfig.NetworkMode : 'none';
      },
    );
    expect(sidecar.HostConfig.NetworkMode).toBe(`container:${podmanApp.Id}`);
    expect(dependents).toEqual(['app-sidecar']);
    // Never the old container itself; a container with its own network is no candidate.
    expect(inspected).not.toContain(podmanApp.Id);
    expect(inspected.sort()).toEqual(
      list
        .filter((info) => info.Id !== podmanApp.Id)
        .map((info) => info.Id)
        .sort(),
    );
    const networked = list.map((info) =>
      info.Id === sidecar.Id ? { ...info, NetworkSettings: { Networks: { podman: {} } } } : info,
    ) as unknown as Docker.ContainerInfo[];
    inspected.length = 0;
    await findNetworkDependents(podmanApp, networked, PODMAN.containers, async (id) => {
      inspected.push(id);
      return 'none';
    });
    expect(inspected).not.toContain(sidecar.Id);
  });

  it('skips a candidate removed since the list, and finds one that names the old one by name', async () => {
    const dependents = await findNetworkDependents(
      podmanApp,
      list,
      PODMAN.containers,
      async (id) => (id === sidecar.Id ? 'container:app' : undefined),
    );
    expect(dependents).toEqual(['app-sidecar']);
  });

  it("reads Docker's list alone, inspecting nothing", async () => {
    const dockerList = [
      { Id: 'b'.repeat(64), Names: ['/side'], HostConfig: { NetworkMode: `container:${OLD_ID}` } },
      { Id: 'c'.repeat(64), Names: ['/by-name'], HostConfig: { NetworkMode: 'container:web' } },
      { Id: 'd'.repeat(64), Names: ['/alone'], HostConfig: { NetworkMode: 'none' } },
      { Id: OLD_ID, Names: ['/web'], HostConfig: { NetworkMode: 'none' } },
    ] as unknown as Docker.ContainerInfo[];
    const dependents = await findNetworkDependents(
      inspect(),
      dockerList,
      DOCKER_DIALECT.containers,
      async () => {
        throw new Error('Docker lists the network mode: nothing to inspect');
      },
    );
    expect(dependents).toEqual(['side', 'by-name']);
  });
});
