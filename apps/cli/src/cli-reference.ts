import { PassThrough, Readable } from 'node:stream';
import { allCommands, type CommandModel, describeProgram } from './command-model.js';
import { EXIT_CODE_TABLE } from './exit-codes.js';
import { createProgram } from './program.js';

const INTRO = `# \`dso\` command reference

<!-- Generated from the commands in apps/cli/src by \`npm run docs:cli\`. Do not edit by hand: a unit test fails when this file and the commands disagree. -->

Every command of \`dso\` with its arguments and options, as \`dso <command> --help\` prints them.
[\`apps/cli/README.md\`](../apps/cli/README.md) says more about each; the agent, \`dso-agent\`,
is described in [\`apps/agent/README.md\`](../apps/agent/README.md) and configured by
[\`dso.yaml\`](config.md).

\`dso --version\` (or \`-v\`, or \`dso version --client\`) prints the version of \`dso\`, Node's
and the platform; \`dso version\` adds the agent's. \`dso completion bash|zsh|fish\` prints a shell
completion script. Commands that print data take \`--json\`.
`;

/**
 * The command reference as Markdown: the exit codes, then every command (arguments, options,
 * description) read from the commander program that `dso` runs. The repository's
 * `docs/cli.md` is this text; a unit test keeps the two equal.
 *
 * @example
 * writeFileSync('docs/cli.md', renderCliReference());
 */
export function renderCliReference(): string {
  // The program is only described, never run: its streams go nowhere.
  const program = createProgram({
    env: {},
    stdin: Readable.from([]) as unknown as NodeJS.ReadStream,
    stdout: new PassThrough(),
    stderr: new PassThrough(),
  });
  const model = describeProgram(program);
  const commands = allCommands(model).filter(
    (command) => command.path.length > 1 && command.path.at(-1) !== 'help',
  );
  const out: string[] = [INTRO, '## Exit codes', ''];
  out.push(
    'One code per failure class, the same for every command; the error line on stderr names the',
    'exact `DSO_*` code. An agent code this `dso` does not know is classed by the HTTP status the',
    'agent answered with (404 not found, 403 refused, 400 invalid, 503 unavailable).',
    '',
    '| exit code | class | when | e.g. |',
    '| --- | --- | --- | --- |',
  );
  for (const row of EXIT_CODE_TABLE) {
    const examples = row.examples.map((code) => `\`${code}\``).join(', ');
    out.push(`| ${row.code} | \`${row.name}\` | ${cell(row.meaning)} | ${examples} |`);
  }
  out.push('', '## Commands', '');
  for (const command of commands) {
    const name = command.path.slice(1).join(' ');
    out.push(`- [\`dso ${name}\`](#${anchor(command)}): ${cell(command.description)}`);
  }
  out.push('', '## Global options', '', ...optionTable(model));
  for (const command of commands) out.push('', ...section(command));
  return `${out.join('\n')}\n`;
}

function section(command: CommandModel): string[] {
  const lines = [
    `## \`${command.path.join(' ')}\``,
    '',
    '```text',
    command.usage,
    '```',
    '',
    command.description,
  ];
  if (command.commands.length > 0) {
    lines.push('', '| command | what it does |', '| --- | --- |');
    for (const sub of command.commands) {
      if (sub.path.at(-1) === 'help') continue;
      lines.push(`| [\`${sub.path.at(-1)}\`](#${anchor(sub)}) | ${cell(sub.description)} |`);
    }
  }
  if (command.arguments.length > 0) {
    lines.push('', '| argument | description |', '| --- | --- |');
    for (const argument of command.arguments) {
      const shown = `${argument.required ? '<' : '['}${argument.name}${argument.variadic ? '...' : ''}${argument.required ? '>' : ']'}`;
      const choices = argument.choices ? ` (one of ${argument.choices.join(', ')})` : '';
      lines.push(`| \`${shown}\` | ${cell(argument.description + choices)} |`);
    }
  }
  lines.push('', ...optionTable(command));
  return lines;
}

function optionTable(command: CommandModel): string[] {
  const rows = ['| option | description |', '| --- | --- |'];
  for (const option of command.options) {
    const extra = [
      option.choices ? `one of ${option.choices.join(', ')}` : '',
      option.defaultValue === undefined ? '' : `default ${option.defaultValue}`,
    ].filter(Boolean);
    const description = option.description + (extra.length > 0 ? ` (${extra.join('; ')})` : '');
    rows.push(`| \`${option.flags}\` | ${cell(description)} |`);
  }
  return rows;
}

// GitHub's heading anchors: lowercase, punctuation dropped, spaces to hyphens.
function anchor(command: CommandModel): string {
  return command.path
    .join(' ')
    .toLowerCase()
    .replace(/[^a-z0-9 -]/g, '')
    .replaceAll(' ', '-');
}

// A table cell: one line, pipes escaped.
function cell(text: string): string {
  return text.replaceAll('\n', ' ').replaceAll('|', '\\|');
}
