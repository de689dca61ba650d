import { describe, expect, it } from 'vitest';
import { isDsoError } from './errors.js';
import { parseManagedLabels } from './labels.js';
import { checkFileAccess, checkLabels, isKnownLabel, suggestLabel } from './labels-check.js';

describe('suggestLabel', () => {
  it.each([
    ['dso.flie.db_password', 'dso.file.db_password'],
    ['dso.fiel.x', 'dso.file.x'],
    ['dso.files.x', 'dso.file.x'],
    ['dso.ower', 'dso.owner'],
    ['dso.onwer', 'dso.owner'],
    ['dso.enabled', 'dso.enable'],
    ['DSO.ENABLE', 'dso.enable'],
    ['dso.mod', 'dso.mode'],
    ['dso.taget', 'dso.target'],
    ['dso.rotate.sigal', 'dso.rotate.signal'],
    ['dso.evn.TOKEN', 'dso.env.TOKEN'],
    ['dso.file', 'dso.file.<name>'],
  ])('suggests %s → %s', (typed, meant) => {
    expect(suggestLabel(typed)).toBe(meant);
  });

  it('suggests nothing for a label far from every known one', () => {
    expect(suggestLabel('dso.completely-different')).toBeUndefined();
  });
});

describe('checkLabels', () => {
  it('reports an unknown dso.* label with the label it was probably meant to be', () => {
    const warnings = checkLabels({ 'dso.enable': 'true', 'dso.flie.x': 'dsofile://app/x' });
    expect(warnings).toEqual([
      expect.objectContaining({
        code: 'DSO_LABEL_UNKNOWN',
        label: 'dso.flie.x',
        suggestion: 'dso.file.x',
        message: expect.stringContaining('did you mean dso.file.x?'),
      }),
    ]);
  });

  it('reports nothing for known labels and for other tools labels', () => {
    expect(
      checkLabels({
        'dso.enable': 'true',
        'dso.file.x': 'dsofile://app/x',
        'dso.env.TOKEN': 'dso://app/t',
        'dso.env-version.TOKEN': '3',
        'dso.rotate': 'signal',
        'dso.rotate.signal': 'SIGHUP',
        'dso.replace.of': 'abc',
        'dso.test': 'image',
        'com.docker.compose.project': 'demo',
        'org.opencontainers.image.title': 'dsofile:/not/ours',
      }),
    ).toEqual([]);
  });

  it('reports a near miss outside the dso. namespace only when it is close to a DSO label', () => {
    expect(checkLabels({ 'ds.file.x': 'dsofile://app/x' })).toEqual([
      expect.objectContaining({ label: 'ds.file.x', suggestion: 'dso.file.x' }),
    ]);
    expect(checkLabels({ 'ds.version': '3', 'dso-build': 'x' })).toEqual([]);
    expect(checkLabels({ 'dso.whatever': 'x' })).toEqual([
      expect.objectContaining({ code: 'DSO_LABEL_UNKNOWN', label: 'dso.whatever' }),
    ]);
  });

  it('reports a near-miss reference in a DSO label', () => {
    expect(checkLabels({ 'dso.flie.x': 'dsofile:/app/x' })).toContainEqual(
      expect.objectContaining({
        code: 'DSO_REFERENCE_NEAR_MISS',
        label: 'dso.flie.x',
        suggestion: 'dsofile://app/x',
      }),
    );
  });

  it('reports a dso.enable that reads as yes but is not exactly true', () => {
    expect(checkLabels({ 'dso.enable': 'True' })).toEqual([
      expect.objectContaining({ label: 'dso.enable', suggestion: 'dso.enable=true' }),
    ]);
  });

  it('is the known-label list parseManagedLabels reads', () => {
    expect(isKnownLabel('dso.file.')).toBe(false);
    expect(isKnownLabel('dso.file.a')).toBe(true);
    expect(isKnownLabel('dso.rotate.escalate')).toBe(true);
  });
});

describe('checkFileAccess', () => {
  it('hints a group-readable mode when the owner names another group (nginx: 0:33)', () => {
    expect(checkFileAccess({ 'dso.owner': '0:33' })).toEqual([
      expect.objectContaining({
        code: 'DSO_LABEL_ACCESS_HINT',
        suggestion: 'dso.mode=0440',
        message: expect.stringContaining('mode 0400 lets only user 0 read them'),
      }),
    ]);
    expect(checkFileAccess({ 'dso.owner': '0:33', 'dso.mode': '0600' })).toHaveLength(1);
  });

  it('hints an owner when the mode lets a group read but no owner names it', () => {
    expect(checkFileAccess({ 'dso.mode': '0440' })).toEqual([
      expect.objectContaining({ code: 'DSO_LABEL_ACCESS_HINT', label: 'dso.owner' }),
    ]);
  });

  it('is quiet when owner and mode fit together, or nothing is set', () => {
    expect(checkFileAccess({ 'dso.owner': '0:33', 'dso.mode': '0440' })).toEqual([]);
    expect(checkFileAccess({ 'dso.owner': '1000' })).toEqual([]);
    expect(checkFileAccess({})).toEqual([]);
    expect(checkFileAccess({ 'dso.owner': 'www-data' })).toEqual([]);
  });
});

describe('parseManagedLabels with a near-miss reference', () => {
  it('refuses it with DSO_LABEL_INVALID and says what was meant', () => {
    let caught: unknown;
    try {
      parseManagedLabels({ 'dso.enable': 'true', 'dso.file.x': 'dsofile:/app/x' });
    } catch (error) {
      caught = error;
    }
    expect(isDsoError(caught) && caught.code).toBe('DSO_LABEL_INVALID');
    expect((caught as Error).message).toContain('did you mean dso.file.x=dsofile://app/x?');
  });

  it('does not quote a value that is not near a reference', () => {
    expect(() =>
      parseManagedLabels({ 'dso.enable': 'true', 'dso.file.x': 'hunter2-canary' }),
    ).toThrow(/its value is not shown/);
    try {
      parseManagedLabels({ 'dso.enable': 'true', 'dso.file.x': 'hunter2-canary' });
    } catch (error) {
      expect((error as Error).message).not.toContain('hunter2-canary');
    }
  });
});
