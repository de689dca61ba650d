import { describe, expect, it } from 'vitest';
import { satisfiesVersionRange } from './version-range.js';

describe('satisfiesVersionRange', () => {
  it.each([
    ['0.1.0', '^0.1.0', true],
    ['0.1.7', '^0.1.0', true],
    ['0.2.0', '^0.1.0', false],
    ['0.0.9', '^0.1.0', false],
    ['1.4.2', '^1.2.3', true],
    ['2.0.0', '^1.2.3', false],
    ['0.0.3', '^0.0.3', true],
    ['0.0.4', '^0.0.3', false],
    ['0.9.0', '^0.x', true],
    ['1.2.9', '~1.2.3', true],
    ['1.3.0', '~1.2.3', false],
    ['1.9.0', '~1', true],
    ['0.1.0', '0.1.0', true],
    ['0.1.1', '=0.1.0', false],
    ['0.1.5', '0.1.x', true],
    ['0.2.0', '0.1', false],
    ['5.0.0', '*', true],
    ['5.0.0', '', true],
    ['0.2.0', '>=0.1.0 <0.3.0', true],
    ['0.3.0', '>=0.1.0 <0.3.0', false],
    ['0.3.0', '>= 0.1.0 < 0.3.0', false],
    ['0.2.9', '>0.1', true],
    ['0.1.9', '>0.1', false],
    ['0.1.9', '<=0.1', true],
    ['0.2.0', '<=0.1', false],
    ['0.2.5', '0.1.0 - 0.2', true],
    ['0.3.0', '0.1.0 - 0.2', false],
    ['2.1.0', '^0.1.0 || ^2.0.0', true],
    ['1.0.0', '^0.1.0 || ^2.0.0', false],
    ['1.0.0-rc.1', '>=1.0.0', false],
    ['1.0.0-rc.1', '<1.0.0', true],
  ])('%s in %s: %s', (version, range, expected) => {
    expect(satisfiesVersionRange(version, range)).toBe(expected);
  });

  it('cannot read ranges it does not know (undefined, not a guess)', () => {
    expect(satisfiesVersionRange('0.1.0', 'latest')).toBeUndefined();
    expect(satisfiesVersionRange('0.1.0', 'file:../sdk')).toBeUndefined();
    expect(satisfiesVersionRange('0.1.0', '^0.1.0 garbage')).toBeUndefined();
    expect(satisfiesVersionRange('not-a-version', '^0.1.0')).toBeUndefined();
  });
});
