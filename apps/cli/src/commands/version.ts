import type { Command } from 'commander';
import type { CliIo } from '../program.js';
import { versionInfo, versionLine } from '../version.js';

/** Adds `dso version [--json]`: what `dso --version` prints, or the same facts as JSON. */
export function registerVersionCommand(program: Command, io: CliIo): void {
  program
    .command('version')
    .description("print the version of dso, Node's and the platform (the same as dso --version)")
    .option('--json', 'print them as one JSON object')
    .action((options: { json?: boolean }) => {
      io.stdout.write(options.json ? `${JSON.stringify(versionInfo())}\n` : `${versionLine()}\n`);
    });
}
