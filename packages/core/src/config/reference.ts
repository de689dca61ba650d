import * as z from 'zod';
import { CONFIG_ENV_OVERRIDES, envOverrideFor } from './env.js';
import { type ConfigField, listFields } from './fields.js';
import { parseConfig } from './load.js';
import { MAX_REPORTED_PROBLEMS } from './problems.js';
import { configSchema } from './schema.js';
import { DURATION_SYNTAX, formatByteSize, formatDuration, SIZE_SYNTAX } from './units.js';

// The prose around the tables. It describes parseConfig and loadConfig; keep it beside them in
// mind when either changes (the tables themselves cannot drift: they are read from the schema).
const INTRO = `# \`dso.yaml\` reference

<!-- Generated from packages/core/src/config/schema.ts by \`npm run docs:config\`. Do not edit by hand: a unit test fails when this file and the schema disagree. -->

The DSO agent and CLI read their settings from one YAML file. Every setting has a default, so
an empty file (or none at all) is a working configuration: the local encrypted vault as the only
provider, an in-memory cache, the engine at \`unix:///var/run/docker.sock\`. A commented example
is in [\`dso.example.yaml\`](dso.example.yaml).

## Where the file is

1. \`DSO_CONFIG\`, when set. The file must then exist.
2. Otherwise \`$DSO_HOME/dso.yaml\` (\`DSO_HOME\` defaults to \`/var/lib/dso\` as root,
   \`~/.local/share/dso\` otherwise). When that file does not exist, every setting has its default.

## File permissions

The file may hold provider credentials, and whoever can change it can point the agent at any
provider. The file is refused (\`DSO_CONFIG_INSECURE\`) when it is writable by its group or by
other users, or owned by a user other than root and the one running DSO. A file every user can
read is accepted with a warning. Recommended: \`chown root:root dso.yaml && chmod 600 dso.yaml\`.
Files larger than 1 MiB and anything but a regular file are refused (\`DSO_CONFIG_UNREADABLE\`).

## Values

- **Durations** are whole milliseconds (every such key ends in \`Ms\`), or strings: ${DURATION_SYNTAX}.
- **Sizes** are whole bytes (keys ending in \`Bytes\`), or strings: ${SIZE_SYNTAX}.
- **File modes** are written \`0o660\` or quoted, \`"0660"\`. YAML reads a bare \`0660\` as the
  decimal number 660, so any number with a leading zero is an error.
- **Keys** are case-sensitive. An unknown key is an error, with a suggestion when one is close.
- **Sections** left empty (\`cache:\` with nothing under it) take all their defaults.
- Anchors, aliases and merge keys (\`<<: *defaults\`) work as YAML defines them.

## Environment overrides

A few settings differ from host to host. These variables override the file when they are set
and not empty; their values are checked exactly like the file's, and a bad one is reported
under the variable's name.

`;

const ERRORS = () => `
## Errors

An invalid file stops the agent and the CLI with \`DSO_CONFIG_INVALID\`, listing every problem
(up to ${MAX_REPORTED_PROBLEMS}), one per line, each with its line and column or the environment variable it
came from. Values are never quoted, since they may be credentials; keys, paths and types are.
This file, with \`DSO_LOG_LEVEL=verbose\` in the environment,

\`\`\`yaml
${ERROR_EXAMPLE.trimEnd()}
\`\`\`

is reported as:

\`\`\`text
${exampleErrorMessage()}
\`\`\`

The same problems are in the error's \`details.problems\`:
\`{ path, line?, column?, env?, message }\`.

## Settings
`;

const ERROR_EXAMPLE = `cache:
  tll: 5m
providers:
  vault:
    type: vault
    timeoutMs: true
    config:
      token: hvs.example-credential
`;

/** The real message {@link parseConfig} gives for {@link ERROR_EXAMPLE}, so the doc cannot lie. */
function exampleErrorMessage(): string {
  try {
    parseConfig(ERROR_EXAMPLE, {
      file: '/var/lib/dso/dso.yaml',
      env: { DSO_HOME: '/var/lib/dso', DSO_LOG_LEVEL: 'verbose' },
    });
  } catch (error) {
    if (error instanceof Error) return error.message;
  }
  throw new Error('the error example in reference.ts parses: make it invalid again');
}

/**
 * The configuration reference as Markdown: every key path with its type, default, environment
 * override and description, read from {@link configSchema} and {@link CONFIG_ENV_OVERRIDES}.
 * The repository's `docs/config.md` is this text; a unit test keeps the two equal.
 *
 * @example
 * writeFileSync('docs/config.md', renderConfigReference());
 */
export function renderConfigReference(): string {
  const fields = listFields(configSchema);
  const out: string[] = [INTRO];

  out.push('| variable | setting |', '| --- | --- |');
  for (const override of CONFIG_ENV_OVERRIDES) {
    const heading = override.path.length === 1 ? 'top-level' : anchor(override.path[0]!);
    const meaning = override.meaning === undefined ? '' : ` (${override.meaning})`;
    out.push(`| \`${override.name}\` | [\`${override.path.join('.')}\`](#${heading})${meaning} |`);
  }
  out.push(ERRORS());

  const topLevel = fields.filter((field) => field.path.length === 1);
  const loose = topLevel.filter((field) => field.kind === 'value');
  out.push('### Top level', '', ...table(loose));
  for (const group of topLevel.filter((field) => field.kind !== 'value')) {
    const name = group.path[0]!;
    out.push('', `### \`${name}\``, '', cell(group.meta?.description ?? '', false), '');
    const members = fields.filter((field) => field.path.length > 1 && field.path[0] === name);
    if (group.kind === 'map') members.unshift(group);
    out.push(...table(members));
  }
  return `${out.join('\n')}\n`;
}

function table(fields: readonly ConfigField[]): string[] {
  const rows = ['| key | type | default | description |', '| --- | --- | --- | --- |'];
  for (const field of fields) {
    const override = envOverrideFor(field.path);
    const description =
      (field.meta?.description ?? '') +
      (override === undefined ? '' : ` Overridden by \`${override.name}\`.`);
    rows.push(
      `| \`${field.path.join('.')}\` | ${cell(typeOf(field), true)} | ${cell(defaultOf(field), true)} | ${cell(description, true)} |`,
    );
  }
  return rows;
}

function typeOf(field: ConfigField): string {
  if (field.meta?.type !== undefined) return field.meta.type;
  if (field.kind === 'section') return 'section';
  const inner = field.inner;
  if (inner instanceof z.ZodEnum) {
    const options = (inner.options as readonly (string | number)[]).map((option) => `'${option}'`);
    return options.join(' | ');
  }
  if (inner instanceof z.ZodLiteral) return [...inner.values].map(String).join(' | ');
  if (inner instanceof z.ZodNumber) return inner.isInt ? 'integer' : 'number';
  if (inner instanceof z.ZodString) return 'string';
  if (inner instanceof z.ZodBoolean) return 'boolean';
  if (inner instanceof z.ZodRecord) return 'mapping';
  return 'value';
}

function defaultOf(field: ConfigField): string {
  if (field.meta?.defaultText !== undefined) return field.meta.defaultText;
  if (field.kind === 'section') return '';
  const { schema } = field;
  if (schema instanceof z.ZodDefault) {
    const value: unknown = schema.def.defaultValue;
    const type = field.meta?.type;
    if (typeof value === 'number' && type === 'duration' && value !== 0) {
      return `\`${value}\` (${formatDuration(value)})`;
    }
    if (typeof value === 'number' && type === 'size')
      return `\`${value}\` (${formatByteSize(value)})`;
    if (typeof value === 'number' && type === 'file mode') return `\`0o${value.toString(8)}\``;
    return `\`${typeof value === 'string' ? value : JSON.stringify(value)}\``;
  }
  if (schema instanceof z.ZodOptional) return 'unset';
  return 'required';
}

/** A table cell: one line, pipes escaped. */
function cell(text: string, inTable: boolean): string {
  const flat = text.replace(/\s*\n\s*/g, ' ');
  return inTable ? flat.replace(/\|/g, '\\|') : flat;
}

/** GitHub's heading anchor for `` ### `name` ``. */
function anchor(name: string): string {
  return name.toLowerCase().replace(/[^a-z0-9 -]/g, '');
}
