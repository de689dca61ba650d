import { describe, expect, it } from 'vitest';
import { describeVersionRef, parseVersionRef } from './version-ref.js';

describe('parseVersionRef', () => {
  it('reads no version as the default stage', () => {
    expect(parseVersionRef(undefined, 'AWSCURRENT')).toEqual({
      kind: 'stage',
      stage: 'AWSCURRENT',
      orVersionId: false,
    });
    expect(parseVersionRef(undefined, 'blue')).toEqual({
      kind: 'stage',
      stage: 'blue',
      orVersionId: false,
    });
  });

  it('reads a uuid, in any case, as a VersionId', () => {
    expect(parseVersionRef('9b2f0c7e-4a11-4c51-8a3e-0e3e0f6c1d2a', 'AWSCURRENT')).toEqual({
      kind: 'versionId',
      versionId: '9b2f0c7e-4a11-4c51-8a3e-0e3e0f6c1d2a',
    });
    expect(parseVersionRef('9B2F0C7E-4A11-4C51-8A3E-0E3E0F6C1D2A', 'AWSCURRENT').kind).toBe(
      'versionId',
    );
  });

  it('reads anything else as a stage', () => {
    for (const stage of ['AWSPREVIOUS', 'AWSPENDING', 'blue', 'v2', '9b2f0c7e']) {
      expect(parseVersionRef(stage, 'AWSCURRENT')).toEqual({
        kind: 'stage',
        stage,
        orVersionId: false,
      });
    }
  });

  it('marks a stage that could also be a caller-chosen VersionId', () => {
    const token = 'deploy-2024-01-31-build-000000000042';
    expect(parseVersionRef(token, 'AWSCURRENT')).toEqual({
      kind: 'stage',
      stage: token,
      orVersionId: true,
    });
    expect(parseVersionRef('x'.repeat(65), 'AWSCURRENT')).toMatchObject({ orVersionId: false });
  });

  it('rejects with DSO_PROVIDER_NOT_FOUND an empty or over-long version', () => {
    for (const version of ['', 'x'.repeat(257)]) {
      expect(() =>
        parseVersionRef(version, 'AWSCURRENT', { provider: 'aws', path: 'app/db' }),
      ).toThrowError(expect.objectContaining({ code: 'DSO_PROVIDER_NOT_FOUND', path: 'app/db' }));
    }
  });

  it('names a reference for messages', () => {
    expect(describeVersionRef({ kind: 'stage', stage: 'AWSPENDING', orVersionId: false })).toBe(
      'stage AWSPENDING',
    );
    expect(describeVersionRef({ kind: 'versionId', versionId: 'abc' })).toBe('VersionId abc');
  });
});
