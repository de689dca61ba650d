import { describe, expect, it } from 'vitest';
import { compareApiVersions, MAX_DOCKER_API_VERSION, negotiateApiVersion } from './api-version.js';
import { isDockerRuntimeError } from './errors.js';

describe('negotiateApiVersion', () => {
  it('speaks the engine version when it is within range', () => {
    expect(negotiateApiVersion({ apiVersion: '1.41', engineVersion: '20.10.24' })).toBe('1.41');
    expect(negotiateApiVersion({ apiVersion: '1.45', engineVersion: '26.1.0' })).toBe('1.45');
  });

  it('caps a newer engine at the newest version this package knows', () => {
    expect(
      negotiateApiVersion({ apiVersion: '1.60', minApiVersion: '1.24', engineVersion: '40.0' }),
    ).toBe(MAX_DOCKER_API_VERSION);
  });

  it("uses an engine's minimum when it no longer serves the cap", () => {
    expect(
      negotiateApiVersion({ apiVersion: '1.70', minApiVersion: '1.60', engineVersion: '50.0' }),
    ).toBe('1.60');
  });

  it('throws DSO_DOCKER_API_TOO_OLD below 1.41, naming the engine version and the fix', () => {
    try {
      negotiateApiVersion({ apiVersion: '1.40', engineVersion: '19.03.15' });
      expect.unreachable();
    } catch (error) {
      expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_API_TOO_OLD');
      expect((error as Error).message).toContain('19.03.15');
      expect((error as Error).message).toContain('upgrade');
    }
  });

  it('compares minor versions numerically', () => {
    expect(compareApiVersions('1.9', '1.41')).toBeLessThan(0);
    expect(compareApiVersions('1.41', '1.41')).toBe(0);
    expect(compareApiVersions('2.0', '1.99')).toBeGreaterThan(0);
  });

  it('names a Podman too old by its own name', () => {
    try {
      negotiateApiVersion({ apiVersion: '1.40', engineVersion: '3.0.1', display: 'Podman 3.0.1' });
      expect.unreachable();
    } catch (error) {
      expect(isDockerRuntimeError(error) && error.code).toBe('DSO_DOCKER_API_TOO_OLD');
      expect((error as Error).message).toMatch(/^Podman 3\.0\.1 speaks API 1\.40/);
      expect((error as Error).message).toContain('Podman 4.3 or newer');
    }
  });
});
