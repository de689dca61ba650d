import { describe, expect, it } from 'vitest';
import { detectEngineDialect } from './engine-dialect.js';

describe('detectEngineDialect', () => {
  it('reads Docker from a /version without a Podman component', () => {
    expect(
      detectEngineDialect({
        Version: '20.10.24+dfsg1',
        Components: [{ Name: 'Engine', Version: '20.10.24+dfsg1' }, { Name: 'containerd' }],
      }),
    ).toMatchObject({ kind: 'docker', display: 'Docker 20.10.24+dfsg1' });
  });

  it("reads Podman from its compatible service's component list", () => {
    expect(
      detectEngineDialect({
        Version: '4.3.1',
        Components: [
          { Name: 'Podman Engine', Version: '4.3.1' },
          { Name: 'Conmon', Version: 'conmon version 2.1.6' },
        ],
      }),
    ).toMatchObject({ kind: 'podman', display: 'Podman 4.3.1' });
  });

  it('takes an engine that lists no components for Docker', () => {
    expect(detectEngineDialect({ Version: '20.10.5', Components: null }).kind).toBe('docker');
    expect(detectEngineDialect({}).display).toBe('Docker unknown');
  });
});

describe('container dialect', () => {
  const podman = detectEngineDialect({ Components: [{ Name: 'Podman Engine', Version: '4.3.1' }] });
  const docker = detectEngineDialect({ Version: '20.10.24' });

  it("names Podman's inspected limits as its create takes them, and leaves Docker's", () => {
    expect(podman.containers.ulimitName('RLIMIT_NOFILE')).toBe('nofile');
    expect(podman.containers.ulimitName('RLIMIT_MEMLOCK')).toBe('memlock');
    expect(podman.containers.ulimitName('nofile')).toBe('nofile');
    expect(docker.containers.ulimitName('nofile')).toBe('nofile');
  });

  it("turns the uid=/gid= Podman's U became back into U, in its place, and leaves Docker's", () => {
    expect(
      podman.containers.tmpfsOptions('mode=0700,uid=1000,gid=1000,rw,rprivate,nosuid,nodev'),
    ).toBe('mode=0700,U,rw,rprivate,nosuid,nodev');
    expect(podman.containers.tmpfsOptions('U,mode=0700,uid=0,gid=0')).toBe('U,mode=0700');
    expect(podman.containers.tmpfsOptions('mode=0700,rw')).toBe('mode=0700,rw');
    expect(docker.containers.tmpfsOptions('mode=0700,uid=1000')).toBe('mode=0700,uid=1000');
  });

  it('says where each engine differs for clones, lists and healthchecks', () => {
    expect(docker.containers).toMatchObject({
      hostnameInEnv: false,
      listHasNetworkMode: true,
      healthchecks: 'engine',
    });
    expect(podman.containers).toMatchObject({
      hostnameInEnv: true,
      listHasNetworkMode: false,
      healthchecks: 'on-request',
    });
  });
});
