// The host bundle's install.sh refuses what it cannot install, with a code and the fix, before
// it writes anything. (Installing for real: test-e2e/src/install.e2e.test.ts.)
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';

const INSTALL = join(import.meta.dirname, 'release', 'install.sh');
const scratch = mkdtempSync(join(tmpdir(), 'dso-install-sh-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** A folder shaped like an extracted bundle (install.sh, VERSION, the agent's package). */
function fakeBundle() {
  const bundle = mkdtempSync(join(scratch, 'bundle-'));
  cpSync(INSTALL, join(bundle, 'install.sh'));
  writeFileSync(join(bundle, 'VERSION'), '9.9.9\n');
  mkdirSync(join(bundle, 'node_modules', '@dso', 'agent'), { recursive: true });
  return bundle;
}

function install(script, args, env = {}) {
  return spawnSync('/bin/sh', [script, ...args], {
    encoding: 'utf8',
    env: { PATH: process.env.PATH, ...env },
  });
}

describe('tools/release/install.sh', () => {
  it('says how to call it, and refuses an unknown argument or a relative prefix', () => {
    assert.match(install(INSTALL, ['--help']).stdout, /usage: install\.sh \[--prefix DIR\]/);
    const unknown = install(INSTALL, ['--prefx', '/opt']);
    assert.equal(unknown.status, 1);
    assert.match(unknown.stderr, /DSO_INSTALL_USAGE: unknown argument --prefx/);
    const relative = install(INSTALL, ['--prefix', 'opt/dso']);
    assert.equal(relative.status, 1);
    assert.match(relative.stderr, /DSO_INSTALL_USAGE: --prefix must be an absolute path/);
  });

  it('refuses a folder that is not a whole bundle (here: the script in the clone)', () => {
    const prefix = join(scratch, 'not-a-bundle');
    const result = install(INSTALL, ['--prefix', prefix]);
    assert.equal(result.status, 1);
    assert.match(result.stderr, /DSO_INSTALL_BUNDLE_INCOMPLETE: .* extract dso-<version>-linux/);
    assert.equal(spawnSync('test', ['-e', prefix]).status, 1, 'nothing was written');
  });

  it('refuses a node older than 20.19 and no node at all, naming the fix', () => {
    const bundle = fakeBundle();
    const old = join(scratch, 'old-node');
    mkdirSync(old);
    // A node that answers like Node.js 18 does to install.sh's two questions.
    writeFileSync(
      join(old, 'node'),
      '#!/bin/sh\n[ "$1" = --version ] && echo v18.20.0 && exit 0\nexit 1\n',
    );
    chmodSync(join(old, 'node'), 0o755);
    const prefix = join(scratch, 'prefix-old');
    const tooOld = install(join(bundle, 'install.sh'), ['--prefix', prefix], {
      PATH: `${old}:/usr/bin:/bin`,
    });
    assert.equal(tooOld.status, 1);
    assert.match(tooOld.stderr, /DSO_INSTALL_NODE_TOO_OLD: .* is v18\.20\.0: upgrade it/);
    const empty = join(scratch, 'empty-path');
    mkdirSync(empty);
    for (const tool of ['dirname', 'cat']) {
      cpSync(
        spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim(),
        join(empty, tool),
      );
    }
    const missing = install(join(bundle, 'install.sh'), ['--prefix', prefix], { PATH: empty });
    assert.equal(missing.status, 1);
    assert.match(missing.stderr, /DSO_INSTALL_NODE_MISSING: .* no node is on PATH/);
    assert.equal(spawnSync('test', ['-e', prefix]).status, 1, 'nothing was written');
  });

  it('--uninstall removes what it installed, touches no state, and names where the state is', () => {
    const prefix = join(scratch, 'uninstall-prefix');
    const units = join(scratch, 'uninstall-units');
    const home = join(scratch, 'uninstall-home');
    const installed = [
      join(prefix, 'bin', 'dso'),
      join(prefix, 'bin', 'dso-agent'),
      join(prefix, 'lib', 'dso', 'VERSION'),
      join(units, 'dso-agent.service'),
    ];
    const put = (file) => {
      mkdirSync(join(file, '..'), { recursive: true });
      writeFileSync(file, 'x');
    };
    for (const file of [...installed, join(home, 'vault.dso'), join(home, 'vault.key')]) put(file);
    const args = ['--uninstall', '--prefix', prefix, '--docker-plugins-dir', 'none'];
    // With the unit: its /var/lib/dso and /etc/dso, and this user's DSO_HOME.
    const withUnit = install(INSTALL, [...args, '--systemd-dir', units], { DSO_HOME: home });
    assert.equal(withUnit.status, 0, withUnit.stderr);
    for (const file of installed) assert.equal(spawnSync('test', ['-e', file]).status, 1, file);
    assert.match(withUnit.stdout, /DSO_HOME's contents are not touched/);
    assert.match(withUnit.stdout, /\/var\/lib\/dso \(the unit's DSO_HOME/);
    assert.match(withUnit.stdout, /\/etc\/dso \(the unit's agent\.env\)/);
    assert.ok(withUnit.stdout.includes(`${home} (this user's DSO_HOME`), withUnit.stdout);
    for (const file of ['vault.dso', 'vault.key']) {
      assert.equal(spawnSync('test', ['-f', join(home, file)]).status, 0, `${file} stays`);
    }
    // No unit installed: only DSO_HOME, by the rule resolveDsoPaths follows without DSO_HOME.
    put(join(prefix, 'bin', 'dso'));
    const noUnit = install(INSTALL, [...args, '--systemd-dir', 'none'], {
      HOME: '/home/someone',
      XDG_DATA_HOME: '',
    });
    assert.equal(noUnit.status, 0, noUnit.stderr);
    assert.doesNotMatch(noUnit.stdout, /\/etc\/dso/);
    const expected = process.getuid() === 0 ? '/var/lib/dso' : '/home/someone/.local/share/dso';
    assert.ok(
      noUnit.stdout.includes(`left in place: ${expected} (this user's DSO_HOME`),
      noUnit.stdout,
    );
  });
});
