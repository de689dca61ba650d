import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { findProviderPackageDir, readProviderCommand } from './provider-package.js';

const root = mkdtempSync(join(tmpdir(), 'dso-provider-package-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function install(name: string, manifest: unknown): string {
  const dir = join(root, 'plugins', 'node_modules', name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'package.json'),
    typeof manifest === 'string' ? manifest : JSON.stringify(manifest),
  );
  return dir;
}

describe('provider packages in any language (dso.command)', () => {
  it('finds an installed package from the plugins folder or a folder below it', () => {
    const dir = install('dso-provider-py', { name: 'dso-provider-py' });
    expect(findProviderPackageDir('dso-provider-py', join(root, 'plugins'))).toBe(dir);
    mkdirSync(join(root, 'plugins', 'sub'), { recursive: true });
    expect(findProviderPackageDir('dso-provider-py', join(root, 'plugins', 'sub'))).toBe(dir);
    expect(findProviderPackageDir('dso-provider-none', join(root, 'plugins'))).toBeUndefined();
  });

  it('reads dso.command, run in the package folder', () => {
    const dir = install('@acme/dso-provider-py', {
      name: '@acme/dso-provider-py',
      dso: { command: ['python3', 'provider.py'] },
    });
    expect(readProviderCommand(dir)).toEqual({ command: ['python3', 'provider.py'], cwd: dir });
  });

  it('is undefined for a JavaScript provider package', () => {
    const dir = install('dso-provider-js', { name: 'dso-provider-js', main: 'index.js' });
    expect(readProviderCommand(dir)).toBeUndefined();
  });

  it.each([
    [{ dso: { command: 'python3 provider.py' } }, 'must be a non-empty array'],
    [{ dso: { command: [] } }, 'must be a non-empty array'],
    [{ dso: { command: ['python3', 7] } }, 'non-empty strings'],
    ['{ not json', 'no readable package.json'],
  ])('refuses a malformed manifest %j with the fix', (manifest, message) => {
    const dir = install('dso-provider-bad', manifest);
    let error: unknown;
    try {
      readProviderCommand(dir);
    } catch (caught) {
      error = caught;
    }
    expect(error).toMatchObject({ code: 'DSO_PROVIDER_INVALID_CONFIG' });
    expect((error as Error).message).toContain(message);
  });
});
