import type { Argument, Command, Option } from 'commander';

/** One option of a command, as `--help` shows it. */
export interface OptionModel {
  /** As written: `-f, --file <path>`. */
  flags: string;
  /** `-f`, when it has one. */
  short?: string;
  /** `--file`, when it has one. */
  long?: string;
  /** Whether a value follows it (`<path>` or `[name]`). */
  takesValue: boolean;
  /** The value's name, e.g. `path` for `<path>`. */
  valueName?: string;
  description: string;
  choices?: string[];
  defaultValue?: string;
}

/** One positional argument of a command. */
export interface ArgumentModel {
  name: string;
  required: boolean;
  variadic: boolean;
  description: string;
  choices?: string[];
}

/** A command as shell completion and docs/cli.md see it: what `--help` shows, as data. */
export interface CommandModel {
  /** From the program down: `['dso', 'secret', 'set']`. */
  path: string[];
  /** `dso secret set <path> [options]`. */
  usage: string;
  description: string;
  arguments: ArgumentModel[];
  options: OptionModel[];
  commands: CommandModel[];
}

/**
 * The visible commands, arguments and options of a commander program, recursively, in the
 * order `--help` lists them (hidden ones left out, the implicit `help` command and `-h, --help`
 * kept).
 *
 * @example
 * describeProgram(createProgram(io)).commands.map((command) => command.path.join(' '));
 */
export function describeProgram(program: Command): CommandModel {
  return describe(program, [program.name()]);
}

function describe(command: Command, path: string[]): CommandModel {
  const help = command.createHelp();
  const usage = `${path.join(' ')} ${command.usage()}`.trim();
  return {
    path,
    usage,
    description: command.description(),
    arguments: help.visibleArguments(command).map(describeArgument),
    options: help.visibleOptions(command).map(describeOption),
    commands: help.visibleCommands(command).map((sub) => describe(sub, [...path, sub.name()])),
  };
}

function describeArgument(argument: Argument): ArgumentModel {
  return {
    name: argument.name(),
    required: argument.required,
    variadic: argument.variadic,
    description: argument.description,
    ...(argument.argChoices ? { choices: [...argument.argChoices] } : {}),
  };
}

function describeOption(option: Option): OptionModel {
  const valueName = /[<[]([^>\]]+)[>\]]/.exec(option.flags)?.[1]?.replace(/\.\.\.$/, '');
  return {
    flags: option.flags,
    ...(option.short ? { short: option.short } : {}),
    ...(option.long ? { long: option.long } : {}),
    takesValue: option.required || option.optional,
    ...(valueName ? { valueName } : {}),
    description: option.description,
    ...(option.argChoices ? { choices: [...option.argChoices] } : {}),
    ...(option.defaultValue === undefined ||
    (Array.isArray(option.defaultValue) && option.defaultValue.length === 0)
      ? {}
      : { defaultValue: JSON.stringify(option.defaultValue) }),
  };
}

/** Every command of the model, depth first, the program itself first. */
export function allCommands(model: CommandModel): CommandModel[] {
  return [model, ...model.commands.flatMap(allCommands)];
}
