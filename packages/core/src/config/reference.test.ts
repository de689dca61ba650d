import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CONFIG_ENV_OVERRIDES } from './env.js';
import { listFields } from './fields.js';
import { renderConfigReference } from './reference.js';
import { configSchema } from './schema.js';

const COMMITTED = new URL('../../../../docs/config.md', import.meta.url);

describe('renderConfigReference', () => {
  it('matches the committed docs/config.md', () => {
    const committed = readFileSync(COMMITTED, 'utf8');
    const rendered = renderConfigReference();
    // A plain equality, not a snapshot: `vitest -u` must not be a way to make it pass.
    if (committed !== rendered) {
      expect.fail(
        'docs/config.md does not match the configuration schema: run `npm run docs:config` to regenerate it',
      );
    }
  });

  it('documents every field of the schema', () => {
    const rendered = renderConfigReference();
    const fields = listFields(configSchema);
    expect(fields.length).toBeGreaterThan(50);
    for (const field of fields) {
      expect(field.meta?.description, field.path.join('.')).toMatch(/\S/);
      if (field.path.length === 1 && field.kind !== 'value') {
        expect(rendered).toContain(`\n### \`${field.path[0]}\`\n\n${field.meta?.description}\n`);
      } else {
        expect(rendered).toContain(`| \`${field.path.join('.')}\` |`);
      }
    }
  });

  it('lists every environment override, at a setting that exists', () => {
    const rendered = renderConfigReference();
    const paths = new Set(listFields(configSchema).map((field) => field.path.join('.')));
    for (const override of CONFIG_ENV_OVERRIDES) {
      expect(paths).toContain(override.path.join('.'));
      expect(rendered).toContain(`| \`${override.name}\` | [\`${override.path.join('.')}\`]`);
      expect(rendered).toContain(`Overridden by \`${override.name}\`.`);
    }
  });

  it('shows defaults in their unit and in words', () => {
    const rendered = renderConfigReference();
    expect(rendered).toContain('| `reconcile.intervalMs` | duration | `600000` (10m) |');
    expect(rendered).toContain('| `cache.maxBytes` | size | `67108864` (64 MiB) |');
    expect(rendered).toContain('| `api.socketMode` | file mode | `0o660` |');
    expect(rendered).toContain("| `providers.<name>.type` | 'local' \\| 'env'");
  });

  it('shows the real error for its example', () => {
    expect(renderConfigReference()).toContain(
      '  /var/lib/dso/dso.yaml:2:3: unknown key `cache.tll`; did you mean `ttlMs`?',
    );
  });
});
