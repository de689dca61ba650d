import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { renderCliReference } from './cli-reference.js';
import { EXIT_CODE_TABLE } from './exit-codes.js';

const COMMITTED = new URL('../../../docs/cli.md', import.meta.url);

describe('docs/cli.md', () => {
  it('matches the commands (regenerate with npm run docs:cli)', () => {
    expect(
      readFileSync(COMMITTED, 'utf8') === renderCliReference(),
      'docs/cli.md does not match the commands of dso: run `npm run docs:cli` to regenerate it',
    ).toBe(true);
  });

  it('has every command, its options and the exit code table', () => {
    const text = renderCliReference();
    for (const heading of ['## `dso secret set`', '## `dso completion`', '## `dso version`'])
      expect(text).toContain(heading);
    expect(text).toContain('| `--keep-newline` |');
    expect(text).toContain('| `<shell>` | the shell (one of bash, zsh, fish) |');
    for (const row of EXIT_CODE_TABLE) expect(text).toContain(`| ${row.code} | \`${row.name}\` |`);
  });
});
