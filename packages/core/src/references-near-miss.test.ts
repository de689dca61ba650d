import { describe, expect, it } from 'vitest';
import { editDistance, suggestReference } from './references-near-miss.js';

describe('editDistance', () => {
  it('counts a swap of neighbours as one edit', () => {
    expect(editDistance('flie', 'file')).toBe(1);
    expect(editDistance('dso', 'dso')).toBe(0);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('kitten', 'sitting')).toBe(3);
  });
});

describe('suggestReference', () => {
  it.each([
    ['dsofile:/app/x', 'dsofile://app/x'],
    ['dso:/app/x', 'dso://app/x'],
    ['dsofile//app/x', 'dsofile://app/x'],
    ['dsofile:app/x', 'dsofile://app/x'],
    ['DSO://app/x', 'dso://app/x'],
    ['DsoFile://vault:app/db#pw', 'dsofile://vault:app/db#pw'],
    ['dsofiel://app/x', 'dsofile://app/x'],
    ['dsfile://app/x', 'dsofile://app/x'],
    ['dos://app/x', 'dso://app/x'],
  ])('suggests %s → %s', (typed, meant) => {
    expect(suggestReference(typed)).toBe(meant);
  });

  it.each([
    'dso://app/x',
    'dsofile://app/x',
    'postgres://db:5432',
    'https://example.test/x',
    'db:5432',
    'plain-value',
    'do:x',
    'dns://resolver',
    '',
  ])('leaves %j alone', (text) => {
    expect(suggestReference(text)).toBeUndefined();
  });
});
