import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const unit = readFileSync(join(import.meta.dirname, '../systemd/dso-agent.service'), 'utf8');

/** `key=value` lines of one section, comments and blank lines dropped. */
function section(name: string): Map<string, string[]> {
  const lines = unit.split('\n');
  const start = lines.indexOf(`[${name}]`);
  const entries = new Map<string, string[]>();
  for (const line of lines.slice(start + 1)) {
    if (line.startsWith('[')) break;
    const match = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (match)
      entries.set(match[1] as string, [
        ...(entries.get(match[1] as string) ?? []),
        match[2] as string,
      ]);
  }
  return entries;
}

describe('systemd/dso-agent.service', () => {
  it('restarts the agent when it exits non-zero, after the engine, and stops it gracefully', () => {
    const service = section('Service');
    expect(service.get('ExecStart')).toEqual(['/usr/local/bin/dso-agent']);
    expect(service.get('Restart')).toEqual(['on-failure']);
    expect(service.get('KillSignal')).toEqual(['SIGTERM']);
    expect(service.get('ExecReload')).toEqual(['/bin/kill -HUP $MAINPID']);
    expect(section('Unit').get('After')?.[0]).toContain('docker.service');
    expect(section('Install').get('WantedBy')).toEqual(['multi-user.target']);
  });

  it('runs the dso-agent the bundle installs under /usr/local and limits restarts where systemd reads it', () => {
    // install.sh links <prefix>/bin/dso-agent and rewrites these two paths for another prefix;
    // test-e2e/src/install.e2e.test.ts checks the installed copy with systemd-analyze verify.
    expect(section('Service').get('ExecStart')).toEqual(['/usr/local/bin/dso-agent']);
    expect(section('Unit').get('Documentation')).toEqual([
      'file:/usr/local/lib/dso/node_modules/@dso/agent/README.md',
    ]);
    // systemd 230+ reads the start limit in [Unit] only (in [Service] it is ignored).
    expect(section('Unit').get('StartLimitIntervalSec')).toEqual(['300']);
    expect(section('Unit').get('StartLimitBurst')).toEqual(['20']);
    expect(section('Service').has('StartLimitIntervalSec')).toBe(false);
  });

  it('keeps secrets out of core dumps and state private, and puts nothing secret on its command line', () => {
    const service = section('Service');
    expect(service.get('LimitCORE')).toEqual(['0']);
    expect(service.get('UMask')).toEqual(['0077']);
    expect(service.get('StateDirectoryMode')).toEqual(['0700']);
    expect(service.get('NoNewPrivileges')).toEqual(['yes']);
    expect(unit).not.toMatch(/PASSPHRASE=|TOKEN=|SECRET=/);
  });

  it('lets the volume driver serve its socket and its mounts reach the engine', () => {
    const service = section('Service');
    const writable = (service.get('ReadWritePaths') ?? []).join(' ').split(/\s+/);
    expect(writable).toEqual(expect.arrayContaining(['/run/dso', '-/run/docker/plugins']));
    // Mounts made in the unit's namespace (the volumes' tmpfs and read-only views) propagate to
    // the host's, where dockerd bind-mounts them into containers.
    expect(service.get('MountFlags')).toEqual(['shared']);
  });
});
