import { Argument, type Command } from 'commander';
import { createAgentClient } from '../agent-client.js';
import {
  type ArgumentModel,
  allCommands,
  type CommandModel,
  describeProgram,
  type OptionModel,
} from '../command-model.js';
import type { CliIo } from '../program.js';

/** The shells `dso completion` writes a script for. */
export const COMPLETION_SHELLS = ['bash', 'zsh', 'fish'] as const;

/** One of {@link COMPLETION_SHELLS}. */
export type CompletionShell = (typeof COMPLETION_SHELLS)[number];

// Container names for `dso status <container>` and `dso rotate <container>`: those the agent
// manages (through its socket, which members of its group may use without docker access), else
// the engine's running ones. Errors complete nothing rather than print into the prompt.
const BASH_CONTAINERS =
  "{ dso __complete containers; docker ps --format '{{.Names}}'; } 2>/dev/null | sort -u";
const FISH_CONTAINERS =
  "begin; dso __complete containers; docker ps --format '{{.Names}}'; end 2>/dev/null | sort -u";

/** How long Tab waits for the agent's list of containers. */
const COMPLETE_TIMEOUT_MS = 1_000;

/** Adds `dso completion bash|zsh|fish`: prints the shell's completion script for `dso`. */
export function registerCompletionCommand(program: Command, io: CliIo): void {
  program
    .command('completion')
    .description(
      'print the shell completion script for dso: source <(dso completion bash), or write it where your shell loads completions (see dso completion --help)',
    )
    .addArgument(new Argument('<shell>', 'the shell').choices(COMPLETION_SHELLS))
    .addHelpText(
      'after',
      `
Load it:
  bash  source <(dso completion bash)           # now; for good: dso completion bash > /etc/bash_completion.d/dso
  zsh   source <(dso completion zsh)            # now; for good: add that line to ~/.zshrc
  fish  dso completion fish | source            # now; for good: dso completion fish > ~/.config/fish/completions/dso.fish
`,
    )
    .action((shell: CompletionShell) => {
      io.stdout.write(completionScript(describeProgram(program), shell));
    });

  // Called by the scripts at each Tab; hidden from help, completion and docs/cli.md.
  program
    .command('__complete', { hidden: true })
    .argument('<what>', 'containers: the names of the containers the agent manages')
    .action(async (what: string) => {
      if (what !== 'containers') return;
      const agent = createAgentClient({
        socketPath: { env: io.env },
        timeoutMs: COMPLETE_TIMEOUT_MS,
      });
      const names = new Set<string>();
      for (const container of (await agent.status()).containers)
        if (container.name) names.add(container.name);
      io.stdout.write([...names].map((name) => `${name}\n`).join(''));
    });
}

/**
 * The completion script for `shell`, generated from the program's commands and options:
 * subcommands, options (files after `-f`), the choices of an argument, running container names
 * for an argument named `container`, files for other arguments.
 *
 * @example
 * completionScript(describeProgram(createProgram(io)), 'bash');
 */
export function completionScript(model: CommandModel, shell: CompletionShell): string {
  switch (shell) {
    case 'bash':
      return bashScript(model);
    case 'zsh':
      return zshScript(model);
    case 'fish':
      return fishScript(model);
  }
}

/** What the words after a command complete to, when it has no subcommands. */
function argumentKind(
  args: ArgumentModel[],
  siblings: string[] = [],
): 'container' | `choices:${string}` | 'files' {
  const first = args[0];
  // `dso help <command>`
  if (first?.name === 'command' && siblings.length > 0) return `choices:${siblings.join(' ')}`;
  if (first?.choices) return `choices:${first.choices.join(' ')}`;
  if (first?.name === 'container') return 'container';
  return 'files';
}

function optionWords(options: OptionModel[]): string[] {
  return options.flatMap((option) =>
    [option.short, option.long].filter((flag) => flag !== undefined),
  );
}

function valuedOptionWords(options: OptionModel[], files: boolean): string[] {
  return optionWords(
    options.filter(
      (option) => option.takesValue && isFileValue(option) === files && !option.choices,
    ),
  );
}

function isFileValue(option: OptionModel): boolean {
  return /file|path|dir/i.test(option.valueName ?? '');
}

// Inside single quotes only a single quote needs care; names and flags never have one.
function quote(text: string): string {
  return `'${text.replaceAll("'", "'\\''")}'`;
}

function bashScript(model: CommandModel): string {
  const name = model.path[0] as string;
  const fn = `_${name.replace(/[^A-Za-z0-9_]/g, '_')}`;
  const topLevel = model.commands.map((command) => command.path.at(-1) as string);
  const cases = allCommands(model)
    .map((command) => {
      const choices = command.options
        .filter((option) => option.choices)
        .map(
          (option) =>
            `      ${[option.short, option.long].filter(Boolean).join('|')}) values=${quote(
              (option.choices ?? []).join(' '),
            )} ;;`,
        );
      return [
        `    ${quote(command.path.join(' '))})`,
        `      commands=${quote(command.commands.map((sub) => sub.path.at(-1)).join(' '))}`,
        `      options=${quote(optionWords(command.options).join(' '))}`,
        `      file_options=${quote(valuedOptionWords(command.options, true).join(' '))}`,
        `      value_options=${quote(valuedOptionWords(command.options, false).join(' '))}`,
        `      arguments=${quote(argumentKind(command.arguments, command.path.length === 2 ? topLevel : []))}`,
        ...(choices.length > 0 ? ['      case "$2" in', ...choices, '      esac'] : []),
        '      ;;',
      ].join('\n');
    })
    .join('\n');
  return `# bash completion for ${name}, generated by \`${name} completion bash\` from its commands.
# Load it now: source <(${name} completion bash)
# For every shell: ${name} completion bash > /etc/bash_completion.d/${name}

${fn}_lookup() {
  commands='' options='' file_options='' value_options='' arguments='files' values=''
  case "$1" in
${cases}
  esac
}

${fn}() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" prev='' path=${quote(name)} word i
  local commands options file_options value_options arguments values
  COMPREPLY=()
  ((COMP_CWORD > 0)) && prev="\${COMP_WORDS[COMP_CWORD - 1]}"
  # The command path: each word that names a subcommand of the path so far.
  for ((i = 1; i < COMP_CWORD; i++)); do
    word="\${COMP_WORDS[i]}"
    # After --, the words are another program's (compose's): complete files.
    if [[ "$word" == -- ]]; then
      compopt -o filenames 2>/dev/null
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      return 0
    fi
    ${fn}_lookup "$path"
    if [[ " $commands " == *" $word "* ]]; then path="$path $word"; fi
  done
  ${fn}_lookup "$path" "$prev"
  if [[ -n "$values" ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$values" -- "$cur")
    return 0
  fi
  if [[ -n "$prev" && " $file_options " == *" $prev "* ]]; then
    compopt -o filenames 2>/dev/null
    mapfile -t COMPREPLY < <(compgen -f -- "$cur")
    return 0
  fi
  if [[ -n "$prev" && " $value_options " == *" $prev "* ]]; then
    return 0
  fi
  if [[ "$cur" == -* ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$options" -- "$cur")
    return 0
  fi
  if [[ -n "$commands" ]]; then
    mapfile -t COMPREPLY < <(compgen -W "$commands" -- "$cur")
    return 0
  fi
  case "$arguments" in
    container) mapfile -t COMPREPLY < <(compgen -W "$(${BASH_CONTAINERS})" -- "$cur") ;;
    choices:*) mapfile -t COMPREPLY < <(compgen -W "\${arguments#choices:}" -- "$cur") ;;
    *)
      compopt -o filenames 2>/dev/null
      mapfile -t COMPREPLY < <(compgen -f -- "$cur")
      ;;
  esac
}

complete -F ${fn} ${name}
`;
}

// zsh runs the bash script through its bash compatibility layer (bashcompinit), so both shells
// complete exactly the same words.
function zshScript(model: CommandModel): string {
  const name = model.path[0] as string;
  return `#compdef ${name}
# zsh completion for ${name}, generated by \`${name} completion zsh\` from its commands.
# Load it now: source <(${name} completion zsh); for every shell add that line to ~/.zshrc.
autoload -U +X compinit && { (( \${+_comps} )) || compinit; }
autoload -U +X bashcompinit && bashcompinit

${bashScript(model)}`;
}

function fishScript(model: CommandModel): string {
  const name = model.path[0] as string;
  const lines = [
    `# fish completion for ${name}, generated by \`${name} completion fish\` from its commands.`,
    `# Load it now: ${name} completion fish | source`,
    `# For every shell: ${name} completion fish > ~/.config/fish/completions/${name}.fish`,
    `complete -c ${name} -f`,
  ];
  for (const command of allCommands(model)) {
    const words = command.path.slice(1);
    // Where this command's own words are offered: its path typed, and none of its subcommands.
    const condition = (() => {
      const subs = command.commands.map((sub) => sub.path.at(-1) as string);
      const seen = words.length === 0 ? [] : [`__fish_seen_subcommand_from ${words.at(-1)}`];
      const notDeeper =
        subs.length > 0 ? [`not __fish_seen_subcommand_from ${subs.join(' ')}`] : [];
      const parts = [...seen, ...notDeeper];
      return parts.length === 0 ? '' : ` -n ${quote(parts.join('; and '))}`;
    })();
    for (const sub of command.commands) {
      lines.push(
        `complete -c ${name}${condition} -a ${sub.path.at(-1)} -d ${quote(sub.description)}`,
      );
    }
    for (const option of command.options) {
      const flags = [
        option.short ? `-s ${option.short.slice(1)}` : '',
        option.long ? `-l ${option.long.slice(2)}` : '',
      ]
        .filter(Boolean)
        .join(' ');
      const value = option.choices
        ? ` -x -a ${quote(option.choices.join(' '))}`
        : option.takesValue
          ? isFileValue(option)
            ? ' -r -F'
            : ' -x'
          : '';
      lines.push(
        `complete -c ${name}${condition} ${flags}${value} -d ${quote(option.description)}`,
      );
    }
    if (command.commands.length === 0 && words.length > 0) {
      const kind = argumentKind(
        command.arguments,
        words.length === 1 ? model.commands.map((sub) => sub.path.at(-1) as string) : [],
      );
      if (kind === 'container')
        lines.push(`complete -c ${name}${condition} -a ${quote(`(${FISH_CONTAINERS})`)}`);
      else if (kind.startsWith('choices:'))
        lines.push(`complete -c ${name}${condition} -a ${quote(kind.slice('choices:'.length))}`);
      else lines.push(`complete -c ${name}${condition} -F`);
    }
  }
  return `${lines.join('\n')}\n`;
}
