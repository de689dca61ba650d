import { describe, expect, it } from 'vitest';
import { resolveDsoPaths } from './paths.js';

describe('resolveDsoPaths', () => {
  it('uses DSO_HOME and DSO_VAULT_PATH when set', () => {
    expect(resolveDsoPaths({ DSO_HOME: '/srv/dso' }, 1000)).toEqual({
      home: '/srv/dso',
      vaultPath: '/srv/dso/vault.dso',
      defaultKeyFile: '/srv/dso/vault.key',
    });
    expect(resolveDsoPaths({ DSO_HOME: '/srv/dso', DSO_VAULT_PATH: '/x/v.dso' }, 0).vaultPath).toBe(
      '/x/v.dso',
    );
  });

  it('defaults to /var/lib/dso for root and the XDG data home otherwise', () => {
    expect(resolveDsoPaths({}, 0).home).toBe('/var/lib/dso');
    expect(resolveDsoPaths({ XDG_DATA_HOME: '/home/u/.data' }, 1000).home).toBe(
      '/home/u/.data/dso',
    );
  });
});
