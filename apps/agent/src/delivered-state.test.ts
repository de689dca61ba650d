import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadDeliveredState, saveDeliveredState } from './delivered-state.js';

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});
function path(): string {
  const dir = mkdtempSync(join(tmpdir(), 'dso-state-'));
  dirs.push(dir);
  return join(dir, 'agent-state.json');
}
const ENTRY = { digest: 'a'.repeat(64), envDigest: '', startedAt: '2026-11-28T00:00:00Z' };

describe('delivered state', () => {
  it('reads back what it saved, leaving no temporary file', async () => {
    const file = path();
    await saveDeliveredState(file, [['c'.repeat(64), ENTRY]]);
    const problems: string[] = [];
    const state = await loadDeliveredState(file, (problem) => problems.push(problem));
    expect([...state]).toEqual([['c'.repeat(64), ENTRY]]);
    expect(problems).toEqual([]);
    expect(readdirSync(join(file, '..'))).toEqual(['agent-state.json']);
  });

  it('keeps when each container was delivered to, and drops a time that is not one', async () => {
    const file = path();
    const at = Date.parse('2026-12-07T10:00:00Z');
    await saveDeliveredState(file, [
      ['c'.repeat(64), { ...ENTRY, deliveredAt: at }],
      ['d'.repeat(64), ENTRY],
    ]);
    const state = await loadDeliveredState(file, () => {});
    expect(state.get('c'.repeat(64))).toEqual({ ...ENTRY, deliveredAt: at });
    expect(state.get('d'.repeat(64))).toEqual(ENTRY);
    writeFileSync(
      file,
      JSON.stringify({
        containers: {
          ['e'.repeat(64)]: { ...ENTRY, deliveredAt: 'yesterday' },
          ['f'.repeat(64)]: { ...ENTRY, deliveredAt: -1 },
        },
      }),
    );
    const odd = await loadDeliveredState(file, () => {});
    expect([...odd.values()]).toEqual([ENTRY, ENTRY]);
  });

  it('starts empty from a missing file, and says why for a malformed one', async () => {
    const problems: string[] = [];
    expect((await loadDeliveredState(path(), (p) => problems.push(p))).size).toBe(0);
    expect(problems).toEqual([]);
    const file = path();
    writeFileSync(file, '{not json');
    expect((await loadDeliveredState(file, (p) => problems.push(p))).size).toBe(0);
    expect(problems).toEqual(['not JSON']);
  });

  it('drops entries that are not what it writes', async () => {
    const file = path();
    writeFileSync(
      file,
      JSON.stringify({
        containers: {
          ['d'.repeat(64)]: ENTRY,
          'not-an-id': ENTRY,
          ['e'.repeat(64)]: { ...ENTRY, digest: 'short' },
        },
      }),
    );
    expect([...(await loadDeliveredState(file, () => {})).keys()]).toEqual(['d'.repeat(64)]);
  });

  it('never writes the values digest to the file', async () => {
    const file = path();
    await saveDeliveredState(file, [['c'.repeat(64), { ...ENTRY, valuesDigest: 'f'.repeat(64) }]]);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(file, 'utf8')).not.toContain('valuesDigest');
    expect([...(await loadDeliveredState(file, () => {}))]).toEqual([['c'.repeat(64), ENTRY]]);
  });
});
